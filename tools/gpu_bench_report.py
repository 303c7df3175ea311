#!/usr/bin/env python3
"""gpt2q against its peers on the GPU: one markdown table, with ratios.

  python3 tools/gpu_bench_report.py --peers peers.json --gpt2q gpt2q.json [--out table.md]

--peers is what tools/bench_peers.py writes. --gpt2q is gpt2q's side, in the
interchange format below (to be produced by `gpt2q bench --device cuda
--json`); without --gpt2q only the peers are tabulated. Prints markdown
suitable for docs/benchmarks.md: a header naming the device and versions,
the side-by-side table, the issue-12 targets with pass/miss, and
cross-checks (perplexity values, predictions) when both sides give them.

Interchange format of the gpt2q side
------------------------------------
A JSON file holding either a list of rows, or an object
{"rows": [...], "device": {...}, "commit": "...", "command": "..."} (all keys
but "rows" optional; "device" may carry name, driver, cuda, capability).
Each row is one gpt2q variant, measured exactly as bench_peers.py measures
the peers (same checkpoints from `gpt2q init --geometry 124m`, same texts,
same batch sizes):

  setup                  str, required. gpt2q's variant name, e.g. "fp32",
                         "fp16", "bf16", "llm-int8", "nf4", "nf4:bf16-compute",
                         "nf4-dq:bf16-compute", "fp4", "int8-tensor".
  precision              str, optional. The weight format the row is compared
                         under: fp32, fp16, bf16, llm-int8, nf4, nf4-dq, fp4,
                         int8-tensor (no peer), ... Default: the part of
                         `setup` before ":" ("nf4:bf16-compute" -> nf4).
  batch1_ms              number: mean ms/sample, classifier, batch 1, the first
                         500 AG News test texts in file order, each at its real
                         length (<= 128 tokens, title + " " + description).
  batch1_p50_ms          number, optional: the median of the same.
  batch256_samples_per_s number: the first 2,560 texts, 10 batches of 256 in
                         file order, after one warm-up batch.
  weights_bytes          int: bytes of the weights as held on the device
                         (packed codes, absmax, nested absmax, SCB included).
  weights_bytes_expected int, optional: gpt2q's own accounting of the same
                         variant (GPT2Model::total_weight_bytes on the CPU);
                         the target is weights_bytes == weights_bytes_expected.
  peak_bytes             int: peak device memory of the batch-256 phase
                         (weights included), as torch.cuda.max_memory_allocated
                         counts it for the peers.
  ppl_seconds            number: WikiText-2 test perplexity pass, window 1024,
                         stride 512, LM checkpoint of the same precision.
  ppl                    number, optional: the perplexity itself (the peers'
                         value for the same weights is printed beside it).
  decode_tokens_per_s    number: greedy decode, batch 1, 128 new tokens after
                         the 16-token prompt bench_peers.py records
                         (data.decode_prompt), 128 / wall time.
  argmax_first_n         list of int, optional: the classifier's prediction
                         for each of the first texts at batch 1 (compared with
                         the peers' fp32 eager predictions).
Any measure may be null or missing (not measured). Extra keys are ignored.

Ratios
------
Each gpt2q cell carries a ratio against the best peer of the same precision
(fastest, or least memory, over all peer setups of that precision, e.g. fp16:
eager at real length, eager padded to 128, and torch.compile). Speed ratios
are speed-ups, > 1x meaning gpt2q is faster: gpt2q rate / best peer rate
(samples/s, tokens/s), and for times best peer time / gpt2q time (the same
quantity). Memory ratios are gpt2q bytes / best peer bytes (< 1x: gpt2q holds
less). Peers' weights are parameters + buffers + bitsandbytes quant states
(absmax, nested absmax, code, SCB); transformers' get_memory_footprint(),
which leaves the quant states out, is given in the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

PRECISION_ORDER = ["fp32", "fp16", "bf16", "llm-int8", "int8-tensor", "nf4", "nf4-dq", "fp4"]
QUANTIZED = {"llm-int8", "int8-tensor", "nf4", "nf4-dq", "fp4", "fp4-dq"}
ENGINE_NAMES = {"pytorch": "PyTorch", "bitsandbytes": "transformers + bitsandbytes", "gpt2q": "**gpt2q**"}
MEASURES = ["batch1_ms", "batch256_samples_per_s", "weights_bytes", "peak_bytes", "ppl_seconds",
            "decode_tokens_per_s"]
# measure -> (better, kind): "low" times/bytes, "high" rates; kind "speed" or "memory"
DIRECTION = {"batch1_ms": ("low", "speed"), "batch256_samples_per_s": ("high", "speed"),
             "weights_bytes": ("low", "memory"), "peak_bytes": ("low", "memory"),
             "ppl_seconds": ("low", "speed"), "decode_tokens_per_s": ("high", "speed")}


def fail(msg):
    print(f"gpu_bench_report.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        fail(f"{what} {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        fail(f"{what} {path}: invalid JSON ({e})")


def derive_precision(setup):
    return setup.split(":")[0].strip().lower()


def peer_rows(peers):
    """One row per report_row: classify setups, with their LM setup's ppl/decode merged in."""
    rows, order = {}, []
    for s in peers.get("setups", []):
        key = s.get("report_row", s["name"])
        if key not in rows:
            rows[key] = {"setup": key, "label": s["label"] if s["name"] == key else s["label"].replace(" (LM)", ""),
                         "precision": s["precision"], "engine": s["engine"], "errors": [], "notes": []}
            order.append(key)
        r = rows[key]
        if s["name"] == key:
            r["label"] = s["label"]
        if not s.get("ok"):
            r["errors"].append(f"{s['name']}: {s.get('error')}")
            continue
        if s["kind"] == "classify":
            r["batch1_ms"] = s["batch1"]["mean_ms"]
            r["batch1_p50_ms"] = s["batch1"]["p50_ms"]
            r["batch256_samples_per_s"] = s["batch256"]["samples_per_s"]
            r["weights_bytes"] = s["weights"]["total_bytes"]
            r["peak_bytes"] = s["batch256"]["peak_allocated_bytes"]
            r["agreement_with_fp32"] = s.get("agreement_with_fp32")
        else:
            p, d = s.get("perplexity", {}), s.get("decode", {})
            if "error" in p:
                r["errors"].append(f"{s['name']} perplexity: {p['error']}")
            else:
                r["ppl_seconds"], r["ppl"] = p["seconds"], p["ppl"]
                if not p.get("full_pass"):
                    r["notes"].append(f"perplexity over {p['windows']} of {p['full_pass_windows']} windows")
            if "error" in d:
                r["errors"].append(f"{s['name']} decode: {d['error']}")
            else:
                r["decode_tokens_per_s"] = d["tokens_per_s_median"]
                r["decode_ids"] = d.get("generated_ids")
            r.setdefault("lm_weights_bytes", s.get("weights", {}).get("total_bytes"))
    return [rows[k] for k in order]


