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
  // The model whose weights are `params` themselves (it sees every in-place
  // update, GPT2Model::over_tensors): the forward of every pass, training
  // (forward_traced) and evaluation (hidden_states) alike.
  std::unique_ptr<GPT2Model> view_model;
  Device device = Device::CPU;
  TrainPrecision precision = TrainPrecision::fp32;
  Tensor values, grads;  // the flat buffers (FlatLayout)
  FlatLayout layout;
  std::vector<backend::GradSegment> segments;  // params order

  // Moves the parameters (host tensors, complete) into flat buffers on
  // `device`, finds them by name and builds view_model over them.
  void link(Device device);
  ModelKind kind() const { return task == Task::Classify ? ModelKind::SequenceClassification : ModelKind::CausalLM; }
  const Tensor& value(size_t i) const { return params[i].value; }
  Tensor& grad(size_t i) { return params[i].grad; }
};

struct TrainableGPT2::Impl : ModelState {};

}  // namespace gpt2q::train
