#pragma once
// Builds safetensors bytes by hand, for generated seeds that the writer
// (write_safetensors) would refuse to produce: wrong lengths, hostile JSON.
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt2q::fuzz {

// 8-byte little-endian `header_len` (default: the header's size), the header, the data.
inline std::string safetensors_bytes(std::string_view header, std::string_view data = {},
                                     uint64_t header_len = UINT64_MAX) {
  if (header_len == UINT64_MAX) header_len = header.size();
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((header_len >> (8 * i)) & 0xff);
  s += header;
  s += data;
  return s;
}

}  // namespace gpt2q::fuzz