def best(rows, measure):
    better, _ = DIRECTION[measure]
    vals = [(r[measure], r["setup"]) for r in rows if isinstance(r.get(measure), (int, float))]
    if not vals:
        return None
    return (min if better == "low" else max)(vals)


def ratio(measure, mine, peer):
    better, kind = DIRECTION[measure]
    if not isinstance(mine, (int, float)) or not isinstance(peer, (int, float)) or mine <= 0 or peer <= 0:
        return None
    if kind == "memory":
        return mine / peer
    return peer / mine if better == "low" else mine / peer


def fmt(measure, v):
    if not isinstance(v, (int, float)):
        return "—"
    if measure in ("batch1_ms",):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if measure in ("batch256_samples_per_s", "decode_tokens_per_s"):
        return f"{v:,.0f}"
    if measure in ("weights_bytes", "peak_bytes"):
        return f"{v / 1e6:,.1f}"
    if measure == "ppl_seconds":
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    return str(v)


def fmt_ratio(x):
    if x is None:
        return ""
    return f" ({x:.2f}×)" if x < 10 else f" ({x:.1f}×)"


def precision_key(p):
    return (PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER), p)


def header(peers, g_meta):
    d, v = peers.get("device", {}), peers.get("versions", {})
    lines = [f"Device: {d.get('name', '?')} (compute capability {'.'.join(map(str, d.get('capability', [])))}, "
             f"{d.get('total_memory_bytes', 0) / 2**30:.1f} GiB; driver {d.get('driver', '?')}, "
             f"CUDA {d.get('driver_cuda_version', '?')} driver / {d.get('torch_cuda', '?')} torch).",
             f"Peers: torch {v.get('torch', '?')}, transformers {v.get('transformers', '?')}, bitsandbytes "
             f"{v.get('bitsandbytes', '?')}; {peers.get('started_utc', '?')}; gpt2q commit {peers.get('commit') or '?'}"
             + ("; **quick run (smoke test), not for the record**" if peers.get("quick") else "") + "."]
    if g_meta:
        gd = g_meta.get("device") or {}
        lines.append(f"gpt2q: commit {g_meta.get('commit') or '?'}"
                     + (f", device {gd.get('name')}" if gd.get("name") else "")
                     + (f", `{g_meta['command']}`" if g_meta.get("command") else "") + ".")
    data, s = peers.get("data", {}), peers.get("settings", {})
    if data.get("batch1_texts"):
        lines.append(f"Texts: AG News test, batch 1 over the first {data['batch1_texts']} "
                     f"(mean {data['batch1_mean_tokens']:.1f} tokens), batch {s.get('batch_size', 256)} over the first "
                     f"{data['batch256_texts']} (mean {data['batch256_mean_tokens']:.1f}), cut to "
                     f"{data.get('max_length', 128)} tokens; WikiText-2 test: "
                     f"{data.get('wikitext_tokens', '?')} tokens, window {s.get('ppl_max_length')}, "
                     f"stride {s.get('ppl_stride')}; decode: {s.get('decode_new_tokens')} new tokens, batch 1.")
    return lines


