// Kept apart from gpt2.cpp so that code building models in memory
// (make_synthetic_checkpoint) does not pull in the checkpoint reader.
#include "model/gpt2.h"

namespace gpt2q {

std::unique_ptr<GPT2Model> GPT2Model::load(const std::filesystem::path& dir, const Placement& placement) {
  // The fp32 weights stay views of the mapping; their storages keep it alive
  // after the Checkpoint itself is gone.
  return from_checkpoint(Checkpoint::load(dir), placement);
}

}  // namespace gpt2q
