// safetensors reader and writer, checked against files written by the Python
// `safetensors` package (tests/fixtures/io, tools/make_io_fixtures.py) and
// against corrupt files built here byte by byte.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "support/test_env.h"

using namespace gpt2q;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file with exactly this header text and these data bytes.
fs::path make_file(const fs::path& dir, const std::string& header, const std::string& data,
                   const std::string& name = "t.safetensors") {
  fs::path p = dir / name;
  write_file_atomic(p, le64(header.size()) + header + data);
  return p;
}

// The Error message from opening `p`, or "" when it opened.
std::string open_error(const fs::path& p) {
  try {
    SafetensorsFile::open(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

json load_json(const fs::path& p) { return json::parse(read_file(p)); }

}  // namespace

TEST(Safetensors, ReadsEveryDtypeWrittenByPythonSafetensors) {
  const fs::path dir = test::fixtures_dir() / "io";
  auto st = SafetensorsFile::open(dir / "mixed.safetensors");
  json expected = load_json(dir / "mixed.expected.json");
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(st.metadata, expected["metadata"].get<StringMap>());
  ASSERT_EQ(st.tensors.size(), expected["tensors"].size());
  for (const auto& [name, e] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(st.tensors.count(name));
    const Tensor& t = st.tensors.at(name);
    EXPECT_EQ(dtype_name(t.dtype()), e["dtype"].get<std::string>());
    EXPECT_EQ(t.shape(), e["shape"].get<Shape>());
    EXPECT_FALSE(t.storage()->owned()) << "tensors should be views into the mapping";
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(t.dtype()), 0u);
    const int64_t n = t.numel();
    switch (t.dtype()) {
      case DType::F32:
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<float>()[i], e["values"][i].get<float>());
        break;
      case DType::F64:
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<double>()[i], e["values"][i].get<double>());
        break;
      case DType::F16:
      case DType::BF16: {
        Tensor f = to_f32(t);  // against torch's .float()
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_EQ(t.data<uint16_t>()[i], e["bits"][i].get<uint16_t>());
          EXPECT_EQ(f.data<float>()[i], e["as_f32"][i].get<float>());
        }
        break;
      }
      case DType::I8:
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<int8_t>()[i], e["values"][i].get<int8_t>());
        break;
      case DType::U8:
      case DType::BOOL:
        for (int64_t i = 0; i < n; ++i)
          EXPECT_EQ(static_cast<const uint8_t*>(t.raw())[i], e["values"][i].get<uint8_t>());
        break;
      case DType::I16:
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<int16_t>()[i], e["values"][i].get<int16_t>());
        break;
      case DType::I32:
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<int32_t>()[i], e["values"][i].get<int32_t>());
        break;
      case DType::I64:
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<int64_t>()[i], e["values"][i].get<int64_t>());
        break;
    }
  }
}

// Given the crate's tensor order, our writer must produce the very bytes the
// Python package wrote: same header text, padding and data layout.
TEST(Safetensors, WriterReproducesPythonSafetensorsBytes) {
  const fs::path dir = test::fixtures_dir() / "io";
  auto st = SafetensorsFile::open(dir / "mixed.safetensors");
  json expected = load_json(dir / "mixed.expected.json");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : expected["crate_order"]) tensors.emplace_back(name, st.tensors.at(name));
  auto tmp = test::temp_dir("st_bytes");
  write_safetensors(tmp / "out.safetensors", tensors, st.metadata);
  EXPECT_EQ(read_file(tmp / "out.safetensors"), read_file(dir / "mixed.safetensors"));
  fs::remove_all(tmp);
}

TEST(Safetensors, RoundTripKeepsOrderValuesAndAlignment) {
  auto tmp = test::temp_dir("st_rt");
  Tensor odd = Tensor::empty({3}, DType::U8);
  for (int i = 0; i < 3; ++i) static_cast<uint8_t*>(odd.raw())[i] = static_cast<uint8_t>(200 + i);
  Tensor f = Tensor::from_vector<float>({1.5f, -2.25f, 3e-8f, 4e30f, 0.f, -0.f}, {2, 3});
  Tensor h = Tensor::from_vector<uint16_t>({0x3c00, 0x8001, 0x7bff}, {3});
  Tensor d = Tensor::from_vector<double>({1.0 / 3.0}, {1});
  Tensor empty = Tensor::empty({0, 5}, DType::F32);
  std::vector<std::pair<std::string, Tensor>> in = {
      {"z.odd", odd}, {"a.half", h}, {"m.float", f}, {"empty", empty}, {"b.double", d}};
  write_safetensors(tmp / "rt.safetensors", in, {{"format", "pt"}, {"note", "ünïcode"}});

  auto st = SafetensorsFile::open(tmp / "rt.safetensors");
  EXPECT_EQ(st.metadata.at("note"), "ünïcode");
  ASSERT_EQ(st.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    const Tensor& r = st.tensors.at(name);
    EXPECT_EQ(r.dtype(), t.dtype());
    EXPECT_EQ(r.shape(), t.shape());
    ASSERT_EQ(r.nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(r.raw(), t.raw(), t.nbytes()), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.raw()) % dtype_size(r.dtype()), 0u);
  }
  // Header keys in the order given, data section 8-byte aligned.
  std::string bytes = read_file(tmp / "rt.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  auto header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  std::vector<std::string> keys;
  for (const auto& [k, v] : header.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "z.odd", "a.half", "m.float", "empty", "b.double"}));
  fs::remove_all(tmp);
}

