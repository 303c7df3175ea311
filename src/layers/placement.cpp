#include "layers/placement.h"

#include <cctype>

namespace gpt2q {

std::string Placement::describe() const {
  // The CPU's activations are fp32 whatever the products compute in; bf16
  // products (placement.h) are worth naming in a report.
  if (device == Device::CPU) return compute == DType::BF16 ? "cpu (bf16)" : "cpu";
  std::string d(dtype_name(compute));
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return std::string(device_name(device)) + " (" + d + ")";
}

}  // namespace gpt2q
