// `gpt2q init`: writes a fresh GPT-2 checkpoint with gpt2q's deterministic
// synthetic weights (model/synthetic_weights.h). With no pretrained weights at
// hand it gives the main job and tests a real HF-format model of any geometry;
// transformers loads it as GPT2LMHeadModel or GPT2ForSequenceClassification.
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "model/synthetic_weights.h"

namespace {

struct InitArgs {
  std::string geometry = "124m", task = "lm", labels = "World,Sports,Business,Sci/Tech", out;
  uint64_t seed = 1234;
  int64_t n_positions = 1024;
  bool json = false;
};

void run_init(const InitArgs& a) {
  using namespace gpt2q;
  GPT2Config cfg = geometry_config(a.geometry, "--geometry");
  if (a.n_positions < 1) fail("--n-positions: must be at least 1, got {}", a.n_positions);
  cfg.n_positions = a.n_positions;
  ModelKind kind;
  if (a.task == "lm") {
    kind = ModelKind::CausalLM;
  } else if (a.task == "classify") {
    kind = ModelKind::SequenceClassification;
    cfg.id2label = gpt2q::split_label_names(a.labels);
    cfg.pad_token_id = cfg.eos_token_id;  // GPT-2 has no pad token; HF fine-tuning recipes use eos
  } else {
    fail("--task: expected lm or classify, got '{}'", a.task);
  }
  Checkpoint ck = make_synthetic_checkpoint(cfg, kind, a.seed);
  std::vector<std::pair<std::string, Tensor>> tensors(ck.tensors.begin(), ck.tensors.end());
  save_checkpoint(a.out, cfg, kind, tensors);
  int64_t params = 0;
  for (auto& [name, t] : tensors) params += t.numel();
  if (a.json) {
    cli::print_json({{"out", a.out}, {"architecture", architecture_name(kind)}, {"parameters", params},
                     {"seed", a.seed}});
  } else {
    fmt::print("wrote {} ({}, {} parameters, seed {})\n", a.out, architecture_name(kind), params, a.seed);
  }
}

}  // namespace

GPT2Q_COMMAND(init) {
  auto args = std::make_shared<InitArgs>();
  auto* cmd = app.add_subcommand("init", "Write a new GPT-2 checkpoint with deterministic synthetic weights");
  cmd->add_option("--geometry", args->geometry, "124m, or WIDTHxLAYERSxHEADS (vocab 50257)")->capture_default_str();
  cmd->add_option("--task", args->task, "lm or classify")->capture_default_str();
  cmd->add_option("--labels", args->labels, "classifier labels, comma-separated")->capture_default_str();
  cmd->add_option("--n-positions", args->n_positions, "context length")->capture_default_str();
  cmd->add_option("--seed", args->seed, "weight seed")->capture_default_str();
  cmd->add_option("--out", args->out, "output checkpoint directory")->required();
  cmd->add_flag("--json", args->json, "print one JSON object");
  cmd->callback([args] { run_init(*args); });
}
