#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

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
// One loop per op, the switch outside it, and the functors take values, not indices: the cheap ops (ReLU,
// leaky ReLU, clamp, scale and their derivatives) then compile to vector code. firstprivate gives each thread
// its own copy of the functor, so that its captures cannot alias the output. Ops with a conditional product
// compute it unconditionally and select: GCC does not speculate a floating-point operation that may trap,
// so `v > 0 ? v : v * p` would stay a branch per element. The arithmetic is the same as one switch per element.
template <typename T, typename F>
void map_unary(const T* x, T* y, int64_t n, F f) {
#pragma omp parallel for simd if (n > kParallelMin) firstprivate(f)
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

// dx[i] += dy[i] * d(v[i]), d the op's derivative as a function of v = x or v = y.
template <typename T, typename D>
void accumulate_unary_grad(const T* dy, const T* v, T* dx, int64_t n, D d) {
#pragma omp parallel for simd if (n > kParallelMin) firstprivate(d)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * d(v[i]);
}
// dx[i] += dy[i] * c for a derivative that does not depend on the element.
template <typename T>
void accumulate_scaled_grad(const T* dy, T* dx, int64_t n, T c) {
#pragma omp parallel for simd if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * c;
}
}  // namespace

template <typename T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, int64_t n, double param) {
  const T p = static_cast<T>(param);
  switch (op) {
    case UnaryOp::Relu: map_unary(x, y, n, [](T v) { return v > T(0) ? v : T(0); }); break;
    case UnaryOp::LeakyRelu:
      map_unary(x, y, n, [p](T v) {
        const T negative = v * p;
        return v > T(0) ? v : negative;
      });
      break;
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
    case UnaryOp::Relu: accumulate_unary_grad(dy, x, dx, n, [](T v) { return v > T(0) ? T(1) : T(0); }); break;
    case UnaryOp::LeakyRelu: accumulate_unary_grad(dy, x, dx, n, [p](T v) { return v > T(0) ? T(1) : p; }); break;
    case UnaryOp::Gelu:
      accumulate_unary_grad(dy, x, dx, n, [](T v) {
        const T cdf = T(0.5) * (T(1) + std::erf(v * T(0.7071067811865476)));
        const T pdf = std::exp(T(-0.5) * v * v) * T(0.3989422804014327);
        return cdf + v * pdf;
      });
      break;
    case UnaryOp::GeluTanh:
      accumulate_unary_grad(dy, x, dx, n, [](T v) {
        const T k = T(0.7978845608028654);
        const T u = k * (v + T(0.044715) * v * v * v);
        const T t = std::tanh(u);
        return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * v * v);
      });
      break;
    case UnaryOp::Silu:
      accumulate_unary_grad(dy, x, dx, n, [](T v) {
        const T s = sigmoid(v);
        return s * (T(1) + v * (T(1) - s));
      });
      break;
    case UnaryOp::Tanh: accumulate_unary_grad(dy, y, dx, n, [](T v) { return T(1) - v * v; }); break;
    case UnaryOp::Sigmoid: accumulate_unary_grad(dy, y, dx, n, [](T v) { return v * (T(1) - v); }); break;
    case UnaryOp::Exp: accumulate_unary_grad(dy, y, dx, n, [](T v) { return v; }); break;
    case UnaryOp::Log: accumulate_unary_grad(dy, x, dx, n, [](T v) { return T(1) / v; }); break;
    case UnaryOp::Softplus:
      accumulate_unary_grad(dy, x, dx, n, [](T v) { return v > T(20) ? T(1) : sigmoid(v); });
      break;
    case UnaryOp::Ceil: accumulate_scaled_grad(dy, dx, n, T(0)); break;
    case UnaryOp::ClampMin:  // torch passes the gradient at v == bound
      accumulate_unary_grad(dy, x, dx, n, [p](T v) { return v < p ? T(0) : T(1); });
      break;
    case UnaryOp::Scale: accumulate_scaled_grad(dy, dx, n, p); break;
    case UnaryOp::AddScalar: accumulate_scaled_grad(dy, dx, n, T(1)); break;
    default: accumulate_scaled_grad(dy, dx, n, T(1));
  }
}

namespace {
template <typename T>
T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    default: return a / b;
  }
}

// The broadcast iteration space with size-1 dims dropped and adjacent dims merged wherever both operands'
// strides allow it, so that the innermost dim is as long as possible: [B, C, T] + [1, C, 1] stays 3-D,
// [B, C, T] + [B, C, T] becomes one run of B*C*T. Rows are the outer dims' index space, each row one run
// of `inner` elements in which a and b advance by their innermost strides (0, 1 or another step).
struct BroadcastPlan {
  int ndim = 0;
  int64_t shape[6] = {}, a_strides[6] = {}, b_strides[6] = {};
  int64_t inner = 1, rows = 1;

