#pragma once
// bitsandbytes' double quantization of 4-bit block scales
// (functional.py quantize_4bit with compress_statistics=True):
//   offset   = mean(absmax)
//   r        = absmax - offset                       (fp32)
//   state2_b = max |r| over nested block b (256 values)
//   q_i      = nearest entry of create_dynamic_map(signed=True) to r_i · (1 / state2_b)
//   absmax_i ≈ map[q_i] · state2_{i / 256} + offset
// Rounding follows the CUDA kernel (dQuantize in kQuantizeBlockwise): nearest
// map entry, a value exactly between two entries takes the even index.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gpt2q::quant {

inline constexpr int64_t kNestedBlocksize = 256;

// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256
// sorted fp32 values from -0.99297 to 1.0, built the way bitsandbytes builds it.
const std::array<float, 256>& dynamic_map_signed();

// Index of the map entry nearest to `v` (ties to the even index; NaN -> 0).
uint8_t quantize_dynamic(float v);

struct DoubleQuantAbsmax {
  int64_t n = 0;                        // number of absmax values
  int64_t blocksize = kNestedBlocksize;
  float offset = 0.0f;
  std::vector<uint8_t> q;               // [n]
  std::vector<float> state2;            // [ceil(n / blocksize)]
  // Bytes held: codes + nested scales + the offset (the map is shared).
  size_t bytes() const;
  float absmax(int64_t i) const;        // map[q_i] · state2 + offset
};

// offset = mean(absmax), computed in double and rounded to fp32 (bnb takes
// torch's fp32 mean, whose summation order differs by device: ±1 ulp).
DoubleQuantAbsmax double_quantize(const float* absmax, int64_t n, int64_t blocksize = kNestedBlocksize);
// The same with a given offset (to reproduce bnb bit for bit from its offset).
DoubleQuantAbsmax double_quantize_with_offset(const float* absmax, int64_t n, float offset,
                                              int64_t blocksize = kNestedBlocksize);
void double_dequantize(const DoubleQuantAbsmax& d, float* absmax);

}  // namespace gpt2q::quant
