#!/usr/bin/env python3
"""Checks a `gpt2q finetune` output directory with transformers: it must load
as GPT2ForSequenceClassification / GPT2LMHeadModel (as its config says) with
its own tokenizer files, and give the logits gpt2q gives (`gpt2q logits --json`).

    python3 tools/check_finetune_output.py OUT [--gpt2q build/gpt2q] [--text T ...] [--tol 1e-4]

Checks OUT and OUT/last. Prints one line per text and model dir; exits 1 on
any mismatch (ids differ, or max |logit diff| > tol * max(1, max |logit|)).
"""
import argparse
import json
import os
import subprocess
import sys

import torch
from transformers import AutoConfig, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2TokenizerFast

TEXTS = [
    "Stocks fell sharply on Wall Street as oil prices hit a record high.",
    "The Red Sox beat the Yankees 5-3 to win the pennant.",
    "NASA's new probe sent back its first images of Saturn's moons.",
    "Leaders met in Geneva to discuss the ceasefire.",
]


def check_dir(model_dir, gpt2q, texts, tol):
    cfg = AutoConfig.from_pretrained(model_dir)
    arch = (cfg.architectures or [""])[0]
    cls = {"GPT2ForSequenceClassification": GPT2ForSequenceClassification, "GPT2LMHeadModel": GPT2LMHeadModel}.get(arch)
    if cls is None:
        print(f"{model_dir}: unexpected architectures {cfg.architectures}")
        return False
    model = cls.from_pretrained(model_dir).eval()
    tok = GPT2TokenizerFast.from_pretrained(model_dir)
    if arch == "GPT2ForSequenceClassification":
        print(f"{model_dir}: {arch}, num_labels {cfg.num_labels}, id2label {cfg.id2label}, pad_token_id {cfg.pad_token_id}")
    else:
        print(f"{model_dir}: {arch}")
    cmd = [gpt2q, "logits", "--json", "--model", model_dir]
    for t in texts:
        cmd += ["--text", t]
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    ok = True
    for i, text in enumerate(texts):
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits
        ref = logits[0] if arch == "GPT2ForSequenceClassification" else logits[0, -1]
        got = torch.tensor(ours["logits"][i])
        same_ids = ids == ours["ids"][i]
        diff = (got - ref).abs().max().item()
        scale = max(1.0, ref.abs().max().item())
        good = same_ids and diff <= tol * scale
        ok &= good
        shown = ref[:4].tolist() if arch == "GPT2ForSequenceClassification" else f"argmax {int(ref.argmax())}"
        print(f"  text {i}: {len(ids)} tokens, ids {'equal' if same_ids else 'DIFFER'}, "
              f"max |diff| {diff:.3g} (scale {scale:.3g}) {'ok' if good else 'MISMATCH'}; transformers {shown}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gpt2q", default=os.environ.get("GPT2Q", "build/gpt2q"))
    ap.add_argument("--text", action="append")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    texts = a.text or TEXTS
    ok = True
    for d in [a.out, os.path.join(a.out, "last")]:
        ok &= check_dir(d, a.gpt2q, texts, a.tol)
    print("OK: transformers loads the output and gives gpt2q's logits" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
