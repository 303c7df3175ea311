// The training ops (ops/ops_backward.h): fast kernels against the scalar
// reference, the reference against central finite differences of a double
// forward written here, dropout's masks, and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "ops/ops.h"
#include "ops/ops_backward.h"
#include "ops/reference.h"

using namespace gpt2q;

namespace {

Tensor rnd(Shape shape, uint64_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::mt19937_64 g(seed);
  for (float& v : t.span<float>()) v = scale * (static_cast<float>((g() >> 40) * 0x1p-23) - 1.0f);
  return t;
}

Tensor zeros_like(const Tensor& t) { return Tensor::empty(t.shape(), DType::F32); }

// max |got − want| / max |want|: error relative to the tensor's scale.
double rel_err(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape());
  double err = 0, scale = 0;
  auto g = got.span<float>();
  auto w = want.span<float>();
  for (size_t i = 0; i < w.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(g[i]) - w[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(w[i])));
  }
  return scale > 0 ? err / scale : err;
}

// ∂f/∂x[i] by central differences in double; x is restored.
std::vector<double> numeric_grad(const std::function<double()>& f, std::vector<double>& x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f();
    x[i] = keep - h;
    const double down = f();
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

std::vector<double> as_double(const Tensor& t) { return {t.span<float>().begin(), t.span<float>().end()}; }

// max |analytic − numeric| / max |numeric|
double fd_err(const Tensor& analytic, const std::vector<double>& numeric) {
  double err = 0, scale = 0;
  auto a = analytic.span<float>();
  EXPECT_EQ(a.size(), numeric.size());
  for (size_t i = 0; i < numeric.size(); ++i) {
    err = std::max(err, std::fabs(a[i] - numeric[i]));
    scale = std::max(scale, std::fabs(numeric[i]));
  }
  return scale > 0 ? err / scale : err;
}

struct AttnCase {
  int64_t B, T, H, hd;
  bool masked;
  float p;
};

Tensor right_pad_mask(int64_t B, int64_t T) {
  Tensor m = Tensor::empty({B, T}, DType::U8);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T - (b % 3); ++t) m.data<uint8_t>()[b * T + t] = 1;
  return m;
}

}  // namespace

// ---- fast == reference ----------------------------------------------------

TEST(OpsBackward, LinearMatchesReference) {
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {37, 64, 96}, {600, 128, 130}}) {
    Tensor x = rnd({rows, in}, 1), w = rnd({in, out}, 2), dy = rnd({rows, out}, 3);
    Tensor dx = rnd({rows, in}, 9), dxr = zeros_like(dx);  // dx is overwritten: stale contents must not matter
    Tensor dw = rnd({in, out}, 4), dwr = dw.clone(), db = rnd({out}, 5), dbr = db.clone();  // accumulated
    ops::linear_backward(x, w, dy, dx, dw, db);
    ops::reference::linear_backward(x, w, dy, dxr, dwr, dbr);
    EXPECT_LE(rel_err(dx, dxr), 1e-5);
    EXPECT_LE(rel_err(dw, dwr), 1e-5);
    EXPECT_LE(rel_err(db, dbr), 1e-5);
    Tensor none;
    Tensor dw2 = dw.clone();
    ops::linear_backward(x, w, dy, none, dw2, none);  // dx and db optional
  }
}

TEST(OpsBackward, MatmulNtMatchesReference) {
  for (auto [m, k, n] : {std::tuple{1, 8, 3}, {50, 32, 301}}) {
    Tensor a = rnd({m, k}, 1), b = rnd({n, k}, 2), dc = rnd({m, n}, 3);
    Tensor da = zeros_like(a), dar = zeros_like(a), db = rnd({n, k}, 4), dbr = db.clone();
    ops::matmul_nt_backward(a, b, dc, da, db);
    ops::reference::matmul_nt_backward(a, b, dc, dar, dbr);
    EXPECT_LE(rel_err(da, dar), 1e-5);
    EXPECT_LE(rel_err(db, dbr), 1e-5);
  }
}

