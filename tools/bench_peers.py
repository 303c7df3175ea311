#!/usr/bin/env python3
"""The peers' side of gpt2q's GPU benchmark (issue 12, section 5).

Times PyTorch (eager fp32/fp16/bf16, torch.compile reduce-overhead) and
transformers + bitsandbytes (LLM.int8(), NF4, NF4 + double quant, FP4) on one
CUDA GPU, on the same 124M-geometry checkpoints and the same texts that gpt2q
measures, and writes every figure to one JSON file (read by
tools/gpu_bench_report.py next to gpt2q's own figures).

  python3 tools/bench_peers.py --model CLS_DIR --lm-model LM_DIR \\
      --tokenizer TOK_DIR --agnews test.csv --wikitext wiki.test.raw \\
      --out peers.json [--quick] [--only NAMES] [--commit SHA]

CLS_DIR / LM_DIR: `gpt2q init --geometry 124m --task classify|lm --out DIR`
(config.json + model.safetensors, loaded with
GPT2ForSequenceClassification / GPT2LMHeadModel.from_pretrained).

Texts and tokens (the same as gpt2q's):
  * AG News test.csv: Python's csv module (gpt2q's CSV reader reads the same
    records), text = title + " " + description (src/io/dataset.cpp), in file
    order, each tokenized on its own, no special tokens added, cut to its first
    128 tokens (gpt2q eval's default --max-length).
  * Tokenizer: the `tokenizers` library built from TOK_DIR/vocab.json +
    merges.txt exactly as transformers' GPT-2 tokenizer builds it (byte-level
    BPE, no prefix space, <|endoftext|> as a special token); no hub access. When
    the repository's tests/fixtures/tokenizer/*.safetensors (made by
    transformers' tokenizer, and which gpt2q's tokenizer is tested against)
    were made from the same data files (sha256 in meta.json), every text's ids
    are compared with them, and the result is in the JSON ("token_check").
  * WikiText-2 test: the whole file as one string, tokenized once (as
    `gpt2q perplexity` does).

Setups (--only takes a comma list of these names; default: all; with --quick:
eager-fp32, eager-fp16-pad128, the four bnb-*, lm-fp16, lm-nf4):
  classify, GPT2ForSequenceClassification:
    eager-fp32, eager-fp16, eager-bf16     eager PyTorch at real lengths
    eager-fp16-pad128                      eager fp16, every input padded to 128
    compile-fp16, compile-bf16             torch.compile(mode="reduce-overhead",
                                           dynamic=False), inputs padded to 128
                                           (static shapes: 1x128 and 256x128)
    bnb-int8                               LLM.int8(), threshold 6.0, fp16
    bnb-nf4                                NF4, fp16 compute
    bnb-nf4-dq-bf16                        NF4 + double quant, bf16 compute
    bnb-fp4                                FP4, fp16 compute
  LM, GPT2LMHeadModel (perplexity + greedy decode):
    lm-fp32, lm-fp16, lm-nf4 (NF4, fp16 compute)
  bitsandbytes setups go through transformers' BitsAndBytesConfig with its
  default module selection (the block projections; wte/wpe, the LM head and
  the score head stay unquantized), blocksize 64.

Measures (each setup on its own, in try/except: a failure is recorded and the
run goes on; the JSON is rewritten after every setup, so a run cut short still
leaves every finished figure):
  * classify batch 1: the first N texts (500; --quick 20), one at a time at
    its real length (padded setups: padded to 128 with attention_mask),
    use_cache=False, after 3 warm-up calls (compile: 3 per shape, which also
    compiles and records the CUDA graph; that time is reported apart). Each
    sample is timed with torch.cuda.synchronize() + perf_counter around the
    forward; ids are on the device beforehand (tokenization and upload are
    not timed). Mean, p50, p90, p99, min ms/sample; argmax per sample.
  * classify batch 256: the first 10 x 256 = 2,560 texts (--quick 2 batches),
    in file order, not sorted; each batch right-padded with pad_token_id
    (= eos, 50256) to its longest text (padded setups: to 128), attention_mask
    set. One warm-up batch (the first; compile: 3), then all batches timed
    together (one synchronize at the end): samples/s, real tokens/s.
    torch.cuda.max_memory_allocated() of that phase (peak stats reset before
    the warm-up), and the weights: model.get_memory_footprint(), parameters +
    buffers on the device, bitsandbytes' quant states (absmax, nested absmax,
    code, SCB) which get_memory_footprint() leaves out, and
    torch.cuda.memory_allocated() right after loading.
  * perplexity (LM setups): WikiText-2 test, windows of 1024 tokens, stride
    512, the window schedule of transformers' guide with gpt2q's exact token
    count (src/eval/perplexity.cpp, docs/eval.md): window [b, e) scores the
    positions [max(prev_end, b + 1), e), so tokens = N - 1. The LM head runs
    on the scored rows only (logits_to_keep), as gpt2q does; NLL = sum of
    fp32 cross-entropy of the logits (upcast), summed in fp64 on the device.
    One warm-up window, then the whole pass timed (--quick: the first 16
    windows). Wall time, perplexity, tokens, windows.
  * greedy decode (LM setups): model.generate(max_new_tokens=128,
    min_new_tokens=128, do_sample=False) from a fixed 16-token prompt, batch
    1, after a short warm-up; tokens/s = 128 / wall time of the call (prefill
    of the prompt included). 3 timed runs (--quick, lm-nf4: 1); the ids of
    the first run are recorded (`gpt2q generate --greedy --max-new-tokens 128
    --prompt "<prompt text>"` should give the same on the same weights, as
    long as its output holds no <|endoftext|>: min_new_tokens bans that id,
    gpt2q only does not stop at it).
  * fp32 reference: the argmax of eager-fp32 for each of the first N texts and
    its logits for the first 8 ("fp32_reference"); every classify setup
    reports its agreement with it.

Needs: torch, transformers, tokenizers, numpy, safetensors; bitsandbytes and
accelerate for the bnb setups (transformers' bnb quantizers import
accelerate). Exits with status 2 and one line on stderr when no CUDA device is
usable.
"""
from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

