#!/usr/bin/env python3
"""Dequantizes GPTQ-layout tensors with numpy, from the format definition alone.

  python3 tools/gptq_dequant.py MODEL.safetensors [--bits 4] [--out dense.safetensors]
  python3 tools/gptq_dequant.py --model CHECKPOINT_DIR [--out dense.safetensors]
  python3 tools/gptq_dequant.py --selftest tests/fixtures/quant/gptq_reference.safetensors

The layout (transformers' `gptq` checkpoint format v1; src/quant/gptq_format.h
says the same): for every module with `<m>.qweight`:
  qweight  int32 [in * bits / 32, out]  the codes of input rows, packed along
           the input dimension from the least significant bit up, each code
           `bits` wide, a code that crosses a word boundary continuing in the
           next word (only 3 bits does)
  qzeros   int32 [groups, out * bits / 32]  zero point − 1, packed the same
           way along the output dimension
  scales   float16 [groups, out]
  g_idx    int32 [in]
  W[o, i] = scales[g, o] · (code[i, o] − (qzeros[g, o] + 1)),  g = g_idx[i]
computed in float32 (the fp16 scale widened, the difference exact). Writes
W as nn.Linear's [out, in] under `<m>.weight` (with --out), and prints each
module's shape and value range. --model reads DIR/model.safetensors and
the bits from DIR/config.json's quantization_config (quant_method "gptq").
--selftest reads the packed tensors of
tools/gptq_reference.py's fixture and checks them against its codes, zero
points and scales.
"""
import argparse
import sys

import numpy as np


def unpack(words, n, bits):
    """n codes from the rows of `words` [n * bits / 32, cols] (uint32), per column."""
    words = words.astype(np.uint64)
    codes = np.zeros((n, words.shape[1]), dtype=np.uint64)
    mask = np.uint64((1 << bits) - 1)
    for k in range(n):
        bit = k * bits
        w, s = divmod(bit, 32)
        v = words[w] >> np.uint64(s)
        if s + bits > 32:
            v |= words[w + 1] << np.uint64(32 - s)
        codes[k] = v & mask
    return codes.astype(np.int64)


def dequantize(qweight, qzeros, scales, g_idx, bits):
    qweight = qweight.view(np.uint32)
    qzeros = qzeros.view(np.uint32)
    n_in = qweight.shape[0] * 32 // bits
    out = qweight.shape[1]
    codes = unpack(qweight, n_in, bits)                   # [in, out]
    zeros = unpack(qzeros.T, out, bits).T + 1              # [groups, out]
    g = g_idx.astype(np.int64)
    return (scales.astype(np.float32)[g] * (codes - zeros[g]).astype(np.float32)).T  # [out, in]


def selftest(path):
    from safetensors.numpy import load_file
    import json
    from safetensors import safe_open
    t = load_file(path)
    with safe_open(path, "np") as f:
        cases = json.loads(f.metadata()["cases"])
    checked = 0
    for name, c in cases.items():
        if name + "/qweight" not in t:
            continue
        w = dequantize(t[name + "/qweight"], t[name + "/qzeros"], t[name + "/scales16"], t[name + "/g_idx"], c["bits"])
        codes, zeros, g = t[name + "/codes"].astype(np.int64), t[name + "/zeros"].astype(np.int64), t[name + "/g_idx"]
        s16 = t[name + "/scales16"].astype(np.float32)
        want = s16[g].T * (codes - zeros[g].T).astype(np.float32)
        if not np.array_equal(w, want):
            print("%s: differs (max %g)" % (name, np.abs(w - want).max()), file=sys.stderr)
            return 1
        checked += 1
    print("selftest: %d packed cases dequantize exactly" % checked)
    return 0 if checked else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--out")
    ap.add_argument("--model")
    ap.add_argument("--selftest")
    a = ap.parse_args(argv)
    if a.selftest:
        return selftest(a.selftest)
    if a.model:
        import json
        import os
        with open(os.path.join(a.model, "config.json")) as f:
            qc = json.load(f).get("quantization_config") or {}
        if qc.get("quant_method") != "gptq":
            print("%s/config.json: quantization_config.quant_method is not \"gptq\"" % a.model, file=sys.stderr)
            return 1
        a.bits = int(qc["bits"])
        a.file = os.path.join(a.model, "model.safetensors")
    if not a.file:
        ap.error("give a .safetensors file, --model DIR (or --selftest FIXTURE)")
    from safetensors.numpy import load_file, save_file
    t = load_file(a.file)
    dense = {}
    for name in sorted(k for k in t if k.endswith(".qweight")):
        m = name[: -len(".qweight")]
        w = dequantize(t[m + ".qweight"], t[m + ".qzeros"], t[m + ".scales"], t[m + ".g_idx"], a.bits)
        dense[m + ".weight"] = np.ascontiguousarray(w)
        print("%s: [%d, %d], values %.6g .. %.6g" % (m, w.shape[0], w.shape[1], w.min(), w.max()))
    if not dense:
        print("%s: no GPTQ tensors (*.qweight)" % a.file, file=sys.stderr)
        return 1
    if a.out:
        save_file(dense, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
