#!/usr/bin/env bash
# What changes a result and what does not (docs/reliability.md,
# "Determinism"): a small AG News classifier is fine-tuned with 1 and 2
# threads, then evaluated, and a random 256-wide language model's perplexity measured, with
# 1 and 2 threads and with each of OpenBLAS's kernel sets this CPU can run
# (OPENBLAS_CORETYPE). Prints one line per run, then what differed.
#   tools/determinism_probe.sh [OUT_DIR]   (default /tmp/gpt2q-determinism)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./build/gpt2q}
DATA=${DATA:-../shared/data}
OUT=${1:-/tmp/gpt2q-determinism}
CORES=${CORES:-"default Haswell Sandybridge"}
rm -rf "$OUT" && mkdir -p "$OUT"
tok="$DATA/gpt2-tokenizer"
head -c 200000 "$DATA/wikitext-2-raw/wiki.test.raw" > "$OUT/wiki.txt"
"$BIN" init --geometry 256x2x4 --seed 3 --out "$OUT/lm" > /dev/null
core_env() { if [ "$1" = default ]; then echo ""; else echo "OPENBLAS_CORETYPE=$1"; fi; }

echo "== training: 1 vs 2 threads (default kernels)"
for t in 1 2; do
  env OMP_NUM_THREADS=$t OMP_WAIT_POLICY=passive "$BIN" finetune --init 64x2x4 --tokenizer "$tok" \
    --train "$DATA/ag_news/test.csv" --eval-split 0.2 --limit 2000 --epochs 1 --batch-size 16 --lr 1e-3 \
    --max-length 64 --seed 5 --quiet --json --out "$OUT/ft$t" > "$OUT/ft$t.json"
  echo "threads $t: $(sha256sum < "$OUT/ft$t/model.safetensors" | cut -c1-16)  $(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('eval acc', j['last_eval']['accuracy'], 'loss', j['last_eval']['loss'])" "$OUT/ft$t.json")"
done
sed -n 5001,6000p "$DATA/ag_news/test.csv" > "$OUT/heldout.csv"

echo "== eval and perplexity: threads x BLAS kernels"
for core in $CORES; do
  for t in 1 2; do
    tag="$core-t$t"
    env $(core_env "$core") OMP_NUM_THREADS=$t "$BIN" eval --model "$OUT/ft1" --data "$OUT/heldout.csv" --json \
      --predictions "$OUT/pred-$tag.csv" > "$OUT/eval-$tag.json"
    env $(core_env "$core") OMP_NUM_THREADS=$t "$BIN" perplexity --model "$OUT/lm" \
      --tokenizer "$tok" --text "$OUT/wiki.txt" --json > "$OUT/ppl-$tag.json"
    python3 - "$OUT" "$tag" <<'PY'
import json, sys, hashlib
out, tag = sys.argv[1], sys.argv[2]
e = json.load(open(f"{out}/eval-{tag}.json")); p = json.load(open(f"{out}/ppl-{tag}.json"))
h = hashlib.sha256(open(f"{out}/pred-{tag}.csv", "rb").read()).hexdigest()[:16]
print(f"{tag:18s} predictions {h}  accuracy {e['accuracy']:.6f}  macro_f1 {e['macro_f1']:.6f}  perplexity {p['ppl']!r}  nll {p['nll']!r}")
PY
  done
done
python3 - "$OUT" $CORES <<'PY'
import sys, csv
out, cores = sys.argv[1], sys.argv[2:]
def preds(tag): return [r["pred"] for r in csv.DictReader(open(f"{out}/pred-{tag}.csv"))]
base = preds(f"{cores[0]}-t1")
for core in cores:
    for t in (1, 2):
        d = sum(a != b for a, b in zip(base, preds(f"{core}-t{t}")))
        print(f"{core}-t{t}: {d} of {len(base)} predictions differ from {cores[0]}-t1")
PY
