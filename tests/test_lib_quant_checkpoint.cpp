// Quantized checkpoints end to end: quantize -> save -> load round trips,
// logits against an independently dequantized fp32 reference, exact memory
// accounting, and tensor selection.
#include <cmath>

#include "layers/linear_factory.h"
#include "layers/quant_linear.h"
#include "ops/ops.h"
#include "quant/llm_int8.h"
#include "quant/quant_config.h"
#include "test_lib_quant_support.h"

using namespace gpt2q;
using namespace gpt2q::test;
namespace fs = std::filesystem;

namespace {

struct MethodCase {
  std::string name;
  quant::QuantizeOptions opt;
  int64_t n_embd = 128;
};

void PrintTo(const MethodCase& m, std::ostream* os) { *os << m.name; }

quant::QuantizeOptions options(const std::string& method) {
  quant::QuantizeOptions o;
  o.method = method;
  return o;
}

std::vector<MethodCase> method_cases() {
  std::vector<MethodCase> v;
  v.push_back({"int8_affine", options("int8-tensor")});
  auto sym = options("int8-tensor");
  sym.symmetric = true;
  v.push_back({"int8_symmetric", sym});
  auto chan = options("int8-tensor");
  chan.per_channel = true;
  v.push_back({"int8_channel", chan});
  auto chan_sym = chan;
  chan_sym.symmetric = true;
  v.push_back({"int8_channel_symmetric", chan_sym});
  v.push_back({"llm_int8", options("llm-int8")});
  auto llm_low = options("llm-int8");
  llm_low.threshold = 0.5f;  // many outlier columns: the fp32 decomposition path runs
  v.push_back({"llm_int8_threshold_0_5", llm_low});
  auto llm_off = options("llm-int8");
  llm_off.threshold = 0.0f;
  v.push_back({"llm_int8_threshold_0", llm_off});
  v.push_back({"nf4", options("nf4")});
  v.push_back({"fp4", options("fp4")});
  auto nf4dq = options("nf4");
  nf4dq.double_quant = true;
  v.push_back({"nf4_double_quant", nf4dq});
  auto fp4dq = options("fp4");
  fp4dq.double_quant = true;
  fp4dq.block_size = 128;
  v.push_back({"fp4_double_quant_block128", fp4dq});
  auto nf4_32 = options("nf4");
  nf4_32.block_size = 32;
  v.push_back({"nf4_block32_rows_across_blocks", nf4_32, 96});
  auto nf4dq_96 = nf4dq;
  v.push_back({"nf4_double_quant_rows_across_blocks", nf4dq_96, 96});
  // Group-wise integers in GPTQ's layout (rtn; gptq stores the same layout).
  auto rtn = [](int bits, int64_t group, bool symmetric) {
    auto o = options("rtn");
    o.bits = bits;
    o.group_size = group;
    o.symmetric = symmetric;
    return o;
  };
  v.push_back({"rtn4_g32", rtn(4, 32, false)});
  v.push_back({"rtn3_g128", rtn(3, 128, false)});
  v.push_back({"rtn4_per_channel_symmetric", rtn(4, -1, true)});
  v.push_back({"rtn8_g64", rtn(8, 64, false)});
  v.push_back({"rtn2_g48_partial_groups", rtn(2, 48, false), 96});
  // The study's FFN-only variant: attention projections stay fp16, in memory too.
  for (MethodCase mc : {MethodCase{"nf4", options("nf4")}, MethodCase{"llm_int8", options("llm-int8")},
                        MethodCase{"rtn4_g32", rtn(4, 32, false)}}) {
    mc.name += "_ffn_only";
    mc.opt.include = {"h.*.mlp.*"};
    v.push_back(mc);
  }
  // --all-tensors: wte (also the tied LM head) and wpe quantized too.
  for (MethodCase mc : {MethodCase{"int8_affine", options("int8-tensor")}, MethodCase{"int8_channel", chan},
                        MethodCase{"llm_int8", options("llm-int8")}, MethodCase{"nf4", options("nf4")},
                        MethodCase{"fp4_double_quant_block128", fp4dq}}) {
    mc.name += "_all_tensors";
    mc.opt.all_tensors = true;
    v.push_back(mc);
  }
  return v;
}

class QuantizedCheckpointTest : public ::testing::TestWithParam<MethodCase> {};

// Bytes the quantized format of a weight [out, in] holds, from the formulas
// in docs/quantization.md (not from the library).
size_t expected_weight_bytes(const quant::QuantizeOptions& o, int64_t out, int64_t in) {
  const size_t n = static_cast<size_t>(out * in);
  if (o.method == "int8-tensor") {
    const size_t groups = o.per_channel ? static_cast<size_t>(out) : 1;
    return n + groups * 4 + (o.symmetric ? 0 : groups * 4);
  }
  if (o.method == "llm-int8") return n + 4 * static_cast<size_t>(out) + 4 * static_cast<size_t>(out);
  if (o.method == "rtn") {  // qweight + qzeros (I32) + scales (F16) + g_idx (I32)
    const int64_t groups = o.group_size < 0 ? 1 : (in + o.group_size - 1) / o.group_size;
    return static_cast<size_t>(in * o.bits / 32 * out * 4 + groups * (out * o.bits / 32) * 4 + groups * out * 2 +
                               in * 4);
  }
  const size_t blocks = (n + o.block_size - 1) / o.block_size;
  if (!o.double_quant) return (n + 1) / 2 + 4 * blocks;
  return (n + 1) / 2 + blocks + 4 * ((blocks + 255) / 256) + 4;
}

// A Linear running the scalar LLM.int8 reference on a weight read from the
// raw stored tensors (MODULE.weight [out, in], MODULE.SCB, MODULE.bias if any).
class ReferenceLlmInt8 final : public Linear {
 public:
  ReferenceLlmInt8(const Checkpoint& q, const std::string& module, int64_t in, int64_t out, float threshold) {
    w_.in = in;
    w_.out = out;
    const int8_t* cb = static_cast<const int8_t*>(q.get(module + ".weight").raw());
    w_.cb.assign(cb, cb + in * out);
    const float* scb = q.get(module + ".SCB").data<float>();
    w_.scb.assign(scb, scb + out);
    w_.cb_row_sums.assign(static_cast<size_t>(out), 0);
    for (int64_t j = 0; j < out; ++j)
      for (int64_t k = 0; k < in; ++k) w_.cb_row_sums[j] += w_.cb[j * in + k];
    if (q.has(module + ".bias")) {
      Tensor b = to_f32(q.get(module + ".bias"));
      bias_.assign(b.data<float>(), b.data<float>() + out);
    }
    opt_.threshold = threshold;
  }
  int64_t in_features() const override { return w_.in; }
  int64_t out_features() const override { return w_.out; }
  void forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue = {}) const override {
    const int64_t rows = x.numel() / w_.in;
    if (epilogue.accumulate) {
      Tensor t = Tensor::empty(y.shape(), DType::F32);
      quant::llm_int8_matmul_reference(w_, bias_.empty() ? nullptr : bias_.data(), x.data<float>(), rows, opt_,
                                       t.data<float>());
      ops::add_inplace(y, t);  // as the model does: the fast ops, not the scalar ones
      return;
    }
    quant::llm_int8_matmul_reference(w_, bias_.empty() ? nullptr : bias_.data(), x.data<float>(), rows, opt_,
                                     y.data<float>());
    if (epilogue.activation == ops::Activation::gelu_new) ops::gelu_new(y);
    if (epilogue.activation == ops::Activation::gelu_erf) ops::gelu_erf(y);
  }
  size_t bytes() const override { return 0; }
  std::string format() const override { return "reference llm-int8"; }
  const Placement& placement() const override { return placement_; }

