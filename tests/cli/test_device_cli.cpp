// Without a usable CUDA device (or in a build without CUDA), device work is a clear error, never a
// crash or a silent CPU fallback.
#include <gtest/gtest.h>

#include <string>

#include "engine/tensor.h"
#include "kernels/backend.h"
#include "kernels/error.h"
#include "support/test_support.h"

using namespace vitscuda;

namespace {

// A device tensor is an error naming CUDA; `synth --device cuda` says why and exits non-zero.
TEST(CudaUnavailable, DeviceTensorsAndDeviceCommandsFailClearly) {
  std::string why;
  if (kernels::cuda_device_available(&why)) GTEST_SKIP() << "a CUDA device is present: the parity tests cover it";
  try {
    Tensor t = Tensor::empty({16}, DType::F32, Device::CUDA);
    FAIL() << "a CUDA tensor was created without a usable device";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("CUDA") != std::string::npos || msg.find("cuda") != std::string::npos) << msg;
  }
  const auto r = vitscuda::testing::run_command(vitscuda::testing::binary_path("vitscuda") + " synth --model " +
                                                vitscuda::testing::data_path("golden/tiny_sdp") +
                                                " --text hello --out /dev/null --device cuda");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--device cuda: no usable CUDA device"), std::string::npos) << r.output;
}

}  // namespace