TEST(OpsBackward, LayerNormMatchesReference) {
  // 1100 x 512 crosses the threads' threshold: per-thread partial sums.
  for (auto [rows, cols] : {std::pair{3, 7}, {1100, 512}}) {
    Tensor x = rnd({rows, cols}, 1, 3.0f), w = rnd({cols}, 2), dy = rnd({rows, cols}, 3);
    for (float& v : x.span<float>()) v += 5.0f;  // an offset the statistics must remove
    Tensor dx = rnd({rows, cols}, 4), dxr = dx.clone();  // accumulated
    Tensor dw = rnd({cols}, 5), dwr = dw.clone(), db = rnd({cols}, 6), dbr = db.clone();
    ops::layer_norm_backward(x, w, 1e-5f, dy, dx, dw, db);
    ops::reference::layer_norm_backward(x, w, 1e-5f, dy, dxr, dwr, dbr);
    EXPECT_LE(rel_err(dx, dxr), 1e-5);
    EXPECT_LE(rel_err(dw, dwr), 1e-5);
    EXPECT_LE(rel_err(db, dbr), 1e-5);
  }
}

TEST(OpsBackward, GeluMatchesReference) {
  for (int64_t n : {13, 70000}) {
    Tensor x = rnd({n}, 1, 8.0f), dy = rnd({n}, 2);
    x.data<float>()[0] = -60.0f;  // exp overflow inside the sigmoid form
    x.data<float>()[1] = 60.0f;
    for (bool exact : {false, true}) {
      Tensor d = dy.clone(), dr = dy.clone();
      if (exact) {
        ops::gelu_erf_backward(x, d);
        ops::reference::gelu_erf_backward(x, dr);
      } else {
        ops::gelu_new_backward(x, d);
        ops::reference::gelu_new_backward(x, dr);
      }
      EXPECT_LE(rel_err(d, dr), 2e-6) << (exact ? "gelu" : "gelu_new") << " n=" << n;
    }
  }
}

TEST(OpsBackward, EmbeddingMatchesReference) {
  const int64_t rows = 300, C = 40, V = 17, P = 12;
  std::vector<int32_t> ids(rows);
  std::vector<int64_t> pos(rows);
  for (int64_t r = 0; r < rows; ++r) {
    ids[r] = static_cast<int32_t>((r * 7) % V);  // repeated ids accumulate
    pos[r] = r % P;
  }
  Tensor tid = Tensor::from_vector(ids, {rows}), tpos = Tensor::from_vector(pos, {rows});
  Tensor dout = rnd({rows, C}, 1);
  Tensor dwte = rnd({V, C}, 2), dwter = dwte.clone(), dwpe = rnd({P, C}, 3), dwper = dwpe.clone();
  ops::embedding_backward(tid, tpos, dout, dwte, dwpe);
  ops::reference::embedding_backward(tid, tpos, dout, dwter, dwper);
  EXPECT_LE(rel_err(dwte, dwter), 1e-6);
  EXPECT_LE(rel_err(dwpe, dwper), 1e-6);
}

