#!/usr/bin/env python3
"""Makes gpt2q's transformers conformance fixtures (tests/fixtures/models).

    python3 tools/make_fixtures.py --out tests/fixtures/models            # (re)generate, CPU
    python3 tools/make_fixtures.py --out tests/fixtures/models --verify \\
        --device cuda                                                     # recompute, compare

Generation writes, for each model of fixture_models.SPECS, a checkpoint
directory NAME/ (config.json + model.safetensors as transformers saves it) and
NAME.ref.safetensors + NAME.ref.json with transformers' outputs; plus
synthetic-124m.ref.* for gpt2q's deterministic 124M synthetic weights (no
checkpoint: both sides rebuild the weights from the seed) and meta.json.
--verify leaves every file alone: it reloads the committed checkpoints, reruns
transformers on the committed inputs (any device, any version) and reports the
largest differences from the committed references; exit status 1 when one is
over tolerance. docs/fixtures.md describes the files.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before torch loads

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import load_file as load_np, save_file as save_np  # noqa: E402
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Tokenizer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_models as fm  # noqa: E402
import fixture_reference as ref  # noqa: E402
import synthetic_weights as sw  # noqa: E402

SEED = 1234
TOL_ABS = 1e-4  # logits, hidden states, classifier logits
TOL_PPL_REL = 1e-4
BIG_VOCAB_SAMPLE_STRIDE = 97  # every 97th logit of a 50257-wide row is stored for every position

# Text inputs of the real-vocabulary models (tokenized with the GPT-2 tokenizer).
BATCH_TEXTS = {
    "tiny-lm": ["Hello, my dog is cute",
                "The quick brown fox jumps over the lazy dog, and then it ran away into the forest.",
                "In 1990<|endoftext|> they"],
    "trained-lm": ["ROMEO:\nWhat light through yonder window breaks?",
                   "First Citizen:\nWe are accounted poor citizens, the patricians good.",
                   "KING:"],
}
PROMPTS = {
    "tiny-lm": ["The meaning of life is", "Once upon a time, there was a"],
    "trained-lm": ["ROMEO: I will", "To be, or not to be"],
}
# Perplexity texts: byte ranges of files under the shared data dir (not copied).
PPL_TEXT = {
    "tiny-lm": {"file": "wikitext-2-raw/wiki.test.raw", "first_line": 0, "lines": 8},
    "trained-lm": {"file": "text/tinyshakespeare_input.txt", "last_lines": 60},
}
SHAKESPEARE_TRAIN_LINES = 30000  # training uses the first lines only; the perplexity text is the last 60

SYN_TEXTS = ["Hello, my dog is cute",
             "The stock market rallied today as tech shares gained<|endoftext|>",
             "Scientists discover<|endoftext|> a new species of frog in the Amazon rainforest",
             "Goal!"]
SYN_PROMPT = "Hello, my name is"
SYN_LONG_POS = [0, 1, 127, 255, 511, 767, 1000, 1023]
SYN_SAMPLE_NAMES = ["wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.ln_1.bias", "h.5.attn.c_attn.weight",
                    "h.7.attn.c_attn.bias", "h.11.mlp.c_proj.bias", "h.11.ln_2.weight", "ln_f.weight", "ln_f.bias",
                    "score.weight"]


def text_excerpt(data_dir: str, src: dict) -> dict:
    path = os.path.join(data_dir, src["file"])
    with open(path, "rb") as f:
        data = f.read()
    starts = [0] + [i + 1 for i, c in enumerate(data) if c == 0x0A]
    if "last_lines" in src:
        begin = starts[-1 - src["last_lines"]] if data.endswith(b"\n") else starts[-src["last_lines"]]
        end = len(data)
    else:
        begin, end = starts[src["first_line"]], starts[src["first_line"] + src["lines"]]
    return {"file": src["file"], "offset": begin, "length": end - begin, "text": data[begin:end].decode("utf-8")}


def build_inputs(spec: fm.ModelSpec, tok, data_dir: str) -> dict:
    """Deterministic inputs for one model: batch, prompts, perplexity ids."""
    if spec.real_vocab:
        seqs = [tok.encode(t) for t in BATCH_TEXTS[spec.name]]
        prompts = [{"text": t, "ids": tok.encode(t)} for t in PROMPTS[spec.name]]
        excerpt = text_excerpt(data_dir, PPL_TEXT[spec.name])
        ppl = {"source": {k: v for k, v in excerpt.items() if k != "text"}, "ids": tok.encode(excerpt["text"])}
        return {"texts": BATCH_TEXTS[spec.name], "seqs": seqs, "prompts": prompts, "ppl": ppl}
    rng = np.random.default_rng(SEED + spec.seed)
    avoid = {spec.eos_id} | ({spec.pad_id} if spec.pad_id is not None else set())
    seqs = [fm.random_ids(rng, n, spec.vocab, avoid) for n in (14, 9, 4)]
    if spec.head == "cls":
        # HF pools at argmax(pos * (ids != pad)): row 0 has the pad id inside
        # its text (no effect), row 1 ends with it (HF pools one position earlier).
        seqs[0][5] = spec.pad_id
        seqs[1][-1] = spec.pad_id
        return {"seqs": seqs, "prompts": [], "ppl": None}
    prompts = [{"ids": fm.random_ids(rng, n, spec.vocab, avoid)} for n in (4, 7)]
    return {"seqs": seqs, "prompts": prompts, "ppl": {"ids": fm.random_ids(rng, 150, spec.vocab, set())}}


def lm_references(lm, ids, mask, lengths, full_rows: list[int], device: str, prefix: str = "") -> tuple[dict, dict]:
    logits = ref.lm_logits(lm, ids, mask, device)
    V = logits.shape[-1]
    positions = [(b, t) for b in range(ids.shape[0]) for t in range(int(lengths[b]))]
    stride = 1 if V <= 4096 else BIG_VOCAB_SAMPLE_STRIDE
    full = [(b, int(lengths[b]) - 1) for b in full_rows] if stride > 1 else []
    summary = ref.logit_summary(logits, positions, full, stride)
    return {prefix + k: v for k, v in summary.items()}, {prefix + "small_gap_positions":
                                                          ref.small_gap_count(summary["topk_values"])}


def decode(tok, ids: list[int]) -> str:
    """Raw byte-level decoding (no clean-up of spaces), as gpt2q decodes."""
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def compute_reference(spec: fm.ModelSpec, models: dict, inputs: dict, tok, device: str) -> tuple[dict, dict]:
    pad = spec.pad_id if spec.head == "cls" else spec.eos_id
    ids, mask, lengths = ref.pad_batch(inputs["seqs"], pad)
    tensors = {"input_ids": ids, "attention_mask": mask, "lengths": lengths,
               "hidden": ref.hidden_states(models["base"], ids, mask, device)}
    info: dict = {"pad_id": pad}
    if "texts" in inputs:
        info["texts"] = inputs["texts"]
    if "lm" in models:
        shortest = int(np.argmin(lengths))
        t, i = lm_references(models["lm"], ids, mask, lengths, [shortest], device)
        tensors.update(t)
        info.update(i)
        info["generate"] = []
        for p in inputs["prompts"]:
            g = ref.greedy_generate(models["lm"], p["ids"], spec.gen_new_tokens, spec.eos_id, device)
            if "text" in p:
                g["prompt_text"], g["text"] = p["text"], decode(tok, g["ids"])
            info["generate"].append(g)
        if inputs["ppl"] is not None:
            ppl_ids = inputs["ppl"]["ids"]
            tensors["ppl_ids"] = np.array(ppl_ids, dtype=np.int64)
            info["perplexity"] = {"n_ids": len(ppl_ids), "source": inputs["ppl"].get("source"),
                                  "runs": [ref.checked_perplexity(models["lm"], ppl_ids, m, s, device)
                                           for m, s in spec.ppl_pairs]}
    if "cls" in models:
        logits, pooled = ref.classifier_logits(models["cls"], ids, mask, pad, device)
        tensors["class_logits"], tensors["class_pos"] = logits, pooled
        info["class_pred"] = [int(x) for x in logits.argmax(axis=1)]
        info["labels"] = fm.AG_NEWS_LABELS
    return tensors, info


def synthetic_models(device: str) -> dict:
    """GPT2Config() defaults with gpt2q's synthetic weights (seed SEED), as an LM
    and as a 4-label classifier sharing the transformer weights."""
    cfg = GPT2Config()
    cfg._attn_implementation = "eager"
    state = {k: torch.from_numpy(v) for k, v in sw.synthetic_state_dict(cfg, SEED, num_labels=4).items()}
    lm = GPT2LMHeadModel(cfg)
    missing, unexpected = lm.load_state_dict(
        {"transformer." + k: v for k, v in state.items() if k != "score.weight"}, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    assert lm.lm_head.weight.data_ptr() == lm.transformer.wte.weight.data_ptr(), "LM head is not tied"
    ccfg = GPT2Config(num_labels=4, id2label=dict(enumerate(fm.AG_NEWS_LABELS)), pad_token_id=fm.EOS)
    ccfg._attn_implementation = "eager"
    cls = GPT2ForSequenceClassification(ccfg)
    cls.load_state_dict({("score.weight" if k == "score.weight" else "transformer." + k): v
                         for k, v in state.items()}, strict=True)
    return {"lm": lm.to(device).eval(), "cls": cls.to(device).eval(), "base": lm.transformer}


def synthetic_inputs(tok, data_dir: str) -> dict:
    rng = np.random.default_rng(SEED)
    excerpt = text_excerpt(data_dir, {"file": "wikitext-2-raw/wiki.test.raw", "first_line": 0, "lines": 4})
    return {"texts": SYN_TEXTS, "seqs": [tok.encode(t) for t in SYN_TEXTS],
            "prompt": {"text": SYN_PROMPT, "ids": tok.encode(SYN_PROMPT)},
            "long_ids": rng.integers(0, fm.GPT2_VOCAB, 1024).astype(np.int64),
            "ppl": {"source": {k: v for k, v in excerpt.items() if k != "text"}, "ids": tok.encode(excerpt["text"])}}


def compute_synthetic_reference(models: dict, inputs: dict, tok, device: str) -> tuple[dict, dict]:
    ids, mask, lengths = ref.pad_batch(inputs["seqs"], fm.EOS)
    shortest = int(np.argmin(lengths))
    tensors = {"input_ids": ids, "attention_mask": mask, "lengths": lengths}
    t, info = lm_references(models["lm"], ids, mask, lengths, [shortest], device)
    tensors.update(t)
    logits, pooled = ref.classifier_logits(models["cls"], ids, mask, fm.EOS, device)
    tensors["class_logits"], tensors["class_pos"] = logits, pooled
    long_ids = inputs["long_ids"][None, :]
    long_logits = ref.lm_logits(models["lm"], long_ids, np.ones_like(long_ids), device)
    summary = ref.logit_summary(long_logits, [(0, p) for p in SYN_LONG_POS], [], BIG_VOCAB_SAMPLE_STRIDE)
    tensors["long_ids"] = inputs["long_ids"]
    tensors.update({"long_" + k: v for k, v in summary.items()})
    info["long_small_gap_positions"] = ref.small_gap_count(summary["topk_values"])
    gen = ref.greedy_generate(models["lm"], inputs["prompt"]["ids"], 8, fm.EOS, device)
    gen["prompt_text"], gen["text"] = inputs["prompt"]["text"], decode(tok, gen["ids"])
    ppl_ids = inputs["ppl"]["ids"]
    tensors["ppl_ids"] = np.array(ppl_ids, dtype=np.int64)
    info.update({
        "seed": SEED, "config": "GPT2Config() defaults", "texts": inputs["texts"], "pad_id": fm.EOS,
        "labels": fm.AG_NEWS_LABELS, "class_pred": [int(x) for x in logits.argmax(axis=1)],
        "generate": [gen],
        "perplexity": {"n_ids": len(ppl_ids), "source": inputs["ppl"]["source"],
                       "runs": [ref.checked_perplexity(models["lm"], ppl_ids, m, s, device)
                                for m, s in [(64, 32), (128, 128)]]},
    })
    # Exact synthetic values (bit patterns) for a sample of every role.
    rng = np.random.default_rng(SEED + 1)
    shapes = dict(sw.canonical_shapes(GPT2Config(), num_labels=4))
    index = np.stack([np.concatenate([np.arange(128), rng.integers(0, int(np.prod(shapes[n])), 128)])
                      for n in SYN_SAMPLE_NAMES]).astype(np.int64)
    tensors["sample_index"] = index
    tensors["sample_values"] = np.stack([sw.synthetic_values(n, SEED, index[i].astype(np.uint64))
                                         for i, n in enumerate(SYN_SAMPLE_NAMES)])
    info["sample_names"] = SYN_SAMPLE_NAMES
    return tensors, info


def write_reference(out: str, name: str, tensors: dict, info: dict) -> None:
    save_np({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(out, name + ".ref.safetensors"),
            metadata={"model": name})
    with open(os.path.join(out, name + ".ref.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def read_reference(out: str, name: str) -> tuple[dict, dict]:
    with open(os.path.join(out, name + ".ref.json")) as f:
        info = json.load(f)
    return load_np(os.path.join(out, name + ".ref.safetensors")), info


def inputs_from_reference(tensors: dict, info: dict) -> dict:
    seqs = [tensors["input_ids"][b, :n].tolist() for b, n in enumerate(tensors["lengths"])]
    prompts = [{"ids": g["prompt_ids"], **({"text": g["prompt_text"]} if "prompt_text" in g else {})}
               for g in info.get("generate", [])]
    ppl = None
    if "ppl_ids" in tensors:
        ppl = {"ids": tensors["ppl_ids"].tolist(), "source": info["perplexity"]["source"]}
    out = {"seqs": seqs, "prompts": prompts, "ppl": ppl}
    if "texts" in info:
        out["texts"] = info["texts"]
    return out


def compare(name: str, old_t: dict, old_i: dict, new_t: dict, new_i: dict) -> list[str]:
    """Problems found between a committed reference and a recomputation."""
    problems = []
    for key, old in old_t.items():
        new = new_t.get(key)
        if new is None or new.shape != old.shape:
            problems.append(f"{name}: {key} missing or reshaped")
            continue
        if key.endswith("topk_ids"):
            vals = old_t[key.replace("topk_ids", "topk_values")]
            clear = (vals[:, 0] - vals[:, 1]) >= ref.ARGMAX_GAP
            bad = int((old[clear, 0] != new[clear, 0]).sum())
            print(f"  {name:20s} {key:18s} argmax mismatches {bad} of {int(clear.sum())}")
            if bad:
                problems.append(f"{name}: {key} argmax differs at {bad} positions")
        elif old.dtype.kind in "iu" or key == "sample_values":
            if not np.array_equal(old, new):
                problems.append(f"{name}: {key} not identical")
        else:
            diff = float(np.abs(old.astype(np.float64) - new.astype(np.float64)).max())
            print(f"  {name:20s} {key:18s} max |diff| {diff:.3e}")
            if diff > TOL_ABS:
                problems.append(f"{name}: {key} differs by {diff:.3e}")
    for g_old, g_new in zip(old_i.get("generate", []), new_i.get("generate", [])):
        same = g_old["ids"] == g_new["ids"]
        print(f"  {name:20s} greedy ids {'identical' if same else 'DIFFER'} (min gap {g_old['min_gap']:.2e})")
        if not same:
            problems.append(f"{name}: greedy ids {g_old['ids']} -> {g_new['ids']}")
    for r_old, r_new in zip(old_i.get("perplexity", {}).get("runs", []), new_i.get("perplexity", {}).get("runs", [])):
        rel = abs(r_old["nll"] - r_new["nll"]) / abs(r_old["nll"])
        print(f"  {name:20s} ppl({r_old['max_length']},{r_old['stride']}) tokens {r_old['tokens']}/{r_new['tokens']}"
              f" nll rel diff {rel:.2e}")
        if r_old["tokens"] != r_new["tokens"] or rel > TOL_PPL_REL:
            problems.append(f"{name}: perplexity ({r_old['max_length']},{r_old['stride']}) differs")
    return problems


def load_tokenizer(data_dir: str):
    return GPT2Tokenizer.from_pretrained(os.path.join(data_dir, "gpt2-tokenizer"))


def versions(device: str, argv: list[str]) -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version(), "device": device,
            "seed": SEED, "command": "python3 tools/make_fixtures.py " + " ".join(argv)}


def generate(args, tok) -> None:
    os.makedirs(args.out, exist_ok=True)
    shakespeare = open(os.path.join(args.data, "text/tinyshakespeare_input.txt"), encoding="utf-8").read()
    train_text = "".join(shakespeare.splitlines(keepends=True)[:SHAKESPEARE_TRAIN_LINES])
    train_ids = tok.encode(train_text)
    meta = versions(args.device, sys.argv[1:]) | {"models": {}}
    for spec in fm.SPECS:
        if args.only and spec.name not in args.only:
            continue
        print(f"[{spec.name}] building", flush=True)
        model, build_info = fm.build_model(spec, train_ids if spec.weights == "trained" else None)
        model_dir = os.path.join(args.out, spec.name)
        fm.save_model(spec, model, model_dir)
        models = fm.load_models(spec, model_dir, args.device)
        tensors, info = compute_reference(spec, models, build_inputs(spec, tok, args.data), tok, args.device)
        info.update({"model": spec.name, "dir": spec.name, "purpose": spec.purpose, "head": spec.head,
                     "stored_dtype": spec.dtype, "layout": spec.layout, "weights": spec.weights,
                     "vocab_size": spec.vocab, "n_positions": spec.n_positions, "eos_id": spec.eos_id} | build_info)
        write_reference(args.out, spec.name, tensors, info)
        meta["models"][spec.name] = spec.purpose
        report(spec.name, info)
    if not args.only or "synthetic-124m" in args.only:
        print("[synthetic-124m] building", flush=True)
        tensors, info = compute_synthetic_reference(synthetic_models(args.device), synthetic_inputs(tok, args.data),
                                                    tok, args.device)
        info["model"] = "synthetic-124m"
        write_reference(args.out, "synthetic-124m", tensors, info)
        meta["models"]["synthetic-124m"] = "GPT2Config() defaults, gpt2q synthetic weights seed 1234 (LM + 4-label head)"
        report("synthetic-124m", info)
    if not args.only:
        with open(os.path.join(args.out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")


def report(name: str, info: dict) -> None:
    gaps = [g["min_gap"] for g in info.get("generate", [])]
    runs = [(r["max_length"], r["stride"], r["tokens"], round(r["ppl"], 3)) for r in info.get("perplexity", {}).get("runs", [])]
    print(f"  small-gap positions {info.get('small_gap_positions')}, greedy min gaps {gaps}, ppl {runs}", flush=True)


def verify(args, tok) -> int:
    problems = []
    names = [s.name for s in fm.SPECS] + ["synthetic-124m"]
    for name in names:
        if args.only and name not in args.only:
            continue
        old_t, old_i = read_reference(args.out, name)
        inputs = inputs_from_reference(old_t, old_i)
        if name == "synthetic-124m":
            inputs.update({"prompt": {"text": old_i["generate"][0]["prompt_text"],
                                      "ids": old_i["generate"][0]["prompt_ids"]}, "long_ids": old_t["long_ids"]})
            new_t, new_i = compute_synthetic_reference(synthetic_models(args.device), inputs, tok, args.device)
        else:
            spec = next(s for s in fm.SPECS if s.name == name)
            models = fm.load_models(spec, os.path.join(args.out, name), args.device)
            new_t, new_i = compute_reference(spec, models, inputs, tok, args.device)
        problems += compare(name, old_t, old_i, new_t, new_i)
    with open(os.path.join(args.out, "meta.json")) as f:
        made = json.load(f)
    print(f"committed with torch {made['torch']} / transformers {made['transformers']} on {made['device']}; "
          f"recomputed with torch {torch.__version__} / transformers {transformers.__version__} on {args.device}")
    for p in problems:
        print("PROBLEM:", p)
    print("verify:", "OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_data = os.environ.get("GPT2Q_DATA") or os.path.join(here, "..", "..", "shared", "data")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "models"))
    ap.add_argument("--data", default=default_data, help="shared data dir (GPT-2 tokenizer, texts)")
    ap.add_argument("--device", default="cpu", help="torch device for the reference runs (cpu, cuda, ...)")
    ap.add_argument("--verify", action="store_true", help="recompute and compare; write nothing")
    ap.add_argument("--only", nargs="*", help="model names to process (default: all)")
    args = ap.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    tok = load_tokenizer(args.data)
    if args.verify:
        return verify(args, tok)
    generate(args, tok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
