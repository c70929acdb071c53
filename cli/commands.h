// Sub-commands of the `vitscuda` program. Each registers its options and callback.
#pragma once
#include <CLI/CLI.hpp>

namespace vitscuda::cli {

void register_synth(CLI::App& app);
void register_info(CLI::App& app);
void register_selftest(CLI::App& app);

}  // namespace vitscuda::cli