TEST(OpsBackward, AttentionMatchesReference) {
  for (AttnCase c : {AttnCase{2, 9, 2, 4, false, 0.0f}, AttnCase{3, 33, 4, 8, true, 0.0f},
                     AttnCase{3, 33, 4, 8, true, 0.3f}, AttnCase{4, 64, 2, 16, true, 0.1f}}) {
    const int64_t C = c.H * c.hd;
    Tensor qkv = rnd({c.B, c.T, 3 * C}, 1, 2.0f), dout = rnd({c.B, c.T, C}, 2);
    Tensor mask = c.masked ? right_pad_mask(c.B, c.T) : Tensor();
    ops::AttentionTrainParams p{c.H, 0.5f, c.p, ops::dropout_key(3, 4, 5, 6)};
    Tensor probs = Tensor::empty({c.B, c.H, c.T, c.T}, DType::F32), probs_r = probs.clone();
    Tensor dropped = c.p > 0 ? probs.clone() : Tensor(), dropped_r = c.p > 0 ? probs.clone() : Tensor();
    Tensor out = zeros_like(dout), out_r = zeros_like(dout);
    ops::causal_self_attention_train(qkv, mask, p, probs, dropped, out);
    ops::reference::causal_self_attention_train(qkv, mask, p, probs_r, dropped_r, out_r);
    EXPECT_LE(rel_err(probs, probs_r), 1e-5);
    if (c.p > 0) {
      EXPECT_LE(rel_err(dropped, dropped_r), 1e-5);
    }
    EXPECT_LE(rel_err(out, out_r), 1e-5);
    Tensor dqkv = rnd(qkv.shape(), 7), dqkv_r = zeros_like(qkv);
    ops::causal_self_attention_backward(qkv, mask, probs, dropped, out, p, dout, dqkv);
    ops::reference::causal_self_attention_backward(qkv, mask, probs_r, dropped_r, out_r, p, dout, dqkv_r);
    EXPECT_LE(rel_err(dqkv, dqkv_r), 1e-5) << "T=" << c.T << " p=" << c.p;
    if (c.p == 0.0f) {
      // Without dropout the training forward is the inference op.
      Tensor inf = zeros_like(dout);
      ops::causal_self_attention(qkv, mask, c.H, 0.5f, inf);
      EXPECT_LE(rel_err(out, inf), 1e-6);
    }
  }
}

TEST(OpsBackward, CrossEntropyMatchesReference) {
  for (auto [rows, cols] : {std::pair{5, 3}, {40, 5003}}) {
    Tensor logits = rnd({rows, cols}, 1, 6.0f);
    std::vector<int32_t> t(rows);
    for (int64_t r = 0; r < rows; ++r) t[r] = r % 4 == 1 ? -1 : static_cast<int32_t>((r * 13) % cols);
    Tensor targets = Tensor::from_vector(t, {rows});
    Tensor d = zeros_like(logits), dr = zeros_like(logits);
    const double loss = ops::cross_entropy(logits, targets, 0.3f, d);
    const double loss_r = ops::reference::cross_entropy(logits, targets, 0.3f, dr);
    EXPECT_NEAR(loss, loss_r, 1e-5 * std::fabs(loss_r));
    EXPECT_LE(rel_err(d, dr), 1e-5);
    Tensor inplace = logits.clone();  // dlogits may be the logits themselves
    EXPECT_NEAR(ops::cross_entropy(inplace, targets, 0.3f, inplace), loss, 1e-12 * loss);
    EXPECT_LE(rel_err(inplace, d), 0.0);
    // Row by row: the same gradient, the losses that sum to the total (0 on
    // ignored rows), in either kernel set.
    Tensor row_loss = Tensor::empty({rows}, DType::F64), row_loss_r = Tensor::empty({rows}, DType::F64);
    Tensor d2 = zeros_like(logits), d2r = zeros_like(logits);
    ops::cross_entropy_rows(logits, targets, 0.3f, d2, row_loss);
    ops::reference::cross_entropy_rows(logits, targets, 0.3f, d2r, row_loss_r);
    EXPECT_LE(rel_err(d2, d), 0.0);
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const double l = row_loss.data<double>()[r];
      sum += l;
      if (t[r] < 0) {
        EXPECT_EQ(l, 0.0);
      }
      EXPECT_NEAR(l, row_loss_r.data<double>()[r], 1e-5 * std::fabs(row_loss_r.data<double>()[r]) + 1e-12);
    }
    EXPECT_EQ(sum, loss);
    Tensor wrong = Tensor::empty({rows}, DType::F32);
    EXPECT_THROW(ops::cross_entropy_rows(logits, targets, 0.3f, d2, wrong), Error);
  }
}

