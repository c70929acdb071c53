#include "kernels/norm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/error.h"

namespace vitscuda::kernels {

namespace {

constexpr int64_t kParallelWork = 32768;
constexpr int kColumnBlock = 256;  // time columns per work item in the channel-dimension norm

void check_sizes(const char* who, int a, int b, int c, double eps) {
  VC_CHECK(a >= 0 && b >= 0 && c >= 0, who << ": negative size in (" << a << ", " << b << ", " << c << ")");
  VC_CHECK(eps >= 0.0, who << ": eps " << eps << " must be >= 0");
}

// Mean and 1/sqrt(var + eps) of the n values x[0..n).
template <typename T>
void row_moments(const T* x, int n, double eps, double* mean, double* rstd) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += x[i];
  const double m = sum / n;
  double sq = 0.0;
  for (int i = 0; i < n; ++i) {
    const double d = x[i] - m;
    sq += d * d;
  }
  *mean = m;
  *rstd = 1.0 / std::sqrt(sq / n + eps);
}

// Column statistics of a [C, T] block restricted to columns [t0, t0 + n).
template <typename T>
void column_moments(const T* x, int C, int T_len, int t0, int n, double eps, double* mean, double* rstd) {
  std::fill(mean, mean + n, 0.0);
  std::fill(rstd, rstd + n, 0.0);
  for (int c = 0; c < C; ++c) {
    const T* row = x + static_cast<int64_t>(c) * T_len + t0;
    for (int j = 0; j < n; ++j) mean[j] += row[j];
  }
  for (int j = 0; j < n; ++j) mean[j] /= C;
  for (int c = 0; c < C; ++c) {
    const T* row = x + static_cast<int64_t>(c) * T_len + t0;
    for (int j = 0; j < n; ++j) {
      const double d = row[j] - mean[j];
      rstd[j] += d * d;
    }
  }
  for (int j = 0; j < n; ++j) rstd[j] = 1.0 / std::sqrt(rstd[j] / C + eps);
}

// Adds per-thread partial parameter gradients into the shared ones.
template <typename T>
void add_partials(const std::vector<double>& part_gamma, const std::vector<double>& part_beta, T* dgamma, T* dbeta,
                  int C) {
#pragma omp critical(vitscuda_norm_param_grads)
  {
    for (int c = 0; c < C; ++c) {
      if (dgamma) dgamma[c] += static_cast<T>(part_gamma[c]);
      if (dbeta) dbeta[c] += static_cast<T>(part_beta[c]);
    }
  }
}

}  // namespace

template <typename T>
void layer_norm_forward_cpu(const T* x, const T* gamma, const T* beta, T* y, int rows, int C, double eps) {
  check_sizes("layer_norm", rows, C, 0, eps);
  if (C == 0) return;
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(rows) * C > kParallelWork)
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + static_cast<int64_t>(r) * C;
    T* yr = y + static_cast<int64_t>(r) * C;
    double mean, rstd;
    row_moments(xr, C, eps, &mean, &rstd);
    for (int c = 0; c < C; ++c) yr[c] = static_cast<T>((xr[c] - mean) * rstd * gamma[c] + beta[c]);
  }
}

