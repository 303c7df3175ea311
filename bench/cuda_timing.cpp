// gpt2q_cuda_timing: times the CUDA ops and the quantized-weight decoders on
// GPT-2 124M shapes (B = 4 sequences of T = 1024 tokens) with CUDA events:
// a few warm-up runs, then the median of `reps` timed runs per kernel, each
// on random (never all-zero) inputs. Prints one table; docs/cuda.md quotes it.
// Usage: gpt2q_cuda_timing [reps]   (default 20)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/dequant.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "ops/ops.h"
#include "quant/blockwise4.h"
#include "quant/double_quant.h"
#include "quant/int8_affine.h"

using namespace gpt2q;

namespace {

// The thread's stream, which gpt2q's ops and copies use.
cudaStream_t stream() { return static_cast<cudaStream_t>(gpt2q::cuda_stream()); }

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail("{}: {}", what, cudaGetErrorString(err));
}

Tensor random_gpu(Shape shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::mt19937_64 rng(seed);
  for (float& v : t.span<float>()) v = lo + (hi - lo) * static_cast<float>((rng() >> 40) * 0x1p-24);
  return to_device(t, Device::CUDA);
}

template <typename T>
Tensor upload(const std::vector<T>& v) {
  return to_device(Tensor::from_vector<T>(v, {static_cast<int64_t>(v.size())}), Device::CUDA);
}

