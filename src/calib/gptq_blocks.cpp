#include "calib/gptq_blocks.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <memory>

#include "backend/cpu/linalg.h"
#include "core/error.h"
#include "core/splitmix64.h"
#include "layers/quant_linear.h"
#include "model/gpt2.h"
#include "ops/ops.h"
#include "quant/conv1d_weight.h"
#include "quant/gptq_format.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q::calib {

namespace {

// The rows of one forward: `batch` segments of `seq` tokens.
struct Chunk {
  int64_t batch = 0, seq = 0;
  Tensor x;  // the residual stream [batch · seq, C], fp32
};

// The calibration segments' embeddings, in chunks of about 4096 rows.
std::vector<Chunk> embed_segments(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& segments) {
  const Tensor wte = ck.get_f32("wte.weight"), wpe = ck.get_f32("wpe.weight");
  const int64_t seq = static_cast<int64_t>(segments.front().size());
  const int64_t per_chunk = std::max<int64_t>(1, 4096 / seq);
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < segments.size(); s += static_cast<size_t>(per_chunk)) {
    Chunk c;
    c.batch = std::min<int64_t>(per_chunk, static_cast<int64_t>(segments.size() - s));
    c.seq = seq;
    std::vector<int32_t> ids;
    std::vector<int64_t> positions;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t t = 0; t < seq; ++t) {
        ids.push_back(segments[s + static_cast<size_t>(b)][static_cast<size_t>(t)]);
        positions.push_back(t);
      }
    const int64_t rows = c.batch * seq;
    c.x = Tensor::empty({rows, ck.config.n_embd}, DType::F32);
    ops::embedding(Tensor::from_vector(ids, {rows}), Tensor::from_vector(positions, {rows}), wte, wpe, c.x);
    chunks.push_back(std::move(c));
  }
  return chunks;
}

}  // namespace

std::vector<std::vector<int32_t>> calibration_segments(const std::vector<int32_t>& tokens, int64_t nsamples,
                                                       int64_t seqlen, uint64_t seed, const std::string& source) {
  if (nsamples < 1 || seqlen < 1)
    fail("{}: calibration needs at least one segment of at least one token (got {} of {})", source, nsamples, seqlen);
  const auto n = static_cast<int64_t>(tokens.size());
  if (n < seqlen + 1)
    fail("{}: {} tokens, too short for calibration segments of {} tokens (needs at least {}; lower --seqlen or give "
         "more text)",
         source, n, seqlen, seqlen + 1);
  // Starts in [0, n - seqlen - 1], as the reference's randint(0, n - seqlen - 1).
  const auto range = static_cast<uint64_t>(n - seqlen);
  std::vector<std::vector<int32_t>> segments;
  for (int64_t i = 0; i < nsamples; ++i) {
    const auto start = static_cast<int64_t>(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(i))) % range);
    segments.emplace_back(tokens.begin() + start, tokens.begin() + start + seqlen);
  }
  return segments;
}

