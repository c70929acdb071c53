// The log-mel spectrogram of the training loss (jaywalnut310/vits mel_processing.mel_spectrogram_torch):
// reflect padding of (n_fft - hop) / 2 on both sides, STFT with a periodic Hann window (center=False),
// magnitude sqrt(re^2 + im^2 + 1e-6), Slaney mel filterbank, log(clamp(x, 1e-5)); and the masked
// mean L1 between two log-mels. The computing is the engine's ops (ops::log_mel, ops::masked_l1_loss);
// this holds the VITS settings, the filterbanks and the STFT plan they run with.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/ops.h"
#include "engine/tensor.h"

namespace vitscuda::model {

// librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False,
// norm="slaney"): triangles on the Slaney mel scale (linear below 1 kHz, logarithmic above), each scaled
// by 2 / (f[i+2] - f[i]). Row-major [n_mels, n_fft/2 + 1]. The float version rounds like librosa's
// float32 output (triangle rounded to float32, then scaled); the double version does not round.
std::vector<float> slaney_mel_filterbank(int sample_rate, int n_fft, int n_mels, double fmin, double fmax);
std::vector<double> slaney_mel_filterbank_f64(int sample_rate, int n_fft, int n_mels, double fmin, double fmax);

struct MelConfig {
  int sample_rate = 16000;
  int n_fft = 1024;
  int hop = 256;
  int win = 1024;
  int n_mels = 80;
  double fmin = 0.0;
  double fmax = 0.0;  // 0: sample_rate / 2
};

// The STFT plan and filterbanks for one MelConfig, built once (the plan's tables on each backend's first
// use: O(n_fft^2) for the CPU's DFT basis); copies share them and are cheap. Safe to use from several threads.
class MelSpectrogram {
 public:
  explicit MelSpectrogram(const MelConfig& config = MelConfig());

  const MelConfig& config() const;
  int64_t hop() const;
  int64_t n_mels() const;
  int64_t bins() const;  // n_fft / 2 + 1
  // Mel frames of a waveform of `samples` samples; throws when it is too short for the reflect padding.
  int64_t frames(int64_t samples) const;
  const std::vector<float>& filterbank() const;  // [n_mels, bins]

  // wave [B, S] (f32 or f64 on the CPU; f32 on CUDA, computed there) -> log-mel [B, n_mels, frames(S)]
  // (ops::log_mel), recorded on the current tape when `wave` needs a gradient.
  Tensor log_mel(const Tensor& wave) const;

  // The training target's log-mel of one waveform, f32 [n_mels, S / hop], no gradient: the waveform is
  // first trimmed to (S / hop) * hop samples (one mel frame per hop, as the decoder produces).
  // Computed on `device` (the GPU's STFT when training there) and returned there.
  Tensor log_mel_of(const std::vector<float>& wave, Device device = Device::CPU) const;
  // The linear spectrogram (the posterior encoder's input) of one waveform, f32 [bins, S / hop], trimmed
  // and computed as log_mel_of; no gradient.
  Tensor linear_spectrogram_of(const std::vector<float>& wave, Device device = Device::CPU) const;

  struct Impl;  // the plan and the filterbanks (the CPU's, and the device's once a CUDA waveform arrives)

 private:
  std::shared_ptr<Impl> impl_;
};

// One-off log-mel (builds the plan for this call; keep a MelSpectrogram to reuse it).
Tensor log_mel(const MelConfig& config, const Tensor& wave);


}  // namespace vitscuda::model
