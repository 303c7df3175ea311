// A training state whose counters this run never passes through is refused
// on --resume with one error naming the file and the field: before, a
// batch_in_epoch past the epoch's end spun forever, step 1e12 reported
// "stopped after 1000000000000 steps of 16", and step -5 or epoch 1e6
// trained and exited 0. States the trainer writes still resume, including
// the final one of a --max-steps run that ends inside an epoch.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "support/test_env.h"
#include "train/trainer.h"

using namespace gpt2q;
using namespace gpt2q::train;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

GPT2Config tiny_config() {
  GPT2Config c;
  c.vocab_size = 64;
  c.n_positions = 32;
  c.n_embd = 32;
  c.n_layer = 1;
  c.n_head = 4;
  c.id2label = {"even", "odd"};
  c.pad_token_id = 0;
  return c;
}

Examples task(size_t n) {
  Examples e;
  for (size_t i = 0; i < n; ++i) {
    Example x;
    x.label = static_cast<int32_t>(i % 2);
    for (size_t t = 0; t < 3 + i % 5; ++t) x.ids.push_back(static_cast<int32_t>(2 + 2 * ((i + t) % 31) + x.label));
    e.items.push_back(std::move(x));
  }
  return e;
}

// 60 examples in batches of 8: 8 steps per epoch, 16 in all.
TrainOptions options() {
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.lr = 1e-3;
  o.seed = 3;
  o.save_every = 1;
  o.progress = false;
  o.settings = {{"test", "resume_state"}};
  return o;
}

TrainSummary run_tiny(const OutputLayout& out, TrainOptions o) {
  auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 5);
  return run_training(model, task(60), {}, o, out, test::gpt2_tokenizer_dir());
}

// Rewrites the state's metadata through `edit`.
void edit_state(const fs::path& path, const std::function<void(json&)>& edit) {
  SafetensorsFile f = SafetensorsFile::open(path);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, t] : f.tensors) tensors.emplace_back(name, t.clone());
  std::map<std::string, std::string> meta = f.metadata;
  json j = json::parse(meta.at("gpt2q_train_state"));
  edit(j);
  meta["gpt2q_train_state"] = j.dump();
  f = SafetensorsFile{};
  write_safetensors(path, tensors, meta);
}

std::string resume_error(const OutputLayout& out) {
  TrainOptions o = options();
  o.resume = true;
  try {
    run_tiny(out, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "(resumed)";
}

class ResumeState : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::gpt2_tokenizer_dir() / "vocab.json"))
      GTEST_SKIP() << test::gpt2_tokenizer_dir() << " is missing";
  }
};

}  // namespace

TEST_F(ResumeState, CountersOutsideTheRunAreRefused) {
  const fs::path dir = test::temp_dir("resume_state");
  const OutputLayout saved{dir / "saved"};
  TrainOptions o = options();
  o.stop_after_steps = 3;  // state at step 3: epoch 0, batch 3
  ASSERT_TRUE(run_tiny(saved, o).stopped);

  struct Case {
    const char* name;
    std::function<void(json&)> edit;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"huge step", [](json& j) { j["step"] = 1'000'000'000'000; },
       "step 1000000000000 is out of range for this run (0..16)"},
      {"negative step", [](json& j) { j["step"] = -5; }, "step -5 is out of range for this run (0..16)"},
      {"float step", [](json& j) { j["step"] = 1e12; }, "step 1000000000000.0 is not an integer"},
      {"string step", [](json& j) { j["step"] = "3"; }, "step \"3\" is not an integer"},
      {"missing step", [](json& j) { j.erase("step"); }, "training state metadata has no 'step'"},
      {"huge epoch", [](json& j) { j["epoch"] = 1'000'000; }, "epoch 1000000 is out of range for this run (0..2)"},
      {"batch past the epoch", [](json& j) { j["batch_in_epoch"] = 8; },
       "batch_in_epoch 8 is out of range for this run (0..7)"},
      {"inconsistent", [](json& j) { j["step"] = 11; },
       "step 11 does not match epoch 0, batch 3 of this run (16 steps, 8 per epoch)"},
      {"best epoch ahead", [](json& j) { j["best_epoch"] = 0; }, "best_epoch 0 is out of range for this run (-1..-1)"},
      {"negative log", [](json& j) { j["log_bytes"] = -1; }, "log_bytes -1 is out of range"},
      {"optimizer steps", [](json& j) { j["optimizer_steps"] = 99; }, "optimizer_steps 99 does not match step 3"},
      {"nan metric", [](json& j) { j["best_metric"] = "nan"; }, "best_metric \"nan\" is not a finite number"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const OutputLayout out{dir / "case"};
    fs::remove_all(out.root);
    fs::copy(saved.root, out.root, fs::copy_options::recursive);
    edit_state(out.state_path(), c.edit);
    const std::string e = resume_error(out);
    EXPECT_EQ(e.rfind(out.state_path().string() + ": ", 0), 0u) << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << e;
  }
  // The untouched state resumes and finishes.
  TrainOptions r = options();
  r.resume = true;
  EXPECT_EQ(run_tiny(saved, r).steps, 16);
  fs::remove_all(dir);
}

TEST_F(ResumeState, FinalStateOfARunEndingInsideAnEpochResumes) {
  const fs::path dir = test::temp_dir("resume_state_final");
  const OutputLayout out{dir / "out"};
  TrainOptions o = options();
  o.max_steps = 11;  // ends 3 batches into epoch 1: the state has epoch 2, batch 0
  EXPECT_EQ(run_tiny(out, o).steps, 11);
  o.resume = true;
  const TrainSummary s = run_tiny(out, o);
  EXPECT_EQ(s.steps, 11);
  EXPECT_EQ(s.steps_run, 0);
  fs::remove_all(dir);
}

// Where a run trained is a resume setting off the CPU ("--device" in the
// settings, as finetune records it): an unfinished GPU run does not go on on
// the CPU (nor the reverse), while a finished one is "nothing to do" on any
// device (a pipeline that trained on the CPU compares on the GPU).
TEST_F(ResumeState, AnUnfinishedRunResumesOnlyOnItsDeviceAFinishedOneAnywhere) {
  const OutputLayout out{test::temp_dir("resume_device")};
  TrainOptions o = options();
  o.settings["--device"] = "cuda";  // as if trained there (the settings are all the state knows)
  o.stop_after_steps = 3;
  run_tiny(out, o);
  EXPECT_NE(resume_error(out).find("--resume with a different --device (state: \"cuda\", now: cpu)"),
            std::string::npos)
      << resume_error(out);
  edit_state(out.state_path(), [](json& j) { j["settings"].erase("--device"); });
  TrainOptions on_gpu = options();
  on_gpu.settings["--device"] = "cuda";
  on_gpu.resume = true;
  try {
    run_tiny(out, on_gpu);
    ADD_FAILURE() << "a CPU run resumed with --device cuda";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different --device"), std::string::npos) << e.what();
  }
  // Finished (on the CPU): resuming with --device cuda has nothing to do.
  EXPECT_EQ(resume_error(out), "(resumed)");
  const TrainSummary done = run_tiny(out, on_gpu);
  EXPECT_EQ(done.steps, 16);
  EXPECT_EQ(done.steps_run, 0);
  fs::remove_all(out.root);
}
