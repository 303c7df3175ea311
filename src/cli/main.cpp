// gpt2q: the command-line front end. Commands register themselves (command.h);
// main parses, runs, and turns any error into one line on stderr + exit 1.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "cli/command.h"
#include "core/build_info.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/file_util.h"

namespace gpt2q::cli {

std::vector<std::pair<std::string, CommandRegistry::Registrar>>& CommandRegistry::all() {
  static std::vector<std::pair<std::string, Registrar>> v;
  return v;
}

// Flushed at once (bench prints one line per measurement as it goes), and a
// failed write is reported with its reason while errno still holds it.
void print_json(const nlohmann::json& j) {
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::cout.flush();
  if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() || std::fflush(stdout) != 0)
    fail("stdout: {}", std::strerror(errno));
}

// The exact command line, shell-quoted where needed (Linux: /proc/self/cmdline).
std::string exact_command_line(const std::string& fallback) {
  std::string raw;
  try {
    raw = read_file("/proc/self/cmdline");
  } catch (const std::exception&) {
    return fallback;
  }
  std::string out;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    const std::string arg = raw.substr(start, end - start);
    if (!out.empty()) out += ' ';
    if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+") ==
                            std::string::npos) {
      out += arg;
    } else {
      out += '\'';
      for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
    start = end + 1;
  }
  return out;
}

// An error is one line of readable length, whatever a hostile input put in
// it (a config value of 600 KB, a name with a newline): newlines become
// spaces and the middle of an overlong message is cut.
std::string error_line(std::string_view what) {
  constexpr size_t kMax = 1000;
  std::string s(what);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  if (s.size() <= kMax) return s;
  return s.substr(0, kMax - 200) + fmt::format(" [... {} characters ...] ", s.size() - kMax) + s.substr(s.size() - 200);
}

// Output that never reached its file is a failure (`gpt2q info --json >
// /dev/full` must not exit 0): flush and close stdout, and report what went
// wrong as one line. Returns the exit code.
int finish_stdout(int rc) {
  std::cout.flush();
  bool bad = !std::cout;
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) bad = true;
  int err = errno;
  if (std::fclose(stdout) != 0 && !bad) {
    bad = true;
    err = errno;
  }
  if (!bad || rc != 0) return rc;  // an error line was printed already
  fmt::print(stderr, "gpt2q: error: stdout: {}\n", err != 0 ? std::strerror(err) : "write error");
  return rc != 0 ? rc : 1;
}

}  // namespace gpt2q::cli

namespace {

int run_main(int argc, char** argv) {
  CLI::App app{"gpt2q: fine-tune, quantize and evaluate GPT-2 (HF checkpoints), natively."};
  app.require_subcommand(1);
  // What a result depends on: the build, the CPU's features and the BLAS
  // kernels (OpenBLAS picks them by CPU model, or OPENBLAS_CORETYPE).
  app.set_version_flag("--version", [] {
    return fmt::format("gpt2q {} ({})\nCPU: {} ({})\nBLAS: {}", gpt2q::build_version(), gpt2q::build_git_commit(),
                       gpt2q::cpu_model_name(), gpt2q::cpu_features_str(), gpt2q::cpu::blas_description());
  });
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    std::string name = a ? a->get_name() : "gpt2q";
    return std::string(e.what()) + " (see '" + name + " --help')\n";
  });
  auto regs = gpt2q::cli::CommandRegistry::all();
  std::sort(regs.begin(), regs.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& [name, reg] : regs) reg(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "gpt2q: error: {}\n", gpt2q::cli::error_line(e.what()));
    return 2;
  } catch (const gpt2q::Error& e) {
    fmt::print(stderr, "gpt2q: error: {}\n", gpt2q::cli::error_line(e.what()));
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // The library names paths in its own errors; this is the safety net for
    // a std::filesystem call that throws: "PATH: reason", as everywhere else.
    fmt::print(stderr, "gpt2q: error: {}\n", gpt2q::cli::error_line(e.path1().string() + ": " + e.code().message()));
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "gpt2q: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gpt2q: error: {}\n", gpt2q::cli::error_line(e.what()));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return gpt2q::cli::finish_stdout(run_main(argc, argv)); }
