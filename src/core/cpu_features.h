#pragma once
// What the CPU can do, read once at start-up. Kernels with AVX-512 / VNNI
// variants pick them at run time, so one binary runs on any AVX2 machine.
#include <string>

namespace gpt2q {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;  // vdpbf16ps (Cooper Lake, Sapphire Rapids, Zen 4)
  bool avx512_ok() const { return avx512f && avx512bw && avx512vl; }
  bool vnni_ok() const { return avx512_ok() && avx512vnni; }
};

const CpuFeatures& cpu_features();
std::string cpu_model_name();     // from /proc/cpuinfo, or "unknown"
std::string cpu_features_str();   // "avx2 fma avx512f ..."
int num_threads();                // OpenMP threads in use

}  // namespace gpt2q
