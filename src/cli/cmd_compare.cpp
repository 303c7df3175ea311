// gpt2q compare: every quantization variant on the same data, and the report
// (report.md, report.html, results.json/.csv, confusion_<variant>.csv). The
// work is in src/report (compare_runner.h); this file parses arguments.
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/device_args.h"
#include "report/compare_runner.h"
#include "report/number_format.h"
#include "report/variant_spec.h"

namespace {

struct CompareArgs {
  gpt2q::report::CompareOptions opt;
  std::string model, out;
  std::optional<std::string> data, text, tokenizer;
  gpt2q::cli::DeviceArgs device;
  bool json = false;
};

void run(CompareArgs a) {
  auto& o = a.opt;
  o.model = a.model;
  o.out = a.out;
  if (a.data) o.data = *a.data;
  if (a.text) o.text = *a.text;
  if (a.tokenizer) o.tokenizer = *a.tokenizer;
  o.command_line = gpt2q::cli::exact_command_line("gpt2q compare");
  const gpt2q::cli::DeviceChoice d = gpt2q::cli::resolve_device(a.device);
  o.device = d.device;
  o.compute = d.compute;
  o.device_description = d.description;
  const auto r = gpt2q::report::run_compare(o);
  if (a.json) {
    gpt2q::cli::print_json(gpt2q::report::results_to_json(r));
    return;
  }
  fmt::print("wrote {}/report.md, report.html, results.json, results.csv{}\n", a.out,
             r.run.task == gpt2q::report::Task::Classification ? ", confusion_<variant>.csv" : "");
  for (const auto& f : r.findings)
    if (f.kind == "best-accuracy" || f.kind == "best-perplexity" || f.kind == "lowest-memory" || f.kind == "fastest" ||
        f.kind == "noise")
      fmt::print("  {}\n", f.text);
}

}  // namespace

GPT2Q_COMMAND(compare) {
  auto a = std::make_shared<CompareArgs>();
  auto* cmd = app.add_subcommand("compare",
                                 "Run every quantization variant on the same data and write a report with charts");
  cmd->footer(gpt2q::report::variant_spec_help());
  cmd->add_option("--model", a->model, "Checkpoint dir: a classifier (with --data) or a language model (with --text)")
      ->required();
  cmd->add_option("--data", a->data, "Labelled text: AG News CSV, CSV with text,label columns, or JSONL");
  cmd->add_option("--format", a->opt.format, "--data format: agnews, csv or jsonl (default: from the file)");
  cmd->add_option("--text", a->text, "Language models: UTF-8 text for perplexity and next-token KL");
  cmd->add_option("--variants", a->opt.variants,
                  fmt::format("Comma-separated variant specs, the first is the baseline (default {})",
                              gpt2q::report::kDefaultVariants));
  cmd->add_option("--batch-size", a->opt.batch_size, "Texts per forward pass")->default_val(8);
  cmd->add_option("--max-length", a->opt.max_length,
                  "Tokens per text (default 128, or n_positions if smaller) or per window (LM: n_positions)");
  cmd->add_option("--stride", a->opt.stride, "LM: tokens between window starts (default max length / 2)");
  cmd->add_option("--limit", a->opt.limit, "Use only the first N samples (LM: tokens); 0 = all")->default_val(0);
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer dir when the model dir has none");
  cmd->add_option("--out", a->out, "Report directory (created; finished variants in it are reused)")->required();
  gpt2q::cli::add_device_options(cmd, a->device);
  cmd->add_flag("--force", a->opt.force, "Run every variant again, ignoring finished ones in --out");
  cmd->add_flag("--json", a->json, "Print results.json on stdout as one line");
  cmd->callback([a] { run(*a); });
}
