#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "model/alignment.h"

using namespace vitscuda;

TEST(Alignment, LargestRemainderKeepsTheExactSumAndProportions) {
  // quotas 10 * [1, 2, 3, 4] / 10 = [1, 2, 3, 4]: exact.
  EXPECT_EQ(model::scale_durations_to_frames({1, 2, 3, 4}, 10), (std::vector<int32_t>{1, 2, 3, 4}));
  // quotas 7 * [1,1,1] / 3 = 2.333: floors 2,2,2 and one extra frame to the first (ties: lower index).
  EXPECT_EQ(model::scale_durations_to_frames({1, 1, 1}, 7), (std::vector<int32_t>{3, 2, 2}));
  // quotas 5 * [0.2, 0.5, 0.3] = [1, 2.5, 1.5]: floors 1,2,1 (4); the 0.5 remainders tie, first wins.
  EXPECT_EQ(model::scale_durations_to_frames({0.2, 0.5, 0.3}, 5), (std::vector<int32_t>{1, 3, 1}));
  // Largest fractional part wins: quotas 6 * [0.55, 0.3, 0.15] = [3.3, 1.8, 0.9] -> 3, 2, 1.
  EXPECT_EQ(model::scale_durations_to_frames({0.55, 0.3, 0.15}, 6), (std::vector<int32_t>{3, 2, 1}));
  // All-zero durations share evenly.
  EXPECT_EQ(model::scale_durations_to_frames({0, 0, 0, 0}, 6), (std::vector<int32_t>{2, 2, 1, 1}));
  // Fewer frames than tokens: some tokens get none, the sum still holds.
  auto few = model::scale_durations_to_frames({1, 1, 1, 1, 1}, 2);
  EXPECT_EQ(std::accumulate(few.begin(), few.end(), 0), 2);
  for (int total : {1, 13, 97, 1000}) {
    auto d = model::scale_durations_to_frames({0.3, 7.1, 2.2, 0.0, 5.5, 1e-9}, total);
    EXPECT_EQ(std::accumulate(d.begin(), d.end(), 0), total) << total;
  }
  EXPECT_THROW(model::scale_durations_to_frames({1, -1}, 3), std::exception);
  EXPECT_THROW(model::scale_durations_to_frames({1, std::nan("")}, 3), std::exception);
}

TEST(Alignment, FrameToTokenIndexFollowsCumulativeDurations) {
  // Item 0: durations 2,0,3 over 5 frames; item 1: 1,1 then padding.
  auto index = model::frame_to_token_index({{2, 0, 3}, {1, 1}}, {5, 2}, 5);
  EXPECT_EQ(index, (std::vector<int32_t>{0, 0, 2, 2, 2, 0, 1, -1, -1, -1}));
  // A length shorter than the durations' sum cuts the tail.
  EXPECT_EQ(model::frame_to_token_index({{2, 2}}, {3}, 4), (std::vector<int32_t>{0, 0, 1, -1}));
}