double hessian_error(const float* w, const float* q, int64_t out, int64_t in, const std::vector<double>& h) {
  std::vector<double> d(static_cast<size_t>(out * in)), e(d.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>(w[i]) - static_cast<double>(q[i]);
  cpu::dgemm_nn(out, in, in, 1.0, d.data(), in, h.data(), in, 0.0, e.data(), in);
  double s = 0;
  for (size_t i = 0; i < d.size(); ++i) s += d[i] * e[i];
  return s;
}

GptqBlocksResult gptq_quantize_blocks(const Checkpoint& ck, const std::set<std::string>& selected,
                                      const quant::GptqOptions& options,
                                      const std::vector<std::vector<int32_t>>& segments,
                                      const std::function<void(const std::string&)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const GPT2Config& c = ck.config;
  if (segments.empty()) fail("GPTQ: no calibration segments");
  const auto seq = static_cast<int64_t>(segments.front().size());
  if (seq > c.n_positions)
    fail("--seqlen {} exceeds the model's n_positions = {}", seq, c.n_positions);
  for (const auto& s : segments) {
    GPT2Q_CHECK(static_cast<int64_t>(s.size()) == seq, "calibration segments of different lengths");
    for (int32_t id : s)
      if (id < 0 || id >= c.vocab_size)
        fail("{}: calibration token id {} is outside the model's vocabulary of {} (another tokenizer?)",
             ck.dir.string(), id, c.vocab_size);
  }
  GptqBlocksResult result;
  // The model's own forward runs the blocks (CPU, fp32); each block's
  // projections are replaced by their quantized ones once they are made.
  const std::unique_ptr<GPT2Model> model = GPT2Model::from_checkpoint(ck);
  std::vector<Chunk> chunks = embed_segments(ck, segments);
  const auto run_block = [&](int64_t l, Chunk& chunk, const GPT2Model::ProjectionTap& tap) {
    model->run_block_range(chunk.x, chunk.batch, chunk.seq, l, l + 1, tap);
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string prefix = fmt::format("h.{}.", l);
    BlockWeights& block = model->blocks()[static_cast<size_t>(l)];
    std::array<std::unique_ptr<quant::HessianAccumulator>, 4> hessians;
    size_t chosen = 0;
    for (size_t m = 0; m < BlockWeights::kProjections.size(); ++m) {
      if (!selected.count(prefix + BlockWeights::kProjections[m] + ".weight")) continue;
      hessians[m] = std::make_unique<quant::HessianAccumulator>(block.projection(m)->in_features());
      ++chosen;
    }
    if (progress)
      progress(fmt::format("block {}/{}: {} matrices, Hessians from {} segments of {} tokens", l + 1, c.n_layer,
                           chosen, segments.size(), seq));
    if (chosen == 0) {
      for (Chunk& chunk : chunks) run_block(l, chunk, {});
      continue;
    }
    // Pass 1: the original block on a copy of its inputs, for the Hessians.
    for (const Chunk& chunk : chunks) {
      Chunk copy{chunk.batch, chunk.seq, chunk.x.clone()};
      run_block(l, copy, [&](size_t m, const Tensor& in) {
        if (hessians[m]) hessians[m]->add(in.data<float>(), in.dim(0));
      });
    }
    for (size_t m = 0; m < BlockWeights::kProjections.size(); ++m) {
      if (!hessians[m]) continue;
      const std::string module = prefix + BlockWeights::kProjections[m], name = module + ".weight";
      const std::vector<float> w = quant::linear_weights_from_conv1d(ck.get_f32(name), Tensor(), name).weight;
      const int64_t in = block.projection(m)->in_features(), out = block.projection(m)->out_features();
      const std::vector<double> h = hessians[m]->hessian();
      hessians[m].reset();
      GptqLayerReport rep;
      rep.name = name;
      quant::GroupQuantized q = quant::group_quantized_as_stored(
          quant::quantize_gptq(w.data(), out, in, h.data(), options, name, &rep.stats));
      const quant::GroupQuantized r =
          quant::group_quantized_as_stored(quant::quantize_rtn(w.data(), out, in, options.quant));
      rep.gptq_error = hessian_error(w.data(), q.dequantize().data(), out, in, h);
      rep.rtn_error = hessian_error(w.data(), r.dequantize().data(), out, in, h);
      // The next blocks see this projection as a loaded checkpoint runs it: packed.
      block.projection(m) = make_quant_linear(quant::to_quantized_tensor(q, name), ck.get_f32(module + ".bias").clone(),
                                              DType::F32, 0.0f, Placement{}, name);
      result.weights.emplace(name, std::move(q));
      result.layers.push_back(std::move(rep));
    }
    // Pass 2: the quantized block gives the next block's inputs.
    for (Chunk& chunk : chunks) run_block(l, chunk, {});
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace gpt2q::calib