 private:
  quant::LlmInt8Weight w_;
  std::vector<float> bias_;
  quant::LlmInt8Options opt_;
  Placement placement_;
};

TEST_P(QuantizedCheckpointTest, SaveLoadRoundTripIsBitIdentical) {
  const MethodCase& mc = GetParam();
  const GPT2Config c = small_quant_config(mc.n_embd);
  const fs::path src = write_small_checkpoint("qck_src", c);
  const Checkpoint source = Checkpoint::load(src);
  const quant::QuantizeResult r = quant::quantize_checkpoint(source, mc.opt);
  const fs::path out = temp_dir("qck_out") / "q";
  quant::save_quantized_checkpoint(r.checkpoint, out, src);
  const Checkpoint loaded = Checkpoint::load(out);

  EXPECT_TRUE(loaded.quantized());
  EXPECT_EQ(loaded.quantized_weights, r.checkpoint.quantized_weights);
  const bool ffn_only = !mc.opt.include.empty();
  EXPECT_EQ(loaded.quantized_weights.size(), (ffn_only ? 2u : 4u) * c.n_layer + (mc.opt.all_tensors ? 2 : 0));
  EXPECT_EQ(loaded.quantized_weights.count("wte.weight") == 1, mc.opt.all_tensors);
  ASSERT_EQ(loaded.tensors.size(), r.checkpoint.tensors.size());
  for (const auto& [name, t] : r.checkpoint.tensors) {
    ASSERT_TRUE(loaded.has(name)) << name;
    EXPECT_TRUE(same_bytes(t, loaded.get(name))) << name;
  }
  EXPECT_EQ(loaded.quantization_config, r.checkpoint.quantization_config);
  EXPECT_NO_THROW(quant::validate_quantized_checkpoint(loaded));

  auto in_memory = GPT2Model::from_checkpoint(r.checkpoint);
  auto from_disk = GPT2Model::load(out);
  const TokenBatch tb = small_batch(c);
  const Tensor a = in_memory->lm_logits(tb), b = from_disk->lm_logits(tb);
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  for (const auto& bw : from_disk->blocks()) {
    EXPECT_NE(bw.c_fc->format(), "f32");
    EXPECT_EQ(bw.c_attn->format() == "f16", ffn_only);
  }
}

