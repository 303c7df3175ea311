#!/usr/bin/env bash
# One GPU run, on the device machine, in the repository root: what
# tools/gpu/make_bundle.sh packed (.device/, .devdata/) is unpacked and the
# stages asked for run in order, each logging to $OUT (tests.log,
# sanitizer.log, cli.log, devcuda.log, bench.json, peers.json, peers.log,
# profile_*.csv, summary.txt; more than 8 files are packed into results.tgz
# beside summary.txt, as the device tool returns 8). docs/cuda.md records
# every run.
#   bash tools/gpu/run.sh tests sanitize cli devcuda bench peers
# Stages:
#   tests     the GPU test binaries (test_cuda_*, conformance on CUDA)
#   sanitize  compute-sanitizer memcheck and racecheck over the GPU tests
#   cli       gpt2q on the GPU against itself on the CPU (eval predictions
#             of every variant, perplexity, generation)
#   agree     the fine-tuned classifier's variants, GPU against CPU, LM
#             variants' perplexity, GPU against CPU, and the KL of fp16 /
#             bf16 compute against fp32 compute
#   devcuda   the dev/cuda kernel harness (validation under memcheck, then
#             the benchmarks)
#   bench     gpt2q bench --device cuda --method all (bench.json: the
#             interchange format of tools/gpu_bench_report.py)
#   peers     tools/bench_peers.py (PyTorch, transformers, bitsandbytes)
#   train     issue 13: gpt2q bench-train --device cuda (124M classifier 16 x
#             128, LM 16 x 1024) and tools/bench_train_peers.py (PyTorch),
#             train.json / train_peers.json (TRAIN_PEERS=0 skips PyTorch;
#             PROFILE_LM=1 adds an ncu profile of one bf16 LM step);
#             a short finetune on the GPU against the same on the CPU (eval
#             accuracy and loss)
#   study     issue 13's study at 124M on the GPU (pipeline --device cuda
#             --geometry 124m with LM pre-training), then issue 15's
#             perplexities of the pre-trained LM's GPTQ / RTN / NF4 variants
#   profile   ncu: every kernel of two batch-1 classifications (fp16, nf4),
#             of one batch of 256 (fp16, int8, nf4, nf4-dq bf16) and of 4
#             greedy decode steps (fp16, nf4), its time and DRAM
#             bytes (profile_*.csv), graph nodes profiled one by one
set -u
cd "$(dirname "$0")/../.."
repo=$PWD
OUT=${OUT:-/tmp/gpt2q_gpu_out}
mkdir -p "$OUT"
work=/tmp/gpt2q_gpu
mkdir -p "$work"
summary=$OUT/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

tar -C "$work" -xJf .device/bundle.tar.xz
B=$work/bundle
export LD_LIBRARY_PATH=$B/lib:/usr/local/cuda/lib64
export GPT2Q_DATA=$repo/.devdata GPT2Q_FIXTURES=$repo/tests/fixtures GPT2Q_BINARY=$B/gpt2q
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16} OMP_WAIT_POLICY=passive
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
G=$B/gpt2q
TOK=$repo/.devdata/gpt2-tokenizer
AG=$repo/.devdata/ag_news/test.csv
WIKI=$repo/.devdata/wikitext-2-raw/wiki.test.raw
note "commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); $("$G" --version | head -1)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee -a "$summary"

# stage NAME CMD...: runs CMD with its output in $OUT/NAME.log (appended),
# and notes the time and exit status.
# DEADLINE (seconds since the run began): later commands are skipped and
# noted, so a run near the end of the session's device time still packs
# and returns what it measured.
command_stage() {
  local log=$OUT/$1.log t0=$SECONDS rc
  shift
  if [ -n "${DEADLINE:-}" ] && [ "$SECONDS" -ge "$DEADLINE" ]; then
    note "$(printf '%-8s skipped (DEADLINE %ss)  %s' "$(basename "$log" .log)" "$DEADLINE" "$*" | cut -c1-200)"
    return 0
  fi
  echo "===== $*" >>"$log"
  "$@" >>"$log" 2>&1
  rc=$?
  echo "===== exit $rc, $((SECONDS - t0)) s" >>"$log"
  note "$(printf '%-8s rc %3d %4ds  %s' "$(basename "$log" .log)" $rc $((SECONDS - t0)) "$*" | cut -c1-200)"
  return 0
}
stage() { command_stage "$@"; }

