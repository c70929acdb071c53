// reflect_pad (engine/ops_pad.cpp): the forward against torch.nn.functional.pad(mode="reflect") values
// written out by hand, the backward's fold-back into mirrored samples, and its operand checks. The
// gradient check against central differences is the op case "reflect_pad" (tests/support/op_cases.cpp).
#include <gtest/gtest.h>

#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

TEST(ReflectPad, MirrorsAroundTheEdgeSamples) {
  // torch.nn.functional.pad(torch.arange(5.).view(1, 1, 5), (2, 3), "reflect") = [2, 1, 0, 1, 2, 3, 4, 3, 2, 1].
  const Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 10, 11, 12, 13, 14}, {2, 1, 5});
  const Tensor y = ops::reflect_pad(x, 2, 3);
  ASSERT_EQ(y.shape(), (Shape{2, 1, 10}));
  EXPECT_EQ(y.to_float_vector(),
            (std::vector<float>{2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 12, 11, 10, 11, 12, 13, 14, 13, 12, 11}));
  EXPECT_EQ(ops::reflect_pad(x, 0, 0).to_float_vector(), x.to_float_vector());
}

TEST(ReflectPad, BackwardFoldsMirroredGradientsBack) {
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4}, {1, 5});
  auto slot = std::make_shared<autograd::GradSlot>();
  slot->shape = x.shape();
  x.set_grad_slot(slot);
  autograd::Tape tape;
  Tensor y;
  {
    autograd::RecordingScope recording(tape);
    y = ops::reflect_pad(x, 2, 3);
  }
  // Output positions weighted 1, 2, ..., 10: input 0 gets 3; input 1 gets 4 + 2 (left mirror) + 10 (right);
  // input 2 gets 5 + 1 + 9; input 3 gets 6 + 8; input 4 gets 7 (the edges are never mirrored).
  tape.backward_from(y, Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 10}));
  EXPECT_EQ(slot->accumulator().to_float_vector(), (std::vector<float>{3, 16, 15, 14, 7}));
}

TEST(ReflectPad, RefusesPaddingAsLongAsTheRow) {
  const Tensor x = Tensor::zeros({2, 4});
  EXPECT_NE(testing::error_of([&] { ops::reflect_pad(x, 4, 0); }).find("must be >= 0 and < the last dimension 4"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { ops::reflect_pad(x, 0, -1); }).find("reflect_pad"), std::string::npos);
}

}  // namespace
}  // namespace vitscuda
