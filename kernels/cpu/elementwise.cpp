#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace vitscuda::kernels {

namespace {
constexpr int64_t kParallelMin = 1 << 15;

template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <typename T>
T gelu_tanh(T x) {
  const T k = T(0.7978845608028654);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
}
}  // namespace

namespace {
// One loop per op, the switch outside it: the cheap ops (ReLU, leaky ReLU, clamp, scale) then compile
// to vector code instead of a branch per element. The arithmetic is the same as one switch per element.
template <typename T, typename F>
void map_unary(const T* x, T* y, int64_t n, F f) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

// dx[i] += dy[i] * d(i), d the op's derivative at element i.
template <typename T, typename D>
void accumulate_unary_grad(const T* dy, T* dx, int64_t n, D d) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * d(i);
}
}  // namespace

template <typename T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, int64_t n, double param) {
  const T p = static_cast<T>(param);
  switch (op) {
    case UnaryOp::Relu: map_unary(x, y, n, [](T v) { return v > T(0) ? v : T(0); }); break;
    case UnaryOp::LeakyRelu: map_unary(x, y, n, [p](T v) { return v > T(0) ? v : v * p; }); break;
    case UnaryOp::Gelu:
      map_unary(x, y, n, [](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(0.7071067811865476))); });
      break;
    case UnaryOp::GeluTanh: map_unary(x, y, n, [](T v) { return gelu_tanh(v); }); break;
    case UnaryOp::Silu: map_unary(x, y, n, [](T v) { return v * sigmoid(v); }); break;
    case UnaryOp::Tanh: map_unary(x, y, n, [](T v) { return std::tanh(v); }); break;
    case UnaryOp::Sigmoid: map_unary(x, y, n, [](T v) { return sigmoid(v); }); break;
    case UnaryOp::Exp: map_unary(x, y, n, [](T v) { return std::exp(v); }); break;
    case UnaryOp::Log: map_unary(x, y, n, [](T v) { return std::log(v); }); break;
    case UnaryOp::Softplus:  // torch: beta 1, threshold 20
      map_unary(x, y, n, [](T v) { return v > T(20) ? v : std::log1p(std::exp(v)); });
      break;
    case UnaryOp::Ceil: map_unary(x, y, n, [](T v) { return std::ceil(v); }); break;
    case UnaryOp::ClampMin: map_unary(x, y, n, [p](T v) { return v < p ? p : v; }); break;
    case UnaryOp::Scale: map_unary(x, y, n, [p](T v) { return v * p; }); break;
    case UnaryOp::AddScalar: map_unary(x, y, n, [p](T v) { return v + p; }); break;
    default: map_unary(x, y, n, [](T v) { return v; });
  }
}

