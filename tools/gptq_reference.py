#!/usr/bin/env python3
"""An independent GPTQ reference, and the fixtures gpt2q's GPTQ is tested against.

  python3 tools/gptq_reference.py --out tests/fixtures/quant/gptq_reference.safetensors

A numpy transcription of the published algorithm as the GPTQ authors' code
and AutoGPTQ run it (auto_gptq/quantization/gptq.py `GPTQ.fasterquant`,
quantizer.py `Quantizer.find_params` / `quantize`, in float32 as torch runs
them, torch.round = numpy's round half to even), and of AutoGPTQ's `pack`
(qlinear_cuda_old.py: the v1 checkpoint layout, zero points stored minus
one, 3-bit codes split across words). Needs numpy and safetensors only; no
torch, no GPU. The one deliberate difference from the reference is gpt2q's:
a zero point is at least 1 (the v1 layout cannot store 0; src/quant/gptq.h),
applied here too (--no-min-zero turns it off, to measure what it changes).

Inputs, seeded: W [64, 256] ~ N(0, 0.02) with a few outliers; activations X
[2048, 256] = Z·M with per-feature scales (correlated, as a layer's inputs
are); feature 5 of a second set is always zero (a dead column). The Hessian
is the reference's add_batch in float32, over batches of 8 rows, kept in
the file (the C++ test feeds the same matrix to gpt2q).

Cases (each: codes [64, 256] u8, scales [groups, 64] f32, zeros [groups, 64]
i32, g_idx [256] i32, and in the metadata the layer output error
Σ (w − q)ᵀ·H·(w − q) of GPTQ and of round-to-nearest): see CASES below.
The Hessians (f32 [256, 256]) and W are in the file. For the v1 cases also qweight /
qzeros / scales16 as AutoGPTQ's pack writes them from the reference's codes.
"""
import argparse
import json
import sys

import numpy as np

OUT, IN = 64, 256
CASES = {
    # name: bits, group_size, act_order, sym, hessian ("h" or "h_dead")
    "b4_g128": (4, 128, False, False, "h"),
    "b3_g128": (3, 128, False, False, "h"),
    "b4_g64_act": (4, 64, True, False, "h"),
    "b4_channel": (4, -1, False, False, "h"),
    "b4_g128_sym": (4, 128, False, True, "h"),
    "b2_g32": (2, 32, False, False, "h"),
    "b8_g128": (8, 128, False, False, "h"),
    "b4_g128_dead": (4, 128, False, False, "h_dead"),
    "b4_g48_act_blocks": (4, 48, True, False, "h"),  # groups that start inside a 128-column block
}


def find_params(x, bits, sym, min_zero):
    """Quantizer.find_params(x, weight=True), perchannel: per row of x, float32."""
    maxq = np.float32(2 ** bits - 1)
    x = x.astype(np.float32)
    tmp = np.zeros(x.shape[0], dtype=np.float32)
    xmin = np.minimum(x.min(1), tmp)
    xmax = np.maximum(x.max(1), tmp)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        neg = xmin < 0
        xmin[neg] = -xmax[neg]
    both = (xmin == 0) & (xmax == 0)
    xmin[both] = -1
    xmax[both] = +1
    scale = ((xmax - xmin) / maxq).astype(np.float32)
    if sym:
        zero = np.full_like(scale, (maxq + 1) / 2)
    else:
        zero = np.round(-xmin / scale).astype(np.float32)
        if min_zero:
            zero = np.maximum(zero, np.float32(1))
    return scale, zero


def quantize(x, scale, zero, maxq):
    q = np.clip(np.round(x / scale) + zero, 0, maxq).astype(np.float32)
    return (scale * (q - zero)).astype(np.float32), q