models() {
  [ -d "$work/cls124m" ] || "$G" init --geometry 124m --task classify --out "$work/cls124m" >/dev/null
  [ -d "$work/lm124m" ] || "$G" init --geometry 124m --task lm --out "$work/lm124m" >/dev/null
}

run_tests() {
  for t in test_cuda_ops test_cuda_dequant test_cuda_backend_ops test_cuda_model test_cuda_train_ops test_cuda_train \
           test_lib_conformance_models \
           test_lib_conformance_124m; do
    # The conformance binaries hold CPU instances too: the CPU ran them already.
    local filter=()
    case $t in test_lib_*) filter=(--gtest_filter='*cuda*') ;; esac
    [ -x "$B/$t" ] && stage tests "$B/$t" "${filter[@]}"
  done
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED  \]" "$OUT/tests.log" | sort | uniq -c | tee -a "$summary"
}

# Each run under a time limit (SANITIZE_TIMEOUT, default 150 s): a run that
# hits it is reported with rc 124 and its log so far. SANITIZE_ONLY (an
# extended regex) keeps the binaries whose name matches it.
run_sanitize() {
  local SAN="timeout ${SANITIZE_TIMEOUT:-150} $SAN"
  sanitized() { [[ $* =~ /(test_cuda_[a-z_]+) ]] && [[ ${BASH_REMATCH[1]} =~ ${SANITIZE_ONLY:-.} ]]; }
  stage() { if sanitized "$@"; then command_stage "$@"; fi; }
  stage sanitizer $SAN --tool memcheck --leak-check full --error-exitcode 9 "$B/test_cuda_ops"
  stage sanitizer $SAN --tool memcheck --error-exitcode 9 "$B/test_cuda_backend_ops"
  # The out-of-memory test provokes the failing cudaMallocAsync that memcheck
  # reports as an API error: it runs on its own with those reports off.
  stage sanitizer $SAN --tool memcheck --error-exitcode 9 "$B/test_cuda_model" --gtest_filter='-*OutOfMemory*'
  stage sanitizer $SAN --tool memcheck --report-api-errors no --error-exitcode 9 "$B/test_cuda_model" \
    --gtest_filter='*OutOfMemory*'
  stage sanitizer $SAN --tool memcheck --error-exitcode 9 "$B/test_cuda_dequant"
  stage sanitizer $SAN --tool memcheck --error-exitcode 9 "$B/test_cuda_train_ops"
  # The 300-step bf16 curve (600 steps, ~10^5 launches) is left out: its
  # kernels run under memcheck in the other tests (the resume test in bf16).
  stage sanitizer $SAN --tool memcheck --error-exitcode 9 "$B/test_cuda_train" --gtest_filter='-*Bf16LossCurve*'
  stage sanitizer $SAN --tool racecheck --error-exitcode 9 "$B/test_cuda_ops" \
    --gtest_filter='CudaOps.LayerNorm*:CudaOps.Softmax*:CudaOps.Attention*:CudaOps.CachedAttention*'
  stage sanitizer $SAN --tool racecheck --error-exitcode 9 "$B/test_cuda_backend_ops" \
    --gtest_filter='*FlashAndDecode*:*CastsAndLayerNorm*'
  stage sanitizer $SAN --tool racecheck --error-exitcode 9 "$B/test_cuda_train_ops" --gtest_filter='*FlashAttention*'
  unset -f stage
  stage() { command_stage "$@"; }
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$OUT/sanitizer.log" | tee -a "$summary"
}

