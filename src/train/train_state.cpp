#include "train/train_state.h"

#include <cstring>

#include "core/error.h"
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
  std::memcpy(into.raw(), t.raw(), t.nbytes());
}

}  // namespace

void save_train_state(const std::filesystem::path& path, const TrainableGPT2& model, const AdamW& opt,
                      const TrainPosition& pos, const nlohmann::json& settings) {
  const auto& params = model.parameters();
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.reserve(3 * params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    tensors.emplace_back("param/" + params[i].name, params[i].value);
    tensors.emplace_back("exp_avg/" + params[i].name, opt.exp_avg()[i]);
    tensors.emplace_back("exp_avg_sq/" + params[i].name, opt.exp_avg_sq()[i]);
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
                               const nlohmann::json& settings) {
  if (!std::filesystem::exists(path)) fail("{}: no training state to resume from", path.string());
  const auto f = SafetensorsFile::open(path);
  auto it = f.metadata.find(kMetaKey);
  if (it == f.metadata.end()) fail("{}: not a gpt2q training state", path.string());
  nlohmann::json meta;
  TrainPosition pos;
  try {
    meta = nlohmann::json::parse(it->second);
    if (meta.at("version").get<int>() != kVersion)
      fail("{}: training state version {} (this gpt2q reads {})", path.string(), meta.at("version").dump(), kVersion);
    pos.step = meta.at("step").get<int64_t>();
    pos.epoch = meta.at("epoch").get<int64_t>();
    pos.batch_in_epoch = meta.at("batch_in_epoch").get<int64_t>();
    if (!meta.at("best_metric").is_null()) pos.best_metric = meta.at("best_metric").get<double>();
    pos.best_epoch = meta.at("best_epoch").get<int64_t>();
    pos.log_bytes = meta.at("log_bytes").get<uint64_t>();
    opt.set_steps(meta.at("optimizer_steps").get<int64_t>());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed training state metadata ({})", path.string(), e.what());
  }
  const auto& saved = meta.at("settings");
  for (auto& [key, value] : settings.items()) {
    if (!saved.contains(key) || saved.at(key) != value)
      fail("{}: --resume with a different {} (state: {}, now: {}); resume with the original arguments", path.string(),
           key, saved.contains(key) ? saved.at(key).dump() : "absent", value.dump());
  }
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
