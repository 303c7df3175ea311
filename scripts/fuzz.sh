#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, docs/reliability.md "Fuzzing") with
# clang into build-fuzz/ and fuzzes each target for SECONDS, one after another.
#   scripts/fuzz.sh [SECONDS [TARGET...]]     default: 60 s, every target
# TARGET: safetensors config vocab_merges dataset quant_state train_state
# tokenize (a fuzz_ prefix is accepted).
#
# Per target, under build-fuzz/:
#   seeds/T/       regenerated every run: fixtures + the harness's generated seeds
#   corpus/T/      kept between runs; libFuzzer adds what finds new coverage
#   artifacts/T/   crash-*, timeout-*, oom-*, leak-* reproducers
#   logs/T.*.log   regression and fuzzing output
# First every file of fuzz/regressions/T/ and every generated seeds/T/hostile-*
# runs once (fixed crashes stay fixed), then libFuzzer fuzzes in fork mode
# with -ignore_crashes, so one crash does not end the run and every finding
# of the SECONDS gets an artifact. A summary line per target goes to stdout
# and build-fuzz/fuzz-summary.txt. Exit status 1 when a regression input or
# the fuzzing crashed (timeouts and out-of-memory count as crashes).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

all=(safetensors config vocab_merges dataset quant_state train_state tokenize)
secs=${1:-60}
[ $# -gt 0 ] && shift
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS [TARGET...]]" >&2; exit 2; }
targets=()
for t in "$@"; do
  t=${t#fuzz_}
  [[ " ${all[*]} " == *" $t "* ]] || { echo "unknown fuzz target '$t' (${all[*]})" >&2; exit 2; }
  targets+=("$t")
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

dir=${GPT2Q_FUZZ_DIR:-build-fuzz}
export GPT2Q_DATA=${GPT2Q_DATA:-$(cd .. && pwd)/shared/data}
# One thread: the harnesses are single-threaded, and OpenMP pools under ASan
# only cost start-up time.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

# --- build ------------------------------------------------------------------
bash scripts/install_deps.sh
command -v clang++ >/dev/null || { echo "scripts/fuzz.sh needs clang++ with libFuzzer (Debian: clang, libclang-rt-dev)" >&2; exit 2; }
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd .. && pwd)}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# RelWithDebInfo: -O2 -g, symbolized stacks in the reports.
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DGPT2Q_FUZZ=ON -DGPT2Q_CUDA=OFF -DGPT2Q_BUILD_TESTS=OFF -DGPT2Q_BUILD_BENCH=OFF >/dev/null
ninja -C "$dir" ${GPT2Q_NINJA_FLAGS:-} "${targets[@]/#/fuzz_}"

# --- per-target settings ------------------------------------------------------
# The JSON formats get inputs of over 1 MB (deep nesting, huge keys);
# vocab_merges more, so that the whole GPT-2 tokenizer fits as a seed.
max_len() {
  case $1 in
    vocab_merges) echo 1400000 ;;
    tokenize) echo 65536 ;;
    *) echo 1100000 ;;
  esac
}