MAX_LENGTH = 128          # gpt2q eval's default --max-length (n_positions 1024 > 128)
PAD_TO = 128              # the padded setups (issue 12's "padded to 128")
BATCH = 256
PPL_MAX_LENGTH = 1024
PPL_STRIDE = 512
DECODE_NEW_TOKENS = 128
# 16 GPT-2 tokens: [818, 7795, 11, 262, 1664, 3414, 326, 340, 561, 1382, 257, 649, 8860, 1474, 262, 7850]
DECODE_PROMPT = "In 1998, the company announced that it would build a new factory near the river"
DECODE_PROMPT_TOKENS = 16
EOS_ID = 50256
SCHEMA = 1

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (kind, precision, engine, label, options)
SETUPS = {
    "eager-fp32": ("classify", "fp32", "pytorch", "PyTorch fp32, eager", {"dtype": "float32"}),
    "eager-fp16": ("classify", "fp16", "pytorch", "PyTorch fp16, eager", {"dtype": "float16"}),
    "eager-bf16": ("classify", "bf16", "pytorch", "PyTorch bf16, eager", {"dtype": "bfloat16"}),
    "eager-fp16-pad128": ("classify", "fp16", "pytorch", "PyTorch fp16, eager, padded to 128",
                          {"dtype": "float16", "pad": True}),
    "bnb-int8": ("classify", "llm-int8", "bitsandbytes", "bitsandbytes LLM.int8() (fp16, threshold 6.0)",
                 {"dtype": "float16", "bnb": "int8"}),
    "bnb-nf4": ("classify", "nf4", "bitsandbytes", "bitsandbytes NF4, fp16 compute",
                {"dtype": "float16", "bnb": "nf4", "compute": "float16"}),
    "bnb-nf4-dq-bf16": ("classify", "nf4-dq", "bitsandbytes", "bitsandbytes NF4 + double quant, bf16 compute",
                        {"dtype": "bfloat16", "bnb": "nf4", "compute": "bfloat16", "double_quant": True}),
    "bnb-fp4": ("classify", "fp4", "bitsandbytes", "bitsandbytes FP4, fp16 compute",
                {"dtype": "float16", "bnb": "fp4", "compute": "float16"}),
    "lm-fp32": ("lm", "fp32", "pytorch", "PyTorch fp32, eager (LM)", {"dtype": "float32", "row": "eager-fp32"}),
    "lm-fp16": ("lm", "fp16", "pytorch", "PyTorch fp16, eager (LM)", {"dtype": "float16", "row": "eager-fp16"}),
    "lm-nf4": ("lm", "nf4", "bitsandbytes", "bitsandbytes NF4, fp16 compute (LM)",
               {"dtype": "float16", "bnb": "nf4", "compute": "float16", "row": "bnb-nf4", "decode_runs": 1}),
    "compile-fp16": ("classify", "fp16", "pytorch",
                     "PyTorch fp16, torch.compile reduce-overhead (CUDA graphs, padded to 128)",
                     {"dtype": "float16", "pad": True, "compile": True}),
    "compile-bf16": ("classify", "bf16", "pytorch",
                     "PyTorch bf16, torch.compile reduce-overhead (CUDA graphs, padded to 128)",
                     {"dtype": "bfloat16", "pad": True, "compile": True}),
}
# --quick without --only: one setup per code path (eager at real length, padded batch 1, each bnb format, LM
# with and without bnb), leaving out the compile setups (their compilation alone takes longer than a smoke test).
QUICK_DEFAULT = ["eager-fp32", "eager-fp16-pad128", "bnb-int8", "bnb-nf4", "bnb-nf4-dq-bf16", "bnb-fp4", "lm-fp16",
                 "lm-nf4"]


