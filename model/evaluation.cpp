#include "model/evaluation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"
#include "engine/autograd.h"

namespace vitscuda::model {

Frames frames_of_log_mel(const Tensor& log_mel) {
  VC_CHECK(log_mel.ndim() == 2, "a log-mel must be [n_mels, frames], got " << log_mel.describe());
  const int64_t n_mels = log_mel.dim(0), frames = log_mel.dim(1);
  const std::vector<float> values = log_mel.to_float_vector();
  Frames out(static_cast<size_t>(frames), std::vector<double>(static_cast<size_t>(n_mels)));
  for (int64_t m = 0; m < n_mels; ++m)
    for (int64_t t = 0; t < frames; ++t) out[t][m] = values[static_cast<size_t>(m * frames + t)];
  return out;
}

std::vector<std::vector<double>> dct2_orthonormal_basis(size_t n) {
  VC_CHECK(n >= 1, "dct2_orthonormal_basis: length 0");
  std::vector<std::vector<double>> basis(n, std::vector<double>(n));
  for (size_t k = 0; k < n; ++k)
    for (size_t i = 0; i < n; ++i)
      basis[k][i] = std::sqrt((k == 0 ? 1.0 : 2.0) / static_cast<double>(n)) *
                    std::cos(M_PI * static_cast<double>(k * (2 * i + 1)) / (2.0 * static_cast<double>(n)));
  return basis;
}

std::vector<double> dct2_orthonormal(const std::vector<double>& x) {
  const std::vector<std::vector<double>> basis = dct2_orthonormal_basis(x.size());
  std::vector<double> y(x.size(), 0.0);
  for (size_t k = 0; k < x.size(); ++k)
    for (size_t i = 0; i < x.size(); ++i) y[k] += basis[k][i] * x[i];
  return y;
}

Frames mel_cepstrum(const Frames& log_mel_frames, int coefficients) {
  VC_CHECK(!log_mel_frames.empty(), "mel_cepstrum: no frames");
  const size_t n_mels = log_mel_frames[0].size();
  VC_CHECK(n_mels >= 2, "mel_cepstrum: " << n_mels << " mel bin(s); the cepstrum without c0 needs at least 2");
  VC_CHECK(coefficients >= 1, "mel_cepstrum: " << coefficients << " coefficients requested; need at least 1");
  const size_t k_max = std::min<size_t>(static_cast<size_t>(coefficients), n_mels - 1);
  const std::vector<std::vector<double>> basis = dct2_orthonormal_basis(n_mels);
  Frames out(log_mel_frames.size(), std::vector<double>(k_max, 0.0));
  for (size_t t = 0; t < log_mel_frames.size(); ++t) {
    VC_CHECK(log_mel_frames[t].size() == n_mels,
             "mel_cepstrum: frame " << t << " has " << log_mel_frames[t].size() << " bins, frame 0 has " << n_mels);
    for (size_t k = 1; k <= k_max; ++k)
      for (size_t i = 0; i < n_mels; ++i) out[t][k - 1] += basis[k][i] * log_mel_frames[t][i];
  }
  return out;
}

namespace {

double euclidean(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t k = 0; k < a.size(); ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(sum);
}

// Both non-empty, every frame of a[0]'s dimension, every value finite (a NaN would make no path the best).
void check_pairable(const Frames& a, const Frames& b, const char* what) {
  VC_CHECK(!a.empty() && !b.empty(), what << ": empty sequence (" << a.size() << " and " << b.size() << " frames)");
  for (const Frames* s : {&a, &b})
    for (size_t t = 0; t < s->size(); ++t) {
      const char* which = s == &a ? "first" : "second";
      VC_CHECK((*s)[t].size() == a[0].size(), what << ": frame " << t << " of the " << which
                                                   << " sequence has dimension " << (*s)[t].size() << ", expected "
                                                   << a[0].size());
      for (double v : (*s)[t]) VC_CHECK(std::isfinite(v), what << ": frame " << t << " of the " << which
                                                               << " sequence holds a non-finite value");
    }
}

void check_path(const Frames& a, const Frames& b, const DtwPath& path, const char* what) {
  VC_CHECK(!path.empty(), what << ": empty path");
  for (const auto& [i, j] : path)
    VC_CHECK(i >= 0 && j >= 0 && i < static_cast<int64_t>(a.size()) && j < static_cast<int64_t>(b.size()),
             what << ": path pair (" << i << ", " << j << ") outside " << a.size() << " x " << b.size() << " frames");
}

}  // namespace

DtwPath dtw_path(const Frames& a, const Frames& b) {
  check_pairable(a, b, "dtw_path");
  const int64_t n = static_cast<int64_t>(a.size()), m = static_cast<int64_t>(b.size());
  // Two rows of accumulated cost, and every cell's best predecessor (n * m bytes, not n * m doubles).
  enum Step : unsigned char { kDiagonal, kFromA, kFromB };  // (1,1), (1,0), (0,1)
  std::vector<unsigned char> step(static_cast<size_t>(n * m));
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> previous(static_cast<size_t>(m), inf), current(static_cast<size_t>(m), inf);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      const double d = euclidean(a[i], b[j]);
      if (i == 0 && j == 0) {
        current[0] = d;
        continue;
      }
      const double diagonal = i > 0 && j > 0 ? previous[j - 1] : inf;
      const double from_a = i > 0 ? previous[j] : inf;
      const double from_b = j > 0 ? current[j - 1] : inf;
      Step s = kDiagonal;
      double best = diagonal;
      if (from_a < best) {
        s = kFromA;
        best = from_a;
      }
      if (from_b < best) {
        s = kFromB;
        best = from_b;
      }
      current[j] = d + best;
      step[static_cast<size_t>(i * m + j)] = s;
    }
    std::swap(previous, current);
  }
  DtwPath path;
  int64_t i = n - 1, j = m - 1;
  path.emplace_back(i, j);
  while (i > 0 || j > 0) {
    const unsigned char s = step[static_cast<size_t>(i * m + j)];
    if (s != kFromB) --i;
    if (s != kFromA) --j;
    path.emplace_back(i, j);
  }
  std::reverse(path.begin(), path.end());
  return path;
}

