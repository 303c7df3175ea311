#include "backend/cpu/reference_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/formulas.h"

namespace gpt2q::cpu::reference {

void matmul_nn(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < k; ++p) s += static_cast<double>(a[i * k + p]) * b[p * n + j];
      c[i * n + j] = static_cast<float>(s);
    }
  }
}

void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < k; ++p) s += static_cast<double>(a[i * k + p]) * b[j * k + p];
      c[i * n + j] = static_cast<float>(s);
    }
  }
}

void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += static_cast<double>(x[r * in + i]) * w[i * out + o];
      y[r * out + o] = static_cast<float>(s);
    }
  }
}

void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const LayerNormStats st = layer_norm_stats(xr, cols, eps);
    const double mean = st.mean, rstd = st.rstd;
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = static_cast<float>((xr[c] - mean) * rstd * w[c] + b[c]);
  }
}

void gelu_new(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    x[i] = static_cast<float>(0.5 * v * (1.0 + gelu_new_tanh(v)));
  }
}

void gelu_erf(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    x[i] = static_cast<float>(v * normal_cdf(v));
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax_rows(float* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    double mx = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) mx = std::fmax(mx, row[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(row[c] - mx);
    for (int64_t c = 0; c < cols; ++c) row[c] = static_cast<float>(std::exp(row[c] - mx) / sum);
  }
}

void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = wte[ids[r] * cols + c] + wpe[positions[r] * cols + c];
}

void causal_attention(const AttentionArgs& a) {
  const int64_t past = a.kv_len - a.q_len;
  std::vector<double> p(static_cast<size_t>(a.kv_len));
  for (int64_t b = 0; b < a.batch; ++b) {
    const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
    for (int64_t h = 0; h < a.n_head; ++h) {
      for (int64_t i = 0; i < a.q_len; ++i) {
        const float* q = a.q.at(b, h, i);
        bool any = false;
        double mx = -INFINITY;
        for (int64_t j = 0; j < a.kv_len; ++j) {
          bool visible = j <= past + i && (!mask || mask[j]);
          p[j] = -INFINITY;
          if (!visible) continue;
          const float* k = a.k.at(b, h, j);
          double dot = 0.0;
          for (int64_t d = 0; d < a.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
          p[j] = dot * a.scale;
          mx = std::fmax(mx, p[j]);
          any = true;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < a.kv_len; ++j) {
          p[j] = any ? (p[j] == -INFINITY ? 0.0 : std::exp(p[j] - mx)) : 1.0;
          sum += p[j];
        }
        float* o = a.out.at(b, h, i);
        for (int64_t d = 0; d < a.head_dim; ++d) {
          double s = 0.0;
          for (int64_t j = 0; j < a.kv_len; ++j) s += p[j] / sum * a.v.at(b, h, j)[d];
          o[d] = static_cast<float>(s);
        }
      }
    }
  }
}

void token_nll(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * V;
    float m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, x[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(x[j]) - static_cast<double>(m));
    nll[r] = static_cast<double>(m) + std::log(sum) - static_cast<double>(x[target[r]]);
  }
}

}  // namespace gpt2q::cpu::reference
