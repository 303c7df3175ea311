#include "pipeline/pipeline.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "quant/checkpoint_quantizer.h"
#include "report/compare_runner.h"
#include "report/variant_spec.h"
#include "text/tokenizer.h"
#include "train/output_dir.h"

namespace gpt2q::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

std::string missing_data_help(const fs::path& data, const fs::path& tokenizer) {
  return fmt::format(
      "the pipeline needs labelled text and the GPT-2 tokenizer. Fetch AG News (e.g. test.csv of "
      "https://huggingface.co/datasets/fancyzhx/ag_news or the original CSV: label 1-4, title, description) "
      "and put it at {}; put GPT-2's vocab.json and merges.txt (https://huggingface.co/openai-community/gpt2) "
      "in {}. Or pass --data FILE and --tokenizer DIR",
      data.string(), tokenizer.string());
}

train::FinetuneRequest default_finetune_recipe() {
  train::FinetuneRequest r;
  r.epochs = 5;
  r.batch_size = 32;
  r.lr = 2e-3;
  r.warmup_steps = 100;
  r.weight_decay = 0.01;
  r.max_length = 64;
  r.dropout = 0.1;
  r.seed = 42;
  return r;
}

train::FinetuneRequest pretrained_finetune_recipe() {
  train::FinetuneRequest r;
  r.epochs = 3;
  r.batch_size = 16;
  r.lr = 2e-5;
  r.warmup_steps = 0;
  r.weight_decay = 0.0;
  r.max_length = 128;
  r.seed = 42;
  return r;
}

namespace {

// null, one path, or the list (so that the settings of earlier one-text runs
// still match).
json pretrain_json(const std::vector<fs::path>& texts) {
  if (texts.empty()) return json();
  if (texts.size() == 1) return fs::absolute(texts[0]).string();
  json j = json::array();
  for (const fs::path& t : texts) j.push_back(fs::absolute(t).string());
  return j;
}

// The settings that decide the results; a re-run must match them.
json settings_json(const PipelineOptions& o) {
  const auto& f = o.finetune;
  auto opt = [](const auto& v) { return v ? json(*v) : json(); };
  auto opt_path = [](const std::optional<fs::path>& p) { return p ? json(fs::absolute(*p).string()) : json(); };
  json j = {{"data", fs::absolute(o.data).string()},
          {"format", opt(o.format)},
          {"model", opt_path(o.model)},
          {"base", opt_path(o.base)},
          {"init", o.init},
          {"pretrain_text", pretrain_json(o.pretrain_texts)},
          {"pretrain_epochs", o.pretrain_epochs},
          {"pretrain_lr", o.pretrain_lr},
          {"eval_split", o.eval_split},
          {"epochs", f.epochs},
          {"batch_size", f.batch_size},
          {"lr", f.lr},
          {"weight_decay", f.weight_decay},
          {"warmup_steps", f.warmup_steps},
          {"max_length", f.max_length},
          {"grad_clip", f.grad_clip},
          {"dropout", opt(f.dropout)},
          {"seed", f.seed},
          {"limit", f.limit},
          {"variants", o.variants}};
  if (f.precision != "fp32") j["precision"] = f.precision;  // only then: earlier fp32 runs still match
  return j;
}

// OUT/pipeline.json: a fresh OUT gets it; an existing one must match.
void check_or_record_settings(const PipelineOptions& o) {
  const fs::path file = o.out / "pipeline.json";
  const json want = settings_json(o);
  if (fs::exists(file)) {
    json have;
    try {
      have = read_json_file(file, kConfigFileLimit);
    } catch (const Error& e) {
      fail("{}; pass --force to start over", e.what());
    }
    // The file is the user's to edit: anything but {"settings": {...}} differs.
    static const json kNone = json::object();
    const json& had = have.is_object() && have.contains("settings") && have["settings"].is_object() ? have["settings"]
                                                                                                     : kNone;
    if (had != want) {
      std::string diff;
      for (auto& [k, v] : want.items())
        if (!had.contains(k) || had[k] != v)
          diff += fmt::format(" {}: {} -> {};", k, had.contains(k) ? json_brief(had[k]) : "null", json_brief(v));
      fail("{}: an earlier pipeline with other settings is there ({}); pass --force to start over or choose "
           "another --out",
           o.out.string(), diff);
    }
    return;
  }
  make_directories(o.out);
  write_file_atomic(file, json({{"settings", want}}).dump(2) + "\n");
}

// The held-out rows as JSONL {"text", "label"}: exactly the rows fine-tuning
// evaluates on (same stratified_split, same seed).
// The LM pre-training text: the one file given, or the files given joined
// in order (a newline between) into OUT/data/pretrain.txt, rewritten only
// when its content changes.
fs::path pretrain_text_file(const PipelineOptions& o) {
  if (o.pretrain_texts.size() == 1) return o.pretrain_texts[0];
  std::string text;
  for (const fs::path& t : o.pretrain_texts) {
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += read_file(t);
  }
  const fs::path file = o.out / "data" / "pretrain.txt";
  if (fs::exists(file) && read_file(file) == text) return file;
  make_directories(file.parent_path());
  write_file_atomic(file, text);
  return file;
}

fs::path write_heldout(const PipelineOptions& o, const Dataset& data) {
  const fs::path file = o.out / "data" / "heldout.jsonl";
  if (fs::exists(file)) return file;
  const Split split = stratified_split(data, o.eval_split, o.finetune.seed);
  std::string text;
  size_t n = 0;
  for (size_t row : split.second) {
    if (o.finetune.limit > 0 && static_cast<int64_t>(n) >= o.finetune.limit) break;
    text += json({{"text", data.rows[row].text}, {"label", data.rows[row].label}}).dump() + "\n";
    ++n;
  }
  make_directories(file.parent_path());
  write_file_atomic(file, text);
  return file;
}

// The fine-tuning request of the classifier stage: from `start` (a
// checkpoint) or, without one, a fresh GPT-2 of o.init.
train::FinetuneRequest classifier_request(const PipelineOptions& o, const std::optional<fs::path>& start) {
  train::FinetuneRequest r = o.finetune;
  r.task = "classify";
  r.train = o.data.string();
  r.format = o.format;
  r.eval_split = o.eval_split;
  r.tokenizer = o.tokenizer.string();
  r.out = (o.out / "finetune").string();
  if (start) r.model = start->string(); else r.init = o.init;
  return r;
}

// Runs (or resumes, or skips when finished) one fine-tuning stage into `dir`.
json run_training_stage(train::FinetuneRequest r, const fs::path& dir, bool progress) {
  r.out = dir.string();
  r.progress = progress;
  const train::OutputLayout layout{dir};
  r.resume = fs::exists(layout.state_path());
  const auto outcome = train::finetune(r);
  json j = outcome.to_json(r.out);
  j["resumed"] = r.resume;
  return j;
}

}  // namespace

