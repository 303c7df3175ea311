#include "train/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/adamw_kernels.h"
#include "core/error.h"
#include "ops/ops_backward.h"

namespace gpt2q::train {

namespace {

// Python scalars are doubles; torch casts each to the tensor's float32 when
// the op runs, after the double arithmetic shown.
using StepConstants = backend::AdamWStep;

StepConstants step_constants(int64_t step, double lr, double weight_decay, const AdamWOptions& opts) {
  StepConstants k;
  k.decay = weight_decay != 0;
  k.keep = static_cast<float>(1.0 - lr * weight_decay);
  k.w1 = static_cast<float>(1.0 - opts.beta1);
  k.b2 = static_cast<float>(opts.beta2);
  k.w2 = static_cast<float>(1.0 - opts.beta2);
  const double s = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(opts.beta1, s);
  const double bias_correction2 = 1.0 - std::pow(opts.beta2, s);
  k.neg_step_size = static_cast<float>(-(lr / bias_correction1));
  k.bc2_sqrt = static_cast<float>(std::pow(bias_correction2, 0.5));
  k.eps = static_cast<float>(opts.eps);
  return k;
}

void check_sizes(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                 std::span<float> exp_avg_sq, int64_t step) {
  GPT2Q_CHECK(grad.size() == param.size() && exp_avg.size() == param.size() && exp_avg_sq.size() == param.size(),
              "adamw_update: sizes differ");
  GPT2Q_CHECK(step >= 1, "adamw_update: step {}", step);
}

backend::AdamWArgs args(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                       std::span<float> exp_avg_sq, const StepConstants& k) {
  return {param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data(), static_cast<int64_t>(param.size()), k};
}

}  // namespace

backend::AdamWStep adamw_step_constants(int64_t step, double lr, double weight_decay, const AdamWOptions& opts) {
  return step_constants(step, lr, weight_decay, opts);
}

void adamw_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                  std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay, const AdamWOptions& opts) {
  check_sizes(param, grad, exp_avg, exp_avg_sq, step);
  cpu::adamw_update(args(param, grad, exp_avg, exp_avg_sq, step_constants(step, lr, weight_decay, opts)));
}

void adamw_update_reference(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                            std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay,
                            const AdamWOptions& opts) {
  check_sizes(param, grad, exp_avg, exp_avg_sq, step);
  cpu::reference::adamw_update(args(param, grad, exp_avg, exp_avg_sq, step_constants(step, lr, weight_decay, opts)));
}

AdamW::AdamW(const std::vector<Parameter>& params, AdamWOptions opts) : opts_(opts) {
  exp_avg_.reserve(params.size());
  exp_avg_sq_.reserve(params.size());
  for (const auto& p : params) {
    exp_avg_.push_back(Tensor::empty(p.value.shape(), DType::F32));
    exp_avg_sq_.push_back(Tensor::empty(p.value.shape(), DType::F32));
  }
}

AdamW::AdamW(TrainableGPT2& model, AdamWOptions opts)
    : opts_(opts), values_(model.flat_values()), grads_(model.flat_grads()), layout_(model.layout()) {
  flat_avg_ = Tensor::empty(values_.shape(), DType::F32, values_.device());
  flat_avg_sq_ = Tensor::empty(values_.shape(), DType::F32, values_.device());
  for (const Parameter& p : model.parameters()) {
    const size_t at = static_cast<size_t>(p.offset) * sizeof(float);
    exp_avg_.push_back(Tensor::from_storage(flat_avg_.storage(), at, p.value.shape(), DType::F32));
    exp_avg_sq_.push_back(Tensor::from_storage(flat_avg_sq_.storage(), at, p.value.shape(), DType::F32));
  }
}

void AdamW::step(std::vector<Parameter>& params, double lr) {
  GPT2Q_CHECK(params.size() == exp_avg_.size(), "AdamW: {} parameters, state for {}", params.size(), exp_avg_.size());
  ++steps_;
  if (values_.defined() && values_.device() != Device::CPU) {
    auto range = [](const Tensor& flat, int64_t begin, int64_t end) {
      return Tensor::from_storage(flat.storage(), flat.offset() + static_cast<size_t>(begin) * sizeof(float),
                                  {end - begin}, DType::F32);
    };
    const std::pair<int64_t, int64_t> groups[] = {{0, layout_.decay_end}, {layout_.decay_end, layout_.total}};
    for (const auto& [begin, end] : groups) {
      if (end == begin) continue;
      const bool decay = begin == 0 && opts_.weight_decay != 0;
      Tensor p = range(values_, begin, end), m = range(flat_avg_, begin, end), v = range(flat_avg_sq_, begin, end);
      ops::adamw_update(p, range(grads_, begin, end), m, v,
                        step_constants(steps_, lr, decay ? opts_.weight_decay : 0.0, opts_));
    }
    return;
  }
  // The tensors are separate buffers: cut each into chunks of kChunk
  // elements (a multiple of 8, so only a tensor's last chunk has a scalar
  // tail) and let the threads share the list. Static scheduling gives each
  // thread a contiguous run of chunks, i.e. mostly contiguous memory; the
  // work per element is the same everywhere.
  constexpr size_t kChunk = size_t{1} << 15;
  struct Chunk {
    float *p, *m, *v;
    const float* g;
    size_t n;
    const StepConstants* k;
  };
  const StepConstants with_decay = step_constants(steps_, lr, opts_.weight_decay, opts_),
                      without_decay = step_constants(steps_, lr, 0.0, opts_);
  std::vector<Chunk> chunks;
  size_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    auto& p = params[i];
    GPT2Q_CHECK(p.value.numel() == exp_avg_[i].numel(), "AdamW: {} changed shape", p.name);
    const auto pv = p.value.span<float>();
    const auto gv = p.grad.span<const float>();
    const auto mv = exp_avg_[i].span<float>(), vv = exp_avg_sq_[i].span<float>();
    check_sizes(pv, gv, mv, vv, steps_);
    const StepConstants* k = p.decay && opts_.weight_decay != 0 ? &with_decay : &without_decay;
    for (size_t at = 0; at < pv.size(); at += kChunk)
      chunks.push_back({pv.data() + at, mv.data() + at, vv.data() + at, gv.data() + at,
                        std::min(kChunk, pv.size() - at), k});
    total += pv.size();
  }
  // Below a few chunks, waking the threads costs more than it saves.
  const int64_t count = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static) if (total >= 4 * kChunk)
  for (int64_t c = 0; c < count; ++c) {
    const Chunk& ch = chunks[static_cast<size_t>(c)];
    cpu::adamw_update({ch.p, ch.g, ch.m, ch.v, static_cast<int64_t>(ch.n), *ch.k});
  }
}

}  // namespace gpt2q::train
