#include "kernels/spline.h"

#include <cmath>
#include <vector>

#include "kernels/error.h"

namespace vitscuda::kernels {

namespace {
template <typename T>
T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}
}  // namespace

template <typename T>
void rational_quadratic_spline_forward_cpu(const T* inputs, const T* uw, const T* uh, const T* ud, T* outputs,
                                           T* log_abs_det, int64_t n, int bins, bool reverse, double tail_bound) {
  const T min_w = T(1e-3), min_h = T(1e-3), min_d = T(1e-3);
  const T bound = static_cast<T>(tail_bound);
  VC_CHECK(min_w * bins <= T(1) && min_h * bins <= T(1), "spline: too many bins (" << bins << ") for the minimum width");
  // Derivatives at the outer knots: chosen so min_d + softplus(c) = 1 (the linear tails' slope).
  const T edge = static_cast<T>(std::log(std::exp(1.0 - 1e-3) - 1.0));
  bool invalid = false;
#pragma omp parallel if (n > 4096)
  {
    std::vector<T> w(bins), cw(bins + 1), h(bins), ch(bins + 1), d(bins + 1);
#pragma omp for
    for (int64_t e = 0; e < n; ++e) {
      const T x = inputs[e];
      if (!(x >= -bound && x <= bound)) {
        outputs[e] = x;
        log_abs_det[e] = T(0);
        continue;
      }
      auto knots = [&](const T* u, T min_size, std::vector<T>& size, std::vector<T>& cum) {
        T m = u[0];
        for (int i = 1; i < bins; ++i) m = std::max(m, u[i]);
        T s = 0;
        for (int i = 0; i < bins; ++i) s += (size[i] = std::exp(u[i] - m));
        for (int i = 0; i < bins; ++i) size[i] = min_size + (T(1) - min_size * bins) * (size[i] / s);
        cum[0] = 0;
        for (int i = 0; i < bins; ++i) cum[i + 1] = cum[i] + size[i];
        for (int i = 0; i <= bins; ++i) cum[i] = (bound + bound) * cum[i] - bound;
        cum[0] = -bound;
        cum[bins] = bound;
        for (int i = 0; i < bins; ++i) size[i] = cum[i + 1] - cum[i];
      };
      knots(uw + e * bins, min_w, w, cw);
      knots(uh + e * bins, min_h, h, ch);
      d[0] = min_d + softplus(edge);
      d[bins] = d[0];
      for (int i = 1; i < bins; ++i) d[i] = min_d + softplus(ud[e * (bins - 1) + i - 1]);
      // Bin search as transformers does it: count knots <= x, with the last knot nudged up by 1e-6.
      const std::vector<T>& loc = reverse ? ch : cw;
      int idx = -1;
      for (int i = 0; i <= bins; ++i) {
        const T l = i == bins ? loc[i] + T(1e-6) : loc[i];
        if (x >= l) ++idx;
      }
      idx = std::min(std::max(idx, 0), bins - 1);
      const T in_cw = cw[idx], in_w = w[idx], in_ch = ch[idx], in_h = h[idx];
      const T delta = in_h / in_w;
      const T d0 = d[idx], d1 = d[idx + 1];
      const T i1 = d0 + d1 - 2 * delta;
      if (!reverse) {
        const T theta = (x - in_cw) / in_w;
        const T tt = theta * (T(1) - theta);
        const T num = in_h * (delta * theta * theta + d0 * tt);
        const T den = delta + i1 * tt;
        outputs[e] = in_ch + num / den;
        const T dnum = delta * delta * (d1 * theta * theta + 2 * delta * tt + d0 * (T(1) - theta) * (T(1) - theta));
        log_abs_det[e] = std::log(dnum) - 2 * std::log(den);
      } else {
        const T i2 = x - in_ch;
        const T i3 = i2 * i1;
        const T a = in_h * (delta - d0) + i3;
        const T b = in_h * d0 - i3;
        const T c = -delta * i2;
        const T disc = b * b - 4 * a * c;
        if (!(disc >= T(0))) {
#pragma omp atomic write
          invalid = true;
        }
        const T root = (2 * c) / (-b - std::sqrt(disc));
        outputs[e] = root * in_w + in_cw;
        const T tt = root * (T(1) - root);
        const T den = delta + i1 * tt;
        const T dnum = delta * delta * (d1 * root * root + 2 * delta * tt + d0 * (T(1) - root) * (T(1) - root));
        log_abs_det[e] = -(std::log(dnum) - 2 * std::log(den));
      }
    }
  }
  VC_CHECK(!invalid, "spline: negative discriminant (invalid spline parameters)");
}

template void rational_quadratic_spline_forward_cpu<float>(const float*, const float*, const float*, const float*,
                                                           float*, float*, int64_t, int, bool, double);
template void rational_quadratic_spline_forward_cpu<double>(const double*, const double*, const double*,
                                                            const double*, double*, double*, int64_t, int, bool,
                                                            double);

}  // namespace vitscuda::kernels
