// report.html in a real browser: headless Chromium (Debian's `chromium`)
// loads the report of a tiny compare run and dumps the DOM after layout; every
// chart must be there, laid out with a non-zero size (data-rendered="yes",
// set by the page's inline script), and carry one element per variant (or
// class); every table one row per variant. Chromium is installed with
// apt-get (sudo when not root) if missing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/test_env.h"
#include "test_report_support.h"

namespace {

using namespace gpt2q::test;

namespace fs = std::filesystem;
using gpt2q::report::test::count_of;
using gpt2q::report::test::svg_element;
using gpt2q::report::test::table_element;

bool have(const char* program) { return std::system(("command -v " + std::string(program) + " >/dev/null 2>&1").c_str()) == 0; }

// The browser's command name, installing Debian's chromium when none is there.
std::string chromium() {
  for (const char* c : {"chromium", "chromium-browser"})
    if (have(c)) return c;
  std::system("SUDO=; [ \"$(id -u)\" -ne 0 ] && SUDO=sudo; "
              "$SUDO apt-get update -qq >/dev/null 2>&1; "
              "DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1");
  return have("chromium") ? "chromium" : "";
}

// Values of attribute `attr` on the elements in `html` (in order).
std::vector<std::string> attr_values(const std::string& html, const std::string& attr) {
  std::vector<std::string> v;
  const std::string key = attr + "=\"";
  for (size_t p = html.find(key); p != std::string::npos; p = html.find(key, p + 1)) {
    const size_t b = p + key.size();
    v.push_back(html.substr(b, html.find('"', b) - b));
  }
  return v;
}

TEST(CliReportBrowser, EveryChartAndTableRendersWithEveryVariant) {
  const std::string browser = chromium();
  ASSERT_FALSE(browser.empty()) << "chromium is missing and could not be installed (apt-get install chromium)";
  const fs::path dir = gpt2q::test::temp_dir("cmp_browser");
  auto r = gpt2q::test::init_model(dir / "clf", "--geometry 64x2x2 --task classify --n-positions 64");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_gpt2q("compare --model " + shell_quote(dir / "clf") + " --data " +
                shell_quote(gpt2q::test::ag_news_test_csv()) + " --tokenizer " +
                shell_quote(gpt2q::test::gpt2_tokenizer_dir()) +
                " --limit 16 --max-length 24 --variants fp32,int8-tensor:per-channel,llm-int8,nf4,fp4 --out " +
                shell_quote(dir / "report"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_text(dir / "report" / "results.json"));
  std::vector<std::string> variants;
  for (const auto& v : j["variants"]) variants.push_back(v["name"]);
  ASSERT_EQ(variants.size(), 5u);
  const std::vector<std::string> classes = j["run"]["class_names"];

  const fs::path profile = dir / "profile", dom = dir / "dom.html";
  const std::string cmd = browser +
                          " --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking "
                          "--disable-component-update --disable-sync --user-data-dir=" +
                          shell_quote(profile) + " --dump-dom " +
                          shell_quote("file://" + (dir / "report" / "report.html").string()) + " > " +
                          shell_quote(dom) + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string html = read_text(dom);
  ASSERT_NE(html.find("</html>"), std::string::npos) << "no DOM dumped";

  for (const char* id : {"metrics", "memory", "latency", "throughput"}) {
    const std::string svg = svg_element(html, id);
    ASSERT_FALSE(svg.empty()) << id;
    EXPECT_NE(svg.find("data-rendered=\"yes\""), std::string::npos) << id << " not laid out";
    EXPECT_EQ(attr_values(svg, "data-variant"), variants) << id;
  }
  EXPECT_EQ(count_of(svg_element(html, "metrics"), "class=\"bar\""), 4 * variants.size());
  // The Δ chart: every variant but the baseline (the zero line).
  const std::string delta = svg_element(html, "quality-delta");
  EXPECT_NE(delta.find("data-rendered=\"yes\""), std::string::npos) << "quality-delta not laid out";
  EXPECT_EQ(attr_values(delta, "data-variant"), std::vector<std::string>(variants.begin() + 1, variants.end()));
  EXPECT_EQ(count_of(delta, "class=\"bar\""), 2 * (variants.size() - 1));
  const std::string f1 = svg_element(html, "per-class-f1");
  EXPECT_NE(f1.find("data-rendered=\"yes\""), std::string::npos);
  EXPECT_EQ(attr_values(f1, "data-class"), classes);
  EXPECT_EQ(count_of(f1, "class=\"bar\""), classes.size() * variants.size());
  std::vector<std::string> heatmaps;
  for (size_t i = 0; i < variants.size(); ++i) {
    const std::string svg = svg_element(html, "confusion", i);
    ASSERT_FALSE(svg.empty()) << i;
    EXPECT_NE(svg.find("data-rendered=\"yes\""), std::string::npos);
    EXPECT_EQ(count_of(svg, "class=\"cell\""), classes.size() * classes.size());
    heatmaps.push_back(attr_values(svg, "data-variant").at(0));
  }
  EXPECT_EQ(heatmaps, variants);
  EXPECT_EQ(count_of(html, "data-chart=\"confusion\""), variants.size());
  EXPECT_EQ(count_of(html, "data-rendered=\"no\""), 0u);
  for (const char* t : {"efficiency", "quality"})
    EXPECT_EQ(attr_values(table_element(html, t), "data-variant"), variants) << t;
  EXPECT_EQ(attr_values(table_element(html, "per-class-f1"), "data-class"), classes);
  EXPECT_GT(count_of(html, "<li data-kind="), variants.size());
  fs::remove_all(dir);
}

}  // namespace
