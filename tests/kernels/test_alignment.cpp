// Kernel tests of kernels/alignment.h: the length regulator's frame gather against a direct loop, and
// out-of-range indices rejected by name and position, forward and backward; the monotonic alignment
// search against a transcription of the Cython loop, against brute force over every monotonic path,
// its tie rule, padding and length errors.
#include <gtest/gtest.h>

#include <functional>
#include <string>

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

// ------------------------------------------------------------------ monotonic alignment search

// maximum_path_each of finetune-hf-vits' monotonic_align/core.pyx, transcribed line by line on a float copy of
// the whole [F, T] item (as maximum_path makes one), writing the 0/1 path; the test turns it into a map.
std::vector<int32_t> cython_transcription(const std::vector<float>& values, int64_t F, int64_t T, int64_t t_y,
                                          int64_t t_x) {
  std::vector<float> value(values);
  std::vector<int32_t> path(F * T, 0);
  const float max_neg_val = -1e9f;
  int64_t index = t_x - 1;
  for (int64_t y = 0; y < t_y; ++y)
    for (int64_t x = std::max<int64_t>(0, t_x + y - t_y); x < std::min<int64_t>(t_x, y + 1); ++x) {
      float v_cur, v_prev;
      if (x == y)
        v_cur = max_neg_val;
      else
        v_cur = value[(y - 1) * T + x];
      if (x == 0) {
        if (y == 0)
          v_prev = 0.f;
        else
          v_prev = max_neg_val;
      } else {
        v_prev = value[(y - 1) * T + x - 1];
      }
      value[y * T + x] += std::max(v_prev, v_cur);
    }
  for (int64_t y = t_y - 1; y >= 0; --y) {
    path[y * T + index] = 1;
    if (index != 0 && y != 0 && (index == y || value[(y - 1) * T + index] < value[(y - 1) * T + index - 1]))
      index = index - 1;
  }
  std::vector<int32_t> map(F, -1);
  for (int64_t y = 0; y < F; ++y)
    for (int64_t x = 0; x < T; ++x)
      if (path[y * T + x]) map[y] = static_cast<int32_t>(x);
  return map;
}

// The best monotonic path's score by brute force: every map with map[0] = 0, map[Ty-1] = Tx-1 and steps of 0 or 1.
double best_path_score(const Vec& values, int64_t T, int64_t Ty, int64_t Tx, int* paths_seen) {
  double best = -INFINITY;
  std::vector<int64_t> map(Ty);
  std::function<void(int64_t, double)> extend = [&](int64_t y, double score) {
    if (y == Ty) {
      if (map[Ty - 1] == Tx - 1) {
        best = std::max(best, score);
        ++*paths_seen;
      }
      return;
    }
    for (int64_t step : {0, 1}) {
      const int64_t x = y == 0 ? 0 : map[y - 1] + step;
      if (y == 0 && step == 1) continue;
      if (x >= Tx) continue;
      map[y] = x;
      extend(y + 1, score + values[y * T + x]);
    }
  };
  extend(0, 0.0);
  return best;
}

double path_score(const Vec& values, int64_t T, const int32_t* map, int64_t Ty) {
  double s = 0.0;
  for (int64_t y = 0; y < Ty; ++y) s += values[y * T + map[y]];
  return s;
}

TEST(MonotonicAlignmentSearchKernel, MatchesTheCythonLoopAndIsMonotoneWithPadding) {
  // Frame and token counts with Ty == Tx, Tx == 1, short and long items, all padded into one [B, F, T] batch.
  const int64_t F = 23, T = 9;
  const std::vector<int64_t> frames = {23, 9, 17, 1, 5, 23, 12};
  const std::vector<int64_t> tokens = {9, 9, 1, 1, 4, 7, 9};
  const int64_t B = static_cast<int64_t>(frames.size());
  // Integers from a small range make ties in the backtrack's comparisons common; the scale keeps them exact.
  for (const bool integers : {false, true}) {
    Vec values = random_vector(B * F * T, integers ? 7 : 8, integers ? 1.0 : 5.0);
    if (integers)
      for (double& v : values) v = std::round(v * 2.0);
    const std::vector<float> f32 = cast<float>(values);
    std::vector<int32_t> map(B * F, 7777);
    monotonic_alignment_search_cpu<float>(f32.data(), frames.data(), tokens.data(), map.data(), B, F, T);
    std::vector<int32_t> map64(B * F, 7777);
    const Vec f64(f32.begin(), f32.end());
    monotonic_alignment_search_cpu<double>(f64.data(), frames.data(), tokens.data(), map64.data(), B, F, T);
    for (int64_t b = 0; b < B; ++b) {
      SCOPED_TRACE("item " + std::to_string(b) + (integers ? " (integer values)" : ""));
      const std::vector<float> item(f32.begin() + b * F * T, f32.begin() + (b + 1) * F * T);
      const std::vector<int32_t> expected = cython_transcription(item, F, T, frames[b], tokens[b]);
      const std::vector<int32_t> got(map.begin() + b * F, map.begin() + (b + 1) * F);
      EXPECT_EQ(got, expected);
      // Integer-valued inputs add exactly in float and in double: the same path, ties included.
      if (integers) EXPECT_EQ(std::vector<int32_t>(map64.begin() + b * F, map64.begin() + (b + 1) * F), expected);
      // A monotone map from token 0 to the last token, one step at most per frame, -1 on padding frames.
      EXPECT_EQ(got[0], 0);
      EXPECT_EQ(got[frames[b] - 1], tokens[b] - 1);
      for (int64_t y = 1; y < frames[b]; ++y) EXPECT_TRUE(got[y] - got[y - 1] == 0 || got[y] - got[y - 1] == 1) << y;
      for (int64_t y = frames[b]; y < F; ++y) EXPECT_EQ(got[y], -1) << y;
    }
  }
}

