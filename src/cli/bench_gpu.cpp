#include "cli/bench_gpu.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_gpu_phases.h"
#include "cli/bench_timing.h"
#include "cli/command.h"
#include "cli/device_args.h"
#include "core/build_info.h"
#include "core/device_graph.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/file_util.h"
#include "eval/classify.h"
#include "eval/perplexity.h"
#include "eval/tokenizer_lookup.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "quant/checkpoint_quantizer.h"
#include "quant/quant_config.h"
#include "text/tokenizer.h"

namespace gpt2q::cli {

namespace {

using nlohmann::json;
using namespace gpu_bench;

// The rows of tools/gpu_bench_report.py. `method` empty: the fp32 checkpoint
// itself, converted at load to the compute dtype (what PyTorch's
// from_pretrained(dtype=float16) does); otherwise quantized in memory with
// the quantizer's defaults (blocksize 64, threshold 6.0, unquantized tensors
// kept as fp16), as `gpt2q quantize` and transformers' BitsAndBytesConfig do.
struct Variant {
  const char* setup;
  const char* precision;
  const char* method;
  DType compute;
  bool double_quant;
};
const std::vector<Variant> kVariants = {
    {"fp32", "fp32", "", DType::F32, false},
    {"fp16", "fp16", "", DType::F16, false},
    {"bf16", "bf16", "", DType::BF16, false},
    {"int8-tensor", "int8-tensor", "int8-tensor", DType::F16, false},
    {"llm-int8", "llm-int8", "llm-int8", DType::F16, false},
    {"nf4", "nf4", "nf4", DType::F16, false},
    {"nf4-dq:bf16-compute", "nf4-dq", "nf4", DType::BF16, true},
    {"fp4", "fp4", "fp4", DType::F16, false},
};

struct Phases {
  bool batch1 = true, batch256 = true, ppl = true, decode = true;
  bool classify() const { return batch1 || batch256; }
  bool lm() const { return ppl || decode; }
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

Phases parse_skip(const std::string& skip) {
  Phases p;
  for (const std::string& s : split_list(skip)) {
    if (s == "batch1" || s == "classify") p.batch1 = false;
    if (s == "batch256" || s == "classify") p.batch256 = false;
    if (s == "ppl" || s == "lm") p.ppl = false;
    if (s == "decode" || s == "lm") p.decode = false;
    if (s != "batch1" && s != "batch256" && s != "ppl" && s != "decode" && s != "classify" && s != "lm")
      fail("bench: --skip '{}' is not one of batch1, batch256, ppl, decode, classify, lm", s);
  }
  return p;
}

std::vector<const Variant*> parse_variants(const std::string& method) {
  std::vector<const Variant*> out;
  if (method.empty() || method == "all") {
    for (const Variant& v : kVariants) out.push_back(&v);
    return out;
  }
  for (const std::string& name : split_list(method)) {
    auto it = std::find_if(kVariants.begin(), kVariants.end(), [&](const Variant& v) { return name == v.setup; });
    if (it == kVariants.end())
      fail("bench --device cuda: --method '{}' is not one of {}, all", name, gpu_bench_variant_names());
    out.push_back(&*it);
  }
  return out;
}

quant::QuantizeOptions quantize_options(const Variant& v) {
  quant::QuantizeOptions o;
  o.method = v.method;
  o.double_quant = v.double_quant;
  // What the checkpoint records (the CPU's arithmetic); on the GPU the placement decides.
  o.compute_dtype = v.compute == DType::BF16 && o.method != "llm-int8" ? DType::BF16 : DType::F32;
  return o;
}

// The weights gpt2q init writes: make_synthetic_checkpoint with its default
// seed and, for a classifier, its default labels and pad token (cmd_init.cpp).
Checkpoint synthetic_source(const std::string& geometry, ModelKind kind) {
  GPT2Config cfg = geometry_config(geometry, "--geometry");
  if (kind == ModelKind::SequenceClassification) {
    cfg.id2label = split_label_names("World,Sports,Business,Sci/Tech");
    cfg.pad_token_id = cfg.eos_token_id;
  }
  Checkpoint ck = make_synthetic_checkpoint(cfg, kind, 1234);
  ck.dir = fmt::format("synthetic-{}-{}", geometry, kind == ModelKind::CausalLM ? "lm" : "classify");
  return ck;
}

Checkpoint load_source(const std::string& dir, ModelKind want, const char* option) {
  Checkpoint ck = Checkpoint::load(dir);
  if (ck.kind != want)
    fail("bench: {} {} is a {}; it must be a {}", option, dir, architecture_name(ck.kind), architecture_name(want));
  if (ck.quantized())
    fail("bench: {} {} is already quantized; give the unquantized checkpoint (each variant is quantized from it)",
         option, dir);
  return ck;
}

// The variant's checkpoint: the source itself, or its quantized copy (owned).
struct VariantCheckpoint {
  std::unique_ptr<Checkpoint> owned;
  const Checkpoint* ck = nullptr;
};
VariantCheckpoint variant_checkpoint(const Checkpoint& source, const Variant& v) {
  VariantCheckpoint r;
  r.ck = &source;
  if (*v.method) {
    quant::QuantizeResult q = quant::quantize_checkpoint(source, quantize_options(v));
    r.owned = std::make_unique<Checkpoint>(std::move(q.checkpoint));
    r.ck = r.owned.get();
  }
  return r;
}

// gpt2q's own accounting of the variant: GPT2Model::total_weight_bytes of the
// same checkpoint built on the CPU. For fp16 / bf16 (an fp32 checkpoint that
// the GPU converts at load) the CPU builds the checkpoint cast to that dtype
// (`gpt2q quantize --method fp16|bf16`), which it holds as 16-bit.
std::pair<size_t, std::string> expected_weight_bytes(const Checkpoint& source, const Checkpoint& ck, const Variant& v) {
  if (!*v.method && v.compute != DType::F32) {
    quant::QuantizeOptions o;
    o.method = v.compute == DType::F16 ? "fp16" : "bf16";
    const auto cast = quant::quantize_checkpoint(source, o);
    return {GPT2Model::from_checkpoint(cast.checkpoint)->total_weight_bytes(),
            fmt::format("the checkpoint cast to {} (gpt2q quantize --method {}), built on the CPU", o.method,
                        o.method)};
  }
  return {GPT2Model::from_checkpoint(ck)->total_weight_bytes(), "the same checkpoint built on the CPU"};
}

std::string compute_name(DType d) { return d == DType::F16 ? "fp16" : d == DType::BF16 ? "bf16" : "fp32"; }

std::string describe(const Checkpoint& ck, const Variant& v) {
  const std::string compute = compute_name(v.compute);
  if (!ck.quantized())
    return v.compute == DType::F32 ? "fp32 weights and compute"
                                   : fmt::format("fp32 checkpoint, weights converted to {} at load, {} compute",
                                                 compute, compute);
  return fmt::format("{}; {} compute on the GPU",
                     quant::QuantizationConfig::from_json(ck.quantization_config, v.setup).describe(), compute);
}

// Runs one measurement; an exception is recorded in the row ("errors") and
// the run goes on: the GPU run cannot be repeated, so a failure of one
// variant or phase must not cost the others.
void attempt(json& row, const std::string& what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    row["errors"].push_back(fmt::format("{}: {}", what, e.what()));
    log_line(fmt::format("{}: {} FAILED: {}", row["setup"].get<std::string>(), what, e.what()));
  }
}

std::string cell(const json& row, const char* key, const char* f, double scale = 1) {
  if (!row.contains(key) || !row[key].is_number()) return "-";
  return fmt::format(fmt::runtime(f), row[key].get<double>() * scale);
}

void print_table(const json& doc) {
  fmt::print("device: {}\n", doc["device_line"].get<std::string>());
  fmt::print("{:<21} {:>10} {:>13} {:>10} {:>9} {:>9} {:>8} {:>10} {:>11}\n", "variant", "b1 ms", "b256 samples/s",
             "weights MB", "peak MB", "ppl s", "ppl", "decode t/s", "b1 = fp32");
  for (const json& r : doc["rows"]) {
    std::string agree = "-";
    if (r.contains("agreement_with_fp32")) agree = fmt::format("{:.3f}", r["agreement_with_fp32"].get<double>());
    fmt::print("{:<21} {:>10} {:>13} {:>10} {:>9} {:>9} {:>8} {:>10} {:>11}\n", r["setup"].get<std::string>(),
               cell(r, "batch1_ms", "{:.3f}"), cell(r, "batch256_samples_per_s", "{:.0f}"),
               cell(r, "weights_bytes", "{:.1f}", 1e-6), cell(r, "peak_bytes", "{:.1f}", 1e-6),
               cell(r, "ppl_seconds", "{:.2f}"), cell(r, "ppl", "{:.4g}"), cell(r, "decode_tokens_per_s", "{:.0f}"),
               agree);
    for (const json& e : r["errors"]) fmt::print("  error: {}\n", e.get<std::string>());
  }
  fmt::print("(b1: batch 1 mean ms/sample over {} texts at real length; b256: {} texts in batches of {}; MB = 1e6 "
             "bytes; b1 = fp32: batch-1 predictions equal to gpt2q fp32's)\n",
             doc["settings"]["batch1_n"].get<int64_t>(), doc["settings"]["batch256_n"].get<int64_t>(), kBatch);
}

}  // namespace

const char* gpu_bench_variant_names() {
  return "fp32, fp16, bf16, int8-tensor, llm-int8, nf4, nf4-dq:bf16-compute, fp4";
}

void run_gpu_bench(const GpuBenchArgs& a) {
  // The device first: without a GPU this is the one error line, before any work.
  DeviceArgs dev;
  dev.device = a.device;
  const Placement gpu = resolve_placement(dev, Checkpoint{});
  const std::vector<const Variant*> variants = parse_variants(a.method);
  const Phases ph = parse_skip(a.skip);
  if (a.n1 < 1 || a.n256 < 1) fail("bench: --n1 and --n256 must be at least 1");
  if (a.ppl_windows < 0 || a.decode_runs < 1) fail("bench: --ppl-windows must be >= 0 and --decode-runs >= 1");
  if (ph.classify() && a.data.empty()) fail("bench --device cuda: --data AGNEWS_CSV is needed (or --skip classify)");
  if (ph.ppl && a.text.empty()) fail("bench --device cuda: --text WIKITEXT is needed (or --skip ppl)");
  if (!a.lm_model.empty() && !ph.lm()) fail("bench: --lm-model is given but ppl and decode are skipped");

  const auto t_load = BenchClock::now();
  Checkpoint cls, lm;
  if (ph.classify())
    cls = a.model.empty() ? synthetic_source(a.geometry, ModelKind::SequenceClassification)
                          : load_source(a.model, ModelKind::SequenceClassification, "--model");
  if (ph.lm())
    lm = a.lm_model.empty() ? synthetic_source(a.geometry, ModelKind::CausalLM)
                            : load_source(a.lm_model, ModelKind::CausalLM, "--lm-model");
  std::optional<Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    tok = Tokenizer::load(a.tokenizer);
  } else if (!a.model.empty() || !a.lm_model.empty()) {
    tok = load_tokenizer_for(a.model.empty() ? a.lm_model : a.model, std::nullopt);
  } else {
    fail("bench --device cuda: --tokenizer DIR is needed");
  }
  for (const Checkpoint* ck : {&cls, &lm})
    if (!ck->tensors.empty() && tok->vocab_size() > ck->config.vocab_size)
      fail("bench: the tokenizer has {} tokens but {} has a vocab_size of {}", tok->vocab_size(), ck->dir.string(),
           ck->config.vocab_size);

