#pragma once
// Element types and devices. Every tensor carries both so that ops can
// dispatch to the right implementation (CPU today, CUDA next).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace gpt2q {

enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL };

enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
// Names as safetensors writes them: "F32", "F16", "BF16", "I8", "U8", ...
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
std::string_view device_name(Device d);

}  // namespace gpt2q
