// gpt2q pipeline: fine-tune (or take a classifier), quantize to every
// variant, compare, and say where the report is. Options come from flags or a
// TOML/INI file (--config; flags override it). The work is
// pipeline::run_pipeline (src/pipeline/pipeline.h).
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/device_args.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "pipeline/pipeline.h"
#include "report/variant_spec.h"

namespace {

struct PipelineArgs {
  gpt2q::cli::DeviceArgs device;  // the comparison stage's device
  gpt2q::pipeline::PipelineOptions opt;
  std::string data = "../shared/data/ag_news/test.csv", tokenizer = "../shared/data/gpt2-tokenizer",
              out = "out/pipeline";
  std::optional<std::string> model, base;
  std::vector<std::string> pretrain_texts;
  std::optional<std::string> config;
  bool json = false, quiet = false;
};

// Options from a TOML / INI file (`key = value`, keys = long option names,
// optionally under a [pipeline] section); the command line wins. CLI11's own
// set_config reads files for the top-level app only, so the pipeline applies
// the file itself, through the options' own parsers.
// CLI11's TOML reader is superlinear in a key's dotted parts (a key of
// 16,000 parts took 18 s) and echoes whole lines in its errors. A pipeline
// config is a few short `option = value` lines, so its shape is bounded
// before CLI11 sees it.
namespace fs = std::filesystem;

constexpr size_t kMaxConfigBytes = size_t{1} << 20, kMaxConfigLine = 4096, kMaxKeyDots = 8;

std::string clipped(const std::string& s, size_t n = 60) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

void check_config_shape(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (!ec && size > kMaxConfigBytes)
    gpt2q::fail("{}: {} bytes, more than the {} a pipeline config file may have", path, size, kMaxConfigBytes);
  const std::string text = gpt2q::read_file(path);  // also refuses what is not a regular file
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    ++line_no;
    start = end + 1;
    if (line.size() > kMaxConfigLine)
      gpt2q::fail("{}: line {} has {} characters (at most {})", path, line_no, line.size(), kMaxConfigLine);
    // The key (or [section] name): the part before '=', or the whole line.
    const std::string key = line.substr(0, std::min(line.find('='), line.size()));
    if (static_cast<size_t>(std::count(key.begin(), key.end(), '.')) > kMaxKeyDots)
      gpt2q::fail("{}: line {}: key '{}' has more than {} dotted parts (options are plain names, optionally under "
                  "[pipeline])",
                  path, line_no, clipped(key), kMaxKeyDots + 1);
  }
}

void apply_config_file(CLI::App& cmd, const std::string& path) {
  check_config_shape(path);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::Error& e) {
    gpt2q::fail("{}: cannot read the config file ({})", path, clipped(e.what(), 200));
  }
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // CLI11's section markers
    if (!item.parents.empty() && !(item.parents.size() == 1 && item.parents[0] == "pipeline"))
      gpt2q::fail("{}: unknown section [{}] (options go at the top or under [pipeline])", path,
                  clipped(item.parents[0]));
    if (item.name == "config") gpt2q::fail("{}: a config file cannot name another config file", path);
    CLI::Option* opt = nullptr;
    try {
      opt = cmd.get_option("--" + item.name);
    } catch (const CLI::OptionNotFound&) {
      gpt2q::fail("{}: unknown option '{}' (see gpt2q pipeline --help)", path, clipped(item.name));
    }
    if (opt->count() > 0) continue;
    try {
      opt->add_result(item.inputs);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      gpt2q::fail("{}: {}: {}", path, clipped(item.name), clipped(e.what(), 200));
    }
  }
}

// With --base or --pretrain-text, the options the user did not give take
// the pretrained recipe (the seeds' settings: 3 epochs, batch 16, 128
// tokens). Its rate, 2e-5, is for a real pretrained GPT-2; a base the
// pipeline pre-trains itself (minutes on ~0.6M tokens) is far weaker, and
// fine-tunes at 1e-4 (docs/pipeline.md).
void apply_base_recipe(PipelineArgs& a, const CLI::App& cmd) {
  const auto r = gpt2q::pipeline::pretrained_finetune_recipe();
  auto& f = a.opt.finetune;
  if (!cmd.count("--epochs")) f.epochs = r.epochs;
  if (!cmd.count("--batch-size")) f.batch_size = r.batch_size;
  if (!cmd.count("--lr")) f.lr = a.base ? r.lr : gpt2q::pipeline::kSelfPretrainedFinetuneLr;
  if (!cmd.count("--warmup-steps")) f.warmup_steps = r.warmup_steps;
  if (!cmd.count("--weight-decay")) f.weight_decay = r.weight_decay;
  if (!cmd.count("--max-length")) f.max_length = r.max_length;
  if (!cmd.count("--dropout")) f.dropout = r.dropout;
}

