#pragma once
// safetensors: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data. The reader maps the file and validates everything the header
// claims before any tensor is used; tensors are views into the mapping.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/file_util.h"
#include "core/tensor.h"

namespace gpt2q {

struct SafetensorsFile {
  std::filesystem::path path;
  std::shared_ptr<MappedFile> file;
  std::map<std::string, Tensor> tensors;  // views into `file`, dtype as stored
  std::map<std::string, std::string> metadata;

  // Validates: header size within the file, JSON well-formed, every dtype
  // known, shape x dtype size == byte span, spans inside the data section,
  // no overlaps. Errors: "PATH: <problem>".
  static SafetensorsFile open(const std::filesystem::path& path);
};

// Writes tensors (in the order given) atomically. CPU tensors only.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace gpt2q