def fail(msg: str, status: int = 2):
    print(f"bench_peers.py: error: {msg}", file=sys.stderr)
    sys.exit(status)


def log(msg: str):
    print(msg, flush=True)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- data (no torch)

def load_tokenizer(tok_dir: str):
    """GPT-2's byte-level BPE as transformers builds it (models/gpt2/tokenization_gpt2.py)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab, merges = BPE.read_file(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                        end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    got = tok.encode("Hello world", add_special_tokens=False).ids
    if got != [15496, 995]:
        raise RuntimeError(f"{tok_dir}: 'Hello world' gave {got}, not [15496, 995]: not the GPT-2 tokenizer")
    if tok.token_to_id("<|endoftext|>") != EOS_ID:
        raise RuntimeError(f"{tok_dir}: <|endoftext|> is not id {EOS_ID}")
    return tok


def encode_all(tok, texts):
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def read_agnews(path: str):
    """(texts, labels) as gpt2q's load_agnews builds them: title + " " + description, label - 1."""
    texts, labels = [], []
    # utf-8-sig: gpt2q drops a leading byte-order mark; newline="": quoted fields keep their line breaks.
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 3:
                raise RuntimeError(f"{path}: record {n}: expected 3 fields (label, title, description), got {len(row)}")
            texts.append(row[1] + " " + row[2])
            labels.append(int(row[0]) - 1)
    if not texts:
        raise RuntimeError(f"{path}: no rows")
    return texts, labels


def read_wikitext(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def perplexity_windows(n_tokens: int, max_length: int, stride: int):
    """gpt2q's perplexity_windows (src/eval/perplexity.cpp): (begin, end, score_begin)."""
    windows, prev_end, begin = [], 0, 0
    while begin < n_tokens:
        end = min(begin + max_length, n_tokens)
        windows.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
        begin += stride
    return windows


def check_against_fixtures(agnews_path, wiki_path, tok_dir, agnews_ids, wiki_ids):
    """Compares our ids with tests/fixtures/tokenizer (the reference gpt2q's tokenizer is tested against)."""
    fx = os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizer")
    meta_path = os.path.join(fx, "meta.json")
    if not os.path.isfile(meta_path):
        return {"status": "skipped", "why": f"{meta_path} not found"}
    import numpy as np
    from safetensors.numpy import load_file

    with open(meta_path) as f:
        sources = json.load(f).get("sources", {})
    out = {"status": "ok", "fixtures": os.path.relpath(fx, REPO_ROOT)}
    for name in ("vocab.json", "merges.txt"):
        if sources.get("gpt2-tokenizer/" + name) != sha256(os.path.join(tok_dir, name)):
            return {"status": "skipped", "why": f"{name} differs from the fixtures' source"}
    for key, path, seqs, fname in (("agnews", agnews_path, agnews_ids, "agnews.safetensors"),
                                   ("wikitext", wiki_path, [wiki_ids], "wiki_whole.safetensors")):
        src_key = "ag_news/test.csv" if key == "agnews" else "wikitext-2-raw/wiki.test.raw"
        if sources.get(src_key) != sha256(path):
            out[key] = "skipped: the data file is not the fixtures' source"
            continue
        d = load_file(os.path.join(fx, fname))
        ref_ids, offs = d["ids"].astype(np.int64), d["offsets"].astype(np.int64)
        if len(offs) != len(seqs) + 1:
            out[key] = f"MISMATCH: {len(offs) - 1} fixture sequences, {len(seqs)} here"
            out["status"] = "MISMATCH"
            continue
        ours = np.fromiter((t for s in seqs for t in s), dtype=np.int64)
        lens = np.fromiter((len(s) for s in seqs), dtype=np.int64)
        if not (np.array_equal(np.diff(offs), lens) and np.array_equal(ours, ref_ids)):
            bad = next(i for i, s in enumerate(seqs) if list(ref_ids[offs[i]:offs[i + 1]]) != list(s))
            out[key] = f"MISMATCH: sequence {bad} differs"
            out["status"] = "MISMATCH"
        else:
            out[key] = f"identical ({len(seqs)} sequences, {int(lens.sum())} ids)"
    return out


# ----------------------------------------------------------------------------- GPU helpers

def percentile(sorted_vals, q):
    """numpy's default (linear) percentile of an ascending list."""
    if not sorted_vals:
        return None
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def device_info(torch):
    p = torch.cuda.get_device_properties(0)
    info = {"name": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
            "total_memory_bytes": int(p.total_memory), "multiprocessors": int(p.multi_processor_count),
            "torch_cuda": torch.version.cuda}
    try:
        info["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        pass
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem,power.limit",
                            "--format=csv,noheader", "-i", "0"], capture_output=True, text=True, timeout=20)
        if r.returncode == 0:
            f = [x.strip() for x in r.stdout.strip().split(",")]
            info.update(driver=f[0], max_sm_clock=f[1], max_mem_clock=f[2], power_limit=f[3])
        r = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
        for line in r.stdout.splitlines():
            if "CUDA Version" in line:
                info["driver_cuda_version"] = line.split("CUDA Version:")[1].split()[0]
    except Exception as e:  # noqa: BLE001
        info["nvidia_smi"] = f"unavailable ({type(e).__name__})"
    return info


