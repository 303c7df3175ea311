// The folders are the layers (docs/architecture.md): every #include "..."
// in src/ names a header of its own layer or of a layer its CMake target
// depends on, directly or through others. The DEPS lists are read from
// CMakeLists.txt (gpt2q_layer(NAME DEPS ...)), so adding an upward include,
// or a layer without declaring it, fails here.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "support/test_env.h"

namespace fs = std::filesystem;

namespace {

fs::path repo_root() { return (gpt2q::test::fixtures_dir() / ".." / "..").lexically_normal(); }

// "backend/cpu/gemm.h" -> "backend/cpu"; "backend/linear_args.h" -> "backend"
// (the plain headers every backend shares); "core/tensor.h" -> "core".
std::string layer_of(const std::string& path) {
  const auto slash = path.find('/');
  if (slash == std::string::npos) return "";
  const std::string top = path.substr(0, slash);
  if (top != "backend") return top;
  const auto second = path.find('/', slash + 1);
  return second == std::string::npos ? "backend" : path.substr(0, second);
}

struct Layers {
  std::map<std::string, std::set<std::string>> deps;  // direct, by layer name

  std::set<std::string> closure(const std::string& layer) const {
    std::set<std::string> seen;
    std::vector<std::string> todo{layer};
    while (!todo.empty()) {
      const std::string l = todo.back();
      todo.pop_back();
      if (!seen.insert(l).second) continue;
      if (auto it = deps.find(l); it != deps.end())
        for (const auto& d : it->second) todo.push_back(d);
    }
    return seen;
  }
};

// The layers and their DEPS from CMakeLists.txt.
Layers read_layers() {
  std::ifstream in(repo_root() / "CMakeLists.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  Layers l;
  // The backend list: backend/cpu, and backend/cuda in a CUDA build; both
  // depend on core and on the shared plain headers.
  const std::set<std::string> backends{"backend/cpu", "backend/cuda"};
  for (const auto& b : backends) l.deps[b] = {"core", "backend"};
  l.deps["backend"] = {"core"};
  const std::regex layer_re(R"(gpt2q_layer\((\S+)\s+DEPS([^)]*)\))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), layer_re); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[1];
    std::istringstream deps((*it)[2].str());
    std::string d;
    while (deps >> d) {
      if (d == "${GPT2Q_BACKENDS}") {
        l.deps[name].insert(backends.begin(), backends.end());
      } else if (d.rfind("gpt2q_", 0) == 0) {
        std::string layer = d.substr(6);
        if (layer.rfind("backend_", 0) == 0) layer = "backend/" + layer.substr(8);
        l.deps[name].insert(layer);
      }  // third-party targets and libraries
    }
    l.deps[name].insert(name == "backend/cpu" || name == "backend/cuda" ? "backend" : name);
  }
  return l;
}

}  // namespace

TEST(Layering, CMakeDeclaresTheLayers) {
  const Layers l = read_layers();
  for (const char* name : {"core", "io", "text", "backend/cpu", "ops", "quant", "layers", "model", "eval", "train",
                           "report", "pipeline"})
    EXPECT_TRUE(l.deps.count(name)) << name << " is not a gpt2q_layer in CMakeLists.txt";
  // The layers of the weight path, in order: quant below layers below model.
  EXPECT_TRUE(l.closure("model").count("layers"));
  EXPECT_TRUE(l.closure("layers").count("quant"));
  EXPECT_FALSE(l.closure("quant").count("layers"));
  EXPECT_FALSE(l.closure("quant").count("model"));
}

TEST(Layering, NoIncludeRunsUpward) {
  const Layers layers = read_layers();
  const fs::path src = repo_root() / "src";
  ASSERT_TRUE(fs::is_directory(src)) << src;
  const std::regex include_re(R"(^\s*#\s*include\s+"([^"]+)\")");
  size_t files = 0, includes = 0;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh" && ext != ".inc") continue;
    const std::string rel = fs::relative(e.path(), src).generic_string();
    const std::string layer = layer_of(rel);
    if (layer == "cli") continue;  // the executable sits on top of everything
    ASSERT_TRUE(layers.deps.count(layer)) << rel << ": folder '" << layer << "' is no layer in CMakeLists.txt";
    const std::set<std::string> allowed = layers.closure(layer);
    ++files;
    std::ifstream in(e.path());
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      std::smatch m;
      if (!std::regex_search(line, m, include_re)) continue;
      const std::string target = layer_of(m[1]);
      if (target.empty()) continue;  // a third-party header in quotes
      ++includes;
      EXPECT_TRUE(allowed.count(target)) << rel << ":" << n << " includes " << m[1] << " of layer '" << target
                                         << "', which '" << layer << "' does not depend on";
    }
  }
  EXPECT_GT(files, 100u);
  EXPECT_GT(includes, 500u);
}
