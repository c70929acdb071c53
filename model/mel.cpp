#include "model/mel.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <mutex>
#include <utility>

#include "engine/autograd.h"
#include "kernels/error.h"
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

template <typename F>
void dispatch(DType dtype, F&& f) {
  if (dtype == DType::F32)
    f(float{});
  else
    f(double{});
}

int as_int(const char* what, int64_t value) {
  VC_CHECK(value >= 0 && value <= INT_MAX, what << " = " << value << " exceeds the kernels' int range");
  return static_cast<int>(value);
}

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
  MelConfig config;
  std::vector<float> bank_f32;
  std::vector<double> bank_f64;
  kernels::StftPlan<float> plan_f32;
  // The double plan (8 bytes x 2 x bins x n_fft) is built on first use: training runs in f32.
  std::once_flag plan_f64_once;
  kernels::StftPlan<double> plan_f64;

  const kernels::StftPlan<float>& plan(float) { return plan_f32; }
  const kernels::StftPlan<double>& plan(double) {
    std::call_once(plan_f64_once, [this] {
      plan_f64 = kernels::make_stft_plan<double>(config.n_fft, config.hop, config.win);
    });
    return plan_f64;
  }
  const float* bank(float) const { return bank_f32.data(); }
  const double* bank(double) const { return bank_f64.data(); }

#if VITSCUDA_HAVE_CUDA
  // The device side, built on first use (a CPU-only run never touches the device).
  std::once_flag cuda_once;
  std::shared_ptr<const kernels::CudaStftPlan> cuda_plan;
  Tensor bank_device;  // [n_mels, bins]
  void ensure_cuda() {
    std::call_once(cuda_once, [this] {
      cuda_plan = kernels::make_stft_plan_cuda(config.n_fft, config.hop, config.win);
      bank_device = Tensor::from_vector(bank_f32, {config.n_mels, static_cast<int64_t>(plan_f32.bins)}).to(Device::CUDA);
    });
  }
#endif
};

MelSpectrogram::MelSpectrogram(const MelConfig& config) : impl_(std::make_shared<Impl>()) {
  impl_->config = config;
  const double fmax = resolved_fmax(config);
  impl_->bank_f32 = slaney_mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, fmax);
  impl_->bank_f64 = slaney_mel_filterbank_f64(config.sample_rate, config.n_fft, config.n_mels, config.fmin, fmax);
  impl_->plan_f32 = kernels::make_stft_plan<float>(config.n_fft, config.hop, config.win);
}

const MelConfig& MelSpectrogram::config() const { return impl_->config; }
int64_t MelSpectrogram::hop() const { return impl_->config.hop; }
int64_t MelSpectrogram::n_mels() const { return impl_->config.n_mels; }
int64_t MelSpectrogram::bins() const { return impl_->plan_f32.bins; }
int64_t MelSpectrogram::frames(int64_t samples) const { return impl_->plan_f32.frames(samples); }
const std::vector<float>& MelSpectrogram::filterbank() const { return impl_->bank_f32; }

#if VITSCUDA_HAVE_CUDA
namespace {

// log_mel on the device: cuFFT STFT, cuBLAS mel projection, log-clamp; the backward runs back
// through them (the magnitude's through an inverse FFT).
Tensor log_mel_on_device(const std::shared_ptr<MelSpectrogram::Impl>& impl, const Tensor& wave) {
  VC_CHECK(wave.dtype() == DType::F32, "log_mel: CUDA waveforms are float32 only, got " << wave.describe());
  impl->ensure_cuda();
  const int B = as_int("log_mel: batch", wave.dim(0));
  const int64_t S = wave.dim(1);
  VC_CHECK(B >= 1 && S >= 1, "log_mel: empty waveform " << wave.describe());
  const int64_t frames = kernels::stft_frames_cuda(*impl->cuda_plan, S);
  const int M = impl->config.n_mels, bins = impl->plan_f32.bins;
  const int frames_i = as_int("log_mel: frames", frames);
  const bool record = autograd::needs_grad({&wave});
  const Device dev = Device::CUDA;
  Tensor spec = record ? Tensor::empty({B, frames, static_cast<int64_t>(bins), 2}, DType::F32, dev) : Tensor();
  Tensor mag = Tensor::empty({B, bins, frames}, DType::F32, dev);
  Tensor mel = Tensor::empty({B, M, frames}, DType::F32, dev);
  Tensor out = Tensor::empty({B, M, frames}, DType::F32, dev);
  const float clamp = static_cast<float>(kernels::kLogMelClampMin);
  kernels::stft_magnitude_forward_cuda(*impl->cuda_plan, wave.data<float>(), B, S, mag.data<float>(),
                                       record ? spec.data<float>() : nullptr);
  kernels::mel_project_forward_cuda(impl->bank_device.data<float>(), mag.data<float>(), mel.data<float>(), B, M, bins,
                                    frames);
  kernels::log_clamp_forward_cuda(mel.data<float>(), out.data<float>(), mel.numel(), clamp);
  if (record) {
    auto slot = wave.grad_slot();
    const Shape wave_shape = wave.shape();
    autograd::record("log_mel", out, [slot, wave_shape, impl, spec, mel, B, S, M, bins, frames_i, clamp](const Tensor& dy) {
      Tensor grad_wave = slot->accumulator(wave_shape);
      Tensor grad_mel = Tensor::zeros({B, M, frames_i}, DType::F32, Device::CUDA);
      kernels::log_clamp_backward_cuda(mel.data<float>(), dy.data<float>(), grad_mel.data<float>(), grad_mel.numel(),
                                       clamp);
      Tensor grad_mag = Tensor::zeros({B, bins, frames_i}, DType::F32, Device::CUDA);
      kernels::mel_project_backward_cuda(impl->bank_device.data<float>(), grad_mel.data<float>(), grad_mag.data<float>(),
                                         B, M, bins, frames_i);
      kernels::stft_magnitude_backward_cuda(*impl->cuda_plan, spec.data<float>(), grad_mag.data<float>(), B, S,
                                            grad_wave.data<float>());
    });
  }
  return out;
}

}  // namespace
#endif

