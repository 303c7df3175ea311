#include "train/train_state.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/device_memory.h"
#include "core/error.h"
#include "core/json_read.h"
#include "io/safetensors.h"

namespace gpt2q::train {

namespace {

constexpr const char* kMetaKey = "gpt2q_train_state";
constexpr int kVersion = 1;

void restore(const SafetensorsFile& f, const std::string& name, Tensor& into) {
  auto it = f.tensors.find(name);
  if (it == f.tensors.end()) fail("{}: missing tensor {}", f.path.string(), name);
  const Tensor& t = it->second;
  if (t.dtype() != DType::F32 || t.shape() != into.shape())
    fail("{}: {} is {} {}, the model needs F32 {}", f.path.string(), name, dtype_name(t.dtype()), shape_str(t.shape()),
         shape_str(into.shape()));
  copy_bytes(into.raw(), into.device(), t.raw(), Device::CPU, t.nbytes());
}

// An integer field of the metadata (a JSON integer, not 1e12 or "5").
int64_t int_field(const nlohmann::json& meta, const char* key, const std::string& file) {
  auto it = meta.find(key);
  if (it == meta.end()) fail("{}: training state metadata has no '{}'", file, key);
  if (!it->is_number_integer() || (it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX))
    fail("{}: {} {} is not an integer", file, key, json_brief(*it));
  return it->get<int64_t>();
}

int64_t int_in_range(const nlohmann::json& meta, const char* key, int64_t lo, int64_t hi, const std::string& file) {
  const int64_t v = int_field(meta, key, file);
  if (v < lo || v > hi) fail("{}: {} {} is out of range for this run ({}..{})", file, key, v, lo, hi);
  return v;
}

// The counters, checked against what the trainer writes: a state saved
// mid-epoch has step == epoch * steps_per_epoch + batch_in_epoch with
// batch_in_epoch < steps_per_epoch; one saved at an epoch's end has
// batch_in_epoch 0, and when it ends the run (step == total_steps, which
// can fall inside an epoch under --max-steps) epoch is the number of epochs
// begun. Anything else is no state of this run: resuming from it would spin
// (batch_in_epoch past the epoch's end), run backwards, or report nonsense.
TrainPosition read_position(const nlohmann::json& meta, const std::string& file, const RunLength& run) {
  GPT2Q_CHECK(run.steps_per_epoch > 0 && run.total_steps > 0, "run of {} steps, {} per epoch", run.total_steps,
              run.steps_per_epoch);
  const int64_t per_epoch = run.steps_per_epoch, total = run.total_steps;
  const int64_t epochs = (total + per_epoch - 1) / per_epoch;  // begun by the end
  TrainPosition pos;
  pos.step = int_in_range(meta, "step", 0, total, file);
  pos.epoch = int_in_range(meta, "epoch", 0, epochs, file);
  pos.batch_in_epoch = int_in_range(meta, "batch_in_epoch", 0, per_epoch - 1, file);
  const bool consistent = pos.step == total ? pos.batch_in_epoch == 0 && pos.epoch == epochs
                                            : pos.step == pos.epoch * per_epoch + pos.batch_in_epoch;
  if (!consistent)
    fail("{}: step {} does not match epoch {}, batch {} of this run ({} steps, {} per epoch)", file, pos.step,
         pos.epoch, pos.batch_in_epoch, total, per_epoch);
  // best_epoch is set at an epoch's end, before epoch moves on.
  pos.best_epoch = int_in_range(meta, "best_epoch", -1, pos.epoch - 1, file);
  auto bm = meta.find("best_metric");
  if (bm != meta.end() && !bm->is_null()) {
    if (!bm->is_number() || !std::isfinite(bm->get<double>()))
      fail("{}: best_metric {} is not a finite number", file, json_brief(*bm));
    pos.best_metric = bm->get<double>();
  }
  // TrainingLog checks it against the log's length.
  pos.log_bytes = static_cast<uint64_t>(int_in_range(meta, "log_bytes", 0, INT64_MAX, file));
  if (const int64_t s = int_field(meta, "optimizer_steps", file); s != pos.step)
    fail("{}: optimizer_steps {} does not match step {}", file, s, pos.step);
  return pos;
}

}  // namespace

void save_train_state(const std::filesystem::path& path, const TrainableGPT2& model, const AdamW& opt,
                      const TrainPosition& pos, const nlohmann::json& settings) {
  const auto& params = model.parameters();
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.reserve(3 * params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    // Views on the CPU; copies from a device.
    tensors.emplace_back("param/" + params[i].name, to_device(params[i].value, Device::CPU));
    tensors.emplace_back("exp_avg/" + params[i].name, to_device(opt.exp_avg()[i], Device::CPU));
    tensors.emplace_back("exp_avg_sq/" + params[i].name, to_device(opt.exp_avg_sq()[i], Device::CPU));
  }
  nlohmann::json meta = {{"version", kVersion},
                         {"step", pos.step},
                         {"epoch", pos.epoch},
                         {"batch_in_epoch", pos.batch_in_epoch},
                         {"best_metric", pos.best_metric ? nlohmann::json(*pos.best_metric) : nlohmann::json()},
                         {"best_epoch", pos.best_epoch},
                         {"log_bytes", pos.log_bytes},
                         {"optimizer_steps", opt.steps()},
                         {"settings", settings}};
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) fail("{}: cannot create directory ({})", path.parent_path().string(), ec.message());
  write_safetensors(path, tensors, {{kMetaKey, meta.dump()}});
}

