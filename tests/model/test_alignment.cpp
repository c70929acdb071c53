#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "model/alignment.h"
#include "support/gradcheck.h"
#include "support/test_support.h"

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

// ------------------------------------------------------------------ training alignment

namespace vitscuda::model {
namespace {

// log N(z; m, e^logs) summed over channels, one element at a time in double: the definition the four-term
// matmul form rearranges.
double direct_log_likelihood(const Tensor& z, const Tensor& m, const Tensor& logs, int64_t b, int64_t f, int64_t t) {
  const Tensor zd = z.to(DType::F64), md = m.to(DType::F64), ld = logs.to(DType::F64);
  const int64_t C = z.dim(1), F = z.dim(2), T = m.dim(2);
  double sum = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double zv = zd.data<double>()[(b * C + c) * F + f];
    const double mv = md.data<double>()[(b * C + c) * T + t], lv = ld.data<double>()[(b * C + c) * T + t];
    const double d = (zv - mv) * std::exp(-lv);
    sum += -0.5 * std::log(2 * M_PI) - lv - 0.5 * d * d;
  }
  return sum;
}

using Cases = std::map<std::string, testing::CaseArray>;

const Cases& alignment_cases() {
  static const Cases cases = testing::read_case_file("model/alignment_cases.txt");
  return cases;
}

const testing::CaseArray& case_array(const std::string& name) {
  const auto it = alignment_cases().find(name);
  VC_CHECK(it != alignment_cases().end(), "alignment_cases.txt has no array " << name);
  return it->second;
}

// The file's float32 values (printed with 9 significant digits, which round to each float32 exactly), in
// `dtype`; names ending in "_f64" hold float64 results (17 digits), kept as they are.
Tensor case_tensor(const std::string& name, DType dtype) {
  const testing::CaseArray& a = case_array(name);
  const bool stored_f64 = name.size() > 4 && name.compare(name.size() - 4, 4, "_f64") == 0;
  const Tensor t = Tensor::from_vector(a.values, a.shape);
  return (stored_f64 ? t : t.to(DType::F32)).to(dtype);
}

std::vector<int64_t> case_lengths(const std::string& name) {
  const testing::CaseArray& a = case_array(name);
  return std::vector<int64_t>(a.values.begin(), a.values.end());
}

// The anchor's 0/1 path [B, F, T] as a frame -> token map (-1 where a frame has no token).
std::vector<int32_t> map_of_path(const testing::CaseArray& path) {
  const int64_t B = path.shape.at(0), F = path.shape.at(1), T = path.shape.at(2);
  std::vector<int32_t> map(B * F, -1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t t = 0; t < T; ++t)
        if (path.values[(b * F + f) * T + t] != 0) {
          EXPECT_EQ(map[b * F + f], -1) << "the anchor's path gives frame " << f << " of item " << b << " two tokens";
          map[b * F + f] = static_cast<int32_t>(t);
        }
  return map;
}

const char* const kSearchCases[] = {"search_random", "search_duplicated", "search_exact_ties", "search_long",
                                    "search_from_likelihood"};

}  // namespace

TEST(AlignmentSearch, MatchesFinetuneHfVitsCythonPathExactly) {
  for (const char* name : kSearchCases) {
    SCOPED_TRACE(name);
    const std::string c = name;
    const std::vector<int64_t> frames = case_lengths(c + ".frame_lengths"), tokens = case_lengths(c + ".token_lengths");
    const std::vector<int32_t> expected = map_of_path(case_array(c + ".path"));
    // float32, as the anchor runs it (maximum_path casts to float32): the identical path.
    const Tensor ll = case_tensor(c + ".log_likelihood", DType::F32);
    const std::vector<int32_t> got = ops::monotonic_alignment_search(ll, frames, tokens);
    EXPECT_EQ(got, expected);
  }
}