def build(peers, gpt2q_rows, g_meta):
    prow = peer_rows(peers)
    grows = []
    for r in gpt2q_rows:
        if not isinstance(r, dict) or "setup" not in r:
            fail(f"gpt2q row {r!r}: needs at least 'setup'")
        g = dict(r)
        g["precision"] = (r.get("precision") or derive_precision(r["setup"])).lower()
        g["engine"] = "gpt2q"
        g["label"] = r["setup"]
        grows.append(g)
    precisions = sorted({r["precision"] for r in prow + grows}, key=precision_key)

    out = header(peers, g_meta)
    out.append("")
    out.append("| precision | engine | setup | batch 1 ms/sample | batch 256 samples/s | weights MB | "
               "peak MB (batch 256) | perplexity pass s | decode tokens/s |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    notes = []
    for p in precisions:
        peers_p = [r for r in prow if r["precision"] == p]
        for r in peers_p:
            cells = [fmt(m, r.get(m)) for m in MEASURES]
            if r["errors"] and not any(isinstance(r.get(m), (int, float)) for m in MEASURES):
                cells = ["failed"] + ["—"] * (len(MEASURES) - 1)
            out.append(f"| {p} | {ENGINE_NAMES.get(r['engine'], r['engine'])} | {r['label']} | " + " | ".join(cells)
                       + " |")
            notes += r["errors"] + [f"{r['setup']}: {n}" for n in r["notes"]]
        for g in [g for g in grows if g["precision"] == p]:
            cells = []
            for m in MEASURES:
                b = best(peers_p, m)
                cells.append(fmt(m, g.get(m)) + (fmt_ratio(ratio(m, g.get(m), b[0])) if b else ""))
            out.append(f"| {p} | **gpt2q** | {g['label']} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("gpt2q's ratios are against the best peer of the same precision: speed as a speed-up (> 1× = gpt2q "
               "faster), memory as gpt2q / peer (< 1× = gpt2q holds less). Peers' weights include bitsandbytes' "
               "quant states; 'perplexity pass' and 'decode' of a peer row come from its LM twin "
               "(lm-fp32 / lm-fp16 / lm-nf4).")
    if notes:
        out.append("")
        out += [f"- {n}" for n in notes]
    if grows:
        out += [""] + targets(prow, grows)
        checks = cross_checks(peers, prow, grows)
        if checks:
            out += [""] + checks
    return "\n".join(out) + "\n"


def targets(prow, grows):
    """Issue 12 section 5 targets, one line each."""
    lines = ["Targets (issue 12, section 5):", "",
             "| gpt2q setup | target | measured | met |", "|---|---|---:|---|"]

    def add(setup, target, value, ok):
        lines.append(f"| {setup} | {target} | {value} | {'yes' if ok else '**no**'} |")

    g_fp16 = next((g for g in grows if g["precision"] == "fp16" and isinstance(g.get("batch1_ms"), (int, float))),
                  None)
    for g in grows:
        p, s = g["precision"], g["setup"]
        b1, b256 = g.get("batch1_ms"), g.get("batch256_samples_per_s")
        if p != "fp32" and isinstance(b1, (int, float)):
            add(s, "batch 1 ≤ 0.2 ms/sample", f"{b1:.3f}", b1 <= 0.2)
        if (p.startswith("nf4") or p in ("llm-int8", "int8-tensor")) and g_fp16 and isinstance(b1, (int, float)):
            add(s, f"batch 1 no slower than gpt2q {g_fp16['setup']} ({g_fp16['batch1_ms']:.3f} ms)", f"{b1:.3f}",
                b1 <= g_fp16["batch1_ms"])
        if isinstance(b256, (int, float)) and p in ("fp16", "bf16"):
            add(s, "batch 256 ≥ 60,000 samples/s", f"{b256:,.0f}", b256 >= 60000)
        if isinstance(b256, (int, float)) and p in QUANTIZED:
            add(s, "batch 256 ≥ 40,000 samples/s", f"{b256:,.0f}", b256 >= 40000)
        if p == "fp16" and isinstance(g.get("ppl_seconds"), (int, float)):
            add(s, "perplexity pass ≤ 0.5 s", f"{g['ppl_seconds']:.2f}", g["ppl_seconds"] <= 0.5)
        if isinstance(g.get("decode_tokens_per_s"), (int, float)):
            b = best([r for r in prow if r["precision"] == p], "decode_tokens_per_s")
            add(s, "decode ≥ 3,000 tokens/s" + (f" (best peer {b[0]:,.0f}, {b[1]})" if b else ""),
                f"{g['decode_tokens_per_s']:,.0f}", g["decode_tokens_per_s"] >= 3000)
        if isinstance(g.get("weights_bytes"), int) and isinstance(g.get("weights_bytes_expected"), int):
            add(s, f"weights = gpt2q's accounting ({g['weights_bytes_expected']:,} B)", f"{g['weights_bytes']:,} B",
                g["weights_bytes"] == g["weights_bytes_expected"])
        if isinstance(g.get("peak_bytes"), (int, float)):
            b = best([r for r in prow if r["precision"] == p], "peak_bytes")
            if b:
                add(s, f"peak at batch 256 ≤ peer's ({b[0] / 1e6:,.1f} MB, {b[1]})", f"{g['peak_bytes'] / 1e6:,.1f} MB",
                    g["peak_bytes"] <= b[0])
    return lines


def cross_checks(peers, prow, grows):
    lines = []
    for g in grows:
        if isinstance(g.get("ppl"), (int, float)):
            for r in prow:
                if r["precision"] == g["precision"] and isinstance(r.get("ppl"), (int, float)):
                    rel = abs(g["ppl"] - r["ppl"]) / r["ppl"]
                    lines.append(f"- perplexity, {g['setup']}: gpt2q {g['ppl']:.6g}, {r['setup']} {r['ppl']:.6g} "
                                 f"(relative difference {rel:.2e})")
    ref = peers.get("fp32_reference")
    if ref:
        for g in grows:
            a = g.get("argmax_first_n")
            if isinstance(a, list) and a:
                k = min(len(a), len(ref["argmax"]))
                same = sum(x == y for x, y in zip(a[:k], ref["argmax"][:k]))
                lines.append(f"- predictions, {g['setup']}: {same}/{k} equal to PyTorch fp32 eager's")
    return (["Cross-checks:", ""] + lines) if lines else []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", required=True, help="JSON written by tools/bench_peers.py")
    ap.add_argument("--gpt2q", help="gpt2q's JSON (format above)")
    ap.add_argument("--out", help="also write the markdown to this file")
    args = ap.parse_args(argv)
    peers = load_json(args.peers, "--peers")
    if not isinstance(peers, dict) or peers.get("tool") != "tools/bench_peers.py":
        fail(f"--peers {args.peers}: not a tools/bench_peers.py result")
    rows, meta = [], None
    if args.gpt2q:
        g = load_json(args.gpt2q, "--gpt2q")
        if isinstance(g, list):
            rows = g
        elif isinstance(g, dict) and isinstance(g.get("rows"), list):
            rows, meta = g["rows"], g
        else:
            fail(f"--gpt2q {args.gpt2q}: expected a list of rows or an object with 'rows'")
    text = build(peers, rows, meta)
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
