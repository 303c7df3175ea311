// Checkpoints in GPTQ's layout (quantize --method rtn / gptq): what is
// stored and how it loads (packed, group_int kernels), tools/gptq_dequant.py
// reading them back exactly, and the errors of a damaged layout. The
// logits-against-reference and byte checks of every method are in
// test_lib_quant_checkpoint (cases rtn*).
#include <cstdlib>
#include <fstream>

#include "core/half.h"
#include "layers/quant_linear.h"
#include "quant/quant_config.h"
#include "test_lib_quant_support.h"

using namespace gpt2q;
using namespace gpt2q::test;
namespace fs = std::filesystem;

namespace {

quant::QuantizeOptions rtn(int bits, int64_t group) {
  quant::QuantizeOptions o;
  o.method = "rtn";
  o.bits = bits;
  o.group_size = group;
  return o;
}

fs::path saved(const std::string& tag, const quant::QuantizeOptions& o, const GPT2Config& c = small_quant_config()) {
  const fs::path src = write_small_checkpoint(tag + "_src", c);
  const fs::path out = temp_dir(tag) / "q";
  quant::save_quantized_checkpoint(quant::quantize_checkpoint(Checkpoint::load(src), o).checkpoint, out, src);
  return out;
}

// Copies checkpoint `dir` with its model.safetensors tensors changed by `edit`
// (stored names), for the damaged-layout errors.
fs::path edited(const fs::path& dir, const std::string& tag,
                const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  const fs::path out = temp_dir(tag) / "q";
  fs::create_directories(out);
  fs::copy_file(dir / "config.json", out / "config.json");
  const SafetensorsFile f = SafetensorsFile::open(dir / "model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors(f.tensors.begin(), f.tensors.end());
  edit(tensors);
  write_safetensors(out / "model.safetensors", tensors, {{"format", "pt"}});
  return out;
}

TEST(GptqCheckpoint, StoresTheLayoutAndConfigTransformersReads) {
  const fs::path out = saved("gptq_ck_layout", rtn(4, 32));
  const Checkpoint q = Checkpoint::load(out);
  const auto& j = q.quantization_config;
  EXPECT_EQ(j.at("quant_method"), "gptq");
  EXPECT_EQ(j.at("bits"), 4);
  EXPECT_EQ(j.at("group_size"), 32);
  EXPECT_EQ(j.at("sym"), false);
  EXPECT_EQ(j.at("desc_act"), false);
  EXPECT_EQ(j.at("checkpoint_format"), "gptq");
  EXPECT_EQ(j.at("gpt2q_method"), "rtn");
  const SafetensorsFile f = SafetensorsFile::open(out / "model.safetensors");
  const int64_t C = 128;
  EXPECT_FALSE(f.tensors.count("transformer.h.0.attn.c_attn.weight"));
  EXPECT_EQ(f.tensors.at("transformer.h.0.attn.c_attn.qweight").shape(), (Shape{C * 4 / 32, 3 * C}));
  EXPECT_EQ(f.tensors.at("transformer.h.0.attn.c_attn.qweight").dtype(), DType::I32);
  EXPECT_EQ(f.tensors.at("transformer.h.0.attn.c_attn.qzeros").shape(), (Shape{C / 32, 3 * C * 4 / 32}));
  EXPECT_EQ(f.tensors.at("transformer.h.0.attn.c_attn.scales").shape(), (Shape{C / 32, 3 * C}));
  EXPECT_EQ(f.tensors.at("transformer.h.0.attn.c_attn.scales").dtype(), DType::F16);
  EXPECT_EQ(f.tensors.at("transformer.h.0.mlp.c_proj.g_idx").shape(), (Shape{4 * C}));
  EXPECT_EQ(f.tensors.at("transformer.h.0.attn.c_attn.bias").dtype(), DType::F16);
  EXPECT_EQ(quant::checkpoint_quantization(q).describe(), "rtn (4 bit, group 32)");
}

TEST(GptqCheckpoint, RunsPackedOnTheGroupIntKernels) {
  auto model = GPT2Model::load(saved("gptq_ck_packed", rtn(3, 128)));
  for (const auto& bw : model->blocks())
    for (const Linear* l : {bw.c_attn.get(), bw.attn_c_proj.get(), bw.c_fc.get(), bw.mlp_c_proj.get()}) {
      const auto* q = dynamic_cast<const QuantLinear*>(l);
      ASSERT_NE(q, nullptr) << l->format();
      EXPECT_EQ(q->weight().format.scheme, qformat::Scheme::group_int);
      EXPECT_EQ(q->format(), "int3-g128");
      EXPECT_EQ(q->weight().codes.dtype(), DType::I32);  // qweight as stored, never expanded
    }
}

// The in-memory weights (dequantize() of what quantize made) are exactly
// what the loaded checkpoint and tools/gptq_dequant.py compute.
TEST(GptqCheckpoint, NumpyScriptReadsBackGpt2qsWeightsExactly) {
  for (const auto& [bits, group] : {std::pair{4, int64_t{32}}, {3, int64_t{128}}, {2, int64_t{-1}}, {8, int64_t{64}}}) {
    SCOPED_TRACE(fmt::format("{} bits, group {}", bits, group));
    const GPT2Config c = small_quant_config();
    const fs::path src = write_small_checkpoint("gptq_np_src", c);
    const quant::QuantizeResult r = quant::quantize_checkpoint(Checkpoint::load(src), rtn(bits, group));
    const fs::path out = temp_dir("gptq_np") / "q";
    quant::save_quantized_checkpoint(r.checkpoint, out, src);
    const Checkpoint q = Checkpoint::load(out);
    const quant::QuantizationConfig cfg = quant::checkpoint_quantization(q);
    std::map<std::string, Shape> shapes;
    for (const auto& spec : expected_tensors(c, ModelKind::CausalLM)) shapes[spec.name] = spec.shape;
    std::map<std::string, std::vector<float>> want;
    for (const std::string& W : r.checkpoint.quantized_weights) {
      const auto [o, i] = quant::quantized_out_in(W, shapes.at(W));
      want[W] = quant::dequantize(quant::read_quantized_weight(r.checkpoint, cfg, W, o, i));
      EXPECT_EQ(quant::dequantize(quant::read_quantized_weight(q, cfg, W, o, i)), want[W]) << W;
      EXPECT_EQ(dequantize_stored(q, W, o, i), want[W]) << W;
    }
    if (std::system("python3 -c 'import numpy, safetensors' >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "python3 with numpy and safetensors is not installed";
    const fs::path dense = temp_dir("gptq_np_dense") / "dense.safetensors";
    const std::string cmd = fmt::format("python3 {} --model {} --out {} >/dev/null",
                                        shell_quote(fixtures_dir().parent_path().parent_path() / "tools" /
                                                    "gptq_dequant.py"),
                                        shell_quote(out), shell_quote(dense));
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const SafetensorsFile f = SafetensorsFile::open(dense);
    EXPECT_EQ(f.tensors.size(), want.size());
    for (const auto& [W, w] : want) {
      const Tensor& t = f.tensors.at("transformer." + W);
      ASSERT_EQ(t.dtype(), DType::F32);
      ASSERT_EQ(static_cast<size_t>(t.numel()), w.size());
      EXPECT_EQ(std::memcmp(t.raw(), w.data(), w.size() * 4), 0) << W;
    }
  }
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST(GptqCheckpoint, DamagedLayoutIsAnErrorNamingFileAndTensor) {
  const fs::path good = saved("gptq_bad_src", rtn(4, 32));
  const std::string M = "transformer.h.1.mlp.c_fc";
  using Tensors = std::vector<std::pair<std::string, Tensor>>;
  auto load_error = [&](const std::string& tag, const std::function<void(Tensors&)>& edit) {
    const fs::path dir = edited(good, tag, edit);
    return std::pair{error_of([&] { GPT2Model::load(dir); }), (dir / "model.safetensors").string()};
  };
  auto find = [](Tensors& t, const std::string& name) -> Tensor& {
    for (auto& [n, x] : t)
      if (n == name) return x;
    throw std::runtime_error("no " + name);
  };
  {
    auto [err, file] = load_error("gptq_bad1", [&](Tensors& t) {
      std::erase_if(t, [&](const auto& p) { return p.first == M + ".qzeros"; });
    });
    EXPECT_EQ(err, file + ": missing tensor 'h.1.mlp.c_fc.qzeros' (packed zero points - 1) of quantized weight "
                          "'h.1.mlp.c_fc.weight'");
  }
  {  // the weight both packed and dense
    auto [err, file] = load_error("gptq_bad2", [&](Tensors& t) {
      t.emplace_back(M + ".weight", Tensor::empty({128, 512}, DType::F16));
    });
    EXPECT_HAS(err, file + ": tensor 'h.1.mlp.c_fc.g_idx' is quantization state of 'h.1.mlp.c_fc.weight', which "
                           "is not stored quantized (F16)");
  }
  {  // qweight of another width than config.json's bits
    auto [err, file] = load_error("gptq_bad3", [&](Tensors& t) {
      Tensor& qw = find(t, M + ".qweight");
      qw = Tensor::empty({qw.dim(0) * 3 / 4, qw.dim(1)}, DType::I32);
    });
    EXPECT_HAS(err, file + ": h.1.mlp.c_fc: GPTQ layout: qweight is I32 [12, 512], expected I32 [16, 512]");
  }
  {  // a group index beyond the stored groups
    auto [err, file] = load_error("gptq_bad4", [&](Tensors& t) {
      Tensor& g = find(t, M + ".g_idx");
      g = g.clone();
      g.data<int32_t>()[5] = 4;
    });
    EXPECT_HAS(err, file + ": h.1.mlp.c_fc: GPTQ layout: g_idx holds group 4 of 4");
  }
  {  // scales of fewer groups than group_size implies
    auto [err, file] = load_error("gptq_bad5", [&](Tensors& t) {
      Tensor& s = find(t, M + ".scales");
      s = Tensor::empty({2, s.dim(1)}, DType::F16);
      Tensor& z = find(t, M + ".qzeros");
      z = Tensor::empty({2, z.dim(1)}, DType::I32);
      Tensor& g = find(t, M + ".g_idx");
      g = Tensor::empty({g.dim(0)}, DType::I32);
    });
    EXPECT_HAS(err, file + ": tensor 'h.1.mlp.c_fc.scales': 2 groups, but group_size 32 of 128 columns makes 4");
  }
}

TEST(GptqCheckpoint, ShapesThatDoNotPackAreAnErrorNamingTheWeight) {
  // tiny-gpt2 (n_embd 2): 2 columns of 4 bits do not fill a 32-bit word.
  const std::string err = error_of([] { quant::quantize_checkpoint(Checkpoint::load(fake_gpt2_dir()), rtn(4, -1)); });
  EXPECT_EQ(err, (fake_gpt2_dir() / "model.safetensors").string() +
                     ": tensor 'h.0.attn.c_attn.weight' [6, 2] (out, in): the GPTQ layout packs 4-bit codes into "
                     "32-bit words along both dimensions, so each must be a multiple of 8");
}

}  // namespace