void run(PipelineArgs& a) {
  auto& o = a.opt;
  o.data = a.data;
  o.tokenizer = a.tokenizer;
  o.out = a.out;
  if (a.model) o.model = *a.model;
  if (a.base) o.base = *a.base;
  for (const std::string& t : a.pretrain_texts) o.pretrain_texts.emplace_back(t);
  o.progress = !a.quiet;
  gpt2q::Progress::set_enabled(!a.quiet);
  o.finetune.progress = !a.quiet;
  o.command_line = gpt2q::cli::exact_command_line("gpt2q pipeline");
  const gpt2q::cli::DeviceChoice d = gpt2q::cli::resolve_device(a.device);
  o.compare_device = d.device;
  o.compare_compute = d.compute;
  o.compare_device_description = d.description;
  o.finetune.device = d.device;  // the training stages run where the comparison does
  const auto r = gpt2q::pipeline::run_pipeline(o);
  if (a.json) {
    gpt2q::cli::print_json(r.summary);
    return;
  }
  const auto& st = r.summary["stages"];
  if (st.contains("finetune") && st["finetune"].contains("best_score")) {
    fmt::print("fine-tuned classifier: {} (best epoch {}, held-out accuracy {:.4f})\n", r.classifier.string(),
               st["finetune"].value("best_epoch", 0), st["finetune"]["best_score"].get<double>());
  } else {
    fmt::print("classifier: {}\n", r.classifier.string());
  }
  for (const auto& v : st["compare"]["variants"]) {
    if (v.contains("accuracy"))
      fmt::print("  {:<28} {:>10.3f} MB  accuracy {:.4f}\n", v["variant"].get<std::string>(),
                 v["weight_bytes"].get<double>() / 1e6, v["accuracy"].get<double>());
    else
      fmt::print("  {:<28} {:>10.3f} MB\n", v["variant"].get<std::string>(), v["weight_bytes"].get<double>() / 1e6);
  }
  fmt::print("report: {}/report.md and report.html\n", r.report_dir.string());
}

}  // namespace

GPT2Q_COMMAND(pipeline) {
  auto a = std::make_shared<PipelineArgs>();
  auto& o = a->opt;
  auto& f = o.finetune;
  auto* cmd = app.add_subcommand(
      "pipeline", "End to end: fine-tune GPT-2 on labelled text, quantize to every variant, compare, report");
  cmd->add_option("--config", a->config, "read options from a TOML or INI file (keys = long option names; flags win)");
  cmd->footer(gpt2q::report::variant_spec_help());
  cmd->add_option("--data", a->data, "labelled text (AG News CSV, CSV with text,label, or JSONL)")->capture_default_str();
  cmd->add_option("--format", o.format, "agnews | csv | jsonl (default: guessed from the file)");
  cmd->add_option("--tokenizer", a->tokenizer, "GPT-2 tokenizer dir (vocab.json + merges.txt)")->capture_default_str();
  cmd->add_option("--out", a->out, "output dir (stages are resumed from it)")->capture_default_str();
  cmd->add_option("--model", a->model, "a fine-tuned classifier checkpoint: skip training");
  cmd->add_option("--base", a->base, "an HF GPT-2 checkpoint to fine-tune (e.g. gpt2 or distilgpt2)");
  cmd->add_option("--init,--geometry", o.init,
                  "with no --base: a fresh GPT-2 of this geometry (tiny, 124m = small, ... or WxLxH)")
      ->capture_default_str();
  cmd->add_option("--pretrain-text", a->pretrain_texts,
                  "first train the fresh GPT-2 as a language model on this text (repeat for several, joined in order)");
  cmd->add_option("--pretrain-epochs", o.pretrain_epochs, "epochs of LM pre-training")->capture_default_str();
  cmd->add_option("--pretrain-lr", o.pretrain_lr, "peak learning rate of LM pre-training")->capture_default_str();
  cmd->add_option("--eval-split", o.eval_split, "fraction of --data held out (seeded, stratified)")
      ->capture_default_str();
  cmd->add_option("--epochs", f.epochs, "fine-tuning epochs (with --base the defaults are 3 epochs, batch 16, lr 2e-5, no warmup or decay, 128 tokens, the config's dropout)")->capture_default_str();
  cmd->add_option("--batch-size", f.batch_size, "fine-tuning batch size")->capture_default_str();
  cmd->add_option("--lr", f.lr, "peak learning rate (AdamW, linear warmup and decay)")->capture_default_str();
  cmd->add_option("--weight-decay", f.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--warmup-steps", f.warmup_steps, "linear warmup steps")->capture_default_str();
  cmd->add_option("--max-length", f.max_length, "tokens per text")->capture_default_str();
  cmd->add_option("--grad-clip", f.grad_clip, "max global gradient norm (0: off)")->capture_default_str();
  cmd->add_option("--dropout", f.dropout, "dropout probability (default: the config's)");
  cmd->add_option("--precision", f.precision,
                  "training arithmetic: fp32 (default) or bf16 (GPU: bf16 products on tensor cores)")
      ->capture_default_str();
  cmd->add_option("--seed", f.seed, "seed of the split, init, data order and dropout")->capture_default_str();
  cmd->add_option("--limit", f.limit, "use only the first N training and held-out texts (quick runs)");
  cmd->add_option("--variants", o.variants, "comma-separated variant specs (see below)")
      ->default_str(std::string(gpt2q::pipeline::kPipelineVariants));
  cmd->add_option("--compare-batch-size", o.compare_batch_size, "batch size of the comparison runs")
      ->capture_default_str();
  gpt2q::cli::add_device_options(cmd, a->device);
  cmd->add_flag("--force", o.force, "start over instead of reusing finished stages");
  cmd->add_flag("--quiet", a->quiet, "no progress output");
  cmd->add_flag("--json", a->json, "print the summary as one JSON object");
  cmd->callback([a, cmd] {
    if (a->config) apply_config_file(*cmd, *a->config);
    if (a->base || !a->pretrain_texts.empty()) apply_base_recipe(*a, *cmd);
    run(*a);
  });
}
