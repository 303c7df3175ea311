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
mkdir -p .device
tests=(test_cuda_ops test_cuda_dequant test_cuda_backend_ops test_cuda_model test_lib_conformance_models
       test_lib_conformance_124m)
bins=("$build/gpt2q" "$build/bench/gpt2q_cuda_timing")
for t in "${tests[@]}"; do [ -x "$build/tests/$t" ] && bins+=("$build/tests/$t"); done
"$shared/tools/bundle-binaries" .device/bundle.tar.xz "${bins[@]}"
# The kernel harness (dev/cuda), built here for sm_90.
bash dev/cuda/build.sh >/dev/null
tar -C dev/cuda -cJf .device/devcuda.tar.xz bin run_all.sh
# Data the tests and runs read (the device gets the repo alone).
rm -rf .devdata && mkdir -p .devdata
cp -r "$shared/data/ag_news" "$shared/data/gpt2-tokenizer" "$shared/data/wikitext-2-raw" .devdata/
# The main job's fine-tuned classifier (bash scripts/main_job.sh), stored in
# fp16 to travel light, with its held-out texts: run.sh's `agree` stage.
cls=out/pipeline/finetune
if [ -f $cls/config.json ] && [ -f out/pipeline/data/heldout.jsonl ]; then
  "$build/gpt2q" quantize --model "$cls" --method fp16 --out .devdata/agnews-classifier >/dev/null
  cp out/pipeline/data/heldout.jsonl .devdata/agnews-classifier/
else
  echo "make_bundle: no out/pipeline classifier (run bash scripts/main_job.sh first): the agree stage will fail" >&2
fi
du -sh .device/* .devdata
