#pragma once
// Each CLI command lives in its own file and registers itself with the app.
// The command body runs after parsing; errors are thrown as gpt2q::Error and
// printed by main() as one line.
#include <functional>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace gpt2q::cli {

struct CommandRegistry {
  using Registrar = std::function<void(CLI::App&)>;
  static std::vector<std::pair<std::string, Registrar>>& all();
  struct Add {
    Add(std::string name, Registrar r) { all().emplace_back(std::move(name), std::move(r)); }
  };
};

// Writes a JSON object as one line on stdout.
void print_json(const nlohmann::json& j);

// The exact command line of this process, shell-quoted where needed (Linux:
// /proc/self/cmdline), for reports; `fallback` where it cannot be read.
std::string exact_command_line(const std::string& fallback);

}  // namespace gpt2q::cli

// In a command file: GPT2Q_COMMAND(info) { auto* cmd = app.add_subcommand(...); ... }
#define GPT2Q_COMMAND(name)                                                          \
  static void register_##name(CLI::App& app);                                        \
  static ::gpt2q::cli::CommandRegistry::Add add_##name(#name, register_##name);      \
  static void register_##name(CLI::App& app)