TEST(AlignmentSearch, RefusesAnItemWithMoreTokensThanFramesByIndex) {
  const Tensor ll = Tensor::zeros({3, 6, 5});
  const std::string message =
      testing::error_of([&] { ops::monotonic_alignment_search(ll, {6, 6, 4}, {5, 3, 5}); });
  EXPECT_NE(message.find("item 2 has 5 tokens but only 4 frames"), std::string::npos) << message;
  EXPECT_NE(testing::error_of([&] { ops::monotonic_alignment_search(ll, {6, 6}, {5, 3}); }).find("batch of 3"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { ops::monotonic_alignment_search(Tensor::zeros({6, 5}), {6}, {5}); })
                .find("[B, frames, tokens]"),
            std::string::npos);
}

TEST(AlignmentLogLikelihood, IsTheSumOfGaussianLogDensitiesAndRecordsNothing) {
  const int64_t B = 2, C = 5, F = 7, T = 4;
  const Tensor z = testing::normal_tensor({B, C, F}, 1), m = testing::normal_tensor({B, C, T}, 2, 0.7);
  const Tensor logs = ops::add_scalar(testing::normal_tensor({B, C, T}, 3, 0.3), -0.5);
  autograd::Tape tape;
  autograd::RecordingScope recording(tape);
  const Tensor ll = alignment_log_likelihood(testing::requiring_grad(z.clone()), testing::requiring_grad(m.clone()),
                                             testing::requiring_grad(logs.clone()));
  EXPECT_EQ(tape.size(), 0u) << "the alignment's log-likelihood is a constant of the step";
  EXPECT_FALSE(ll.requires_grad());
  ASSERT_EQ(ll.shape(), (Shape{B, F, T}));
  ASSERT_EQ(ll.dtype(), DType::F64);
  // In double the four terms equal the direct sum up to rounding of sums of ~C terms of size ~10.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t t = 0; t < T; ++t)
        EXPECT_NEAR(ll.data<double>()[(b * F + f) * T + t], direct_log_likelihood(z, m, logs, b, f, t), 1e-12)
            << b << " " << f << " " << t;
  EXPECT_NE(testing::error_of([&] { alignment_log_likelihood(z, m, Tensor::zeros({B, C, T + 1}, DType::F64)); })
                .find("alignment_log_likelihood"),
            std::string::npos);
}

TEST(AlignmentLogLikelihood, MatchesFinetuneHfVitsFourTerms) {
  const Tensor zt = case_tensor("likelihood.z_p", DType::F64), mt = case_tensor("likelihood.m_p", DType::F64);
  const Tensor logst = case_tensor("likelihood.logs_p", DType::F64);
  const Tensor ref64t = case_tensor("likelihood.neg_cent_f64", DType::F64);
  const Tensor ref32t = case_tensor("likelihood.neg_cent_f32", DType::F64);
  const double *z = zt.data<double>(), *m = mt.data<double>(), *logs = logst.data<double>();
  const double *ref64 = ref64t.data<double>(), *ref32 = ref32t.data<double>();
  const int64_t B = zt.dim(0), C = zt.dim(1), F = zt.dim(2), T = mt.dim(2);
  // Each element sums C = 192 values of each of the four kinds, and the result cancels (z near m), so rounding
  // errors scale with the terms' magnitude M = sum_c |-0.5 log(2 pi) - logs| + 0.5 z^2 s + |z m s| + 0.5 m^2 s
  // (s = exp(-2 logs)), not with the result.
  std::vector<double> magnitude(B * F * T, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) {
          const double zv = z[(b * C + c) * F + f], mv = m[(b * C + c) * T + t];
          const double lv = logs[(b * C + c) * T + t], sv = std::exp(-2 * lv);
          magnitude[(b * F + f) * T + t] += std::fabs(-0.5 * std::log(2 * M_PI) - lv) + 0.5 * zv * zv * sv +
                                            std::fabs(zv * mv * sv) + 0.5 * mv * mv * sv;
        }
  for (const DType dtype : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype == DType::F32 ? "float32" : "float64");
    const Tensor ll = alignment_log_likelihood(case_tensor("likelihood.z_p", dtype),
                                               case_tensor("likelihood.m_p", dtype),
                                               case_tensor("likelihood.logs_p", dtype))
                          .to(DType::F64);
    ASSERT_EQ(ll.shape(), (Shape{B, F, T}));
    // float32: sums of 192 terms round to ~sqrt(192) * 6e-8 * M ~ 1e-6 M in any order (torch's own float32
    // result is within 1e-6 M of float64, checked by the script); 1e-5 M leaves margin for other orders of
    // summation and still catches any wrong term, sign or channel (errors of order M). float64: 1e-13 M.
    const double bound = dtype == DType::F32 ? 1e-5 : 1e-13;
    double worst = 0, worst_vs_f32 = 0;
    for (int64_t i = 0; i < B * F * T; ++i) {
      worst = std::max(worst, std::fabs(ll.data<double>()[i] - ref64[i]) / magnitude[i]);
      worst_vs_f32 = std::max(worst_vs_f32, std::fabs(ll.data<double>()[i] - ref32[i]) / magnitude[i]);
    }
    EXPECT_LT(worst, bound) << "against torch float64";
    EXPECT_LT(worst_vs_f32, 1e-5) << "against torch float32";
  }
}

