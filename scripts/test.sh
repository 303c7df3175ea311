#!/usr/bin/env bash
# Builds and runs the whole test suite (GoogleTest through ctest).
#   scripts/test.sh             Release build in build/
#   scripts/test.sh --sanitize  ASan + UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  export GPT2Q_BUILD_DIR=build-asan GPT2Q_BUILD_TYPE=RelWithDebInfo
  # CPU only: the sanitizers see none of the device code, ASan's shadow gap
  # collides with the CUDA driver's address range on GPU machines, and
  # LeakSanitizer reports the driver's own allocations (google/sanitizers#629).
  bash scripts/build.sh -DGPT2Q_SANITIZE=ON -DGPT2Q_CUDA=OFF
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  export GPT2Q_BUILD_DIR=build
  bash scripts/build.sh
fi
cd "$GPT2Q_BUILD_DIR"
ctest --output-on-failure -j2 --timeout 1200