def versions(torch):
    v = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "tokenizers", "numpy", "safetensors", "bitsandbytes", "accelerate", "triton"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            v[mod] = f"not available ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
    return v


def free_gpu(torch):
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def weight_bytes(torch, model):
    """Bytes of the weights on the device, by every way of counting."""
    seen, params, buffers, qstate = set(), 0, 0, 0

    def count(t):
        if t is None or not isinstance(t, torch.Tensor) or t.device.type != "cuda":
            return 0
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype)
        if key in seen:
            return 0
        seen.add(key)
        return t.numel() * t.element_size()

    for p in model.parameters():
        params += count(p)
    for b in model.buffers():
        buffers += count(b)
    quant_layers = 0
    for m in model.modules():
        w = getattr(m, "weight", None)
        qs = getattr(w, "quant_state", None)
        if qs is not None:
            quant_layers += 1
            qstate += count(getattr(qs, "absmax", None)) + count(getattr(qs, "code", None))
            qstate += count(getattr(qs, "offset", None))
            s2 = getattr(qs, "state2", None)
            if s2 is not None:
                qstate += count(getattr(s2, "absmax", None)) + count(getattr(s2, "code", None))
        scb = getattr(w, "SCB", None)
        if scb is not None:
            quant_layers += 1 if qs is None else 0
            qstate += count(scb)
    out = {"params_bytes": params, "buffers_bytes": buffers, "quant_state_bytes": qstate,
           "total_bytes": params + buffers + qstate, "quantized_layers": quant_layers}
    try:
        out["get_memory_footprint"] = int(model.get_memory_footprint())
    except Exception as e:  # noqa: BLE001
        out["get_memory_footprint"] = f"failed: {e}"
    return out


def bnb_config(torch, opts):
    from transformers import BitsAndBytesConfig

    if opts["bnb"] == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=opts["bnb"],
                              bnb_4bit_compute_dtype=getattr(torch, opts["compute"]),
                              bnb_4bit_use_double_quant=bool(opts.get("double_quant")))


def load_model(torch, cls, path, opts):
    dtype = getattr(torch, opts["dtype"])
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    if opts.get("bnb"):
        model = cls.from_pretrained(path, dtype=dtype, quantization_config=bnb_config(torch, opts), device_map={"": 0})
    else:
        model = cls.from_pretrained(path, dtype=dtype).to("cuda")
    model.eval()
    torch.cuda.synchronize()
    info = {"load_seconds": time.perf_counter() - t0,
            "allocated_after_load_bytes": torch.cuda.memory_allocated() - before,
            "attn_implementation": getattr(model.config, "_attn_implementation", None)}
    if opts.get("bnb"):
        import bitsandbytes as bnb

        kinds = {}
        for name, m in model.named_modules():
            if isinstance(m, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)):
                kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
        info["bnb_layers"] = kinds
        info["quantization_config"] = model.config.quantization_config.to_dict() \
            if hasattr(model.config.quantization_config, "to_dict") else str(model.config.quantization_config)
    return model, info


# ----------------------------------------------------------------------------- classify

