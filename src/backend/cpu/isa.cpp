#include "backend/cpu/isa.h"

#include "core/cpu_features.h"
#include "core/error.h"

namespace gpt2q::cpu {

Isa best_isa() { return cpu_features().vnni_ok() ? Isa::avx512 : Isa::avx2; }

std::vector<Isa> available_isas() {
  std::vector<Isa> isas{Isa::scalar, Isa::avx2};
  if (cpu_features().vnni_ok()) isas.push_back(Isa::avx512);
  return isas;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

void require_isa(Isa isa) {
  if (isa == Isa::avx512 && !cpu_features().vnni_ok())
    fail("quantized kernel: avx512 (F/BW/VL/VNNI) requested but this CPU has only: {}", cpu_features_str());
}

}  // namespace gpt2q::cpu