PipelineResult run_pipeline(const PipelineOptions& o) {
  if (!fs::is_regular_file(o.data) || !Tokenizer::present(o.tokenizer))
    fail("{}", missing_data_help(o.data, o.tokenizer));
  const bool pretrain = !o.pretrain_texts.empty();
  if (o.model && (o.base || pretrain)) fail("--model takes a fine-tuned classifier as it is; drop --base / --pretrain-text");
  if (o.base && pretrain) fail("give at most one of --base and --pretrain-text");
  for (const fs::path& t : o.pretrain_texts) {
    // WikiText-2 test is where the study measures perplexity.
    const std::string name = t.filename().string();
    if (name == "wiki.test.tokens" || name == "wiki.test.raw")
      fail("{}: --pretrain-text: WikiText-2 test is the evaluation text; pre-train on wiki.train / wiki.valid or "
           "other text", t.string());
    if (!fs::is_regular_file(t)) fail("{}: --pretrain-text: no such file", t.string());
  }
  if (!(o.eval_split > 0 && o.eval_split < 1)) fail("--eval-split {}: must be between 0 and 1 (exclusive)", o.eval_split);
  const std::string variant_list = o.variants.empty() ? std::string(kPipelineVariants) : o.variants;
  const auto specs = report::parse_variant_list(variant_list);  // bad specs fail before anything is written
  train::check_finetune_request(classifier_request(o, o.model ? o.model : o.base));
  const auto format = o.format ? parse_data_format(*o.format) : guess_data_format(o.data);
  const Dataset data = load_dataset(o.data, format);

  if (o.force && fs::exists(o.out)) {
    for (const char* stage : {"pipeline.json", "data", "pretrain", "finetune", "quantized", "report"})
      fs::remove_all(o.out / stage);
  }
  PipelineOptions recorded = o;
  recorded.variants = variant_list;
  check_or_record_settings(recorded);

  PipelineResult result;
  json stages = json::object();
  const fs::path heldout = write_heldout(o, data);
  stages["data"] = {{"heldout", heldout.string()}, {"rows", data.rows.size()}};

  // 1. The classifier: given, or fine-tuned (after an optional LM pre-training).
  if (o.model) {
    result.classifier = *o.model;
    stages["finetune"] = {{"skipped", "--model given"}};
  } else {
    std::optional<fs::path> start = o.base;
    if (pretrain) {
      train::FinetuneRequest r = o.finetune;
      r.task = "lm";
      r.init = o.init;
      r.train = pretrain_text_file(o).string();
      r.tokenizer = o.tokenizer.string();
      r.epochs = o.pretrain_epochs;
      r.lr = o.pretrain_lr;
      // From scratch: the from-scratch recipe's warmup and weight decay,
      // whatever the fine-tuning's (the pretrained recipe has neither).
      const train::FinetuneRequest scratch = default_finetune_recipe();
      r.warmup_steps = scratch.warmup_steps;
      r.weight_decay = scratch.weight_decay;
      r.limit = 0;
      if (o.progress) fmt::print(stderr, "== pipeline: pre-training {} as a language model on {}\n", o.init, r.train);
      stages["pretrain"] = run_training_stage(r, o.out / "pretrain", o.progress);
      start = o.out / "pretrain";
    }
    const train::FinetuneRequest r = classifier_request(o, start);
    if (o.progress) fmt::print(stderr, "== pipeline: fine-tuning on {} ({:.0f}% held out)\n", o.data.string(),
                               100 * o.eval_split);
    stages["finetune"] = run_training_stage(r, o.out / "finetune", o.progress);
    result.classifier = o.out / "finetune";
  }

  // 2. Every variant as a checkpoint of its own (deployable; compare runs
  // the same quantization in memory, on the same weights).
  const Checkpoint source = Checkpoint::load(result.classifier);
  json quantized = json::array();
  for (const auto& spec : specs) {
    if (spec.is_identity() || spec.ready_dir) continue;
    if (source.quantized()) break;  // a quantized --model: compare takes it as it is
    const fs::path dir = o.out / "quantized" / spec.file_name();
    const bool existed = fs::exists(dir / "config.json");
    if (!existed) {
      if (o.progress) fmt::print(stderr, "== pipeline: quantizing to {}\n", spec.name);
      const auto q = quant::quantize_checkpoint(source, spec.options);
      make_directories(dir.parent_path());
      quant::save_quantized_checkpoint(q.checkpoint, dir, result.classifier);
    }
    quantized.push_back({{"variant", spec.name}, {"dir", dir.string()}, {"reused", existed}});
  }
  stages["quantize"] = quantized;

  // 3. The comparison on the held-out rows.
  report::CompareOptions c;
  c.model = result.classifier;
  c.data = heldout;
  c.format = "jsonl";
  c.tokenizer = o.tokenizer;
  c.variants = source.quantized() ? std::nullopt : std::optional<std::string>(variant_list);
  c.batch_size = o.compare_batch_size;
  c.max_length = o.finetune.max_length;
  c.out = o.out / "report";
  c.command_line = o.command_line;
  c.device = o.compare_device;
  c.compute = o.compare_compute;
  c.device_description = o.compare_device_description;
  if (o.progress) fmt::print(stderr, "== pipeline: comparing the variants on {}\n", heldout.string());
  const auto r = report::run_compare(c);
  result.report_dir = c.out;
  json variants = json::array();
  for (size_t i = 0; i < r.variants.size(); ++i) {
    json v = {{"variant", r.variants[i].name}, {"weight_bytes", r.variants[i].weight_bytes}};
    if (r.comparisons[i].metrics) v["accuracy"] = r.comparisons[i].metrics->accuracy;
    variants.push_back(v);
  }
  stages["compare"] = {{"report", (c.out / "report.md").string()}, {"variants", variants}};
  result.summary = {{"out", o.out.string()}, {"classifier", result.classifier.string()}, {"stages", stages}};
  write_file_atomic(o.out / "summary.json", result.summary.dump(2) + "\n");
  return result;
}

}  // namespace gpt2q::pipeline