TEST(AlignmentDurations, CountFramesPerTokenAndRejectAForeignMap) {
  // Item 0: 3 tokens over 6 frames; item 1: 2 tokens over 3 frames, then padding.
  const std::vector<int32_t> map = {0, 0, 1, 2, 2, 2, 0, 1, 1, -1, -1, -1};
  EXPECT_EQ(durations_of_alignment(map, 6, {3, 2}), (std::vector<std::vector<int32_t>>{{2, 1, 3}, {1, 2}}));
  // A token that gets no frame counts 0 (the anchor's attn.sum(2) is 0 there too).
  EXPECT_EQ(durations_of_alignment({0, 0, 2, -1}, 4, {4}), (std::vector<std::vector<int32_t>>{{2, 0, 1, 0}}));
  EXPECT_NE(testing::error_of([&] { durations_of_alignment(map, 6, {3, 1}); })
                .find("frame 1 of item 1 maps to token 1"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { durations_of_alignment(map, 5, {3, 2}); }).find("12 map entries"),
            std::string::npos);
  // The search's map and its durations: every valid frame counted once.
  const Tensor ll = testing::normal_tensor({2, 9, 4}, 11);
  const std::vector<int32_t> searched = ops::monotonic_alignment_search(ll, {9, 6}, {4, 3});
  const auto durations = durations_of_alignment(searched, 9, {4, 3});
  EXPECT_EQ(std::accumulate(durations[0].begin(), durations[0].end(), 0), 9);
  EXPECT_EQ(std::accumulate(durations[1].begin(), durations[1].end(), 0), 6);
  for (const auto& row : durations)
    for (int32_t d : row) EXPECT_GE(d, 1) << "the search gives every token at least one frame";
}

TEST(Alignability, NamesTheSegmentAndTheAlignmentLimits) {
  EXPECT_EQ(alignability_problem(10, 32, 32).reason, "");
  EXPECT_EQ(alignability_problem(32, 32, 32).reason, "");
  EXPECT_EQ(alignability_problem(3, 31, 32).reason, "shorter_than_segment");
  EXPECT_EQ(alignability_problem(40, 31, 32).reason, "shorter_than_segment");  // the first that applies
  EXPECT_EQ(alignability_problem(33, 32, 32).reason, "more_tokens_than_frames");
  EXPECT_EQ(alignability_problem(3, 2, 0).reason, "more_tokens_than_frames");
  EXPECT_EQ(alignability_problem(3, 5, 0).reason, "");  // segment 0: whole utterances, no minimum
  EXPECT_NO_THROW(check_alignable(10, 40, 32, "LJ001-0001"));
  const std::string short_item = testing::error_of([] { check_alignable(10, 20, 32, "LJ001-0002"); });
  EXPECT_NE(short_item.find("LJ001-0002"), std::string::npos) << short_item;
  EXPECT_NE(short_item.find("shorter_than_segment"), std::string::npos) << short_item;
  EXPECT_NE(short_item.find("20 frames, fewer than the 32-frame training segment"), std::string::npos) << short_item;
  const std::string dense = testing::error_of([] { check_alignable(41, 40, 32, "LJ001-0003"); });
  EXPECT_NE(dense.find("LJ001-0003"), std::string::npos) << dense;
  EXPECT_NE(dense.find("41 tokens for 40 frames: no monotonic alignment exists"), std::string::npos) << dense;
}

}  // namespace vitscuda::model