template <typename T>
void unary_backward_cpu(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n, double param) {
  const T p = static_cast<T>(param);
  switch (op) {
    case UnaryOp::Relu: accumulate_unary_grad(dy, dx, n, [x](int64_t i) { return x[i] > T(0) ? T(1) : T(0); }); break;
    case UnaryOp::LeakyRelu:
      accumulate_unary_grad(dy, dx, n, [x, p](int64_t i) { return x[i] > T(0) ? T(1) : p; });
      break;
    case UnaryOp::Gelu:
      accumulate_unary_grad(dy, dx, n, [x](int64_t i) {
        const T v = x[i];
        const T cdf = T(0.5) * (T(1) + std::erf(v * T(0.7071067811865476)));
        const T pdf = std::exp(T(-0.5) * v * v) * T(0.3989422804014327);
        return cdf + v * pdf;
      });
      break;
    case UnaryOp::GeluTanh:
      accumulate_unary_grad(dy, dx, n, [x](int64_t i) {
        const T v = x[i];
        const T k = T(0.7978845608028654);
        const T u = k * (v + T(0.044715) * v * v * v);
        const T t = std::tanh(u);
        return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * v * v);
      });
      break;
    case UnaryOp::Silu:
      accumulate_unary_grad(dy, dx, n, [x](int64_t i) {
        const T s = sigmoid(x[i]);
        return s * (T(1) + x[i] * (T(1) - s));
      });
      break;
    case UnaryOp::Tanh: accumulate_unary_grad(dy, dx, n, [y](int64_t i) { return T(1) - y[i] * y[i]; }); break;
    case UnaryOp::Sigmoid: accumulate_unary_grad(dy, dx, n, [y](int64_t i) { return y[i] * (T(1) - y[i]); }); break;
    case UnaryOp::Exp: accumulate_unary_grad(dy, dx, n, [y](int64_t i) { return y[i]; }); break;
    case UnaryOp::Log: accumulate_unary_grad(dy, dx, n, [x](int64_t i) { return T(1) / x[i]; }); break;
    case UnaryOp::Softplus:
      accumulate_unary_grad(dy, dx, n, [x](int64_t i) { return x[i] > T(20) ? T(1) : sigmoid(x[i]); });
      break;
    case UnaryOp::Ceil: accumulate_unary_grad(dy, dx, n, [](int64_t) { return T(0); }); break;
    case UnaryOp::ClampMin:  // torch passes the gradient at v == bound
      accumulate_unary_grad(dy, dx, n, [x, p](int64_t i) { return x[i] < p ? T(0) : T(1); });
      break;
    case UnaryOp::Scale: accumulate_unary_grad(dy, dx, n, [p](int64_t) { return p; }); break;
    case UnaryOp::AddScalar: accumulate_unary_grad(dy, dx, n, [](int64_t) { return T(1); }); break;
    default: accumulate_unary_grad(dy, dx, n, [](int64_t) { return T(1); });
  }
}

namespace {
// Visits every output index of a broadcast, calling f(out_index, a_offset, b_offset).
template <typename F>
void for_each_broadcast(const int64_t* a_strides, const int64_t* b_strides, const int64_t* shape, int ndim, F f) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  int64_t idx[6] = {0, 0, 0, 0, 0, 0};
  int64_t ao = 0, bo = 0;
  for (int64_t i = 0; i < n; ++i) {
    f(i, ao, bo);
    for (int d = ndim - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        ao += a_strides[d];
        bo += b_strides[d];
        break;
      }
      ao -= a_strides[d] * (shape[d] - 1);
      bo -= b_strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

template <typename T>
T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    default: return a / b;
  }
}

bool contiguous_same(const int64_t* s, const int64_t* shape, int ndim) {
  int64_t expect = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && s[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}
}  // namespace

template <typename T>
void binary_forward_cpu(BinaryOp op, const T* a, const int64_t* as, const T* b, const int64_t* bs, T* y,
                        const int64_t* shape, int ndim) {
  VC_CHECK(ndim <= 6, "binary op: at most 6 dimensions");
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  if (contiguous_same(as, shape, ndim) && contiguous_same(bs, shape, ndim)) {
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) y[i] = apply(op, a[i], b[i]);
    return;
  }
  // Common VITS case: b broadcast along the last dims (masks [B,1,T], biases). Row-parallel over dim 0.
  if (ndim >= 2 && shape[0] > 1 && n > kParallelMin) {
    const int64_t inner = n / shape[0];
#pragma omp parallel for
    for (int64_t r = 0; r < shape[0]; ++r)
      for_each_broadcast(as + 1, bs + 1, shape + 1, ndim - 1, [&](int64_t i, int64_t ao, int64_t bo) {
        y[r * inner + i] = apply(op, a[r * as[0] + ao], b[r * bs[0] + bo]);
      });
    return;
  }
  for_each_broadcast(as, bs, shape, ndim, [&](int64_t i, int64_t ao, int64_t bo) { y[i] = apply(op, a[ao], b[bo]); });
}

