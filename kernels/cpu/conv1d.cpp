#include "kernels/conv1d.h"

#include <omp.h>

#include <type_traits>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/im2col_gemm.h"
#include "kernels/cpu/onednn_conv.h"

namespace vitscuda::kernels {

namespace {

using detail::bias_backward;
using detail::col2im_add;
using detail::gemm;
using detail::im2col;
using detail::tile_columns;
using detail::valid_columns;

constexpr int64_t kParallelWork = 32768;  // below this many multiply-adds a loop stays serial
// Input channels per group from which the tap products pay (2 cores, AVX-512): from 8 on, K thin gemms beat one
// over Cin*K at every HiFi-GAN and WaveNet shape, conv_post's single output channel included; with 4, im2col wins.
constexpr int kMinTapChannels = 8;
// Columns per thread below which one sample's forward is not cut into spans (each span's gemm needs a width).
constexpr int64_t kMinSpanColumns = 512;

// y[n, o, :] = b[o] (or 0).
template <typename T>
void fill_bias(T* y, const T* b, int B, int Cout, int64_t Tout) {
#pragma omp parallel for collapse(2) schedule(static) if (static_cast<int64_t>(B) * Cout * Tout >= kParallelWork)
  for (int n = 0; n < B; ++n)
    for (int o = 0; o < Cout; ++o) {
      T* row = y + (static_cast<int64_t>(n) * Cout + o) * Tout;
      const T value = b ? b[o] : T(0);
      for (int64_t t = 0; t < Tout; ++t) row[t] = value;
    }
}

// One input channel per group (depthwise, with `mult` = Cout/groups outputs per channel):
// a direct loop beats a gemm with an inner dimension of K.
template <typename T>
void depthwise_forward(const T* x, const T* w, const T* b, T* y, int B, int Cin, int Tin, int Cout, int64_t Tout, int K,
                       int stride, int pad_left, int dilation) {
  const int mult = Cout / Cin;
  const bool parallel = static_cast<int64_t>(B) * Cout * Tout * K > kParallelWork;
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int n = 0; n < B; ++n)
    for (int o = 0; o < Cout; ++o) {
      const T* xc = x + (static_cast<int64_t>(n) * Cin + o / mult) * Tin;
      T* yr = y + (static_cast<int64_t>(n) * Cout + o) * Tout;
      const T bias = b ? b[o] : T(0);
      for (int64_t t = 0; t < Tout; ++t) yr[t] = bias;
      for (int k = 0; k < K; ++k) {
        const T wk = w[static_cast<int64_t>(o) * K + k];
        const int64_t offset = static_cast<int64_t>(k) * dilation - pad_left;
        int64_t lo, hi;
        valid_columns(offset, stride, Tin, Tout, &lo, &hi);
        if (stride == 1) {
          for (int64_t j = lo; j < hi; ++j) yr[j] += wk * xc[offset + j];
        } else {
          for (int64_t j = lo; j < hi; ++j) yr[j] += wk * xc[offset + j * stride];
        }
      }
    }
}

template <typename T>
void depthwise_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, int B, int Cin, int Tin, int Cout,
                        int64_t Tout, int K, int stride, int pad_left, int dilation) {
  const int mult = Cout / Cin;
  const bool parallel = static_cast<int64_t>(B) * Cout * Tout * K > kParallelWork;
  if (dx) {
    // Each thread owns one (batch, input channel) row of dx and loops over that channel's outputs.
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
    for (int n = 0; n < B; ++n)
      for (int c = 0; c < Cin; ++c) {
        T* dxc = dx + (static_cast<int64_t>(n) * Cin + c) * Tin;
        for (int o = c * mult; o < (c + 1) * mult; ++o) {
          const T* dyr = dy + (static_cast<int64_t>(n) * Cout + o) * Tout;
          for (int k = 0; k < K; ++k) {
            const T wk = w[static_cast<int64_t>(o) * K + k];
            const int64_t offset = static_cast<int64_t>(k) * dilation - pad_left;
            int64_t lo, hi;
            valid_columns(offset, stride, Tin, Tout, &lo, &hi);
            for (int64_t j = lo; j < hi; ++j) dxc[offset + j * stride] += wk * dyr[j];
          }
        }
      }
  }
  if (dw) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int o = 0; o < Cout; ++o) {
      for (int k = 0; k < K; ++k) {
        const int64_t offset = static_cast<int64_t>(k) * dilation - pad_left;
        int64_t lo, hi;
        valid_columns(offset, stride, Tin, Tout, &lo, &hi);
        double sum = 0.0;
        for (int n = 0; n < B; ++n) {
          const T* xc = x + (static_cast<int64_t>(n) * Cin + o / mult) * Tin;
          const T* dyr = dy + (static_cast<int64_t>(n) * Cout + o) * Tout;
          for (int64_t j = lo; j < hi; ++j) sum += static_cast<double>(dyr[j]) * xc[offset + j * stride];
        }
        dw[static_cast<int64_t>(o) * K + k] += static_cast<T>(sum);
      }
    }
  }
}

