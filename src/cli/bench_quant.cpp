#include "cli/bench_quant.h"

#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "cli/bench_timing.h"
#include "cli/command.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "backend/cpu/isa.h"
#include "quant/quant_config.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q::cli {

namespace {

// ":bf16-compute" (int8-tensor, nf4, fp4): the same weights with compute dtype
// bf16 (backend/cpu/dequant_gemm.h), as compare's variant modifier of that name.
constexpr std::string_view kBf16Suffix = ":bf16-compute";
const std::vector<std::string> kAllMethods = {"fp32",     "fp16", "int8-tensor", "int8-tensor:bf16-compute", "llm-int8",
                                              "nf4",      "nf4:bf16-compute", "fp4"};

bool is_bf16_compute(const std::string& method) {
  return method.size() > kBf16Suffix.size() &&
         method.compare(method.size() - kBf16Suffix.size(), kBf16Suffix.size(), kBf16Suffix) == 0;
}

std::string base_method(const std::string& method) {
  return is_bf16_compute(method) ? method.substr(0, method.size() - kBf16Suffix.size()) : method;
}

// One model under test and its timings.
struct Variant {
  std::string method, description;
  double prepare_s = 0;  // quantize_checkpoint + from_checkpoint
  std::unique_ptr<GPT2Model> model;
  std::vector<std::pair<std::string, size_t>> bytes_by_component;
  size_t weight_bytes = 0;
  std::vector<double> latency, throughput;
  DecodeSamples decode;
};

// The user's quantize options for `method`. A single method gets them all
// (check_quantize_options refuses what does not apply); "all" gives each
// method only the options that concern it, and the casts none.
quant::QuantizeOptions options_for(const MethodBenchArgs& a, const std::string& method, bool all) {
  quant::QuantizeOptions o = a.opt;
  o.method = base_method(method);
  if (is_bf16_compute(method)) o.compute_dtype = DType::BF16;
  if (!all) return o;
  const auto m = quant::parse_quant_method(o.method);
  if (!m) {
    quant::QuantizeOptions cast;
    cast.method = o.method;
    cast.keep_dtype = a.opt.keep_dtype;
    return cast;
  }
  if (*m != quant::QuantMethod::int8_tensor) o.symmetric = o.per_channel = false;
  if (!quant::is_4bit(*m)) o.double_quant = false;
  if (!is_bf16_compute(method)) o.compute_dtype = DType::F32;
  return o;
}

std::string stored_description(const Checkpoint& ck) {
  if (ck.quantized()) return quant::QuantizationConfig::from_json(ck.quantization_config, ck.dir.string()).describe();
  return "as stored (unquantized)";
}

Variant prepare(const Checkpoint& source, const std::string& method, const quant::QuantizeOptions& opt) {
  Variant v;
  v.method = method.empty() ? "stored" : method;
  auto t0 = BenchClock::now();
  if (method.empty() || method == "fp32") {
    // The source as it is: fp32 stays a view, 16-bit is converted once.
    v.model = GPT2Model::from_checkpoint(source);
    v.description = method.empty() ? stored_description(source) : "fp32";
  } else {
    quant::QuantizeResult r = quant::quantize_checkpoint(source, opt);
    v.model = GPT2Model::from_checkpoint(r.checkpoint);  // copies what it keeps; r can go
    v.description = r.checkpoint.quantized()
                        ? quant::QuantizationConfig::from_json(r.checkpoint.quantization_config, method).describe()
                        : method + " weights (held and run as 16-bit)";
  }
  v.prepare_s = seconds_since(t0);
  v.bytes_by_component = v.model->weight_bytes();
  v.weight_bytes = v.model->total_weight_bytes();
  return v;
}

double ms(double s) { return s * 1e3; }

nlohmann::json variant_json(const Variant& v, const MethodBenchArgs& a) {
  nlohmann::json comp = nlohmann::json::object();
  for (const auto& [name, bytes] : v.bytes_by_component) comp[name] = bytes;
  nlohmann::json j = {{"method", v.method},
                      {"description", v.description},
                      {"prepare_s", v.prepare_s},
                      {"weight_bytes", v.weight_bytes},
                      {"weight_bytes_by_component", comp},
                      {"latency",
                       {{"batch", 1},
                        {"seq", a.seq},
                        {"runs", v.latency.size()},
                        {"median_ms", ms(median(v.latency))},
                        {"min_ms", ms(minimum(v.latency))},
                        {"tokens_per_s_at_min", a.seq / minimum(v.latency)}}}};
  if (!v.decode.steps.empty())
    j["decode"] = {{"prompt", a.seq},
                   {"new_tokens", a.decode_tokens},
                   {"timed_steps", v.decode.steps.size()},
                   {"prefill_median_ms", ms(median(v.decode.prefill))},
                   {"ms_per_token_median", ms(median(v.decode.steps))},
                   {"ms_per_token_min", ms(minimum(v.decode.steps))},
                   {"tokens_per_s_median", 1.0 / median(v.decode.steps)},
                   {"tokens_per_s_best", 1.0 / minimum(v.decode.steps)}};
  if (!v.throughput.empty()) {
    const double b = static_cast<double>(a.throughput_batch);
    j["throughput"] = {{"batch", a.throughput_batch},
                       {"seq", a.seq},
                       {"runs", v.throughput.size()},
                       {"median_ms", ms(median(v.throughput))},
                       {"min_ms", ms(minimum(v.throughput))},
                       {"samples_per_s_median", b / median(v.throughput)},
                       {"samples_per_s_best", b / minimum(v.throughput)},
                       {"tokens_per_s_best", b * a.seq / minimum(v.throughput)}};
  }
  return j;
}

void print_table(const std::vector<Variant>& vs, const MethodBenchArgs& a) {
  const Variant* fp32 = nullptr;
  for (const auto& v : vs)
    if (v.method == "fp32") fp32 = &v;
  fmt::print("\n{:<24} {:>10} {:>19} {:>21} {:>29} {:>12}", "method", "weight MB", "1x" + std::to_string(a.seq) + " ms med/min",
             "decode tok/s med/best",
             a.throughput_batch > 0 ? fmt::format("{}x{} samples/s med/best", a.throughput_batch, a.seq)
                                    : std::string("throughput"),
             "tokens/s");
  if (fp32) fmt::print(" {:>16}", "vs fp32 (1x/dec)");
  fmt::print("\n");
  for (const auto& v : vs) {
    fmt::print("{:<24} {:>10.1f} {:>19}", v.method, v.weight_bytes / 1e6,
               fmt::format("{:.1f} / {:.1f}", ms(median(v.latency)), ms(minimum(v.latency))));
    fmt::print(" {:>21}", v.decode.steps.empty() ? std::string("-")
                                                 : fmt::format("{:.1f} / {:.1f}", 1.0 / median(v.decode.steps),
                                                               1.0 / minimum(v.decode.steps)));
    if (v.throughput.empty()) {
      fmt::print(" {:>29} {:>12}", "-", "-");
    } else {
      const double b = static_cast<double>(a.throughput_batch);
      fmt::print(" {:>29} {:>12.0f}",
                 fmt::format("{:.2f} / {:.2f}", b / median(v.throughput), b / minimum(v.throughput)),
                 b * a.seq / minimum(v.throughput));
    }
    if (fp32) {
      const double lat = minimum(fp32->latency) / minimum(v.latency);
      const std::string dec = v.decode.steps.empty()
                                  ? "-"
                                  : fmt::format("{:.2f}x", minimum(fp32->decode.steps) / minimum(v.decode.steps));
      fmt::print(" {:>16}", fmt::format("{:.2f}x / {}", lat, dec));
    }
    fmt::print("   {}\n", v.description);
  }
  fmt::print("(med = median, min/best = fastest run; speed-ups compare fastest runs; MB = 1e6 bytes of weights held)\n");
}

}  // namespace

