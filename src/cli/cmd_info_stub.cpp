#include "cli/command.h"
#include "core/cpu_features.h"
GPT2Q_COMMAND(sysinfo) {
  auto* cmd = app.add_subcommand("sysinfo", "Show the CPU features and threads gpt2q will use");
  cmd->callback([] {
    gpt2q::cli::print_json({{"cpu", gpt2q::cpu_model_name()}, {"features", gpt2q::cpu_features_str()},
                            {"threads", gpt2q::num_threads()}});
  });
}
