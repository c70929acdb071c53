#include "kernels/spline.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/error.h"

namespace vitscuda::kernels {

namespace {

constexpr double kMinBinWidth = 1e-3, kMinBinHeight = 1e-3, kMinDerivative = 1e-3;
constexpr int64_t kParallelMin = 4096;

template <typename T>
T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));  // torch: beta 1, threshold 20
}
template <typename T>
T softplus_grad(T x) {
  return x > T(20) ? T(1) : T(1) / (T(1) + std::exp(-x));
}

// Forward-mode derivatives with respect to the seven scalars one bin's formula reads
// (input, cumwidth, width, cumheight, height, left and right derivative): the backward runs
// the forward's exact operations on these, so it differentiates what the forward computes,
// quadratic-formula root included.
constexpr int kLocals = 7;
enum Local { kX, kCumWidth, kWidth, kCumHeight, kHeight, kDeriv0, kDeriv1 };

template <typename T>
struct Dual {
  T v = 0;
  T d[kLocals] = {};
  Dual() = default;
  Dual(T value) : v(value) {}  // a constant
  static Dual variable(T value, int index) {
    Dual r(value);
    r.d[index] = T(1);
    return r;
  }
};
template <typename T>
Dual<T> operator+(const Dual<T>& a, const Dual<T>& b) {
  Dual<T> r(a.v + b.v);
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] + b.d[i];
  return r;
}
template <typename T>
Dual<T> operator-(const Dual<T>& a, const Dual<T>& b) {
  Dual<T> r(a.v - b.v);
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] - b.d[i];
  return r;
}
template <typename T>
Dual<T> operator-(const Dual<T>& a) {
  Dual<T> r(-a.v);
  for (int i = 0; i < kLocals; ++i) r.d[i] = -a.d[i];
  return r;
}
template <typename T>
Dual<T> operator*(const Dual<T>& a, const Dual<T>& b) {
  Dual<T> r(a.v * b.v);
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] * b.v + a.v * b.d[i];
  return r;
}
template <typename T>
Dual<T> operator/(const Dual<T>& a, const Dual<T>& b) {
  Dual<T> r(a.v / b.v);
  for (int i = 0; i < kLocals; ++i) r.d[i] = (a.d[i] - r.v * b.d[i]) / b.v;
  return r;
}
template <typename T>
Dual<T> sqrt(const Dual<T>& a) {
  Dual<T> r(std::sqrt(a.v));
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] / (T(2) * r.v);
  return r;
}
template <typename T>
Dual<T> log(const Dual<T>& a) {
  Dual<T> r(std::log(a.v));
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] / a.v;
  return r;
}
template <typename T>
T value_of(const T& x) {
  return x;
}
template <typename T>
T value_of(const Dual<T>& x) {
  return x.v;
}

// One bin of _rational_quadratic_spline, operation for operation. S is T or Dual<T>; C is T.
// Returns false on a negative (or NaN) discriminant in reverse.
template <typename C, typename S>
bool evaluate_bin(const S& x, const S& cumwidth, const S& width, const S& cumheight, const S& height, const S& deriv0,
                  const S& deriv1, bool reverse, S& y, S& log_abs_det) {
  using std::log;
  using std::sqrt;
  const S delta = height / width;
  const S i1 = deriv0 + deriv1 - S(C(2)) * delta;
  if (!reverse) {
    const S theta = (x - cumwidth) / width;
    const S tt = theta * (S(C(1)) - theta);
    const S numerator = height * (delta * (theta * theta) + deriv0 * tt);
    const S denominator = delta + i1 * tt;
    y = cumheight + numerator / denominator;
    const S one_minus = S(C(1)) - theta;
    const S dnum = (delta * delta) * (deriv1 * (theta * theta) + S(C(2)) * delta * tt + deriv0 * (one_minus * one_minus));
    log_abs_det = log(dnum) - S(C(2)) * log(denominator);
    return true;
  }
  const S i2 = x - cumheight;
  const S i3 = i2 * i1;
  const S a = height * (delta - deriv0) + i3;
  const S b = height * deriv0 - i3;
  const S c = -delta * i2;
  const S disc = b * b - S(C(4)) * a * c;
  const bool valid = value_of(disc) >= C(0);
  const S root = (S(C(2)) * c) / (-b - sqrt(disc));
  y = root * width + cumwidth;
  const S tt = root * (S(C(1)) - root);
  const S denominator = delta + i1 * tt;
  const S one_minus = S(C(1)) - root;
  const S dnum = (delta * delta) * (deriv1 * (root * root) + S(C(2)) * delta * tt + deriv0 * (one_minus * one_minus));
  log_abs_det = -(log(dnum) - S(C(2)) * log(denominator));
  return valid;
}

