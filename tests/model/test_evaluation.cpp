// model/evaluation: the orthonormal DCT-II, the mel cepstrum, DTW paths known by construction (and the
// optimum of every monotone path by enumeration), the MCD formula, the scores of a synthesis against a
// recording, and the free-running evaluation of the tiny model.
//
// Tolerances: the DCT and cepstrum tests compare double sums of at most 80 terms of magnitude <= 10
// (rounding ~1e-14), so 1e-12. Paths are integers and compared exactly; a path's MCD of identical frames
// is a sum of exact zeros.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "io/hf_config.h"
#include "model/evaluation.h"
#include "model/model_dir.h"
#include "model/trainer.h"
#include "support/test_support.h"

namespace vitscuda::model {
namespace {

constexpr double kTol = 1e-12;

// Scalar frames: one value per frame.
Frames scalar_frames(const std::vector<double>& values) {
  Frames f;
  for (double v : values) f.push_back({v});
  return f;
}

double path_cost(const Frames& a, const Frames& b, const DtwPath& path) {
  double sum = 0;
  for (const auto& [i, j] : path) {
    double d = 0;
    for (size_t k = 0; k < a[i].size(); ++k) d += (a[i][k] - b[j][k]) * (a[i][k] - b[j][k]);
    sum += std::sqrt(d);
  }
  return sum;
}

// The cheapest cost over every path from (0,0) to the end with steps (1,0), (0,1), (1,1), by enumeration.
double brute_force_best_cost(const Frames& a, const Frames& b) {
  double best = std::numeric_limits<double>::infinity();
  DtwPath path{{0, 0}};
  const int64_t n = static_cast<int64_t>(a.size()), m = static_cast<int64_t>(b.size());
  std::function<void()> walk = [&] {
    const auto [i, j] = path.back();
    if (i == n - 1 && j == m - 1) {
      best = std::min(best, path_cost(a, b, path));
      return;
    }
    const std::pair<int64_t, int64_t> steps[] = {{1, 1}, {1, 0}, {0, 1}};
    for (const auto& [di, dj] : steps) {
      if (i + di >= n || j + dj >= m) continue;
      path.emplace_back(i + di, j + dj);
      walk();
      path.pop_back();
    }
  };
  walk();
  return best;
}

std::vector<double> sine(double hz, double seconds, int rate, double amplitude = 0.3) {
  std::vector<double> out(static_cast<size_t>(seconds * rate));
  for (size_t i = 0; i < out.size(); ++i) out[i] = amplitude * std::sin(2 * M_PI * hz * static_cast<double>(i) / rate);
  return out;
}

std::vector<float> as_float(const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); }

TEST(EvaluationDct, TheBasisIsOrthonormal) {
  for (size_t n : {1u, 2u, 7u, 13u, 80u}) {
    const auto basis = dct2_orthonormal_basis(n);
    ASSERT_EQ(basis.size(), n);
    for (size_t r = 0; r < n; ++r)
      for (size_t s = 0; s < n; ++s) {
        double dot = 0;
        for (size_t i = 0; i < n; ++i) dot += basis[r][i] * basis[s][i];
        EXPECT_NEAR(dot, r == s ? 1.0 : 0.0, kTol) << "n " << n << ", rows " << r << " and " << s;
      }
  }
  EXPECT_THROW(dct2_orthonormal_basis(0), Error);
}

TEST(EvaluationDct, MatchesTheDefinitionOnHandComputedValuesAndKeepsTheNorm) {
  // N = 2: y0 = (x0 + x1) / sqrt(2), y1 = (x0 - x1) cos(pi/4) = (x0 - x1) / sqrt(2).
  const std::vector<double> y = dct2_orthonormal({1.0, 3.0});
  EXPECT_NEAR(y[0], 4.0 / std::sqrt(2.0), kTol);
  EXPECT_NEAR(y[1], -2.0 / std::sqrt(2.0), kTol);
  // A constant vector has only c0 = sqrt(N) * value.
  const std::vector<double> c = dct2_orthonormal(std::vector<double>(8, 2.5));
  EXPECT_NEAR(c[0], std::sqrt(8.0) * 2.5, kTol);
  for (size_t k = 1; k < c.size(); ++k) EXPECT_NEAR(c[k], 0.0, kTol) << k;
  // Orthonormal: the norm is kept (Parseval).
  std::mt19937 gen(3);
  std::normal_distribution<double> normal;
  std::vector<double> x(80);
  for (double& v : x) v = normal(gen);
  const std::vector<double> t = dct2_orthonormal(x);
  double nx = 0, nt = 0;
  for (size_t i = 0; i < x.size(); ++i) nx += x[i] * x[i], nt += t[i] * t[i];
  EXPECT_NEAR(nt, nx, 1e-10);  // sums of 80 squares of magnitude ~1: rounding ~1e-14 relative
}

TEST(EvaluationCepstrum, IsCoefficientsOneToKOfTheDctAndIgnoresLoudness) {
  std::mt19937 gen(5);
  std::normal_distribution<double> normal;
  Frames frames(4, std::vector<double>(20));
  for (auto& f : frames)
    for (double& v : f) v = normal(gen);
  const Frames cep = mel_cepstrum(frames, 13);
  ASSERT_EQ(cep.size(), 4u);
  for (size_t t = 0; t < frames.size(); ++t) {
    const std::vector<double> full = dct2_orthonormal(frames[t]);
    ASSERT_EQ(cep[t].size(), 13u);
    for (size_t k = 0; k < 13; ++k) EXPECT_NEAR(cep[t][k], full[k + 1], kTol) << "frame " << t << " c" << k + 1;
  }
  // A louder copy (every log-mel bin + 2) differs only in c0, which is left out.
  Frames louder = frames;
  for (auto& f : louder)
    for (double& v : f) v += 2.0;
  const Frames cep_louder = mel_cepstrum(louder, 13);
  for (size_t t = 0; t < frames.size(); ++t)
    for (size_t k = 0; k < 13; ++k) EXPECT_NEAR(cep_louder[t][k], cep[t][k], kTol);
  // Fewer mel bins than K + 1: coefficients 1..n_mels-1.
  EXPECT_EQ(mel_cepstrum(Frames(3, std::vector<double>(8, 0.5)), 13)[0].size(), 7u);
  const std::string one_bin = vitscuda::testing::error_of([] { mel_cepstrum(Frames(2, std::vector<double>(1, 0.0))); });
  EXPECT_NE(one_bin.find("at least 2"), std::string::npos) << one_bin;
}

TEST(EvaluationDtw, ASequenceAgainstItselfWithRepeatedFramesPairsEachFrameWithItsOriginal) {
  const Frames original = {{0, 1}, {3, -1}, {5, 5}, {-2, 4}};
  // original with frame 1 repeated once and frame 3 twice more.
  const Frames stretched = {original[0], original[1], original[1], original[2], original[3], original[3], original[3]};
  const DtwPath path = dtw_path(stretched, original);
  const DtwPath expected = {{0, 0}, {1, 1}, {2, 1}, {3, 2}, {4, 3}, {5, 3}, {6, 3}};
  EXPECT_EQ(path, expected);
  EXPECT_EQ(mean_mcd_along(stretched, original, path), 0.0);
  EXPECT_EQ(mean_l1_along(stretched, original, path), 0.0);
  // And the other way round: the transposed path.
  DtwPath transposed;
  for (const auto& [i, j] : expected) transposed.emplace_back(j, i);
  EXPECT_EQ(dtw_path(original, stretched), transposed);
  // Identical sequences: the diagonal.
  const DtwPath diagonal = dtw_path(original, original);
  EXPECT_EQ(diagonal, (DtwPath{{0, 0}, {1, 1}, {2, 2}, {3, 3}}));
}

TEST(EvaluationDtw, ASequenceDelayedByHeldFramesIsAlignedBack) {
  const Frames a = scalar_frames({0, 1, 2, 3, 4, 5});
  const Frames b = scalar_frames({0, 0, 0, 1, 2, 3, 4, 5});  // two frames late, the first one held
  const DtwPath path = dtw_path(a, b);
  EXPECT_EQ(path, (DtwPath{{0, 0}, {0, 1}, {0, 2}, {1, 3}, {2, 4}, {3, 5}, {4, 6}, {5, 7}}));
  EXPECT_EQ(path_cost(a, b, path), 0.0);
}

TEST(EvaluationDtw, TakesTheCheapestDetourAndPrefersTheDiagonalOnTies) {
  // (0,0) (0,1) (1,2) costs 0 + 4 + 0; through (1,1) it would cost 0 + 6 + 0.
  EXPECT_EQ(dtw_path(scalar_frames({0, 10}), scalar_frames({0, 4, 10})), (DtwPath{{0, 0}, {0, 1}, {1, 2}}));
  // Every path through equal frames costs 0: the diagonal step wins the tie.
  EXPECT_EQ(dtw_path(scalar_frames({1, 1, 1}), scalar_frames({1, 1, 1})), (DtwPath{{0, 0}, {1, 1}, {2, 2}}));
  // One frame against many: the only path.
  EXPECT_EQ(dtw_path(scalar_frames({2}), scalar_frames({0, 1, 2})), (DtwPath{{0, 0}, {0, 1}, {0, 2}}));
}

TEST(EvaluationDtw, IsAValidPathOfTheLeastCostAmongEveryPath) {
  std::mt19937 gen(11);
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 40; ++trial) {
    const size_t n = 1 + trial % 5, m = 1 + (trial / 5) % 6;
    Frames a(n, std::vector<double>(3)), b(m, std::vector<double>(3));
    for (auto* s : {&a, &b})
      for (auto& f : *s)
        for (double& v : f) v = normal(gen);
    const DtwPath path = dtw_path(a, b);
    ASSERT_EQ(path.front(), (std::pair<int64_t, int64_t>{0, 0}));
    ASSERT_EQ(path.back(), (std::pair<int64_t, int64_t>{static_cast<int64_t>(n) - 1, static_cast<int64_t>(m) - 1}));
    for (size_t s = 1; s < path.size(); ++s) {
      const int64_t di = path[s].first - path[s - 1].first, dj = path[s].second - path[s - 1].second;
      ASSERT_TRUE((di == 1 && dj == 0) || (di == 0 && dj == 1) || (di == 1 && dj == 1))
          << "trial " << trial << ": step (" << di << ", " << dj << ")";
    }
    // The same sums in a different order: rounding ~1e-15 relative.
    EXPECT_NEAR(path_cost(a, b, path), brute_force_best_cost(a, b), 1e-12)
        << "trial " << trial << ": " << n << " x " << m;
  }
}