def fasterquant(W, H, bits, group_size, actorder, sym, min_zero, blocksize=128, percdamp=0.01):
    W = W.astype(np.float32).copy()
    H = H.astype(np.float32).copy()
    columns = W.shape[1]
    maxq = np.float32(2 ** bits - 1)
    scale, zero = find_params(W, bits, sym, min_zero)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if actorder:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = np.argsort(perm)
    Q = np.zeros_like(W)
    codes = np.zeros(W.shape, dtype=np.float32)
    losses = np.zeros_like(W)
    damp = np.float32(percdamp) * np.mean(np.diag(H))
    H[np.arange(columns), np.arange(columns)] += damp
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L).astype(np.float32)
    Hinv = (Linv.T @ Linv).astype(np.float32)          # torch.cholesky_inverse
    Hinv = np.linalg.cholesky(Hinv).T.astype(np.float32)  # cholesky(upper=True)
    scales, zeros = [], []
    now_idx = 1
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Losses1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if group_size != -1:
                if (i1 + i) % group_size == 0:
                    scale, zero = find_params(W[:, (i1 + i):(i1 + i + group_size)], bits, sym, min_zero)
                if ((i1 + i) // group_size) - now_idx == -1:
                    scales.append(scale)
                    zeros.append(zero)
                    now_idx += 1
            q, c = quantize(w, scale, zero, maxq)
            Q1[:, i] = q
            codes[:, i1 + i] = c
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = ((w - q) / d).astype(np.float32)
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:]).astype(np.float32)
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= (Err1 @ Hinv[i1:i2, i2:]).astype(np.float32)
    gs = group_size if group_size != -1 else columns
    g_idx = np.array([i // gs for i in range(columns)], dtype=np.int32)
    if actorder:
        Q = Q[:, invperm]
        codes = codes[:, invperm]
        g_idx = g_idx[invperm]
    if not scales:
        scales.append(scale)
        zeros.append(zero)
    return Q, codes.astype(np.uint8), np.stack(scales), np.stack(zeros).astype(np.int32), g_idx, float(losses.sum())


def rtn(W, bits, group_size, sym, min_zero):
    maxq = np.float32(2 ** bits - 1)
    gs = group_size if group_size != -1 else W.shape[1]
    Q = np.zeros_like(W)
    for b in range(0, W.shape[1], gs):
        s, z = find_params(W[:, b:b + gs], bits, sym, min_zero)
        Q[:, b:b + gs], _ = quantize(W[:, b:b + gs], s[:, None], z[:, None], maxq)
    return Q


def pack_v1(codes, scales, zeros, g_idx, bits, group_size):
    """AutoGPTQ's QuantLinear.pack (qlinear_cuda_old.py), from integer codes."""
    intweight = codes.T.astype(np.uint32)  # [in, out]
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                qweight[row] |= intweight[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        else:
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << 30
            row += 1
            qweight[row] |= (intweight[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << 31
            row += 1
            qweight[row] |= (intweight[i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    z = (zeros - 1).astype(np.uint32)  # [groups, out]
    qzeros = np.zeros((z.shape[0], z.shape[1] // 32 * bits), dtype=np.uint32)
    i = col = 0
    while col < qzeros.shape[1]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                qzeros[:, col] |= z[:, j] << (bits * (j - i))
            i += 32 // bits
            col += 1
        else:
            for j in range(i, i + 10):
                qzeros[:, col] |= z[:, j] << (3 * (j - i))
            i += 10
            qzeros[:, col] |= z[:, i] << 30
            col += 1
            qzeros[:, col] |= (z[:, i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qzeros[:, col] |= z[:, j] << (3 * (j - i) + 1)
            i += 10
            qzeros[:, col] |= z[:, i] << 31
            col += 1
            qzeros[:, col] |= (z[:, i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qzeros[:, col] |= z[:, j] << (3 * (j - i) + 2)
            i += 10
            col += 1
    return qweight.view(np.int32), qzeros.view(np.int32), scales.astype(np.float16)


def output_error(W, Q, H):
    """Σ over output rows of (w − q)ᵀ·H·(w − q): the layer's squared output
    error on the calibration inputs, up to H's scale (float64)."""
    D = (W - Q).astype(np.float64)
    return float(np.sum((D @ H.astype(np.float64)) * D))


def hessian(X, batch=8):
    """GPTQ.add_batch over batches of `batch` rows (each row one sample), float32."""
    H = np.zeros((X.shape[1], X.shape[1]), dtype=np.float32)
    n = 0
    for b in range(0, X.shape[0], batch):
        inp = X[b:b + batch].astype(np.float32)
        tmp = inp.shape[0]
        H *= np.float32(n / (n + tmp))
        n += tmp
        inp = np.float32(np.sqrt(2 / n)) * inp
        H += (inp.T @ inp).astype(np.float32)
    return H


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-min-zero", action="store_true", help="the reference's zero points (0 allowed)")
    a = ap.parse_args(argv)
    from safetensors.numpy import save_file
    rng = np.random.default_rng(20261205)
    W = (rng.standard_normal((OUT, IN)) * 0.02).astype(np.float32)
    W[rng.integers(0, OUT, 6), rng.integers(0, IN, 6)] *= 12  # outliers
    M = rng.standard_normal((IN, IN)).astype(np.float32) / np.sqrt(IN)
    feat = np.exp(rng.standard_normal(IN)).astype(np.float32)
    X = ((rng.standard_normal((2048, IN)).astype(np.float32) @ (np.eye(IN, dtype=np.float32) + 0.7 * M)) * feat)
    X = X.astype(np.float32)
    Xd = X.copy()
    Xd[:, 5] = 0
    hs = {"h": hessian(X), "h_dead": hessian(Xd)}
    tensors = {"w": W, "h": hs["h"], "h_dead": hs["h_dead"]}
    meta = {}
    min_zero = not a.no_min_zero
    for name, (bits, gs, act, sym, hname) in CASES.items():
        Q, codes, scales, zeros, g_idx, loss = fasterquant(W, hs[hname], bits, gs, act, sym, min_zero)
        err = output_error(W, Q, hs[hname])
        err_rtn = output_error(W, rtn(W, bits, gs, sym, min_zero), hs[hname])
        tensors[name + "/codes"] = codes
        tensors[name + "/scales"] = scales.astype(np.float32)
        tensors[name + "/zeros"] = zeros
        tensors[name + "/g_idx"] = g_idx
        if gs != -1 and not act and bits in (3, 4):
            qweight, qzeros, scales16 = pack_v1(codes, scales, zeros, g_idx, bits, gs)
            tensors[name + "/qweight"] = qweight
            tensors[name + "/qzeros"] = qzeros
            tensors[name + "/scales16"] = scales16
        meta[name] = {"bits": bits, "group_size": gs, "act_order": act, "sym": sym, "hessian": hname,
                      "output_error": err, "rtn_output_error": err_rtn, "loss": loss}
        print("%-18s output error %.6g (RTN %.6g, %.1f%% of it)" % (name, err, err_rtn, 100 * err / err_rtn),
              file=sys.stderr)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, a.out,
              metadata={"cases": json.dumps(meta), "min_zero": str(min_zero),
                        "tool": "tools/gptq_reference.py"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