// One element's knots, built as transformers builds them. Buffers are reused across elements.
template <typename T>
struct Spline {
  int bins;
  T bound;
  std::vector<T> soft_w, soft_h;      // softmax of the unnormalised widths / heights [bins]
  std::vector<T> cumw, cumh;          // knots [bins + 1]
  std::vector<T> width, height;       // bin sizes [bins]
  std::vector<T> deriv;               // derivatives at the knots [bins + 1]
  int bin = 0;

  Spline(int bins_, T bound_)
      : bins(bins_),
        bound(bound_),
        soft_w(bins_),
        soft_h(bins_),
        cumw(bins_ + 1),
        cumh(bins_ + 1),
        width(bins_),
        height(bins_),
        deriv(bins_ + 1),
        g_soft(bins_) {}

  // 1 - min_size * bins, computed as transformers does (in double, then used as a T scalar).
  T free_fraction(double min_size) const { return static_cast<T>(1.0 - min_size * bins); }

  void knots(const T* u, double min_size, std::vector<T>& soft, std::vector<T>& cum, std::vector<T>& size) const {
    T m = u[0];
    for (int i = 1; i < bins; ++i) m = std::max(m, u[i]);
    T s = 0;
    for (int i = 0; i < bins; ++i) s += (soft[i] = std::exp(u[i] - m));
    const T inv = T(1) / s;  // torch's softmax multiplies by the reciprocal
    for (int i = 0; i < bins; ++i) soft[i] *= inv;
    // torch's CPU cumsum accumulates in double and rounds each partial sum to T.
    double acc = 0;
    cum[0] = 0;
    for (int i = 0; i < bins; ++i) {
      acc += static_cast<double>(static_cast<T>(min_size) + free_fraction(min_size) * soft[i]);
      cum[i + 1] = static_cast<T>(acc);
    }
    for (int i = 0; i <= bins; ++i) cum[i] = (bound + bound) * cum[i] - bound;
    cum[0] = -bound;
    cum[bins] = bound;
    for (int i = 0; i < bins; ++i) size[i] = cum[i + 1] - cum[i];
  }

  // Builds element e's knots and finds the bin of x (x inside the bound).
  void build(const T* uw, const T* uh, const T* ud, T x, bool reverse) {
    knots(uw, kMinBinWidth, soft_w, cumw, width);
    knots(uh, kMinBinHeight, soft_h, cumh, height);
    // The outer knots' unnormalised derivative is log(e^(1 - min) - 1): min + softplus(it) = 1,
    // the slope of the identity tails.
    const T edge = static_cast<T>(std::log(std::exp(1.0 - kMinDerivative) - 1.0));
    deriv[0] = T(kMinDerivative) + softplus(edge);
    deriv[bins] = deriv[0];
    for (int i = 1; i < bins; ++i) deriv[i] = T(kMinDerivative) + softplus(ud[i - 1]);
    // torch.searchsorted as transformers writes it: count the knots <= x, with the last knot
    // nudged up by 1e-6 so that x == bound falls into the last bin.
    const std::vector<T>& loc = reverse ? cumh : cumw;
    int count = 0;
    for (int i = 0; i <= bins; ++i) {
      const T l = i == bins ? loc[i] + T(1e-6) : loc[i];
      if (x >= l) ++count;
    }
    bin = std::min(std::max(count - 1, 0), bins - 1);
  }

  // Accumulates into du [bins] the gradient with respect to the unnormalised sizes, given the
  // gradients of knots `bin` and `bin + 1` (no other knot is read): back through the pinned
  // ends, the cumulative sum, the min-size map and the softmax `soft`.
  void knots_backward(const std::vector<T>& soft, double min_size, T g_knot0, T g_knot1, T* du) {
    // knot_i = 2B * cumsum_i - B for 0 < i < bins; knots 0 and bins are pinned to -B and B.
    auto g_cum = [&](int i) -> T {
      if (i <= 0 || i >= bins) return T(0);
      return (bound + bound) * (i == bin ? g_knot0 : i == bin + 1 ? g_knot1 : T(0));
    };
    // cumsum_i = sum_{j < i} size_j, so dL/dsize_j = sum_{i > j} dL/dcumsum_i.
    const T scale = free_fraction(min_size);
    T suffix = 0, dot = 0;
    for (int j = bins - 1; j >= 0; --j) {
      suffix += g_cum(j + 1);
      g_soft[j] = scale * suffix;
      dot += g_soft[j] * soft[j];
    }
    for (int j = 0; j < bins; ++j) du[j] += soft[j] * (g_soft[j] - dot);
  }

 private:
  std::vector<T> g_soft;
};

bool outside(double x, double bound) { return !(x >= -bound && x <= bound); }

}  // namespace