// ---- reference == finite differences of a double forward -------------------

TEST(OpsBackwardNumeric, Linear) {
  const int64_t rows = 3, in = 4, out = 5;
  Tensor x = rnd({rows, in}, 1), w = rnd({in, out}, 2), b = rnd({out}, 3), r = rnd({rows, out}, 4);
  std::vector<double> xd = as_double(x), wd = as_double(w), bd = as_double(b);
  auto f = [&] {  // Σ r ∘ (x·W + b)
    double s = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double y = bd[o];
        for (int64_t k = 0; k < in; ++k) y += xd[i * in + k] * wd[k * out + o];
        s += r.data<float>()[i * out + o] * y;
      }
    return s;
  };
  Tensor dx = zeros_like(x), dw = zeros_like(w), db = zeros_like(b);
  ops::reference::linear_backward(x, w, r, dx, dw, db);
  EXPECT_LE(fd_err(dx, numeric_grad(f, xd)), 1e-6);
  EXPECT_LE(fd_err(dw, numeric_grad(f, wd)), 1e-6);
  EXPECT_LE(fd_err(db, numeric_grad(f, bd)), 1e-6);
}

TEST(OpsBackwardNumeric, MatmulNt) {
  const int64_t m = 3, k = 4, n = 6;
  Tensor a = rnd({m, k}, 1), b = rnd({n, k}, 2), r = rnd({m, n}, 3);
  std::vector<double> ad = as_double(a), bd = as_double(b);
  auto f = [&] {
    double s = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double c = 0;
        for (int64_t p = 0; p < k; ++p) c += ad[i * k + p] * bd[j * k + p];
        s += r.data<float>()[i * n + j] * c;
      }
    return s;
  };
  Tensor da = zeros_like(a), db = zeros_like(b);
  ops::reference::matmul_nt_backward(a, b, r, da, db);
  EXPECT_LE(fd_err(da, numeric_grad(f, ad)), 1e-6);
  EXPECT_LE(fd_err(db, numeric_grad(f, bd)), 1e-6);
}

TEST(OpsBackwardNumeric, LayerNorm) {
  const int64_t rows = 3, cols = 6;
  const double eps = 1e-3;
  Tensor x = rnd({rows, cols}, 1, 2.0f), w = rnd({cols}, 2), b = rnd({cols}, 3), r = rnd({rows, cols}, 4);
  std::vector<double> xd = as_double(x), wd = as_double(w), bd = as_double(b);
  auto f = [&] {
    double s = 0;
    for (int64_t i = 0; i < rows; ++i) {
      double mean = 0, var = 0;
      for (int64_t c = 0; c < cols; ++c) mean += xd[i * cols + c] / cols;
      for (int64_t c = 0; c < cols; ++c) var += (xd[i * cols + c] - mean) * (xd[i * cols + c] - mean) / cols;
      for (int64_t c = 0; c < cols; ++c)
        s += r.data<float>()[i * cols + c] * ((xd[i * cols + c] - mean) / std::sqrt(var + eps) * wd[c] + bd[c]);
    }
    return s;
  };
  Tensor dx = zeros_like(x), dw = zeros_like(w), db = zeros_like(b);
  ops::reference::layer_norm_backward(x, w, static_cast<float>(eps), r, dx, dw, db);
  EXPECT_LE(fd_err(dx, numeric_grad(f, xd)), 1e-5);
  EXPECT_LE(fd_err(dw, numeric_grad(f, wd)), 1e-6);
  EXPECT_LE(fd_err(db, numeric_grad(f, bd)), 1e-6);
}