template <typename T>
void binary_backward_cpu(BinaryOp op, const T* a, const int64_t* as, const T* b, const int64_t* bs, const T* dy, T* da,
                         T* db, const int64_t* shape, int ndim) {
  auto grad_a = [&](int64_t i, int64_t ao, int64_t bo) -> T {
    switch (op) {
      case BinaryOp::Add:
      case BinaryOp::Sub: return dy[i];
      case BinaryOp::Mul: return dy[i] * b[bo];
      default: return dy[i] / b[bo];
    }
  };
  auto grad_b = [&](int64_t i, int64_t ao, int64_t bo) -> T {
    switch (op) {
      case BinaryOp::Add: return dy[i];
      case BinaryOp::Sub: return -dy[i];
      case BinaryOp::Mul: return dy[i] * a[ao];
      default: return -dy[i] * a[ao] / (b[bo] * b[bo]);
    }
  };
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  const bool a_full = contiguous_same(as, shape, ndim), b_full = contiguous_same(bs, shape, ndim);
  // A full-shaped operand's gradient has one writer per element: parallel when only full ones are written.
  if ((!da || a_full) && (!db || b_full) && n > kParallelMin && ndim >= 1) {
    const int64_t rows = shape[0], inner = n / shape[0];
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r)
      for_each_broadcast(as + 1, bs + 1, shape + 1, ndim - 1, [&](int64_t i, int64_t ao, int64_t bo) {
        const int64_t oi = r * inner + i, aoo = r * as[0] + ao, boo = r * bs[0] + bo;
        if (da) da[aoo] += grad_a(oi, aoo, boo);
        if (db) db[boo] += grad_b(oi, aoo, boo);
      });
    return;
  }
  for_each_broadcast(as, bs, shape, ndim, [&](int64_t i, int64_t ao, int64_t bo) {
    if (da) da[ao] += grad_a(i, ao, bo);
    if (db) db[bo] += grad_b(i, ao, bo);
  });
}

template <typename T>
void gated_tanh_sigmoid_forward_cpu(const T* x, T* y, int64_t outer, int64_t C, int64_t inner) {
#pragma omp parallel for collapse(2) if (outer * C * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const T* xt = x + (o * 2 * C + c) * inner;
      const T* xs = x + (o * 2 * C + C + c) * inner;
      T* yr = y + (o * C + c) * inner;
      for (int64_t i = 0; i < inner; ++i) yr[i] = std::tanh(xt[i]) * sigmoid(xs[i]);
    }
}

template <typename T>
void gated_tanh_sigmoid_backward_cpu(const T* x, const T* dy, T* dx, int64_t outer, int64_t C, int64_t inner) {
#pragma omp parallel for collapse(2) if (outer * C * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const T* xt = x + (o * 2 * C + c) * inner;
      const T* xs = x + (o * 2 * C + C + c) * inner;
      T* dt = dx + (o * 2 * C + c) * inner;
      T* ds = dx + (o * 2 * C + C + c) * inner;
      const T* g = dy + (o * C + c) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        const T t = std::tanh(xt[i]), s = sigmoid(xs[i]);
        dt[i] += g[i] * s * (T(1) - t * t);
        ds[i] += g[i] * t * s * (T(1) - s);
      }
    }
}

template <typename T>
void softmax_forward_cpu(const T* x, T* y, int64_t rows, int64_t n) {
#pragma omp parallel for if (rows * n > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = xr[0];
    for (int64_t i = 1; i < n; ++i) m = std::max(m, xr[i]);
    T s = 0;
    for (int64_t i = 0; i < n; ++i) s += (yr[i] = std::exp(xr[i] - m));
    const T inv = T(1) / s;  // torch multiplies by the reciprocal
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}

template <typename T>
void softmax_backward_cpu(const T* y, const T* dy, T* dx, int64_t rows, int64_t n) {
#pragma omp parallel for if (rows * n > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* g = dy + r * n;
    T dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += yr[i] * g[i];
    for (int64_t i = 0; i < n; ++i) dx[r * n + i] += yr[i] * (g[i] - dot);
  }
}

template <typename T>
void slice_gather_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner, int64_t start, int64_t len,
                      bool accumulate) {
#pragma omp parallel for if (outer * len * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    const T* s = x + (o * mid + start) * inner;
    T* d = y + o * len * inner;
    if (accumulate)
      for (int64_t i = 0; i < len * inner; ++i) d[i] += s[i];
    else
      std::copy(s, s + len * inner, d);
  }
}

