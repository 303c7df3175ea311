// gpt2q quantize: post-training quantization of a checkpoint into a new
// checkpoint directory (see quant/checkpoint_quantizer.h for what is chosen
// and quant/quantized_checkpoint.h for how it is stored).
#include <fmt/format.h>

#include <cmath>

#include "cli/command.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "model/synthetic_weights.h"
#include "quant/checkpoint_quantizer.h"
#include "quant/quant_config.h"

namespace {

namespace fs = std::filesystem;
using gpt2q::quant::TensorQuantReport;

struct QuantizeArgs {
  std::string model, out, keep_dtype = "fp16", compute_dtype = "fp32";
  bool synthetic_124m = false;   // hidden: GPT-2 124M geometry with synthetic weights (docs/memory.md)
  int64_t synthetic_labels = 0;  // hidden: >0 makes it a classifier with that many labels
  bool json = false;
  gpt2q::quant::QuantizeOptions opt;
};

std::string sqnr_text(double db) { return std::isinf(db) ? "inf" : fmt::format("{:.2f}", db); }

nlohmann::json report_json(const TensorQuantReport& t) {
  return {{"name", t.name},
          {"format", t.format},
          {"shape", t.shape},
          {"numel", t.numel},
          {"stored_bytes", t.stored_bytes},
          {"held_bytes", t.held_bytes},
          {"mse", t.mse},
          {"sqnr_db", std::isinf(t.sqnr_db) ? nlohmann::json(nullptr) : nlohmann::json(t.sqnr_db)},
          {"max_abs_error", t.max_abs_error}};
}

void run(QuantizeArgs a) {
  a.opt.keep_dtype = gpt2q::quant::parse_keep_dtype(a.keep_dtype);
  a.opt.compute_dtype = gpt2q::quant::parse_compute_dtype_option(a.compute_dtype);
  gpt2q::quant::check_quantize_options(a.opt);
  if (a.synthetic_124m == !a.model.empty()) gpt2q::fail("give exactly one of --model DIR and --synthetic-124m");
  if (a.synthetic_labels != 0 && (!a.synthetic_124m || a.synthetic_labels < 0))
    gpt2q::fail("--synthetic-labels {}: needs --synthetic-124m and a positive number of labels", a.synthetic_labels);
  gpt2q::Checkpoint source;
  if (a.synthetic_124m) {
    gpt2q::GPT2Config c;  // the defaults are GPT-2 124M
    auto kind = gpt2q::ModelKind::CausalLM;
    if (a.synthetic_labels > 0) {
      kind = gpt2q::ModelKind::SequenceClassification;
      for (int64_t i = 0; i < a.synthetic_labels; ++i) c.id2label.push_back(fmt::format("LABEL_{}", i));
      c.pad_token_id = 50256;
    }
    c.architectures = {std::string(gpt2q::architecture_name(kind))};
    source = gpt2q::make_synthetic_checkpoint(c, kind, 0);
    source.dir = "synthetic-124m";
  } else {
    source = gpt2q::Checkpoint::load(a.model);
  }
  const auto r = gpt2q::quant::quantize_checkpoint(source, a.opt);
  gpt2q::quant::save_quantized_checkpoint(r.checkpoint, a.out, a.synthetic_124m ? fs::path() : fs::path(a.model));

  size_t stored = 0, held = 0, kept_bytes = 0;
  for (const auto& t : r.tensors) {
    stored += t.stored_bytes;
    held += t.held_bytes;
  }
  for (const auto& t : r.kept) kept_bytes += t.stored_bytes;
  const std::string method =
      r.checkpoint.quantized()
          ? gpt2q::quant::QuantizationConfig::from_json(r.checkpoint.quantization_config, a.out).describe()
          : a.opt.method;

  if (a.json) {
    nlohmann::json tensors = nlohmann::json::array(), kept = nlohmann::json::array();
    for (const auto& t : r.tensors) tensors.push_back(report_json(t));
    for (const auto& t : r.kept) kept.push_back(report_json(t));
    nlohmann::json j = {{"model", a.synthetic_124m ? "synthetic-124m" : a.model},
                        {"out", a.out},
                        {"method", a.opt.method},
                        {"description", method},
                        {"keep_dtype", a.keep_dtype},
                        {"tensors", tensors},
                        {"kept", kept},
                        {"selected_stored_bytes", stored},
                        {"kept_stored_bytes", kept_bytes},
                        {"stored_bytes", stored + kept_bytes}};
    j["quantization_config"] = r.checkpoint.quantization_config;
    gpt2q::cli::print_json(j);
    return;
  }
  fmt::print("{} -> {}: {}, other tensors in {}\n", a.synthetic_124m ? "synthetic-124m" : a.model, a.out, method,
             a.keep_dtype);
  fmt::print("{:<28}{:<18}{:<14}{:>12}{:>10}{:>12}{:>14}\n", "tensor", "format", "shape", "MSE", "SQNR dB", "max|err|",
             "bytes");
  for (const auto& t : r.tensors)
    fmt::print("{:<28}{:<18}{:<14}{:>12.4e}{:>10}{:>12.4e}{:>14}\n", t.name, t.format, gpt2q::shape_str(t.shape), t.mse,
               sqnr_text(t.sqnr_db), t.max_abs_error, t.stored_bytes);
  fmt::print("selected: {} tensors, {} bytes stored", r.tensors.size(), stored);
  if (held) fmt::print(", {} bytes held in memory when loaded", held);
  fmt::print("\nkept:     {} tensors in {}, {} bytes\n", r.kept.size(), a.keep_dtype, kept_bytes);
  fmt::print("total:    {} bytes ({:.2f} MB, {:.2f} MiB) in model.safetensors tensors\n", stored + kept_bytes,
             static_cast<double>(stored + kept_bytes) / 1e6,
             static_cast<double>(stored + kept_bytes) / (1024.0 * 1024.0));
}

}  // namespace

