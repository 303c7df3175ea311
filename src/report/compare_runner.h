#pragma once
// `gpt2q compare`: runs every variant on the same tokenized data and writes
// the report directory.
//
// Order of work: everything the user can get wrong (variant specs, files,
// model/data mismatches, --out being a file) is checked before OUT is
// created, so a bad command leaves nothing behind. Each variant is then
// prepared (taken as is, quantized in memory from the same checkpoint with
// quant::quantize_checkpoint, or loaded ready-made from @DIR), run on the same
// batches, and its measurements are written to OUT/variants/<file>.json. A
// later run with the same inputs (model, data, options, threads, gpt2q
// version: the cache's "fingerprint") reuses them unless `force`. The report
// files (results.json/.csv, confusion_<variant>.csv, report.md, report.html)
// are written at the end, each atomically: an interrupted run leaves either
// the previous complete file or none, and temp files never carry final names.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "report/compare_results.h"
#include "report/variant_spec.h"

namespace gpt2q::report {

struct CompareOptions {
  std::filesystem::path model, out;
  std::optional<std::filesystem::path> data, text, tokenizer;
  std::optional<std::string> format;  // agnews | csv | jsonl (default: guessed)
  std::optional<std::string> variants;  // default kDefaultVariants (or what a quantized model holds)
  int64_t batch_size = 8;
  std::optional<int64_t> max_length;  // classification: min(128, n_positions); LM: n_positions
  std::optional<int64_t> stride;      // LM windows: max_length / 2
  int64_t limit = 0;                  // first N samples; 0 = all
  bool force = false;
  std::string command_line;  // recorded in the report
  // Where the variants run (layers/placement.h); the compute dtype of each
  // variant on a GPU is `compute` when given, else the variant's own
  // (bf16 for :bf16-compute, fp32 otherwise). device_description names the
  // device in the report ("CPU" on the CPU).
  Device device = Device::CPU;
  std::optional<DType> compute;
  std::string device_description = "CPU";
};

CompareResults run_compare(const CompareOptions& opts);

// The report files of `r` into `out` (exists), each atomically.
void write_report_files(const CompareResults& r, const std::filesystem::path& out);

}  // namespace gpt2q::report