  Data d;
  json data_info = json::object();
  if (ph.classify()) {
    const Dataset all = load_dataset(a.data, guess_data_format(a.data));
    const int64_t need = std::max(ph.batch1 ? a.n1 : 0, ph.batch256 ? a.n256 : 0);
    if (static_cast<int64_t>(all.rows.size()) < need)
      fail("bench: {}: {} texts, {} needed (--n1 {}, --n256 {})", a.data, all.rows.size(), need, a.n1, a.n256);
    Dataset sub;
    sub.source = all.source;
    sub.rows.assign(all.rows.begin(), all.rows.begin() + need);
    const int64_t max_length = std::min(kMaxLength, cls.config.n_positions);
    d.seqs = tokenize_for_classification(*tok, sub, max_length);
    data_info = {{"agnews", a.data}, {"max_length", max_length}};
    if (ph.batch1)
      data_info.update({{"batch1_texts", a.n1}, {"batch1_mean_tokens", mean_length(d.seqs, size_t(a.n1))}});
    if (ph.batch256)
      data_info.update({{"batch256_texts", a.n256}, {"batch256_mean_tokens", mean_length(d.seqs, size_t(a.n256))}});
  }
  if (ph.ppl) {
    d.wiki = tok->encode(read_text_file(a.text), a.text);
    if (d.wiki.size() < 2) fail("bench: {}: {} token(s); perplexity needs at least 2", a.text, d.wiki.size());
    data_info.update({{"wikitext", a.text}, {"wikitext_tokens", d.wiki.size()}});
  }
  if (ph.decode) {
    d.prompt = tok->encode(kDecodePrompt);
    if (static_cast<int64_t>(d.prompt.size()) + kDecodeNew > lm.config.n_positions)
      fail("bench: the decode prompt ({} tokens) + {} new tokens exceed n_positions {}", d.prompt.size(), kDecodeNew,
           lm.config.n_positions);
    data_info.update({{"decode_prompt", kDecodePrompt},
                      {"decode_prompt_ids", d.prompt},
                      {"decode_prompt_as_peers", d.prompt == kDecodePromptIds}});
  }
  const double load_s = seconds_since(t_load);

