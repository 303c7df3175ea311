#!/usr/bin/env python3
"""Reference fixtures for src/quant/* from bitsandbytes itself.

Runs the real bitsandbytes (pip install bitsandbytes; >= 0.45 has a CPU
backend) on either device and writes what it produced, so the C++ tests can
check our codes, scales and outputs against the library users compare with:

  python3 tools/make_quant_fixtures.py --device cuda --out tests/fixtures/quant
  python3 tools/make_quant_fixtures.py --device cpu  --out tests/fixtures/quant

Files (safetensors; small):
  blockwise4_<device>.safetensors  NF4/FP4 codes (packed), absmax, double-quant
                                   state and dequantized weights for each case
  llm_int8_<device>.safetensors    LLM.int8 weight/activation quantization, int32
                                   products and Linear8bitLt outputs
  int8_affine.safetensors          the issue's per-tensor/per-channel int8
                                   definition evaluated with torch ops (no bnb)
  dynamic_map.safetensors          create_dynamic_map(signed=True)

Committed under tests/fixtures/quant (bitsandbytes 0.50.2):
  blockwise4_cuda, llm_int8_cuda   --device cuda on an H100 (torch 2.11+cu130);
                                   the llm_int8 file predates the "ties" case,
                                   which the tests take from the CPU file
  llm_int8_cpu, int8_affine, dynamic_map   --device cpu (torch 2.15)
The tests compare with the CUDA files bit for bit (that is the semantics
gpt2q follows) and with the CPU file where the backends agree.

The tensors are built from a fixed seed plus hand-placed values (exact
midpoints, zeros, all-zero blocks, partial final blocks), so the same command
gives the same inputs on any machine. Where bitsandbytes' CUDA kernels and its
CPU/default backend round differently the script prints how many codes differ;
docs/quantization.md explains each difference.

Sources read (bitsandbytes-foundation/bitsandbytes, 0.50.x):
  bitsandbytes/functional.py      quantize_4bit (compress_statistics: offset =
                                  absmax.mean(); quantize_blockwise(absmax - offset,
                                  blocksize=256)), create_dynamic_map, get_4bit_type
  bitsandbytes/backends/default/ops.py  quantize_4bit (bucketize on midpoints),
                                  int8_vectorwise_quant (|x| >= threshold),
                                  int8_mm_dequant, int8_mixed_scaled_mm
  csrc/cuda/blockwise_quantization.cu   kQuantizeBlockwise, dQuantizeNF4/FP4, dQuantize
  csrc/cuda/int8.cu                kInt8VectorQuant, kdequant_mm_int32_fp16
  bitsandbytes/autograd/_functions.py   MatMul8bitLt.forward
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

SEED = 20240611
MAX_DEQUANT_NUMEL = 16384  # larger cases store codes and scales only, to keep the files small


def nf4_midpoints():
    import bitsandbytes.functional as F
    code = F.get_4bit_type("nf4", device="cpu")
    return ((code[:-1] + code[1:]) / 2).tolist()


# Thresholds of dQuantizeFP4 in csrc (float literals compared with `x > t` on |x|).
FP4_CUDA_THRESHOLDS = [0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333]


def f32(v):
    return float(np.float32(v))


def next_up(v):
    return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def next_down(v):
    return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def boundary_tensor():
    """Rows of 64 values, each block holding 1.0 (absmax 1 -> scale exactly 1)
    and values exactly on, just above and just below every threshold, signed."""
    vals = []
    for t in nf4_midpoints() + FP4_CUDA_THRESHOLDS + [-t for t in FP4_CUDA_THRESHOLDS]:
        t = f32(t)
        vals += [t, next_up(t), next_down(t)]
    vals += [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30]
    blocks = []
    for i in range(0, len(vals), 63):
        chunk = vals[i:i + 63]
        chunk = chunk + [0.0] * (63 - len(chunk))
        blocks.append([1.0] + chunk)
    return torch.tensor(blocks, dtype=torch.float32).reshape(-1, 64)


def zeros_tensor():
    """All-zero blocks, a block with a single nonzero, negative zeros, an
    all-negative block, and a block whose absmax is negative."""
    g = torch.Generator().manual_seed(SEED + 1)
    t = torch.randn(8, 64, generator=g) * 0.05
    t[1] = 0.0                      # all-zero block
    t[2] = 0.0
    t[2, 17] = 0.03                 # single nonzero
    t[3] = -0.0                     # negative zeros
    t[4] = -t[4].abs() - 0.001      # all negative
    t[5, 5] = -3.0                  # absmax from a negative value
    t[6, ::2] = 0.0                 # half zeros
    return t


def gpt2_like(out_f, in_f, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g) * 0.02
    # A few large weights, as GPT-2 has.
    idx = torch.randint(0, w.numel(), (max(1, w.numel() // 500),), generator=g)
    w.view(-1)[idx] *= 40.0
    return w


def fourbit_cases():
    """(name, weight [out, in], blocksize). Weights are in nn.Linear [out, in]
    order; the GPT-2 Conv1D transpose is the caller's business."""
    return [
        ("gpt2like", gpt2_like(48, 96, SEED), 64),
        ("boundary", boundary_tensor(), 64),
        ("zeros", zeros_tensor(), 64),
        ("partial", gpt2_like(7, 37, SEED + 2), 64),           # 259 values: 4 blocks + 3, odd
        ("partial_zero_tail", torch.cat([gpt2_like(1, 128, SEED + 3).view(-1),
                                          torch.zeros(5)]).view(1, 133), 64),
        ("bs32", gpt2_like(16, 80, SEED + 4), 32),
        ("bs128", gpt2_like(16, 80, SEED + 4), 128),
        ("bs256", gpt2_like(16, 80, SEED + 4), 256),
        ("bs4096", gpt2_like(64, 160, SEED + 5), 4096),       # 2 full blocks + 2048
        ("nested", gpt2_like(300, 128, SEED + 6), 64),          # 600 blocks -> 256 + 256 + 88
    ]