TEST(OpsBackwardNumeric, Gelu) {
  Tensor x = rnd({40}, 1, 5.0f), r = rnd({40}, 2);
  std::vector<double> xd = as_double(x);
  for (bool exact : {false, true}) {
    auto f = [&] {
      double s = 0;
      for (size_t i = 0; i < xd.size(); ++i) {
        const double v = xd[i];
        const double y = exact ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))
                               : 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        s += r.data<float>()[i] * y;
      }
      return s;
    };
    Tensor d = r.clone();
    if (exact) {
      ops::reference::gelu_erf_backward(x, d);
    } else {
      ops::reference::gelu_new_backward(x, d);
    }
    EXPECT_LE(fd_err(d, numeric_grad(f, xd)), 1e-6) << (exact ? "gelu" : "gelu_new");
  }
}

TEST(OpsBackwardNumeric, Embedding) {
  const int64_t rows = 7, C = 3;
  std::vector<int32_t> ids{0, 2, 2, 1, 0, 2, 3};
  std::vector<int64_t> pos{0, 1, 2, 0, 1, 2, 0};
  Tensor wte = rnd({4, C}, 1), wpe = rnd({3, C}, 2), r = rnd({rows, C}, 3);
  std::vector<double> ted = as_double(wte), ped = as_double(wpe);
  auto f = [&] {
    double s = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < C; ++c) s += r.data<float>()[i * C + c] * (ted[ids[i] * C + c] + ped[pos[i] * C + c]);
    return s;
  };
  Tensor dte = zeros_like(wte), dpe = zeros_like(wpe);
  ops::reference::embedding_backward(Tensor::from_vector(ids, {rows}), Tensor::from_vector(pos, {rows}), r, dte, dpe);
  EXPECT_LE(fd_err(dte, numeric_grad(f, ted)), 1e-8);
  EXPECT_LE(fd_err(dpe, numeric_grad(f, ped)), 1e-8);
}

TEST(OpsBackwardNumeric, Attention) {
  for (AttnCase c : {AttnCase{2, 5, 2, 3, true, 0.0f}, AttnCase{2, 6, 2, 2, true, 0.4f}}) {
    const int64_t C = c.H * c.hd;
    const float scale = 0.7f;
    Tensor qkv = rnd({c.B, c.T, 3 * C}, 1, 1.5f), r = rnd({c.B, c.T, C}, 2);
    Tensor mask = right_pad_mask(c.B, c.T);
    const uint64_t key = ops::dropout_key(1, 2, 3, 4);
    std::vector<double> xd = as_double(qkv);
    auto at = [&](int64_t b, int64_t t, int64_t part, int64_t h, int64_t d) {
      return ((b * c.T + t) * 3 + part) * C + h * c.hd + d;
    };
    auto f = [&] {  // Σ r ∘ attention(qkv), HF semantics, dropout on j <= i
      double s = 0;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t h = 0; h < c.H; ++h)
          for (int64_t i = 0; i < c.T; ++i) {
            std::vector<double> p(c.T, 0.0);
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j <= i; ++j) {
              if (!mask.data<uint8_t>()[b * c.T + j]) continue;
              double dot = 0;
              for (int64_t d = 0; d < c.hd; ++d) dot += xd[at(b, i, 0, h, d)] * xd[at(b, j, 1, h, d)];
              p[j] = dot * scale;
              mx = std::max(mx, p[j]);
            }
            for (int64_t j = 0; j <= i; ++j) {
              p[j] = mask.data<uint8_t>()[b * c.T + j] ? std::exp(p[j] - mx) : 0.0;
              sum += p[j];
            }
            for (int64_t j = 0; j <= i; ++j) {
              p[j] /= sum;
              if (c.p > 0) {
                const uint64_t idx = static_cast<uint64_t>(((b * c.H + h) * c.T + i) * c.T + j);
                p[j] = ops::dropout_kept(key, idx, c.p) ? p[j] / (1.0 - c.p) : 0.0;
              }
            }
            for (int64_t d = 0; d < c.hd; ++d) {
              double o = 0;
              for (int64_t j = 0; j <= i; ++j) o += p[j] * xd[at(b, j, 2, h, d)];
              s += r.data<float>()[(b * c.T + i) * C + h * c.hd + d] * o;
            }
          }
      return s;
    };
    ops::AttentionTrainParams params{c.H, scale, c.p, key};
    Tensor probs = Tensor::empty({c.B, c.H, c.T, c.T}, DType::F32), dropped = probs.clone();
    Tensor out = zeros_like(r), dqkv = zeros_like(qkv);
    ops::reference::causal_self_attention_train(qkv, mask, params, probs, dropped, out);
    ops::reference::causal_self_attention_backward(qkv, mask, probs, dropped, out, params, r, dqkv);
    EXPECT_LE(fd_err(dqkv, numeric_grad(f, xd)), 1e-5) << "p=" << c.p;
  }
}

