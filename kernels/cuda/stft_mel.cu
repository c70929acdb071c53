// CUDA log-mel pipeline of the training loss (the device counterpart of kernels/cpu/stft_mel.cpp):
// STFT magnitude through cuFFT, mel projection through cuBLAS and log-clamp, with their backwards.
//
// STFT forward, per call:
//   1. stft_frame_kernel: frames[r, n] = padded[b, t * hop + n] * window[n] (reflect padding by index,
//      window folded in), rows r = b * frames + t, each row 2 * bins floats long (cuFFT's in-place R2C
//      layout: n_fft reals, then 1 or 2 unused floats).
//   2. batched in-place R2C of n_fft over those rows: the buffer now holds [B, frames, bins] complex. This
//      buffer is the caller's `spectrum` when it keeps one (no other scratch), so the backward reuses it as is.
//   3. stft_magnitude_kernel: mag[b, k, t] = sqrt(re^2 + im^2 + 1e-6), a tiled transpose
//      ([frames, bins] -> [bins, frames]) through shared memory, coalesced on both sides.
// STFT backward:
//   1. stft_grad_spec_kernel: Z[b, t, k] = grad_mag[b, k, t] / mag * (re, im), transposed back (tiled),
//      times 1/2 for the bins 1..ceil(n_fft/2)-1 and with a zero imaginary part at DC (and Nyquist):
//      the gradient of the real frame x[n] is
//          g[n] = sum_{k=0}^{bins-1} Gre_k cos(2 pi k n / N) - Gim_k sin(2 pi k n / N)
//      (each bin once), while C2R computes, unnormalised and Hermitian,
//          y[n] = Re Z_0 + Re Z_{N/2} (-1)^n + 2 sum_{0<k<N/2} (Re Z_k cos - Im Z_k sin),
//      so Z_k = G_k / 2 inside and G_k at DC / Nyquist make y = g exactly (sin vanishes there, so the true
//      gradient ignores Gim_0 and Gim_{N/2}; zeroing them keeps C2R's input truly Hermitian).
//   2. batched in-place C2R of n_fft into the same scratch rows (2 * bins floats each).
//   3. stft_overlap_fold_kernel: one thread per output sample: the overlap-add of window * y over the
//      (at most ceil(n_fft / hop)) frames covering its padded position, plus those of the mirrored padding
//      positions that copy it, added to grad_wave in the CPU's order (interior, left mirror, right mirror).
//      A gather: no atomics, deterministic.
//
// cuFFT plans: one per (n_fft, chunk rows, direction), process-wide, built on first use and kept (like the
// cuDNN descriptors of conv1d.cu). B * frames rows are run as power-of-two chunks (at most 2^15 rows each),
// so any batch size uses at most ~16 plans per n_fft and direction, never a plan per call. Plans have no
// work area of their own (cufftSetAutoAllocation(0)); each execution gets one from cuda::Scratch (the
// engine's caching allocator), set with cufftSetWorkArea under the cache's mutex, on the compute stream.
// The window lives in the StftPlan (StftDeviceWindow, uploaded on the plan's first use on the device).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/stft_mel.h"

