#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include <immintrin.h>

#include "backend/cpu/simd_math.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "core/utf8.h"
#include "model/gpt2.h"
#include "ops/ops.h"

namespace gpt2q {

std::string read_text_file(const std::filesystem::path& path) {
  std::string text = read_file(path);
  if (text.empty()) fail("{}: the file is empty", path.string());
  if (size_t bad = first_invalid_utf8(text); bad != kUtf8Valid)
    fail("{}: invalid UTF-8 at byte {}", path.string(), bad);
  return text;
}

std::vector<PerplexityWindow> perplexity_windows(int64_t n_tokens, int64_t max_length, int64_t stride) {
  if (n_tokens < 0) fail("perplexity: negative token count {}", n_tokens);
  if (max_length < 1) fail("perplexity: max_length must be at least 1 (got {})", max_length);
  if (stride < 1 || stride > max_length)
    fail("perplexity: stride must be in [1, max_length = {}] (got {})", max_length, stride);
  std::vector<PerplexityWindow> windows;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n_tokens; begin += stride) {
    PerplexityWindow w;
    w.begin = begin;
    w.end = std::min(begin + max_length, n_tokens);
    w.score_begin = std::max(prev_end, begin + 1);
    windows.push_back(w);
    prev_end = w.end;
    if (w.end == n_tokens) break;
  }
  return windows;
}

double token_nll(std::span<const float> logits_row, int32_t target) {
  GPT2Q_CHECK(target >= 0 && static_cast<size_t>(target) < logits_row.size(), "target {} outside {} logits", target,
              logits_row.size());
  // exp is the whole cost for small models (50257 per scored token), so the
  // terms use the 8-wide float exp (2 ulp) while the sum and log stay in
  // double: the error stays near float rounding of the logits themselves.
  const float* x = logits_row.data();
  const size_t n = logits_row.size();
  size_t i = 0;
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float max = cpu::simd::hmax8(vmax);
  for (; i < n; ++i) max = std::max(max, x[i]);
  const __m256 vm = _mm256_set1_ps(max);
  __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 e = cpu::simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    acc_lo = _mm256_add_pd(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    acc_hi = _mm256_add_pd(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(acc_lo, acc_hi));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - static_cast<double>(max));
  return static_cast<double>(max) + std::log(sum) - static_cast<double>(x[target]);
}

namespace {
// Rows of LM logits computed at once: bounds the [rows, vocab] buffer
// (256 x 50257 floats = 51 MB) while keeping the head GEMM large.
constexpr int64_t kLogitRowsPerChunk = 256;

// Sum of NLL over the window's scored positions. Only the hidden states that
// predict a scored token go through the LM head.
double window_nll_sum(const GPT2Model& model, std::span<const int32_t> ids, const PerplexityWindow& w) {
  const int64_t T = w.end - w.begin, C = model.config().n_embd, V = model.config().vocab_size;
  TokenBatch batch;
  batch.batch = 1;
  batch.seq = T;
  batch.ids.assign(ids.begin() + w.begin, ids.begin() + w.end);
  batch.lengths = {T};
  Tensor hidden = model.hidden_states(batch).view({T, C});
  // Position p is predicted by the hidden state at p - 1 (window-relative).
  const int64_t first_row = w.score_begin - w.begin - 1, last_row = w.end - w.begin - 1;
  std::vector<double> row_nll(static_cast<size_t>(last_row - first_row));
  for (int64_t r0 = first_row; r0 < last_row; r0 += kLogitRowsPerChunk) {
    const int64_t r1 = std::min(r0 + kLogitRowsPerChunk, last_row);
    const Tensor logits = to_device(model.lm_logits_from_hidden(hidden.slice_rows(r0, r1)), Device::CPU);
    GPT2Q_CHECK(logits.ndim() == 2 && logits.dim(0) == r1 - r0 && logits.dim(1) == V,
                "lm_logits_from_hidden gave {}", shape_str(logits.shape()));
    const float* lp = logits.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t r = r0; r < r1; ++r) {
      std::span<const float> row(lp + (r - r0) * V, static_cast<size_t>(V));
      row_nll[r - first_row] = token_nll(row, ids[w.begin + r + 1]);
    }
  }
  // Summed in a fixed order so that the result does not depend on threads.
  double sum = 0;
  for (double v : row_nll) sum += v;
  return sum;
}
// On a GPU: windows in batches (one forward for several windows, the last
// one padded), the scored rows gathered on the device, their logits in
// large chunks and each row's loss computed there (ops::token_nll): only
// one double per scored token crosses to the host. Same windows, same
// scored tokens, same sum order (window by window, row by row).
constexpr int64_t kDeviceWindowsPerBatch = 8;
constexpr int64_t kDeviceLogitRowsPerChunk = 2048;

