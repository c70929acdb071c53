// Sub-commands of the `vitscuda` program. Each registers its options and callback.
#pragma once
#include <CLI/CLI.hpp>

namespace vitscuda::cli {

void register_synth(CLI::App& app);
void register_info(CLI::App& app);
void register_prepare(CLI::App& app);
void register_selftest(CLI::App& app);
// `exit_status` (owned by main, alive while the app parses) receives the status of a run that
// did not throw: its training outcome, or a feedback review that synthesised nothing.
void register_train(CLI::App& app, int& exit_status);
void register_feedback(CLI::App& app, int& exit_status);
void register_verify(CLI::App& app);
void register_eval(CLI::App& app);

}  // namespace vitscuda::cli
