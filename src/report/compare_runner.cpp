#include "report/compare_runner.h"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <memory>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "core/cpu_features.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "eval/tokenizer_lookup.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "model/gpt2.h"
#include "quant/quant_config.h"
#include "report/findings.h"
#include "report/report_html.h"
#include "report/report_markdown.h"
#include "text/tokenizer.h"

namespace gpt2q::report {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// FNV-1a 64 of a file's bytes, as hex: enough to notice that an input changed.
std::string content_hash(const fs::path& p) {
  const std::string bytes = read_file(p);
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

// What identifies a checkpoint dir's contents cheaply: config.json's bytes,
// the safetensors files' sizes and modification times.
json checkpoint_identity(const Checkpoint& ck) {
  json files = json::array();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ck.dir, ec)) {
    if (e.path().extension() != ".safetensors" && e.path().extension() != ".json") continue;
    files.push_back({{"name", e.path().filename().string()},
                     {"size", e.file_size(ec)},
                     {"mtime", e.last_write_time(ec).time_since_epoch().count()}});
  }
  std::sort(files.begin(), files.end());
  return {{"dir", fs::absolute(ck.dir).lexically_normal().string()},
          {"config", content_hash(ck.dir / "config.json")},
          {"files", files}};
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string format_name(DataFormat f) {
  return f == DataFormat::AgNews ? "agnews" : f == DataFormat::Csv ? "csv" : "jsonl";
}

// A variant ready to run: where its weights come from.
struct PreparedSpec {
  VariantSpec spec;
  std::optional<Checkpoint> ready;  // ready-made (from @DIR or the model dir itself)
};

void check_same_model(const Checkpoint& ready, const Checkpoint& source, const std::string& what) {
  const auto &a = ready.config, &b = source.config;
  if (a.vocab_size != b.vocab_size || a.n_embd != b.n_embd || a.n_layer != b.n_layer || a.n_head != b.n_head ||
      a.n_positions != b.n_positions || ready.kind != source.kind || a.num_labels() != b.num_labels())
    fail("{}: {} has another geometry or head than {} ({} vs {})", ready.dir.string(), what, source.dir.string(),
         architecture_name(ready.kind), architecture_name(source.kind));
}

std::string stored_dtype(const Checkpoint& ck) { return ck.config.dtype; }

std::vector<PreparedSpec> prepare_specs(const CompareOptions& o, const Checkpoint& source) {
  std::vector<VariantSpec> specs;
  if (o.variants)
    specs = parse_variant_list(*o.variants);
  else if (source.quantized())
    specs = parse_variant_list(variant_name_for(source.quantization_config, stored_dtype(source)));
  else
    specs = parse_variant_list(kDefaultVariants);
  std::vector<PreparedSpec> out;
  for (auto& s : specs) {
    PreparedSpec p{s, std::nullopt};
    if (s.ready_dir) {
      Checkpoint ck = Checkpoint::load(*s.ready_dir);
      if (auto why = ready_made_mismatch(s, ck.quantization_config, stored_dtype(ck)); !why.empty())
        fail("{}: {} (variant {})", s.ready_dir->string(), why, s.name);
      check_same_model(ck, source, "the ready-made variant " + s.name);
      p.ready = std::move(ck);
    } else if (source.quantized()) {
      if (auto why = ready_made_mismatch(s, source.quantization_config, stored_dtype(source)); !why.empty())
        fail("{}: the checkpoint is already quantized and {}; variant {} needs the original weights (give it as "
             "{}@DIR)",
             o.model.string(), why, s.name, s.name);
      p.ready = source;
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::string describe(const PreparedSpec& p, const Checkpoint& ck) {
  const auto& s = p.spec;
  std::string d;
  if (ck.quantized()) {
    d = quant::QuantizationConfig::from_json(ck.quantization_config, ck.dir.string()).describe();
    d += fmt::format(", {} weights quantized", ck.quantized_weights.size());
    if (s.mlp_only) d += " (MLP only)";
    if (s.attn_only) d += " (attention only)";
    if (s.options.all_tensors) d += " (embeddings and head included)";
  } else if (s.options.method == "fp32") {
    d = fmt::format("checkpoint as stored ({}), computed in fp32", ck.config.dtype);
  } else {
    d = fmt::format("every tensor cast to {} and held so (biases, LayerNorms in fp32), computed in fp32",
                    s.options.method);
  }
  if (p.ready) d += ", ready-made";
  return d;
}

struct Inputs {
  Checkpoint source;
  Task task = Task::Classification;
  std::vector<PreparedSpec> specs;
  std::vector<std::vector<int32_t>> sequences;  // classification
  std::vector<int32_t> ids;                     // LM text
  RunInfo run;
  json fingerprint;
};

Inputs load_inputs(const CompareOptions& o) {
  if (o.batch_size < 1) fail("--batch-size {}: must be at least 1", o.batch_size);
  if (o.limit < 0) fail("--limit {}: must be at least 0 (0 = all samples)", o.limit);
  if (o.max_length && *o.max_length < 1) fail("--max-length {}: must be at least 1", *o.max_length);
  if (o.stride && *o.stride < 1) fail("--stride {}: must be at least 1", *o.stride);
  if (o.out.empty()) fail("--out: no directory given");
  std::error_code ec;
  if (fs::exists(o.out, ec) && !fs::is_directory(o.out, ec))
    fail("{}: exists and is not a directory", o.out.string());
  Inputs in;
  in.source = Checkpoint::load(o.model);
  if (in.source.kind == ModelKind::Base)
    fail("{}: a GPT2Model has no head; compare needs GPT2ForSequenceClassification or GPT2LMHeadModel",
         o.model.string());
  in.task = in.source.kind == ModelKind::SequenceClassification ? Task::Classification : Task::LanguageModeling;
  const auto& cfg = in.source.config;
  RunInfo& ri = in.run;
  ri.task = in.task;
  ri.model = o.model.string();
  ri.batch_size = o.batch_size;
  ri.limit = o.limit;
  in.specs = prepare_specs(o, in.source);
  const auto tokenizer = load_tokenizer_for(o.model, o.tokenizer);
  if (tokenizer.vocab_size() > cfg.vocab_size)
    fail("{}: the tokenizer has {} tokens but the model's vocab_size is {}", o.model.string(), tokenizer.vocab_size(),
         cfg.vocab_size);
  ri.blas = cpu::blas_description();  // timings (and bits) depend on the BLAS kernels
  json fp = {{"gpt2q_version", GPT2Q_VERSION},
             {"model", checkpoint_identity(in.source)},
             {"batch_size", o.batch_size},
             {"limit", o.limit},
             {"threads", num_threads()},
             {"blas", ri.blas},
             {"tokenizer", o.tokenizer ? o.tokenizer->string() : ""}};
  if (in.task == Task::Classification) {
    if (!o.data) fail("{} is a classifier: give --data FILE", o.model.string());
    if (o.text) fail("--text: {} is a classifier; perplexity needs a GPT2LMHeadModel", o.model.string());
    if (o.stride) fail("--stride applies to language models (--text) only");
    ri.max_length = o.max_length.value_or(std::min<int64_t>(128, cfg.n_positions));
    if (ri.max_length > cfg.n_positions)
      fail("--max-length {}: must be in [1, {}] (the model's n_positions)", ri.max_length, cfg.n_positions);
    const DataFormat format = o.format ? parse_data_format(*o.format) : guess_data_format(*o.data);
    Dataset data = load_dataset(*o.data, format);
    if (o.limit > 0 && static_cast<size_t>(o.limit) < data.rows.size()) data.rows.resize(static_cast<size_t>(o.limit));
    if (data.rows.empty()) fail("{}: no samples", o.data->string());
    const int64_t K = cfg.num_labels();
    for (size_t i = 0; i < data.rows.size(); ++i) {
      const int32_t y = data.rows[i].label;
      if (y < 0 || y >= K)
        fail("{}: row {}: label {} is outside the model's {} classes [0, {})", o.data->string(), i + 1, y, K, K);
      ri.labels.push_back(y);
    }
    in.sequences = tokenize_for_classification(tokenizer, data, ri.max_length);
    ri.data = o.data->string();
    ri.format = format_name(format);
    ri.samples = static_cast<int64_t>(data.rows.size());
    ri.class_names = class_names(cfg, K);
    fp["data"] = {{"path", fs::absolute(*o.data).lexically_normal().string()}, {"hash", content_hash(*o.data)},
                  {"format", ri.format}, {"max_length", ri.max_length}};
  } else {
    if (!o.text) fail("{} is a language model: give --text FILE (perplexity and KL are measured on it)",
                      o.model.string());
    if (o.data) fail("--data: {} is a {}, not a classifier", o.model.string(), architecture_name(in.source.kind));
    ri.max_length = o.max_length.value_or(cfg.n_positions);
    if (ri.max_length > cfg.n_positions)
      fail("--max-length {}: must be in [1, {}] (the model's n_positions)", ri.max_length, cfg.n_positions);
    ri.stride = o.stride.value_or(std::max<int64_t>(1, ri.max_length / 2));
    if (ri.stride > ri.max_length) fail("--stride {}: must be in [1, {}] (the max length)", ri.stride, ri.max_length);
    in.ids = tokenizer.encode(read_text_file(*o.text), o.text->string());
    if (in.ids.size() < 2) fail("{}: {} token(s); at least 2 are needed", o.text->string(), in.ids.size());
    if (o.limit > 0 && static_cast<size_t>(o.limit) < in.ids.size()) in.ids.resize(static_cast<size_t>(o.limit));
    ri.text = o.text->string();
    ri.samples = static_cast<int64_t>(in.ids.size());
    // LM KL is measured against the baseline while each variant runs.
    fp["text"] = {{"path", fs::absolute(*o.text).lexically_normal().string()}, {"hash", content_hash(*o.text)},
                  {"max_length", ri.max_length}, {"stride", ri.stride}, {"baseline", in.specs.front().spec.name}};
  }
  in.fingerprint = fp;
  ri.gpt2q_version = GPT2Q_VERSION;
  ri.git_commit = build_git_commit();
  ri.date_utc = utc_now();
  ri.command = o.command_line;
  ri.host = host_name();
  ri.cpu = cpu_model_name();
  ri.cpu_features = cpu_features_str();
  ri.threads = num_threads();
  ri.device = o.device_description;
  return in;
}

// The model of one variant, and how long it took to get it.
// Where a variant runs: the CPU, or the GPU with the compute dtype the
// options name, else the variant's own (bf16 for :bf16-compute).
Placement placement_of(const CompareOptions& o, const PreparedSpec& p) {
  Placement pl;
  pl.device = o.device;
  if (o.device != Device::CPU) pl.compute = o.compute.value_or(p.spec.options.compute_dtype);
  return pl;
}

std::unique_ptr<GPT2Model> build_model(const PreparedSpec& p, const Checkpoint& source, const Placement& placement,
                                       std::string& description, double& seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<GPT2Model> model;
  if (p.ready) {
    model = GPT2Model::from_checkpoint(*p.ready, placement);
    description = describe(p, *p.ready);
  } else if (p.spec.is_identity()) {
    model = GPT2Model::from_checkpoint(source, placement);
    description = describe(p, source);
  } else {
    const auto q = quant::quantize_checkpoint(source, p.spec.options);
    model = GPT2Model::from_checkpoint(q.checkpoint, placement);
    description = describe(p, q.checkpoint);
  }
  if (placement.device != Device::CPU) description += fmt::format("; run on {}", placement.describe());
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return model;
}

VariantMeasurement measure(const Inputs& in, const GPT2Model& model, const GPT2Model* baseline, size_t index) {
  VariantMeasurement m;
  m.weight_bytes = model.total_weight_bytes();
  m.components = model.weight_bytes();
  const std::string label = fmt::format("[{}/{}] {}", index + 1, in.specs.size(), in.specs[index].spec.name);
  if (in.task == Task::Classification) {
    ClassifyOptions co;
    co.max_length = in.run.max_length;
    co.batch_size = in.run.batch_size;
    co.progress_label = label;
    ClassifyResult r = classify_tokens(model, in.sequences, co);
    m.predictions = std::move(r.predictions);
    m.logits = std::move(r.logits);
    m.num_labels = r.num_labels;
    m.latency = r.latency;
    return m;
  }
  PerplexityOptions po;
  po.max_length = in.run.max_length;
  po.stride = in.run.stride;
  m.perplexity = evaluate_perplexity(model, in.ids, po);
  // Warm-up, then KL against the baseline with the candidate's windows timed.
  TokenBatch warm;
  warm.batch = 1;
  warm.seq = std::min<int64_t>(in.run.max_length, static_cast<int64_t>(in.ids.size()));
  warm.ids.assign(in.ids.begin(), in.ids.begin() + warm.seq);
  model.lm_logits(warm);
  std::vector<double> seconds;
  const auto d = text_divergences(baseline ? *baseline : model, model, in.ids, in.run.max_length, in.run.stride,
                                  &seconds);
  m.lm_divergence = summarize_divergences(d);
  std::vector<double> nll_base, nll_cand;
  for (const auto& x : d) {
    nll_base.push_back(x.nll_ref);
    nll_cand.push_back(x.nll_cand);
  }
  m.lm_nll_difference = paired_difference(nll_base, nll_cand);
  m.latency = summarize_latency(seconds, std::vector<int64_t>(seconds.size(), 1));  // a window is the unit
  return m;
}

}  // namespace

CompareResults run_compare(const CompareOptions& o) {
  Inputs in = load_inputs(o);  // every check before OUT exists
  const fs::path cache_dir = o.out / "variants";
  make_directories(cache_dir);

  CompareResults res;
  res.run = in.run;
  std::unique_ptr<GPT2Model> baseline;  // LM runs: KL reference for the variants run now
  for (size_t i = 0; i < in.specs.size(); ++i) {
    const PreparedSpec& p = in.specs[i];
    const fs::path cache = cache_dir / (p.spec.file_name() + ".json");
    json fp = in.fingerprint;
    fp["variant"] = p.spec.name;
    fp["placement"] = placement_of(o, p).describe();
    fp["ready_dir"] = p.spec.ready_dir ? fs::absolute(*p.spec.ready_dir).lexically_normal().string() : "";
    if (!o.force && fs::exists(cache)) {
      try {
        const json j = read_json_file(cache, kConfigFileLimit);
        if (j.at("fingerprint") == fp) {
          VariantMeasurement m = measurement_from_json(j.at("measurement"));
          m.reused = true;
          fmt::print(stderr, "[{}/{}] {}: reusing {}\n", i + 1, in.specs.size(), p.spec.name, cache.string());
          res.variants.push_back(std::move(m));
          continue;
        }
      } catch (const std::exception& e) {
        fmt::print(stderr, "[{}/{}] {}: ignoring {} ({})\n", i + 1, in.specs.size(), p.spec.name, cache.string(),
                   e.what());
      }
    }
    fmt::print(stderr, "[{}/{}] {}: {}\n", i + 1, in.specs.size(), p.spec.name,
               p.ready ? "loading" : p.spec.is_identity() ? "loading" : "quantizing");
    std::string description;
    double seconds = 0;
    auto model = build_model(p, in.source, placement_of(o, p), description, seconds);
    if (in.task == Task::LanguageModeling && i > 0 && !baseline) {
      std::string d;
      double s = 0;
      baseline = build_model(in.specs.front(), in.source, placement_of(o, in.specs.front()), d, s);
    }
    VariantMeasurement m = measure(in, *model, i == 0 ? nullptr : baseline.get(), i);
    m.name = p.spec.name;
    m.description = description;
    m.source = p.ready ? "ready-made: " + p.ready->dir.string()
                       : p.spec.is_identity() ? "checkpoint" : "quantized in memory";
    m.prepare_seconds = seconds;
    write_file_atomic(cache, json{{"fingerprint", fp}, {"measurement", measurement_to_json(m)}}.dump() + "\n");
    if (i == 0 && in.task == Task::LanguageModeling) baseline = std::move(model);
    res.variants.push_back(std::move(m));
  }
  compute_comparisons(res);
  compute_findings(res);
  write_report_files(res, o.out);
  return res;
}

void write_report_files(const CompareResults& r, const fs::path& out) {
  if (r.run.task == Task::Classification)
    for (size_t i = 0; i < r.variants.size(); ++i)
      write_file_atomic(out / ("confusion_" + parse_variant_spec(r.variants[i].name).file_name() + ".csv"),
                        confusion_csv(*r.comparisons[i].metrics, r.run.class_names));
  write_file_atomic(out / "results.json", results_to_json(r).dump(2) + "\n");
  write_file_atomic(out / "results.csv", results_csv(r));
  write_file_atomic(out / "report.md", report_markdown(r));
  write_file_atomic(out / "report.html", report_html(r));
}

}  // namespace gpt2q::report
