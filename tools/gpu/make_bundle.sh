#!/usr/bin/env bash
# Packs what a GPU run needs that the GPU machine cannot build (it has no
# -dev packages): gpt2q, the GPU-relevant test binaries, the CUDA timing tool
# and their libraries (../shared/tools/bundle-binaries), the dev/cuda kernel
# harness binaries, and the test data, into .device/ and .devdata/ (both
# git-ignored), for tools/gpu/run.sh to use there. docs/cuda.md says how a
# run is made and recorded.
#   tools/gpu/make_bundle.sh [BUILD_DIR]      (default build/, a CUDA build)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
shared=$(cd ../shared && pwd)
# The CPU side of the agree stage (run.sh), into .devdata/cpu: predictions of
# the fine-tuned classifier's variants on its held-out texts, and the
# perplexity of each LM variant of gpt2q init's 124M (seeded: the same
# weights there) on the first 16 KB of WikiText-2. Variants are quantized
# from the fp16 copy, as run.sh does there (quantization is deterministic).
make_cpu_refs() {
  for m in fp16 int8-tensor llm-int8 nf4 fp4; do
    dir=.devdata/agnews-classifier
    if [ $m != fp16 ]; then
      dir=$q/$m
      qargs=(--method $m)
      [ $m = nf4 ] && qargs+=(--double-quant)
      "$build/gpt2q" quantize --model .devdata/agnews-classifier "${qargs[@]}" --out "$dir" >/dev/null
    fi
    "$build/gpt2q" eval --model "$dir" --data .devdata/agnews-classifier/heldout.jsonl --format jsonl \
      --tokenizer "$tok" --batch-size 64 --json --predictions ".devdata/cpu/f_${m}_cpu.csv" >/dev/null
  done
  "$build/gpt2q" init --geometry 124m --task lm --out "$q/lm124m" >/dev/null
  head -c 16384 "$shared/data/wikitext-2-raw/wiki.test.raw" >"$q/wiki16k.txt"
  for m in f32 int8-tensor llm-int8 nf4 fp4; do
    dir=$q/lm124m
    if [ $m != f32 ]; then
      dir=$q/lmq_$m
      "$build/gpt2q" quantize --model "$q/lm124m" --method $m --out "$dir" >/dev/null
    fi
    "$build/gpt2q" perplexity --model "$dir" --text "$q/wiki16k.txt" --tokenizer "$tok" --json \
      >".devdata/cpu/ppl_$m.json"
  done
}


mkdir -p .device
tests=(test_cuda_ops test_cuda_dequant test_cuda_backend_ops test_cuda_model test_cuda_train_ops test_cuda_train
       test_lib_conformance_models
       test_lib_conformance_124m)
bins=("$build/gpt2q" "$build/bench/gpt2q_cuda_timing")
for t in "${tests[@]}"; do [ -x "$build/tests/$t" ] && bins+=("$build/tests/$t"); done
"$shared/tools/bundle-binaries" .device/bundle.tar.xz "${bins[@]}"
# The kernel harness (dev/cuda), built here for sm_90.
bash dev/cuda/build.sh >/dev/null
tar -C dev/cuda -cJf .device/devcuda.tar.xz bin run_all.sh
# Data the tests and runs read (the device gets the repo alone).
# (.devdata/cpu, the CPU side of the agree stage, is kept when it was made
# at this commit, or with REUSE_CPU_REFS=1: it takes minutes here.)
commit=$(git rev-parse --short HEAD)
keep_cpu=0
if [ -f .devdata/cpu/commit ] && { [ "$(cat .devdata/cpu/commit)" = "$commit" ] || [ "${REUSE_CPU_REFS:-0}" = 1 ]; }; then
  keep_cpu=1 && mv .devdata/cpu .device/cpu_refs
fi
rm -rf .devdata && mkdir -p .devdata
[ $keep_cpu = 1 ] && mv .device/cpu_refs .devdata/cpu
cp -r "$shared/data/ag_news" "$shared/data/gpt2-tokenizer" "$shared/data/wikitext-2-raw" "$shared/data/wikitext-2" \
  "$shared/data/text" .devdata/
# The main job's fine-tuned classifier (bash scripts/main_job.sh), stored in
# fp16 to travel light, with its held-out texts: run.sh's `agree` stage.
cls=out/pipeline/finetune
if [ -f $cls/config.json ] && [ -f out/pipeline/data/heldout.jsonl ]; then
  "$build/gpt2q" quantize --model "$cls" --method fp16 --out .devdata/agnews-classifier >/dev/null
  cp out/pipeline/data/heldout.jsonl .devdata/agnews-classifier/
  # The CPU side, computed here: on the device machine it would take most
  # of a run.
  tok=$shared/data/gpt2-tokenizer q=$(mktemp -d)
  [ $keep_cpu = 1 ] || { mkdir -p .devdata/cpu && make_cpu_refs && echo "$commit" >.devdata/cpu/commit; }
  rm -rf "$q"
else
  echo "make_bundle: no out/pipeline classifier (run bash scripts/main_job.sh first): the agree stage will fail" >&2
fi
du -sh .device/* .devdata