template <typename T>
void layer_norm_backward_cpu(const T* x, const T* gamma, const T* dy, T* dx, T* dgamma, T* dbeta, int rows, int C,
                             double eps) {
  check_sizes("layer_norm backward", rows, C, 0, eps);
  if (C == 0) return;
#pragma omp parallel if (static_cast<int64_t>(rows) * C > kParallelWork)
  {
    std::vector<double> part_gamma(static_cast<size_t>(C), 0.0), part_beta(static_cast<size_t>(C), 0.0);
    std::vector<double> xhat(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const T* xr = x + static_cast<int64_t>(r) * C;
      const T* dyr = dy + static_cast<int64_t>(r) * C;
      double mean, rstd;
      row_moments(xr, C, eps, &mean, &rstd);
      // With g = dy * gamma: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
      double sum_g = 0.0, sum_gx = 0.0;
      for (int c = 0; c < C; ++c) {
        xhat[c] = (xr[c] - mean) * rstd;
        const double gc = static_cast<double>(dyr[c]) * gamma[c];
        sum_g += gc;
        sum_gx += gc * xhat[c];
        part_gamma[c] += static_cast<double>(dyr[c]) * xhat[c];
        part_beta[c] += dyr[c];
      }
      if (dx) {
        const double mean_g = sum_g / C, mean_gx = sum_gx / C;
        T* dxr = dx + static_cast<int64_t>(r) * C;
        for (int c = 0; c < C; ++c)
          dxr[c] += static_cast<T>(rstd * (static_cast<double>(dyr[c]) * gamma[c] - mean_g - xhat[c] * mean_gx));
      }
    }
    if (dgamma || dbeta) add_partials(part_gamma, part_beta, dgamma, dbeta, C);
  }
}

template <typename T>
void layer_norm_channels_forward_cpu(const T* x, const T* gamma, const T* beta, T* y, int B, int C, int T_len,
                                     double eps) {
  check_sizes("layer_norm_channels", B, C, T_len, eps);
  if (C == 0 || T_len == 0) return;
  const int blocks = (T_len + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel if (static_cast<int64_t>(B) * C * T_len > kParallelWork)
  {
    std::vector<double> mean(kColumnBlock), rstd(kColumnBlock);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int blk = 0; blk < blocks; ++blk) {
        const int t0 = blk * kColumnBlock, n = std::min(kColumnBlock, T_len - t0);
        const T* xb = x + static_cast<int64_t>(b) * C * T_len;
        T* yb = y + static_cast<int64_t>(b) * C * T_len;
        column_moments(xb, C, T_len, t0, n, eps, mean.data(), rstd.data());
        for (int c = 0; c < C; ++c) {
          const T* xr = xb + static_cast<int64_t>(c) * T_len + t0;
          T* yr = yb + static_cast<int64_t>(c) * T_len + t0;
          const double gc = gamma[c], bc = beta[c];
          for (int j = 0; j < n; ++j) yr[j] = static_cast<T>((xr[j] - mean[j]) * rstd[j] * gc + bc);
        }
      }
  }
}

template <typename T>
void layer_norm_channels_backward_cpu(const T* x, const T* gamma, const T* dy, T* dx, T* dgamma, T* dbeta, int B, int C,
                                      int T_len, double eps) {
  check_sizes("layer_norm_channels backward", B, C, T_len, eps);
  if (C == 0 || T_len == 0) return;
  const int blocks = (T_len + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel if (static_cast<int64_t>(B) * C * T_len > kParallelWork)
  {
    std::vector<double> part_gamma(static_cast<size_t>(C), 0.0), part_beta(static_cast<size_t>(C), 0.0);
    std::vector<double> mean(kColumnBlock), rstd(kColumnBlock), mean_g(kColumnBlock), mean_gx(kColumnBlock);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int blk = 0; blk < blocks; ++blk) {
        const int t0 = blk * kColumnBlock, n = std::min(kColumnBlock, T_len - t0);
        const int64_t batch_offset = static_cast<int64_t>(b) * C * T_len;
        const int64_t base = batch_offset + t0;
        column_moments(x + batch_offset, C, T_len, t0, n, eps, mean.data(), rstd.data());
        std::fill(mean_g.begin(), mean_g.end(), 0.0);
        std::fill(mean_gx.begin(), mean_gx.end(), 0.0);
        for (int c = 0; c < C; ++c) {
          const T* xr = x + base + static_cast<int64_t>(c) * T_len;
          const T* dyr = dy + base + static_cast<int64_t>(c) * T_len;
          const double gc = gamma[c];
          double sum_dy_xhat = 0.0, sum_dy = 0.0;
          for (int j = 0; j < n; ++j) {
            const double xhat = (xr[j] - mean[j]) * rstd[j];
            const double d = dyr[j];
            mean_g[j] += d * gc;
            mean_gx[j] += d * gc * xhat;
            sum_dy_xhat += d * xhat;
            sum_dy += d;
          }
          part_gamma[c] += sum_dy_xhat;
          part_beta[c] += sum_dy;
        }
        if (!dx) continue;
        for (int j = 0; j < n; ++j) {
          mean_g[j] /= C;
          mean_gx[j] /= C;
        }
        for (int c = 0; c < C; ++c) {
          const T* xr = x + base + static_cast<int64_t>(c) * T_len;
          const T* dyr = dy + base + static_cast<int64_t>(c) * T_len;
          T* dxr = dx + base + static_cast<int64_t>(c) * T_len;
          const double gc = gamma[c];
          for (int j = 0; j < n; ++j) {
            const double xhat = (xr[j] - mean[j]) * rstd[j];
            dxr[j] += static_cast<T>(rstd[j] * (dyr[j] * gc - mean_g[j] - xhat * mean_gx[j]));
          }
        }
      }
    if (dgamma || dbeta) add_partials(part_gamma, part_beta, dgamma, dbeta, C);
  }
}

