#pragma once
// `gpt2q bench --device cuda`: gpt2q's side of the GPU benchmark (issue 12,
// section 5), measured the way tools/bench_peers.py measures PyTorch and
// bitsandbytes: the same checkpoints (`gpt2q init --geometry 124m`, or
// --model / --lm-model), the same AG News texts at their real length, the
// same batch sizes, the same WikiText-2 pass and decode prompt. Each variant
// is quantized in memory (quant::quantize_checkpoint, as bench_quant.cpp
// does) and built on the GPU with GPT2Model::from_checkpoint(ck, placement).
// --json prints the interchange format of tools/gpu_bench_report.py
// ({"rows": [...], "device", "commit", "command", ...}); --out FILE writes
// the same object after every measurement, so a run cut short keeps what it
// finished.
#include <cstdint>
#include <string>

namespace gpt2q::cli {

struct GpuBenchArgs {
  std::string device = "cuda";  // cuda | cuda:N (resolve_placement checks it)
  std::string geometry = "124m";
  std::string method;           // "all" (or empty) or a comma list of gpu_bench_variant_names()
  std::string model, lm_model;  // empty: the synthetic weights `gpt2q init` writes (seed 1234)
  std::string data, text, tokenizer;
  // Comma list of phases left out: batch1, batch256, ppl, decode (classify =
  // the first two, lm = the last two).
  std::string skip;
  int64_t n1 = 500, n256 = 2560;
  int64_t ppl_windows = 0;      // 0: the whole WikiText-2 pass
  int decode_runs = 3;
  std::string out;
  bool json = false;
};

// "fp32, fp16, bf16, int8-tensor, llm-int8, nf4, nf4-dq:bf16-compute, fp4".
const char* gpu_bench_variant_names();

void run_gpu_bench(const GpuBenchArgs& args);

}  // namespace gpt2q::cli
