// The log-mel pipeline of the VITS training loss (jaywalnut310/vits mel_processing.mel_spectrogram_torch)
// and its backward, as raw-pointer kernels with one argument list for the CPU and the CUDA backend:
//
//   padded = reflect_pad(wave, pad, pad)                 pad = (n_fft - hop) / 2
//   spec[b, k, t]  = sum_n padded[b, t*hop + n] * window[n] * exp(-2 pi i k n / n_fft)   (torch.stft, center=False)
//   mag[b, k, t]   = sqrt(re^2 + im^2 + 1e-6)           k in [0, n_fft/2], t in [0, frames)
//   mel[b, m, t]   = sum_k fb[m, k] * mag[b, k, t]
//   logmel         = log(clamp(mel, min = 1e-5))
// with frames = (S + 2*pad - n_fft) / hop + 1. A window shorter than n_fft is zero-padded on both sides
// to n_fft (centred), as torch.stft does. mag alone is VITS' linear spectrogram (spectrogram_torch).
//
// On the CPU the DFT of all frames is one gemm against a [2*bins, n_fft] cos/sin basis with the window
// folded in, built once per StftPlan and reused. Every backward ACCUMULATES (+=) into its gradient buffers.
// The masked L1 between two log-mels is in kernels/loss.h.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace vitscuda::kernels {

// Added under the square root of the magnitude (keeps its gradient finite at zero).
constexpr double kStftMagnitudeEps = 1e-6;
// Lower clamp of the mel energies before the log.
constexpr double kLogMelClampMin = 1e-5;

// The periodic Hann window of `win` samples (torch.hann_window(win), periodic=True), computed in double.
std::vector<double> periodic_hann_window(int win);

struct StftDeviceWindow;  // the CUDA backend's table, defined in kernels/cuda/stft_mel.cu

// Everything the STFT of one (n_fft, hop, win, window) needs, for both backends: the geometry, the window,
// and the tables each backend derives from them, built on that backend's first use and kept (the CPU's DFT
// basis per dtype, the device's copy of the window). A cheap handle: copies share the tables, which are
// read-only once built, so one plan serves several threads. The cuFFT plans themselves are cached
// process-wide per (n_fft, chunk rows), see kernels/cuda/stft_mel.cu.
class StftPlan {
 public:
  // Requires 1 <= win <= n_fft, 1 <= hop and n_fft - hop even and >= 0 (VITS' (n_fft - hop) / 2 padding).
  // `window`: `win` samples; nullptr: the periodic Hann window.
  StftPlan(int n_fft, int hop, int win, const double* window = nullptr);

  int n_fft() const { return tables_->n_fft; }
  int hop() const { return tables_->hop; }
  int win() const { return tables_->win; }
  int bins() const { return tables_->bins; }  // n_fft / 2 + 1
  int pad() const { return tables_->pad; }    // reflect padding on each side: (n_fft - hop) / 2
  // Frames of a signal of `samples` samples, after reflect padding; throws when the signal is too short
  // for the reflect padding (samples <= pad) or for one frame.
  int64_t frames(int64_t samples) const;
  // Elements of the spectrum the forward saves for the backward: B * 2 * bins * frames(samples).
  int64_t spectrum_size(int B, int64_t samples) const;
  // The window zero-padded (centred) to n_fft.
  const std::vector<double>& window() const { return tables_->window; }

  // The CPU's DFT basis in T, [2 * bins, n_fft] row-major: row k < bins is window[n] * cos(2 pi k n / n_fft),
  // row bins + k is -window[n] * sin(2 pi k n / n_fft). Built on first use.
  template <typename T>
  const std::vector<T>& cpu_basis() const;
  // The CUDA backend's window (float, device memory from the engine's allocator), built on first use.
  const StftDeviceWindow& device_window() const;

 private:
  struct Tables {
    int n_fft = 0, hop = 0, win = 0, bins = 0, pad = 0;
    std::vector<double> window;
    std::once_flag basis_f32_once, basis_f64_once, device_once;
    std::vector<float> basis_f32;
    std::vector<double> basis_f64;
    std::shared_ptr<const StftDeviceWindow> device;
  };
  std::shared_ptr<Tables> tables_;
};

