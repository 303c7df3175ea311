// Variant specs of `gpt2q compare`: canonical names, the quantize options
// they stand for, file names, and one clear error per bad spec.
#include <gtest/gtest.h>

#include "core/error.h"
#include "report/variant_spec.h"

namespace gpt2q::report {
namespace {

TEST(VariantSpec, DefaultListIsTheStudys) {
  const auto v = parse_variant_list(kDefaultVariants);
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].name, "fp32");
  EXPECT_TRUE(v[0].is_identity());
  EXPECT_EQ(v[1].options.method, "int8-tensor");
  EXPECT_EQ(v[2].options.method, "llm-int8");
  EXPECT_FLOAT_EQ(v[2].options.threshold, 6.0f);
  EXPECT_EQ(v[3].options.method, "nf4");
  EXPECT_EQ(v[3].options.block_size, 64);
  EXPECT_FALSE(v[3].options.double_quant);
}

TEST(VariantSpec, ModifiersSetTheQuantizeOptions) {
  auto s = parse_variant_spec("int8-tensor:per-channel");
  EXPECT_TRUE(s.options.per_channel);
  EXPECT_FALSE(s.options.symmetric);
  s = parse_variant_spec("int8-tensor:mlp-only");
  ASSERT_EQ(s.options.include.size(), 1u);
  EXPECT_EQ(s.options.include[0], "h.*.mlp.*");
  s = parse_variant_spec("int8-tensor:all-tensors");
  EXPECT_TRUE(s.options.all_tensors);
  s = parse_variant_spec("llm-int8:threshold=0");
  EXPECT_EQ(s.options.threshold, 0.0f);
  EXPECT_EQ(s.name, "llm-int8:threshold=0");
  s = parse_variant_spec("nf4:double-quant");
  EXPECT_TRUE(s.options.double_quant);
  s = parse_variant_spec("fp4:block-size=128:keep-fp32");
  EXPECT_EQ(s.options.block_size, 128);
  EXPECT_EQ(s.options.keep_dtype, DType::F32);
  s = parse_variant_spec("nf4:bf16-compute:double-quant");
  EXPECT_EQ(s.options.compute_dtype, DType::BF16);
  EXPECT_EQ(s.name, "nf4:double-quant:bf16-compute");
  EXPECT_EQ(parse_variant_spec("int8-tensor:bf16-compute").options.compute_dtype, DType::BF16);
  EXPECT_EQ(parse_variant_spec("int8-tensor").options.compute_dtype, DType::F32);
  s = parse_variant_spec("fp16");
  EXPECT_TRUE(s.options.all_tensors);  // a fp16 model has every tensor in fp16
  EXPECT_FALSE(s.is_identity());
}

TEST(VariantSpec, CanonicalNameOrdersModifiersAndRoundTrips) {
  const auto s = parse_variant_spec(" int8-tensor:symmetric:per-channel ");
  EXPECT_EQ(s.name, "int8-tensor:per-channel:symmetric");
  EXPECT_EQ(parse_variant_spec(s.name).name, s.name);
  EXPECT_EQ(parse_variant_spec("llm-int8:threshold=6.5").name, "llm-int8:threshold=6.5");
  EXPECT_EQ(parse_variant_spec("nf4:block-size=128:double-quant").name, "nf4:double-quant:block-size=128");
}

TEST(VariantSpec, FileNamesAreSafe) {
  EXPECT_EQ(parse_variant_spec("int8-tensor:per-channel").file_name(), "int8-tensor_per-channel");
  EXPECT_EQ(parse_variant_spec("llm-int8:threshold=0").file_name(), "llm-int8_threshold-0");
  EXPECT_EQ(parse_variant_spec("fp32").file_name(), "fp32");
}

TEST(VariantSpec, ReadyMadeDir) {
  const auto s = parse_variant_spec("nf4@models/q nf4");
  ASSERT_TRUE(s.ready_dir.has_value());
  EXPECT_EQ(s.ready_dir->string(), "models/q nf4");
  EXPECT_EQ(s.name, "nf4");
  EXPECT_FALSE(s.is_identity());
}

void expect_error(const std::string& list, const std::string& fragment) {
  try {
    parse_variant_list(list);
    ADD_FAILURE() << "no error for '" << list << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    EXPECT_EQ(msg.rfind("--variants", 0), 0u) << msg;
  }
}

TEST(VariantSpec, BadSpecsAreOneLineErrors) {
  expect_error("fp32,int9", "unknown method 'int9'");
  expect_error("nf4:per-channel", "applies to int8-tensor only");
  expect_error("int8-tensor:threshold=3", "applies to llm-int8 only");
  expect_error("llm-int8:threshold=-1", "not a finite number");
  expect_error("llm-int8:threshold", "needs a value");
  expect_error("nf4:double-quant=1", "takes no value");
  expect_error("nf4:block-size=100", "power of two");
  expect_error("nf4:bogus", "unknown modifier 'bogus'");
  expect_error("fp32,nf4,nf4", "listed twice");
  expect_error("int8-tensor:per-channel,int8-tensor:per-channel", "listed twice");
  expect_error("fp32,,nf4", "empty variant");
  expect_error("", "empty");
  expect_error("nf4:mlp-only:attn-only", "exclude each other");
  expect_error("nf4:double-quant:double-quant", "given twice");
  expect_error("fp32:all-tensors", "applies to");
  expect_error("nf4@", "nothing after '@'");
  expect_error("llm-int8:bf16-compute", "applies to int8-tensor, nf4 and fp4 only");
  expect_error("fp32:bf16-compute", "applies to int8-tensor, nf4 and fp4 only");
}

TEST(VariantSpec, ReadyMadeMatching) {
  const auto nf4 = parse_variant_spec("nf4");
  nlohmann::json qc = {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"load_in_8bit", false},
                       {"bnb_4bit_quant_type", "nf4"}, {"bnb_4bit_use_double_quant", false}};
  EXPECT_EQ(ready_made_mismatch(nf4, qc, "float16"), "");
  EXPECT_EQ(variant_name_for(qc, "float16"), "nf4");
  EXPECT_NE(ready_made_mismatch(parse_variant_spec("nf4:double-quant"), qc, "float16"), "");
  EXPECT_NE(ready_made_mismatch(parse_variant_spec("fp4"), qc, "float16"), "");
  EXPECT_EQ(ready_made_mismatch(parse_variant_spec("fp32"), nullptr, "float32"), "");
  EXPECT_NE(ready_made_mismatch(parse_variant_spec("fp16"), nullptr, "float32"), "");
  EXPECT_EQ(variant_name_for(nullptr, "float16"), "fp16");
  // The compute dtype is part of what a ready-made checkpoint holds.
  qc["bnb_4bit_compute_dtype"] = "bfloat16";
  EXPECT_EQ(variant_name_for(qc, "float16"), "nf4:bf16-compute");
  EXPECT_EQ(ready_made_mismatch(parse_variant_spec("nf4:bf16-compute"), qc, "float16"), "");
  EXPECT_NE(ready_made_mismatch(nf4, qc, "float16"), "");
}

TEST(VariantSpec, HelpNamesEveryMethodAndTheDefault) {
  const std::string h = variant_spec_help();
  for (const char* m : {"fp32", "fp16", "int8-tensor", "llm-int8", "nf4", "fp4", "per-channel", "mlp-only",
                        "all-tensors", "threshold=", "double-quant", "bf16-compute", "@DIR"})
    EXPECT_NE(h.find(m), std::string::npos) << m;
  EXPECT_NE(h.find(std::string(kDefaultVariants)), std::string::npos);
}

}  // namespace
}  // namespace gpt2q::report
