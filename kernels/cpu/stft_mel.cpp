#include "kernels/stft_mel.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/im2col_gemm.h"

namespace vitscuda::kernels {

namespace {

using detail::gemm;

constexpr int64_t kParallelWork = 32768;  // below this many elements a loop stays serial

// Index into the signal of position p of its reflect-padded copy (torch's "reflect": the edge sample is
// not repeated). Valid for pad <= S - 1.
inline int64_t reflect_index(int64_t p, int64_t pad, int64_t S) {
  int64_t j = p - pad;
  if (j < 0) j = -j;
  if (j >= S) j = 2 * (S - 1) - j;
  return j;
}

void check_batch(const char* who, int B, int64_t S) {
  VC_CHECK(B >= 1 && S >= 1, who << ": invalid batch " << B << " or length " << S);
}

}  // namespace

std::vector<double> periodic_hann_window(int win) {
  VC_CHECK(win >= 1, "periodic_hann_window: window length " << win << " must be >= 1");
  const double pi = std::acos(-1.0);
  std::vector<double> w(static_cast<size_t>(win));
  for (int n = 0; n < win; ++n) w[n] = 0.5 - 0.5 * std::cos(2.0 * pi * n / win);
  return w;
}

// ---------------------------------------------------------------- StftPlan (shared by both backends)

StftPlan::StftPlan(int n_fft, int hop, int win, const double* window) : tables_(std::make_shared<Tables>()) {
  VC_CHECK(n_fft >= 2 && hop >= 1 && win >= 1 && win <= n_fft,
           "stft plan: invalid n_fft " << n_fft << ", hop " << hop << " or win " << win << " (need 1 <= win <= n_fft)");
  VC_CHECK(n_fft >= hop && (n_fft - hop) % 2 == 0,
           "stft plan: n_fft " << n_fft << " - hop " << hop << " must be even and >= 0 (padding (n_fft - hop) / 2)");
  Tables& t = *tables_;
  t.n_fft = n_fft;
  t.hop = hop;
  t.win = win;
  t.bins = n_fft / 2 + 1;
  t.pad = (n_fft - hop) / 2;
  // The window zero-padded (centred) to n_fft, as torch.stft does with win_length < n_fft.
  t.window.assign(static_cast<size_t>(n_fft), 0.0);
  const std::vector<double> hann = window ? std::vector<double>() : periodic_hann_window(win);
  const int left = (n_fft - win) / 2;
  for (int n = 0; n < win; ++n) t.window[left + n] = window ? window[n] : hann[n];
}

int64_t StftPlan::frames(int64_t samples) const {
  const int n_fft = tables_->n_fft, hop = tables_->hop, pad = tables_->pad;
  VC_CHECK(samples > pad, "stft: a signal of " << samples << " samples is too short for the reflect padding of " << pad
                                               << " samples (n_fft " << n_fft << ", hop " << hop
                                               << "); it needs more than " << pad << " samples");
  const int64_t padded = samples + 2 * static_cast<int64_t>(pad);
  VC_CHECK(padded >= n_fft, "stft: a signal of " << samples << " samples padded to " << padded
                                                 << " is shorter than one frame of n_fft " << n_fft);
  return (padded - n_fft) / hop + 1;
}

int64_t StftPlan::spectrum_size(int B, int64_t samples) const {
  return static_cast<int64_t>(B) * 2 * tables_->bins * frames(samples);
}

namespace {

template <typename T>
void build_basis(int n_fft, int bins, const std::vector<double>& window, std::vector<T>* basis) {
  const double two_pi_over_n = 2.0 * std::acos(-1.0) / n_fft;
  basis->assign(static_cast<size_t>(2) * bins * n_fft, T(0));
  T* const data = basis->data();
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(bins) * n_fft > kParallelWork)
  for (int k = 0; k < bins; ++k) {
    T* re = data + static_cast<int64_t>(k) * n_fft;
    T* im = data + static_cast<int64_t>(bins + k) * n_fft;
    for (int n = 0; n < n_fft; ++n) {
      // k * n reduced mod n_fft in integers keeps the angle exact for large k * n.
      const double angle = two_pi_over_n * static_cast<double>((static_cast<int64_t>(k) * n) % n_fft);
      re[n] = static_cast<T>(window[n] * std::cos(angle));
      im[n] = static_cast<T>(-window[n] * std::sin(angle));
    }
  }
}

}  // namespace

template <>
const std::vector<float>& StftPlan::cpu_basis<float>() const {
  Tables& t = *tables_;
  std::call_once(t.basis_f32_once, [&t] { build_basis(t.n_fft, t.bins, t.window, &t.basis_f32); });
  return t.basis_f32;
}