const char* bench_method_names() {
  return "fp32, fp16, int8-tensor, llm-int8, nf4, fp4 (int8-tensor, nf4, fp4 also with :bf16-compute), all";
}

void run_method_bench(const MethodBenchArgs& a) {
  if (a.seq < 1 || a.iters < 1 || a.throughput_iters < 1 || a.throughput_batch < 0 || a.decode_tokens < 0)
    fail("bench: --seq, --iters and --throughput-iters must be >= 1 (--throughput-batch, --decode-tokens >= 0)");
  const bool all = a.method == "all";
  std::vector<std::string> methods;
  if (all) {
    methods = kAllMethods;
  } else if (a.method.empty()) {
    if (a.model.empty()) fail("bench: per-method run without --method needs --model DIR");
    methods = {""};
  } else if (std::find(kAllMethods.begin(), kAllMethods.end(), a.method) != kAllMethods.end() ||
             a.method == "fp4:bf16-compute") {
    methods = {a.method};
  } else {
    fail("bench: --method '{}' is not one of {}", a.method, bench_method_names());
  }
  for (const auto& m : methods)
    if (!m.empty() && m != "fp32") quant::check_quantize_options(options_for(a, m, all));

  auto t0 = BenchClock::now();
  Checkpoint source;
  std::string source_name;
  if (a.model.empty()) {
    source = make_synthetic_checkpoint(geometry_config(a.geometry, "--geometry"), ModelKind::CausalLM, 0);
    source.dir = "synthetic-" + a.geometry;
    source_name = fmt::format("synthetic weights, geometry {}", a.geometry);
  } else {
    source = Checkpoint::load(a.model);
    source_name = a.model;
    if (a.method.empty() && a.compute_dtype_given) quant::set_compute_dtype(source, a.opt.compute_dtype);
  }
  const GPT2Config& cfg = source.config;
  if (a.seq > cfg.n_positions) fail("bench: --seq {} exceeds n_positions {}", a.seq, cfg.n_positions);
  if (a.decode_tokens > 0 && a.seq + a.decode_tokens > cfg.n_positions)
    fail("bench: --seq {} + --decode-tokens {} exceed n_positions {}", a.seq, a.decode_tokens, cfg.n_positions);
  const double load_s = seconds_since(t0);

  // Everything that can fail (loading, quantizing) happens before the first line is printed.
  std::vector<Variant> vs;
  {
    Progress p("quantize and build", static_cast<int64_t>(methods.size()), "models");
    for (const auto& m : methods) {
      vs.push_back(prepare(source, m, options_for(a, m, all)));
      p.advance();
    }
  }
  auto say = [&](const std::string& line) {
    if (!a.json) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
  };
  say(fmt::format("machine: {} | {} threads | {} | quantized kernels: {}", cpu_model_name(), num_threads(),
                  cpu::blas_description(), cpu::isa_name(cpu::best_isa())));
  say(fmt::format("source: {} (n_embd {} n_layer {} vocab {}), ready in {:.2f} s", source_name, cfg.n_embd,
                  cfg.n_layer, cfg.vocab_size, load_s));
  for (const auto& v : vs)
    say(fmt::format("  {}: {} — {:.1f} MB of weights, prepared in {:.1f} s", v.method, v.description,
                    v.weight_bytes / 1e6, v.prepare_s));

  // Every measurement goes round the methods in turn, so that all of them
  // see the same (shared, varying) machine load; minima are the fair figures.
  const TokenBatch one = bench_tokens(1, a.seq, cfg.vocab_size);
  {
    Progress p("latency 1x" + std::to_string(a.seq), static_cast<int64_t>(vs.size()) * (a.iters + 1), "runs");
    for (int it = -1; it < a.iters; ++it)
      for (auto& v : vs) {
        auto t = BenchClock::now();
        (void)v.model->lm_logits(one);
        if (it >= 0) v.latency.push_back(seconds_since(t));
        p.advance();
      }
  }
  if (a.decode_tokens > 1) {
    Progress p("decode", static_cast<int64_t>(vs.size()) * (a.iters + 1), "generations");
    for (int it = -1; it < a.iters; ++it)
      for (auto& v : vs) {
        decode_once(*v.model, a.seq, a.decode_tokens, it >= 0 ? &v.decode : nullptr);
        p.advance();
      }
  }
  if (a.throughput_batch > 0) {
    // No warm-up: a run takes seconds, and the minimum is reported beside the median.
    const TokenBatch many = bench_tokens(a.throughput_batch, a.seq, cfg.vocab_size);
    Progress p(fmt::format("throughput {}x{}", a.throughput_batch, a.seq),
               static_cast<int64_t>(vs.size()) * a.throughput_iters, "runs");
    for (int it = 0; it < a.throughput_iters; ++it)
      for (auto& v : vs) {
        auto t = BenchClock::now();
        (void)v.model->lm_logits(many);
        v.throughput.push_back(seconds_since(t));
        p.advance();
      }
  }

  if (a.json) {
    nlohmann::json methods_json = nlohmann::json::array();
    for (const auto& v : vs) methods_json.push_back(variant_json(v, a));
    print_json({{"machine",
                 {{"cpu", cpu_model_name()},
                  {"threads", num_threads()},
                  {"blas", cpu::blas_description()},
                  {"quant_isa", cpu::isa_name(cpu::best_isa())}}},
                {"source", source_name},
                {"iters", a.iters},
                {"throughput_iters", a.throughput_iters},
                {"methods", methods_json}});
    return;
  }
  print_table(vs, a);
}

}  // namespace gpt2q::cli
