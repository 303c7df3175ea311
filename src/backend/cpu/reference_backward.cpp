#include "backend/cpu/reference_backward.h"

#include <cmath>
#include <vector>

#include "backend/cpu/formulas.h"

namespace gpt2q::cpu::reference {

namespace {
bool kept(uint64_t key, uint64_t index, float p) { return dropout_uniform(key, index) >= p; }
}  // namespace

void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first) {
  if (p <= 0.0f) return;
  for (int64_t i = 0; i < n; ++i)
    x[i] = kept(key, first + static_cast<uint64_t>(i), p) ? x[i] * dropout_scale(p) : 0.0f;
}

void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db) {
  if (dx) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < in; ++i) {
        double s = 0.0;
        for (int64_t o = 0; o < out; ++o) s += static_cast<double>(dy[r * out + o]) * w[i * out + o];
        dx[r * in + i] = static_cast<float>(s);
      }
  }
  for (int64_t i = 0; i < in; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = dw[i * out + o];
      for (int64_t r = 0; r < rows; ++r) s += static_cast<double>(x[r * in + i]) * dy[r * out + o];
      dw[i * out + o] = static_cast<float>(s);
    }
  if (db) {
    for (int64_t o = 0; o < out; ++o) {
      double s = db[o];
      for (int64_t r = 0; r < rows; ++r) s += dy[r * out + o];
      db[o] = static_cast<float>(s);
    }
  }
}

void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc, float* da,
                        float* db) {
  if (da) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) {
        double s = 0.0;
        for (int64_t j = 0; j < n; ++j) s += static_cast<double>(dc[i * n + j]) * b[j * k + p];
        da[i * k + p] = static_cast<float>(s);
      }
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t p = 0; p < k; ++p) {
      double s = db[j * k + p];
      for (int64_t i = 0; i < m; ++i) s += static_cast<double>(dc[i * n + j]) * a[i * k + p];
      db[j * k + p] = static_cast<float>(s);
    }
}

void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db) {
  std::vector<double> sdw(static_cast<size_t>(cols), 0.0), sdb(static_cast<size_t>(cols), 0.0);
  std::vector<double> xhat(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* g = dy + r * cols;
    const LayerNormStats st = layer_norm_stats(xr, cols, eps);
    const double mean = st.mean, rstd = st.rstd;
    double mg = 0.0, mgx = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      xhat[c] = (xr[c] - mean) * rstd;
      mg += static_cast<double>(g[c]) * w[c];
      mgx += static_cast<double>(g[c]) * w[c] * xhat[c];
      sdw[c] += g[c] * xhat[c];
      sdb[c] += g[c];
    }
    mg /= static_cast<double>(cols);
    mgx /= static_cast<double>(cols);
    for (int64_t c = 0; c < cols; ++c)
      dx[r * cols + c] += static_cast<float>(rstd * (static_cast<double>(g[c]) * w[c] - mg - xhat[c] * mgx));
  }
  for (int64_t c = 0; c < cols; ++c) {
    dw[c] = static_cast<float>(dw[c] + sdw[c]);
    db[c] = static_cast<float>(db[c] + sdb[c]);
  }
}

void gelu_new_backward(const float* x, float* dy, int64_t n) {
  const double k = gelu_new_k();
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double t = gelu_new_tanh(v);
    const double grad = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
    dy[i] = static_cast<float>(dy[i] * grad);
  }
}

void gelu_erf_backward(const float* x, float* dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double grad = normal_cdf(v) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    dy[i] = static_cast<float>(dy[i] * grad);
  }
}

void embedding_backward(const int32_t* ids, const int64_t* positions, int64_t rows, const float* dout, int64_t cols,
                        float* dwte, float* dwpe) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      dwte[static_cast<int64_t>(ids[r]) * cols + c] += dout[r * cols + c];
      dwpe[positions[r] * cols + c] += dout[r * cols + c];
    }
}