template <>
const std::vector<double>& StftPlan::cpu_basis<double>() const {
  Tables& t = *tables_;
  std::call_once(t.basis_f64_once, [&t] { build_basis(t.n_fft, t.bins, t.window, &t.basis_f64); });
  return t.basis_f64;
}

template <typename T>
void stft_magnitude_forward_cpu(const StftPlan& plan, const T* wave, int B, int64_t S, T* mag, T* spectrum) {
  check_batch("stft_magnitude_forward", B, S);
  const int64_t frames = plan.frames(S);
  const int n_fft = plan.n_fft(), bins = plan.bins();
  const int64_t hop = plan.hop(), pad = plan.pad();
  const T* const basis = plan.cpu_basis<T>().data();
  std::vector<T> framed(static_cast<size_t>(frames * n_fft));
  std::vector<T> local_spec(spectrum ? 0 : static_cast<size_t>(2) * bins * frames);
  for (int b = 0; b < B; ++b) {
    const T* x = wave + b * S;
    // framed[t, n] = padded[t * hop + n]: a materialised copy, since overlapping frames (hop < n_fft)
    // are not a strided matrix BLAS accepts.
#pragma omp parallel for schedule(static) if (frames * n_fft > kParallelWork)
    for (int64_t t = 0; t < frames; ++t) {
      T* row = framed.data() + t * n_fft;
      const int64_t start = t * hop;
      if (start >= pad && start + n_fft <= pad + S) {
        std::copy(x + start - pad, x + start - pad + n_fft, row);
      } else {
        for (int n = 0; n < n_fft; ++n) row[n] = x[reflect_index(start + n, pad, S)];
      }
    }
    T* sb = spectrum ? spectrum + static_cast<int64_t>(b) * 2 * bins * frames : local_spec.data();
    // sb [2*bins, frames] = basis [2*bins, n_fft] @ framed^T.
    gemm<T>(false, true, 2 * bins, static_cast<int>(frames), n_fft, T(1), basis, n_fft, framed.data(),
            n_fft, T(0), sb, static_cast<int>(frames));
    T* mb = mag + static_cast<int64_t>(b) * bins * frames;
    const int64_t half = static_cast<int64_t>(bins) * frames;
    const T eps = static_cast<T>(kStftMagnitudeEps);
#pragma omp parallel for schedule(static) if (half > kParallelWork)
    for (int64_t i = 0; i < half; ++i) {
      const T re = sb[i], im = sb[half + i];
      mb[i] = std::sqrt(re * re + im * im + eps);
    }
  }
}

template <typename T>
void stft_magnitude_forward_cpu(const T* wave, int B, int64_t S, int n_fft, int hop, int win, const T* window, T* mag) {
  const std::vector<double> window_f64 = window ? std::vector<double>(window, window + win) : std::vector<double>();
  const StftPlan plan(n_fft, hop, win, window ? window_f64.data() : nullptr);
  stft_magnitude_forward_cpu(plan, wave, B, S, mag, static_cast<T*>(nullptr));
}

template <typename T>
void stft_magnitude_backward_cpu(const StftPlan& plan, const T* spectrum, const T* grad_mag, int B, int64_t S,
                                 T* grad_wave) {
  check_batch("stft_magnitude_backward", B, S);
  const int64_t frames = plan.frames(S);
  const int n_fft = plan.n_fft(), bins = plan.bins();
  const int64_t hop = plan.hop(), pad = plan.pad();
  const T* const basis = plan.cpu_basis<T>().data();
  const int64_t half = static_cast<int64_t>(bins) * frames;
  const int64_t used = (frames - 1) * hop + n_fft;  // padded samples the frames cover
  const T eps = static_cast<T>(kStftMagnitudeEps);
  std::vector<T> grad_spec(static_cast<size_t>(2 * half));
  std::vector<T> grad_framed(static_cast<size_t>(frames * n_fft));
  std::vector<T> grad_padded(static_cast<size_t>(used));
  for (int b = 0; b < B; ++b) {
    const T* sb = spectrum + static_cast<int64_t>(b) * 2 * half;
    const T* gm = grad_mag + static_cast<int64_t>(b) * half;
    // d mag / d re = re / mag, d mag / d im = im / mag.
#pragma omp parallel for schedule(static) if (half > kParallelWork)
    for (int64_t i = 0; i < half; ++i) {
      const T re = sb[i], im = sb[half + i];
      const T scale = gm[i] / std::sqrt(re * re + im * im + eps);
      grad_spec[i] = scale * re;
      grad_spec[half + i] = scale * im;
    }
    // grad_framed [frames, n_fft] = grad_spec^T @ basis.
    gemm<T>(true, false, static_cast<int>(frames), n_fft, 2 * bins, T(1), grad_spec.data(), static_cast<int>(frames),
            basis, n_fft, T(0), grad_framed.data(), n_fft);
    // Overlap-add back onto the padded signal, gathered per position so threads never share an output.
#pragma omp parallel for schedule(static) if (used * (n_fft / hop) > kParallelWork)
    for (int64_t p = 0; p < used; ++p) {
      const int64_t t_first = p >= n_fft ? (p - n_fft) / hop + 1 : 0;
      const int64_t t_last = std::min(frames - 1, p / hop);
      T sum = T(0);
      for (int64_t t = t_first; t <= t_last; ++t) sum += grad_framed[t * n_fft + (p - t * hop)];
      grad_padded[p] = sum;
    }
    // Fold the padding back: the interior maps one to one; mirrored samples add to the samples they copy.
    T* gw = grad_wave + b * S;
    const int64_t interior_end = std::min(used, pad + S);
#pragma omp parallel for schedule(static) if (S > kParallelWork)
    for (int64_t p = pad; p < interior_end; ++p) gw[p - pad] += grad_padded[p];
    for (int64_t p = 0; p < std::min(pad, used); ++p) gw[reflect_index(p, pad, S)] += grad_padded[p];
    for (int64_t p = pad + S; p < used; ++p) gw[reflect_index(p, pad, S)] += grad_padded[p];
  }
}