TrainPosition load_train_state(const std::filesystem::path& path, TrainableGPT2& model, AdamW& opt,
                               const nlohmann::json& settings, const RunLength& run) {
  if (!std::filesystem::exists(path)) fail("{}: no training state to resume from", path.string());
  const auto f = SafetensorsFile::open(path);
  auto it = f.metadata.find(kMetaKey);
  if (it == f.metadata.end()) fail("{}: not a gpt2q training state", path.string());
  const std::string file = path.string();
  const nlohmann::json meta = parse_json(it->second, file + ": metadata " + kMetaKey);
  if (!meta.is_object()) fail("{}: metadata {} is not a JSON object", file, kMetaKey);
  if (const int64_t v = int_field(meta, "version", file); v != kVersion)
    fail("{}: training state version {} (this gpt2q reads {})", file, v, kVersion);
  // Settings first: other --epochs or data also move the position's bounds,
  // and naming the argument is the better message.
  static const nlohmann::json kNone;
  const nlohmann::json& saved = meta.contains("settings") ? meta["settings"] : kNone;
  // A finished run resumes as nothing to do on any device: where it trained
  // changes no result that is left to compute.
  const bool finished = meta.contains("step") && meta["step"].is_number_integer() &&
                        meta["step"].get<int64_t>() >= run.total_steps;
  for (auto& [key, value] : settings.items()) {
    if (finished && (key == "--device" || key == "--precision")) continue;
    if (!saved.is_object() || !saved.contains(key) || saved.at(key) != value)
      fail("{}: --resume with a different {} (state: {}, now: {}); resume with the original arguments", file, key,
           saved.is_object() && saved.contains(key) ? json_brief(saved.at(key)) : "absent", json_brief(value));
  }
  // The device is recorded only off the CPU and the precision only when
  // bf16, so a state from a GPU resumed on the CPU (or bf16 as fp32) shows as
  // a key the state has and the settings lack.
  for (const char* key : {"--device", "--precision"})
    if (!finished && saved.is_object() && saved.contains(key) && !settings.contains(key))
      fail("{}: --resume with a different {} (state: {}, now: {}); resume with the original arguments", file, key,
           json_brief(saved.at(key)), std::string_view(key) == "--device" ? "cpu" : "fp32");
  const TrainPosition pos = read_position(meta, file, run);
  opt.set_steps(pos.step);
  auto& params = model.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    restore(f, "param/" + params[i].name, params[i].value);
    restore(f, "exp_avg/" + params[i].name, opt.exp_avg()[i]);
    restore(f, "exp_avg_sq/" + params[i].name, opt.exp_avg_sq()[i]);
  }
  if (f.tensors.size() != 3 * params.size())
    fail("{}: holds {} tensors, the model has {} parameters (x3 expected)", path.string(), f.tensors.size(),
         params.size());
  return pos;
}

}  // namespace gpt2q::train
