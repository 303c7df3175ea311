#include "quant/gptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "backend/cpu/linalg.h"
#include "core/error.h"

namespace gpt2q::quant {

namespace {

// One group's parameters for each of `out` rows (fp32, as the reference's
// Quantizer holds them; the zero point is an integer-valued float there).
struct GroupParams {
  std::vector<float> scale, zero;
};

// Quantizer.find_params(x, weight=True) over columns [begin, end) of a
// row-major matrix of row length ld, per row.
template <typename T>
GroupParams find_params(const T* w, int64_t out, int64_t ld, int64_t begin, int64_t end, int maxq, bool symmetric) {
  GroupParams p;
  p.scale.resize(static_cast<size_t>(out));
  p.zero.resize(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    float xmin = 0.0f, xmax = 0.0f;
    for (int64_t i = begin; i < end; ++i) {
      const auto x = static_cast<float>(w[o * ld + i]);
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
    }
    if (symmetric) {
      xmax = std::max(std::fabs(xmin), xmax);
      if (xmin < 0.0f) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
      xmin = -1.0f;
      xmax = 1.0f;
    }
    const float scale = (xmax - xmin) / static_cast<float>(maxq);
    p.scale[static_cast<size_t>(o)] = scale;
    // At least 1: GPTQ checkpoints (v1) store zero − 1 unsigned (gptq_format.h).
    p.zero[static_cast<size_t>(o)] =
        symmetric ? static_cast<float>(maxq + 1) / 2.0f : std::max(1.0f, std::nearbyint(-xmin / scale));
  }
  return p;
}

// quantize(x, scale, zero, maxq): the code, and the value it stands for.
struct Quantized {
  uint8_t code;
  float value;
};
Quantized quantize_one(float x, float scale, float zero, int maxq) {
  const float q = std::clamp(std::nearbyint(x / scale) + zero, 0.0f, static_cast<float>(maxq));
  return {static_cast<uint8_t>(q), scale * (q - zero)};
}

void store_group(GroupQuantized& r, const GroupParams& p) {
  r.scales.insert(r.scales.end(), p.scale.begin(), p.scale.end());
  for (float z : p.zero) r.zeros.push_back(static_cast<int32_t>(z));
}

GroupQuantized empty_result(int64_t out, int64_t in, const GroupQuantOptions& o) {
  GroupQuantized r;
  r.bits = o.bits;
  r.out = out;
  r.in = in;
  r.group_size = o.group_size < 0 ? in : o.group_size;
  r.symmetric = o.symmetric;
  r.codes.assign(static_cast<size_t>(out * in), 0);
  r.g_idx.resize(static_cast<size_t>(in));
  return r;
}

// The upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ·U), as the reference takes it:
// cholesky(H), cholesky_inverse, cholesky(upper=True). h is damped in place
// (more, and again, while it is not positive definite).
std::vector<double> inverse_upper_factor(std::vector<double>& h, int64_t n, double damp, const std::string& what,
                                         GptqStats& st) {
  std::vector<double> l(h.size());
  for (int attempt = 0;; ++attempt) {
    l = h;
    for (int64_t i = 0; i < n; ++i) l[static_cast<size_t>(i * n + i)] += damp;
    if (cpu::cholesky_lower(l.data(), n)) break;
    if (attempt == 6)
      fail("{}: GPTQ: the Hessian is not positive definite even with damping {:.3g} (check the calibration data)",
           what, damp);
    damp *= 10.0;
    ++st.damp_retries;
  }
  st.damp = damp;
  std::vector<double> linv(h.size()), hinv(h.size());
  cpu::lower_triangular_inverse(l.data(), n, linv.data());
  cpu::dgemm_tn(n, n, n, 1.0, linv.data(), n, linv.data(), n, 0.0, hinv.data(), n);  // H⁻¹ = L⁻ᵀ·L⁻¹
  if (!cpu::cholesky_lower(hinv.data(), n))
    fail("{}: GPTQ: the inverse Hessian lost positive definiteness in double (damping {:.3g})", what, damp);
  for (int64_t i = 0; i < n; ++i)  // U = (lower factor)ᵀ
    for (int64_t j = i + 1; j < n; ++j) std::swap(hinv[static_cast<size_t>(i * n + j)], hinv[static_cast<size_t>(j * n + i)]);
  return hinv;
}

}  // namespace

std::vector<float> GroupQuantized::dequantize() const {
  std::vector<float> w(static_cast<size_t>(out * in));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) w[static_cast<size_t>(o * in + i)] = value(o, i);
  return w;
}