namespace vitscuda::kernels {

struct StftDeviceWindow {
  cuda::Scratch window;  // [n_fft] floats, the plan's window (zero-padded, centred, to n_fft)
};

namespace {

using cuda::blocks_for;

constexpr int kThreads = 256;
constexpr int kTile = 32;      // transpose tiles of 32 x 32
constexpr int kTileRows = 8;   // a tile's block is 32 x 8 threads
constexpr int kMaxFftChunkRows = 1 << 15;

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// torch's "reflect" padding (the edge sample not repeated), valid for pad <= S - 1.
__device__ __forceinline__ int64_t reflect_index(int64_t p, int64_t pad, int64_t S) {
  int64_t j = p - pad;
  if (j < 0) j = -j;
  if (j >= S) j = 2 * (S - 1) - j;
  return j;
}

__device__ __forceinline__ float magnitude(float re, float im, float eps) {
  return sqrtf(__fadd_rn(__fadd_rn(__fmul_rn(re, re), __fmul_rn(im, im)), eps));  // the CPU's ((re re + im im) + eps)
}

// ---------------------------------------------------------------- STFT forward

__global__ void stft_frame_kernel(const float* wave, const float* window, float* frames, int64_t rows, int64_t F,
                                  int64_t S, int n_fft, int hop, int pad, int row_floats) {
  const int64_t total = rows * n_fft;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / n_fft;
    const int n = static_cast<int>(i - r * n_fft);
    const int64_t b = r / F, t = r - b * F;
    const int64_t j = reflect_index(t * hop + n, pad, S);
    frames[r * row_floats + n] = wave[b * S + j] * window[n];
  }
}

// Tiles of 32 bins x 32 frames of one batch item; threadIdx.x runs along the contiguous dimension of each
// side in turn.
__global__ void stft_magnitude_kernel(const float2* spec, float* mag, int64_t B, int bins, int64_t F,
                                      int64_t k_tiles, int64_t t_tiles, float eps) {
  __shared__ float tile[kTile][kTile + 1];  // [bin][frame]
  const int64_t tiles = B * k_tiles * t_tiles;
  for (int64_t id = blockIdx.x; id < tiles; id += gridDim.x) {
    const int64_t b = id / (k_tiles * t_tiles);
    const int64_t rest = id - b * k_tiles * t_tiles;
    const int64_t k0 = (rest / t_tiles) * kTile, t0 = (rest % t_tiles) * kTile;
    for (int d = threadIdx.y; d < kTile; d += kTileRows) {  // read along bins
      const int64_t t = t0 + d, k = k0 + threadIdx.x;
      if (t < F && k < bins) {
        const float2 c = spec[(b * F + t) * bins + k];
        tile[threadIdx.x][d] = magnitude(c.x, c.y, eps);
      }
    }
    __syncthreads();
    for (int d = threadIdx.y; d < kTile; d += kTileRows) {  // write along frames
      const int64_t k = k0 + d, t = t0 + threadIdx.x;
      if (t < F && k < bins) mag[(b * bins + k) * F + t] = tile[d][threadIdx.x];
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------- STFT backward

__global__ void stft_grad_spec_kernel(const float2* spec, const float* grad_mag, float2* z, int64_t B, int bins,
                                      int n_fft, int64_t F, int64_t k_tiles, int64_t t_tiles, float eps) {
  __shared__ float tile[kTile][kTile + 1];  // [bin][frame]
  const int64_t tiles = B * k_tiles * t_tiles;
  for (int64_t id = blockIdx.x; id < tiles; id += gridDim.x) {
    const int64_t b = id / (k_tiles * t_tiles);
    const int64_t rest = id - b * k_tiles * t_tiles;
    const int64_t k0 = (rest / t_tiles) * kTile, t0 = (rest % t_tiles) * kTile;
    for (int d = threadIdx.y; d < kTile; d += kTileRows) {  // read grad_mag along frames
      const int64_t k = k0 + d, t = t0 + threadIdx.x;
      if (t < F && k < bins) tile[d][threadIdx.x] = grad_mag[(b * bins + k) * F + t];
    }
    __syncthreads();
    for (int d = threadIdx.y; d < kTile; d += kTileRows) {  // spectrum along bins
      const int64_t t = t0 + d, k = k0 + threadIdx.x;
      if (t < F && k < bins) {
        const int64_t i = (b * F + t) * bins + k;
        const float2 c = spec[i];
        const float scale = tile[threadIdx.x][d] / magnitude(c.x, c.y, eps);  // d mag / d (re, im) = (re, im) / mag
        const float re = scale * c.x, im = scale * c.y;
        // Exact scalings by 1/2: the bins C2R counts twice (Hermitian); DC and Nyquist once, real.
        const bool self_conjugate = k == 0 || 2 * k == n_fft;
        z[i] = self_conjugate ? make_float2(re, 0.f) : make_float2(0.5f * re, 0.5f * im);
      }
    }
    __syncthreads();
  }
}

// Sum over the frames covering padded position p of window[n] * y[frame, n], n = p - t * hop, frames in
// ascending order (the CPU's).
__device__ __forceinline__ float overlap_sum(const float* y, const float* window, int64_t row0, int64_t p, int64_t F,
                                             int n_fft, int hop, int row_floats) {
  const int64_t t_first = p >= n_fft ? (p - n_fft) / hop + 1 : 0;
  const int64_t t_last = min64(F - 1, p / hop);
  float sum = 0.f;
  for (int64_t t = t_first; t <= t_last; ++t) {
    const int n = static_cast<int>(p - t * hop);
    sum += y[(row0 + t) * row_floats + n] * window[n];
  }
  return sum;
}

__global__ void stft_overlap_fold_kernel(const float* y, const float* window, float* grad_wave, int64_t B, int64_t S,
                                         int64_t F, int n_fft, int hop, int pad, int row_floats) {
  const int64_t total = B * S;
  const int64_t used = (F - 1) * hop + n_fft;  // padded positions the frames cover
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t b = i / S, j = i - b * S;
    const int64_t row0 = b * F;
    float acc = grad_wave[i];
    const int64_t interior = j + pad;
    if (interior < used) acc += overlap_sum(y, window, row0, interior, F, n_fft, hop, row_floats);
    if (j >= 1 && j <= pad) {  // left padding position pad - j mirrors sample j
      const int64_t p = pad - j;
      if (p < used) acc += overlap_sum(y, window, row0, p, F, n_fft, hop, row_floats);
    }
    const int64_t right = pad + 2 * (S - 1) - j;  // right padding position mirroring sample j
    if (right >= pad + S && right < used) acc += overlap_sum(y, window, row0, right, F, n_fft, hop, row_floats);
    grad_wave[i] = acc;
  }
}

// ---------------------------------------------------------------- cuFFT plans

struct FftPlan {
  cufftHandle handle = 0;
  size_t work_bytes = 0;
};

std::mutex g_fft_mutex;
std::map<std::tuple<int, int, int>, FftPlan> g_fft_plans;  // (n_fft, rows, type), kept for the process

// Rows of n_fft samples 2 * bins floats apart (the in-place R2C layout), spectra bins complex apart.
FftPlan& fft_plan(int n_fft, int rows, cufftType type) {
  const auto key = std::make_tuple(n_fft, rows, static_cast<int>(type));
  auto it = g_fft_plans.find(key);
  if (it != g_fft_plans.end()) return it->second;
  cufftHandle h = 0;
  CUFFT_CHECK(cufftCreate(&h));
  try {
    CUFFT_CHECK(cufftSetAutoAllocation(h, 0));
    const int bins = n_fft / 2 + 1;
    int n[1] = {n_fft};
    int real_embed[1] = {2 * bins};
    int complex_embed[1] = {bins};
    size_t work = 0;
    // What the plan keeps for itself (twiddles, no work area) is outside the budget: counted as such.
    cuda::measure_library_memory([&] {
      if (type == CUFFT_R2C)
        CUFFT_CHECK(
            cufftMakePlanMany(h, 1, n, real_embed, 1, 2 * bins, complex_embed, 1, bins, CUFFT_R2C, rows, &work));
      else
        CUFFT_CHECK(
            cufftMakePlanMany(h, 1, n, complex_embed, 1, bins, real_embed, 1, 2 * bins, CUFFT_C2R, rows, &work));
    });
    CUFFT_CHECK(cufftSetStream(h, cuda::compute_stream()));
    return g_fft_plans.emplace(key, FftPlan{h, work}).first->second;
  } catch (...) {
    cufftDestroy(h);
    throw;
  }
}

// The largest power of two <= min(rows, kMaxFftChunkRows).
int fft_chunk_rows(int64_t rows) {
  int chunk = 1;
  while (chunk < kMaxFftChunkRows && static_cast<int64_t>(chunk) * 2 <= rows) chunk *= 2;
  return chunk;
}

// In-place R2C (type CUFFT_R2C) or C2R of `rows` rows of `data` (2 * bins floats per row).
void fft_rows(int n_fft, int64_t rows, cufftType type, float* data) {
  const int64_t row_floats = 2 * static_cast<int64_t>(n_fft / 2 + 1);
  std::lock_guard<std::mutex> lock(g_fft_mutex);
  for (int64_t done = 0; done < rows;) {
    const int chunk = fft_chunk_rows(rows - done);
    const FftPlan& plan = fft_plan(n_fft, chunk, type);
    cuda::Scratch work(plan.work_bytes, "cuFFT work area");
    if (plan.work_bytes) CUFFT_CHECK(cufftSetWorkArea(plan.handle, work.get()));
    float* base = data + done * row_floats;
    if (type == CUFFT_R2C)
      CUFFT_CHECK(cufftExecR2C(plan.handle, base, reinterpret_cast<cufftComplex*>(base)));
    else
      CUFFT_CHECK(cufftExecC2R(plan.handle, reinterpret_cast<cufftComplex*>(base), base));
    done += chunk;
  }
}

// ---------------------------------------------------------------- log clamp

__global__ void log_clamp_forward_kernel(const float* x, float* y, int64_t n, float clamp_min) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = x[i];
    y[i] = logf(v < clamp_min ? clamp_min : v);  // std::max(v, clamp_min): NaN stays NaN
  }
}

__global__ void log_clamp_backward_kernel(const float* x, const float* grad_y, float* grad_x, int64_t n,
                                          float clamp_min) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = x[i];
    if (v >= clamp_min) grad_x[i] = __fadd_rn(grad_x[i], __fdiv_rn(grad_y[i], v));
  }
}