# Fixture seeds on top of what the harness generates (GPT2Q_FUZZ_SEEDS).
seed_fixtures() {
  local t=$1 out=$2 f i
  case $t in
    safetensors)
      find tests/fixtures -name '*.safetensors' -size -1000k -exec cp {} "$out/" \; 2>/dev/null || true
      for f in "$GPT2Q_DATA"/tiny-gpt2/*/model.safetensors; do
        [ -f "$f" ] && cp "$f" "$out/shared-$(basename "$(dirname "$f")").safetensors"
      done ;;
    config)
      i=0
      for f in $(find tests/fixtures "$GPT2Q_DATA/tiny-gpt2" -name '*config.json' 2>/dev/null); do
        cp "$f" "$out/fixture-$((i++))-$(basename "$f")"
      done ;;
    vocab_merges)
      for f in "$GPT2Q_DATA/tiny-gpt2/tiny_gpt2" "$GPT2Q_DATA/gpt2-tokenizer"; do
        [ -f "$f/vocab.json" ] && { cat "$f/vocab.json"; printf '\n--merges.txt--\n'; cat "$f/merges.txt"; } \
          >"$out/shared-$(basename "$f")"
      done ;;
    dataset)
      # First byte: 0 AG News, 1 header CSV, 2 JSONL (fuzz/fuzz_dataset.cpp).
      [ -f tests/fixtures/io/tricky.csv ] && { printf '\x01'; cat tests/fixtures/io/tricky.csv; } >"$out/fixture-tricky"
      [ -f "$GPT2Q_DATA/ag_news/test.csv" ] && { printf '\x00'; head -n 50 "$GPT2Q_DATA/ag_news/test.csv"; } \
        >"$out/shared-ag-news-head" ;;
    tokenize)
      [ -f "$GPT2Q_DATA/ag_news/test.csv" ] && head -n 30 "$GPT2Q_DATA/ag_news/test.csv" | split -l 1 -a 2 - "$out/ag-news-"
      f=$GPT2Q_DATA/gpt2-tokenizer/llama.cpp-test-vectors/ggml-vocab-gpt-2.gguf.inp
      [ -f "$f" ] && cp "$f" "$out/llama-cpp-vectors"
      f=$GPT2Q_DATA/text/tinyshakespeare_input.txt
      [ -f "$f" ] && head -c 4000 "$f" >"$out/shakespeare" ;;
  esac
  return 0
}

# The last "cov: N ft: N" libFuzzer printed, and the execs of its last status line.
stat_of() {  # stat_of LOG KEY
  grep -o "$2: [0-9]*" "$1" | tail -n 1 | grep -o '[0-9]*$' || echo 0
}

mkdir -p "$dir/logs"
summary=$dir/fuzz-summary.txt
: >"$summary"
status=0
for t in "${targets[@]}"; do
  bin=$dir/fuzz/fuzz_$t
  seeds=$dir/seeds/$t corpus=$dir/corpus/$t art=$dir/artifacts/$t
  rm -rf "$seeds"
  mkdir -p "$seeds" "$corpus" "$art"
  GPT2Q_FUZZ_SEEDS=$seeds "$bin" >"$dir/logs/$t.seeds.log" 2>&1 || { echo "fuzz_$t: seed generation failed" >&2; cat "$dir/logs/$t.seeds.log" >&2; exit 1; }
  seed_fixtures "$t" "$seeds"
  flags=(-max_len="$(max_len "$t")" -timeout=25 -rss_limit_mb=4096 -dict=fuzz/dict/$t.dict)

  # Regressions: each input once, in its own process, so one crash hides no other.
  reg_total=0 reg_failed=0
  : >"$dir/logs/$t.regress.log"
  for f in fuzz/regressions/"$t"/* "$seeds"/hostile-*; do
    [ -f "$f" ] || continue
    [[ "$f" == *.md ]] && continue
    reg_total=$((reg_total + 1))
    if ! timeout 120 "$bin" "${flags[@]}" "$f" >>"$dir/logs/$t.regress.log" 2>&1; then
      reg_failed=$((reg_failed + 1))
      echo "fuzz_$t: regression input fails: $f (see $dir/logs/$t.regress.log)" >&2
    fi
  done

  before=$(find "$art" -type f | wc -l)
  log=$dir/logs/$t.fuzz.log
  start=$(date +%s)
  rc=0
  nice "$bin" "${flags[@]}" -max_total_time="$secs" -artifact_prefix="$art/" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -print_funcs=0 "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  crashes=$(( $(find "$art" -type f | wc -l) - before ))
  # Fork mode's status lines: "#EXECS: cov: N ft: N corp: N exec/s N oom/timeout/crash: a/b/c time: Ns ...".
  execs=$(grep -o '^#[0-9]*:' "$log" | tail -n 1 | tr -dc '0-9' || true)
  execs=${execs:-0}
  line=$(printf 'fuzz_%-13s seconds=%-4s execs=%-9s exec/s=%-6s cov=%-6s ft=%-7s corpus=%-6s crashes=%s regressions=%s/%s failed' \
    "$t" "$took" "$execs" "$(( execs / (took > 0 ? took : 1) ))" "$(stat_of "$log" cov)" "$(stat_of "$log" ft)" \
    "$(find "$corpus" -type f | wc -l)" "$crashes" "$reg_failed" "$reg_total")
  echo "$line" | tee -a "$summary"
  if [ "$crashes" -gt 0 ] || [ "$reg_failed" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; }; then
    [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && echo "fuzz_$t: libFuzzer exited $rc (see $log)" >&2
    [ "$crashes" -gt 0 ] && echo "fuzz_$t: $crashes new artifact(s) in $art (see $log)" >&2
    status=1
  fi
done
echo "summary: $summary"
exit $status