TEST(Safetensors, ViewsKeepTheMappingAlive) {
  auto tmp = test::temp_dir("st_alive");
  write_safetensors(tmp / "a.safetensors", {{"x", Tensor::from_vector<float>({7.f, 8.f}, {2})}});
  Tensor x;
  {
    auto st = SafetensorsFile::open(tmp / "a.safetensors");
    x = st.tensors.at("x");
  }
  fs::remove_all(tmp);
  EXPECT_EQ(x.data<float>()[1], 8.f);
}

TEST(Safetensors, MisalignedDataIsCopiedToAlignedMemory) {
  auto tmp = test::temp_dir("st_misaligned");
  // An unpadded header puts the data at an offset that is not a multiple of 4.
  float vals[2] = {1.25f, -7.5f};
  std::string data(reinterpret_cast<const char*>(vals), 8);
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + header.size()) % 4 != 2) header += ' ';
  ASSERT_NE((8 + header.size()) % 4, 0u);
  auto st = SafetensorsFile::open(make_file(tmp, header, data));
  const Tensor& x = st.tensors.at("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.raw()) % 4, 0u);
  EXPECT_EQ(x.data<float>()[0], 1.25f);
  EXPECT_EQ(x.data<float>()[1], -7.5f);
  fs::remove_all(tmp);
}

struct CorruptCase {
  const char* what;
  std::string header;  // JSON text; "" with raw set uses raw bytes
  std::string data;
  const char* expect;  // substring of the error
  std::string raw;     // whole file, when set
};

TEST(Safetensors, CorruptFilesGiveOneLineErrorsNamingTheFile) {
  auto tmp = test::temp_dir("st_corrupt");
  const std::string f32x2 = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::vector<CorruptCase> cases = {
      {"empty file", "", "", "truncated", std::string()},
      {"4 bytes", "", "", "truncated", std::string("\x01\x00\x00\x00", 4)},
      {"header past end", "", "", "runs past the end", le64(100) + "{}"},
      {"huge header", "", "", "exceeds", le64(uint64_t{1} << 40) + "{}"},
      {"invalid JSON", "{\"x\": ", "", "header: invalid JSON", ""},
      {"not an object", "[1,2]", "", "not a JSON object", ""},
      {"unknown dtype", R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}})", "x",
       "tensor 'w': unsupported dtype 'Q4'", ""},
      {"negative dim", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'),
       "tensor 'w' shape: expected a non-negative integer", ""},
      {"missing offsets", R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0'), "missing 'data_offsets'", ""},
      {"begin after end", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0'),
       "end before they begin", ""},
      {"shape x dtype != span", R"({"w":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}})",
       std::string(16, '\0'), "tensor 'w': shape [3, 2] x F32 needs 24 bytes but data_offsets span 16", ""},
      {"span past end", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'),
       "tensor 'w': data_offsets [0, 16] run past the data section (8 bytes)", ""},
      {"overlap", R"({"a":)" + f32x2 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       std::string(12, '\0'), "tensors 'a' [0, 8] and 'b' [4, 12] overlap", ""},
      {"duplicate span", R"({"a":)" + f32x2 + R"(,"b":)" + f32x2 + "}", std::string(8, '\0'), "overlap", ""},
      {"shape overflow", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
       std::string(8, '\0'), "too large", ""},
      {"metadata not strings", R"({"__metadata__":{"format":1}})", "", "__metadata__ 'format' is not a string", ""},
      {"entry not object", R"({"w":3})", "", "tensor 'w': header entry is not an object", ""},
  };
  int i = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string name = "c" + std::to_string(i++) + ".safetensors";
    fs::path p = tmp / name;
    if (!c.raw.empty() || c.header.empty()) {
      write_file_atomic(p, c.raw);
    } else {
      p = make_file(tmp, c.header, c.data, name);
    }
    std::string err = open_error(p);
    EXPECT_NE(err.find(p.string() + ": "), std::string::npos) << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
  EXPECT_NE(open_error(tmp / "missing.safetensors").find("missing.safetensors: cannot open"), std::string::npos);
  fs::remove_all(tmp);
}

TEST(Safetensors, WriterRejectsBadInputAndLeavesNoFile) {
  auto tmp = test::temp_dir("st_wbad");
  Tensor t = Tensor::from_vector<float>({1.f}, {1});
  EXPECT_THROW(write_safetensors(tmp / "a.safetensors", {{"x", t}, {"x", t}}), Error);
  EXPECT_THROW(write_safetensors(tmp / "a.safetensors", {{"__metadata__", t}}), Error);
  EXPECT_THROW(write_safetensors(tmp / "no_such_dir" / "a.safetensors", {{"x", t}}), Error);
  EXPECT_TRUE(fs::is_empty(tmp));
  fs::remove_all(tmp);
}