template <typename T>
void weight_norm_forward_cpu(const T* g, const T* v, T* w, int rows, int n) {
  VC_CHECK(rows >= 0 && n >= 0, "weight_norm: negative size (" << rows << ", " << n << ")");
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(rows) * n > kParallelWork)
  for (int o = 0; o < rows; ++o) {
    const T* vr = v + static_cast<int64_t>(o) * n;
    T* wr = w + static_cast<int64_t>(o) * n;
    double sq = 0.0;
    for (int j = 0; j < n; ++j) sq += static_cast<double>(vr[j]) * vr[j];
    // As torch: the norm is rounded to T, then v * (g / norm) with the factor formed in T.
    const T norm = static_cast<T>(std::sqrt(sq));
    const T factor = g[o] / norm;
    for (int j = 0; j < n; ++j) wr[j] = vr[j] * factor;
  }
}

template <typename T>
void weight_norm_backward_cpu(const T* g, const T* v, const T* dw, T* dg, T* dv, int rows, int n) {
  VC_CHECK(rows >= 0 && n >= 0, "weight_norm backward: negative size (" << rows << ", " << n << ")");
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(rows) * n > kParallelWork)
  for (int o = 0; o < rows; ++o) {
    const T* vr = v + static_cast<int64_t>(o) * n;
    const T* dwr = dw + static_cast<int64_t>(o) * n;
    double sq = 0.0, dot = 0.0;
    for (int j = 0; j < n; ++j) {
      sq += static_cast<double>(vr[j]) * vr[j];
      dot += static_cast<double>(dwr[j]) * vr[j];
    }
    const double norm = std::sqrt(sq);
    if (dg) dg[o] += static_cast<T>(dot / norm);
    if (dv) {
      const double scale = g[o] / norm, proj = dot / sq;
      T* dvr = dv + static_cast<int64_t>(o) * n;
      for (int j = 0; j < n; ++j) dvr[j] += static_cast<T>(scale * (dwr[j] - vr[j] * proj));
    }
  }
}

#define VITSCUDA_INSTANTIATE_NORM(T)                                                                                  \
  template void layer_norm_forward_cpu<T>(const T*, const T*, const T*, T*, int, int, double);                        \
  template void layer_norm_backward_cpu<T>(const T*, const T*, const T*, T*, T*, T*, int, int, double);               \
  template void layer_norm_channels_forward_cpu<T>(const T*, const T*, const T*, T*, int, int, int, double);          \
  template void layer_norm_channels_backward_cpu<T>(const T*, const T*, const T*, T*, T*, T*, int, int, int, double); \
  template void weight_norm_forward_cpu<T>(const T*, const T*, T*, int, int);                                         \
  template void weight_norm_backward_cpu<T>(const T*, const T*, const T*, T*, T*, int, int);

VITSCUDA_INSTANTIATE_NORM(float)
VITSCUDA_INSTANTIATE_NORM(double)
#undef VITSCUDA_INSTANTIATE_NORM

}  // namespace vitscuda::kernels