namespace {
// Probabilities of row i of head (b, h) in double, before dropout.
void probs_row(const TrainAttentionArgs& a, const float* qkv, int64_t b, int64_t h, int64_t i,
               std::vector<double>& p) {
  const int64_t T = a.seq, hd = a.head_dim, C = a.n_head * hd;
  const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
  const float* q = qkv + (b * T + i) * 3 * C + h * hd;
  bool any = false;
  double mx = -INFINITY;
  for (int64_t j = 0; j < T; ++j) {
    p[j] = -INFINITY;
    if (j > i || (mask && !mask[j])) continue;
    const float* k = qkv + (b * T + j) * 3 * C + C + h * hd;
    double dot = 0.0;
    for (int64_t d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * k[d];
    p[j] = dot * a.scale;
    mx = std::fmax(mx, p[j]);
    any = true;
  }
  double sum = 0.0;
  for (int64_t j = 0; j < T; ++j) {
    p[j] = any ? (p[j] == -INFINITY ? 0.0 : std::exp(p[j] - mx)) : 1.0;
    sum += p[j];
  }
  for (int64_t j = 0; j < T; ++j) p[j] /= sum;
}

double dropped(const TrainAttentionArgs& a, int64_t b, int64_t h, int64_t i, int64_t j, double v) {
  if (a.attn_p <= 0.0f || j > i) return v;  // the mask covers the causal triangle
  const uint64_t index = static_cast<uint64_t>(((b * a.n_head + h) * a.seq + i) * a.seq + j);
  return kept(a.dropout_key, index, a.attn_p) ? v * dropout_scale(a.attn_p) : 0.0;
}
}  // namespace

void attention_forward_train(const TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped_probs,
                             float* out) {
  const int64_t T = a.seq, hd = a.head_dim, C = a.n_head * hd;
  std::vector<double> p(static_cast<size_t>(T));
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.n_head; ++h)
      for (int64_t i = 0; i < T; ++i) {
        probs_row(a, qkv, b, h, i, p);
        for (int64_t j = 0; j < T; ++j) {
          const int64_t at = ((b * a.n_head + h) * T + i) * T + j;
          probs[at] = static_cast<float>(p[j]);
          if (dropped_probs) dropped_probs[at] = static_cast<float>(dropped(a, b, h, i, j, p[j]));
        }
        for (int64_t d = 0; d < hd; ++d) {
          double s = 0.0;
          for (int64_t j = 0; j < T; ++j)
            s += dropped(a, b, h, i, j, p[j]) * qkv[(b * T + j) * 3 * C + 2 * C + h * hd + d];
          out[(b * T + i) * C + h * hd + d] = static_cast<float>(s);
        }
      }
}

void attention_backward(const TrainAttentionArgs& a, const float* qkv, const float* probs, const float*,
                        const float* dout, float* dqkv) {
  const int64_t T = a.seq, hd = a.head_dim, C = a.n_head * hd;
  std::vector<double> dp(static_cast<size_t>(T)), ds(static_cast<size_t>(T));
  std::vector<double> acc(static_cast<size_t>(a.batch * T * 3 * C), 0.0);
  auto at = [&](int64_t b, int64_t t, int64_t part, int64_t h, int64_t d) {
    return (b * T + t) * 3 * C + part * C + h * hd + d;
  };
  for (int64_t b = 0; b < a.batch; ++b) {
    const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;
    for (int64_t h = 0; h < a.n_head; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const float* P = probs + ((b * a.n_head + h) * T + i) * T;
        const float* dO = dout + (b * T + i) * C + h * hd;
        bool any = false;
        for (int64_t j = 0; j <= i; ++j) any |= !mask || mask[j];
        double dot = 0.0;
        for (int64_t j = 0; j < T; ++j) {
          double g = 0.0;
          for (int64_t d = 0; d < hd; ++d) {
            g += static_cast<double>(dO[d]) * qkv[at(b, j, 2, h, d)];
            acc[at(b, j, 2, h, d)] += dropped(a, b, h, i, j, P[j]) * dO[d];
          }
          dp[j] = dropped(a, b, h, i, j, g);
          dot += P[j] * dp[j];
        }
        for (int64_t j = 0; j < T; ++j) ds[j] = any ? P[j] * (dp[j] - dot) * a.scale : 0.0;
        for (int64_t j = 0; j < T; ++j)
          for (int64_t d = 0; d < hd; ++d) {
            acc[at(b, i, 0, h, d)] += ds[j] * qkv[at(b, j, 1, h, d)];
            acc[at(b, j, 1, h, d)] += ds[j] * qkv[at(b, i, 0, h, d)];
          }
      }
  }
  for (size_t i = 0; i < acc.size(); ++i) dqkv[i] = static_cast<float>(acc[i]);
}

void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, float grad_scale,
                   float* dlogits, double* row_loss) {
  std::vector<double> e(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = targets[r];
    row_loss[r] = 0.0;
    if (t < 0) {
      for (int64_t c = 0; c < cols; ++c) dlogits[r * cols + c] = 0.0f;
      continue;
    }
    double mx = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) mx = std::fmax(mx, logits[r * cols + c]);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += e[c] = std::exp(logits[r * cols + c] - mx);
    row_loss[r] = std::log(sum) + mx - logits[r * cols + t];
    for (int64_t c = 0; c < cols; ++c)
      dlogits[r * cols + c] = static_cast<float>(grad_scale * (e[c] / sum - (c == t ? 1.0 : 0.0)));
  }
}

}  // namespace gpt2q::cpu::reference