TEST_P(QuantizedCheckpointTest, LogitsMatchDequantizedReference) {
  const MethodCase& mc = GetParam();
  const GPT2Config c = small_quant_config(mc.n_embd);
  const fs::path src = write_small_checkpoint("qref_src", c);
  const fs::path out = temp_dir("qref_out") / "q";
  quant::save_quantized_checkpoint(quant::quantize_checkpoint(Checkpoint::load(src), mc.opt).checkpoint, out, src);
  const Checkpoint q = Checkpoint::load(out);
  auto model = GPT2Model::from_checkpoint(q);
  auto reference = GPT2Model::from_checkpoint(dequantized_reference(q));
  const bool llm = mc.opt.method == "llm-int8";
  if (llm) {
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const std::string p = fmt::format("h.{}.", l);
      auto& bw = reference->blocks()[l];
      auto make = [&](const std::string& m) -> std::unique_ptr<Linear> {
        // A layer left in fp16 runs the model's own 16-bit Linear here, so
        // that its summation order cannot flip an int8 code downstream (the
        // nf4 FFN-only case checks that Linear against fp32).
        if (!q.quantized_weights.count(p + m + ".weight")) return make_linear(q, p + m);
        const Shape s = block_linear_shape(c, p + m);
        return std::make_unique<ReferenceLlmInt8>(q, p + m, s[0], s[1], mc.opt.threshold);
      };
      bw.c_attn = make("attn.c_attn");
      bw.attn_c_proj = make("attn.c_proj");
      bw.c_fc = make("mlp.c_fc");
      bw.mlp_c_proj = make("mlp.c_proj");
    }
  }
  const TokenBatch tb = small_batch(c);
  const Tensor got = model->lm_logits(tb);
  Tensor want = reference->lm_logits(tb);
  if (llm && mc.opt.all_tensors) {
    // The tied head is LLM.int8 too: run its reference on the reference's
    // final hidden states (the embedding lookup reads the dequantized rows).
    const Tensor h = reference->hidden_states(tb);
    const int64_t rows = tb.batch * tb.seq;
    ReferenceLlmInt8 head(q, "wte", c.n_embd, c.vocab_size, mc.opt.threshold);
    want = Tensor::empty({tb.batch, tb.seq, c.vocab_size}, DType::F32);
    Tensor want_rows = want.view({rows, c.vocab_size});
    head.forward(h.view({rows, c.n_embd}), want_rows);
  }
  // LLM.int8's fast path is bit-identical to its scalar reference, so the
  // final hidden states must be too. The other kernels differ from a
  // dequantized fp32 GEMM only in summation order, and so does a tied head
  // kept in fp16 (decoded tile by tile, then sgemm) from the reference's
  // one fp32 sgemm: on CPUs where OpenBLAS picks its Haswell kernels the
  // two orders differ in the last bits.
  if (llm) {
    const Tensor h_got = model->hidden_states(tb), h_want = reference->hidden_states(tb);
    EXPECT_EQ(std::memcmp(h_got.raw(), h_want.raw(), h_got.nbytes()), 0);
  }
  const bool head_is_llm_int8 = llm && mc.opt.all_tensors;
  const float tol = head_is_llm_int8 ? 0.0f : 2e-5f * std::max(1.0f, max_abs(want));
  EXPECT_LE(max_abs_diff(got, want), tol);

  // Quantization changed the model (the comparison above is not vacuous).
  auto original = GPT2Model::load(src);
  EXPECT_GT(max_abs_diff(original->lm_logits(tb), got), 0.0f);
}