void check_group_options(const GroupQuantOptions& o, int64_t in, const std::string& what) {
  if (o.bits != 2 && o.bits != 3 && o.bits != 4 && o.bits != 8)
    fail("{}: {} bits: the group-wise format has 2, 3, 4 or 8", what, o.bits);
  if (o.group_size == 0 || o.group_size < -1 || o.group_size > in)
    fail("{}: group size {}: must be -1 (per channel) or 1..{} (the input features)", what, o.group_size, in);
}

GroupQuantized quantize_rtn(const float* w, int64_t out, int64_t in, const GroupQuantOptions& o) {
  check_group_options(o, in, "round-to-nearest");
  GroupQuantized r = empty_result(out, in, o);
  const int maxq = r.maxq();
  for (int64_t begin = 0; begin < in; begin += r.group_size) {
    const int64_t end = std::min(in, begin + r.group_size);
    const GroupParams p = find_params(w, out, in, begin, end, maxq, o.symmetric);
    const auto g = static_cast<int32_t>(begin / r.group_size);
    for (int64_t i = begin; i < end; ++i) r.g_idx[static_cast<size_t>(i)] = g;
    for (int64_t row = 0; row < out; ++row)
      for (int64_t i = begin; i < end; ++i)
        r.codes[static_cast<size_t>(row * in + i)] =
            quantize_one(w[row * in + i], p.scale[static_cast<size_t>(row)], p.zero[static_cast<size_t>(row)], maxq)
                .code;
    store_group(r, p);
  }
  return r;
}