struct Timer {
  int reps;
  // Median milliseconds of fn over `reps` runs, each timed with its own pair of events.
  double median_ms(const std::function<void()>& fn) const {
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    for (int i = 0; i < 3; ++i) fn();  // warm-up: module load, cuBLAS heuristics, caches
    cuda::synchronize();
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
      check(cudaEventRecord(start, stream()), "cudaEventRecord");
      fn();
      check(cudaEventRecord(stop, stream()), "cudaEventRecord");
      check(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float t = 0;
      check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
      ms.push_back(t);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
};

// One table row: time, and the rate that matters for the kernel (GFLOP/s
// for GEMMs, GB/s of compulsory traffic for memory-bound kernels).
void row(const char* name, const std::string& shape, double ms, double gflop, double gbytes) {
  std::printf("| %-28s | %-24s | %9.1f | ", name, shape.c_str(), ms * 1e3);
  if (gflop > 0) {
    std::printf("%8.1f TFLOP/s |\n", gflop / ms);
  } else {
    std::printf("%8.0f GB/s    |\n", gbytes / ms * 1e3);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const Timer timer{argc > 1 ? std::atoi(argv[1]) : 20};
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("no CUDA device: %s\n", why.c_str());
    return 1;
  }
  std::printf("device: %s, median of %d runs\n\n", cuda::device_description().c_str(), timer.reps);
  std::printf("| %-28s | %-24s | %9s | %-16s |\n", "kernel", "shape", "time (us)", "rate");
  std::printf("|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(26, '-').c_str(),
              std::string(11, '-').c_str(), std::string(18, '-').c_str());

  const int64_t B = 4, T = 1024, C = 768, H = 12, R = B * T, V = 50257;
  const double f = sizeof(float) * 1e-9;  // GB per fp32 value

  // Dense ops.
  for (auto [in, out, name] : {std::tuple{C, 3 * C, "linear (c_attn)"}, {C, 4 * C, "linear (c_fc)"},
                               {4 * C, C, "linear (c_proj, mlp)"}}) {
    Tensor x = random_gpu({R, in}, 1), w = random_gpu({in, out}, 2), b = random_gpu({out}, 3);
    Tensor y = ops::scratch({R, out}, DType::F32, Device::CUDA);
    const double ms = timer.median_ms([&] { ops::linear(x, w, b, y); });
    row(name, fmt::format("{}x{} . {}x{}", R, in, in, out), ms, 2.0 * R * in * out * 1e-9, 0);
  }
  {
    Tensor h = random_gpu({R, C}, 4), wte = random_gpu({V, C}, 5, -0.1f, 0.1f);
    Tensor logits = ops::scratch({R, V}, DType::F32, Device::CUDA);
    const double ms = timer.median_ms([&] { ops::matmul_nt(h, wte, logits); });
    row("matmul_nt (logits)", fmt::format("{}x{} . {}x{}^T", R, C, V, C), ms, 2.0 * R * C * V * 1e-9, 0);
    const double sm = timer.median_ms([&] { ops::softmax_lastdim(logits); });
    row("softmax_lastdim", fmt::format("{}x{}", R, V), sm, 0, 2.0 * R * V * f);
  }
  {
    Tensor x = random_gpu({R, C}, 6), w = random_gpu({C}, 7), b = random_gpu({C}, 8);
    Tensor y = ops::scratch({R, C}, DType::F32, Device::CUDA);
    row("layer_norm", fmt::format("{}x{}", R, C), timer.median_ms([&] { ops::layer_norm(x, w, b, 1e-5f, y); }), 0,
        2.0 * R * C * f);
    Tensor r = random_gpu({R, C}, 9);
    row("add_inplace", fmt::format("{}x{}", R, C), timer.median_ms([&] { ops::add_inplace(y, r); }), 0,
        3.0 * R * C * f);
    Tensor a = random_gpu({R, 4 * C}, 10, -5.0f, 5.0f);
    row("gelu_new", fmt::format("{}x{}", R, 4 * C), timer.median_ms([&] { ops::gelu_new(a); }), 0,
        2.0 * R * 4 * C * f);
    row("gelu_erf", fmt::format("{}x{}", R, 4 * C), timer.median_ms([&] { ops::gelu_erf(a); }), 0,
        2.0 * R * 4 * C * f);
  }
  {
    std::vector<int32_t> ids(R);
    std::vector<int64_t> pos(R);
    for (int64_t i = 0; i < R; ++i) {
      ids[i] = static_cast<int32_t>((i * 7919) % V);
      pos[i] = i % T;
    }
    const Tensor ids_h = Tensor::from_vector(ids, {R}), pos_h = Tensor::from_vector(pos, {R});
    Tensor wte = random_gpu({V, C}, 11), wpe = random_gpu({1024, C}, 12);
    Tensor out = ops::scratch({R, C}, DType::F32, Device::CUDA);
    row("embedding (host ids)", fmt::format("{} rows x {}", R, C),
        timer.median_ms([&] { ops::embedding(ids_h, pos_h, wte, wpe, out); }), 0, 3.0 * R * C * f);
  }
  {
    Tensor qkv = random_gpu({B, T, 3 * C}, 13, -2.0f, 2.0f);
    Tensor out = ops::scratch({B, T, C}, DType::F32, Device::CUDA);
    const float scale = 1.0f / 8.0f;
    const double ms = timer.median_ms([&] { ops::causal_self_attention(qkv, Tensor(), H, scale, out); });
    // Causal: about half of the T x T scores, two T x T x 64 products per head.
    row("causal_self_attention", fmt::format("B{} T{} H{} hd64", B, T, H), ms, 2.0 * B * H * T * T * 64 * 1e-9, 0);
    Tensor ck = Tensor::empty({B, H, T, 64}, DType::F32, Device::CUDA), cv = ck.clone();
    Tensor prefill_out = ops::scratch({B, T - 1, C}, DType::F32, Device::CUDA);
    Tensor prefill = random_gpu({B, T - 1, 3 * C}, 14, -2.0f, 2.0f);
    ops::causal_self_attention_cached(prefill, ck, cv, 0, Tensor(), H, scale, prefill_out);
    Tensor step = random_gpu({B, 1, 3 * C}, 15, -2.0f, 2.0f), step_out = ops::scratch({B, 1, C}, DType::F32, Device::CUDA);
    const double dms = timer.median_ms(
        [&] { ops::causal_self_attention_cached(step, ck, cv, T - 1, Tensor(), H, scale, step_out); });
    row("attention cached, 1 token", fmt::format("B{} past {} H{}", B, T - 1, H), dms, 0,
        2.0 * B * T * C * f);  // reads the whole K and V caches
  }

  // Quantized-weight decoders: output-write bound (4 bytes out per value).
  for (auto [out, in] : {std::pair{int64_t{3072}, int64_t{768}}, {V, C}}) {
    const int64_t n = out * in;
    std::vector<float> w(static_cast<size_t>(n));
    std::mt19937_64 rng(16);
    for (float& v : w) v = 0.04f * static_cast<float>((rng() >> 40) * 0x1p-24) - 0.02f;
    const quant::Blockwise4Weight q = quant::quantize_4bit(w.data(), out, in, {quant::Code4::nf4, 64, true});
    const Tensor packed = upload(q.packed), codes = upload(q.nested->q), state2 = upload(q.nested->state2);
    Tensor absmax = Tensor::empty({q.num_blocks()}, DType::F32, Device::CUDA);
    Tensor dst = ops::scratch({out, in}, DType::F32, Device::CUDA);
    cuda::Code4Table table{};
    std::copy(quant::code4_table(quant::Code4::nf4).begin(), quant::code4_table(quant::Code4::nf4).end(), table.value);
    cuda::DynamicMapTable map{};
    std::copy(quant::dynamic_map_signed().begin(), quant::dynamic_map_signed().end(), map.value);
    const double ms = timer.median_ms([&] {
      cuda::dequantize_nested_absmax(static_cast<const uint8_t*>(codes.raw()), static_cast<const float*>(state2.raw()),
                                     q.nested->offset, q.nested->n, q.nested->blocksize, map,
                                     static_cast<float*>(absmax.raw()), stream());
      cuda::dequantize_4bit(static_cast<const uint8_t*>(packed.raw()), static_cast<const float*>(absmax.raw()), n, 64,
                            table, static_cast<float*>(dst.raw()), stream());
    });
    row("dequant nf4-dq (bs 64)", fmt::format("{}x{}", out, in), ms, 0, (n * 4.5 + n / 64 * 5) * 1e-9);
    const quant::Int8Weight q8 =
        quant::quantize_int8(w.data(), out, in, quant::Int8Scheme::affine, quant::Int8Granularity::per_channel);
    const Tensor c8 = upload(q8.q), s8 = upload(q8.scale), z8 = upload(q8.zero_point);
    const double ms8 = timer.median_ms([&] {
      cuda::dequantize_int8(static_cast<const int8_t*>(c8.raw()), static_cast<const float*>(s8.raw()),
                            static_cast<const int32_t*>(z8.raw()), out, in, true, static_cast<float*>(dst.raw()),
                            stream());
    });
    row("dequant int8-channel", fmt::format("{}x{}", out, in), ms8, 0, n * 5.0 * 1e-9);
  }
  cuda::synchronize();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpt2q_cuda_timing: error: %s\n", e.what());
  return 1;
}
