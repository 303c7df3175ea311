// gpt2q: the command-line front end. Commands register themselves (command.h);
// main parses, runs, and turns any error into one line on stderr + exit 1.
#include <algorithm>
#include <cstdio>
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

void print_json(const nlohmann::json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
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

}  // namespace gpt2q::cli

int main(int argc, char** argv) {
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
    fmt::print(stderr, "gpt2q: error: {}\n", e.what());
    return 2;
  } catch (const gpt2q::Error& e) {
    fmt::print(stderr, "gpt2q: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "gpt2q: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gpt2q: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