TEST(EvaluationDtw, RefusesEmptyMismatchedAndNonFiniteSequences) {
  using vitscuda::testing::error_of;
  EXPECT_NE(error_of([] { dtw_path({}, scalar_frames({1})); }).find("empty sequence"), std::string::npos);
  EXPECT_NE(error_of([] { dtw_path(scalar_frames({1}), Frames{{1.0, 2.0}}); }).find("dimension 2, expected 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { dtw_path(scalar_frames({1, std::nan("")}), scalar_frames({1})); }).find("non-finite"),
            std::string::npos);
}

TEST(EvaluationMcd, IsTheFormulaInDecibels) {
  // diff (0, 2, -1): sum of squares 5; MCD = (10 / ln 10) * sqrt(2 * 5).
  const double mcd = mel_cepstral_distortion({1, 2, 3}, {1, 0, 4});
  EXPECT_NEAR(mcd, 10.0 / std::log(10.0) * std::sqrt(10.0), kTol);
  EXPECT_NEAR(mcd, 13.7335974, 1e-6);  // 4.34294482 * 3.16227766, by hand
  EXPECT_EQ(mel_cepstral_distortion({1, 2}, {1, 2}), 0.0);
  EXPECT_THROW(mel_cepstral_distortion({1, 2}, {1}), Error);
  // Along a path: the mean over its pairs; the log-mel L1 the mean over pairs and dimensions.
  const Frames a = {{0, 0}, {1, 1}}, b = {{0, 0}, {1, 3}, {4, 1}};
  const DtwPath path = {{0, 0}, {1, 1}, {1, 2}};
  const double expected_mcd =
      (0.0 + mel_cepstral_distortion({1, 1}, {1, 3}) + mel_cepstral_distortion({1, 1}, {4, 1})) / 3;
  EXPECT_NEAR(mean_mcd_along(a, b, path), expected_mcd, kTol);
  EXPECT_NEAR(mean_l1_along(a, b, path), (0.0 + 0.0 + 0.0 + 2.0 + 3.0 + 0.0) / 6, kTol);
  EXPECT_THROW(mean_mcd_along(a, b, {{0, 0}, {2, 2}}), Error);  // outside a
}

MelConfig speech_mel() {
  MelConfig c;
  c.sample_rate = 16000;
  c.n_fft = 1024;
  c.win = 1024;
  c.hop = 256;
  c.n_mels = 80;
  return c;
}

TEST(EvaluationCompare, AnIdenticalRecordingScoresZeroAndADifferentOneDoesNot) {
  const MelSpectrogram mel(speech_mel());
  const std::vector<float> tone = as_float(sine(220, 0.5, 16000));
  const UtteranceScores same = compare_with_recording(mel, tone, tone);
  EXPECT_EQ(same.mcd, 0.0);
  EXPECT_EQ(same.logmel_l1_dtw, 0.0);
  EXPECT_EQ(same.duration_ratio, 1.0);
  EXPECT_EQ(same.frames_synth, 8000 / 256);
  EXPECT_EQ(same.frames_ref, 8000 / 256);

  // Twice as long, the same tone: DTW holds frames, so the steady part matches; only the frames at the
  // ends (where the reflect padding differs) are unlike.
  const std::vector<float> long_tone = as_float(sine(220, 1.0, 16000));
  const UtteranceScores stretched = compare_with_recording(mel, long_tone, tone);
  EXPECT_NEAR(stretched.duration_ratio, 2.0, 1e-12);
  const UtteranceScores other = compare_with_recording(mel, as_float(sine(1800, 0.5, 16000)), tone);
  EXPECT_GT(other.mcd, 5.0) << "a different pitch must be far in MCD";
  EXPECT_GT(other.logmel_l1_dtw, 0.5);
  EXPECT_LT(stretched.mcd, 0.5 * other.mcd) << "the same tone, longer, is nearer than a different tone";
}

TEST(EvaluationCompare, AShortOrBrokenSynthesisIsScoredNotRefused) {
  const MelSpectrogram mel(speech_mel());
  const std::vector<float> tone = as_float(sine(220, 0.5, 16000));
  // 100 samples: less than the STFT's reflect padding of 384; padded with silence for the mel.
  const UtteranceScores tiny = compare_with_recording(mel, std::vector<float>(tone.begin(), tone.begin() + 100), tone);
  EXPECT_NEAR(tiny.duration_ratio, 100.0 / 8000.0, 1e-15);
  EXPECT_GE(tiny.frames_synth, 1);
  EXPECT_TRUE(std::isfinite(tiny.mcd) && tiny.mcd > 0);
  std::vector<float> broken = tone;
  broken[10] = std::nanf("");
  const UtteranceScores nan = compare_with_recording(mel, broken, tone);
  EXPECT_TRUE(std::isnan(nan.mcd));
  EXPECT_TRUE(std::isnan(nan.logmel_l1_dtw));
  EXPECT_EQ(nan.duration_ratio, 1.0);
  EXPECT_THROW(compare_with_recording(mel, tone, {}), Error);
}

TEST(EvaluationFreeRunning, TheTinyModelsScoresAreFiniteAndReproducibleWithOneSeedPerUtterance) {
  LoadedModel loaded = load_model_dir(vitscuda::testing::data_path("golden/tiny_sdp"));
  const io::VitsConfig& c = loaded.model->config();
  const MelSpectrogram mel(mel_config_for(c));
  std::vector<TrainingItem> items(3);
  for (size_t i = 0; i < items.size(); ++i) {
    for (int t = 0; t < 6 + 2 * static_cast<int>(i); ++t)
      items[i].ids.push_back(static_cast<int32_t>(1 + (7 * t + 3 * i) % (c.vocab_size - 1)));
    items[i].wave = as_float(sine(150 + 40 * i, 0.3, c.sampling_rate));
  }
  FreeRunningSettings settings;
  settings.seed = 9;
  const std::vector<UtteranceScores> scores = evaluate_free_running(*loaded.model, mel, items, settings);
  ASSERT_EQ(scores.size(), items.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    EXPECT_TRUE(std::isfinite(scores[i].mcd) && scores[i].mcd > 0) << i;
    EXPECT_TRUE(std::isfinite(scores[i].logmel_l1_dtw) && scores[i].logmel_l1_dtw > 0) << i;
    EXPECT_GT(scores[i].duration_ratio, 0.0) << i;
    EXPECT_EQ(scores[i].frames_ref, static_cast<int64_t>(items[i].wave.size()) / c.total_upsample()) << i;
    // Utterance i alone, as index i: the same numbers (its seed is 9 + i, not its place in a batch).
    const UtteranceScores alone = score_free_running(*loaded.model, mel, items[i], settings, i);
    EXPECT_EQ(alone.mcd, scores[i].mcd) << i;
    EXPECT_EQ(alone.duration_ratio, scores[i].duration_ratio) << i;
  }
  const MeanScores mean = mean_scores(scores);
  EXPECT_NEAR(mean.mcd, (scores[0].mcd + scores[1].mcd + scores[2].mcd) / 3, 1e-12);
  EXPECT_NEAR(mean.duration_ratio,
              (scores[0].duration_ratio + scores[1].duration_ratio + scores[2].duration_ratio) / 3, 1e-12);
  EXPECT_THROW(mean_scores({}), Error);
}

}  // namespace
}  // namespace vitscuda::model