  const json dj = device_json(gpu);
  json device = {{"placement", dj}};
  if (dj.contains("gpu")) {
    const json& g = dj["gpu"];
    device.update({{"name", g["name"]}, {"capability", g["compute_capability"]}, {"driver", g["driver"]},
                   {"cuda", g["cuda_runtime"]}, {"multiprocessors", g["multiprocessors"]},
                   {"memory_bytes", g["memory_bytes"]}});
  }
  json doc = {{"tool", "gpt2q bench --device cuda"},
              {"commit", build_git_commit()},
              {"command", exact_command_line("gpt2q bench --device " + a.device)},
              {"device", device},
              {"device_line", device_line(gpu)},
              {"settings",
               {{"variants", json::array()}, {"batch1_n", a.n1}, {"batch256_n", a.n256}, {"batch_size", kBatch},
                {"max_length", kMaxLength}, {"ppl_max_length", kPplMaxLength}, {"ppl_stride", kPplStride},
                {"ppl_windows", a.ppl_windows}, {"decode_new_tokens", kDecodeNew}, {"decode_runs", a.decode_runs},
                {"cuda_graphs", cuda_graphs_enabled()},
                {"phases",
                 {{"batch1", ph.batch1}, {"batch256", ph.batch256}, {"ppl", ph.ppl}, {"decode", ph.decode}}}}},
              {"source",
               {{"classifier", ph.classify() ? cls.dir.string() : ""}, {"lm", ph.lm() ? lm.dir.string() : ""},
                {"synthetic_seed", 1234}}},
              {"data", data_info},
              {"load_seconds", load_s},
              {"rows", json::array()}};
  for (const Variant* v : variants) {
    doc["settings"]["variants"].push_back(v->setup);
    doc["rows"].push_back({{"setup", v->setup},
                           {"precision", v->precision},
                           {"compute_dtype", compute_name(v->compute)},
                           {"errors", json::array()}});
  }
  const auto t_all = BenchClock::now();
  auto save = [&] {
    doc["elapsed_seconds"] = seconds_since(t_all);
    if (!a.out.empty()) write_file_atomic(a.out, doc.dump(1) + "\n");
  };
  save();
  log_line(fmt::format("{}; {} variant(s)", device_line(gpu), variants.size()));

