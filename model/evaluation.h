// Free-running evaluation: does the voice get closer to the recordings? Each utterance's text is
// synthesised with predicted durations and seeded noise, and the result is compared with its recording
// after dynamic time warping (the two need not have the same length or timing):
//   mel cepstrum   c = orthonormal DCT-II of each natural-log mel frame (the training's mel settings,
//                  mel_config_for), coefficients 1..K (c0, the frame energy, is left out);
//   DTW            the path (0,0) -> (N-1,M-1) with steps (1,0), (0,1), (1,1), no band, minimising the
//                  sum of the Euclidean distances between the frames' cepstra;
//   MCD            (10 / ln 10) * sqrt(2 * sum_k (c_k - c'_k)^2) in dB, averaged over the path's pairs;
//   log-mel L1     mean |a - b| over mel bins and the same path's pairs;
//   duration ratio synthesised samples / recorded samples.
// Everything but evaluate_free_running (which runs the model) is a pure function of its arguments.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/mel.h"
#include "model/training_objective.h"
#include "model/vits.h"

namespace vitscuda::model {

// K: the mel-cepstral coefficients c1..cK the MCD compares (fewer when the mel has fewer bins: n_mels - 1).
constexpr int kMelCepstrumCoefficients = 13;

// One vector per frame (all of the same length).
using Frames = std::vector<std::vector<double>>;

// The frames of a log-mel [n_mels, frames] (any device, f32 or f64): one vector of n_mels per frame.
Frames frames_of_log_mel(const Tensor& log_mel);

// The orthonormal DCT-II of length N as a matrix, row k = basis vector k:
// B[k][n] = s_k cos(pi k (2n + 1) / (2N)), s_0 = sqrt(1/N), s_k = sqrt(2/N) for k > 0.
std::vector<std::vector<double>> dct2_orthonormal_basis(size_t n);
// y = B x (scipy.fft.dct(x, type=2, norm="ortho")).
std::vector<double> dct2_orthonormal(const std::vector<double>& x);

// Coefficients 1..min(coefficients, n_mels - 1) of each frame's orthonormal DCT-II (c0 left out).
Frames mel_cepstrum(const Frames& log_mel_frames, int coefficients = kMelCepstrumCoefficients);

// The DTW path between a and b (same dimension, both non-empty): pairs (i, j) from (0, 0) to
// (a.size() - 1, b.size() - 1), each step (1,0), (0,1) or (1,1), minimising the summed Euclidean
// distances of the paired frames. Ties go to the diagonal step, then to (1,0), so the path is unique.
// Throws on an empty sequence, mismatched dimensions or a non-finite value.
using DtwPath = std::vector<std::pair<int64_t, int64_t>>;
DtwPath dtw_path(const Frames& a, const Frames& b);

// (10 / ln 10) * sqrt(2 * sum_k (a_k - b_k)^2): the mel-cepstral distortion of two frames, in dB.
double mel_cepstral_distortion(const std::vector<double>& a, const std::vector<double>& b);
// The mean MCD of the path's pairs.
double mean_mcd_along(const Frames& a, const Frames& b, const DtwPath& path);
// The mean |a - b| over the dimensions and the path's pairs.
double mean_l1_along(const Frames& a, const Frames& b, const DtwPath& path);

struct UtteranceScores {
  double mcd = 0;             // dB, after DTW of the mel cepstra
  double logmel_l1_dtw = 0;   // mean |log-mel difference| along the same path
  double duration_ratio = 0;  // synthesised samples / recorded samples
  int64_t frames_synth = 0, frames_ref = 0;  // mel frames compared
};

// Scores a synthesis against its recording (both at mel.config().sample_rate). The log-mels are
// computed on `device`. A waveform too short for one STFT frame is padded with silence for the mel
// (the duration ratio counts the true lengths). Non-finite audio gives NaN scores.
UtteranceScores compare_with_recording(const MelSpectrogram& mel, const std::vector<float>& synthesis,
                                       const std::vector<float>& recording, Device device = Device::CPU);

struct FreeRunningSettings {
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  uint64_t seed = 0;  // utterance i (0-based, in the evaluation set's order) is synthesised with seed + i
};

// Synthesises utterance `index` of an evaluation set free-running on the model's device (predicted
// durations, speaking rate 1, seed settings.seed + index, the item's speaker on a multi-speaker model)
// and scores it against the item's recording.
UtteranceScores score_free_running(const VitsModel& model, const MelSpectrogram& mel, const TrainingItem& item,
                                   const FreeRunningSettings& settings, uint64_t index);
// score_free_running of every item, item i as utterance i.
std::vector<UtteranceScores> evaluate_free_running(const VitsModel& model, const MelSpectrogram& mel,
                                                   const std::vector<TrainingItem>& items,
                                                   const FreeRunningSettings& settings);

// The mean of each score over the utterances (at least one).
struct MeanScores {
  double mcd = 0, logmel_l1_dtw = 0, duration_ratio = 0;
};
MeanScores mean_scores(const std::vector<UtteranceScores>& scores);

}  // namespace vitscuda::model
