#!/usr/bin/env python3
"""Reference fixtures for the optimizer side of the trainer (tests/fixtures/train_opt),
made with the libraries a user compares us with:

  adamw.safetensors     torch.optim.AdamW (single-tensor path, foreach=False,
                        as HF's Trainer groups it: decay / no-decay), driven by
                        transformers.get_linear_schedule_with_warmup, 5 steps
                        of given gradients. Holds the initial params, the
                        gradients of every step, the params after every step,
                        exp_avg / exp_avg_sq after the last step and the lr
                        used at every step (f64).
  schedule.json         get_linear_schedule_with_warmup lr after every
                        scheduler step, for a few (warmup, total) pairs.
  clip.safetensors      torch.nn.utils.clip_grad_norm_ (default, CPU) on a
                        set of gradients: the total norm it returns and the
                        clipped gradients, once above and once below max_norm.

    python3 tools/make_adamw_fixtures.py [--out tests/fixtures/train_opt]

Deterministic (torch.manual_seed); a few KB.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import get_linear_schedule_with_warmup

# name, shape, decay (HF Trainer: no decay for biases and LayerNorm weights).
# Sizes include tails that are not a multiple of the SIMD width (torch's CPU
# kernels handle those with their scalar loop).
PARAMS = [
    ("h.0.attn.c_attn.weight", (8, 24), True),
    ("h.0.attn.c_attn.bias", (24,), False),
    ("h.0.ln_1.weight", (37,), False),
    ("score.weight", (3, 101), True),
]
STEPS = 5
LR = 1e-3
WEIGHT_DECAY = 0.01
WARMUP = 2
TOTAL = 5


def make_adamw(out):
    g = torch.Generator().manual_seed(20261123)
    params = [torch.nn.Parameter(torch.randn(shape, generator=g)) for _, shape, _ in PARAMS]
    tensors = {}
    for (name, _, _), p in zip(PARAMS, params):
        tensors[f"init/{name}"] = p.detach().clone()
    groups = [
        {"params": [p for p, (_, _, d) in zip(params, PARAMS) if d], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p, (_, _, d) in zip(params, PARAMS) if not d], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, WARMUP, TOTAL)
    lrs = []
    for step in range(STEPS):
        for (name, shape, _), p in zip(PARAMS, params):
            # Gradients of varied magnitude, some exactly zero.
            grad = torch.randn(shape, generator=g) * (10.0 ** (step - 2))
            grad[..., 0] = 0.0
            p.grad = grad
            tensors[f"grad/{step}/{name}"] = grad.clone()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        for (name, _, _), p in zip(PARAMS, params):
            tensors[f"param/{step}/{name}"] = p.detach().clone()
    for (name, _, _), p in zip(PARAMS, params):
        st = opt.state[p]
        tensors[f"exp_avg/{name}"] = st["exp_avg"].clone()
        tensors[f"exp_avg_sq/{name}"] = st["exp_avg_sq"].clone()
    tensors["lr"] = torch.tensor(lrs, dtype=torch.float64)
    meta = {
        "names": json.dumps([n for n, _, _ in PARAMS]),
        "decay": json.dumps([d for _, _, d in PARAMS]),
        "steps": str(STEPS), "lr": repr(LR), "weight_decay": repr(WEIGHT_DECAY),
        "warmup": str(WARMUP), "total": str(TOTAL),
        "torch": torch.__version__,
    }
    save_file(tensors, os.path.join(out, "adamw.safetensors"), metadata=meta)

    # (On CPU foreach=None means foreach=False: torch's foreach kernels are GPU-only.)
    print("adamw: lrs", lrs)


def make_schedule(out):
    cases = []
    for warmup, total in [(0, 6), (3, 10), (4, 4), (6, 4), (1, 1)]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=2e-5)
        sched = get_linear_schedule_with_warmup(opt, warmup, total)
        lrs = []
        for _ in range(total + 2):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        cases.append({"base_lr": 2e-5, "warmup": warmup, "total": total,
                      "lr_at_step": [float.hex(x) for x in lrs]})
    with open(os.path.join(out, "schedule.json"), "w") as f:
        json.dump({"cases": cases, "note": "lr_at_step[k] = lr used by optimizer step k+1 (hex floats)"}, f, indent=1)
        f.write("\n")


def make_clip(out):
    g = torch.Generator().manual_seed(7)
    shapes = [(8, 24), (24,), (37,), (3, 101)]
    tensors = {}
    for case, (scale, max_norm) in enumerate([(1.0, 1.0), (0.01, 1.0)]):
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for i, p in enumerate(params):
            p.grad = torch.randn(shapes[i], generator=g) * scale
            tensors[f"{case}/grad/{i}"] = p.grad.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        tensors[f"{case}/total_norm"] = total.reshape(1).clone()
        tensors[f"{case}/max_norm"] = torch.tensor([max_norm], dtype=torch.float64)
        for i, p in enumerate(params):
            tensors[f"{case}/clipped/{i}"] = p.grad.clone()
        print(f"clip case {case}: total norm {total.item()}")
    save_file(tensors, os.path.join(out, "clip.safetensors"), metadata={"cases": "2", "tensors": str(len(shapes))})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/train_opt")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    make_adamw(a.out)
    make_schedule(a.out)
    make_clip(a.out)


if __name__ == "__main__":
    main()