template <typename T>
void mel_project_forward_cpu(const T* fb, const T* mag, T* mel, int B, int n_mels, int bins, int64_t frames) {
  VC_CHECK(B >= 1 && n_mels >= 1 && bins >= 1 && frames >= 1,
           "mel_project_forward: invalid sizes B=" << B << " n_mels=" << n_mels << " bins=" << bins
                                                   << " frames=" << frames);
  const int n = static_cast<int>(frames);
  for (int b = 0; b < B; ++b)
    gemm<T>(false, false, n_mels, n, bins, T(1), fb, bins, mag + static_cast<int64_t>(b) * bins * frames, n, T(0),
            mel + static_cast<int64_t>(b) * n_mels * frames, n);
}

template <typename T>
void mel_project_backward_cpu(const T* fb, const T* grad_mel, T* grad_mag, int B, int n_mels, int bins,
                              int64_t frames) {
  VC_CHECK(B >= 1 && n_mels >= 1 && bins >= 1 && frames >= 1,
           "mel_project_backward: invalid sizes B=" << B << " n_mels=" << n_mels << " bins=" << bins
                                                    << " frames=" << frames);
  const int n = static_cast<int>(frames);
  for (int b = 0; b < B; ++b)
    gemm<T>(true, false, bins, n, n_mels, T(1), fb, bins, grad_mel + static_cast<int64_t>(b) * n_mels * frames, n,
            T(1), grad_mag + static_cast<int64_t>(b) * bins * frames, n);
}

template <typename T>
void log_clamp_forward_cpu(const T* x, T* y, int64_t n, T clamp_min) {
#pragma omp parallel for schedule(static) if (n > kParallelWork)
  for (int64_t i = 0; i < n; ++i) y[i] = std::log(std::max(x[i], clamp_min));
}

template <typename T>
void log_clamp_backward_cpu(const T* x, const T* grad_y, T* grad_x, int64_t n, T clamp_min) {
#pragma omp parallel for schedule(static) if (n > kParallelWork)
  for (int64_t i = 0; i < n; ++i)
    if (x[i] >= clamp_min) grad_x[i] += grad_y[i] / x[i];
}

#define VITSCUDA_INSTANTIATE_STFT_MEL(T)                                                                            \
  template void stft_magnitude_forward_cpu<T>(const StftPlan&, const T*, int, int64_t, T*, T*);                     \
  template void stft_magnitude_forward_cpu<T>(const T*, int, int64_t, int, int, int, const T*, T*);                 \
  template void stft_magnitude_backward_cpu<T>(const StftPlan&, const T*, const T*, int, int64_t, T*);              \
  template void mel_project_forward_cpu<T>(const T*, const T*, T*, int, int, int, int64_t);                         \
  template void mel_project_backward_cpu<T>(const T*, const T*, T*, int, int, int, int64_t);                        \
  template void log_clamp_forward_cpu<T>(const T*, T*, int64_t, T);                                                 \
  template void log_clamp_backward_cpu<T>(const T*, const T*, T*, int64_t, T);

VITSCUDA_INSTANTIATE_STFT_MEL(float)
VITSCUDA_INSTANTIATE_STFT_MEL(double)

#undef VITSCUDA_INSTANTIATE_STFT_MEL

}  // namespace vitscuda::kernels