GroupQuantized quantize_gptq(const float* w_in, int64_t out, int64_t in, const double* hessian, const GptqOptions& o,
                             const std::string& what, GptqStats* stats) {
  check_group_options(o.quant, in, what);
  if (o.block_size < 1) fail("{}: GPTQ block size {}: must be at least 1", what, o.block_size);
  if (!(o.damp_percent > 0.0) || !std::isfinite(o.damp_percent))
    fail("{}: GPTQ damping {}: must be a positive fraction", what, o.damp_percent);
  const auto t0 = std::chrono::steady_clock::now();
  GptqStats st;
  GroupQuantized r = empty_result(out, in, o.quant);
  const int maxq = r.maxq();
  const int64_t gs = r.group_size, n = in;
  const bool per_channel = o.quant.group_size < 0;

  std::vector<double> W(static_cast<size_t>(out * in));
  for (size_t k = 0; k < W.size(); ++k) W[k] = w_in[k];
  // The per-channel parameters come from the weight as given (the reference
  // finds them before it touches dead columns).
  GroupParams params = find_params(W.data(), out, in, 0, in, maxq, o.quant.symmetric);
  std::vector<double> H(hessian, hessian + n * n);
  for (int64_t i = 0; i < n; ++i)
    if (H[static_cast<size_t>(i * n + i)] == 0.0) {
      H[static_cast<size_t>(i * n + i)] = 1.0;
      for (int64_t row = 0; row < out; ++row) W[static_cast<size_t>(row * in + i)] = 0.0;
      ++st.dead_columns;
    }

  // Column order: as given, or by decreasing Hessian diagonal (a stable
  // sort: ties keep their order).
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
      return H[static_cast<size_t>(a * n + a)] > H[static_cast<size_t>(b * n + b)];
    });
    std::vector<double> wp(W.size()), hp(H.size());
    for (int64_t row = 0; row < out; ++row)
      for (int64_t j = 0; j < n; ++j) wp[static_cast<size_t>(row * n + j)] = W[static_cast<size_t>(row * n + perm[j])];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        hp[static_cast<size_t>(i * n + j)] = H[static_cast<size_t>(perm[i] * n + perm[j])];
    W.swap(wp);
    H.swap(hp);
  }
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) mean_diag += H[static_cast<size_t>(i * n + i)];
  mean_diag /= static_cast<double>(n);
  const std::vector<double> U = inverse_upper_factor(H, n, o.damp_percent * mean_diag, what, st);

  std::vector<uint8_t> codes(static_cast<size_t>(out * n));  // permuted column order
  std::vector<GroupParams> groups;
  groups.reserve(static_cast<size_t>(n / gs + 1));  // `at` below points into it
  if (per_channel) groups.push_back(params);
  const int64_t B = o.block_size;
  std::vector<double> err(static_cast<size_t>(out * B)), row_loss(static_cast<size_t>(out), 0.0);
  for (int64_t i1 = 0; i1 < n; i1 += B) {
    const int64_t i2 = std::min(i1 + B, n), count = i2 - i1;
    // Groups starting in this block take their parameters from W as the lazy
    // updates of the earlier blocks left it (the reference reads W, not the
    // block's working copy).
    std::vector<const GroupParams*> at(static_cast<size_t>(count));
    for (int64_t c = 0; c < count; ++c) {
      if (!per_channel && (i1 + c) % gs == 0)
        groups.push_back(find_params(W.data(), out, n, i1 + c, std::min(n, i1 + c + gs), maxq, o.quant.symmetric));
      at[static_cast<size_t>(c)] = &groups.back();
    }
    // Each row runs the block on its own: a column's error moves only along
    // its row.
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < out; ++row) {
      std::vector<double> w1(W.begin() + row * n + i1, W.begin() + row * n + i2);
      double* e = err.data() + row * B;
      double loss = 0.0;
      for (int64_t c = 0; c < count; ++c) {
        const int64_t col = i1 + c;
        const double d = U[static_cast<size_t>(col * n + col)];
        const GroupParams& p = *at[static_cast<size_t>(c)];
        const Quantized q = quantize_one(static_cast<float>(w1[static_cast<size_t>(c)]),
                                         p.scale[static_cast<size_t>(row)], p.zero[static_cast<size_t>(row)], maxq);
        codes[static_cast<size_t>(row * n + col)] = q.code;
        const double diff = w1[static_cast<size_t>(c)] - static_cast<double>(q.value);
        loss += diff * diff / (d * d) / 2.0;
        e[c] = diff / d;
        const double* u = U.data() + col * n + i1;
        for (int64_t j = c; j < count; ++j) w1[static_cast<size_t>(j)] -= e[c] * u[j];
      }
      row_loss[static_cast<size_t>(row)] += loss;
    }
    // The lazy update of every later column: W[:, i2:] -= Err · U[i1:i2, i2:].
    if (i2 < n)
      cpu::dgemm_nn(out, n - i2, count, -1.0, err.data(), B, U.data() + i1 * n + i2, n, 1.0, W.data() + i2, n);
  }
  for (double l : row_loss) st.loss += l;

  // Back to the columns' own order.
  for (int64_t j = 0; j < n; ++j) {
    const int64_t k = perm[static_cast<size_t>(j)];
    r.g_idx[static_cast<size_t>(k)] = per_channel ? 0 : static_cast<int32_t>(j / gs);
    for (int64_t row = 0; row < out; ++row) r.codes[static_cast<size_t>(row * n + k)] = codes[static_cast<size_t>(row * n + j)];
  }
  for (const GroupParams& p : groups) store_group(r, p);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = st;
  return r;
}

HessianAccumulator::HessianAccumulator(int64_t in) : in_(in), sum_(static_cast<size_t>(in * in), 0.0) {
  GPT2Q_CHECK(in > 0, "Hessian of {} features", in);
}

void HessianAccumulator::add(const float* x, int64_t rows) {
  if (rows <= 0) return;
  std::vector<double> xd(x, x + rows * in_);
  cpu::dgemm_tn(in_, in_, rows, 1.0, xd.data(), in_, xd.data(), in_, 1.0, sum_.data(), in_);
  rows_ += rows;
}

std::vector<double> HessianAccumulator::hessian() const {
  if (rows_ == 0) fail("GPTQ: no calibration activations reached this layer");
  std::vector<double> h(sum_);
  const double k = 2.0 / static_cast<double>(rows_);
  for (double& v : h) v *= k;
  return h;
}

}  // namespace gpt2q::quant
