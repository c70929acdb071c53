#include "cli/device_options.h"

#include <cstdio>

#include "common/error.h"
#include "engine/device_allocator.h"
#include "kernels/backend.h"
#include "kernels/device.h"

namespace vitscuda::cli {

void add_device_options(CLI::App* cmd, DeviceOptions& options) {
  cmd->add_option("--device", options.device, "auto (cuda when a GPU is present), cuda or cpu")
      ->check(CLI::IsMember({"auto", "cuda", "cpu"}));
  cmd->add_option("--memory-budget", options.memory_budget,
                  "Most GPU memory to use, e.g. 7.5G (an 8 GB card's share); out of budget is an error");
}

Device resolve_device(const DeviceOptions& options, const char* command) {
  std::string why;
  const bool cuda_ok = kernels::cuda_device_available(&why);
  Device device = Device::CPU;
  if (options.device == "cuda") {
    VC_CHECK(cuda_ok, command << " --device cuda: no usable CUDA device (" << why << "); use --device cpu");
    device = Device::CUDA;
  } else if (options.device == "auto") {
    device = cuda_ok ? Device::CUDA : Device::CPU;
  }
  if (device == Device::CUDA) {
    if (!options.memory_budget.empty())
      DeviceAllocator::instance().set_budget(parse_memory_size(options.memory_budget));
    DeviceAllocator::instance().set_oom_hint(
        "Lower --batch-size or --segment-frames, use shorter utterances, or raise --memory-budget.");
    const kernels::DeviceInfo info = kernels::device_info();
    std::printf("device: cuda (%s, sm_%d%d, %s)%s%s\n", info.name.c_str(), info.compute_major, info.compute_minor,
                format_bytes(info.total_memory).c_str(), options.memory_budget.empty() ? "" : ", memory budget ",
                options.memory_budget.c_str());
  } else {
    VC_CHECK(options.memory_budget.empty(), command << ": --memory-budget applies to --device cuda only");
    std::printf("device: cpu%s%s\n", options.device == "auto" ? " (no usable CUDA device: " : "",
                options.device == "auto" ? (why + ")").c_str() : "");
  }
  return device;
}

}  // namespace vitscuda::cli