TEST(MonotonicAlignmentSearchKernel, FindsTheBestPathAmongAllMonotonicPaths) {
  // Continuous random values have a unique best path; brute force over every path finds its score. Double
  // input accumulates in double, so its path's score equals the maximum up to summation order (1e-12).
  const int64_t F = 10, T = 5;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const int64_t Ty = 4 + seed % 7, Tx = 1 + seed % 5;
    if (Tx > Ty) continue;
    const Vec values = random_vector(F * T, 100 + seed, 3.0);
    std::vector<int32_t> map(F);
    monotonic_alignment_search_cpu<double>(values.data(), &Ty, &Tx, map.data(), 1, F, T);
    int paths = 0;
    const double best = best_path_score(values, T, Ty, Tx, &paths);
    ASSERT_GT(paths, 0);
    EXPECT_NEAR(path_score(values, T, map.data(), Ty), best, 1e-12) << "seed " << seed << ": " << paths << " paths";
  }
}

TEST(MonotonicAlignmentSearchKernel, TiesKeepTheCurrentToken) {
  // All values equal: every comparison of the backtrack ties, so it keeps the last token as long as the
  // diagonal allows and then steps down one token per frame: tokens 0..Tx-2 get one frame, the last the rest.
  const int64_t F = 8, T = 4, Ty = 7, Tx = 4;
  for (const float constant : {0.f, -2.5f}) {
    const std::vector<float> values(F * T, constant);
    std::vector<int32_t> map(F);
    monotonic_alignment_search_cpu<float>(values.data(), &Ty, &Tx, map.data(), 1, F, T);
    EXPECT_EQ(map, (std::vector<int32_t>{0, 1, 2, 3, 3, 3, 3, -1})) << constant;
  }
  // Ty == Tx leaves one path, the diagonal, whatever the values.
  const int64_t square = 4;
  const std::vector<float> values = cast<float>(random_vector(F * T, 5));
  std::vector<int32_t> map(F);
  monotonic_alignment_search_cpu<float>(values.data(), &square, &square, map.data(), 1, F, T);
  EXPECT_EQ(map, (std::vector<int32_t>{0, 1, 2, 3, -1, -1, -1, -1}));
}

TEST(MonotonicAlignmentSearchKernel, RejectsLengthsThatAdmitNoAlignmentNamingTheItem) {
  const int64_t F = 6, T = 4, B = 3;
  const std::vector<float> values(B * F * T, 0.f);
  std::vector<int32_t> map(B * F);
  auto message = [&](std::vector<int64_t> frames, std::vector<int64_t> tokens) {
    try {
      monotonic_alignment_search_cpu<float>(values.data(), frames.data(), tokens.data(), map.data(), B, F, T);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message({6, 4, 4}, {4, 4, 1}), "");
  EXPECT_NE(message({6, 3, 4}, {4, 4, 1}).find("item 1 has 4 tokens but only 3 frames"), std::string::npos)
      << message({6, 3, 4}, {4, 4, 1});
  EXPECT_NE(message({6, 4, 7}, {4, 4, 1}).find("item 2 has 7 frames, outside [1, 6]"), std::string::npos);
  EXPECT_NE(message({6, 4, 4}, {4, 0, 1}).find("item 1 has 0 tokens, outside [1, 4]"), std::string::npos);
  EXPECT_NE(message({6, 4, 4}, {5, 4, 1}).find("item 0 has 5 tokens, outside [1, 4]"), std::string::npos);
}

}  // namespace
}  // namespace vitscuda::kernels
