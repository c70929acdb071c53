// Which compute backends this build and this machine have.
#pragma once
#include <string>

namespace vitscuda::kernels {

bool built_with_cuda();
// True when a CUDA device can be used now. Never throws: no driver, no device or
// any runtime error means false, with the reason in *why (if given).
bool cuda_device_available(std::string* why = nullptr);

}  // namespace vitscuda::kernels
