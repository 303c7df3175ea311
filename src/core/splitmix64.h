#pragma once
// splitmix64 (Steele, Lea & Flood 2014, Vigna's constants): the one 64-bit
// mixer behind the synthetic weights, derived seeds and dropout masks. Inline:
// the dropout kernels call it per element.
#include <cstdint>

namespace gpt2q {

inline constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace gpt2q
