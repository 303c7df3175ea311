// fuzz_dataset: load_dataset on arbitrary bytes in each of its formats. The
// first input byte picks the format (0: AG News CSV, 1: CSV with a
// text,label header, 2: JSONL; taken mod 3), the rest is the file. A dataset
// that loads is split as finetune splits it. Seeds: tests/fixtures/io/*.csv
// and the head of the shared AG News test.csv (fuzz.sh prefixes the format
// byte), and the generated ones below.
#include <filesystem>

#include "io/dataset.h"
#include "support/fuzz_support.h"

using namespace gpt2q;
using gpt2q::fuzz::nested;
using gpt2q::fuzz::write_seed;

namespace {

constexpr DataFormat kFormats[] = {DataFormat::AgNews, DataFormat::Csv, DataFormat::Jsonl};

std::string as(DataFormat f, std::string_view file) {
  std::string s(1, static_cast<char>(f == DataFormat::AgNews ? 0 : f == DataFormat::Csv ? 1 : 2));
  s += file;
  return s;
}

void write_seeds(const std::filesystem::path& dir) {
  write_seed(dir, "gen-agnews", as(DataFormat::AgNews, "\"3\",\"Wall St.\",\"Bears \"\"claw\"\" back\"\n"
                                                       "\"4\",\"A\",\"multi\nline\"\r\n1,b,c\n"));
  write_seed(dir, "gen-csv", as(DataFormat::Csv, "\xEF\xBB\xBFid,text,label\n1,\"hi, there\",0\n2,x,7\n"));
  write_seed(dir, "gen-jsonl", as(DataFormat::Jsonl, "{\"text\":\"a\",\"label\":0}\n\n{\"label\":3,\"text\":\"b\\u00e9\"}\r\n"));

  constexpr size_t kDeep = 100'000;
  write_seed(dir, "hostile-jsonl-deep-label",
             as(DataFormat::Jsonl, "{\"text\":\"a\",\"label\":" + nested("[", "]", kDeep) + "}\n"));
  write_seed(dir, "hostile-jsonl-deep-line", as(DataFormat::Jsonl, nested("[", "]", kDeep) + "\n"));
  write_seed(dir, "hostile-jsonl-deep-extra",
             as(DataFormat::Jsonl, "{\"text\":\"a\",\"label\":0,\"x\":" + nested("{\"a\":", "}", kDeep / 2, "1") + "}\n"));
  write_seed(dir, "hostile-csv-unterminated-quote", as(DataFormat::Csv, "text,label\n\"" + std::string(100'000, 'x')));
  write_seed(dir, "hostile-csv-many-columns", as(DataFormat::Csv, "text,label" + std::string(200'000, ',') + "\n"));
  write_seed(dir, "hostile-agnews-huge-field", as(DataFormat::AgNews, "1,\"" + std::string(1'000'000, 'a') + "\",b\n"));
  write_seed(dir, "hostile-agnews-quotes", as(DataFormat::AgNews, std::string(100'000, '"')));
  std::string labels;
  for (int i = 0; i < 20000; ++i) labels += fmt::format("{{\"text\":\"t\",\"label\":{}}}\n", i * 50000);
  write_seed(dir, "hostile-jsonl-sparse-labels", as(DataFormat::Jsonl, labels));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static fuzz::MemFile file("dataset");
  const DataFormat format = kFormats[data[0] % 3];
  const auto& path = file.set({reinterpret_cast<const char*>(data) + 1, size - 1});
  fuzz::expect_only_errors([&] {
    Dataset d = load_dataset(path, format);
    if (d.rows.empty()) fuzz::finding("load_dataset returned no rows without an Error");
    for (const auto& r : d.rows)
      if (r.label < 0) fuzz::finding("negative label");
    if (d.num_labels() <= 0) fuzz::finding("num_labels <= 0 for a non-empty dataset");
    Split s = stratified_split(d, 0.1, 42);
    if (s.first.size() + s.second.size() != d.rows.size()) fuzz::finding("split lost rows");
  });
  return 0;
}