TEST_P(QuantizedCheckpointTest, HeldBytesAreExact) {
  const MethodCase& mc = GetParam();
  const GPT2Config c = small_quant_config(mc.n_embd);
  const fs::path src = write_small_checkpoint("qmem_src", c);
  auto model = GPT2Model::from_checkpoint(quant::quantize_checkpoint(Checkpoint::load(src), mc.opt).checkpoint);
  const int64_t C = c.n_embd, I = c.inner();
  // Kept tensors are fp16 on disk; wte and wpe stay fp16 in memory, the
  // LayerNorms become fp32, and each Linear holds its bias as fp32.
  size_t blocks = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    blocks += 4 * C * 4;  // ln_1, ln_2 weight and bias
    for (auto [in, out] : {std::pair{C, 3 * C}, {C, C}, {C, I}, {I, C}}) {
      const bool attn = in == C && (out == 3 * C || out == C);
      const bool kept = !mc.opt.include.empty() && attn;  // FFN-only: attention stays fp16
      blocks += (kept ? static_cast<size_t>(2 * in * out) : expected_weight_bytes(mc.opt, out, in)) + 4 * out;
    }
  }
  size_t wte = c.vocab_size * C * 2, wpe = c.n_positions * C * 2;
  if (mc.opt.all_tensors) {
    wte = expected_weight_bytes(mc.opt, c.vocab_size, C);
    wpe = expected_weight_bytes(mc.opt, c.n_positions, C);
  }
  const size_t ln_f = 2 * C * 4;
  std::map<std::string, size_t> got;
  for (const auto& [k, v] : model->weight_bytes()) got[k] = v;
  EXPECT_EQ(got["blocks"], blocks);
  EXPECT_EQ(got["wte"], wte);
  EXPECT_EQ(got["wpe"], wpe);
  EXPECT_EQ(got["ln_f"], ln_f);
  EXPECT_EQ(model->total_weight_bytes(), blocks + wte + wpe + ln_f);
}

INSTANTIATE_TEST_SUITE_P(Methods, QuantizedCheckpointTest, ::testing::ValuesIn(method_cases()),
                         [](const auto& info) { return info.param.name; });

// --- selection -----------------------------------------------------------

std::set<std::string> quantized_names(const quant::QuantizeOptions& o) {
  const GPT2Config c = small_quant_config();
  static const fs::path src = write_small_checkpoint("qsel_src", c);
  return quant::quantize_checkpoint(Checkpoint::load(src), o).checkpoint.quantized_weights;
}

TEST(QuantizeSelection, DefaultIsTheBlockLinears) {
  auto names = quantized_names(options("nf4"));
  EXPECT_EQ(names, (std::set<std::string>{"h.0.attn.c_attn.weight", "h.0.attn.c_proj.weight", "h.0.mlp.c_fc.weight",
                                          "h.0.mlp.c_proj.weight", "h.1.attn.c_attn.weight", "h.1.attn.c_proj.weight",
                                          "h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"}));
}

