// --device and --memory-budget, shared by the commands that compute.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "engine/tensor.h"

namespace vitscuda::cli {

struct DeviceOptions {
  std::string device = "auto";  // auto: cuda when a usable GPU is present, else cpu
  std::string memory_budget;    // e.g. "7.5G"; empty: no budget
};

void add_device_options(CLI::App* cmd, DeviceOptions& options);
// Resolves "auto", checks that CUDA is usable when asked for (an error naming why not),
// installs the memory budget and prints one line naming the device.
Device resolve_device(const DeviceOptions& options, const char* command);

}  // namespace vitscuda::cli
