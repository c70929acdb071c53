#include "model/mel.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/stft_mel.h"

namespace vitscuda::model {

namespace {

// librosa's Slaney mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above. Written with
// librosa's operation order so the doubles agree.
constexpr double kSlaneyLinearHzPerMel = 200.0 / 3;
constexpr double kSlaneyLogStartHz = 1000.0;

double slaney_log_start_mel() { return (kSlaneyLogStartHz - 0.0) / kSlaneyLinearHzPerMel; }
double slaney_log_step() { return std::log(6.4) / 27.0; }

double hz_to_slaney_mel(double hz) {
  if (hz >= kSlaneyLogStartHz) return slaney_log_start_mel() + std::log(hz / kSlaneyLogStartHz) / slaney_log_step();
  return (hz - 0.0) / kSlaneyLinearHzPerMel;
}

double slaney_mel_to_hz(double mel) {
  if (mel >= slaney_log_start_mel())
    return kSlaneyLogStartHz * std::exp(slaney_log_step() * (mel - slaney_log_start_mel()));
  return 0.0 + kSlaneyLinearHzPerMel * mel;
}

// The triangles (unnormalised, [n_mels, bins]) and the Slaney norms 2 / (f[i+2] - f[i]).
void slaney_triangles(int sample_rate, int n_fft, int n_mels, double fmin, double fmax, std::vector<double>* triangles,
                      std::vector<double>* norms) {
  VC_CHECK(sample_rate > 0 && n_fft >= 2 && n_mels >= 1,
           "mel filterbank: invalid sample_rate " << sample_rate << ", n_fft " << n_fft << " or n_mels " << n_mels);
  VC_CHECK(fmin >= 0.0 && fmax > fmin,
           "mel filterbank: need 0 <= fmin < fmax, got fmin " << fmin << " Hz, fmax " << fmax << " Hz");
  const int bins = n_fft / 2 + 1;
  // np.fft.rfftfreq(n_fft, 1 / sr).
  const double bin_hz = 1.0 / (n_fft * (1.0 / sample_rate));
  // np.linspace(min_mel, max_mel, n_mels + 2) (i * step + start, the last point exactly max_mel), in Hz.
  const double min_mel = hz_to_slaney_mel(fmin), max_mel = hz_to_slaney_mel(fmax);
  const int points = n_mels + 2;
  const double step = (max_mel - min_mel) / (points - 1);
  std::vector<double> edges(static_cast<size_t>(points));
  for (int i = 0; i < points; ++i)
    edges[i] = slaney_mel_to_hz(i == points - 1 ? max_mel : static_cast<double>(i) * step + min_mel);

  triangles->assign(static_cast<size_t>(n_mels) * bins, 0.0);
  norms->resize(static_cast<size_t>(n_mels));
  for (int m = 0; m < n_mels; ++m) {
    const double rise = edges[m + 1] - edges[m], fall = edges[m + 2] - edges[m + 1];
    for (int k = 0; k < bins; ++k) {
      const double f = static_cast<double>(k) * bin_hz;
      const double lower = -(edges[m] - f) / rise;
      const double upper = (edges[m + 2] - f) / fall;
      (*triangles)[static_cast<size_t>(m) * bins + k] = std::max(0.0, std::min(lower, upper));
    }
    (*norms)[m] = 2.0 / (edges[m + 2] - edges[m]);
  }
}

double resolved_fmax(const MelConfig& c) { return c.fmax > 0.0 ? c.fmax : c.sample_rate / 2.0; }

}  // namespace

std::vector<double> slaney_mel_filterbank_f64(int sample_rate, int n_fft, int n_mels, double fmin, double fmax) {
  std::vector<double> triangles, norms;
  slaney_triangles(sample_rate, n_fft, n_mels, fmin, fmax, &triangles, &norms);
  const size_t bins = static_cast<size_t>(n_fft / 2 + 1);
  for (size_t i = 0; i < triangles.size(); ++i) triangles[i] *= norms[i / bins];
  return triangles;
}

std::vector<float> slaney_mel_filterbank(int sample_rate, int n_fft, int n_mels, double fmin, double fmax) {
  std::vector<double> triangles, norms;
  slaney_triangles(sample_rate, n_fft, n_mels, fmin, fmax, &triangles, &norms);
  const size_t bins = static_cast<size_t>(n_fft / 2 + 1);
  std::vector<float> bank(triangles.size());
  // librosa stores the triangles in float32, then multiplies by the float64 norms in place.
  for (size_t i = 0; i < triangles.size(); ++i)
    bank[i] = static_cast<float>(static_cast<double>(static_cast<float>(triangles[i])) * norms[i / bins]);
  return bank;
}

// ------------------------------------------------------------------ MelSpectrogram

struct MelSpectrogram::Impl {
  // The filterbanks first: their checks of the configuration come before the STFT plan's.
  explicit Impl(const MelConfig& c)
      : config(c),
        bank_f32(slaney_mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, resolved_fmax(c))),
        bank_cpu_f32(Tensor::from_vector(bank_f32, {c.n_mels, c.n_fft / 2 + 1})),
        bank_cpu_f64(Tensor::from_vector(
            slaney_mel_filterbank_f64(c.sample_rate, c.n_fft, c.n_mels, c.fmin, resolved_fmax(c)),
            {c.n_mels, c.n_fft / 2 + 1})),
        plan(c.n_fft, c.hop, c.win) {}