Tensor MelSpectrogram::log_mel(const Tensor& wave) const {
  VC_CHECK(wave.defined() && wave.ndim() == 2,
           "log_mel: the waveform must be [batch, samples], got " << (wave.defined() ? wave.describe() : "undefined"));
  if (wave.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    return log_mel_on_device(impl_, wave);
#else
    VC_FAIL("log_mel: " << wave.describe() << " needs CUDA, but this vitscuda was built without it");
#endif
  }
  const int B = as_int("log_mel: batch", wave.dim(0));
  const int64_t S = wave.dim(1);
  VC_CHECK(B >= 1 && S >= 1, "log_mel: empty waveform " << wave.describe());
  const int64_t frames = this->frames(S);
  const int M = impl_->config.n_mels, bins = impl_->plan_f32.bins;
  const int frames_i = as_int("log_mel: frames", frames);
  const DType dtype = wave.dtype();
  const bool record = autograd::needs_grad({&wave});

  Tensor spec = record ? Tensor::empty({B, 2 * static_cast<int64_t>(bins), frames}, dtype) : Tensor();
  Tensor mag = Tensor::empty({B, bins, frames}, dtype);
  Tensor mel = Tensor::empty({B, M, frames}, dtype);
  Tensor out = Tensor::empty({B, M, frames}, dtype);
  const std::shared_ptr<Impl> impl = impl_;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const kernels::StftPlan<T>& plan = impl->plan(T{});
    kernels::stft_magnitude_forward_cpu<T>(plan, wave.data<T>(), B, S, mag.data<T>(),
                                           record ? spec.data<T>() : nullptr);
    kernels::mel_project_forward_cpu<T>(impl->bank(T{}), mag.data<T>(), mel.data<T>(), B, M, bins, frames);
    kernels::log_clamp_forward_cpu<T>(mel.data<T>(), out.data<T>(), mel.numel(),
                                      static_cast<T>(kernels::kLogMelClampMin));
  });

  if (record) {
    auto slot = wave.grad_slot();
    const Shape wave_shape = wave.shape();
    // The spectrum (for the magnitude's backward) and the mel energies (for the clamp's) are all it needs.
    autograd::record("log_mel", out, [slot, wave_shape, impl, spec, mel, B, S, M, bins, frames_i](const Tensor& dy) {
      Tensor grad_wave = slot->accumulator(wave_shape);
      dispatch(dy.dtype(), [&](auto tag) {
        using T = decltype(tag);
        Tensor grad_mel = Tensor::zeros({B, M, frames_i}, dy.dtype());
        kernels::log_clamp_backward_cpu<T>(mel.data<T>(), dy.data<T>(), grad_mel.data<T>(), grad_mel.numel(),
                                           static_cast<T>(kernels::kLogMelClampMin));
        Tensor grad_mag = Tensor::zeros({B, bins, frames_i}, dy.dtype());
        kernels::mel_project_backward_cpu<T>(impl->bank(T{}), grad_mel.data<T>(), grad_mag.data<T>(), B, M, bins,
                                             frames_i);
        kernels::stft_magnitude_backward_cpu<T>(impl->plan(T{}), spec.data<T>(), grad_mag.data<T>(), B, S,
                                                grad_wave.data<T>());
      });
    });
  }
  return out;
}