// Stride-1 convolutions run as K shifted products, one per kernel tap k, each reading x in place:
//   y[:, j] += W_k x[:, j + k*dilation - pad_left]            (forward)
//   dx[:, j + k*dilation - pad_left] += W_k^T dy[:, j]        (backward, data)
//   dW_k += dy[:, j] x[:, j + k*dilation - pad_left]^T       (backward, weights)
// over the columns j whose input lies inside the signal (zero padding contributes nothing). Against im2col
// this saves the K-fold copy of x (and col2im's scatter of it back), the zeroing of the column buffer and
// its memory traffic; the gemms see the same total work. W_k is the [Cout, Cin/groups] slice of tap k,
// repacked from w's [Cout, Cin/groups, K] layout (a copy of the weights, small next to the activations).
template <typename T>
std::vector<T> weights_by_tap(const T* w, int Cout, int cin_g, int K) {
  std::vector<T> taps(static_cast<size_t>(K) * Cout * cin_g);
  T* out = taps.data();
  // Rows of the output in parallel, each written contiguously (the reads stride by K).
#pragma omp parallel for collapse(2) schedule(static) if (static_cast<int64_t>(K) * Cout * cin_g >= kParallelWork)
  for (int k = 0; k < K; ++k)
    for (int o = 0; o < Cout; ++o) {
      T* row = out + (static_cast<size_t>(k) * Cout + o) * cin_g;
      const T* src = w + static_cast<int64_t>(o) * cin_g * K + k;
      for (int c = 0; c < cin_g; ++c) row[c] = src[static_cast<int64_t>(c) * K];
    }
  return taps;
}

Conv1dCpuPath g_cpu_path = Conv1dCpuPath::Auto;

// Runs body(item, thread) for item in [0, count): across the OpenMP threads (schedule static: each thread a fixed,
// contiguous share, `thread` its index) when `parallel`, else on the caller's thread with thread 0. The serial
// case opens no parallel region at all: a gemm inside even an inactive region (if(false)) would run its threads
// as a nested team, which libgomp creates afresh for every call instead of reusing its pool.
template <typename F>
void for_each_item(int64_t count, bool parallel, F body) {
  if (parallel) {
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < count; ++item) body(item, omp_get_thread_num());
  } else {
    for (int64_t item = 0; item < count; ++item) body(item, 0);
  }
}

// Element `at` of per-thread buffers of `size` elements each, laid end to end, summed in thread order.
template <typename T>
T sum_over_threads(const std::vector<T>& buffers, size_t size, int threads, size_t at) {
  T sum = buffers[at];
  for (int t = 1; t < threads; ++t) sum += buffers[size * t + at];
  return sum;
}