double mel_cepstral_distortion(const std::vector<double>& a, const std::vector<double>& b) {
  VC_CHECK(a.size() == b.size(), "mel_cepstral_distortion: " << a.size() << " vs " << b.size() << " coefficients");
  double sum = 0;
  for (size_t k = 0; k < a.size(); ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
  return 10.0 / std::log(10.0) * std::sqrt(2.0 * sum);
}

double mean_mcd_along(const Frames& a, const Frames& b, const DtwPath& path) {
  check_path(a, b, path, "mean_mcd_along");
  double sum = 0;
  for (const auto& [i, j] : path) sum += mel_cepstral_distortion(a[i], b[j]);
  return sum / static_cast<double>(path.size());
}

double mean_l1_along(const Frames& a, const Frames& b, const DtwPath& path) {
  check_path(a, b, path, "mean_l1_along");
  double sum = 0;
  size_t count = 0;
  for (const auto& [i, j] : path) {
    VC_CHECK(a[i].size() == b[j].size(),
             "mean_l1_along: frames of " << a[i].size() << " and " << b[j].size() << " bins");
    for (size_t k = 0; k < a[i].size(); ++k) sum += std::abs(a[i][k] - b[j][k]);
    count += a[i].size();
  }
  VC_CHECK(count > 0, "mean_l1_along: frames without bins");
  return sum / static_cast<double>(count);
}

namespace {

// The waveform as the mel takes it: silence appended up to the shortest length the STFT's reflect
// padding and one frame allow (pad = (n_fft - hop) / 2, kernels/stft_mel.h), in whole hops.
std::vector<float> long_enough_for_a_frame(const MelSpectrogram& mel, const std::vector<float>& wave) {
  const MelConfig& c = mel.config();
  const int64_t pad = (c.n_fft - c.hop) / 2;
  const int64_t shortest = c.hop * std::max<int64_t>(1, pad / c.hop + 1);
  std::vector<float> out = wave;
  if (static_cast<int64_t>(out.size()) < shortest) out.resize(static_cast<size_t>(shortest), 0.0f);
  return out;
}

bool all_finite(const std::vector<float>& wave) {
  return std::all_of(wave.begin(), wave.end(), [](float v) { return std::isfinite(v); });
}

}  // namespace

UtteranceScores compare_with_recording(const MelSpectrogram& mel, const std::vector<float>& synthesis,
                                       const std::vector<float>& recording, Device device) {
  VC_CHECK(!recording.empty(), "compare_with_recording: the recording is empty");
  UtteranceScores s;
  s.duration_ratio = static_cast<double>(synthesis.size()) / static_cast<double>(recording.size());
  const Frames synth = frames_of_log_mel(mel.log_mel_of(long_enough_for_a_frame(mel, synthesis), device));
  const Frames ref = frames_of_log_mel(mel.log_mel_of(long_enough_for_a_frame(mel, recording), device));
  s.frames_synth = static_cast<int64_t>(synth.size());
  s.frames_ref = static_cast<int64_t>(ref.size());
  if (!all_finite(synthesis) || !all_finite(recording)) {  // a broken model: say so in the scores, not by throwing
    s.mcd = s.logmel_l1_dtw = std::nan("");
    return s;
  }
  const Frames synth_cepstrum = mel_cepstrum(synth), ref_cepstrum = mel_cepstrum(ref);
  const DtwPath path = dtw_path(synth_cepstrum, ref_cepstrum);
  s.mcd = mean_mcd_along(synth_cepstrum, ref_cepstrum, path);
  s.logmel_l1_dtw = mean_l1_along(synth, ref, path);
  return s;
}

UtteranceScores score_free_running(const VitsModel& model, const MelSpectrogram& mel, const TrainingItem& item,
                                   const FreeRunningSettings& settings, uint64_t index) {
  const io::VitsConfig& c = model.config();
  VC_CHECK(mel.config().sample_rate == c.sampling_rate, "score_free_running: the mel runs at "
                                                            << mel.config().sample_rate << " Hz, the model at "
                                                            << c.sampling_rate << " Hz");
  autograd::NoGradScope no_grad;
  SynthesisOptions so;
  so.noise_scale = settings.noise_scale;
  so.noise_scale_duration = settings.noise_scale_duration;
  so.speaking_rate = 1.0;
  so.seed = settings.seed + index;
  so.speaker_id = c.num_speakers > 1 ? std::max(0, item.speaker_id) : -1;
  const SynthesisOutput out = model.synthesize({item.ids}, so);
  std::vector<float> wave = out.waveform.to_float_vector();
  wave.resize(static_cast<size_t>(out.sample_lengths[0]));
  return compare_with_recording(mel, wave, item.wave, model.device());
}

std::vector<UtteranceScores> evaluate_free_running(const VitsModel& model, const MelSpectrogram& mel,
                                                   const std::vector<TrainingItem>& items,
                                                   const FreeRunningSettings& settings) {
  std::vector<UtteranceScores> scores;
  for (size_t i = 0; i < items.size(); ++i) scores.push_back(score_free_running(model, mel, items[i], settings, i));
  return scores;
}

MeanScores mean_scores(const std::vector<UtteranceScores>& scores) {
  VC_CHECK(!scores.empty(), "mean_scores: no utterances were scored");
  MeanScores mean;
  for (const UtteranceScores& s : scores) {
    mean.mcd += s.mcd;
    mean.logmel_l1_dtw += s.logmel_l1_dtw;
    mean.duration_ratio += s.duration_ratio;
  }
  const double n = static_cast<double>(scores.size());
  mean.mcd /= n;
  mean.logmel_l1_dtw /= n;
  mean.duration_ratio /= n;
  return mean;
}

}  // namespace vitscuda::model
