#pragma once
// TrainableGPT2's state, shared by its construction (trainable_gpt2.cpp) and
// its forward / backward pass (train_pass.cpp). Internal to src/train.
#include <memory>
#include <vector>

#include "train/trainable_gpt2.h"

namespace gpt2q::train {

// Indices into Impl::params of one block's parameters.
struct BlockParams {
  size_t ln_1_w, ln_1_b, c_attn_w, c_attn_b, attn_proj_w, attn_proj_b, ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w,
      mlp_proj_b;
};

// The state behind TrainableGPT2::Impl (a plain struct, so that the free
// functions of src/train can take it).
struct ModelState {
  GPT2Config config;
  Task task = Task::LM;
  int64_t num_labels = 0;
  bool gelu_exact = false;
  std::vector<Parameter> params;  // HF named_parameters order
  size_t wte = 0, wpe = 0, ln_f_w = 0, ln_f_b = 0, score = 0;
  std::vector<BlockParams> blocks;
  // An inference model whose weights are views of `params` (it sees every
  // in-place update): evaluation, and the pooled-position rule.
  std::unique_ptr<GPT2Model> view_model;

  // Finds the parameters by name and builds view_model; params must be complete.
  void link();
  ModelKind kind() const { return task == Task::Classify ? ModelKind::SequenceClassification : ModelKind::CausalLM; }
  const Tensor& value(size_t i) const { return params[i].value; }
  Tensor& grad(size_t i) { return params[i].grad; }
};

struct TrainableGPT2::Impl : ModelState {};

}  // namespace gpt2q::train
