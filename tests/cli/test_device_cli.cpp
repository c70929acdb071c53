// Without a usable CUDA device (or in a build without CUDA), device work is a clear error, never a
// crash or a silent CPU fallback.
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "engine/tensor.h"
#include "kernels/backend.h"
#include "support/test_support.h"

using namespace vitscuda;

namespace {

// A device tensor is an error naming CUDA; `--device cuda` says why and exits non-zero.
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
  // Every command that computes refuses before it reads its inputs (which need not exist here).
  const std::string model = vitscuda::testing::data_path("golden/tiny_sdp");
  for (const std::string args : {"synth --model " + model + " --text hello --out /dev/null",
                                 "train --data /nonexistent --model " + model + " --out /nonexistent",
                                 "feedback generate --model " + model + " --sentences /nonexistent --out /nonexistent",
                                 "feedback train --review /nonexistent --model " + model +
                                     " --data /nonexistent --out /nonexistent"}) {
    const auto r = vitscuda::testing::run_command(vitscuda::testing::binary_path("vitscuda") + " " + args +
                                                  " --device cuda");
    EXPECT_NE(r.status, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("--device cuda: no usable CUDA device"), std::string::npos) << args << "\n" << r.output;
  }
}

}  // namespace