void check_stft_batch(const char* who, int B, int64_t S) {
  VC_CHECK(B >= 1 && S >= 1, who << ": invalid batch " << B << " or length " << S);
}

void check_aligned8(const char* who, const void* p) {
  VC_CHECK(reinterpret_cast<uintptr_t>(p) % 8 == 0,
           who << ": the spectrum buffer " << p << " is not 8-byte aligned (cuFFT complex data)");
}

void check_mel_sizes(const char* who, int B, int n_mels, int bins, int64_t frames) {
  VC_CHECK(B >= 1 && n_mels >= 1 && bins >= 1 && frames >= 1,
           who << ": invalid sizes B=" << B << " n_mels=" << n_mels << " bins=" << bins << " frames=" << frames);
  VC_CHECK(frames <= INT32_MAX, who << ": " << frames << " frames exceed cuBLAS's int range");
}

}  // namespace

// ---------------------------------------------------------------- STFT entry points

const StftDeviceWindow& StftPlan::device_window() const {
  Tables& t = *tables_;
  std::call_once(t.device_once, [&t] {
    VC_CHECK(t.n_fft <= (1 << 24), "stft plan (cuda): n_fft " << t.n_fft << " is beyond the supported 2^24");
    // The window rounded to float, as the CPU's float basis rounds it.
    const std::vector<float> window(t.window.begin(), t.window.end());
    auto device = std::make_shared<StftDeviceWindow>();
    device->window = cuda::upload(window.data(), sizeof(float) * window.size(), "stft window");
    t.device = std::move(device);
  });
  return *t.device;
}

