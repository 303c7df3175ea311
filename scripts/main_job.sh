#!/usr/bin/env bash
# The main job: `gpt2q pipeline` on AG News (docs/pipeline.md). Fine-tunes a
# small GPT-2 from scratch on the seeded 80% of test.csv (or BASE=DIR, a
# checkpoint of yours; or MODEL=DIR, an already fine-tuned classifier),
# quantizes it to every variant, compares them on the held-out 20% and writes
# the report under OUT (default out/pipeline). Re-running reuses finished
# stages. Extra arguments after `--` go to `gpt2q pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-out/pipeline}
if [ "${1:-}" = "--" ]; then shift; fi
for f in "$DATA/ag_news/test.csv" "$DATA/gpt2-tokenizer/vocab.json" "$DATA/gpt2-tokenizer/merges.txt"; do
  if [ ! -f "$f" ]; then
    echo "missing $f: put AG News test.csv (label 1-4, title, description) under \$DATA/ag_news/ and GPT-2's vocab.json + merges.txt under \$DATA/gpt2-tokenizer/ (DATA=$DATA)" >&2
    exit 1
  fi
done
# Only what the job runs: the gpt2q target (not the tests and benchmarks),
# and the CUDA backend only where a GPU is there to run it (--device cuda);
# ccache, where installed, makes later builds cheap (scripts/build.sh).
if [ -z "${GPT2Q_CUDA:-}" ] && ! nvidia-smi -L >/dev/null 2>&1; then export GPT2Q_CUDA=OFF; fi
GPT2Q_NINJA_FLAGS="${GPT2Q_NINJA_FLAGS:-} gpt2q" bash scripts/build.sh
# Idle OpenMP threads sleep instead of spinning: on a small or shared machine
# spinning threads take the cores the working ones need (docs/benchmarks.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
args=(--data "$DATA/ag_news/test.csv" --tokenizer "$DATA/gpt2-tokenizer" --out "$OUT")
if [ -n "${MODEL:-}" ]; then args+=(--model "$MODEL"); fi
if [ -n "${BASE:-}" ]; then args+=(--base "$BASE"); fi
time ./build/gpt2q pipeline "${args[@]}" "$@"