// Whether the tap products of a batch run one sample per thread, each gemm then on its caller's thread, rather
// than one sample after the other with each gemm threaded inside OpenBLAS: faster by 5-30% at the decoder's
// shapes on 2 cores, since no gemm waits for its threads to meet. Needs a sample for every thread.
bool samples_in_parallel(int B, int64_t work_per_sample) {
  const int threads = omp_get_max_threads();
  return threads > 1 && B >= threads && !omp_in_parallel() && work_per_sample >= kParallelWork;
}

// Taps for stride 1 where each product still has a useful inner dimension; im2col otherwise (strided
// convolutions, and very few input channels per group, where one gemm over Cin*K beats K thin ones).
bool uses_taps(int stride, int cin_g) {
  switch (g_cpu_path) {
    case Conv1dCpuPath::Taps: return stride == 1;
    case Conv1dCpuPath::Im2col: return false;
    default: return stride == 1 && cin_g >= kMinTapChannels;
  }
}

// Whether oneDNN is asked first: float32 (all it has on CPUs) unless one of our paths is forced. It declines
// geometries its JIT kernels do not take, and our paths run those.
template <typename T>
bool tries_onednn() {
  return std::is_same_v<T, float> && g_cpu_path == Conv1dCpuPath::Auto;
}

detail::Conv1dGeometry geometry(int B, int Cin, int Tin, int Cout, int K, int stride, int pad_left, int pad_right,
                                int dilation, int groups, int64_t Tout) {
  return {B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups, Tout};
}

bool is_pointwise(int K, int stride, int pad_left, int pad_right) {
  return K == 1 && stride == 1 && pad_left == 0 && pad_right == 0;
}

}  // namespace

int64_t conv1d_checked_output_length(const char* who, int B, int Cin, int Tin, int Cout, int K, int stride,
                                     int pad_left, int pad_right, int dilation, int groups) {
  VC_CHECK(B >= 0 && Cin > 0 && Tin >= 0 && Cout > 0 && K > 0,
           who << ": invalid sizes B=" << B << " Cin=" << Cin << " Tin=" << Tin << " Cout=" << Cout << " K=" << K);
  VC_CHECK(stride >= 1 && dilation >= 1 && pad_left >= 0 && pad_right >= 0,
           who << ": invalid stride " << stride << ", dilation " << dilation << " or padding (" << pad_left << ", "
               << pad_right << ")");
  VC_CHECK(groups >= 1 && Cin % groups == 0 && Cout % groups == 0,
           who << ": groups " << groups << " must divide Cin " << Cin << " and Cout " << Cout);
  const int64_t Tout = conv1d_output_length(Tin, K, stride, pad_left, pad_right, dilation);
  VC_CHECK(Tout >= 1, who << ": input length " << Tin << " with padding (" << pad_left << ", " << pad_right
                          << ") is shorter than the dilated kernel " << dilation * (K - 1) + 1);
  return Tout;
}