TEST(QuantizeSelection, IncludeGlobPicksTheFfnOnly) {
  auto o = options("llm-int8");
  o.include = {"h.*.mlp.*"};
  EXPECT_EQ(quantized_names(o), (std::set<std::string>{"h.0.mlp.c_fc.weight", "h.0.mlp.c_proj.weight",
                                                       "h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"}));
  o.include = {"transformer.h.1.attn.c_attn.weight"};  // the stored name matches too
  EXPECT_EQ(quantized_names(o), (std::set<std::string>{"h.1.attn.c_attn.weight"}));
}

TEST(QuantizeSelection, ExcludeRemovesFromTheDefault) {
  auto o = options("int8-tensor");
  o.exclude = {"h.0.*", "*.c_proj.*"};
  EXPECT_EQ(quantized_names(o), (std::set<std::string>{"h.1.attn.c_attn.weight", "h.1.mlp.c_fc.weight"}));
}

TEST(QuantizeSelection, SkipModulesTellTransformersWhatWasLeft) {
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qskip_src", c);
  auto o = options("nf4");
  auto cfg = quant::quantize_checkpoint(Checkpoint::load(src), o).checkpoint.quantization_config;
  EXPECT_TRUE(cfg["llm_int8_skip_modules"].is_null());  // transformers' default: lm_head
  o.include = {"h.*.mlp.*"};
  cfg = quant::quantize_checkpoint(Checkpoint::load(src), o).checkpoint.quantization_config;
  EXPECT_EQ(cfg["llm_int8_skip_modules"],
            nlohmann::json({"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_attn",
                            "transformer.h.1.attn.c_proj", "lm_head"}));
}

TEST(QuantizeSelection, PatternsThatMatchNothingAreErrors) {
  auto o = options("nf4");
  o.include = {"h.*.mpl.*"};
  EXPECT_NE(error_of([&] { quantized_names(o); }).find("--include 'h.*.mpl.*' matches no"), std::string::npos);
  o = options("nf4");
  o.exclude = {"nothing*"};
  EXPECT_NE(error_of([&] { quantized_names(o); }).find("--exclude 'nothing*' matches no"), std::string::npos);
  o = options("nf4");
  o.exclude = {"h.*"};
  EXPECT_NE(error_of([&] { quantized_names(o); }).find("leave no tensor"), std::string::npos);
}

TEST(QuantizeSelection, CastMethodsWriteNoQuantizationConfig) {
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qcast_src", c);
  auto o = options("bf16");
  o.all_tensors = true;
  const auto r = quant::quantize_checkpoint(Checkpoint::load(src), o);
  EXPECT_FALSE(r.checkpoint.quantized());
  for (const auto& [name, t] : r.checkpoint.tensors) EXPECT_EQ(t.dtype(), DType::BF16) << name;
  EXPECT_EQ(r.checkpoint.config.dtype, "bfloat16");
  EXPECT_TRUE(r.kept.empty());
}

TEST(QuantizeSelection, KeptTensorsFollowKeepDtype) {
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qkeep_src", c);
  auto o = options("nf4");
  const Checkpoint source = Checkpoint::load(src);
  for (DType keep : {DType::F16, DType::F32}) {
    o.keep_dtype = keep;
    const auto r = quant::quantize_checkpoint(source, o);
    EXPECT_EQ(r.checkpoint.get("wte.weight").dtype(), keep);
    EXPECT_EQ(r.checkpoint.get("h.0.mlp.c_fc.bias").dtype(), keep);
    EXPECT_EQ(r.checkpoint.get("h.0.ln_1.weight").dtype(), keep);
    // Per-tensor error of a kept fp32 copy is zero; the fp16 one is not.
    for (const auto& t : r.kept) EXPECT_EQ(t.mse == 0.0, keep == DType::F32) << t.name;
  }
}