TEST(OpsBackwardNumeric, CrossEntropy) {
  const int64_t rows = 4, cols = 5;
  const float scale = 0.25f;
  Tensor logits = rnd({rows, cols}, 1, 3.0f);
  std::vector<int32_t> t{1, -1, 4, 0};
  std::vector<double> xd = as_double(logits);
  auto f = [&] {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) {
      if (t[r] < 0) continue;
      double sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += std::exp(xd[r * cols + c]);
      s += scale * (std::log(sum) - xd[r * cols + t[r]]);
    }
    return s;
  };
  Tensor d = zeros_like(logits);
  const double loss = ops::reference::cross_entropy(logits, Tensor::from_vector(t, {rows}), scale, d);
  EXPECT_NEAR(loss * scale, f(), 1e-6);
  EXPECT_LE(fd_err(d, numeric_grad(f, xd)), 1e-6);
}

// ---- dropout --------------------------------------------------------------

namespace {
// The documented rule, written out independently.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

TEST(OpsDropout, RateScaleAndDocumentedRule) {
  const int64_t n = 1 << 20;
  const float p = 0.1f;
  const uint64_t key = ops::dropout_key(42, 3, 0, 5);
  Tensor x = Tensor::empty({n}, DType::F32);
  for (float& v : x.span<float>()) v = 2.0f;
  Tensor y = x.clone(), yr = x.clone();
  ops::dropout(y, p, key);
  ops::reference::dropout(yr, p, key);
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = y.data<float>()[i];
    const bool kept = static_cast<float>(mix(key + static_cast<uint64_t>(i)) >> 40) * 0x1p-24f >= p;
    ASSERT_EQ(v, kept ? 2.0f * (1.0f / (1.0f - p)) : 0.0f) << i;
    ASSERT_EQ(ops::dropout_kept(key, static_cast<uint64_t>(i), p), kept);
    dropped += kept ? 0 : 1;
  }
  EXPECT_NEAR(static_cast<double>(dropped) / n, p, 0.002);
  EXPECT_EQ(rel_err(y, yr), 0.0);
  Tensor again = x.clone();
  ops::dropout(again, p, key);  // same counters, same mask
  EXPECT_EQ(rel_err(again, y), 0.0);
  // p = 0 is the identity.
  Tensor id = x.clone();
  ops::dropout(id, 0.0f, key);
  EXPECT_EQ(rel_err(id, x), 0.0);
}

TEST(OpsDropout, EveryCounterChangesTheMask) {
  const uint64_t base = ops::dropout_key(1, 2, 3, 4);
  const uint64_t others[] = {ops::dropout_key(2, 2, 3, 4), ops::dropout_key(1, 3, 3, 4), ops::dropout_key(1, 2, 4, 4),
                             ops::dropout_key(1, 2, 3, 5)};
  const int64_t n = 4096;
  for (uint64_t k : others) {
    ASSERT_NE(k, base);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i)
      differ += ops::dropout_kept(base, i, 0.5f) != ops::dropout_kept(k, i, 0.5f) ? 1 : 0;
    EXPECT_NEAR(static_cast<double>(differ) / n, 0.5, 0.05);  // independent masks
  }
}