template <typename T>
void conv1d_forward_cpu(const T* x, const T* w, const T* b, T* y, int B, int Cin, int Tin, int Cout, int K, int stride,
                        int pad_left, int pad_right, int dilation, int groups) {
  const int64_t Tout =
      conv1d_checked_output_length("conv1d", B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups);
  const int cin_g = Cin / groups, cout_g = Cout / groups;
  if (cin_g == 1) {
    depthwise_forward(x, w, b, y, B, Cin, Tin, Cout, Tout, K, stride, pad_left, dilation);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (tries_onednn<T>() && !is_pointwise(K, stride, pad_left, pad_right) &&
        detail::onednn_conv1d_forward(geometry(B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups, Tout),
                                      x, w, b, y))
      return;
  }
  fill_bias(y, b, B, Cout, Tout);
  const int64_t rows = static_cast<int64_t>(cin_g) * K;
  const int64_t w_group = static_cast<int64_t>(cout_g) * rows;
  if (is_pointwise(K, stride, pad_left, pad_right)) {
    for (int n = 0; n < B; ++n)
      for (int g = 0; g < groups; ++g)
        gemm(false, false, cout_g, static_cast<int>(Tout), cin_g, T(1), w + g * w_group, cin_g,
             x + (static_cast<int64_t>(n) * Cin + static_cast<int64_t>(g) * cin_g) * Tin, Tin, T(1),
             y + (static_cast<int64_t>(n) * Cout + static_cast<int64_t>(g) * cout_g) * Tout, static_cast<int>(Tout));
    return;
  }
  if (uses_taps(stride, cin_g)) {
    const std::vector<T> taps = weights_by_tap(w, Cout, cin_g, K);
    // Work items of (sample, column span), one thread each: the samples when there is one per thread; with
    // fewer samples (synthesis: one), each sample's columns cut into one span per thread, which beats one
    // threaded gemm per tap (32 channels, K 11, 32000 columns: 143 against 57 GFLOP/s on 2 cores).
    const int64_t work = static_cast<int64_t>(Cout) * Tout * cin_g * K;
    const int threads = omp_get_max_threads();
    const bool by_sample = samples_in_parallel(B, work);
    const bool by_span = !by_sample && threads > 1 && !omp_in_parallel() && work * B >= kParallelWork * threads &&
                         Tout >= kMinSpanColumns * threads;
    const int spans = by_span ? threads : 1;
    const int64_t span = (Tout + spans - 1) / spans;
    for_each_item(static_cast<int64_t>(B) * spans, by_sample || by_span, [&](int64_t item, int) {
      const int n = static_cast<int>(item / spans);
      const int64_t t0 = (item % spans) * span, t1 = std::min(Tout, t0 + span);
      for (int g = 0; g < groups; ++g) {
        const T* xg = x + (static_cast<int64_t>(n) * Cin + static_cast<int64_t>(g) * cin_g) * Tin;
        T* yg = y + (static_cast<int64_t>(n) * Cout + static_cast<int64_t>(g) * cout_g) * Tout;
        for (int k = 0; k < K; ++k) {
          const int64_t offset = static_cast<int64_t>(k) * dilation - pad_left;
          int64_t lo, hi;
          valid_columns(offset, 1, Tin, Tout, &lo, &hi);
          lo = std::max(lo, t0);
          hi = std::min(hi, t1);
          if (hi <= lo) continue;
          const T* wk = taps.data() + (static_cast<int64_t>(k) * Cout + static_cast<int64_t>(g) * cout_g) * cin_g;
          gemm(false, false, cout_g, static_cast<int>(hi - lo), cin_g, T(1), wk, cin_g, xg + offset + lo, Tin, T(1),
               yg + lo, static_cast<int>(Tout));
        }
      }
    });
    return;
  }
  // Samples in parallel as for the taps, each thread with its own column buffer.
  const bool by_sample = samples_in_parallel(B, static_cast<int64_t>(Cout) * Tout * rows);
  const int threads = by_sample ? omp_get_max_threads() : 1;
  const int64_t tile = tile_columns(rows, Tout, threads);
  std::vector<T> col(static_cast<size_t>(rows * tile) * threads);
  for_each_item(B, by_sample, [&](int64_t n, int thread) {
    for (int g = 0; g < groups; ++g) {
      T* thread_col = col.data() + static_cast<size_t>(rows * tile) * thread;
      const T* xg = x + (static_cast<int64_t>(n) * Cin + static_cast<int64_t>(g) * cin_g) * Tin;
      T* yg = y + (static_cast<int64_t>(n) * Cout + static_cast<int64_t>(g) * cout_g) * Tout;
      for (int64_t t0 = 0; t0 < Tout; t0 += tile) {
        const int64_t cols = std::min(tile, Tout - t0);
        im2col(xg, cin_g, Tin, K, stride, pad_left, dilation, t0, cols, thread_col);
        gemm(false, false, cout_g, static_cast<int>(cols), static_cast<int>(rows), T(1), w + g * w_group,
             static_cast<int>(rows), thread_col, static_cast<int>(cols), T(1), yg + t0, static_cast<int>(Tout));
      }
    }
  });
}

