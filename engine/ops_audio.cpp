// Audio ops on the STFT (kernels/stft_mel.h): the linear spectrogram and the log-mel of the training
// loss, forward + tape-recorded backward (the log-mel's).
#include <cstdint>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/stft_mel.h"

namespace vitscuda::ops {

namespace {

// The batch and length of a waveform [B, S], checked for the STFT kernels.
struct WaveSize {
  int B;
  int64_t S;
};

WaveSize wave_size(const char* op, const Tensor& wave) {
  VC_CHECK(wave.ndim() == 2, op << ": the waveform must be [batch, samples], got " << wave.describe());
  const WaveSize size{as_int(op, "batch", wave.dim(0)), wave.dim(1)};
  VC_CHECK(size.B >= 1 && size.S >= 1, op << ": empty waveform " << wave.describe());
  return size;
}

}  // namespace

Tensor linear_spectrogram(const Tensor& wave, const kernels::StftPlan& plan) {
  const char* op = "linear_spectrogram";
  check_operands(op, {{"wave", &wave}});
  const WaveSize w = wave_size(op, wave);
  VC_CHECK(!autograd::needs_grad({&wave}),
           op << ": the waveform " << wave.describe()
              << " needs a gradient, but the linear spectrogram has no backward (it is a model input, not a loss "
                 "term); pass wave.detach() or compute it under a NoGradScope");
  const int64_t frames = plan.frames(w.S);
  Tensor mag = Tensor::empty({w.B, plan.bins(), frames}, wave.dtype(), wave.device());
  VC_KERNEL(op, wave, stft_magnitude_forward, plan, wave.data<T>(), w.B, w.S, mag.data<T>(), static_cast<T*>(nullptr));
  return mag;
}

Tensor log_mel(const Tensor& wave, const kernels::StftPlan& plan, const Tensor& filterbank) {
  const char* op = "log_mel";
  check_operands(op, {{"wave", &wave}, {"filterbank", &filterbank}});
  const WaveSize w = wave_size(op, wave);
  const int bins = plan.bins();
  VC_CHECK(filterbank.ndim() == 2 && filterbank.dim(1) == bins && filterbank.dim(0) >= 1,
           op << ": the filterbank must be [n_mels, " << bins << "] for n_fft " << plan.n_fft() << ", got "
              << filterbank.describe());
  VC_CHECK(!autograd::needs_grad({&filterbank}),
           op << ": the filterbank " << filterbank.describe() << " is a constant; no gradient flows to it");
  const int B = w.B, M = as_int(op, "n_mels", filterbank.dim(0));
  const int64_t S = w.S, frames = plan.frames(S);
  as_int(op, "frames", frames);  // the mel projection's gemm takes int sizes
  const bool record = autograd::needs_grad({&wave});
  const DType dtype = wave.dtype();
  const Device device = wave.device();

  // The spectrum (for the magnitude's backward) and the mel energies (for the clamp's) are all the backward
  // needs; the spectrum is kept only when it will run.
  Tensor spectrum = record ? Tensor::empty({plan.spectrum_size(B, S)}, dtype, device) : Tensor();
  Tensor mag = Tensor::empty({B, bins, frames}, dtype, device);
  Tensor mel = Tensor::empty({B, M, frames}, dtype, device);
  Tensor out = Tensor::empty({B, M, frames}, dtype, device);
  const Tensor fb = filterbank.detach();
  VC_KERNEL(op, wave, stft_magnitude_forward, plan, wave.data<T>(), B, S, mag.data<T>(), data_or_null<T>(spectrum));
  VC_KERNEL(op, wave, mel_project_forward, fb.data<T>(), mag.data<T>(), mel.data<T>(), B, M, bins, frames);
  VC_KERNEL(op, wave, log_clamp_forward, mel.data<T>(), out.data<T>(), mel.numel(),
            static_cast<T>(kernels::kLogMelClampMin));

  if (record) {
    SlotPtr slot = slot_of(wave);
    const Shape wave_shape = wave.shape();
    autograd::record(op, out, [slot, wave_shape, plan, fb, spectrum, mel, B, S, M, bins, frames](const Tensor& dy) {
      Tensor grad_wave = grad_buffer(slot, wave_shape);
      Tensor grad_mel = Tensor::zeros({B, M, frames}, dy.dtype(), dy.device());
      Tensor grad_mag = Tensor::zeros({B, bins, frames}, dy.dtype(), dy.device());
      VC_KERNEL("log_mel_backward", dy, log_clamp_backward, mel.data<T>(), dy.data<T>(), grad_mel.data<T>(),
                grad_mel.numel(), static_cast<T>(kernels::kLogMelClampMin));
      VC_KERNEL("log_mel_backward", dy, mel_project_backward, fb.data<T>(), grad_mel.data<T>(), grad_mag.data<T>(), B,
                M, bins, frames);
      VC_KERNEL("log_mel_backward", dy, stft_magnitude_backward, plan, spectrum.data<T>(), grad_mag.data<T>(), B, S,
                grad_wave.data<T>());
    });
  }
  return out;
}

}  // namespace vitscuda::ops
