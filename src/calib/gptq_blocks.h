#pragma once
// GPTQ of a whole GPT-2 checkpoint from calibration text, block by block,
// as the GPTQ reference code quantizes a model (gptq/opt.py `opt_sequential`):
// the calibration segments' embeddings enter block 0; for each block, one
// forward with its original weights feeds the inputs of its four
// projections (ln_1's output -> attn.c_attn, the merged heads -> attn.c_proj,
// ln_2's output -> mlp.c_fc, the GELU output -> mlp.c_proj) to
// HessianAccumulators; the selected projections are quantized with
// quant::quantize_gptq; a second forward with the *quantized* block (packed,
// on the group_int kernels a loaded checkpoint runs) gives the next block's
// inputs, so each block corrects the error of those before it.
// (AutoGPTQ's default `true_sequential` also re-runs the block after each
// projection; the reference's default, done here, collects all four first.)
//
// A layer of its own, above model/ and quant/: the blocks run in the
// model's own forward (GPT2Model::run_block_range taps each projection's
// input; the quantized projections replace the originals in
// GPT2Model::blocks()), and a quantizer driven by a forward belongs to
// neither of those layers.
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "quant/gptq.h"

namespace gpt2q::calib {

// `nsamples` segments of `seqlen` tokens at seeded random starts in
// `tokens`, as GPTQ's get_wikitext2 draws them (start uniform in
// [0, n - seqlen - 1]; here splitmix64(seed, i) modulo the range). Errors
// name `source`: fewer than seqlen + 1 tokens, or nsamples / seqlen < 1.
std::vector<std::vector<int32_t>> calibration_segments(const std::vector<int32_t>& tokens, int64_t nsamples,
                                                       int64_t seqlen, uint64_t seed, const std::string& source);

// What GPTQ did to one matrix, and its error against round-to-nearest with
// the same group parameters, both measured as Σ_o (w_o − q_o)ᵀ·H·(w_o − q_o)
// over the calibration Hessian H (the layer's squared output error on the
// calibration inputs, up to H's scale).
struct GptqLayerReport {
  std::string name;  // "h.0.attn.c_attn.weight"
  quant::GptqStats stats;
  double gptq_error = 0, rtn_error = 0;
};

struct GptqBlocksResult {
  std::map<std::string, quant::GroupQuantized> weights;  // by canonical weight name
  std::vector<GptqLayerReport> layers;                   // in quantization order
  double seconds = 0;
};

// GPTQ of the `selected` block projections of `source` (fp32 / 16-bit
// weights; canonical names such as "h.0.mlp.c_fc.weight"). `progress` is
// told each block's start. Deterministic: the same inputs give the same codes.
GptqBlocksResult gptq_quantize_blocks(const Checkpoint& source, const std::set<std::string>& selected,
                                      const quant::GptqOptions& options,
                                      const std::vector<std::vector<int32_t>>& segments,
                                      const std::function<void(const std::string&)>& progress = {});

// Σ_o (w_o − q_o)ᵀ·H·(w_o − q_o) for w, q [out, in] and H [in, in].
double hessian_error(const float* w, const float* q, int64_t out, int64_t in, const std::vector<double>& h);

}  // namespace gpt2q::calib
