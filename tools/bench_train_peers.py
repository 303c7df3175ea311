#!/usr/bin/env python3
"""The peers' side of gpt2q's GPU training benchmark (issue 13, section 3).

Times PyTorch training of the GPT-2 124M geometry on one CUDA GPU, on the
shapes `gpt2q bench-train --device cuda` measures, and writes every figure to
one JSON file:

  python3 tools/bench_train_peers.py --out train_peers.json [--steps 20]
      [--only NAMES] [--quick]

Setups (--only takes a comma list; default: all):
  cls-fp32            GPT2ForSequenceClassification (4 labels), batch 16 x 128,
                      fp32 eager, torch.optim.AdamW (its default foreach path)
  cls-bf16            the same under torch.autocast(bfloat16), AdamW(fused=True)
  cls-bf16-compile    cls-bf16 with torch.compile(model)
  lm-bf16             GPT2LMHeadModel, batch 16 x 1024, bf16 autocast, fused AdamW
  lm-bf16-compile     lm-bf16 with torch.compile(model)
  (--quick: batch 4, the classifier only, 5 steps: a smoke run)

Every setup, as gpt2q bench-train does it: HF's initialisation of the 124M
geometry (GPT2Config() defaults: 768 x 12 x 12, vocab 50257), dropout 0.1 in
train mode, seeded random tokens with every position real (no padding),
labels b % 4; one step = zero_grad(set_to_none=True), forward, loss,
backward, clip_grad_norm_(1.0), AdamW step (lr 1e-4, the loss read back as a
Python float each step, as a training loop logs it). Three warm-up steps
(compile: five, which also compile) are not timed; then --steps steps are
timed together with torch.cuda.synchronize() on both ends. tokens/s = batch
x seq x steps / seconds; peak memory is torch.cuda.max_memory_allocated over
the timed steps (reset after warm-up); model FLOPs per token as gpt2q counts
them (6 per weight of every product, the LM head's included, + 12 L C T), so
the achieved TFLOP/s compare directly.

Each setup runs in try/except (a failure is recorded, the run goes on) and
the JSON is rewritten after each.
"""
import argparse
import json
import os
import platform
import sys
import time
import traceback


def log(msg):
    print(msg, file=sys.stderr, flush=True)


SETUPS = {
    "cls-fp32": dict(task="classify", batch=16, seq=128, bf16=False, compile=False),
    "cls-bf16": dict(task="classify", batch=16, seq=128, bf16=True, compile=False),
    "cls-bf16-compile": dict(task="classify", batch=16, seq=128, bf16=True, compile=True),
    "lm-bf16": dict(task="lm", batch=16, seq=1024, bf16=True, compile=False),
    "lm-bf16-compile": dict(task="lm", batch=16, seq=1024, bf16=True, compile=True),
}


def flops_per_token(cfg, lm, seq):
    C, L = cfg.n_embd, cfg.n_layer
    inner = cfg.n_inner or 4 * C
    weights = L * (C * 3 * C + C * C + 2 * C * inner)
    if lm:
        weights += cfg.vocab_size * C
    return 6 * weights + 12 * L * C * seq


def run_setup(torch, transformers, name, s, steps):
    cfg = transformers.GPT2Config()  # 124M; dropout 0.1 everywhere
    torch.manual_seed(0)
    if s["task"] == "classify":
        cfg.num_labels = 4
        cfg.pad_token_id = cfg.eos_token_id
        model = transformers.GPT2ForSequenceClassification(cfg)
    else:
        model = transformers.GPT2LMHeadModel(cfg)
    model = model.cuda().train()
    params = sum(p.numel() for p in model.parameters())
    fused = s["bf16"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused) if fused else \
        torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if s["compile"] else model
    g = torch.Generator(device="cpu").manual_seed(1234)
    B, T = s["batch"], s["seq"]
    ids = torch.randint(0, 50000, (B, T), generator=g).cuda()
    labels = (torch.arange(B) % 4).cuda() if s["task"] == "classify" else ids

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=s["bf16"]):
            out = fwd(input_ids=ids, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return out.loss.item()

    warm = 5 if s["compile"] else 3
    t0 = time.perf_counter()
    for _ in range(warm):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = 0.0
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    tps = B * T * steps / secs
    fpt = flops_per_token(cfg, s["task"] == "lm", T)
    rec = dict(setup=name, task=s["task"], batch=B, seq=T, bf16=s["bf16"], compile=s["compile"],
               parameters=params, steps_timed=steps, seconds=secs, step_ms=secs / steps * 1e3,
               tokens_per_s=tps, model_flops_per_token=fpt, achieved_tflops=tps * fpt / 1e12,
               peak_memory_bytes=torch.cuda.max_memory_allocated(), warmup_seconds=warm_s, last_loss=loss)
    del fwd, model, opt
    torch.cuda.empty_cache()
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write (rewritten after every setup)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setup")
    ap.add_argument("--only", help="comma list of setups")
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 4, classifier setups, 5 steps")
    ap.add_argument("--commit", default="", help="gpt2q commit, recorded")
    a = ap.parse_args(argv)
    names = list(SETUPS)
    if a.only:
        names = [n.strip() for n in a.only.split(",") if n.strip()]
        bad = [n for n in names if n not in SETUPS]
        if bad:
            ap.error("unknown setup(s) %s; choose from %s" % (", ".join(bad), ", ".join(SETUPS)))
    if a.steps < 1:
        ap.error("--steps must be at least 1")
    import torch
    import transformers
    if not torch.cuda.is_available():
        log("bench_train_peers: no CUDA device")
        return 2
    steps = 5 if a.quick else a.steps
    doc = dict(tool="tools/bench_train_peers.py", commit=a.commit, command=" ".join(sys.argv),
               gpu=torch.cuda.get_device_name(0), torch=torch.__version__, transformers=transformers.__version__,
               python=platform.python_version(), results=[])
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as gpt2q's exactness path
    torch.backends.cudnn.allow_tf32 = False
    for n in names:
        s = dict(SETUPS[n])
        if a.quick:
            if s["task"] != "classify":
                continue
            s["batch"] = 4
        log("== %s" % n)
        try:
            rec = run_setup(torch, transformers, n, s, steps)
            log("%s: %.0f tokens/s, %.1f ms/step, %.1f TFLOP/s, peak %.2f GB" % (
                n, rec["tokens_per_s"], rec["step_ms"], rec["achieved_tflops"], rec["peak_memory_bytes"] / 1e9))
        except Exception as e:  # a failed setup is a figure too
            rec = dict(setup=n, error="%s: %s" % (type(e).__name__, e), traceback=traceback.format_exc()[-2000:])
            log("%s failed: %s" % (n, rec["error"]))
            torch.cuda.empty_cache()
        doc["results"].append(rec)
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
