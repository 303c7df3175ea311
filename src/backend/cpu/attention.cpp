// Causal multi-head attention, one (batch, head) pair per task. With many
// queries (a prompt) both products go to sgemm, single-threaded inside the
// parallel region (OpenBLAS sees omp_in_parallel); with few queries
// (decoding) direct dot products over the visible keys are cheaper than
// BLAS call overhead.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt2q::cpu {

namespace {

constexpr int64_t kGemmMinQueries = 8;

// Turns row i of scores (all kv_len keys already scaled) into probabilities:
// keys after the query's position or masked out get exactly zero.
void softmax_visible(float* s, int64_t visible_end, int64_t kv_len, const uint8_t* mask) {
  const float ninf = -std::numeric_limits<float>::infinity();
  int64_t visible = visible_end;
  if (mask) {
    visible = 0;
    for (int64_t j = 0; j < visible_end; ++j) {
      if (mask[j]) {
        ++visible;
      } else {
        s[j] = ninf;
      }
    }
  }
  if (visible == 0) {
    // Every score got finfo.min in HF's eager path: a uniform average.
    std::fill(s, s + kv_len, 1.0f / static_cast<float>(kv_len));
    return;
  }
  softmax_row(s, visible_end);
  std::fill(s + visible_end, s + kv_len, 0.0f);
}

void attend_one_head_gemm(const AttentionArgs& a, int64_t b, int64_t h, float* scores) {
  const int64_t past = a.kv_len - a.q_len;
  sgemm_nt(a.q_len, a.kv_len, a.head_dim, a.scale, a.q.at(b, h, 0), a.q.row_stride, a.k.at(b, h, 0),
           a.k.row_stride, 0.0f, scores, a.kv_len);
  const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
  for (int64_t i = 0; i < a.q_len; ++i) softmax_visible(scores + i * a.kv_len, past + i + 1, a.kv_len, mask);
  sgemm_nn(a.q_len, a.head_dim, a.kv_len, 1.0f, scores, a.kv_len, a.v.at(b, h, 0), a.v.row_stride, 0.0f,
           a.out.at(b, h, 0), a.out.row_stride);
}

void attend_one_head_direct(const AttentionArgs& a, int64_t b, int64_t h, float* scores) {
  const int64_t past = a.kv_len - a.q_len, hd = a.head_dim;
  const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
  for (int64_t i = 0; i < a.q_len; ++i) {
    const float* q = a.q.at(b, h, i);
    const int64_t visible_end = past + i + 1;
    for (int64_t j = 0; j < visible_end; ++j) {
      const float* k = a.k.at(b, h, j);
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < hd; ++d) dot += q[d] * k[d];
      scores[j] = dot * a.scale;
    }
    softmax_visible(scores, visible_end, a.kv_len, mask);
    float* o = a.out.at(b, h, i);
    std::fill(o, o + hd, 0.0f);
    for (int64_t j = 0; j < a.kv_len; ++j) {
      const float p = scores[j];
      if (p == 0.0f) continue;
      const float* v = a.v.at(b, h, j);
#pragma omp simd
      for (int64_t d = 0; d < hd; ++d) o[d] += p * v[d];
    }
  }
}

}  // namespace

void causal_attention(const AttentionArgs& a) {
  GPT2Q_CHECK(a.q_len >= 0 && a.kv_len >= a.q_len && a.head_dim > 0, "attention shape q_len {} kv_len {} head_dim {}",
              a.q_len, a.kv_len, a.head_dim);
  GPT2Q_CHECK(a.q_len * a.kv_len < (int64_t{1} << 31), "attention score block {}x{} too large", a.q_len, a.kv_len);
  if (a.batch == 0 || a.n_head == 0 || a.q_len == 0) return;
  const bool use_gemm = a.q_len >= kGemmMinQueries;
  const int64_t work = a.batch * a.n_head * a.q_len * a.kv_len * a.head_dim;
#pragma omp parallel if (work >= kParallelMinElements)
  {
    std::vector<float> scores(static_cast<size_t>(use_gemm ? a.q_len * a.kv_len : a.kv_len));
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t h = 0; h < a.n_head; ++h) {
        if (use_gemm) {
          attend_one_head_gemm(a, b, h, scores.data());
        } else {
          attend_one_head_direct(a, b, h, scores.data());
        }
      }
    }
  }
}

void store_kv(const float* qkv, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim, float* cache_k,
              float* cache_v, int64_t capacity, int64_t past) {
  const int64_t C = n_head * head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (batch * seq * C >= kParallelMinStreamed)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seq; ++t) {
      const float* row = qkv + (b * seq + t) * 3 * C;
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t at = ((b * n_head + h) * capacity + past + t) * head_dim;
        std::memcpy(cache_k + at, row + C + h * head_dim, sizeof(float) * head_dim);
        std::memcpy(cache_v + at, row + 2 * C + h * head_dim, sizeof(float) * head_dim);
      }
    }
  }
}

}  // namespace gpt2q::cpu