Tensor MelSpectrogram::log_mel_of(const std::vector<float>& wave, Device device) const {
  const int64_t hop = impl_->config.hop;
  const int64_t whole = static_cast<int64_t>(wave.size()) / hop;
  VC_CHECK(whole >= 1, "log_mel_of: a waveform of " << wave.size() << " samples is shorter than one hop (" << hop
                                                    << " samples)");
  std::vector<float> trimmed(wave.begin(), wave.begin() + whole * hop);
  const int64_t S = static_cast<int64_t>(trimmed.size());
  Tensor batch = Tensor::from_vector(trimmed, {1, S}).to(device);
  Tensor out;
  {
    autograd::NoGradScope no_grad;
    out = log_mel(batch);
  }
  return out.reshape({n_mels(), out.dim(2)});
}

Tensor log_mel(const MelConfig& config, const Tensor& wave) { return MelSpectrogram(config).log_mel(wave); }

// ------------------------------------------------------------------ masked L1

Tensor masked_l1_loss(const Tensor& generated, const Tensor& target, const Tensor& mask) {
  const char* op = "masked_l1_loss";
  VC_CHECK(generated.defined() && target.defined() && mask.defined(), op << ": an operand is undefined");
  VC_CHECK(generated.ndim() == 3, op << ": generated must be [B, C, frames], got " << generated.describe());
  VC_CHECK(target.shape() == generated.shape() && target.dtype() == generated.dtype(),
           op << ": target " << target.describe() << " must match generated " << generated.describe());
  VC_CHECK(target.device() == generated.device() && mask.device() == generated.device(),
           op << ": operands on different devices: " << generated.describe() << ", " << target.describe() << ", "
              << mask.describe());
  const int B = as_int("masked_l1_loss: batch", generated.dim(0));
  const int C = as_int("masked_l1_loss: channels", generated.dim(1));
  const int64_t frames = generated.dim(2);
  const bool mask_shape_ok = (mask.ndim() == 3 && mask.dim(0) == B && mask.dim(1) == 1 && mask.dim(2) == frames) ||
                             (mask.ndim() == 2 && mask.dim(0) == B && mask.dim(1) == frames);
  VC_CHECK(mask_shape_ok, op << ": mask " << mask.describe() << " must be [" << B << ", 1, " << frames << "] or ["
                             << B << ", " << frames << "] for generated " << generated.describe());
  const DType dtype = generated.dtype();
  const Tensor frame_mask = mask.dtype() == dtype ? mask.detach() : mask.to(dtype);

  if (generated.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    VC_CHECK(dtype == DType::F32, op << ": CUDA tensors are float32 only, got " << generated.describe());
    const double value = kernels::masked_l1_forward_cuda(generated.data<float>(), target.data<float>(),
                                                         frame_mask.data<float>(), B, C, frames);
    Tensor loss = Tensor::full({}, value, DType::F32, Device::CUDA);
    if (autograd::needs_grad({&generated, &target})) {
      auto sg = generated.grad_slot(), st = target.grad_slot();
      const Tensor gs = generated.detach(), ts = target.detach();
      autograd::record(op, loss, [sg, st, gs, ts, frame_mask, B, C, frames](const Tensor& dy) {
        Tensor dg = sg ? sg->accumulator(gs.shape()) : Tensor();
        Tensor dt = st ? st->accumulator(ts.shape()) : Tensor();
        kernels::masked_l1_backward_cuda(gs.data<float>(), ts.data<float>(), frame_mask.data<float>(),
                                         dy.data<float>(), sg ? dg.data<float>() : nullptr,
                                         st ? dt.data<float>() : nullptr, B, C, frames);
      });
    }
    return loss;
#endif
  }
  Tensor loss = Tensor::empty({}, dtype);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    loss.data<T>()[0] = static_cast<T>(kernels::masked_l1_forward_cpu<T>(generated.data<T>(), target.data<T>(),
                                                                         frame_mask.data<T>(), B, C, frames));
  });

  if (autograd::needs_grad({&generated, &target})) {
    auto sg = generated.grad_slot(), st = target.grad_slot();
    const Tensor gs = generated.detach(), ts = target.detach();
    autograd::record(op, loss, [sg, st, gs, ts, frame_mask, B, C, frames](const Tensor& dy) {
      dispatch(dy.dtype(), [&](auto tag) {
        using T = decltype(tag);
        Tensor dg = sg ? sg->accumulator(gs.shape()) : Tensor();
        Tensor dt = st ? st->accumulator(ts.shape()) : Tensor();
        kernels::masked_l1_backward_cpu<T>(gs.data<T>(), ts.data<T>(), frame_mask.data<T>(), dy.data<T>()[0],
                                           sg ? dg.data<T>() : nullptr, st ? dt.data<T>() : nullptr, B, C, frames);
      });
    });
  }
  return loss;
}

}  // namespace vitscuda::model
