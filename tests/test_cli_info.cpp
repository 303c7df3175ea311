// `gpt2q info` end to end: the shared tiny checkpoints, and every kind of
// broken checkpoint giving one clear error line and exit status 1.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "support/test_env.h"

namespace fs = std::filesystem;
using namespace gpt2q::test;
using nlohmann::json;

namespace {

fs::path tiny_gpt2() { return gpt2q::test::data_dir() / "tiny-gpt2" / "tiny_gpt2"; }

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// Header length and JSON header of a safetensors file.
std::pair<uint64_t, json> read_header(const fs::path& p) {
  std::string bytes = gpt2q::read_file(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {n, json::parse(bytes.substr(8, n))};
}

// A checkpoint dir with fake_gpt2's config.json (edited) and the given
// model.safetensors bytes.
fs::path make_dir(const std::string& tag, const std::string& weights, const std::function<void(json&)>& edit = {}) {
  auto dir = gpt2q::test::temp_dir("cli_info_" + tag);
  json cfg = json::parse(gpt2q::read_file(fake_gpt2_dir() / "config.json"));
  if (edit) edit(cfg);
  gpt2q::write_file_atomic(dir / "config.json", cfg.dump(2));
  gpt2q::write_file_atomic(dir / "model.safetensors", weights);
  return dir;
}

// fake_gpt2's model.safetensors with its header edited (data kept).
std::string edited_weights(const std::function<void(json&)>& edit) {
  std::string bytes = gpt2q::read_file(fake_gpt2_dir() / "model.safetensors");
  auto [n, header] = read_header(fake_gpt2_dir() / "model.safetensors");
  edit(header);
  std::string text = header.dump();
  return le64(text.size()) + text + bytes.substr(8 + n);
}

}  // namespace

// --version names the build and what results depend on: CPU and BLAS kernels.
TEST(CliInfo, VersionNamesBuildCpuAndBlasCore) {
  const auto r = run_gpt2q("--version");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("gpt2q ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\nCPU: "), std::string::npos) << r.out;
  const size_t blas = r.out.find("\nBLAS: OpenBLAS ");
  ASSERT_NE(blas, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(core: ", blas), std::string::npos) << r.out;
}

TEST(CliInfo, FakeGpt2Text) {
  auto r = run_gpt2q("info " + shell_quote(fake_gpt2_dir()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("GPT2LMHeadModel (CausalLM)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters    102,640"), std::string::npos) << r.out;  // MANIFEST: 102,640
  EXPECT_NE(r.out.find("tokenizer     vocab.json + merges.txt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tied to wte"), std::string::npos) << r.out;
}

TEST(CliInfo, FakeGpt2JsonAddsUp) {
  auto r = run_gpt2q("info --json " + shell_quote(fake_gpt2_dir()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["parameters"], 102640);
  EXPECT_EQ(j["kind"], "CausalLM");
  EXPECT_EQ(j["lm_head"], "tied");
  EXPECT_EQ(j["tokenizer"], true);
  EXPECT_EQ(j["dtypes"], json::array({"F32"}));
  // Stored bytes are the file's whole data section.
  auto file = fake_gpt2_dir() / "model.safetensors";
  auto [n, header] = read_header(file);
  EXPECT_EQ(j["bytes"].get<uint64_t>(), fs::file_size(file) - 8 - n);
  uint64_t params = 0, bytes = 0;
  for (const auto& [k, v] : j["components"].items()) {
    params += v["parameters"].get<uint64_t>();
    bytes += v["bytes"].get<uint64_t>();
  }
  EXPECT_EQ(params, 102640u);
  EXPECT_EQ(bytes, j["bytes"].get<uint64_t>());
  EXPECT_EQ(j["components"]["wte"]["parameters"], 50257 * 2);
  EXPECT_EQ(j["components"]["wpe"]["parameters"], 1024 * 2);
}

TEST(CliInfo, TinyGpt2IsABaseModel) {
  auto r = run_gpt2q("info --json " + shell_quote(tiny_gpt2()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["kind"], "Base");
  EXPECT_EQ(j["architecture"], "GPT2Model");
  EXPECT_EQ(j["parameters"], 2168);  // MANIFEST
  EXPECT_EQ(j["transformer_prefix"], false);
}

TEST(CliInfo, ClassifierShowsLabels) {
  auto r = run_gpt2q("info " + shell_quote(gpt2q::test::fixtures_dir() / "io" / "tiny_cls_f16"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("labels        4: World, Sports, Business, Sci/Tech"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("stored dtype  F16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokenizer     absent"), std::string::npos) << r.out;
}

TEST(CliInfo, BadCheckpointsGiveOneErrorLine) {
  const std::string good = gpt2q::read_file(fake_gpt2_dir() / "model.safetensors");
  const std::string tiny_weights = gpt2q::read_file(tiny_gpt2() / "model.safetensors");
  struct Case {
    const char* tag;
    fs::path dir;
    std::string expect;  // after "gpt2q: error: <dir>/"
  };
  auto no_config = gpt2q::test::temp_dir("cli_info_noconfig");
  fs::copy_file(fake_gpt2_dir() / "model.safetensors", no_config / "model.safetensors");
  std::vector<Case> cases = {
      {"missing dir", no_config / "absent", "absent: no such directory"},
      {"missing config", no_config, "config.json: no such file"},
      {"truncated", make_dir("trunc", good.substr(0, 5)), "model.safetensors: truncated"},
      {"header past end", make_dir("hdr", good.substr(0, 1000)), "model.safetensors: header length 1392 runs past"},
      {"invalid JSON", make_dir("json", le64(8) + "{\"a\": [}" + good.substr(8)),
       "model.safetensors: header: invalid JSON"},
      {"unknown dtype",
       make_dir("dtype", edited_weights([](json& h) { h["transformer.ln_f.bias"]["dtype"] = "F8_E4M3"; })),
       "model.safetensors: tensor 'transformer.ln_f.bias': unsupported dtype 'F8_E4M3'"},
      {"shape x dtype",
       make_dir("span", edited_weights([](json& h) { h["transformer.wpe.weight"]["shape"] = {1024, 3}; })),
       "model.safetensors: tensor 'transformer.wpe.weight': shape [1024, 3] x F32 needs 12288 bytes but "
       "data_offsets span 8192"},
      {"overlap", make_dir("overlap", edited_weights([](json& h) {
         h["transformer.ln_f.bias"]["data_offsets"] = {300, 308};
       })),
       "overlap"},
      {"past end", make_dir("pastend", good.substr(0, good.size() - 4)),
       "model.safetensors: tensor 'transformer.wte.weight': data_offsets [8504, 410560] run past the data section"},
      {"wrong shape", make_dir("shape", tiny_weights),
       "model.safetensors: tensor 'wte.weight' has shape [21, 2] but config.json implies [vocab_size, n_embd] = "
       "[50257, 2]"},
      {"missing tensor", make_dir("missing", edited_weights([](json& h) { h.erase("transformer.ln_f.weight"); })),
       "model.safetensors: missing tensor 'ln_f.weight'"},
      {"more layers in config", make_dir("layers", good, [](json& c) { c["n_layer"] = 2; }),
       "model.safetensors: missing tensor 'h.1.ln_1.weight' (config.json: n_layer 2)"},
      {"n_inner disagrees", make_dir("inner", good, [](json& c) { c["n_inner"] = 4; }),
       "model.safetensors: tensor 'h.0.mlp.c_fc.weight' has shape [2, 8] but config.json implies [n_embd, n_inner] "
       "= [2, 4]"},
      {"bad config value", make_dir("cfgval", good, [](json& c) { c["n_head"] = 3; }),
       "config.json: key 'n_head': n_embd 2 is not divisible by n_head 3"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.tag);
    auto r = run_gpt2q("info " + shell_quote(c.dir));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(r.out.empty()) << r.out;
    const std::string prefix = "gpt2q: error: " + c.dir.string();
    EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  }
  for (const auto& c : cases) fs::remove_all(c.dir == no_config / "absent" ? no_config : c.dir);
}

TEST(CliInfo, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run_gpt2q("info").exit_code, 2);
  EXPECT_EQ(run_gpt2q("info a b").exit_code, 2);
}

// Output that cannot be written is an error, not exit 0 (issue 14): stdout
// is flushed and closed before exit and a failure is reported as one line.
TEST(CliInfo, FullStdoutIsAnError) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const auto dir = temp_dir("cli_info_full");
  const auto err = dir / "stderr";
  for (const std::string& args : {"info --json " + shell_quote(fake_gpt2_dir()), std::string("--version")}) {
    const std::string cmd = shell_quote(gpt2q_binary()) + " " + args + " >/dev/full 2>" + shell_quote(err);
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << cmd;
    EXPECT_NE(WEXITSTATUS(status), 0) << cmd;
    // CLI11 prints --version itself and flushes, so the reason is gone by
    // the time gpt2q checks; the line still says what failed.
    const std::string want = args == "--version" ? "gpt2q: error: stdout: " : "gpt2q: error: stdout: No space left on device\n";
    const std::string got = read_text(err);
    EXPECT_EQ(got.substr(0, want.size()), want) << cmd;
    EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 1) << cmd;
  }
}
