#include "layers/placement.h"

#include <cctype>

namespace gpt2q {

std::string Placement::describe() const {
  if (device == Device::CPU) return "cpu";
  std::string d(dtype_name(compute));
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return std::string(device_name(device)) + " (" + d + ")";
}

}  // namespace gpt2q