def run_blockwise4(device, tensors, meta, report):
    import bitsandbytes.functional as F
    for name, w, bs in fourbit_cases():
        meta[name] = {"blocksize": bs, "shape": list(w.shape)}
        tensors[f"{name}.input"] = w.contiguous()
        for qt in ("nf4", "fp4"):
            wd = w.to(device)
            packed, st = F.quantize_4bit(wd, blocksize=bs, quant_type=qt, compress_statistics=False)
            deq = F.dequantize_4bit(packed, st)
            tensors[f"{name}.{qt}.packed"] = packed.cpu().view(-1).contiguous()
            tensors[f"{name}.{qt}.absmax"] = st.absmax.cpu().contiguous()
            if w.numel() <= MAX_DEQUANT_NUMEL:
                tensors[f"{name}.{qt}.dequant"] = deq.float().cpu().contiguous()
            packed2, st2 = F.quantize_4bit(wd, blocksize=bs, quant_type=qt, compress_statistics=True)
            deq2 = F.dequantize_4bit(packed2, st2)
            absmax_dq = F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset
            if not torch.equal(packed2.cpu(), packed.cpu()):
                report.append(f"{name}.{qt}: packed codes differ with compress_statistics")
            tensors[f"{name}.{qt}.dq.qabsmax"] = st2.absmax.cpu().contiguous()
            tensors[f"{name}.{qt}.dq.state2"] = st2.state2.absmax.cpu().contiguous()
            tensors[f"{name}.{qt}.dq.offset"] = st2.offset.reshape(1).float().cpu()
            tensors[f"{name}.{qt}.dq.absmax"] = absmax_dq.float().cpu().contiguous()
            if w.numel() <= MAX_DEQUANT_NUMEL:
                tensors[f"{name}.{qt}.dq.dequant"] = deq2.float().cpu().contiguous()
            meta[name]["nested_blocksize"] = st2.state2.blocksize


