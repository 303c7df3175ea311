#!/usr/bin/env bash
# Runs every harness in dev/cuda/bin (built by build.sh), three ways each:
#   1. compute-sanitizer --tool memcheck (leak check on)  <bin> --validate-only
#   2. compute-sanitizer --tool racecheck                 <bin> --validate-only
#      (shared-memory hazards; RACECHECK=0 skips it)
#   3. <bin>            (full validation, then the benchmark)
# Every harness must accept --validate-only (small sizes, no benchmark) and
# exit non-zero when a check fails. All output of one binary goes to
# $OUT/devcuda_<name>.log ($OUT unset: dev/cuda/bin/devcuda_<name>.log). The
# end of the output repeats every BENCH and FAIL line and one summary line
# per binary. Exit status: non-zero if any run failed.
#
#   OUT=/tmp/out bash dev/cuda/run_all.sh
#   ONLY=attention_decode bash dev/cuda/run_all.sh      # one binary
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$here/bin
logdir=${OUT:-$bin}
mkdir -p "$logdir"
SAN=$(command -v compute-sanitizer || true)
[ -n "$SAN" ] || { [ -x /usr/local/cuda/bin/compute-sanitizer ] && SAN=/usr/local/cuda/bin/compute-sanitizer; }

exes=()
for f in "$bin"/*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  case $(basename "$f") in *.txt | *.log | *.sh) continue ;; esac
  [ -n "${ONLY:-}" ] && [ "$(basename "$f")" != "$ONLY" ] && continue
  exes+=("$f")
done
[ ${#exes[@]} -gt 0 ] || { echo "run_all.sh: no binaries in $bin (run build.sh first)"; exit 2; }

# run LOG LABEL CMD...: appends a header and the output to LOG, prints
# "LABEL=PASS|FAIL(rc)" and returns the exit code.
run() {
  local log=$1 label=$2 t0=$SECONDS rc
  shift 2
  echo "===== $label: $*" >>"$log"
  "$@" >>"$log" 2>&1
  rc=$?
  echo "===== $label: exit $rc, $((SECONDS - t0)) s" >>"$log"
  if [ $rc -eq 0 ]; then printf '%s=PASS(%ds) ' "$label" $((SECONDS - t0)); else printf '%s=FAIL(rc %d) ' "$label" $rc; fi
  return $rc
}

status=0
summary=()
for exe in "${exes[@]}"; do
  name=$(basename "$exe")
  log=$logdir/devcuda_$name.log
  : >"$log"
  echo "run_all.sh: $name -> $log"
  line="$name: "
  if [ -n "$SAN" ]; then
    line+=$(run "$log" memcheck "$SAN" --tool memcheck --leak-check full --error-exitcode 97 "$exe" --validate-only) || status=1
    if [ "${RACECHECK:-1}" = 1 ]; then
      line+=$(run "$log" racecheck "$SAN" --tool racecheck --error-exitcode 97 "$exe" --validate-only) || status=1
    fi
  else
    line+="sanitizer=SKIPPED(no compute-sanitizer) "
  fi
  line+=$(run "$log" full "$exe") || status=1
  # The harness' SUMMARY lines ("n passed, m failed"), one per run; CUDA
  # errors; the sanitizers' own error counts.
  line+="| $(grep -e '^SUMMARY' -e '^CUDA error' -e '========= ERROR SUMMARY' -e '========= RACECHECK SUMMARY' "$log" |
    sed -e 's/^SUMMARY //' -e 's/^========= //' | paste -sd ';' -)"
  summary+=("$line")
done

echo
echo "==================== BENCH / FAIL lines ===================="
for exe in "${exes[@]}"; do
  name=$(basename "$exe")
  grep -h -e '^BENCH' -e '^FAIL' -e '^  -> x' -e '^CUDA error' -e 'ERROR SUMMARY: [1-9]' -e 'RACECHECK SUMMARY: [1-9]' \
    "$logdir/devcuda_$name.log" | sed "s|^|$name: |"
done
echo "==================== summary ===================="
printf '%s\n' "${summary[@]}"
exit $status