template <typename T>
void conv1d_backward_cpu(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int B, int Cin, int Tin, int Cout,
                         int K, int stride, int pad_left, int pad_right, int dilation, int groups) {
  const int64_t Tout =
      conv1d_checked_output_length("conv1d backward", B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation,
                                   groups);
  if (db) bias_backward(dy, db, B, Cout, Tout);
  if (!dx && !dw) return;
  const int cin_g = Cin / groups, cout_g = Cout / groups;
  if (cin_g == 1) {
    depthwise_backward(x, w, dy, dx, dw, B, Cin, Tin, Cout, Tout, K, stride, pad_left, dilation);
    return;
  }
  const int64_t rows = static_cast<int64_t>(cin_g) * K;
  const int64_t w_group = static_cast<int64_t>(cout_g) * rows;
  const int tout = static_cast<int>(Tout);
  if (is_pointwise(K, stride, pad_left, pad_right)) {
    for (int n = 0; n < B; ++n)
      for (int g = 0; g < groups; ++g) {
        const int64_t x_off = (static_cast<int64_t>(n) * Cin + static_cast<int64_t>(g) * cin_g) * Tin;
        const T* dyg = dy + (static_cast<int64_t>(n) * Cout + static_cast<int64_t>(g) * cout_g) * Tout;
        // dw_g [cout_g, cin_g] += dy_g [cout_g, T] x_g^T;  dx_g [cin_g, T] += w_g^T dy_g.
        if (dw) gemm(false, true, cout_g, cin_g, tout, T(1), dyg, tout, x + x_off, Tin, T(1), dw + g * w_group, cin_g);
        if (dx) gemm(true, false, cin_g, tout, cout_g, T(1), w + g * w_group, cin_g, dyg, tout, T(1), dx + x_off, Tin);
      }
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (tries_onednn<T>() && detail::onednn_conv1d_backward(geometry(B, Cin, Tin, Cout, K, stride, pad_left,
                                                                     pad_right, dilation, groups, Tout),
                                                            x, w, dy, dx, dw))
      return;
  }
  if (uses_taps(stride, cin_g)) {
    // dw accumulates per tap in [K, Cout, cin_g] and is added into w's layout once at the end. With the
    // samples in parallel, each thread sums its own samples (a fixed, contiguous share: schedule static) into
    // its own buffer, and the buffers are added in thread order: the same result for the same thread count.
    const bool by_sample = samples_in_parallel(B, static_cast<int64_t>(Cout) * Tout * cin_g * K);
    const int threads = by_sample ? omp_get_max_threads() : 1;
    const size_t tap_size = static_cast<size_t>(K) * Cout * cin_g;
    const std::vector<T> taps = dx ? weights_by_tap(w, Cout, cin_g, K) : std::vector<T>();
    std::vector<T> dw_taps(dw ? tap_size * threads : 0, T(0));
    for_each_item(B, by_sample, [&](int64_t n, int thread) {
      for (int g = 0; g < groups; ++g) {
        T* thread_dw = dw ? dw_taps.data() + tap_size * thread : nullptr;
        const int64_t x_off = (static_cast<int64_t>(n) * Cin + static_cast<int64_t>(g) * cin_g) * Tin;
        const T* dyg = dy + (static_cast<int64_t>(n) * Cout + static_cast<int64_t>(g) * cout_g) * Tout;
        for (int k = 0; k < K; ++k) {
          const int64_t offset = static_cast<int64_t>(k) * dilation - pad_left;
          int64_t lo, hi;
          valid_columns(offset, 1, Tin, Tout, &lo, &hi);
          if (hi <= lo) continue;
          const int cols = static_cast<int>(hi - lo);
          const int64_t tap_off = (static_cast<int64_t>(k) * Cout + static_cast<int64_t>(g) * cout_g) * cin_g;
          if (dw)
            gemm(false, true, cout_g, cin_g, cols, T(1), dyg + lo, tout, x + x_off + offset + lo, Tin, T(1),
                 thread_dw + tap_off, cin_g);
          if (dx)
            gemm(true, false, cin_g, cols, cout_g, T(1), taps.data() + tap_off, cin_g, dyg + lo, tout, T(1),
                 dx + x_off + offset + lo, Tin);
        }
      }
    });
    if (dw)
      for (int o = 0; o < Cout; ++o)
        for (int c = 0; c < cin_g; ++c)
          for (int k = 0; k < K; ++k) {
            const size_t at = (static_cast<size_t>(k) * Cout + o) * cin_g + c;
            dw[(static_cast<int64_t>(o) * cin_g + c) * K + k] += sum_over_threads(dw_taps, tap_size, threads, at);
          }
    return;
  }
  // Samples in parallel as for the taps: per-thread column buffers, and per-thread dw sums added in thread order
  // (one thread accumulates straight into dw).
  const bool by_sample = samples_in_parallel(B, static_cast<int64_t>(Cout) * Tout * rows);
  const int threads = by_sample ? omp_get_max_threads() : 1;
  const int64_t tile = tile_columns(rows, Tout, threads);
  const size_t w_size = static_cast<size_t>(Cout) * rows;
  std::vector<T> col(static_cast<size_t>(rows * tile) * threads);
  std::vector<T> thread_dws(dw && threads > 1 ? w_size * threads : 0, T(0));
  for_each_item(B, by_sample, [&](int64_t n, int thread) {
    for (int g = 0; g < groups; ++g) {
      T* thread_col = col.data() + static_cast<size_t>(rows * tile) * thread;
      T* thread_dw = threads > 1 ? thread_dws.data() + w_size * thread : dw;
      const int64_t x_off = (static_cast<int64_t>(n) * Cin + static_cast<int64_t>(g) * cin_g) * Tin;
      const T* dyg = dy + (static_cast<int64_t>(n) * Cout + static_cast<int64_t>(g) * cout_g) * Tout;
      for (int64_t t0 = 0; t0 < Tout; t0 += tile) {
        const int cols = static_cast<int>(std::min(tile, Tout - t0));
        if (dw) {
          // dw_g [cout_g, rows] += dy_tile [cout_g, cols] col^T.
          im2col(x + x_off, cin_g, Tin, K, stride, pad_left, dilation, t0, cols, thread_col);
          gemm(false, true, cout_g, static_cast<int>(rows), cols, T(1), dyg + t0, tout, thread_col, cols, T(1),
               thread_dw + g * w_group, static_cast<int>(rows));
        }
        if (dx) {
          // dcol [rows, cols] = w_g^T dy_tile, then overlap-added back onto the input positions.
          gemm(true, false, static_cast<int>(rows), cols, cout_g, T(1), w + g * w_group, static_cast<int>(rows),
               dyg + t0, tout, T(0), thread_col, cols);
          col2im_add(thread_col, cin_g, Tin, K, stride, pad_left, dilation, t0, cols, dx + x_off);
        }
      }
    }
  });
  if (dw && threads > 1)
    for (size_t i = 0; i < w_size; ++i) dw[i] += sum_over_threads(thread_dws, w_size, threads, i);
}

void conv1d_set_cpu_path(Conv1dCpuPath path) { g_cpu_path = path; }

int64_t conv1d_cpu_onednn_runs() { return detail::onednn_conv1d_runs(); }

#define VITSCUDA_INSTANTIATE_CONV1D(T)                                                                               \
  template void conv1d_forward_cpu<T>(const T*, const T*, const T*, T*, int, int, int, int, int, int, int, int, int, \
                                      int);                                                                          \
  template void conv1d_backward_cpu<T>(const T*, const T*, const T*, T*, T*, T*, int, int, int, int, int, int, int,  \
                                       int, int, int);

VITSCUDA_INSTANTIATE_CONV1D(float)
VITSCUDA_INSTANTIATE_CONV1D(double)
#undef VITSCUDA_INSTANTIATE_CONV1D

}  // namespace vitscuda::kernels
