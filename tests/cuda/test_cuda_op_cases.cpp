// CUDA against the CPU for every case of the op case list (tests/support/op_cases.h), at the
// VITS-size shapes, both in f32: OpCases/CudaVsCpu.Forward/<case> compares the outputs and
// OpCases/CudaVsCpu.Backward/<case> the gradients of every differentiable input, each under every
// CUDA variant of the case (conv1d: the cuDNN and the im2col paths) with the case's tolerance
// (op_cases.h says why each holds). The inputs, the runs and the comparisons are the ones the CPU
// tests in tests/engine/test_op_cases.cpp exercise; skipped without a usable CUDA device.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/autograd.h"
#include "support/gradcheck.h"
#include "support/op_cases.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

using testing::CaseSize;
using testing::OpCase;

std::string case_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

// Restores the default CUDA paths whatever a test's variants selected.
class CudaVsCpu : public ::testing::TestWithParam<std::string> {
 protected:
  void TearDown() override { testing::reset_cuda_variants(); }
};

TEST_P(CudaVsCpu, Forward) {
  VITSCUDA_REQUIRE_CUDA();
  const OpCase& c = testing::op_case(GetParam());
  const std::vector<Tensor> values = testing::case_inputs(c, CaseSize::Large);
  SCOPED_TRACE(c.name + ": " + testing::describe_inputs(c, values));
  const Tensor reference = testing::run_forward(c, testing::place_inputs(c, values, Device::CPU, DType::F32));
  const std::vector<Tensor> on_device = testing::place_inputs(c, values, Device::CUDA, DType::F32);
  for (const testing::CudaVariant& variant : c.variants()) {
    SCOPED_TRACE("variant '" + variant.name + "', tolerance " + variant.tolerance.name);
    variant.select();
    const Tensor got = testing::run_forward(c, on_device);
    ASSERT_EQ(got.device(), Device::CUDA);
    const testing::Comparison cmp = testing::compare_forward(variant.tolerance, got, reference);
    EXPECT_TRUE(cmp.ok) << "output: " << cmp.detail;
  }
}

TEST_P(CudaVsCpu, Backward) {
  VITSCUDA_REQUIRE_CUDA();
  const OpCase& c = testing::op_case(GetParam());
  const std::vector<Tensor> values = testing::case_inputs(c, CaseSize::Large);
  SCOPED_TRACE(c.name + ": " + testing::describe_inputs(c, values));
  const std::vector<Tensor> on_device = testing::place_inputs(c, values, Device::CUDA, DType::F32);
  if (!c.any_differentiable()) {
    // No gradient flows through this op on the device either: nothing may be recorded.
    std::vector<Tensor> leaves;
    for (const Tensor& t : on_device) leaves.push_back(testing::requiring_grad(t.clone()));
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    EXPECT_FALSE(c.build(leaves).requires_grad());
    EXPECT_EQ(tape.size(), 0u);
    return;
  }
  const std::vector<Tensor> reference =
      testing::run_gradients(c, testing::place_inputs(c, values, Device::CPU, DType::F32));
  for (const testing::CudaVariant& variant : c.variants()) {
    SCOPED_TRACE("variant '" + variant.name + "', tolerance " + variant.tolerance.name);
    variant.select();
    const std::vector<Tensor> got = testing::run_gradients(c, on_device);
    ASSERT_EQ(got.size(), reference.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].defined(), reference[i].defined()) << "gradient of " << c.inputs[i].name;
      if (!reference[i].defined()) continue;
      EXPECT_EQ(got[i].device(), Device::CUDA) << c.inputs[i].name;
      const testing::Comparison cmp = testing::compare_gradient(variant.tolerance, got[i], reference[i]);
      EXPECT_TRUE(cmp.ok) << "gradient of " << c.inputs[i].name << ": " << cmp.detail;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(OpCases, CudaVsCpu, ::testing::ValuesIn(testing::op_case_names()), case_name);

}  // namespace
}  // namespace vitscuda