template <typename T>
void rational_quadratic_spline_forward_cpu(const T* inputs, const T* uw, const T* uh, const T* ud, T* outputs,
                                           T* log_abs_det, int64_t n, int bins, bool reverse, double tail_bound) {
  VC_CHECK(bins >= 1, "rational_quadratic_spline: need at least one bin, got " << bins);
  VC_CHECK(kMinBinWidth * bins <= 1.0 && kMinBinHeight * bins <= 1.0,
           "rational_quadratic_spline: minimal bin size 1e-3 too large for " << bins << " bins");
  const T bound = static_cast<T>(tail_bound);
  int64_t first_invalid = std::numeric_limits<int64_t>::max();
#pragma omp parallel if (n > kParallelMin)
  {
    Spline<T> sp(bins, bound);
#pragma omp for reduction(min : first_invalid)
    for (int64_t e = 0; e < n; ++e) {
      const T x = inputs[e];
      if (outside(x, tail_bound)) {
        outputs[e] = x;
        log_abs_det[e] = T(0);
        continue;
      }
      sp.build(uw + e * bins, uh + e * bins, ud + e * (bins - 1), x, reverse);
      const int k = sp.bin;
      T y, lad;
      const bool ok = evaluate_bin<T, T>(x, sp.cumw[k], sp.width[k], sp.cumh[k], sp.height[k], sp.deriv[k],
                                         sp.deriv[k + 1], reverse, y, lad);
      if (!ok) first_invalid = std::min(first_invalid, e);
      outputs[e] = y;
      log_abs_det[e] = lad;
    }
  }
  VC_CHECK(first_invalid == std::numeric_limits<int64_t>::max(),
           "rational_quadratic_spline: negative discriminant in the reverse pass at element "
               << first_invalid << " (input " << inputs[first_invalid] << "): invalid spline parameters");
}

template <typename T>
void rational_quadratic_spline_backward_cpu(const T* inputs, const T* uw, const T* uh, const T* ud, const T* dy,
                                            const T* dlad, T* dx, T* duw, T* duh, T* dud, int64_t n, int bins,
                                            bool reverse, double tail_bound) {
  VC_CHECK(bins >= 1, "rational_quadratic_spline backward: need at least one bin, got " << bins);
  const T bound = static_cast<T>(tail_bound);
#pragma omp parallel if (n > kParallelMin)
  {
    Spline<T> sp(bins, bound);
#pragma omp for
    for (int64_t e = 0; e < n; ++e) {
      const T x = inputs[e];
      const T gy = dy ? dy[e] : T(0), gl = dlad ? dlad[e] : T(0);
      if (outside(x, tail_bound)) {
        if (dx) dx[e] += gy;  // identity tail; log|det| is the constant 0
        continue;
      }
      sp.build(uw + e * bins, uh + e * bins, ud + e * (bins - 1), x, reverse);
      const int k = sp.bin;
      using D = Dual<T>;
      D y, lad;
      evaluate_bin<T, D>(D::variable(x, kX), D::variable(sp.cumw[k], kCumWidth), D::variable(sp.width[k], kWidth),
                         D::variable(sp.cumh[k], kCumHeight), D::variable(sp.height[k], kHeight),
                         D::variable(sp.deriv[k], kDeriv0), D::variable(sp.deriv[k + 1], kDeriv1), reverse, y, lad);
      T g[kLocals];
      for (int i = 0; i < kLocals; ++i) g[i] = gy * y.d[i] + gl * lad.d[i];
      if (dx) dx[e] += g[kX];
      // width_k = knot_{k+1} - knot_k, cumwidth_k = knot_k (heights alike).
      if (duw)
        sp.knots_backward(sp.soft_w, kMinBinWidth, g[kCumWidth] - g[kWidth], g[kWidth], duw + e * bins);
      if (duh)
        sp.knots_backward(sp.soft_h, kMinBinHeight, g[kCumHeight] - g[kHeight], g[kHeight], duh + e * bins);
      // Knot derivatives 1 .. bins-1 come from the inputs; 0 and bins are constants.
      if (dud) {
        T* d = dud + e * (bins - 1);
        if (k >= 1) d[k - 1] += g[kDeriv0] * softplus_grad(ud[e * (bins - 1) + k - 1]);
        if (k + 1 <= bins - 1) d[k] += g[kDeriv1] * softplus_grad(ud[e * (bins - 1) + k]);
      }
    }
  }
}

#define VC_INSTANTIATE(T)                                                                                          \
  template void rational_quadratic_spline_forward_cpu<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, \
                                                         int, bool, double);                                      \
  template void rational_quadratic_spline_backward_cpu<T>(const T*, const T*, const T*, const T*, const T*,       \
                                                          const T*, T*, T*, T*, T*, int64_t, int, bool, double);
VC_INSTANTIATE(float)
VC_INSTANTIATE(double)
#undef VC_INSTANTIATE

}  // namespace vitscuda::kernels
