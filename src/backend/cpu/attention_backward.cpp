// Causal self-attention of the training pass: the forward keeps the softmax
// probabilities, the backward turns dout into dq, dk, dv. One (batch, head)
// pair per task; the products are sgemm calls, single-threaded inside the
// parallel region (OpenBLAS sees omp_in_parallel).
#include <algorithm>
#include <limits>
#include <vector>

#include "backend/cpu/kernels_backward.h"
#include "core/error.h"

namespace gpt2q::cpu {

namespace {

struct HeadPtrs {
  const float *q, *k, *v;
  int64_t ld;  // row stride of q, k, v in qkv (3C)
};

HeadPtrs head_ptrs(const TrainAttentionArgs& a, const float* qkv, int64_t b, int64_t h) {
  const int64_t C = a.n_head * a.head_dim;
  const float* base = qkv + b * a.seq * 3 * C + h * a.head_dim;
  return {base, base + C, base + 2 * C, 3 * C};
}

bool row_sees_a_key(const uint8_t* mask, int64_t i) {
  if (!mask) return true;
  for (int64_t j = 0; j <= i; ++j)
    if (mask[j]) return true;
  return false;
}

// Row i of the scaled scores -> probabilities over keys j <= i that the mask
// allows; zero elsewhere. A row that sees no key averages all T values, as
// the inference kernel (and HF's eager path) does.
void softmax_causal_row(float* s, int64_t i, int64_t T, const uint8_t* mask) {
  if (!row_sees_a_key(mask, i)) {
    std::fill(s, s + T, 1.0f / static_cast<float>(T));
    return;
  }
  if (mask)
    for (int64_t j = 0; j <= i; ++j)
      if (!mask[j]) s[j] = -std::numeric_limits<float>::infinity();
  softmax_row(s, i + 1);
  std::fill(s + i + 1, s + T, 0.0f);
}

uint64_t head_mask_offset(const TrainAttentionArgs& a, int64_t b, int64_t h) {
  return static_cast<uint64_t>((b * a.n_head + h) * a.seq * a.seq);
}

// dropout(src) -> dst for the T x T probabilities of head (b, h). Only the
// causal triangle j <= i is computed: above it the probabilities are zero
// (a row that sees no key at all keeps its uniform values undropped there;
// the backward gives such rows no gradient).
void dropout_causal(const TrainAttentionArgs& a, int64_t b, int64_t h, const float* src, float* dst) {
  const int64_t T = a.seq;
  const uint64_t first = head_mask_offset(a, b, h);
  for (int64_t i = 0; i < T; ++i) {
    if (src != dst) std::copy(src + i * T, src + (i + 1) * T, dst + i * T);
    dropout(dst + i * T, i + 1, a.attn_p, a.dropout_key, first + static_cast<uint64_t>(i * T));
  }
}

void check_args(const TrainAttentionArgs& a) {
  GPT2Q_CHECK(a.seq >= 0 && a.head_dim > 0 && a.n_head > 0, "attention shape seq {} heads {} head_dim {}", a.seq,
              a.n_head, a.head_dim);
  GPT2Q_CHECK(a.seq * a.seq < (int64_t{1} << 31), "attention score block {}x{} too large", a.seq, a.seq);
}

}  // namespace

void attention_forward_train(const TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped,
                             float* out) {
  check_args(a);
  const int64_t T = a.seq, hd = a.head_dim, C = a.n_head * hd;
  const bool drop = a.attn_p > 0.0f;
  GPT2Q_CHECK(!drop || dropped, "attention with dropout needs a buffer for the dropped probabilities");
  const int64_t work = a.batch * a.n_head * T * T * hd;
#pragma omp parallel for collapse(2) schedule(static) if (work >= kParallelMinElements)
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t h = 0; h < a.n_head; ++h) {
      const HeadPtrs p = head_ptrs(a, qkv, b, h);
      const int64_t at = (b * a.n_head + h) * T * T;
      float* P = probs + at;
      const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
      sgemm_nt(T, T, hd, a.scale, p.q, p.ld, p.k, p.ld, 0.0f, P, T);
      for (int64_t i = 0; i < T; ++i) softmax_causal_row(P + i * T, i, T, mask);
      const float* used = P;
      if (drop) {
        dropout_causal(a, b, h, P, dropped + at);
        used = dropped + at;
      }
      sgemm_nn(T, hd, T, 1.0f, used, T, p.v, p.ld, 0.0f, out + b * T * C + h * hd, C);
    }
  }
}

void attention_backward(const TrainAttentionArgs& a, const float* qkv, const float* probs, const float* dropped,
                        const float* dout, float* dqkv) {
  check_args(a);
  const int64_t T = a.seq, hd = a.head_dim, C = a.n_head * hd;
  const bool drop = a.attn_p > 0.0f;
  GPT2Q_CHECK(!drop || dropped, "attention with dropout needs the forward's dropped probabilities");
  const float keep_scale = dropout_scale(a.attn_p);
  const int64_t work = a.batch * a.n_head * T * T * hd;
#pragma omp parallel if (work >= kParallelMinElements)
  {
    std::vector<float> dP(static_cast<size_t>(T * T));
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t h = 0; h < a.n_head; ++h) {
        const HeadPtrs p = head_ptrs(a, qkv, b, h);
        const float* P = probs + (b * a.n_head + h) * T * T;
        const float* dO = dout + b * T * C + h * hd;
        float* dq = dqkv + b * T * 3 * C + h * hd;
        float* dk = dq + C;
        float* dv = dq + 2 * C;
        const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
        const float* used = drop ? dropped + (b * a.n_head + h) * T * T : P;
        // out = used·v: dv = usedᵀ·dO, d(used) = dO·vᵀ.
        sgemm_tn(T, hd, T, 1.0f, used, T, dO, C, 0.0f, dv, 3 * C);
        sgemm_nt(T, T, hd, 1.0f, dO, C, p.v, p.ld, 0.0f, dP.data(), T);
        if (drop) {
          // The forward's mask, read back from its output: where P > 0 (the
          // only places the softmax backward reads), kept <=> used != 0.
#pragma omp simd
          for (int64_t i = 0; i < T * T; ++i) dP[i] = used[i] != 0.0f ? dP[i] * keep_scale : 0.0f;
        }
        // Softmax backward, in place: dS = P ∘ (dP − Σ_j P·dP). Masked and
        // future keys have P = 0, so they get no gradient; a row that saw no
        // key had constant scores (no gradient at all).
        for (int64_t i = 0; i < T; ++i) {
          float* d = dP.data() + i * T;
          const float* pr = P + i * T;
          if (!row_sees_a_key(mask, i)) {
            std::fill(d, d + T, 0.0f);
            continue;
          }
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t j = 0; j <= i; ++j) dot += pr[j] * d[j];
#pragma omp simd
          for (int64_t j = 0; j <= i; ++j) d[j] = pr[j] * (d[j] - dot);
          std::fill(d + i + 1, d + T, 0.0f);
        }
        // S = scale·q·kᵀ: dq = scale·dS·k, dk = scale·dSᵀ·q.
        sgemm_nn(T, hd, T, a.scale, dP.data(), T, p.k, p.ld, 0.0f, dq, 3 * C);
        sgemm_tn(T, hd, T, a.scale, dP.data(), T, p.q, p.ld, 0.0f, dk, 3 * C);
      }
    }
  }
}

}  // namespace gpt2q::cpu