// ---- argument checks ------------------------------------------------------

TEST(OpsBackward, RejectsBadArguments) {
  Tensor x = rnd({4, 3}, 1), w = rnd({3, 5}, 2), dy = rnd({4, 5}, 3), none;
  Tensor dw_bad = Tensor::empty({5, 3}, DType::F32);
  EXPECT_THROW(ops::linear_backward(x, w, dy, none, dw_bad, none), Error);
  Tensor dy_bad = rnd({4, 4}, 3), dw = zeros_like(w);
  EXPECT_THROW(ops::linear_backward(x, w, dy_bad, none, dw, none), Error);
  Tensor logits = rnd({2, 3}, 1), d = zeros_like(logits);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_vector(std::vector<int32_t>{0, 3}, {2}), 1.0f, d), Error);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_vector(std::vector<int32_t>{0}, {1}), 1.0f, d), Error);
  Tensor t = rnd({8}, 1);
  EXPECT_THROW(ops::dropout(t, 1.0f, 0), Error);
  Tensor qkv = rnd({1, 4, 12}, 1), probs = Tensor::empty({1, 2, 4, 3}, DType::F32), out = Tensor::empty({1, 4, 4}, DType::F32);
  EXPECT_THROW(ops::causal_self_attention_train(qkv, none, {2, 1.0f, 0.0f, 0}, probs, none, out), Error);
  Tensor probs_ok = Tensor::empty({1, 2, 4, 4}, DType::F32);  // dropout without a buffer for the dropped values
  EXPECT_THROW(ops::causal_self_attention_train(qkv, none, {2, 1.0f, 0.1f, 0}, probs_ok, none, out), Error);
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{0, 9}, {2}), pos = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2});
  Tensor dwte = Tensor::empty({4, 3}, DType::F32), dwpe = Tensor::empty({4, 3}, DType::F32), g = rnd({2, 3}, 1);
  EXPECT_THROW(ops::embedding_backward(ids, pos, g, dwte, dwpe), Error);
}

// The AdamW op (ops_backward.h): the fast kernel equals the scalar reference
// bit for bit, with and without weight decay, over lengths with a scalar tail.
TEST(OpsAdamW, FastEqualsReferenceBitForBit) {
  for (int64_t n : {1, 7, 8, 1037}) {
    for (bool decay : {false, true}) {
      Tensor p = rnd({n}, 31), m = zeros_like(p), v = zeros_like(p);
      Tensor pr = p.clone(), mr = zeros_like(p), vr = zeros_like(p);
      for (int step = 1; step <= 5; ++step) {
        const Tensor g = rnd({n}, 100 + static_cast<uint64_t>(step), 0.5f);
        backend::AdamWStep k;
        k.decay = decay;
        k.keep = 1.0f - 1e-3f * 0.01f;
        k.w1 = 0.1f;
        k.b2 = 0.999f;
        k.w2 = 0.001f;
        k.neg_step_size = static_cast<float>(-1e-3 / (1.0 - std::pow(0.9, step)));
        k.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(0.999, step)));
        k.eps = 1e-8f;
        ops::adamw_update(p, g, m, v, k);
        ops::reference::adamw_update(pr, g, mr, vr, k);
      }
      for (const auto& [a, b] : {std::pair{&p, &pr}, {&m, &mr}, {&v, &vr}})
        EXPECT_EQ(std::memcmp(a->raw(), b->raw(), a->nbytes()), 0) << n << (decay ? " with decay" : "");
    }
  }
  Tensor p = rnd({4}, 1), g = rnd({5}, 2), m = zeros_like(p), v = zeros_like(p);
  EXPECT_THROW(ops::adamw_update(p, g, m, v, {}), Error);
}