# The fine-tuned classifier of the main job (.devdata/agnews-classifier,
# stored fp16; its held-out texts beside it): every variant on the GPU
# against the same variant on the CPU, and the perplexity of each LM variant
# (random 124M) on the first 16 KB of WikiText-2, GPU against CPU.
run_agree() {
  local cls=$repo/.devdata/agnews-classifier held=$repo/.devdata/agnews-classifier/heldout.jsonl
  local cpu=$repo/.devdata/cpu  # the CPU side, computed by make_bundle.sh
  for m in fp16 int8-tensor llm-int8 nf4 fp4; do
    local dir=$cls
    if [ $m != fp16 ]; then
      dir=$work/ft_$m
      local qargs=(--method $m)
      [ $m = nf4 ] && qargs+=(--double-quant)
      [ -d "$dir" ] || "$G" quantize --model "$cls" "${qargs[@]}" --out "$dir" >/dev/null
    fi
    local eval=(eval --model "$dir" --data "$held" --format jsonl --tokenizer "$TOK" --batch-size 64 --json)
    cp "$cpu/f_${m}_cpu.csv" "$work/f_${m}_cpu.csv"
    stage cli "$G" "${eval[@]}" --device cuda --predictions "$work/f_${m}_cuda.csv"
    for dt in fp16 bf16; do
      stage cli "$G" "${eval[@]}" --device cuda --compute-dtype $dt --predictions "$work/f_${m}_$dt.csv"
    done
    local n; n=$(($(wc -l <"$work/f_${m}_cpu.csv") - 1))
    for v in cuda fp16 bf16; do
      note "$(printf 'fine-tuned %-12s %-5s vs cpu: %s of %s identical; accuracy cpu %s, gpu %s' $m $v \
        "$(paste -d, "$work/f_${m}_cpu.csv" "$work/f_${m}_$v.csv" | awk -F, 'NR>1 && $3==$6' | wc -l)" "$n" \
        "$(awk -F, 'NR>1 && $2==$3' "$work/f_${m}_cpu.csv" | wc -l)" "$(awk -F, 'NR>1 && $2==$3' "$work/f_${m}_$v.csv" | wc -l)")"
    done
  done
  # Issue 12, section 4: the KL of 16-bit compute against fp32 compute (the
  # same checkpoint on the GPU; kld's reference keeps its checkpoint's fp32
  # arithmetic, --compute-dtype sets the candidate's).
  models
  head -c 16384 "$WIKI" >"$work/wiki16k.txt"
  for dt in fp16 bf16; do
    local k1 k2
    k1=$("$G" kld --reference "$cls" --candidate "$cls" --data "$held" --format jsonl --tokenizer "$TOK" \
      --device cuda --compute-dtype $dt --json | tee -a "$OUT/cli.log")
    k2=$("$G" kld --reference "$work/lm124m" --candidate "$work/lm124m" --text "$work/wiki16k.txt" \
      --tokenizer "$TOK" --device cuda --compute-dtype $dt --json | tee -a "$OUT/cli.log")
    note "KL fp32 || $dt compute: fine-tuned classifier $(echo "$k1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("mean %.3g p99 %.3g max %.3g top-1 %.4f" % (j["kld_mean"], j["kld_p99"], j["kld_max"], j["top1_agreement"]))'); random 124M LM on 16 KB of WikiText-2 $(echo "$k2" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("mean %.3g p99 %.3g max %.3g top-1 %.4f" % (j["kld_mean"], j["kld_p99"], j["kld_max"], j["top1_agreement"]))')"
  done
  for m in f32 int8-tensor llm-int8 nf4 fp4; do
    local dir=$work/lm124m
    if [ $m != f32 ]; then
      dir=$work/lmq_$m
      [ -d "$dir" ] || "$G" quantize --model "$work/lm124m" --method $m --out "$dir" >/dev/null
    fi
    local ppl=(perplexity --model "$dir" --text "$work/wiki16k.txt" --tokenizer "$TOK" --json)
    local a b
    a=$(sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p' "$cpu/ppl_$m.json")
    for dt in fp32 fp16 bf16; do
      b=$("$G" "${ppl[@]}" --device cuda --compute-dtype $dt | tee -a "$OUT/cli.log" | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p')
      note "perplexity $m: cpu $a, cuda $dt $b, relative difference $(python3 -c "print(abs($a-$b)/$a)")"
    done
  done
}

# Predictions of each variant on CPU and GPU (fp32), and the 16-bit ones.
run_cli() {
  models
  head -n 512 "$AG" >"$work/ag512.csv"
  local eval=(eval --data "$work/ag512.csv" --tokenizer "$TOK" --batch-size 64 --json)
  for m in f32 int8-tensor llm-int8 nf4 fp4; do
    local dir=$work/cls124m
    if [ $m != f32 ]; then
      dir=$work/q_$m
      local qargs=(--method $m)
      [ $m = nf4 ] && qargs+=(--double-quant)
      [ -d "$dir" ] || "$G" quantize --model "$work/cls124m" "${qargs[@]}" --out "$dir" >/dev/null
    fi
    stage cli "$G" "${eval[@]}" --model "$dir" --predictions "$work/p_${m}_cpu.csv"
    stage cli "$G" "${eval[@]}" --model "$dir" --device cuda --predictions "$work/p_${m}_cuda.csv"
    for dt in fp16 bf16; do
      stage cli "$G" "${eval[@]}" --model "$dir" --device cuda --compute-dtype $dt --predictions "$work/p_${m}_$dt.csv"
    done
    for v in cuda fp16 bf16; do
      note "$(printf 'agree %-12s %-5s vs cpu: %s of 512' $m $v \
        "$(paste -d, "$work/p_${m}_cpu.csv" "$work/p_${m}_$v.csv" | awk -F, 'NR>1 && $3==$6' | wc -l)")"
    done
  done
  stage cli "$G" perplexity --model "$work/lm124m" --text "$WIKI" --tokenizer "$TOK" --device cuda --compute-dtype fp16 --json
  stage cli "$G" perplexity --model "$work/lm124m" --text "$WIKI" --tokenizer "$TOK" --device cuda --json
  stage cli "$G" generate --model "$work/lm124m" --tokenizer "$TOK" --prompt "The study of quantization" \
    --max-new-tokens 32 --greedy --device cuda --json
  stage cli "$G" generate --model "$work/lm124m" --tokenizer "$TOK" --prompt "The study of quantization" \
    --max-new-tokens 32 --greedy --json
  stage cli "$G" eval --model "$work/cls124m" --data "$work/ag512.csv" --tokenizer "$TOK" --device cuda:7
  stage cli env CUDA_VISIBLE_DEVICES= "$G" eval --model "$work/cls124m" --data "$work/ag512.csv" --tokenizer "$TOK" \
    --device cuda
}

run_devcuda() {
  mkdir -p "$work/devcuda" "$work/devcuda_logs"
  tar -C "$work/devcuda" -xJf .device/devcuda.tar.xz
  OUT=$work/devcuda_logs RACECHECK=${RACECHECK:-0} bash "$work/devcuda/run_all.sh" >"$work/devcuda_logs/run_all.txt" 2>&1
  note "devcuda run_all exit $?"
  cat "$work/devcuda_logs/run_all.txt" "$work"/devcuda_logs/devcuda_*.log >"$OUT/devcuda.log"
  grep -E "^BENCH|FAIL|SUMMARY" "$work/devcuda_logs/run_all.txt" | tail -80 >>"$summary"
}

# gpt2q's side of the peers' table (src/cli/bench_gpu.cpp): the same
# checkpoints, texts and settings as the peers stage. bench.json is rewritten
# after every measurement (--out), so a run cut short keeps what it finished;
# the table and the per-phase log go to the summary. BENCH_ARGS shortens a
# run, e.g. BENCH_ARGS="--method fp16,nf4 --skip ppl".
run_bench() {
  models
  "$G" bench --device cuda --method all --model "$work/cls124m" --lm-model "$work/lm124m" --tokenizer "$TOK" \
    --data "$AG" --text "$WIKI" --out "$OUT/bench.json" ${BENCH_ARGS:-} >"$work/bench.txt" 2>"$work/bench.err"
  note "bench exit $?"
  cat "$work/bench.txt" "$work/bench.err" >>"$summary"
}

run_peers() {
  models
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/slim/*.whl && export PYTHONPATH=/tmp/site
  PYTHONUNBUFFERED=1 python3 tools/bench_peers.py --model "$work/cls124m" --lm-model "$work/lm124m" --tokenizer "$TOK" \
    --agnews "$AG" --wikitext "$WIKI" --commit "$(git rev-parse --short HEAD 2>/dev/null)" ${PEERS_ARGS:-} \
    --out "$OUT/peers.json" >"$OUT/peers.log" 2>&1
  note "peers exit $?"
}

# Where batch-1 time goes: each kernel's duration and DRAM traffic, for a
# few texts and decode steps (the bench's own phases, shortened). Kernels
# inside CUDA graphs are profiled node by node.
run_train() {
  for p in fp32 bf16; do
    stage train "$G" bench-train --device cuda --precision $p --geometry 124m --task classify --batch 16 --seq 128 \
      --steps 10 --json
    stage train "$G" bench-train --device cuda --precision $p --geometry 124m --task lm --batch 16 --seq 1024 \
      --steps 5 --json
  done
  # The LM in bf16 with the attention that keeps its probabilities (before
  # the flash kernels), for the same-run comparison.
  stage train env GPT2Q_TRAIN_ATTENTION=batched "$G" bench-train --device cuda --precision bf16 --geometry 124m \
    --task lm --batch 16 --seq 1024 --steps 5 --json
  grep -h '"results"' "$OUT/train.log" >"$OUT/train.json"
  # Where a bf16 classifier step's time goes: every kernel of the warm-up
  # step and the timed one, its time and DRAM bytes.
  local ncu
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  stage train timeout 240 "$ncu" --metrics gpu__time_duration.sum,dram__bytes.sum --csv --launch-count 1200 \
    --log-file "$OUT/profile_train_bf16.csv" "$G" bench-train --device cuda --precision bf16 \
    --geometry 124m --task classify --batch 16 --seq 128 --steps 1 --json
  # The same for one LM step (16 x 1024), with PROFILE_LM=1.
  if [ "${PROFILE_LM:-0}" = 1 ]; then
    stage train timeout 240 "$ncu" --metrics gpu__time_duration.sum,dram__bytes.sum --csv --launch-count 1200 \
      --log-file "$OUT/profile_train_lm_bf16.csv" "$G" bench-train --device cuda --precision bf16 \
      --geometry 124m --task lm --batch 16 --seq 1024 --steps 1 --json
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/slim/*.whl 2>/dev/null && export PYTHONPATH=/tmp/site
  if [ "${TRAIN_PEERS:-1}" = 1 ]; then
    PYTHONUNBUFFERED=1 python3 tools/bench_train_peers.py --commit "$(git rev-parse --short HEAD 2>/dev/null)" \
      ${TRAIN_PEERS_ARGS:-} --out "$OUT/train_peers.json" >"$OUT/train_peers.log" 2>&1
    note "train peers exit $?"
  else
    note "train peers skipped (TRAIN_PEERS=0)"
  fi
  # The same short fine-tuning on both devices (a 128x2x4 classifier, 600
  # AG News texts, 2 epochs): the held-out figures side by side.
  head -n 600 "$AG" >"$work/ag600.csv"
  for d in cpu cuda; do
    stage train "$G" finetune --init 128x2x4 --tokenizer "$TOK" --train "$work/ag600.csv" --eval-split 0.2 \
      --epochs 2 --batch-size 16 --lr 1e-3 --max-length 64 --seed 3 --device $d --out "$work/ft_$d" --json --quiet
  done
  stage train "$G" finetune --init 128x2x4 --tokenizer "$TOK" --train "$work/ag600.csv" --eval-split 0.2 \
    --epochs 2 --batch-size 16 --lr 1e-3 --max-length 64 --seed 3 --device cuda --precision bf16 \
    --out "$work/ft_cuda_bf16" --json --quiet
  grep -h '"last_eval"' "$OUT/train.log" | python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l); e=j.get("last_eval",{})
    print("finetune %s: %d steps, %.0f tokens/s, eval loss %.6f accuracy %.4f" % (j["out"], j["steps"], j["tokens_per_s"], e.get("loss",0), e.get("accuracy",0)))' | tee -a "$summary"
}

# Issue 13, section 4: the study at 124M on the GPU. The fresh 124M GPT-2 is
# pre-trained as an LM on WikiText-2 valid + tiny-shakespeare (never the
# test split), fine-tuned on AG News (the seeded 80 % split, 3 epochs, 16 x
# 128), quantized to every variant, compared on the GPU, reported. Then
# issue 15 on the pre-trained LM: WikiText-2 test perplexity of fp32, NF4,
# round-to-nearest and GPTQ (4 and 3 bits, group 128), with the quantization
# times. The checkpoints stay on the device machine; reports, summaries and
# logs come back in study/. STUDY_ARGS adds pipeline options; STUDY_LM=0
# skips the LM's quantizations.
run_study() {
  local s=$work/study D=$repo/.devdata
  stage study "$G" pipeline --device cuda --geometry 124m --pretrain-text "$D/wikitext-2/wiki.valid.tokens" \
    --pretrain-text "$D/text/tinyshakespeare_input.txt" --pretrain-epochs "${STUDY_PRETRAIN_EPOCHS:-6}" \
    --pretrain-lr "${STUDY_PRETRAIN_LR:-6e-4}" --data "$AG" --tokenizer "$TOK" --precision bf16 --out "$s" --json \
    ${STUDY_ARGS:-}
  mkdir -p "$OUT/study"
  cp -r "$s/report" "$s/summary.json" "$s/pipeline.json" "$OUT/study/" 2>/dev/null
  [ -f "$s/pretrain/config.json" ] && [ "${STUDY_LM:-1}" = 1 ] || return 0
  local lm=$s/pretrain q=$work/study_q cal=(--calibration "$D/wikitext-2/wiki.valid.tokens" --tokenizer "$TOK"
    --nsamples 128 --seqlen 128)
  mkdir -p "$q"
  stage study "$G" quantize --model "$lm" --method nf4 --out "$q/nf4" --json
  for b in 4 3; do
    stage study "$G" quantize --model "$lm" --method rtn --bits $b --group-size 128 --out "$q/rtn$b" --json
    stage study "$G" quantize --model "$lm" --method gptq --bits $b --group-size 128 "${cal[@]}" --out "$q/gptq$b" --json
  done
  for m in "$lm" "$q/nf4" "$q/rtn4" "$q/gptq4" "$q/rtn3" "$q/gptq3"; do
    for t in "$D/wikitext-2/wiki.test.tokens" "$WIKI"; do
      stage study "$G" perplexity --model "$m" --text "$t" --tokenizer "$TOK" --max-length 128 --stride 128 \
        --device cuda --json
    done
  done
}

run_profile() {
  models
  local ncu
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  local m=(--graph-profiling node --metrics gpu__time_duration.sum,dram__bytes.sum --csv --launch-count 1500)
  stage profile timeout 200 "$ncu" "${m[@]}" --log-file "$OUT/profile_classify.csv" "$G" bench --device cuda \
    --method fp16,nf4 --model "$work/cls124m" --tokenizer "$TOK" --data "$AG" --skip batch256,lm --n1 2 --json
  # One batch of 256 texts (after the bench's warm-up batch) per variant:
  # where the dense 16-bit path loses to NF4, and int8 / double quant to both.
  for v in fp16 int8-tensor nf4 nf4-dq:bf16-compute; do
    stage profile timeout 90 "$ncu" "${m[@]}" --log-file "$OUT/profile_b256_${v%%:*}.csv" "$G" bench --device cuda \
      --method "$v" --model "$work/cls124m" --tokenizer "$TOK" --data "$AG" --skip batch1,lm --n1 1 --n256 256 --json
  done
  [ -d "$work/lmq_nf4" ] || "$G" quantize --model "$work/lm124m" --method nf4 --out "$work/lmq_nf4" >/dev/null
  for v in "$work/lm124m fp16" "$work/lmq_nf4 fp16"; do
    set -- $v
    stage profile timeout 120 "$ncu" "${m[@]}" --log-file "$OUT/profile_decode_$(basename "$1").csv" "$G" generate \
      --model "$1" --tokenizer "$TOK" --prompt "The study of quantization" --max-new-tokens 4 --greedy \
      --device cuda --compute-dtype "$2"
  done
}

for s in "$@"; do
  case $s in
    tests) run_tests ;;
    sanitize) run_sanitize ;;
    cli) run_cli ;;
    agree) run_agree ;;
    devcuda) run_devcuda ;;
    bench) run_bench ;;
    peers) run_peers ;;
    train) run_train ;;
    profile) run_profile ;;
    study) run_study ;;
    *) note "unknown stage $s" ;;
  esac
done
note "done in ${SECONDS}s"
# The device tool returns at most 8 files: beyond that, everything but the
# summary goes into one results.tgz.
# (Files in folders count: device run 13 lost the study's report that way.)
if [ "$(find "$OUT" -type f | wc -l)" -gt 8 ]; then
  (cd "$OUT" && tar czf /tmp/gpt2q_results.tgz --exclude ./summary.txt . &&
    find . -mindepth 1 -maxdepth 1 ! -name summary.txt -exec rm -rf {} + && mv /tmp/gpt2q_results.tgz results.tgz)
fi
