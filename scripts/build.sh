#!/usr/bin/env bash
# Configures and builds gpt2q (Release) into build/ (or $GPT2Q_BUILD_DIR).
# Extra arguments go to cmake, e.g. -DGPT2Q_SANITIZE=ON.
#
# The CUDA backend (docs/cuda.md) is built wherever /usr/local/cuda/bin/nvcc
# is, CI included, so that it keeps compiling; its tests skip where no GPU
# is. GPT2Q_CUDA=ON|OFF in the environment, or -DGPT2Q_CUDA=... among the
# arguments, decides instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
dir=${GPT2Q_BUILD_DIR:-build}
nvcc=/usr/local/cuda/bin/nvcc
cuda_args=()
if [[ " $* " != *" -DGPT2Q_CUDA="* ]]; then
  cuda=${GPT2Q_CUDA:-auto}
  if [ "$cuda" = auto ]; then
    cuda=OFF
    [ -x "$nvcc" ] && cuda=ON
  fi
  cuda_args=(-DGPT2Q_CUDA="$cuda")
  if [ "$cuda" = ON ] && [ -x "$nvcc" ]; then cuda_args+=(-DCMAKE_CUDA_COMPILER="$nvcc"); fi
fi
# ccache, where installed, makes rebuilds after a branch switch or in a fresh
# clone cheap. CCACHE_BASEDIR lets clones at other paths share the cache.
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd .. && pwd)}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=${GPT2Q_BUILD_TYPE:-Release} "${launcher[@]}" "${cuda_args[@]}" "$@" >/dev/null
ninja -C "$dir" ${GPT2Q_NINJA_FLAGS:-}
