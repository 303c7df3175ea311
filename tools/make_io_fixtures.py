#!/usr/bin/env python3
"""Reference fixtures for the io layer (tests/fixtures/io), made with the
libraries users compare us with: the `safetensors` package, Python's `csv`
module, and transformers' own save_pretrained / parameter counts.

    python3 tools/make_io_fixtures.py [--data ../shared/data] [--out tests/fixtures/io]

Everything written is small (a few tens of KB) and deterministic.
"""
import argparse
import csv
import io
import json
import os
import struct

import torch
from safetensors.torch import save_file

MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes, h: int = 0xCBF29CE484222325) -> int:
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


class MT19937_64:
    """std::mt19937_64, written out from the C++ standard's definition."""

    def __init__(self, seed: int):
        self.mt = [0] * 312
        self.mt[0] = seed & MASK64
        for i in range(1, 312):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64
        self.index = 312

    def _twist(self):
        upper, lower = 0xFFFFFFFF80000000, 0x7FFFFFFF
        for i in range(312):
            x = (self.mt[i] & upper) | (self.mt[(i + 1) % 312] & lower)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            self.mt[i] = self.mt[(i + 156) % 312] ^ xa
        self.index = 0

    def __call__(self) -> int:
        if self.index >= 312:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & MASK64


def uniform_upto(rng, bound):
    rng_range = bound + 1
    limit = MASK64 - ((MASK64 % rng_range) + 1) % rng_range
    while True:
        x = rng()
        if x <= limit:
            return x % rng_range