def run_llm_int8(device, tensors, meta):
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    g = torch.Generator().manual_seed(SEED + 10)
    out_f, in_f = 40, 64
    w = torch.randn(out_f, in_f, generator=g) * 0.05
    w[3] = 0.0                        # an all-zero weight row
    w[7, 11] = 0.9                    # a large weight
    bias = torch.randn(out_f, generator=g) * 0.1
    tensors["weight"] = w
    tensors["bias"] = bias

    x_plain = torch.randn(5, in_f, generator=g)
    x_plain.clamp_(-3.0, 3.0)
    x_out = x_plain.clone()
    x_out[0, 5] = 6.0                 # exactly the threshold: an outlier (>=)
    x_out[2, 9] = -7.5
    x_out[1, 20] = 5.999              # rounds to fp16 6.0 -> an outlier after the cast
    x_out[3, 30] = 5.99               # fp16 5.9883 -> not an outlier
    x_out[4, 40] = 25.0
    x_zero_row = x_out.clone()
    x_zero_row[2] = 0.0               # a row whose absmax is 0
    x_one = x_out[4:5].clone()        # one row: bnb skips the column zeroing
    # Row absmax 127 makes 127 / absmax exactly 1: x.5 values test half-to-even.
    x_ties = torch.zeros(2, in_f)
    x_ties[:, 0] = 127.0
    x_ties[0, 1:9] = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 100.5])
    x_ties[1, 1:5] = torch.tensor([-3.5, 4.5, -4.5, 0.25])
    cases = {"plain": x_plain, "outliers": x_out, "zero_row": x_zero_row, "one_row": x_one, "ties": x_ties}

    CB, SCB, _ = F.int8_vectorwise_quant(w.to(device).half())
    tensors["CB"] = CB.cpu()
    tensors["SCB"] = SCB.cpu()
    for name, x in cases.items():
        tensors[f"{name}.x"] = x
        for thr in (0.0, 6.0):
            tag = f"{name}.t{int(thr)}"
            xd = x.to(device)
            CA, SCA, cols = F.int8_vectorwise_quant(xd.half().clone(), threshold=thr)
            tensors[f"{tag}.CA"] = CA.cpu()
            tensors[f"{tag}.SCA"] = SCA.cpu()
            mask = torch.zeros(in_f, dtype=torch.uint8)
            if cols is not None and cols.numel():
                mask[cols.cpu()] = 1
            tensors[f"{tag}.outlier_mask"] = mask
            acc = torch.ops.bitsandbytes.int8_linear_matmul.default(CA, CB)
            tensors[f"{tag}.acc"] = acc.cpu().to(torch.int32)
            # int8 part without bias, in the dtype bnb materializes it (fp16).
            part = torch.ops.bitsandbytes.int8_mm_dequant.default(acc, SCA, SCB, dtype=torch.float16)
            tensors[f"{tag}.int8_part_f16"] = part.cpu()
            layer = bnb.nn.Linear8bitLt(in_f, out_f, bias=True, has_fp16_weights=False, threshold=thr)
            layer.weight = bnb.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
            layer.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
            layer = layer.to(device).eval()
            with torch.no_grad():
                y = layer(xd)
            tensors[f"{tag}.y"] = y.float().cpu()
    meta["llm_int8"] = {"cases": list(cases), "thresholds": [0.0, 6.0], "out": out_f, "in": in_f}


def int8_affine_reference(w, symmetric, per_channel):
    """The issue's int8 definition with torch ops (torch.round: half to even)."""
    if per_channel:
        lo = w.min(dim=1, keepdim=True).values
        hi = w.max(dim=1, keepdim=True).values
    else:
        lo = w.min().reshape(1, 1)
        hi = w.max().reshape(1, 1)
    if symmetric:
        absmax = torch.maximum(hi.abs(), lo.abs())
        scale = absmax / 127.0
        scale = torch.where(absmax == 0, torch.ones_like(scale), scale)
        zp = torch.zeros_like(scale)
    else:
        # max == min: widen the range to include 0; an all-zero range gets scale 1.
        const = hi == lo
        lo = torch.where(const, torch.minimum(lo, torch.zeros_like(lo)), lo)
        hi = torch.where(const, torch.maximum(hi, torch.zeros_like(hi)), hi)
        scale = (hi - lo) / 255.0
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zp = torch.round(-128.0 - lo / scale)
    q = torch.clamp(torch.round(w / scale + zp), -128, 127).to(torch.int8)
    return q, scale.reshape(-1), zp.reshape(-1).to(torch.int32)


