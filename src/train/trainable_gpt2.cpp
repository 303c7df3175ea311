// Placeholder so that the train layer links while the implementation is
// written (replaced by the real TrainableGPT2).
#include "train/trainable_gpt2.h"

namespace gpt2q::train {

struct TrainableGPT2::Impl {};

TrainableGPT2::TrainableGPT2(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainableGPT2::TrainableGPT2(TrainableGPT2&&) noexcept = default;
TrainableGPT2& TrainableGPT2::operator=(TrainableGPT2&&) noexcept = default;
TrainableGPT2::~TrainableGPT2() = default;

TrainableGPT2 TrainableGPT2::from_checkpoint(const Checkpoint&, Task, int64_t, uint64_t) { fail("TrainableGPT2: not implemented yet"); }
TrainableGPT2 TrainableGPT2::init(const GPT2Config&, Task, int64_t, uint64_t) { fail("TrainableGPT2: not implemented yet"); }
const GPT2Config& TrainableGPT2::config() const { fail("not implemented"); }
Task TrainableGPT2::task() const { fail("not implemented"); }
ModelKind TrainableGPT2::kind() const { fail("not implemented"); }
int64_t TrainableGPT2::num_labels() const { fail("not implemented"); }
std::vector<Parameter>& TrainableGPT2::parameters() { fail("not implemented"); }
const std::vector<Parameter>& TrainableGPT2::parameters() const { fail("not implemented"); }
void TrainableGPT2::zero_grad() { fail("not implemented"); }
LossValue TrainableGPT2::forward_backward(const TokenBatch&, std::span<const int32_t>, const DropoutContext&, float) { fail("not implemented"); }
LossValue TrainableGPT2::loss(const TokenBatch&, std::span<const int32_t>) const { fail("not implemented"); }
Tensor TrainableGPT2::logits(const TokenBatch&) const { fail("not implemented"); }
std::vector<std::pair<std::string, Tensor>> TrainableGPT2::canonical_tensors() const { fail("not implemented"); }

}  // namespace gpt2q::train
