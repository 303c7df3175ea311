#pragma once
// Variant specs of `gpt2q compare`: METHOD[:MODIFIER]...[@DIR].
//
//   fp32                      the checkpoint as it is (the usual baseline)
//   fp16, bf16                every tensor cast; matrices are held 16-bit (half
//                             fp32's bytes; biases, LayerNorms fp32), products
//                             computed in fp32 on the exactly converted values
//   int8-tensor               8-bit affine, one scale per tensor
//   llm-int8                  LLM.int8() (bitsandbytes), outlier threshold 6
//   nf4, fp4                  bitsandbytes 4-bit, block size 64
// Modifiers:
//   per-channel, symmetric    int8-tensor: one scale per output channel; zero point 0
//   threshold=X               llm-int8: outlier threshold (0: no decomposition)
//   double-quant, block-size=N   nf4 / fp4
//   mlp-only, attn-only       quantize only h.*.mlp.* / h.*.attn.* weights
//   all-tensors               also wte, wpe and the heads (int8-tensor, nf4, fp4)
//   keep-fp32                 tensors left unquantized stay fp32 (default fp16)
// @DIR takes the variant ready-made from a checkpoint directory (checked to
// hold that quantization) instead of quantizing in memory. A variant is named
// by its spec without @DIR, in the canonical form this parser writes back
// (modifiers in the order above).
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/checkpoint_quantizer.h"

namespace gpt2q::report {

struct VariantSpec {
  std::string name;  // canonical spec, e.g. "int8-tensor:per-channel"
  quant::QuantizeOptions options;
  bool mlp_only = false, attn_only = false;
  std::optional<std::filesystem::path> ready_dir;  // @DIR

  bool is_identity() const { return options.method == "fp32" && !ready_dir; }  // the checkpoint as is
  // Safe in file names: "int8-tensor_per-channel", "llm-int8_threshold-0".
  std::string file_name() const;
};

// Error "--variants: 'SPEC': problem" for an unknown method or modifier, a
// modifier that does not apply to the method, or a bad value.
VariantSpec parse_variant_spec(std::string_view spec);
// Comma-separated; Error on an empty list, an empty item or a repeated variant.
std::vector<VariantSpec> parse_variant_list(std::string_view list);

inline constexpr std::string_view kDefaultVariants = "fp32,int8-tensor,llm-int8,nf4";
// The --help text describing the specs.
std::string variant_spec_help();

// Does a quantized checkpoint's config (`quantization_config` block, or null
// for an unquantized one with dtype `stored_dtype`) hold what `spec` asks for?
// Empty when it does, else what differs ("holds nf4, the spec asks for fp4").
std::string ready_made_mismatch(const VariantSpec& spec, const nlohmann::json& quantization_config,
                                std::string_view stored_dtype);

// The spec that names what a checkpoint holds (its `quantization_config`, or
// null and the stored dtype for an unquantized one): the default variant list
// of `compare` on an already quantized checkpoint.
std::string variant_name_for(const nlohmann::json& quantization_config, std::string_view stored_dtype);

}  // namespace gpt2q::report
