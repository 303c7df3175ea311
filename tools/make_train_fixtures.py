#!/usr/bin/env python3
"""Makes the gradient fixtures of gpt2q's CPU trainer (tests/fixtures/train).

    python3 tools/make_train_fixtures.py --out tests/fixtures/train

For each small GPT-2 below it writes NAME/ (config.json + model.safetensors,
as transformers' save_pretrained writes them) and NAME.ref.safetensors with a
fixed right-padded batch and what PyTorch computes for it in eval mode
(dropout off): the loss, the logits, and the gradient of every parameter after
loss.backward() (canonical names, prefixed "grad."). NAME.ref.json holds the
loss in full precision and the order of model.named_parameters().
CPU, seeded: the files are the same on every run of the same versions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file as save_np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_models as fm  # noqa: E402

VOCAB = 512  # eos = 511


def spec(name, head, n_embd, n_layer, n_head, seed, pad_id=None, n_inner=None):
    return fm.ModelSpec(name, "", head, VOCAB, n_embd, n_layer, n_head, 64, n_inner=n_inner, seed=seed, pad_id=pad_id)


# (spec, config overrides, batch rows' lengths, sequence length)
FIXTURES = [
    # Classifier: pad_token_id 510 != eos; rows of different lengths, right padded.
    (spec("cls", "cls", 32, 2, 2, 21, pad_id=510), {}, [16, 9, 13, 4], 16),
    # LM with the tied head, n_inner 48, 4 heads; padded rows ignored in the loss.
    (spec("lm", "lm", 32, 2, 4, 22, n_inner=48), {}, [20, 11, 17], 20),
    # Exact (erf) GELU, attention scaled by 1 / (layer + 1), eps 1e-4, no padding.
    (spec("lm-gelu-scaled", "lm", 32, 2, 2, 23),
     {"activation_function": "gelu", "scale_attn_by_inverse_layer_idx": True, "layer_norm_epsilon": 1e-4},
     [12, 12], 12),
]


def make_batch(rng, lengths, seq, pad_id, avoid):
    ids = np.full((len(lengths), seq), pad_id, dtype=np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = fm.random_ids(rng, n, VOCAB, avoid)
    return ids


def build(spec_, overrides):
    cfg = fm.make_config(spec_)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(spec_.seed)
    model = fm.model_class(spec_.head)(cfg)
    fm.widen_weights(model, spec_.seed)
    return model


def canonical(name):
    return name.removeprefix("transformer.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for spec_, overrides, lengths, seq in FIXTURES:
        model = build(spec_, overrides)
        model_dir = os.path.join(args.out, spec_.name)
        model.save_pretrained(model_dir, safe_serialization=True)
        # Reload as a user would, eager attention, eval mode (no dropout).
        cls = fm.model_class(spec_.head)
        model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
        rng = np.random.default_rng(spec_.seed)
        eos = spec_.eos_id
        pad = spec_.pad_id if spec_.pad_id is not None else eos
        ids = make_batch(rng, lengths, seq, pad, {pad, eos})
        mask = np.zeros_like(ids)
        for b, n in enumerate(lengths):
            mask[b, :n] = 1
        x = torch.tensor(ids)
        am = torch.tensor(mask)
        out_tensors = {"input_ids": ids.astype(np.int32), "lengths": np.array(lengths, dtype=np.int64)}
        if spec_.head == "cls":
            labels = rng.integers(0, len(fm.AG_NEWS_LABELS), size=len(lengths))
            out = model(input_ids=x, attention_mask=am, labels=torch.tensor(labels))
            out_tensors["labels"] = labels.astype(np.int32)
        else:
            labels = x.clone()
            labels[am == 0] = -100
            out = model(input_ids=x, attention_mask=am, labels=labels)
        out.loss.backward()
        out_tensors["loss"] = np.array([out.loss.item()], dtype=np.float64)
        out_tensors["logits"] = out.logits.detach().numpy().astype(np.float32)
        order = []
        for name, p in model.named_parameters():
            order.append(canonical(name))
            out_tensors["grad." + canonical(name)] = p.grad.detach().numpy().astype(np.float32)
        save_np(out_tensors, os.path.join(args.out, spec_.name + ".ref.safetensors"))
        meta = {"loss": out.loss.item(), "parameters": order, "lengths": lengths, "config_overrides": overrides,
                "torch": torch.__version__, "transformers": transformers.__version__}
        with open(os.path.join(args.out, spec_.name + ".ref.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        print(f"{spec_.name}: loss {out.loss.item():.6f}, {len(order)} parameters")


if __name__ == "__main__":
    main()
