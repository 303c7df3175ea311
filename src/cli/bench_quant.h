#pragma once
// `gpt2q bench --method M` / `--model DIR`: the forward of each weight format
// (issue 3), timed side by side. For every method the source checkpoint (the
// synthetic one of --geometry, or --model) is quantized in memory with
// quant::quantize_checkpoint and built with GPT2Model::from_checkpoint, so
// what runs is what `gpt2q quantize` would write and eval would load.
#include <cstdint>
#include <string>

#include "quant/checkpoint_quantizer.h"

namespace gpt2q::cli {

struct MethodBenchArgs {
  std::string geometry = "124m";
  std::string model;   // checkpoint directory instead of synthetic weights (may be quantized)
  // fp32, fp16, int8-tensor, llm-int8, nf4, fp4 (the last three also with
  // ":bf16-compute"), all; empty: the checkpoint as stored
  std::string method;
  quant::QuantizeOptions opt;  // method left empty; the rest is passed where it applies
  bool compute_dtype_given = false;  // --compute-dtype: with --model alone, overrides the stored one
  int64_t seq = 128, throughput_batch = 32, decode_tokens = 32;
  int iters = 5, throughput_iters = 2;
  bool json = false;
};

// Methods --method accepts for the per-method benchmark ("all" expands to
// the six formats plus int8-tensor and nf4 with bf16 compute).
const char* bench_method_names();

void run_method_bench(const MethodBenchArgs& args);

}  // namespace gpt2q::cli