def classify_forward(torch, model, compiled):
    if compiled is None:
        def fwd(ids, mask):
            return model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    else:
        def fwd(ids, mask):
            torch.compiler.cudagraph_mark_step_begin()
            return compiled(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return fwd


def pad_batch(torch, seqs, length):
    ids = torch.full((len(seqs), length), EOS_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, :len(s)] = 1
    return ids.cuda(), mask.cuda()


def run_batch1(torch, fwd, seqs, padded, warmups, grad_ctx):
    if padded:
        inputs = [pad_batch(torch, [s], PAD_TO) for s in seqs]
    else:
        inputs = [(torch.tensor([s], dtype=torch.long, device="cuda"), None) for s in seqs]
    with grad_ctx():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(warmups):
            fwd(*inputs[0]).argmax(-1)
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        times, preds, logits8 = [], [], []
        for i, (ids, mask) in enumerate(inputs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            logits = fwd(ids, mask)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
            preds.append(logits.argmax(-1))
            if i < 8:
                logits8.append(logits[0].float().cpu().tolist())
        preds = torch.cat(preds).cpu().tolist()
    st = sorted(times)
    res = {"n": len(times), "mean_ms": sum(times) / len(times), "p50_ms": percentile(st, 50),
           "p90_ms": percentile(st, 90), "p99_ms": percentile(st, 99), "min_ms": st[0], "max_ms": st[-1],
           "warmup_calls": warmups, "warmup_seconds": warm,
           "tokens_per_sample_mean": sum(len(s) for s in seqs) / len(seqs),
           "sequence_length": f"padded to {PAD_TO}" if padded else "real length"}
    return res, preds, logits8


def run_batch256(torch, fwd, seqs, n_batches, padded, warmups, grad_ctx):
    batches, n = [], 0
    for b in range(n_batches):
        chunk = seqs[b * BATCH:(b + 1) * BATCH]
        batches.append(pad_batch(torch, chunk, PAD_TO if padded else max(len(s) for s in chunk)))
        n += len(chunk)
    real = sum(len(s) for s in seqs[:n_batches * BATCH])
    padded_tokens = sum(int(ids.numel()) for ids, _ in batches)
    free_gpu(torch)
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with grad_ctx():
        t0 = time.perf_counter()
        for _ in range(warmups):
            fwd(*batches[0]).argmax(-1)
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        preds = []
        t0 = time.perf_counter()
        for ids, mask in batches:
            preds.append(fwd(ids, mask).argmax(-1))
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        preds = torch.cat(preds).cpu().tolist()
    return {"samples": n, "batches": len(batches), "batch_size": BATCH, "seconds": secs,
            "samples_per_s": n / secs, "real_tokens": real, "real_tokens_per_s": real / secs,
            "padded_tokens": padded_tokens, "padded_lengths": [int(ids.shape[1]) for ids, _ in batches],
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
            "allocated_before_bytes": int(base),
            "peak_over_before_bytes": int(torch.cuda.max_memory_allocated() - base),
            "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()),
            "warmup_calls": warmups, "warmup_seconds": warm}, preds


def run_classify(torch, name, opts, args, data, state):
    from transformers import GPT2ForSequenceClassification

    rec = {}
    model, rec["load"] = load_model(torch, GPT2ForSequenceClassification, args.model, opts)
    compiled = None
    if opts.get("compile"):
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
    try:
        rec["weights"] = weight_bytes(torch, model)
        fwd = classify_forward(torch, model, compiled)
        # CUDA-graph trees are used under no_grad (their documented inference setting); eager under inference_mode.
        grad_ctx = torch.no_grad if compiled is not None else torch.inference_mode
        b1, preds, logits8 = run_batch1(torch, fwd, data["seqs"][:args.batch1_n], bool(opts.get("pad")), 3, grad_ctx)
        rec["batch1"] = b1
        b256, preds256 = run_batch256(torch, fwd, data["seqs"], args.batches, bool(opts.get("pad")),
                                      3 if compiled is not None else 1, grad_ctx)
        rec["batch256"] = b256
        k = min(len(preds), len(preds256))
        rec["batch256"]["agreement_with_batch1"] = sum(a == b for a, b in zip(preds[:k], preds256[:k])) / k
        rec["argmax_first_n"] = preds
        if name == "eager-fp32":
            state["fp32_reference"] = {"setup": name, "n": len(preds), "argmax": preds, "logits_first8": logits8}
        ref = state.get("fp32_reference")
        if ref is not None:
            k = min(len(ref["argmax"]), len(preds))
            rec["agreement_with_fp32"] = sum(a == b for a, b in zip(ref["argmax"][:k], preds[:k])) / k
        rec["logits_first8"] = logits8
    finally:
        del compiled, model
        if opts.get("compile"):
            try:
                torch._dynamo.reset()
            except Exception:  # noqa: BLE001
                pass
        free_gpu(torch)
    return rec


# ----------------------------------------------------------------------------- LM

def run_perplexity(torch, model, wiki_ids, max_windows):
    import torch.nn.functional as F

    windows = perplexity_windows(len(wiki_ids), PPL_MAX_LENGTH, PPL_STRIDE)
    full_tokens, full_windows = sum(e - s for _, e, s in windows), len(windows)
    if max_windows:
        windows = windows[:max_windows]
    ids = torch.tensor(wiki_ids, dtype=torch.long, device="cuda")

    def window_nll(b, e, s):
        out = model(input_ids=ids[None, b:e], use_cache=False, logits_to_keep=e - s + 1)
        logits = out.logits[0, :-1].float()           # rows s-1 .. e-2 (window-relative s-1-b ..)
        return F.cross_entropy(logits, ids[s:e], reduction="sum").double()

    with torch.inference_mode():
        b, e, s = windows[0]
        window_nll(b, e, s)                            # warm-up (untimed)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        nll = torch.zeros((), dtype=torch.float64, device="cuda")
        tokens = 0
        for b, e, s in windows:
            if e > s:
                nll += window_nll(b, e, s)
                tokens += e - s
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        nll = float(nll)
    mean = nll / tokens
    return {"seconds": secs, "ppl": math.exp(mean) if mean < 700 else float("inf"), "nll": mean,
            "tokens": tokens, "windows": len(windows), "text_tokens": len(wiki_ids),
            "full_pass": len(windows) == full_windows, "full_pass_windows": full_windows,
            "full_pass_tokens": full_tokens, "max_length": PPL_MAX_LENGTH, "stride": PPL_STRIDE,
            "lm_head_rows": "scored rows only (logits_to_keep)"}


def run_decode(torch, model, prompt_ids, runs):
    ids = torch.tensor([prompt_ids], dtype=torch.long, device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(attention_mask=mask, do_sample=False, pad_token_id=EOS_ID, eos_token_id=EOS_ID)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kw)   # warm-up
        times, first = [], None
        for _ in range(runs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, max_new_tokens=DECODE_NEW_TOKENS, min_new_tokens=DECODE_NEW_TOKENS, **kw)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            new = out[0, ids.shape[1]:].tolist()
            if len(new) != DECODE_NEW_TOKENS:
                raise RuntimeError(f"generate gave {len(new)} new tokens, not {DECODE_NEW_TOKENS}")
            if first is None:
                first = new
    return {"runs": runs, "new_tokens": DECODE_NEW_TOKENS, "prompt_tokens": len(prompt_ids),
            "seconds": times, "tokens_per_s_median": DECODE_NEW_TOKENS / statistics.median(times),
            "tokens_per_s_best": DECODE_NEW_TOKENS / min(times), "generated_ids": first,
            "timing": "wall time of model.generate (prefill of the prompt included)"}


def run_lm(torch, name, opts, args, data, state):
    from transformers import GPT2LMHeadModel

    rec = {}
    model, rec["load"] = load_model(torch, GPT2LMHeadModel, args.lm_model, opts)
    try:
        rec["weights"] = weight_bytes(torch, model)
        try:
            rec["perplexity"] = run_perplexity(torch, model, data["wiki_ids"], 16 if args.quick else None)
        except Exception as e:  # noqa: BLE001
            rec["perplexity"] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        runs = 1 if args.quick else opts.get("decode_runs", 3)
        try:
            rec["decode"] = run_decode(torch, model, data["prompt_ids"], runs)
        except Exception as e:  # noqa: BLE001
            rec["decode"] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    finally:
        del model
        free_gpu(torch)
    return rec


# ----------------------------------------------------------------------------- main

def summary_line(name, rec):
    if not rec.get("ok"):
        return f"{name:<18} FAILED: {rec.get('error')}"
    parts = []
    if "batch1" in rec:
        b = rec["batch1"]
        parts.append(f"b1 {b['mean_ms']:.3f} ms (p50 {b['p50_ms']:.3f}, n {b['n']})")
    if "batch256" in rec:
        b = rec["batch256"]
        parts.append(f"b256 {b['samples_per_s']:,.0f}/s peak {b['peak_allocated_bytes'] / 1e6:,.1f} MB")
    if "weights" in rec:
        w = rec["weights"]
        parts.append(f"weights {w['total_bytes'] / 1e6:.1f} MB (footprint {w['get_memory_footprint'] / 1e6:.1f})"
                     if isinstance(w.get("get_memory_footprint"), int) else f"weights {w['total_bytes'] / 1e6:.1f} MB")
    if "agreement_with_fp32" in rec:
        parts.append(f"agree fp32 {rec['agreement_with_fp32']:.3f}")
    p = rec.get("perplexity")
    if p:
        parts.append(f"ppl {p['ppl']:.4g} in {p['seconds']:.2f} s ({p['tokens']} tok)" if "error" not in p
                     else f"ppl FAILED: {p['error'][:120]}")
    d = rec.get("decode")
    if d:
        parts.append(f"decode {d['tokens_per_s_median']:.0f} tok/s (best {d['tokens_per_s_best']:.0f})"
                     if "error" not in d else f"decode FAILED: {d['error'][:120]}")
    compile_s = None
    if rec.get("batch1", {}).get("warmup_seconds") and SETUPS[name][4].get("compile"):
        compile_s = rec["batch1"]["warmup_seconds"] + rec["batch256"]["warmup_seconds"]
        parts.append(f"compile+capture {compile_s:.0f} s")
    return f"{name:<18} " + " | ".join(parts) + f" [{rec.get('seconds', 0):.0f} s]"


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GPT2ForSequenceClassification checkpoint (gpt2q init --task classify)")
    ap.add_argument("--lm-model", help="GPT2LMHeadModel checkpoint (gpt2q init --task lm)")
    ap.add_argument("--tokenizer", required=True, help="directory with vocab.json + merges.txt")
    ap.add_argument("--agnews", help="AG News test.csv (label,title,description; no header)")
    ap.add_argument("--wikitext", help="WikiText-2 wiki.test.raw")
    ap.add_argument("--out", required=True, help="JSON file to write (rewritten after every setup)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: batch 1 over 20 texts, 2 batches of 256, 16 perplexity windows, 1 decode run; "
                         "without --only, one setup per code path and no compile setup")
    ap.add_argument("--only", help="comma list of setups: " + ",".join(SETUPS))
    ap.add_argument("--commit", help="gpt2q commit to record (default: git rev-parse HEAD when available)")
    ap.add_argument("--batch1-n", type=int, help="texts timed at batch 1 (default 500; --quick 20)")
    ap.add_argument("--batches", type=int, help="batches of 256 timed (default 10; --quick 2)")
    args = ap.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in SETUPS]
        if unknown:
            ap.error(f"--only: unknown setup(s) {','.join(unknown)}; known: {','.join(SETUPS)}")
        args.setups = [n for n in SETUPS if n in names]  # registry order
    else:
        args.setups = list(QUICK_DEFAULT if args.quick else SETUPS)
    args.batch1_n = args.batch1_n or (20 if args.quick else 500)
    args.batches = args.batches or (2 if args.quick else 10)
    if args.batch1_n < 1 or args.batches < 1:
        ap.error("--batch1-n and --batches must be at least 1")
    kinds = {SETUPS[n][0] for n in args.setups}
    need = [("--tokenizer", args.tokenizer, "vocab.json"), ("--tokenizer", args.tokenizer, "merges.txt")]
    if "classify" in kinds:
        need += [("--model", args.model, "config.json"), ("--model", args.model, "model.safetensors"),
                 ("--agnews", args.agnews, None)]
    if "lm" in kinds:
        need += [("--lm-model", args.lm_model, "config.json"), ("--lm-model", args.lm_model, "model.safetensors"),
                 ("--wikitext", args.wikitext, None)]
    for opt, path, inner in need:
        if not path:
            ap.error(f"{opt} is required for the setups {','.join(args.setups)}")
        full = os.path.join(path, inner) if inner else path
        if not os.path.isfile(full):
            fail(f"{opt}: {full}: no such file")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        fail(f"--out: directory {out_dir} does not exist")
    return args


def git_commit():
    try:
        r = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return r.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        pass
    return None


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    try:
        import torch
    except ImportError as e:
        fail(f"PyTorch is not importable ({e}); this script runs on the GPU machine")
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else \
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA device or driver"
        fail(f"no CUDA device: {why}; bench_peers.py measures on a GPU only")
    try:
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001
        fail(f"the CUDA device is not usable: {type(e).__name__}: {str(e).splitlines()[0]}")
    try:
        import transformers  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        fail(f"{e}; needs transformers and tokenizers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
    # True fp32 for the fp32 setups (these are PyTorch's defaults; set so that a changed default cannot creep in).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    tok = load_tokenizer(args.tokenizer)
    data, data_info = {}, {"max_length": MAX_LENGTH}
    agnews_full = wiki_ids = None
    if any(SETUPS[n][0] == "classify" for n in args.setups):
        texts, _labels = read_agnews(args.agnews)
        agnews_full = encode_all(tok, texts)
        if any(len(s) == 0 for s in agnews_full):
            fail(f"{args.agnews}: a text has no tokens")
        need = max(args.batch1_n, args.batches * BATCH)
        if len(agnews_full) < need:
            fail(f"{args.agnews}: {len(agnews_full)} texts, {need} needed")
        data["seqs"] = [s[:MAX_LENGTH] for s in agnews_full[:need]]
        b1, b256 = data["seqs"][:args.batch1_n], data["seqs"][:args.batches * BATCH]
        data_info.update(agnews=os.path.abspath(args.agnews), agnews_sha256=sha256(args.agnews),
                         agnews_texts=len(texts), batch1_texts=len(b1), batch256_texts=len(b256),
                         batch1_mean_tokens=sum(map(len, b1)) / len(b1),
                         batch256_mean_tokens=sum(map(len, b256)) / len(b256),
                         truncated_to_max_length=sum(len(s) > MAX_LENGTH for s in agnews_full[:need]),
                         all_texts_mean_tokens=sum(map(len, agnews_full)) / len(agnews_full))
    if any(SETUPS[n][0] == "lm" for n in args.setups):
        wiki_ids = encode_all(tok, [read_wikitext(args.wikitext)])[0]
        data["wiki_ids"] = wiki_ids
        prompt = tok.encode(DECODE_PROMPT, add_special_tokens=False).ids
        if len(prompt) != DECODE_PROMPT_TOKENS:
            fail(f"the decode prompt has {len(prompt)} tokens, not {DECODE_PROMPT_TOKENS}")
        data["prompt_ids"] = prompt
        data_info.update(wikitext=os.path.abspath(args.wikitext), wikitext_sha256=sha256(args.wikitext),
                         wikitext_tokens=len(wiki_ids), decode_prompt=DECODE_PROMPT, decode_prompt_ids=prompt)
    try:
        token_check = check_against_fixtures(args.agnews, args.wikitext, args.tokenizer,
                                             agnews_full if agnews_full is not None else [],
                                             wiki_ids if wiki_ids is not None else []) \
            if agnews_full is not None and wiki_ids is not None else {"status": "skipped", "why": "needs both data sets"}
    except Exception as e:  # noqa: BLE001
        token_check = {"status": "error", "why": f"{type(e).__name__}: {e}"}
    if token_check.get("status") == "MISMATCH":
        log(f"WARNING: token ids differ from tests/fixtures/tokenizer: {token_check}")

    doc = {"tool": "tools/bench_peers.py", "schema": SCHEMA, "commit": args.commit or git_commit(),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick,
           "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
           "device": device_info(torch), "versions": versions(torch),
           "settings": {"batch1_n": args.batch1_n, "batch256_batches": args.batches, "batch_size": BATCH,
                        "pad_to": PAD_TO, "max_length": MAX_LENGTH, "ppl_max_length": PPL_MAX_LENGTH,
                        "ppl_stride": PPL_STRIDE, "decode_new_tokens": DECODE_NEW_TOKENS,
                        "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                        "float32_matmul_precision": torch.get_float32_matmul_precision(),
                        "fp16_reduced_precision_reduction":
                            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
                        "setups": args.setups},
           "data": data_info, "token_check": token_check, "setups": []}
    d = doc["device"]
    log(f"{d['name']} (sm_{d['capability'][0]}{d['capability'][1]}, driver {d.get('driver', '?')}), "
        f"torch {doc['versions']['torch']} CUDA {d['torch_cuda']}, transformers {doc['versions']['transformers']}, "
        f"bitsandbytes {doc['versions']['bitsandbytes']}")
    if data_info.get("batch1_texts"):
        log(f"AG News: batch 1 over {data_info['batch1_texts']} texts (mean {data_info['batch1_mean_tokens']:.1f} "
            f"tokens), batch {BATCH} over {data_info['batch256_texts']} (mean {data_info['batch256_mean_tokens']:.1f})"
            f"; token check: {token_check.get('status')}")
    if wiki_ids is not None:
        log(f"WikiText-2 test: {len(wiki_ids)} tokens")
    write_json(args.out, doc)

    state = {}
    for name in args.setups:
        kind, precision, engine, label, opts = SETUPS[name]
        rec = {"name": name, "kind": kind, "precision": precision, "engine": engine, "label": label,
               "report_row": opts.get("row", name), "options": {k: v for k, v in opts.items() if k != "row"}}
        log(f"-- {name}: {label}")
        t0 = time.perf_counter()
        try:
            run = run_classify if kind == "classify" else run_lm
            rec.update(run(torch, name, opts, args, data, state))
            rec["ok"] = True
        except Exception as e:  # noqa: BLE001
            rec["ok"] = False
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
            rec["traceback"] = traceback.format_exc()
            try:
                free_gpu(torch)
            except Exception:  # noqa: BLE001
                pass
        rec["seconds"] = time.perf_counter() - t0
        doc["setups"].append(rec)
        if "fp32_reference" in state:
            doc["fp32_reference"] = state["fp32_reference"]
        doc["elapsed_seconds"] = time.perf_counter() - t_start
        write_json(args.out, doc)
        log(summary_line(name, rec))
    failed = [r["name"] for r in doc["setups"] if not r["ok"]]
    log(f"wrote {args.out} ({len(doc['setups'])} setups, {len(failed)} failed"
        f"{': ' + ','.join(failed) if failed else ''}) in {doc['elapsed_seconds']:.0f} s")


if __name__ == "__main__":
    main()
