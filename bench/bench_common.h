#pragma once
// Shared helpers of the microbenchmarks: deterministic inputs (the synthetic
// weights of model/synthetic_weights.h), the GPT-2 124M projection shapes,
// and the counters every benchmark reports.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/synthetic_weights.h"

namespace gpt2q::bench {

// n values in [-scale, scale), a pure function of (name, n).
inline std::vector<float> synthetic(std::string_view name, int64_t n, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = synthetic_value(name, 1, static_cast<uint64_t>(i)) * scale;
  return v;
}

inline Tensor synthetic_tensor(std::string_view name, Shape shape, float scale) {
  const int64_t n = shape_numel(shape);
  return Tensor::from_vector(synthetic(name, n, scale), std::move(shape));
}

// Args {in, out, rows}: c_attn (768 -> 2304), c_fc (768 -> 3072) and the
// MLP's c_proj (3072 -> 768), for 1 row (decoding), 16 and 128 (a prompt).
inline void gpt2_linear_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"in", "out", "rows"});
  for (auto [in, out] : {std::pair<int64_t, int64_t>{768, 2304}, {768, 3072}, {3072, 768}})
    for (int64_t rows : {1, 16, 128}) b->Args({in, out, rows});
}

// bytes/s and items/s counters: `bytes` and `items` are per iteration.
inline void set_rates(benchmark::State& state, int64_t bytes, int64_t items) {
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetItemsProcessed(state.iterations() * items);
}

}  // namespace gpt2q::bench