double device_nll_sum(const GPT2Model& model, std::span<const int32_t> ids, const std::vector<PerplexityWindow>& ws,
                      Progress* progress) {
  const int64_t C = model.config().n_embd;
  double sum = 0;
  for (size_t w0 = 0; w0 < ws.size(); w0 += kDeviceWindowsPerBatch) {
    const size_t w1 = std::min(ws.size(), w0 + static_cast<size_t>(kDeviceWindowsPerBatch));
    std::vector<std::vector<int32_t>> seqs;
    for (size_t w = w0; w < w1; ++w) seqs.emplace_back(ids.begin() + ws[w].begin, ids.begin() + ws[w].end);
    const TokenBatch tb = TokenBatch::from_sequences(seqs, seqs.front().front());
    const Tensor hidden = model.hidden_states(tb).view({tb.batch * tb.seq, C});
    // Rows that predict a scored token, in window order, and their targets.
    std::vector<int64_t> rows, targets;
    for (size_t w = w0; w < w1; ++w) {
      const PerplexityWindow& win = ws[w];
      const int64_t b = static_cast<int64_t>(w - w0);
      for (int64_t p = win.score_begin; p < win.end; ++p) {
        rows.push_back(b * tb.seq + (p - 1 - win.begin));
        targets.push_back(ids[p]);
      }
    }
    for (size_t r0 = 0; r0 < rows.size(); r0 += kDeviceLogitRowsPerChunk) {
      const auto n = static_cast<int64_t>(std::min(rows.size() - r0, static_cast<size_t>(kDeviceLogitRowsPerChunk)));
      Tensor picked = ops::scratch({n, C}, DType::F32, hidden.device());
      ops::gather_rows(hidden, Tensor::from_vector(std::vector<int64_t>(rows.begin() + r0, rows.begin() + r0 + n), {n}),
                       picked);
      const Tensor logits = model.lm_logits_from_hidden(picked);
      Tensor nll = Tensor::empty({n}, DType::F64);
      ops::token_nll(logits, Tensor::from_vector(std::vector<int64_t>(targets.begin() + r0, targets.begin() + r0 + n), {n}),
                     nll);
      for (int64_t r = 0; r < n; ++r) sum += nll.data<double>()[r];
    }
    if (progress) progress->advance(static_cast<int64_t>(w1 - w0));
  }
  return sum;
}

}  // namespace

PerplexityResult evaluate_perplexity(const GPT2Model& model, std::span<const int32_t> ids,
                                     const PerplexityOptions& opts) {
  const GPT2Config& cfg = model.config();
  if (model.is_classifier()) fail("perplexity: the model is a classifier; it needs an LM head");
  if (opts.max_length < 0 || opts.stride < 0)
    fail("perplexity: max_length and stride must be positive (got {} and {})", opts.max_length, opts.stride);
  PerplexityResult res;
  res.max_length = opts.max_length > 0 ? opts.max_length : cfg.n_positions;
  if (res.max_length > cfg.n_positions)
    fail("perplexity: max_length {} exceeds the model's n_positions {}", res.max_length, cfg.n_positions);
  res.stride = opts.stride > 0 ? opts.stride : std::max<int64_t>(1, res.max_length / 2);
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
      fail("perplexity: token id {} at position {} is outside the vocabulary [0, {})", ids[i], i, cfg.vocab_size);

  auto windows = perplexity_windows(static_cast<int64_t>(ids.size()), res.max_length, res.stride);
  for (const auto& w : windows) res.tokens += w.scored();
  if (res.tokens == 0)
    fail("perplexity: nothing to score ({} tokens, max_length {}): need at least 2 tokens and max_length >= 2",
         ids.size(), res.max_length);
  res.windows = static_cast<int64_t>(windows.size());

  const auto start = std::chrono::steady_clock::now();
  double nll_sum = 0;
  {
    std::optional<Progress> progress;
    if (opts.progress) progress.emplace("perplexity", res.windows, "windows");
    if (model.placement().device != Device::CPU) {
      std::vector<PerplexityWindow> scored;
      for (const auto& w : windows)
        if (w.scored() > 0) scored.push_back(w);
      if (progress && scored.size() < windows.size()) progress->advance(static_cast<int64_t>(windows.size() - scored.size()));
      nll_sum = device_nll_sum(model, ids, scored, progress ? &*progress : nullptr);
    } else {
      for (const auto& w : windows) {
        if (w.scored() > 0) nll_sum += window_nll_sum(model, ids, w);
        if (progress) progress->advance();
      }
    }
  }
  if (!std::isfinite(nll_sum)) fail("perplexity: the loss is not finite (the model produced NaN or infinite logits)");
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  res.nll = nll_sum / static_cast<double>(res.tokens);
  res.ppl = std::exp(res.nll);
  return res;
}

}  // namespace gpt2q