def round_half_away(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def stratified_split(labels, fraction, seed):
    """The split documented in src/io/dataset.h, independently written."""
    rng = MT19937_64(seed)
    first, second = [], []
    for label in sorted(set(labels)):
        idx = [i for i, l in enumerate(labels) if l == label]
        for i in range(len(idx) - 1, 0, -1):
            j = uniform_upto(rng, i)
            idx[i], idx[j] = idx[j], idx[i]
        k = round_half_away(fraction * len(idx))
        second += idx[:k]
        first += idx[k:]
    return sorted(first), sorted(second)


def split_summary(labels, fraction, seed):
    first, second = stratified_split(labels, fraction, seed)
    return {
        "fraction": fraction,
        "seed": seed,
        "first_count": len(first),
        "second_count": len(second),
        "second_head": second[:20],
        "second_fnv1a64": str(fnv1a64(",".join(map(str, second)).encode())),
    }


def make_safetensors(out):
    g = torch.Generator().manual_seed(1234)
    vals = torch.randn(2, 3, generator=g) * 3
    tensors = {
        "f32": vals.clone(),
        "f16": torch.tensor([0.0, -1.5, 65504.0, 6.1e-5, 1e-7, 3.14159, -2.0e4], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -3.3e38], [1.0e-30, 0.1]], dtype=torch.bfloat16),
        "f64": torch.tensor([1.0 / 3.0, -2.5e300], dtype=torch.float64),
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([[0, 255, 7]], dtype=torch.uint8),
        "i16": torch.tensor([-32768, 12345], dtype=torch.int16),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 5], dtype=torch.int32),
        "i64": torch.tensor([-(2**63), 2**63 - 1], dtype=torch.int64),
        "bool": torch.tensor([True, False, True], dtype=torch.bool),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
    }
    path = os.path.join(out, "mixed.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    crate_order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    expected = {"crate_order": crate_order, "metadata": header.get("__metadata__", {}), "tensors": {}}
    for name, t in tensors.items():
        e = {"dtype": header[name]["dtype"], "shape": list(t.shape)}
        if t.dtype in (torch.float16, torch.bfloat16):
            e["bits"] = t.view(torch.int16).flatten().tolist()
            e["bits"] = [b & 0xFFFF for b in e["bits"]]
            e["as_f32"] = t.float().flatten().tolist()
        elif t.dtype == torch.bool:
            e["values"] = [int(v) for v in t.flatten().tolist()]
        else:
            e["values"] = t.flatten().tolist()
        expected["tensors"][name] = e
    with open(os.path.join(out, "mixed.expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


TRICKY_CSV = (
    b'text,label,extra\r\n'
    b'"plain",0,x\r\n'
    b'"with ""quotes"" inside",1,\r\n'
    b'"embedded\nnewline",2,y\n'
    b'"embedded\r\ncrlf",3,z\n'
    b'\n'
    b'unquoted with "quote" in it,0,w\n'
    b'"closed"then more,1,v\r\n'
    b'"caf\xc3\xa9 \xe2\x80\x94 \\$ #39;",2,u\n'
    b',4,\n'
    b'"last, no newline",0,t'
)


def make_csv(out):
    with open(os.path.join(out, "tricky.csv"), "wb") as f:
        f.write(TRICKY_CSV)
    rows = list(csv.reader(io.StringIO(TRICKY_CSV.decode("utf-8"), newline="")))
    with open(os.path.join(out, "tricky.expected.json"), "w") as f:
        json.dump({"records": [r for r in rows if r]}, f, indent=1, ensure_ascii=False)


def make_ag_news(data, out):
    with open(os.path.join(data, "ag_news", "test.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    labels, h, total = [], 0xCBF29CE484222325, 0
    for r in rows:
        assert len(r) == 3
        label = int(r[0]) - 1
        text = r[1] + " " + r[2]
        labels.append(label)
        b = f"{label}\t{text}\n".encode("utf-8")
        h = fnv1a64(b, h)
        total += len(text.encode("utf-8"))
    with_backslash = next(i for i, r in enumerate(rows) if "\\" in r[2])
    expected = {
        "rows": len(rows),
        "per_class": [labels.count(c) for c in range(4)],
        "text_bytes": total,
        "fnv1a64": str(h),
        "samples": {str(i): rows[i][1] + " " + rows[i][2] for i in (0, 1, with_backslash, len(rows) - 1)},
        "splits": [split_summary(labels, 0.1, 42), split_summary(labels, 0.25, 7)],
    }
    with open(os.path.join(out, "ag_news.expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)


def make_split_small(out):
    # Uneven classes exercise rounding (0.5 rounds away from zero) and tiny classes.
    labels = [0] * 5 + [1] * 1 + [2] * 10 + [0] * 2 + [3] * 3
    cases = [split_summary(labels, f, s) for f, s in ((0.5, 0), (0.5, 1), (0.3, 99), (1.0, 3), (0.0, 3))]
    for c in cases:
        c["second"] = stratified_split(labels, c["fraction"], c["seed"])[1]
    with open(os.path.join(out, "split_small.expected.json"), "w") as f:
        json.dump({"labels": labels, "mt19937_64_seed5489_first": str(MT19937_64(5489)()), "cases": cases}, f)


def make_checkpoints(out):
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel
    from safetensors.torch import load_file

    torch.manual_seed(0)
    small = dict(vocab_size=50, n_positions=16, n_embd=8, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    cls = GPT2ForSequenceClassification(
        GPT2Config(**small, pad_token_id=0, id2label=dict(enumerate(labels)),
                   label2id={l: i for i, l in enumerate(labels)})
    ).half()
    d = os.path.join(out, "tiny_cls_f16")
    cls.save_pretrained(d)
    # fp32 values as torch converts them, for checking our F16 -> F32 path.
    state = load_file(os.path.join(d, "model.safetensors"))
    save_file({k: v.float() for k, v in state.items() if k in ("score.weight", "transformer.h.1.mlp.c_fc.weight")},
              os.path.join(out, "tiny_cls_f16.expected_f32.safetensors"))

    lm = GPT2LMHeadModel(GPT2Config(**small)).to(torch.bfloat16)
    d = os.path.join(out, "tiny_lm_bf16_sharded")
    lm.save_pretrained(d, max_shard_size="2KB")
    # Parameter counts by component, from transformers itself, for the full
    # GPT-2 124M geometry (built on the meta device: no memory, no weights).
    counts = {}
    with torch.device("meta"):
        for name, model in (("GPT2LMHeadModel", GPT2LMHeadModel(GPT2Config())),
                            ("GPT2ForSequenceClassification4", GPT2ForSequenceClassification(GPT2Config(num_labels=4)))):
            comp = {}
            for pname, p in model.named_parameters():  # tied lm_head is listed once, as wte
                pname = pname.removeprefix("transformer.")
                parts = pname.split(".")
                key = parts[0] if parts[0] != "h" else {"attn": "attn", "mlp": "mlp"}.get(parts[2], "ln")
                key = {"score": "score", "ln_f": "ln_f", "wte": "wte", "wpe": "wpe"}.get(key, key)
                comp[key] = comp.get(key, 0) + p.numel()
            counts[name] = {"total": sum(p.numel() for p in model.parameters()), "by_component": comp}
    with open(os.path.join(out, "gpt2_param_counts.json"), "w") as f:
        json.dump(counts, f, indent=1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "io"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    make_safetensors(args.out)
    make_csv(args.out)
    make_ag_news(args.data, args.out)
    make_split_small(args.out)
    make_checkpoints(args.out)


if __name__ == "__main__":
    main()
