// fuzz_train_state: load_train_state (what `finetune --resume` reads) on an
// arbitrary file: the safetensors container, the gpt2q_train_state metadata
// JSON (version, counters, best metric, settings) and the param/,
// exp_avg/, exp_avg_sq/ tensors against a tiny model. Input: the state file.
// Seeds: generated below with save_train_state itself, then variants of its
// metadata.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "io/safetensors.h"
#include "support/fuzz_support.h"
#include "train/adamw.h"
#include "train/train_state.h"
#include "train/trainable_gpt2.h"

using namespace gpt2q;
using namespace gpt2q::train;
using gpt2q::fuzz::nested;
using nlohmann::json;

namespace {

// The smallest GPT-2 the trainer builds: a state file for it is ~1 KB.
GPT2Config tiny_config() {
  GPT2Config c;
  c.vocab_size = 8;
  c.n_positions = 4;
  c.n_embd = 4;
  c.n_layer = 1;
  c.n_head = 1;
  return c;
}

// The run the seeds' position (step 12 = epoch 1 x 9 + batch 3) belongs to.
constexpr RunLength kRun{27, 9};

const json& settings() {
  static const json s = {{"task", "lm"}, {"seed", 1}, {"lr", 0.001}, {"batch_size", 2}};
  return s;
}

struct Model {
  TrainableGPT2 model = TrainableGPT2::init(tiny_config(), Task::LM, 0, 7);
  AdamW opt{model.parameters(), AdamWOptions{}};
};

Model& model() {
  static Model m;
  return m;
}

// A state file: the tensors save_train_state writes, with `meta` as the
// metadata (save_train_state's own when null).
std::string state_file(const std::filesystem::path& dir, const json* meta, const std::string* raw_meta = nullptr) {
  Model& m = model();
  const auto tmp = dir / ".tmp.safetensors";
  TrainPosition pos;
  pos.step = 12;
  pos.epoch = 1;
  pos.batch_in_epoch = 3;
  pos.best_metric = 0.75;
  pos.best_epoch = 0;
  pos.log_bytes = 4096;
  m.opt.set_steps(pos.step);  // load_train_state wants optimizer_steps == step
  save_train_state(tmp, m.model, m.opt, pos, settings());
  if (meta || raw_meta) {
    SafetensorsFile f = SafetensorsFile::open(tmp);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [name, t] : f.tensors) tensors.emplace_back(name, t.clone());
    const std::string text = raw_meta ? *raw_meta : meta->dump();
    write_safetensors(tmp, tensors, {{"gpt2q_train_state", text}});
  }
  std::string bytes = read_file(tmp);
  std::filesystem::remove(tmp);
  return bytes;
}

void write_seeds(const std::filesystem::path& dir) {
  fuzz::write_seed(dir, "gen-state", state_file(dir, nullptr));
  const json meta = {{"version", 1},     {"step", 12},      {"epoch", 1},
                     {"batch_in_epoch", 3}, {"best_metric", nullptr}, {"best_epoch", -1},
                     {"log_bytes", 0},   {"optimizer_steps", 12}, {"settings", settings()}};
  fuzz::write_seed(dir, "gen-no-best", state_file(dir, &meta));

  auto variant = [&](const std::string& name, const std::function<void(json&)>& edit) {
    json m = meta;
    edit(m);
    fuzz::write_seed(dir, "hostile-" + name, state_file(dir, &m));
  };
  constexpr size_t kDeep = 100'000;
  const json deep = json::parse(nested("[", "]", kDeep / 10));  // deeper ones are raw text below
  variant("no-settings", [](json& m) { m.erase("settings"); });
  variant("settings-not-object", [](json& m) { m["settings"] = 5; });
  variant("version-string", [](json& m) { m["version"] = "1"; });
  variant("version-huge", [](json& m) { m["version"] = 1e300; });
  variant("step-float", [](json& m) { m["step"] = 1.5; });
  variant("log-bytes-negative", [](json& m) { m["log_bytes"] = -1; });
  variant("best-metric-string", [](json& m) { m["best_metric"] = "x"; });
  variant("setting-deep", [&](json& m) { m["settings"]["lr"] = deep; });
  const std::string metas[][2] = {
      {"deep-metadata", nested("[", "]", kDeep)},
      {"deep-settings", R"({"version":1,"step":0,"epoch":0,"batch_in_epoch":0,"best_metric":null,"best_epoch":-1,)"
                        R"("log_bytes":0,"optimizer_steps":0,"settings":{"lr":)" + nested("[", "]", kDeep) + "}}"},
      {"metadata-not-json", "{\"version\":"},
  };
  for (const auto& [name, text] : metas) fuzz::write_seed(dir, "hostile-" + name, state_file(dir, nullptr, &text));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("train_state.safetensors");
  const auto& path = file.set({reinterpret_cast<const char*>(data), size});
  Model& m = model();
  fuzz::expect_only_errors([&] {
    TrainPosition pos = load_train_state(path, m.model, m.opt, settings(), kRun);
    (void)pos;
  });
  return 0;
}
