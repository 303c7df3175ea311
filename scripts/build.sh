#!/usr/bin/env bash
# Configures and builds gpt2q (Release) into build/ (or $GPT2Q_BUILD_DIR).
# Extra arguments go to cmake, e.g. -DGPT2Q_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
dir=${GPT2Q_BUILD_DIR:-build}
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=${GPT2Q_BUILD_TYPE:-Release} "$@" >/dev/null
ninja -C "$dir" ${GPT2Q_NINJA_FLAGS:-}
