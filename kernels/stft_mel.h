// The log-mel pipeline of the VITS training loss (jaywalnut310/vits mel_processing.mel_spectrogram_torch)
// and its backward, as raw-pointer CPU kernels:
//
//   padded = reflect_pad(wave, pad, pad)                 pad = (n_fft - hop) / 2
//   spec[b, k, t]  = sum_n padded[b, t*hop + n] * window[n] * exp(-2 pi i k n / n_fft)   (torch.stft, center=False)
//   mag[b, k, t]   = sqrt(re^2 + im^2 + 1e-6)           k in [0, n_fft/2], t in [0, frames)
//   mel[b, m, t]   = sum_k fb[m, k] * mag[b, k, t]
//   logmel         = log(clamp(mel, min = 1e-5))
//   loss           = sum |x - y| * mask[b, t] / (n_mels * sum mask)
// with frames = (S + 2*pad - n_fft) / hop + 1. A window shorter than n_fft is zero-padded on both sides
// to n_fft (centred), as torch.stft does.
//
// The DFT of all frames is one gemm against a [2*bins, n_fft] cos/sin basis with the window folded in,
// built once in a StftPlan and reused. Every backward ACCUMULATES (+=) into its gradient buffers.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace vitscuda::kernels {

// Added under the square root of the magnitude (keeps its gradient finite at zero).
constexpr double kStftMagnitudeEps = 1e-6;
// Lower clamp of the mel energies before the log.
constexpr double kLogMelClampMin = 1e-5;

// Everything the STFT needs for one (n_fft, hop, win, window): built once, read-only afterwards
// (shareable between threads).
template <typename T>
struct StftPlan {
  int n_fft = 0, hop = 0, win = 0;
  int bins = 0;  // n_fft / 2 + 1
  int pad = 0;   // reflect padding on each side: (n_fft - hop) / 2
  // Row k < bins: window[n] * cos(2 pi k n / n_fft); row bins + k: -window[n] * sin(2 pi k n / n_fft).
  // [2 * bins, n_fft], row-major.
  std::vector<T> basis;

  // Frames of a signal of `samples` samples, after reflect padding; throws when the signal is too short
  // for the reflect padding (samples <= pad) or for one frame.
  int64_t frames(int64_t samples) const;
};

// The periodic Hann window of `win` samples (torch.hann_window(win), periodic=True), computed in double.
std::vector<double> periodic_hann_window(int win);

// A plan for the given window of `win` samples (`window` == nullptr: the periodic Hann window).
// Requires 1 <= win <= n_fft, 1 <= hop and n_fft - hop even and >= 0 (VITS' (n_fft - hop) / 2 padding).
template <typename T>
StftPlan<T> make_stft_plan(int n_fft, int hop, int win, const T* window = nullptr);

// mag [B, bins, frames] = sqrt(|STFT(reflect_pad(wave))|^2 + 1e-6), wave [B, S].
// spec (may be nullptr): receives [B, 2 * bins, frames], rows 0..bins-1 the real parts, bins..2*bins-1 the
// imaginary parts; the backward needs them.
template <typename T>
void stft_magnitude_forward_cpu(const StftPlan<T>& plan, const T* wave, int B, int64_t S, T* mag, T* spec);

// The same without a plan: builds one for this call (for one-off use; reuse a plan otherwise).
template <typename T>
void stft_magnitude_forward_cpu(const T* wave, int B, int64_t S, int n_fft, int hop, int win, const T* window, T* mag);

// grad_wave [B, S] += d(sum grad_mag * mag)/d(wave), given the spectrum `spec` [B, 2 * bins, frames] saved
// by the forward. Gradients of the mirrored padding samples fold back onto the samples they copy.
template <typename T>
void stft_magnitude_backward_cpu(const StftPlan<T>& plan, const T* spec, const T* grad_mag, int B, int64_t S,
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

// Masked mean L1 of x, y [B, C, frames] with frame weights mask [B, frames] (1 valid, 0 padding):
// sum_{b,c,t} |x - y| * mask[b, t] / (C * sum mask). Sums in double. Throws when sum mask <= 0.
template <typename T>
double masked_l1_forward_cpu(const T* x, const T* y, const T* mask, int B, int C, int64_t frames);

// grad_x += g * sign(x - y) * mask / (C * sum mask); grad_y -= the same (either may be nullptr).
// sign(0) = 0, as torch's.
template <typename T>
void masked_l1_backward_cpu(const T* x, const T* y, const T* mask, T grad_loss, T* grad_x, T* grad_y, int B, int C,
                            int64_t frames);

// ---------------------------------------------------------------- CUDA (float32, device pointers)
// The same pipeline on the device. Every pointer is device memory; work runs on the compute stream.
// The STFT uses cuFFT (batched in-place R2C of n_fft), not the basis gemm: results agree with the CPU
// to float rounding, not bit for bit.

// Everything the device STFT needs for one (n_fft, hop, win, window): the geometry and the window
// (zero-padded, centred, to n_fft; float, on the device, allocated through the engine's scratch allocator).
// The cuFFT plans are not in it: they are cached process-wide per (n_fft, batch chunk), see stft_mel.cu.
// Opaque; build it once (after the engine's allocator is installed) and share it; read-only after creation.
struct CudaStftPlan;

// Same requirements and errors as make_stft_plan; `window` (host memory, `win` floats; nullptr: the periodic
// Hann window computed in double as on the CPU). The returned pointer frees the device window when the last
// copy goes, so holding one needs no CUDA symbol.
std::shared_ptr<const CudaStftPlan> make_stft_plan_cuda(int n_fft, int hop, int win, const float* window = nullptr);

// Frames of a signal of `samples` samples (as StftPlan::frames, same errors).
int64_t stft_frames_cuda(const CudaStftPlan& plan, int64_t samples);

// mag [B, bins, frames] = sqrt(|STFT(reflect_pad(wave))|^2 + 1e-6), wave [B, S].
// spec (may be nullptr) receives the spectrum for the backward, B * 2 * bins * frames floats like the CPU's,
// but in cuFFT's layout: [B, frames, bins] complex, (re, im) interleaved, i.e. spec[((b * frames + t) * bins
// + k) * 2 + {0: re, 1: im}]. Only stft_magnitude_backward_cuda reads it; it must be 8-byte aligned.
void stft_magnitude_forward_cuda(const CudaStftPlan& plan, const float* wave, int B, int64_t S, float* mag,
                                 float* spec);

// grad_wave [B, S] += d(sum grad_mag * mag)/d(wave), given the `spec` saved by stft_magnitude_forward_cuda
// (its layout, not the CPU's). grad_mag [B, bins, frames].
void stft_magnitude_backward_cuda(const CudaStftPlan& plan, const float* spec, const float* grad_mag, int B,
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

// The masked mean L1 (as masked_l1_forward_cpu), summed in double on the device in a fixed order
// (deterministic), returned to the host (waits for the stream). Throws when sum mask <= 0.
double masked_l1_forward_cuda(const float* x, const float* y, const float* mask, int B, int C, int64_t frames);

// grad_x += g * sign(x - y) * mask / (C * sum mask); grad_y -= the same (either may be nullptr), where g is
// ONE float in device memory (the upstream gradient of the loss scalar; no host round trip). sum mask is
// recomputed on the device; the forward has checked it is > 0 (here a zero sum gives inf/NaN gradients).
void masked_l1_backward_cuda(const float* x, const float* y, const float* mask, const float* grad_loss,
                             float* grad_x, float* grad_y, int B, int C, int64_t frames);

}  // namespace vitscuda::kernels
