// Sub-commands of the `vitscuda` program. Each registers its options and callback.
#pragma once
#include <CLI/CLI.hpp>

namespace vitscuda::cli {

void register_synth(CLI::App& app);
void register_info(CLI::App& app);
void register_prepare(CLI::App& app);
void register_selftest(CLI::App& app);
void register_train(CLI::App& app);
void register_feedback(CLI::App& app);
void register_verify(CLI::App& app);
// Exit status of a `train` / `feedback` run (0 when none ran).
int train_exit_code();
int feedback_exit_code();

}  // namespace vitscuda::cli
