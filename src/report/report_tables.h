#pragma once
// The report's tables as text cells, rendered by both report.md and
// report.html so the two always state the same figures.
#include <string>
#include <vector>

#include "report/compare_results.h"

namespace gpt2q::report {

struct Table {
  std::string id;  // data-table in HTML
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row_keys;  // data-variant / data-class of each row
  std::string key_attr = "data-variant";
};

Table efficiency_table(const CompareResults& r);
Table quality_table(const CompareResults& r);
Table per_class_f1_table(const CompareResults& r);  // classification only: rows = classes, columns = variants
Table per_class_detail_table(const CompareResults& r, size_t variant);  // P/R/F1/accuracy/support per class
Table setup_table(const CompareResults& r);  // machine, versions, inputs

// One or two sentences per headline (best accuracy / lowest memory / fastest /
// noise / chance level) plus the first recommendation.
std::vector<std::string> executive_summary(const CompareResults& r);

}  // namespace gpt2q::report
