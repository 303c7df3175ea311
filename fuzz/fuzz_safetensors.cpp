// fuzz_safetensors: SafetensorsFile::open on arbitrary bytes (header length,
// JSON header, tensor table, data spans), then every tensor is read in full
// and converted to fp32 where it is a float, so a span the validation let
// through that points outside the mapping is caught. Input: a whole
// .safetensors file. Seeds: tests/fixtures/**/*.safetensors (fuzz.sh) and
// the generated ones below.
#include <cstring>
#include <filesystem>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "support/fuzz_support.h"
#include "support/safetensors_bytes.h"

using namespace gpt2q;
using gpt2q::fuzz::nested;
using gpt2q::fuzz::safetensors_bytes;
using gpt2q::fuzz::write_seed;

namespace {

std::string entry(std::string_view dtype, std::string_view shape, std::string_view offsets) {
  return fmt::format(R"("dtype":"{}","shape":{},"data_offsets":{})", dtype, shape, offsets);
}

void write_seeds(const std::filesystem::path& dir) {
  const std::string data(64, '\x01');
  // One tensor of every dtype, the header padded as the writer pads it.
  for (auto [dtype, size] : {std::pair{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I8", 1}, {"U8", 1},
                             {"I16", 2}, {"I32", 4}, {"I64", 8}, {"BOOL", 1}}) {
    std::string h = "{\"t\":{" + entry(dtype, fmt::format("[2,{}]", 8 / size), "[0,16]") + "}}";
    h.append((8 - h.size() % 8) % 8, ' ');
    write_seed(dir, std::string("gen-dtype-") + dtype, safetensors_bytes(h, data.substr(0, 16)));
  }
  write_seed(dir, "gen-two-with-metadata",
             safetensors_bytes(R"({"__metadata__":{"format":"pt"},"a":{)" + entry("F32", "[2,2]", "[0,16]") +
                                   R"(},"b":{)" + entry("I8", "[]", "[16,17]") + "}}",
                               data.substr(0, 17)));
  write_seed(dir, "gen-misaligned", safetensors_bytes("{\"a\":{" + entry("F32", "[3]", "[1,13]") + "}}", data));
  write_seed(dir, "gen-empty-tensor", safetensors_bytes("{\"a\":{" + entry("F16", "[0,5]", "[0,0]") + "}}"));

  // Hostile: the cases issue 14 names. Deep nesting where the reader
  // recurses (shape, __metadata__, a tensor entry), huge keys, huge lengths.
  constexpr size_t kDeep = 100'000;
  write_seed(dir, "hostile-deep-shape",
             safetensors_bytes("{\"t\":{" + entry("F32", nested("[", "]", kDeep), "[0,0]") + "}}"));
  write_seed(dir, "hostile-deep-entry", safetensors_bytes("{\"t\":" + nested("[", "]", kDeep) + "}"));
  write_seed(dir, "hostile-deep-object",
             safetensors_bytes("{\"t\":" + nested("{\"a\":", "}", kDeep / 2, "1") + "}"));
  write_seed(dir, "hostile-deep-metadata",
             safetensors_bytes("{\"__metadata__\":{\"k\":" + nested("[", "]", kDeep) + "}}"));
  write_seed(dir, "hostile-deep-header", safetensors_bytes(nested("[", "]", kDeep)));
  write_seed(dir, "hostile-huge-key",
             safetensors_bytes("{\"" + std::string(1'000'000, 'k') + "\":{" + entry("U8", "[1]", "[0,1]") + "}}",
                               "x"));
  write_seed(dir, "hostile-header-length-max", safetensors_bytes("{}", "", UINT64_MAX - 1));
  write_seed(dir, "hostile-header-length-limit", safetensors_bytes("{}", "", 100'000'001));
  write_seed(dir, "hostile-header-length-past-end", safetensors_bytes("{}", "", 3));
  write_seed(dir, "hostile-offsets-overflow",
             safetensors_bytes("{\"t\":{" + entry("U8", "[18446744073709551615]", "[1,0]") + "}}"));
  write_seed(dir, "hostile-shape-overflow",
             safetensors_bytes("{\"t\":{" + entry("F64", "[4294967296,4294967296,4294967296]", "[0,0]") + "}}"));
  write_seed(dir, "hostile-negative-dim", safetensors_bytes("{\"t\":{" + entry("U8", "[-1]", "[0,0]") + "}}"));
  write_seed(dir, "hostile-float-dim", safetensors_bytes("{\"t\":{" + entry("U8", "[1.5e300]", "[0,0]") + "}}"));
  write_seed(dir, "hostile-overlap",
             safetensors_bytes("{\"a\":{" + entry("U8", "[8]", "[0,8]") + "},\"b\":{" + entry("U8", "[8]", "[4,12]") +
                                   "}}",
                               data));
  std::string many = "{";
  for (int i = 0; i < 15000; ++i)
    many += fmt::format("{}\"t{}\":{{{}}}", i ? "," : "", i, entry("U8", "[0]", "[0,0]"));
  write_seed(dir, "hostile-many-tensors", safetensors_bytes(many + "}"));
}

// Reads every byte of `t` (ASan sees reads outside heap buffers; a span past
// the mapping faults) and converts float tensors as the loader does.
uint64_t touch(const Tensor& t) {
  uint64_t sum = 0;
  const auto* p = static_cast<const unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
  if (t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16) {
    Tensor f = to_f32(t);
    if (f.numel() != t.numel()) fuzz::finding("to_f32 changed the element count");
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("fuzz_safetensors");
  const auto& path = file.set({reinterpret_cast<const char*>(data), size});
  fuzz::expect_only_errors([&] {
    SafetensorsFile st = SafetensorsFile::open(path);
    volatile uint64_t sum = 0;
    for (const auto& [name, t] : st.tensors) {
      if (t.nbytes() != static_cast<size_t>(t.numel()) * dtype_size(t.dtype()))
        fuzz::finding("tensor '" + name + "': nbytes disagrees with shape x dtype");
      sum = sum + touch(t);
    }
  });
  return 0;
}