  // Classifier: one variant on the device at a time, so that its weights and
  // peak are its own.
  if (ph.classify()) {
    for (size_t i = 0; i < variants.size(); ++i) {
      const Variant& v = *variants[i];
      json& row = doc["rows"][i];
      attempt(row, "classifier", [&] {
        const auto t0 = BenchClock::now();
        const VariantCheckpoint vc = variant_checkpoint(cls, v);
        row["description"] = describe(*vc.ck, v);
        const auto [expected, how] = expected_weight_bytes(cls, *vc.ck, v);
        row["weights_bytes_expected"] = expected;
        row["weights_bytes_expected_how"] = how;
        device_synchronize(Device::CUDA);
        const size_t before = device_memory_stats(Device::CUDA).used;
        auto model = GPT2Model::from_checkpoint(*vc.ck, Placement{Device::CUDA, v.compute});
        device_synchronize(Device::CUDA);
        row["weights_bytes_allocated"] = device_memory_stats(Device::CUDA).used - before;
        row["weights_bytes"] = model->total_weight_bytes();
        json comp = json::object();
        for (const auto& [name, bytes] : model->weight_bytes()) comp[name] = bytes;
        row["weights_bytes_by_component"] = comp;
        row["prepare_seconds"] = seconds_since(t0);
        log_line(fmt::format("{}: {} — {} weight bytes on the device ({} allocated, {} on the CPU)", v.setup,
                             row["description"].get<std::string>(), model->total_weight_bytes(),
                             row["weights_bytes_allocated"].get<size_t>(), expected));
        if (ph.batch1) attempt(row, "batch1", [&] { run_batch1(*model, d, a.n1, row); });
        if (ph.batch256) attempt(row, "batch256", [&] { run_batch256(*model, d, a.n256, row); });
      });
      save();
    }
    // Agreement of each variant's batch-1 predictions with gpt2q fp32's.
    for (const json& ref : doc["rows"]) {
      if (ref["setup"] != "fp32" || !ref.contains("argmax_first_n")) continue;
      const json& want = ref["argmax_first_n"];
      for (json& row : doc["rows"])
        if (row.contains("argmax_first_n") && row["argmax_first_n"].size() == want.size()) {
          size_t same = 0;
          for (size_t k = 0; k < want.size(); ++k) same += row["argmax_first_n"][k] == want[k];
          row["agreement_with_fp32"] = double(same) / double(want.size());
        }
    }
    save();
  }