  MelConfig config;
  std::vector<float> bank_f32;
  Tensor bank_cpu_f32, bank_cpu_f64;  // [n_mels, bins]
  kernels::StftPlan plan;
  // The device's copy of the float filterbank, made on first use (a CPU-only run never touches the device).
  std::once_flag bank_device_once;
  Tensor bank_device;

  // The filterbank on `wave`'s device in its dtype (the CUDA kernels are float32 only: ops::log_mel says so).
  const Tensor& filterbank_for(const Tensor& wave) {
    if (wave.device() == Device::CPU) return wave.dtype() == DType::F64 ? bank_cpu_f64 : bank_cpu_f32;
    std::call_once(bank_device_once, [this, &wave] { bank_device = bank_cpu_f32.to(wave.device()); });
    return bank_device;
  }
};

MelSpectrogram::MelSpectrogram(const MelConfig& config) : impl_(std::make_shared<Impl>(config)) {}

const MelConfig& MelSpectrogram::config() const { return impl_->config; }
int64_t MelSpectrogram::hop() const { return impl_->config.hop; }
int64_t MelSpectrogram::n_mels() const { return impl_->config.n_mels; }
int64_t MelSpectrogram::bins() const { return impl_->plan.bins(); }
int64_t MelSpectrogram::frames(int64_t samples) const { return impl_->plan.frames(samples); }
const std::vector<float>& MelSpectrogram::filterbank() const { return impl_->bank_f32; }

Tensor MelSpectrogram::log_mel(const Tensor& wave) const {
  return ops::log_mel(wave, impl_->plan, impl_->filterbank_for(wave));
}

namespace {
// One waveform trimmed to whole hops, [1, frames * hop] on `device`.
Tensor trimmed_wave(const std::vector<float>& wave, int64_t hop, Device device, const char* what) {
  const int64_t whole = static_cast<int64_t>(wave.size()) / hop;
  VC_CHECK(whole >= 1, what << ": a waveform of " << wave.size() << " samples is shorter than one hop (" << hop
                            << " samples)");
  std::vector<float> trimmed(wave.begin(), wave.begin() + whole * hop);
  return Tensor::from_vector(trimmed, {1, whole * hop}).to(device);
}
}  // namespace

Tensor MelSpectrogram::log_mel_of(const std::vector<float>& wave, Device device) const {
  const Tensor batch = trimmed_wave(wave, impl_->config.hop, device, "log_mel_of");
  Tensor out;
  {
    autograd::NoGradScope no_grad;
    out = log_mel(batch);
  }
  return out.reshape({n_mels(), out.dim(2)});
}

Tensor MelSpectrogram::linear_spectrogram_of(const std::vector<float>& wave, Device device) const {
  const Tensor batch = trimmed_wave(wave, impl_->config.hop, device, "linear_spectrogram_of");
  autograd::NoGradScope no_grad;
  const Tensor out = ops::linear_spectrogram(batch, impl_->plan);
  return out.reshape({bins(), out.dim(2)});
}

Tensor log_mel(const MelConfig& config, const Tensor& wave) { return MelSpectrogram(config).log_mel(wave); }

}  // namespace vitscuda::model