GPT2Q_COMMAND(quantize) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a checkpoint (int8, LLM.int8, NF4/FP4) into a new directory");
  auto a = std::make_shared<QuantizeArgs>();
  cmd->add_option("--model", a->model, "Source checkpoint directory");
  cmd->add_flag("--synthetic-124m", a->synthetic_124m, "Use synthetic weights of GPT-2 124M's geometry")->group("");
  cmd->add_option("--synthetic-labels", a->synthetic_labels, "With --synthetic-124m: a classifier head")->group("");
  cmd->add_option("--method", a->opt.method,
                  "int8-tensor, llm-int8, nf4, fp4, rtn, gptq; or fp16, bf16, fp32 (casts)")
      ->required();
  cmd->add_flag("--symmetric", a->opt.symmetric,
                "int8-tensor: scale = absmax / 127, zero point 0; rtn/gptq: zero point 2^(bits-1)");
  cmd->add_option("--bits", a->opt.bits, "rtn/gptq: bits per weight (2, 3, 4, 8)")->default_val(4);
  cmd->add_option("--group-size", a->opt.group_size, "rtn/gptq: input columns per scale (-1: per channel)")
      ->default_val(128);
  cmd->add_flag("--per-channel", a->opt.per_channel, "int8-tensor: one scale per output channel");
  cmd->add_option("--threshold", a->opt.threshold, "llm-int8: outlier threshold (0 = no decomposition)")
      ->default_val(6.0);
  cmd->add_option("--block-size", a->opt.block_size, "nf4/fp4: values per absmax block (32..4096)")->default_val(64);
  cmd->add_flag("--double-quant", a->opt.double_quant, "nf4/fp4: quantize the absmax values to 8 bits");
  cmd->add_option("--include", a->opt.include,
                  "Quantize only tensors matching this glob (repeatable), e.g. 'h.*.mlp.*'");
  cmd->add_option("--exclude", a->opt.exclude, "Leave tensors matching this glob unquantized (repeatable)");
  cmd->add_flag("--all-tensors", a->opt.all_tensors, "Quantize every 2-D weight, embeddings and heads included");
  cmd->add_option("--keep-dtype", a->keep_dtype, "dtype of the tensors not quantized: fp16 or fp32")
      ->default_val("fp16");
  cmd->add_option("--compute-dtype", a->compute_dtype,
                  "int8-tensor/nf4/fp4: arithmetic at 16+ rows: fp32, or bf16 (bnb_4bit_compute_dtype)")
      ->default_val("fp32");
  cmd->add_option("--out", a->out, "Output checkpoint directory (must not exist)")->required();
  cmd->add_flag("--json", a->json, "Print one JSON object instead of text");
  cmd->callback([a] { run(*a); });
}