  // LM: every variant built first (the decode runs are short, the
  // perplexity passes long: all decodes come first, so that a run cut short
  // loses the fewest figures).
  if (ph.lm()) {
    std::vector<std::unique_ptr<GPT2Model>> lms(variants.size());
    for (size_t i = 0; i < variants.size(); ++i) {
      json& row = doc["rows"][i];
      attempt(row, "lm", [&] {
        const VariantCheckpoint vc = variant_checkpoint(lm, *variants[i]);
        lms[i] = GPT2Model::from_checkpoint(*vc.ck, Placement{Device::CUDA, variants[i]->compute});
        row["lm_weights_bytes"] = lms[i]->total_weight_bytes();
      });
    }
    if (ph.decode)
      for (size_t i = 0; i < variants.size(); ++i)
        if (lms[i]) {
          attempt(doc["rows"][i], "decode", [&] { run_decode(*lms[i], d, a.decode_runs, doc["rows"][i]); });
          save();
        }
    if (ph.ppl)
      for (size_t i = 0; i < variants.size(); ++i)
        if (lms[i]) {
          attempt(doc["rows"][i], "perplexity", [&] { run_ppl(*lms[i], d, a.ppl_windows, doc["rows"][i]); });
          save();
        }
  }
  save();
  if (a.json)
    print_json(doc);
  else
    print_table(doc);
  size_t failed = 0;
  for (const json& row : doc["rows"]) failed += row["errors"].size();
  if (failed) fail("bench: {} measurement(s) failed (the rows' \"errors\" say which and why)", failed);
}

}  // namespace gpt2q::cli