def run_int8_affine(tensors, meta):
    g = torch.Generator().manual_seed(SEED + 20)
    w = gpt2_like(24, 40, SEED + 21)
    w[5] = 0.25                # constant row (max == min)
    w[6] = 0.0                 # all-zero row
    w[7] = -torch.rand(40, generator=g)  # range that excludes 0
    w[8] = torch.rand(40, generator=g) + 0.5
    # Range [-128, 127] gives affine scale 1 and zero point 0: w / scale + zp
    # lands exactly on .5 and exercises half-to-even.
    ties = torch.tensor([[-128.0, 127.0, 0.5, 1.5, 2.5, -0.5], [-1.5, -2.5, 3.5, 126.5, -127.5, 0.0]])
    cases = {"w": w, "const": torch.full((3, 4), -0.75), "zero": torch.zeros(2, 3), "ties": ties}
    for cname, t in cases.items():
        tensors[f"{cname}.input"] = t
        for sym in (False, True):
            for pc in (False, True):
                tag = f"{cname}.{'sym' if sym else 'affine'}.{'channel' if pc else 'tensor'}"
                q, s, z = int8_affine_reference(t, sym, pc)
                tensors[f"{tag}.q"] = q
                tensors[f"{tag}.scale"] = s
                tensors[f"{tag}.zero_point"] = z
    meta["int8_affine"] = {"cases": list(cases)}


def compare_4bit_devices(out_dir, report):
    """Where both device files exist, count codes that differ between them."""
    from safetensors.torch import load_file
    a = os.path.join(out_dir, "blockwise4_cuda.safetensors")
    b = os.path.join(out_dir, "blockwise4_cpu.safetensors")
    if not (os.path.exists(a) and os.path.exists(b)):
        return
    ta, tb = load_file(a), load_file(b)
    for k in sorted(ta):
        if k.endswith(".packed"):
            pa, pb = ta[k], tb[k]
            ca = torch.stack([pa >> 4, pa & 15], 1).view(-1)
            cb = torch.stack([pb >> 4, pb & 15], 1).view(-1)
            n = int((ca != cb).sum())
            if n:
                report.append(f"cuda vs cpu {k}: {n} of {ca.numel()} codes differ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import bitsandbytes as bnb
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    os.makedirs(args.out, exist_ok=True)
    report = []
    provenance = {"bitsandbytes": bnb.__version__, "torch": torch.__version__, "device": args.device,
                  "seed": str(SEED)}
    if args.device == "cuda":
        provenance["gpu"] = torch.cuda.get_device_name(0)

    tensors, meta = {}, {}
    run_blockwise4(args.device, tensors, meta, report)
    save_file(tensors, os.path.join(args.out, f"blockwise4_{args.device}.safetensors"),
              metadata={**provenance, "cases": json.dumps(meta)})

    tensors, meta = {}, {}
    run_llm_int8(args.device, tensors, meta)
    save_file(tensors, os.path.join(args.out, f"llm_int8_{args.device}.safetensors"),
              metadata={**provenance, "cases": json.dumps(meta)})

    from bitsandbytes.functional import create_dynamic_map
    save_file({"map": create_dynamic_map(signed=True).contiguous()},
              os.path.join(args.out, "dynamic_map.safetensors"), metadata=provenance)
    tensors, meta = {}, {}
    run_int8_affine(tensors, meta)
    save_file(tensors, os.path.join(args.out, "int8_affine.safetensors"),
              metadata={"torch": torch.__version__, "cases": json.dumps(meta)})

    compare_4bit_devices(args.out, report)
    for line in report:
        print(line)
    print(f"wrote fixtures for {args.device} to {args.out}")


if __name__ == "__main__":
    main()