TEST(QuantizeReport, ErrorStatisticsMatchAnIndependentComputation) {
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qstat_src", c);
  const Checkpoint source = Checkpoint::load(src);
  const auto r = quant::quantize_checkpoint(source, options("fp4"));
  const Checkpoint ref = dequantized_reference(r.checkpoint);
  ASSERT_EQ(r.tensors.size(), 8u);
  for (const auto& t : r.tensors) {
    const Tensor& w = source.get(t.name);
    const Tensor& d = ref.get(t.name);
    double se = 0, ss = 0, mx = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      const double e = static_cast<double>(d.data<float>()[i]) - w.data<float>()[i];
      se += e * e;
      ss += static_cast<double>(w.data<float>()[i]) * w.data<float>()[i];
      mx = std::max(mx, std::abs(e));
    }
    EXPECT_NEAR(t.mse, se / w.numel(), 1e-9 * se / w.numel()) << t.name;
    EXPECT_NEAR(t.sqnr_db, 10 * std::log10(ss / se), 1e-9) << t.name;
    EXPECT_EQ(t.max_abs_error, mx) << t.name;
    EXPECT_EQ(t.format, "fp4");
    EXPECT_GT(t.sqnr_db, 10.0);  // 4-bit: ~20 dB on uniform weights
  }
}

TEST(QuantizeCheckpoint, RefusesAnAlreadyQuantizedCheckpoint) {
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qtwice_src", c);
  const fs::path out = temp_dir("qtwice_out") / "q";
  quant::save_quantized_checkpoint(quant::quantize_checkpoint(Checkpoint::load(src), options("nf4")).checkpoint, out,
                                   src);
  EXPECT_NE(
      error_of([&] { quant::quantize_checkpoint(Checkpoint::load(out), options("nf4")); }).find("already quantized"),
      std::string::npos);
}

TEST(QuantizeCheckpoint, SaveIsAtomicAndRefusesToOverwrite) {
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qatomic_src", c);
  const auto r = quant::quantize_checkpoint(Checkpoint::load(src), options("nf4"));
  const fs::path parent = temp_dir("qatomic_out");
  const fs::path out = parent / "q";
  quant::save_quantized_checkpoint(r.checkpoint, out, src);
  EXPECT_NE(error_of([&] { quant::save_quantized_checkpoint(r.checkpoint, out, src); }).find("already exists"),
            std::string::npos);
  // Only the finished directory is left: no temporary siblings.
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(parent)) entries += (void(e), 1);
  EXPECT_EQ(entries, 1u);
}

}  // namespace

namespace {

DType compute_of(const Linear& l) {
  if (const auto* q = dynamic_cast<const QuantLinear*>(&l)) return q->compute_dtype();
  return DType::F64;  // neither: a wrong layer type
}

}  // namespace

TEST(QuantizeCheckpoint, Bf16ComputeComesFromTheConfigAndStaysClose) {
  // compute dtype bf16, written by quantize and read back by the loader: the
  // block linears run it, and the logits move by bf16 rounding only.
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qbf_src", c);
  const Checkpoint source = Checkpoint::load(src);
  const TokenBatch tb = small_batch(c);  // 30 rows: the tiled path
  for (const std::string method : {"int8-tensor", "nf4", "fp4"}) {
    SCOPED_TRACE(method);
    quant::QuantizeOptions o;
    o.method = method;
    const Tensor f32 = GPT2Model::from_checkpoint(quant::quantize_checkpoint(source, o).checkpoint)->lm_logits(tb);
    o.compute_dtype = DType::BF16;
    const fs::path out = temp_dir("qbf_out") / method;
    quant::save_quantized_checkpoint(quant::quantize_checkpoint(source, o).checkpoint, out, src);
    auto model = GPT2Model::load(out);
    for (const auto& bw : model->blocks()) {
      EXPECT_EQ(compute_of(*bw.c_attn), DType::BF16);
      EXPECT_EQ(compute_of(*bw.mlp_c_proj), DType::BF16);
    }
    const Tensor bf = model->lm_logits(tb);
    const float d = max_abs_diff(bf, f32);
    EXPECT_GT(d, 0.0f);
    EXPECT_LE(d, 2e-2f * std::max(1.0f, max_abs(f32)));
  }
}
