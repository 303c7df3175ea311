// gpt2q quantize: post-training quantization of a checkpoint into a new
// checkpoint directory (see quant/checkpoint_quantizer.h for what is chosen
// and quant/quantized_checkpoint.h for how it is stored).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "calib/gptq_blocks.h"
#include "cli/command.h"
#include "cli/model_args.h"
#include "core/error.h"
#include "eval/perplexity.h"
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
  // gptq: calibration text, segments drawn from it (calib/gptq_blocks.h)
  std::string calibration;
  std::optional<std::string> tokenizer;
  int64_t nsamples = 128, seqlen = 512;
  uint64_t seed = 0;
};

// GPTQ's part of quantize: tokenize the calibration text, draw segments, run
// the blocks. Progress goes to stderr.
gpt2q::calib::GptqBlocksResult run_gptq(const QuantizeArgs& a, const gpt2q::Checkpoint& source) {
  const std::set<std::string> selected = gpt2q::quant::selected_weights(source, a.opt);
  if (a.seqlen > source.config.n_positions)
    gpt2q::fail("--seqlen {} exceeds the model's n_positions = {}", a.seqlen, source.config.n_positions);
  if (a.nsamples < 1 || a.seqlen < 1)
    gpt2q::fail("--nsamples {} and --seqlen {} must be at least 1", a.nsamples, a.seqlen);
  const auto tokenizer = gpt2q::cli::load_model_tokenizer(a.model, a.tokenizer, source.config);
  const std::vector<int32_t> ids = tokenizer.encode(gpt2q::read_text_file(a.calibration), a.calibration);
  const auto segments = gpt2q::calib::calibration_segments(ids, a.nsamples, a.seqlen, a.seed, a.calibration);
  gpt2q::quant::GptqOptions o;
  o.quant = {a.opt.bits, a.opt.group_size, a.opt.symmetric};
  o.damp_percent = a.opt.damp;
  o.act_order = a.opt.act_order;
  fmt::print(stderr, "gptq: {} segments of {} tokens from {} ({} tokens)\n", segments.size(), a.seqlen,
             a.calibration, ids.size());
  return gpt2q::calib::gptq_quantize_blocks(source, selected, o, segments, [](const std::string& msg) {
    fmt::print(stderr, "gptq: {}\n", msg);
    std::fflush(stderr);
  });
}

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
  const bool gptq = a.opt.method == "gptq";
  if (gptq && a.calibration.empty())
    gpt2q::fail("--method gptq needs --calibration FILE (text whose layer inputs GPTQ fits the weights to)");
  if (!gptq && (!a.calibration.empty() || a.tokenizer))
    gpt2q::fail("--calibration and --tokenizer apply to --method gptq only, not {}", a.opt.method);
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<gpt2q::calib::GptqBlocksResult> g;
  if (gptq) g = run_gptq(a, source);
  const auto r = gpt2q::quant::quantize_checkpoint(source, a.opt, g ? &g->weights : nullptr);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
    j["seconds"] = seconds;
    if (g) {
      nlohmann::json layers = nlohmann::json::array();
      for (const auto& l : g->layers)
        layers.push_back({{"name", l.name},
                          {"gptq_error", l.gptq_error},
                          {"rtn_error", l.rtn_error},
                          {"damp", l.stats.damp},
                          {"damp_retries", l.stats.damp_retries},
                          {"dead_columns", l.stats.dead_columns},
                          {"seconds", l.stats.seconds}});
      j["gptq"] = {{"calibration", a.calibration},
                   {"nsamples", a.nsamples},
                   {"seqlen", a.seqlen},
                   {"seed", a.seed},
                   {"seconds", g->seconds},
                   {"layers", layers}};
    }
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
  if (g) {
    // Σ (w − q)ᵀ·H·(w − q) on the calibration inputs: GPTQ's against round-to-nearest's.
    fmt::print("{:<28}{:>14}{:>14}{:>10}{:>8}\n", "GPTQ layer error", "gptq", "rtn", "ratio", "dead");
    for (const auto& l : g->layers)
      fmt::print("{:<28}{:>14.4e}{:>14.4e}{:>10.3f}{:>8}{}\n", l.name, l.gptq_error, l.rtn_error,
                 l.rtn_error > 0 ? l.gptq_error / l.rtn_error : 0.0, l.stats.dead_columns,
                 l.stats.damp_retries ? fmt::format(" (damping x10^{})", l.stats.damp_retries) : "");
  }
  fmt::print("time:     {:.2f} s\n", seconds);
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
  cmd->add_option("--calibration", a->calibration, "gptq: text file the layer inputs come from");
  cmd->add_option("--tokenizer", a->tokenizer, "gptq: tokenizer directory when the model has none");
  cmd->add_option("--nsamples", a->nsamples, "gptq: calibration segments")->default_val(128);
  cmd->add_option("--seqlen", a->seqlen, "gptq: tokens per segment")->default_val(512);
  cmd->add_option("--seed", a->seed, "gptq: seed of the segments' starts")->default_val(0);
  cmd->add_option("--damp", a->opt.damp, "gptq: damping, a fraction of the Hessian's mean diagonal")
      ->default_val(0.01);
  cmd->add_flag("--act-order", a->opt.act_order, "gptq: columns in decreasing Hessian-diagonal order");
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