void stft_magnitude_forward_cuda(const StftPlan& plan, const float* wave, int B, int64_t S, float* mag,
                                 float* spectrum) {
  check_stft_batch("stft_magnitude_forward_cuda", B, S);
  const int64_t F = plan.frames(S);
  const int n_fft = plan.n_fft(), bins = plan.bins();
  const float* window = plan.device_window().window.as<float>();
  const int64_t rows = static_cast<int64_t>(B) * F;
  const int row_floats = 2 * bins;
  cuda::Scratch local(spectrum ? 0 : sizeof(float) * static_cast<size_t>(rows) * row_floats, "stft spectrum");
  float* buf = spectrum ? spectrum : local.as<float>();
  check_aligned8("stft_magnitude_forward_cuda", buf);

  VC_LAUNCH(stft_frame_kernel, blocks_for(rows * n_fft, kThreads), kThreads, 0)
  (wave, window, buf, rows, F, S, n_fft, plan.hop(), plan.pad(), row_floats);
  VC_CHECK_LAUNCH("stft_frame_kernel");

  fft_rows(n_fft, rows, CUFFT_R2C, buf);

  const int64_t k_tiles = (bins + kTile - 1) / kTile, t_tiles = (F + kTile - 1) / kTile;
  VC_LAUNCH(stft_magnitude_kernel, blocks_for(B * k_tiles * t_tiles, 1), dim3(kTile, kTileRows), 0)
  (reinterpret_cast<const float2*>(buf), mag, static_cast<int64_t>(B), bins, F, k_tiles, t_tiles,
   static_cast<float>(kStftMagnitudeEps));
  VC_CHECK_LAUNCH("stft_magnitude_kernel");
}