template <typename T>
void slice_scatter_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner, int64_t start, int64_t len,
                       bool accumulate) {
#pragma omp parallel for if (outer * len * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    const T* s = x + o * len * inner;
    T* d = y + (o * mid + start) * inner;
    if (accumulate)
      for (int64_t i = 0; i < len * inner; ++i) d[i] += s[i];
    else
      std::copy(s, s + len * inner, d);
  }
}

template <typename T>
void swap_axes_cpu(const T* x, T* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4, bool accumulate) {
#pragma omp parallel for collapse(2) if (d0 * d1 * d2 * d3 * d4 > kParallelMin)
  for (int64_t a = 0; a < d0; ++a)
    for (int64_t b = 0; b < d1; ++b)
      for (int64_t c = 0; c < d2; ++c)
        for (int64_t d = 0; d < d3; ++d) {
          const T* src = x + (((a * d1 + b) * d2 + c) * d3 + d) * d4;
          T* dst = y + (((a * d3 + d) * d2 + c) * d1 + b) * d4;
          if (accumulate)
            for (int64_t e = 0; e < d4; ++e) dst[e] += src[e];
          else
            for (int64_t e = 0; e < d4; ++e) dst[e] = src[e];
        }
}

template <typename T>
void flip_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner, bool accumulate) {
#pragma omp parallel for collapse(2) if (outer * mid * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t m = 0; m < mid; ++m) {
      const T* s = x + (o * mid + m) * inner;
      T* d = y + (o * mid + (mid - 1 - m)) * inner;
      if (accumulate)
        for (int64_t i = 0; i < inner; ++i) d[i] += s[i];
      else
        std::copy(s, s + inner, d);
    }
}

template <typename T>
void accumulate_cpu(const T* x, T* y, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

template <typename T>
void sum_mid_forward_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner) {
#pragma omp parallel for if (outer > 1 && outer * mid * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    T* yr = y + o * inner;
    std::fill(yr, yr + inner, T(0));
    for (int64_t m = 0; m < mid; ++m) {
      const T* xr = x + (o * mid + m) * inner;
      for (int64_t i = 0; i < inner; ++i) yr[i] += xr[i];
    }
  }
}

template <typename T>
void sum_mid_backward_cpu(const T* dy, T* dx, int64_t outer, int64_t mid, int64_t inner) {
#pragma omp parallel for collapse(2) if (outer * mid * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t m = 0; m < mid; ++m) {
      T* d = dx + (o * mid + m) * inner;
      const T* g = dy + o * inner;
      for (int64_t i = 0; i < inner; ++i) d[i] += g[i];
    }
}

#define VC_INSTANTIATE(T)                                                                                             \
  template void unary_forward_cpu<T>(UnaryOp, const T*, T*, int64_t, double);                                         \
  template void unary_backward_cpu<T>(UnaryOp, const T*, const T*, const T*, T*, int64_t, double);                    \
  template void binary_forward_cpu<T>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, T*,               \
                                      const int64_t*, int);                                                           \
  template void binary_backward_cpu<T>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, const T*, T*,    \
                                       T*, const int64_t*, int);                                                      \
  template void gated_tanh_sigmoid_forward_cpu<T>(const T*, T*, int64_t, int64_t, int64_t);                           \
  template void gated_tanh_sigmoid_backward_cpu<T>(const T*, const T*, T*, int64_t, int64_t, int64_t);                \
  template void softmax_forward_cpu<T>(const T*, T*, int64_t, int64_t);                                               \
  template void softmax_backward_cpu<T>(const T*, const T*, T*, int64_t, int64_t);                                    \
  template void slice_gather_cpu<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool);                \
  template void slice_scatter_cpu<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool);               \
  template void swap_axes_cpu<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool);                    \
  template void flip_cpu<T>(const T*, T*, int64_t, int64_t, int64_t, bool);                                           \
  template void accumulate_cpu<T>(const T*, T*, int64_t);                                                            \
  template void sum_mid_forward_cpu<T>(const T*, T*, int64_t, int64_t, int64_t);                                      \
  template void sum_mid_backward_cpu<T>(const T*, T*, int64_t, int64_t, int64_t);
VC_INSTANTIATE(float)
VC_INSTANTIATE(double)
#undef VC_INSTANTIATE

}  // namespace vitscuda::kernels
