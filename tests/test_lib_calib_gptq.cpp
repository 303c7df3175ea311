// calib/gptq_blocks.h: the calibration segments, the Hessian error, and the
// block-by-block GPTQ against a reference built from GPT2Model's own traced
// forward (block 0, whose inputs no quantization has touched yet).
#include "calib/gptq_blocks.h"
#include "core/splitmix64.h"
#include "ops/ops.h"
#include "quant/conv1d_weight.h"
#include "quant/quantized_checkpoint.h"
#include "test_lib_quant_support.h"

using namespace gpt2q;
using namespace gpt2q::test;

namespace {

TEST(CalibrationSegments, SeededInRangeAndCheckedForLength) {
  std::vector<int32_t> tokens(1000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i);
  const auto a = calib::calibration_segments(tokens, 64, 100, 5, "t.txt");
  ASSERT_EQ(a.size(), 64u);
  std::set<int32_t> starts;
  for (const auto& s : a) {
    ASSERT_EQ(s.size(), 100u);
    EXPECT_GE(s.front(), 0);
    EXPECT_LE(s.front(), 1000 - 100 - 1);  // the reference's randint(0, n - seqlen - 1)
    for (size_t t = 1; t < s.size(); ++t) EXPECT_EQ(s[t], s[0] + static_cast<int32_t>(t));  // contiguous
    starts.insert(s.front());
  }
  EXPECT_GT(starts.size(), 50u);
  EXPECT_EQ(calib::calibration_segments(tokens, 64, 100, 5, "t.txt"), a);
  EXPECT_NE(calib::calibration_segments(tokens, 64, 100, 6, "t.txt"), a);
  EXPECT_EQ(error_of([&] { calib::calibration_segments(tokens, 4, 1000, 0, "t.txt"); }),
            "t.txt: 1000 tokens, too short for calibration segments of 1000 tokens (needs at least 1001; lower "
            "--seqlen or give more text)");
  EXPECT_EQ(calib::calibration_segments(tokens, 1, 999, 0, "t.txt").front().front(), 0);
}

TEST(HessianError, MatchesTheDefinition) {
  const int64_t out = 5, in = 7;
  const auto w = normal_values(out * in, 1.0f, 1), q = normal_values(out * in, 1.0f, 2), x = normal_values(in * in, 1.0f, 3);
  std::vector<double> h(in * in);
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < in; ++j)
      for (int64_t k = 0; k < in; ++k) h[i * in + j] += static_cast<double>(x[k * in + i]) * x[k * in + j];
  double want = 0;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j)
        want += (static_cast<double>(w[o * in + i]) - q[o * in + i]) * h[i * in + j] *
                (static_cast<double>(w[o * in + j]) - q[o * in + j]);
  EXPECT_NEAR(calib::hessian_error(w.data(), q.data(), out, in, h), want, 1e-12 * std::abs(want));
}

// Block 0 sees the embeddings, so its four Hessians are those of the fp32
// model's own forward (ForwardTrace keeps each projection's input). GPTQ
// from them must give the same codes; later blocks must differ from such an
// unquantized reference (their inputs come from the quantized blocks).
TEST(GptqBlocks, BlockZeroMatchesTheModelsTracedForwardAndBeatsRtn) {
  const GPT2Config c = small_quant_config();  // 128 wide, 2 layers, vocab 500, 32 positions
  const Checkpoint ck = Checkpoint::load(write_small_checkpoint("calib_src", c));
  std::vector<int32_t> tokens(2000);
  uint64_t s = 1;
  for (auto& t : tokens) t = static_cast<int32_t>((s = splitmix64(s)) % c.vocab_size);
  const auto segments = calib::calibration_segments(tokens, 6, 32, 0, "tokens");
  quant::GptqOptions o;
  o.quant = {4, 32, false};
  std::set<std::string> selected;
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (const char* m : {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"})
      selected.insert(fmt::format("h.{}.{}.weight", l, m));
  const calib::GptqBlocksResult r = calib::gptq_quantize_blocks(ck, selected, o, segments);
  ASSERT_EQ(r.weights.size(), 8u);
  ASSERT_EQ(r.layers.size(), 8u);
  for (const auto& l : r.layers) EXPECT_LT(l.gptq_error, l.rtn_error) << l.name;

  auto model = GPT2Model::from_checkpoint(ck);
  TokenBatch tb = TokenBatch::from_sequences(segments, 0);
  ForwardTrace trace;
  model->forward_traced(tb, TraceDropout{}, trace);
  const LayerTrace& a = trace.layers[0];
  Tensor fc = a.fc_pre.clone();
  ops::gelu_new(fc);
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"attn.c_attn", &a.ln1}, {"attn.c_proj", &a.attn}, {"mlp.c_fc", &a.ln2}, {"mlp.c_proj", &fc}};
  for (const auto& [m, x] : inputs) {
    const std::string name = fmt::format("h.0.{}.weight", m);
    const auto lw = quant::linear_weights_from_conv1d(ck.get_f32(name), Tensor(), name);
    quant::HessianAccumulator h(lw.in);
    h.add(x->data<float>(), x->numel() / lw.in);
    const auto hess = h.hessian();
    const quant::GroupQuantized want = quant::quantize_gptq(lw.weight.data(), lw.out, lw.in, hess.data(), o, name);
    const quant::GroupQuantized& got = r.weights.at(name);
    int64_t same = 0;
    for (size_t i = 0; i < want.codes.size(); ++i) same += want.codes[i] == got.codes[i];
    // Summation order may differ between the two forwards (fused GELU, the
    // residual add): a code on a rounding boundary may flip, nothing more.
    EXPECT_GE(static_cast<double>(same), 0.999 * static_cast<double>(want.codes.size())) << name;
    EXPECT_EQ(quant::group_quantized_as_stored(want).scales, got.scales) << name;
  }
}

}  // namespace
