#include "io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_read.h"

namespace gpt2q {

namespace {

// The safetensors crate refuses headers above 100 MB; so do we, before
// handing an attacker-sized buffer to the JSON parser.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void write_le64(std::ostream& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.write(b, 8);
}

uint64_t json_uint(const nlohmann::json& v, const std::string& where, const std::string& file) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  fail("{}: {}: expected a non-negative integer, got {}", file, where, json_brief(v));
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const nlohmann::json& info, const std::string& file) {
  const std::string where = fmt::format("tensor '{}'", name);
  if (!info.is_object()) fail("{}: {}: header entry is not an object", file, where);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) fail("{}: {}: missing '{}'", file, where, key);
  const auto& jd = info["dtype"];
  if (!jd.is_string()) fail("{}: {}: dtype is not a string", file, where);
  auto dtype = dtype_from_name(jd.get<std::string>());
  if (!dtype) fail("{}: {}: unsupported dtype '{}'", file, where, jd.get<std::string>());

  const auto& js = info["shape"];
  if (!js.is_array()) fail("{}: {}: shape is not an array", file, where);
  Entry e{name, *dtype, {}, 0, 0};
  uint64_t bytes = dtype_size(*dtype);
  bool overflow = false;
  for (const auto& d : js) {
    uint64_t dim = json_uint(d, where + " shape", file);
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
    e.shape.push_back(static_cast<int64_t>(dim));
    overflow = overflow || __builtin_mul_overflow(bytes, dim, &bytes);
  }
  if (overflow) fail("{}: {}: shape {} is too large", file, where, json_brief(js));

  const auto& jo = info["data_offsets"];
  if (!jo.is_array() || jo.size() != 2) fail("{}: {}: data_offsets must be [begin, end]", file, where);
  e.begin = json_uint(jo[0], where + " data_offsets", file);
  e.end = json_uint(jo[1], where + " data_offsets", file);
  if (e.begin > e.end) fail("{}: {}: data_offsets [{}, {}] end before they begin", file, where, e.begin, e.end);
  if (e.end - e.begin != bytes)
    fail("{}: {}: shape {} x {} needs {} bytes but data_offsets span {}", file, where, shape_str(e.shape),
         dtype_name(e.dtype), bytes, e.end - e.begin);
  return e;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string file = path.string();
  SafetensorsFile st;
  st.path = path;
  st.file = MappedFile::open(path);
  const unsigned char* base = st.file->data();
  const uint64_t size = st.file->size();
  if (size < 8) fail("{}: truncated: {} bytes, too short for a safetensors header", file, size);
  const uint64_t n = read_le64(base);
  if (n > kMaxHeaderBytes) fail("{}: header length {} exceeds the {} byte limit", file, n, kMaxHeaderBytes);
  if (n > size - 8) fail("{}: header length {} runs past the end of the file ({} bytes)", file, n, size);
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;

  const nlohmann::json header =
      parse_json(std::string_view(reinterpret_cast<const char*>(base + 8), n), file + ": header");
  if (!header.is_object()) fail("{}: header is not a JSON object", file);

  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail("{}: __metadata__ is not an object", file);
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) fail("{}: __metadata__ '{}' is not a string", file, k);
        st.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(name, info, file));
  }

  for (const auto& e : entries)
    if (e.end > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the data section ({} bytes)", file, e.name, e.begin, e.end,
           data_size);

  // Sorted by begin, any non-empty span starting before the previous one ends overlaps it.
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    if (e->begin == e->end) continue;
    if (prev && e->begin < prev->end)
      fail("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", file, prev->name, prev->begin, prev->end, e->name,
           e->begin, e->end);
    prev = e;
  }

  // The whole mapping is one Storage so every view keeps the file mapped.
  auto storage = Storage::borrow(const_cast<unsigned char*>(base), size, st.file);
  for (const auto& e : entries) {
    Tensor t = Tensor::from_storage(storage, data_start + e.begin, e.shape, e.dtype);
    // Files written with an unpadded header can leave data misaligned for
    // its element type; kernels need aligned loads, so copy those.
    if (reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(e.dtype) != 0) t = t.clone();
    st.tensors.emplace(e.name, std::move(t));
  }
  return st;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("{}: '__metadata__' cannot be a tensor name", file);
    if (!seen.insert(name).second) fail("{}: tensor '{}' given twice", file, name);
    if (!t.defined()) fail("{}: tensor '{}' is undefined", file, name);
    if (t.device() != Device::CPU) fail("{}: tensor '{}' is on {}; copy it to the CPU first", file, name,
                                        device_name(t.device()));
  }

  // Data goes in order of decreasing element size (stable), as the
  // safetensors crate does, so every tensor stays aligned to its element
  // type; the header keeps the caller's order.
  std::vector<size_t> layout(tensors.size());
  for (size_t i = 0; i < layout.size(); ++i) layout[i] = i;
  std::stable_sort(layout.begin(), layout.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t offset = 0;
  for (size_t i : layout) {
    begin[i] = offset;
    offset += tensors[i].second.nbytes();
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header["__metadata__"];
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    header[tensors[i].first] = {{"dtype", std::string(dtype_name(t.dtype()))},
                                {"shape", t.shape()},
                                {"data_offsets", {begin[i], begin[i] + t.nbytes()}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot write header ({})", file, e.what());  // e.g. a name that is not UTF-8
  }
  // Pad with spaces so the data section starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  write_file_atomic(path, [&](std::ostream& out) {
    write_le64(out, text.size());
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (size_t i : layout) {
      const Tensor& t = tensors[i].second;
      if (t.nbytes()) out.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
    }
  });
}

}  // namespace gpt2q
