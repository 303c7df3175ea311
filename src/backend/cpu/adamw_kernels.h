#pragma once
// AdamW on the CPU (backend/adamw_args.h): one pass over the elements, 8 at
// a time (AVX2, the build's baseline ISA), on the calling thread. Every
// vector op is an IEEE-rounded one of the scalar formula's (vfmadd for
// std::fma, vsqrtps, vdivps; no reciprocal approximations, no
// reassociation), so the result equals the reference bit for bit.
#include "backend/adamw_args.h"

namespace gpt2q::cpu {

void adamw_update(const backend::AdamWArgs& a);

namespace reference {
// The formula element by element, the weight decay as a separate pass first
// (as torch does).
void adamw_update(const backend::AdamWArgs& a);
}  // namespace reference

}  // namespace gpt2q::cpu