  BroadcastPlan(const int64_t* as, const int64_t* bs, const int64_t* out_shape, int n) {
    for (int d = 0; d < n; ++d) {
      if (out_shape[d] == 1) continue;
      if (ndim > 0 && a_strides[ndim - 1] == as[d] * out_shape[d] && b_strides[ndim - 1] == bs[d] * out_shape[d]) {
        shape[ndim - 1] *= out_shape[d];
        a_strides[ndim - 1] = as[d];
        b_strides[ndim - 1] = bs[d];
        continue;
      }
      shape[ndim] = out_shape[d];
      a_strides[ndim] = as[d];
      b_strides[ndim] = bs[d];
      ++ndim;
    }
    if (ndim == 0) {  // a single element
      shape[0] = 1;
      ndim = 1;
    }
    inner = shape[ndim - 1];
    for (int d = 0; d < ndim - 1; ++d) rows *= shape[d];
  }
  int64_t a_inner() const { return a_strides[ndim - 1]; }
  int64_t b_inner() const { return b_strides[ndim - 1]; }
  // The offsets of row r's first element in two operands with these strides (the plan's a and b, either order).
  void row_offsets(int64_t r, const int64_t* s1, const int64_t* s2, int64_t& o1, int64_t& o2) const {
    o1 = o2 = 0;
    for (int d = ndim - 2; d >= 0; --d) {
      const int64_t i = r % shape[d];
      r /= shape[d];
      o1 += i * s1[d];
      o2 += i * s2[d];
    }
  }
  // True when the operand with these strides has one element per output element (no broadcast dim left).
  bool covers_output(const int64_t* strides) const {
    for (int d = 0; d < ndim; ++d)
      if (strides[d] == 0 && shape[d] > 1) return false;
    return true;
  }
};

// Columns of a row per parallel task: long runs stay whole for the vector loops, short rows go many to a task.
constexpr int64_t kRunBlock = 8192;

// Calls f(r, i0, i1) for blocks [i0, i1) of every row, in parallel when the whole is large.
template <typename F>
void for_each_row_block(const BroadcastPlan& p, F f) {
  const int64_t blocks_per_row = (p.inner + kRunBlock - 1) / kRunBlock;
  const int64_t tasks = p.rows * blocks_per_row;
#pragma omp parallel for if (p.rows * p.inner > kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t r = t / blocks_per_row, i0 = (t % blocks_per_row) * kRunBlock;
    f(r, i0, std::min(p.inner, i0 + kRunBlock));
  }
}

// Runs f with compile-time innermost strides when they are 0 or 1 (the vectorisable cases) and kAnyStride
// otherwise, so that every run loop below is instantiated once per stride pattern.
constexpr int kAnyStride = -1;
template <int S>
using Stride = std::integral_constant<int, S>;
template <int S>
inline int64_t step(int64_t i, int64_t stride) {
  return S == kAnyStride ? i * stride : i * S;
}
template <typename F>
void with_stride(int64_t s, F f) {
  if (s == 1)
    f(Stride<1>{});
  else if (s == 0)
    f(Stride<0>{});
  else
    f(Stride<kAnyStride>{});
}
template <typename F>
void with_op(BinaryOp op, F f) {
  switch (op) {
    case BinaryOp::Add: f(std::integral_constant<BinaryOp, BinaryOp::Add>{}); break;
    case BinaryOp::Sub: f(std::integral_constant<BinaryOp, BinaryOp::Sub>{}); break;
    case BinaryOp::Mul: f(std::integral_constant<BinaryOp, BinaryOp::Mul>{}); break;
    default: f(std::integral_constant<BinaryOp, BinaryOp::Div>{}); break;
  }
}

// d(a op b)/da and /db times the upstream gradient g.
template <BinaryOp OP, typename T>
inline T grad_wrt_a(T g, T a, T b) {
  (void)a;
  if constexpr (OP == BinaryOp::Add || OP == BinaryOp::Sub) return g;
  else if constexpr (OP == BinaryOp::Mul) return g * b;
  else return g / b;
}
template <BinaryOp OP, typename T>
inline T grad_wrt_b(T g, T a, T b) {
  if constexpr (OP == BinaryOp::Add) return g;
  else if constexpr (OP == BinaryOp::Sub) return -g;
  else if constexpr (OP == BinaryOp::Mul) return g * a;
  else return -g * a / (b * b);
}