template <>
const std::vector<float>& StftPlan::cpu_basis<float>() const;
template <>
const std::vector<double>& StftPlan::cpu_basis<double>() const;

// mag [B, bins, frames] = sqrt(|STFT(reflect_pad(wave))|^2 + 1e-6), wave [B, S].
// spectrum (may be nullptr): receives the plan's spectrum_size(B, S) elements the backward needs, in the
// backend's own layout (only the same backend's backward reads them):
//   CPU:  [B, 2 * bins, frames], rows 0..bins-1 the real parts, bins..2*bins-1 the imaginary parts;
//   CUDA: cuFFT's [B, frames, bins] complex, (re, im) interleaved; the buffer must be 8-byte aligned.
template <typename T>
void stft_magnitude_forward_cpu(const StftPlan& plan, const T* wave, int B, int64_t S, T* mag, T* spectrum);

// The same without a plan: builds one for this call (for one-off use; reuse a plan otherwise).
template <typename T>
void stft_magnitude_forward_cpu(const T* wave, int B, int64_t S, int n_fft, int hop, int win, const T* window, T* mag);

// grad_wave [B, S] += d(sum grad_mag * mag)/d(wave), given the `spectrum` saved by the same backend's
// forward. Gradients of the mirrored padding samples fold back onto the samples they copy.
template <typename T>
void stft_magnitude_backward_cpu(const StftPlan& plan, const T* spectrum, const T* grad_mag, int B, int64_t S,
                                 T* grad_wave);

// mel [B, n_mels, frames] = fb [n_mels, bins] @ mag [B, bins, frames] (overwritten).
template <typename T>
void mel_project_forward_cpu(const T* fb, const T* mag, T* mel, int B, int n_mels, int bins, int64_t frames);

// grad_mag [B, bins, frames] += fb^T @ grad_mel.
template <typename T>
void mel_project_backward_cpu(const T* fb, const T* grad_mel, T* grad_mag, int B, int n_mels, int bins,
                              int64_t frames);

// y = log(max(x, clamp_min)) over n elements.
template <typename T>
void log_clamp_forward_cpu(const T* x, T* y, int64_t n, T clamp_min);

// grad_x += grad_y / max(x, clamp_min) where x >= clamp_min, 0 where clamped (torch's clamp passes the
// gradient at x == clamp_min).
template <typename T>
void log_clamp_backward_cpu(const T* x, const T* grad_y, T* grad_x, int64_t n, T clamp_min);

// ---------------------------------------------------------------- CUDA (float32, device pointers)
// The same pipeline on the device, with the CPU kernels' arguments. Every pointer is device memory; work
// runs on the compute stream. The STFT uses cuFFT (batched in-place R2C of n_fft), not the basis gemm:
// results agree with the CPU to float rounding, not bit for bit.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).

void stft_magnitude_forward_cuda(const StftPlan& plan, const float* wave, int B, int64_t S, float* mag,
                                 float* spectrum);

void stft_magnitude_backward_cuda(const StftPlan& plan, const float* spectrum, const float* grad_mag, int B,
                                  int64_t S, float* grad_wave);

// mel [B, n_mels, frames] = fb [n_mels, bins] @ mag [B, bins, frames] (overwritten; cuBLAS, fp32 math).
void mel_project_forward_cuda(const float* fb, const float* mag, float* mel, int B, int n_mels, int bins,
                              int64_t frames);

// grad_mag [B, bins, frames] += fb^T @ grad_mel (cuBLAS, beta = 1).
void mel_project_backward_cuda(const float* fb, const float* grad_mel, float* grad_mag, int B, int n_mels, int bins,
                               int64_t frames);

// y = log(max(x, clamp_min)) (NaN stays NaN, as std::max(x, c) on the CPU).
void log_clamp_forward_cuda(const float* x, float* y, int64_t n, float clamp_min);

// grad_x += grad_y / x where x >= clamp_min (bit-identical to the CPU).
void log_clamp_backward_cuda(const float* x, const float* grad_y, float* grad_x, int64_t n, float clamp_min);

}  // namespace vitscuda::kernels
