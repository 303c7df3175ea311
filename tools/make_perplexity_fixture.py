#!/usr/bin/env python3
"""Writes tests/fixtures/eval/perplexity_fake_gpt2.json: sliding-window
perplexity computed with transformers for ../shared/data/tiny-gpt2/fake_gpt2
on the first LINES lines of WikiText-2 raw test, for several (max_length,
stride). The loop is the one from the transformers guide "Perplexity of
fixed-length models" with the loss summed (reduction="sum") over the labels
that survive the shift, so the token count is exact.

    python3 tools/make_perplexity_fixture.py [--data ../shared/data]
"""
import argparse
import json
import math
import pathlib

import torch
import transformers
from transformers import GPT2LMHeadModel, GPT2TokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "eval" / "perplexity_fake_gpt2.json"
LINES = 20
SETTINGS = [(1024, 512), (256, 128), (256, 256), (100, 37), (64, 1)]


def perplexity(model, ids, max_length, stride):
    n = ids.size(1)
    nll_sum, count, windows, prev_end = 0.0, 0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        labels = input_ids.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            logits = model(input_ids).logits.double()
        shift_logits, shift_labels = logits[:, :-1, :], labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
            ignore_index=-100, reduction="sum")
        nll_sum += loss.item()
        count += int((shift_labels != -100).sum())
        windows += 1
        prev_end = end
        if end == n:
            break
    return {"max_length": max_length, "stride": stride, "windows": windows, "tokens": count,
            "nll": nll_sum / count, "ppl": math.exp(nll_sum / count)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data = pathlib.Path(args.data)
    model_dir = data / "tiny-gpt2" / "fake_gpt2"
    raw = (data / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    text = "".join(line + "\n" for line in raw.split("\n")[:LINES])  # LF only, as the test reads it
    tok = GPT2TokenizerFast.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tok(text, return_tensors="pt").input_ids
    doc = {
        "generator": "tools/make_perplexity_fixture.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": "tiny-gpt2/fake_gpt2",
        "text": f"first {LINES} lines of wikitext-2-raw/wiki.test.raw",
        "lines": LINES,
        "text_tokens": ids.size(1),
        "results": [perplexity(model, ids, L, S) for L, S in SETTINGS],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")
    for r in doc["results"]:
        print(r)


if __name__ == "__main__":
    main()
