#!/usr/bin/env bash
# The main job (until the end-to-end pipeline lands): evaluate a classifier
# checkpoint on AG News test.csv, then measure WikiText-2 perplexity of an LM.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-}
LM=${LM:-$DATA/tiny-gpt2/fake_gpt2}
for f in "$DATA/ag_news/test.csv" "$DATA/wikitext-2-raw/wiki.test.raw" "$DATA/gpt2-tokenizer/vocab.json"; do
  if [ ! -f "$f" ]; then
    echo "missing $f: put AG News test.csv under \$DATA/ag_news/, WikiText-2 raw wiki.test.raw under \$DATA/wikitext-2-raw/ and the GPT-2 tokenizer (vocab.json, merges.txt) under \$DATA/gpt2-tokenizer/ (DATA=$DATA)" >&2
    exit 1
  fi
done
bash scripts/build.sh
mkdir -p out
if [ -z "$MODEL" ]; then
  # No fine-tuned classifier given: make an untrained 4-class GPT-2 (synthetic
  # weights) so the whole path runs; its accuracy is chance level (~25%).
  MODEL=out/synthetic-classifier
  ./build/gpt2q init --geometry 128x2x4 --n-positions 128 --task classify --out "$MODEL"
fi
echo "== gpt2q eval: $MODEL on AG News test.csv"
./build/gpt2q eval --model "$MODEL" --data "$DATA/ag_news/test.csv" --format agnews \
  --tokenizer "$DATA/gpt2-tokenizer" --predictions out/agnews_predictions.csv
echo "== gpt2q perplexity: $LM on WikiText-2 raw test"
./build/gpt2q perplexity --model "$LM" --text "$DATA/wikitext-2-raw/wiki.test.raw" \
  --tokenizer "$DATA/gpt2-tokenizer"
