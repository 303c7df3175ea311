#pragma once
// Which instruction set a quantized kernel runs with. Every kernel has a
// scalar reference, an AVX2 version (the x86-64-v3 baseline) and an AVX-512
// version (F/BW/VL + VNNI, in *_avx512.cpp, compiled with those flags and only
// called when the CPU has them). Tests run every variant the CPU supports.
#include <vector>

namespace gpt2q::cpu {

enum class Isa { scalar, avx2, avx512 };

Isa best_isa();                     // avx512 when the CPU has F, BW, VL and VNNI, else avx2
std::vector<Isa> available_isas();  // scalar, avx2 and, where supported, avx512
const char* isa_name(Isa isa);
// Throws gpt2q::Error when `isa` is asked for on a CPU without it.
void require_isa(Isa isa);

}  // namespace gpt2q::cpu