// Accumulates one operand's gradient: dx[x-offset of each output element] += grad(dy, self, other), where
// `self` is the operand whose gradient this is. x_strides/o_strides are the plan's strides of self and other.
// kReadsSelf / kReadsOther: whether grad uses that operand's values at all; an operand it does not read may be
// nullptr (add's and sub's backward get no operands) and is then neither offset nor loaded.
template <bool kReadsSelf, bool kReadsOther, typename T, typename Grad>
void accumulate_operand_grad(const BroadcastPlan& p, const int64_t* x_strides, const int64_t* o_strides,
                             const T* self, const T* other, const T* dy, T* dx, Grad grad) {
  auto offsets = [&](int64_t r, int64_t& xo, int64_t& oo) { p.row_offsets(r, x_strides, o_strides, xo, oo); };
  const int64_t xs = x_strides[p.ndim - 1], os = o_strides[p.ndim - 1];
  with_stride(xs, [&](auto XS) {
    with_stride(os, [&](auto OS) {
      constexpr int kX = decltype(XS)::value, kO = decltype(OS)::value;
      if constexpr (kX == 0) {
        // Each row sums into one element: per-row partial sums in parallel, then folded into dx in row
        // order, so the result does not depend on the thread count.
        std::vector<T> partial(p.rows);
#pragma omp parallel for if (p.rows * p.inner > kParallelMin)
        for (int64_t r = 0; r < p.rows; ++r) {
          int64_t xo, oo;
          offsets(r, xo, oo);
          const T s = kReadsSelf ? self[xo] : T(0);
          const T* g = dy + r * p.inner;
          const T* o = kReadsOther ? other + oo : nullptr;
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t i = 0; i < p.inner; ++i) sum += grad(g[i], s, kReadsOther ? o[step<kO>(i, os)] : T(0));
          partial[r] = sum;
        }
        for (int64_t r = 0; r < p.rows; ++r) {
          int64_t xo, oo;
          offsets(r, xo, oo);
          dx[xo] += partial[r];
        }
      } else {
        auto run = [&](int64_t r, int64_t i0, int64_t i1) {
          int64_t xo, oo;
          offsets(r, xo, oo);
          const T* g = dy + r * p.inner;
          const T* x = kReadsSelf ? self + xo : nullptr;
          const T* o = kReadsOther ? other + oo : nullptr;
          T* d = dx + xo;
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i)
            d[step<kX>(i, xs)] += grad(g[i], kReadsSelf ? x[step<kX>(i, xs)] : T(0),
                                       kReadsOther ? o[step<kO>(i, os)] : T(0));
        };
        if (p.covers_output(x_strides)) {
          for_each_row_block(p, run);  // one writer per element of dx
        } else {
          // Rows overlap in dx (a broadcast outer dim): column blocks in parallel, the rows of each in order.
          const int64_t blocks = (p.inner + kRunBlock - 1) / kRunBlock;
#pragma omp parallel for if (p.rows * p.inner > kParallelMin && blocks > 1)
          for (int64_t blk = 0; blk < blocks; ++blk)
            for (int64_t r = 0; r < p.rows; ++r) run(r, blk * kRunBlock, std::min(p.inner, (blk + 1) * kRunBlock));
        }
      }
    });
  });
}
}  // namespace

template <typename T>
void binary_forward_cpu(BinaryOp op, const T* a, const int64_t* as, const T* b, const int64_t* bs, T* y,
                        const int64_t* shape, int ndim) {
  VC_CHECK(ndim <= 6, "binary op: at most 6 dimensions");
  const BroadcastPlan p(as, bs, shape, ndim);
  const int64_t sa = p.a_inner(), sb = p.b_inner();
  with_op(op, [&](auto OP) {
    with_stride(sa, [&](auto SA) {
      with_stride(sb, [&](auto SB) {
        constexpr int kA = decltype(SA)::value, kB = decltype(SB)::value;
        for_each_row_block(p, [&](int64_t r, int64_t i0, int64_t i1) {
          int64_t ao, bo;
          p.row_offsets(r, p.a_strides, p.b_strides, ao, bo);
          const T* ar = a + ao;
          const T* br = b + bo;
          T* yr = y + r * p.inner;
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) yr[i] = apply(decltype(OP)::value, ar[step<kA>(i, sa)], br[step<kB>(i, sb)]);
        });
      });
    });
  });
}

template <typename T>
void binary_backward_cpu(BinaryOp op, const T* a, const int64_t* as, const T* b, const int64_t* bs, const T* dy, T* da,
                         T* db, const int64_t* shape, int ndim) {
  VC_CHECK(ndim <= 6, "binary op: at most 6 dimensions");
  const BroadcastPlan p(as, bs, shape, ndim);
  with_op(op, [&](auto OP) {
    constexpr BinaryOp kOp = decltype(OP)::value;
    // Which operands each gradient reads (grad_wrt_a / grad_wrt_b): a product or quotient reads the other one,
    // a quotient's db also b itself; a sum or difference reads neither.
    constexpr bool kMulDiv = kOp == BinaryOp::Mul || kOp == BinaryOp::Div;
    if (da)
      accumulate_operand_grad<false, kMulDiv>(p, p.a_strides, p.b_strides, a, b, dy, da,
                                              [](T g, T self, T other) { return grad_wrt_a<kOp>(g, self, other); });
    if (db)
      accumulate_operand_grad<kOp == BinaryOp::Div, kMulDiv>(
          p, p.b_strides, p.a_strides, b, a, dy, db,
          [](T g, T self, T other) { return grad_wrt_b<kOp>(g, other, self); });
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
