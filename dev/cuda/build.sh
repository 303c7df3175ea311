#!/usr/bin/env bash
# Builds every dev/cuda/*.cu into dev/cuda/bin/<name>, in parallel. nvcc's
# stderr (ptxas -v: registers, spills, static shared memory per kernel; and
# any warning) goes to dev/cuda/bin/ptxas_<name>.txt; a one-line-per-kernel
# summary and every warning are printed. Exit status: non-zero if a build
# failed (or, with WERROR=1, if anything warned).
#
#   bash dev/cuda/build.sh              # all harnesses
#   bash dev/cuda/build.sh attention_decode.cu
#   NVCC=/path/to/nvcc JOBS=4 bash dev/cuda/build.sh
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$here/bin
mkdir -p "$bin"
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
[ -x "$NVCC" ] || NVCC=$(command -v nvcc) || { echo "build.sh: no nvcc" >&2; exit 2; }
# Demangler: cu++filt beside nvcc, else binutils' c++filt, else none.
FILT=$(dirname "$NVCC")/cu++filt
[ -x "$FILT" ] || FILT=$(command -v c++filt) || FILT=cat
JOBS=${JOBS:-$(nproc)}
# The flags of the brief, plus host warnings (as the product's .cu files get).
FLAGS=(-O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -lineinfo -Xptxas -v -Xcompiler -Wall,-Wextra)

if [ $# -gt 0 ]; then
  srcs=("$@")
else
  srcs=("$here"/*.cu)
fi

build_one() {
  local src=$1 name
  name=$(basename "$src" .cu)
  local t0=$SECONDS
  if "$NVCC" "${FLAGS[@]}" -o "$bin/$name" "$src" 2>"$bin/ptxas_$name.txt"; then
    echo "built $name ($((SECONDS - t0)) s)" >"$bin/.status_$name"
  else
    echo "FAILED $name" >"$bin/.status_$name"
  fi
}

running=0
for src in "${srcs[@]}"; do
  case $src in /*) ;; *) [ -f "$src" ] || src=$here/$src ;; esac
  [ -f "$src" ] || { echo "build.sh: no such file $src" >&2; exit 2; }
  build_one "$src" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

failed=0 warned=0
for src in "${srcs[@]}"; do
  name=$(basename "$src" .cu)
  report=$bin/ptxas_$name.txt
  status=$(cat "$bin/.status_$name" 2>/dev/null || echo "FAILED $name")
  rm -f "$bin/.status_$name"
  echo "$status"
  case $status in FAILED*) failed=1; rm -f "$bin/$name" ;; esac  # no stale binary for run_all.sh
  # Warnings and errors: every line nvcc printed that is not ptxas' report.
  grep -v -e '^ptxas info' -e 'bytes stack frame' "$report" | grep -v '^\s*$' && warned=1
  # One line per kernel: registers, spill stores/loads, static smem, name.
  awk '
    /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); fn = substr($0, RSTART + 1, RLENGTH - 2); spill = "" }
    /bytes spill stores/ { split($0, a, ","); st = a[2]; ld = a[3]; gsub(/[^0-9]/, "", st); gsub(/[^0-9]/, "", ld); spill = st "/" ld }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      printf "  regs %3d  spill st/ld %-7s  smem %6d  %s\n", regs, (spill == "" ? "0/0" : spill), smem, fn
    }' "$report" | "$FILT" | sed -e 's/^\(.*  [^(]*\)(.*$/\1/' -e 's/^\(  regs .*  \)void /\1/'
done
[ "$warned" = 1 ] && echo "build.sh: warnings above (full text in $bin/ptxas_*.txt)"
[ "$failed" = 1 ] && { echo "build.sh: a build FAILED (see $bin/ptxas_*.txt)"; exit 1; }
[ "$warned" = 1 ] && [ "${WERROR:-0}" = 1 ] && exit 1
exit 0