void stft_magnitude_backward_cuda(const StftPlan& plan, const float* spectrum, const float* grad_mag, int B,
                                  int64_t S, float* grad_wave) {
  check_stft_batch("stft_magnitude_backward_cuda", B, S);
  check_aligned8("stft_magnitude_backward_cuda", spectrum);
  const int64_t F = plan.frames(S);
  const int n_fft = plan.n_fft(), bins = plan.bins();
  const float* window = plan.device_window().window.as<float>();
  const int64_t rows = static_cast<int64_t>(B) * F;
  const int row_floats = 2 * bins;
  cuda::Scratch work(sizeof(float) * static_cast<size_t>(rows) * row_floats, "stft backward spectrum");

  const int64_t k_tiles = (bins + kTile - 1) / kTile, t_tiles = (F + kTile - 1) / kTile;
  VC_LAUNCH(stft_grad_spec_kernel, blocks_for(B * k_tiles * t_tiles, 1), dim3(kTile, kTileRows), 0)
  (reinterpret_cast<const float2*>(spectrum), grad_mag, work.as<float2>(), static_cast<int64_t>(B), bins, n_fft, F,
   k_tiles, t_tiles, static_cast<float>(kStftMagnitudeEps));
  VC_CHECK_LAUNCH("stft_grad_spec_kernel");

  fft_rows(n_fft, rows, CUFFT_C2R, work.as<float>());

  VC_LAUNCH(stft_overlap_fold_kernel, blocks_for(static_cast<int64_t>(B) * S, kThreads), kThreads, 0)
  (work.as<float>(), window, grad_wave, static_cast<int64_t>(B), S, F, n_fft, plan.hop(), plan.pad(), row_floats);
  VC_CHECK_LAUNCH("stft_overlap_fold_kernel");
}

// ---------------------------------------------------------------- mel projection (row-major via column-major cuBLAS)

void mel_project_forward_cuda(const float* fb, const float* mag, float* mel, int B, int n_mels, int bins,
                              int64_t frames) {
  check_mel_sizes("mel_project_forward_cuda", B, n_mels, bins, frames);
  const int n = static_cast<int>(frames);
  const float one = 1.f, zero = 0.f;
  // Column-major: mel_b^T [frames, n_mels] = mag_b^T [frames, bins] @ fb^T [bins, n_mels]; fb shared (stride 0).
  CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, n, n_mels, bins, &one, mag,
                                         n, static_cast<long long>(bins) * frames, fb, bins, 0, &zero, mel, n,
                                         static_cast<long long>(n_mels) * frames, B));
}

void mel_project_backward_cuda(const float* fb, const float* grad_mel, float* grad_mag, int B, int n_mels, int bins,
                               int64_t frames) {
  check_mel_sizes("mel_project_backward_cuda", B, n_mels, bins, frames);
  const int n = static_cast<int>(frames);
  const float one = 1.f;
  // Column-major: grad_mag_b^T [frames, bins] += grad_mel_b^T [frames, n_mels] @ fb [n_mels, bins].
  CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_T, n, bins, n_mels, &one,
                                         grad_mel, n, static_cast<long long>(n_mels) * frames, fb, bins, 0, &one,
                                         grad_mag, n, static_cast<long long>(bins) * frames, B));
}

// ---------------------------------------------------------------- log clamp

void log_clamp_forward_cuda(const float* x, float* y, int64_t n, float clamp_min) {
  VC_CHECK(n >= 0, "log_clamp_forward_cuda: negative element count " << n);
  if (n == 0) return;
  VC_LAUNCH(log_clamp_forward_kernel, blocks_for(n, kThreads), kThreads, 0)(x, y, n, clamp_min);
  VC_CHECK_LAUNCH("log_clamp_forward_kernel");
}

void log_clamp_backward_cuda(const float* x, const float* grad_y, float* grad_x, int64_t n, float clamp_min) {
  VC_CHECK(n >= 0, "log_clamp_backward_cuda: negative element count " << n);
  if (n == 0) return;
  VC_LAUNCH(log_clamp_backward_kernel, blocks_for(n, kThreads), kThreads, 0)(x, grad_y, grad_x, n, clamp_min);
  VC_CHECK_LAUNCH("log_clamp_backward_kernel");
}

}  // namespace vitscuda::kernels
