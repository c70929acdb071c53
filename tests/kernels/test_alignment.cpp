// Kernel tests of the length regulator's frame gather (kernels/alignment.h): the gather against a
// direct loop, and out-of-range indices rejected by name and position, forward and backward.
#include <gtest/gtest.h>

#include "common/error.h"
#include "kernel_checks.h"
#include "kernels/alignment.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

// ------------------------------------------------------------------ alignment gather

TEST(GatherFramesKernel, GathersFramesAndRejectsOutOfRangeIndices) {
  const int64_t B = 2, C = 3, T = 4, F = 5;
  const Vec x = random_vector(B * C * T, 141);
  const std::vector<int32_t> index = {0, 0, 1, 3, -1, 2, 2, 2, -1, -1};
  Vec y(B * C * F);
  gather_frames_cpu<double>(x.data(), index.data(), y.data(), B, C, T, F);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t f = 0; f < F; ++f) {
        const int32_t t = index[b * F + f];
        EXPECT_EQ(y[(b * C + c) * F + f], t < 0 ? 0.0 : x[(b * C + c) * T + t]) << b << " " << c << " " << f;
      }
  // An index past the input or below -1 is an error naming it and its position, forward and
  // backward (a read or write out of bounds otherwise).
  for (const int32_t bad : {4, -2}) {
    std::vector<int32_t> wrong = index;
    wrong[7] = bad;
    Vec dx(B * C * T, 0.0);
    for (const bool backward : {false, true}) {
      try {
        if (backward)
          gather_frames_backward_cpu<double>(y.data(), wrong.data(), dx.data(), B, C, T, F);
        else
          gather_frames_cpu<double>(x.data(), wrong.data(), y.data(), B, C, T, F);
        ADD_FAILURE() << "index " << bad << " of a " << T << "-frame input was accepted (backward " << backward << ")";
      } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("index " + std::to_string(bad) + " at 7 outside [-1, 4)"), std::string::npos) << msg;
      }
    }
    EXPECT_EQ(dx, Vec(B * C * T, 0.0)) << "a rejected backward must not have written";
  }
}

}  // namespace
}  // namespace vitscuda::kernels
