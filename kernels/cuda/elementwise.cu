// Pointwise and layout kernels (float32). Grid-stride loops; 64-bit indices throughout.
#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/elementwise.h"

namespace vitscuda::kernels {

namespace {

constexpr int kThreads = 256;

#define VC_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__device__ inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void unary_kernel(UnaryOp op, const float* __restrict__ x, float* __restrict__ y, int64_t n, float p) {
  VC_GRID_STRIDE(i, n) {
    const float v = x[i];
    float r;
    switch (op) {
      case UnaryOp::Relu: r = v > 0.0f ? v : 0.0f; break;
      case UnaryOp::LeakyRelu: r = v > 0.0f ? v : v * p; break;
      case UnaryOp::Gelu: r = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); break;
      case UnaryOp::GeluTanh: {
        const float k = 0.7978845608028654f;
        r = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        break;
      }
      case UnaryOp::Silu: r = v * sigmoidf(v); break;
      case UnaryOp::Tanh: r = tanhf(v); break;
      case UnaryOp::Sigmoid: r = sigmoidf(v); break;
      case UnaryOp::Exp: r = expf(v); break;
      case UnaryOp::Log: r = logf(v); break;
      case UnaryOp::Softplus: r = v > 20.0f ? v : log1pf(expf(v)); break;  // torch: beta 1, threshold 20
      case UnaryOp::Ceil: r = ceilf(v); break;
      case UnaryOp::ClampMin: r = v < p ? p : v; break;
      case UnaryOp::Scale: r = v * p; break;
      case UnaryOp::AddScalar: r = v + p; break;
      default: r = v;
    }
    y[i] = r;
  }
}

struct BroadcastArgs {
  int64_t shape[6];
  int64_t a_strides[6];
  int64_t b_strides[6];
  int ndim;
};

__device__ inline float apply_binary(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    default: return a / b;
  }
}

__global__ void binary_same_shape_kernel(BinaryOp op, const float* __restrict__ a, const float* __restrict__ b,
                                         float* __restrict__ y, int64_t n) {
  VC_GRID_STRIDE(i, n) y[i] = apply_binary(op, a[i], b[i]);
}

__global__ void binary_broadcast_kernel(BinaryOp op, const float* __restrict__ a, const float* __restrict__ b,
                                        float* __restrict__ y, int64_t n, BroadcastArgs args) {
  VC_GRID_STRIDE(i, n) {
    int64_t rest = i, ao = 0, bo = 0;
    for (int d = args.ndim - 1; d >= 0; --d) {
      const int64_t idx = rest % args.shape[d];
      rest /= args.shape[d];
      ao += idx * args.a_strides[d];
      bo += idx * args.b_strides[d];
    }
    y[i] = apply_binary(op, a[ao], b[bo]);
  }
}

__global__ void gated_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t outer, int64_t C,
                             int64_t inner) {
  const int64_t n = outer * C * inner;
  VC_GRID_STRIDE(i, n) {
    const int64_t t = i % inner;
    const int64_t c = (i / inner) % C;
    const int64_t o = i / (inner * C);
    const float a = x[(o * 2 * C + c) * inner + t];
    const float s = x[(o * 2 * C + C + c) * inner + t];
    y[i] = tanhf(a) * sigmoidf(s);
  }
}

// One block per row: max, then the sum of exponentials, then the scaled write.
__device__ inline float block_reduce(float v, bool is_max, float* shared) {
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = is_max ? fmaxf(v, o) : v + o;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? shared[threadIdx.x] : (is_max ? -FLT_MAX : 0.0f);
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) {
      const float o = __shfl_xor_sync(0xffffffffu, v, off);
      v = is_max ? fmaxf(v, o) : v + o;
    }
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  const float r = shared[0];
  __syncthreads();  // shared may be reused by the next reduction
  return r;
}

__global__ void softmax_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  __shared__ float shared[32];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float m = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, xr[i]);
  m = block_reduce(m, true, shared);
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float e = expf(xr[i] - m);
    yr[i] = e;
    s += e;
  }
  s = block_reduce(s, false, shared);
  const float inv = 1.0f / s;  // torch multiplies by the reciprocal
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] *= inv;
}

// Copies x [outer, len, inner] <-> y [outer, mid, inner][:, start:start+len] (gather: y is the
// small side; scatter: x is).
__global__ void slice_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t outer, int64_t mid,
                             int64_t inner, int64_t start, int64_t len, bool gather, bool accumulate) {
  const int64_t n = outer * len * inner;
  VC_GRID_STRIDE(i, n) {
    const int64_t e = i % inner;
    const int64_t l = (i / inner) % len;
    const int64_t o = i / (inner * len);
    const int64_t big = (o * mid + start + l) * inner + e;
    const int64_t src = gather ? big : i, dst = gather ? i : big;
    if (accumulate)
      y[dst] += x[src];
    else
      y[dst] = x[src];
  }
}

// y [d0, d3, d2, d1, d4] from x [d0, d1, d2, d3, d4]; indexed by the output so writes coalesce.
__global__ void swap_axes_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t d0, int64_t d1,
                                 int64_t d2, int64_t d3, int64_t d4, bool accumulate) {
  const int64_t n = d0 * d1 * d2 * d3 * d4;
  VC_GRID_STRIDE(i, n) {
    int64_t r = i;
    const int64_t e = r % d4;
    r /= d4;
    const int64_t b = r % d1;
    r /= d1;
    const int64_t c = r % d2;
    r /= d2;
    const int64_t d = r % d3;
    const int64_t a = r / d3;
    const float v = x[(((a * d1 + b) * d2 + c) * d3 + d) * d4 + e];
    if (accumulate)
      y[i] += v;
    else
      y[i] = v;
  }
}

__global__ void flip_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t outer, int64_t mid,
                            int64_t inner, bool accumulate) {
  const int64_t n = outer * mid * inner;
  VC_GRID_STRIDE(i, n) {
    const int64_t e = i % inner;
    const int64_t m = (i / inner) % mid;
    const int64_t o = i / (inner * mid);
    const float v = x[(o * mid + (mid - 1 - m)) * inner + e];
    if (accumulate)
      y[i] += v;
    else
      y[i] = v;
  }
}

__global__ void accumulate_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  VC_GRID_STRIDE(i, n) y[i] += x[i];
}

// One thread per output element, summing over mid in order (as the CPU does).
__global__ void sum_mid_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t outer, int64_t mid,
                               int64_t inner) {
  const int64_t n = outer * inner;
  VC_GRID_STRIDE(i, n) {
    const int64_t e = i % inner, o = i / inner;
    float s = 0.0f;
    for (int64_t m = 0; m < mid; ++m) s += x[(o * mid + m) * inner + e];
    y[i] = s;
  }
}

__global__ void fill_kernel(float* __restrict__ y, int64_t n, float value) {
  VC_GRID_STRIDE(i, n) y[i] = value;
}

__global__ void unary_backward_kernel(UnaryOp op, const float* __restrict__ x, const float* __restrict__ y,
                                      const float* __restrict__ dy, float* __restrict__ dx, int64_t n, float p) {
  VC_GRID_STRIDE(i, n) {
    const float v = x ? x[i] : 0.0f;
    float d;
    switch (op) {
      case UnaryOp::Relu: d = v > 0.0f ? 1.0f : 0.0f; break;
      case UnaryOp::LeakyRelu: d = v > 0.0f ? 1.0f : p; break;
      case UnaryOp::Gelu: {
        const float cdf = 0.5f * (1.0f + erff(v * 0.7071067811865476f));
        const float pdf = expf(-0.5f * v * v) * 0.3989422804014327f;
        d = cdf + v * pdf;
        break;
      }
      case UnaryOp::GeluTanh: {
        const float k = 0.7978845608028654f;
        const float u = k * (v + 0.044715f * v * v * v);
        const float t = tanhf(u);
        d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * k * (1.0f + float(3 * 0.044715) * v * v);
        break;
      }
      case UnaryOp::Silu: {
        const float s = sigmoidf(v);
        d = s * (1.0f + v * (1.0f - s));
        break;
      }
      case UnaryOp::Tanh: d = 1.0f - y[i] * y[i]; break;
      case UnaryOp::Sigmoid: d = y[i] * (1.0f - y[i]); break;
      case UnaryOp::Exp: d = y[i]; break;
      case UnaryOp::Log: d = 1.0f / v; break;
      case UnaryOp::Softplus: d = v > 20.0f ? 1.0f : sigmoidf(v); break;
      case UnaryOp::Ceil: d = 0.0f; break;
      case UnaryOp::ClampMin: d = v < p ? 0.0f : 1.0f; break;  // torch passes the gradient at v == bound
      case UnaryOp::Scale: d = p; break;
      case UnaryOp::AddScalar: d = 1.0f; break;
      default: d = 1.0f;
    }
    dx[i] += dy[i] * d;
  }
}

// The gradient of a binary op with respect to one operand at output position i.
__device__ inline float binary_grad(BinaryOp op, bool wrt_a, float dy, const float* a, int64_t ao, const float* b,
                                    int64_t bo) {
  switch (op) {
    case BinaryOp::Add: return dy;
    case BinaryOp::Sub: return wrt_a ? dy : -dy;
    case BinaryOp::Mul: return wrt_a ? dy * b[bo] : dy * a[ao];
    default: return wrt_a ? dy / b[bo] : -dy * a[ao] / (b[bo] * b[bo]);
  }
}

// An operand's offset at output position i, from its strides (0 along broadcast dimensions).
__device__ inline int64_t broadcast_offset(int64_t i, const int64_t* shape, const int64_t* strides, int ndim) {
  int64_t offset = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    offset += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return offset;
}

// The gradient of a full-shaped operand (its element i is output element i): one thread per
// element. kOtherDecoded: the other operand is broadcast and its offset must be computed (only when
// the op reads it: Mul, Div); otherwise it is full-shaped too, or unread (Add, Sub).
template <bool kOtherDecoded>
__global__ void binary_backward_full_kernel(BinaryOp op, bool wrt_a, const float* __restrict__ a,
                                            const float* __restrict__ b, const float* __restrict__ dy,
                                            float* __restrict__ grad, int64_t n, BroadcastArgs args) {
  VC_GRID_STRIDE(i, n) {
    const int64_t other =
        kOtherDecoded ? broadcast_offset(i, args.shape, wrt_a ? args.b_strides : args.a_strides, args.ndim) : i;
    grad[i] += wrt_a ? binary_grad(op, true, dy[i], a, i, b, other) : binary_grad(op, false, dy[i], a, other, b, i);
  }
}

struct BinaryGradArgs {
  int64_t shape[6];
  int64_t a_strides[6];
  int64_t b_strides[6];
  int64_t out_strides[6];
  int ndim;
  // The operand whose gradient this launch computes: its kept dims (stride != 0, in order) and
  // its broadcast dims (stride 0, size > 1).
  int kept[6], nkept;
  int bcast[6], nbcast;
  int64_t bcast_count;  // product of the broadcast dims' sizes
};

// The output positions that one element of a broadcast operand receives: the element's base
// offsets (over its kept dims), then its r-th broadcast position added to them.
struct BroadcastPosition {
  int64_t out, a, b;
};

// Adds to p the offsets of `index` decoded row-major over the dimensions dims[0, count).
__device__ inline void add_offsets(BroadcastPosition& p, const BinaryGradArgs& g, const int* dims, int count,
                                   int64_t index) {
  for (int k = count - 1; k >= 0; --k) {
    const int d = dims[k];
    const int64_t c = index % g.shape[d];
    index /= g.shape[d];
    p.out += c * g.out_strides[d];
    p.a += c * g.a_strides[d];
    p.b += c * g.b_strides[d];
  }
}

__device__ inline BroadcastPosition kept_base(const BinaryGradArgs& g, int64_t e) {
  BroadcastPosition p{0, 0, 0};
  add_offsets(p, g, g.kept, g.nkept, e);
  return p;
}

__device__ inline float broadcast_term(BinaryOp op, bool wrt_a, const float* a, const float* b, const float* dy,
                                       const BinaryGradArgs& g, const BroadcastPosition& base, int64_t r) {
  BroadcastPosition p = base;
  add_offsets(p, g, g.bcast, g.nbcast, r);
  return binary_grad(op, wrt_a, dy[p.out], a, p.a, b, p.b);
}

// A broadcast operand with few broadcast positions per element (bcast_count < 32): one thread per
// element sums them in order.
__global__ void binary_backward_serial_kernel(BinaryOp op, bool wrt_a, const float* __restrict__ a,
                                              const float* __restrict__ b, const float* __restrict__ dy,
                                              float* __restrict__ grad, int64_t elements, BinaryGradArgs g) {
  VC_GRID_STRIDE(e, elements) {
    const BroadcastPosition base = kept_base(g, e);
    float sum = 0.0f;
    for (int64_t r = 0; r < g.bcast_count; ++r) sum += broadcast_term(op, wrt_a, a, b, dy, g, base, r);
    grad[wrt_a ? base.a : base.b] += sum;
  }
}

// A broadcast operand with many broadcast positions per element: one warp per element, lanes take
// the positions in a fixed order and the warp reduces them (deterministic), then one lane adds.
__global__ void binary_backward_warp_kernel(BinaryOp op, bool wrt_a, const float* __restrict__ a,
                                            const float* __restrict__ b, const float* __restrict__ dy,
                                            float* __restrict__ grad, int64_t elements, BinaryGradArgs g) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t e = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; e < elements; e += warps) {
    const BroadcastPosition base = kept_base(g, e);
    float sum = 0.0f;
    for (int64_t r = lane; r < g.bcast_count; r += 32) sum += broadcast_term(op, wrt_a, a, b, dy, g, base, r);
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) grad[wrt_a ? base.a : base.b] += sum;
  }
}

__global__ void gated_backward_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                      float* __restrict__ dx, int64_t outer, int64_t C, int64_t inner) {
  const int64_t n = outer * C * inner;
  VC_GRID_STRIDE(i, n) {
    const int64_t t = i % inner;
    const int64_t c = (i / inner) % C;
    const int64_t o = i / (inner * C);
    const int64_t it = (o * 2 * C + c) * inner + t, is = (o * 2 * C + C + c) * inner + t;
    const float th = tanhf(x[it]), s = sigmoidf(x[is]);
    dx[it] += dy[i] * s * (1.0f - th * th);
    dx[is] += dy[i] * th * s * (1.0f - s);
  }
}

__global__ void softmax_backward_kernel(const float* __restrict__ y, const float* __restrict__ dy,
                                        float* __restrict__ dx, int64_t n) {
  __shared__ float shared[32];
  const float* yr = y + blockIdx.x * n;
  const float* gr = dy + blockIdx.x * n;
  float* dr = dx + blockIdx.x * n;
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dot += yr[i] * gr[i];
  dot = block_reduce(dot, false, shared);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dr[i] += yr[i] * (gr[i] - dot);
}

__global__ void sum_mid_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t outer,
                                        int64_t mid, int64_t inner) {
  const int64_t n = outer * mid * inner;
  VC_GRID_STRIDE(i, n) {
    const int64_t e = i % inner;
    const int64_t o = i / (inner * mid);
    dx[i] += dy[o * inner + e];
  }
}

BroadcastArgs broadcast_args(const int64_t* a_strides, const int64_t* b_strides, const int64_t* out_shape, int ndim) {
  BroadcastArgs args{};
  args.ndim = ndim;
  for (int d = 0; d < ndim; ++d) {
    args.shape[d] = out_shape[d];
    args.a_strides[d] = a_strides[d];
    args.b_strides[d] = b_strides[d];
  }
  return args;
}

// The operand has the output's shape, laid out contiguously (its strides are the output's wherever
// a dimension is larger than 1).
bool full_shaped(const int64_t* strides, const int64_t* shape, int ndim) {
  int64_t expect = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

}  // namespace

void unary_forward_cuda(UnaryOp op, const float* x, float* y, int64_t n, double param) {
  if (n <= 0) return;
  VC_LAUNCH(unary_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(op, x, y, n, static_cast<float>(param));
  VC_CHECK_LAUNCH("unary");
}

void binary_forward_cuda(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                         const int64_t* b_strides, float* y, const int64_t* out_shape, int ndim) {
  VC_CHECK(ndim >= 0 && ndim <= 6, "binary op: at most 6 dimensions, got " << ndim);
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= out_shape[d];
  if (n <= 0) return;
  if (full_shaped(a_strides, out_shape, ndim) && full_shaped(b_strides, out_shape, ndim)) {
    VC_LAUNCH(binary_same_shape_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(op, a, b, y, n);
  } else {
    const BroadcastArgs args = broadcast_args(a_strides, b_strides, out_shape, ndim);
    VC_LAUNCH(binary_broadcast_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(op, a, b, y, n, args);
  }
  VC_CHECK_LAUNCH("binary");
}

void gated_tanh_sigmoid_forward_cuda(const float* x, float* y, int64_t outer, int64_t C, int64_t inner) {
  const int64_t n = outer * C * inner;
  if (n <= 0) return;
  VC_LAUNCH(gated_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, outer, C, inner);
  VC_CHECK_LAUNCH("gated_tanh_sigmoid");
}

void softmax_forward_cuda(const float* x, float* y, int64_t rows, int64_t n) {
  if (rows <= 0 || n <= 0) return;
  VC_CHECK(rows <= 0x7fffffff, "softmax: " << rows << " rows exceed the grid");
  VC_LAUNCH(softmax_kernel, static_cast<unsigned>(rows), kThreads, 0)(x, y, n);
  VC_CHECK_LAUNCH("softmax");
}

void slice_gather_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner, int64_t start, int64_t len,
                       bool accumulate) {
  const int64_t n = outer * len * inner;
  if (n <= 0) return;
  VC_LAUNCH(slice_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, outer, mid, inner, start, len, true,
                                                                       accumulate);
  VC_CHECK_LAUNCH("slice_gather");
}

void slice_scatter_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner, int64_t start,
                        int64_t len, bool accumulate) {
  const int64_t n = outer * len * inner;
  if (n <= 0) return;
  VC_LAUNCH(slice_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, outer, mid, inner, start, len, false,
                                                                       accumulate);
  VC_CHECK_LAUNCH("slice_scatter");
}

void swap_axes_cuda(const float* x, float* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4,
                    bool accumulate) {
  const int64_t n = d0 * d1 * d2 * d3 * d4;
  if (n <= 0) return;
  VC_LAUNCH(swap_axes_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, d0, d1, d2, d3, d4, accumulate);
  VC_CHECK_LAUNCH("swap_axes");
}

void flip_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner, bool accumulate) {
  const int64_t n = outer * mid * inner;
  if (n <= 0) return;
  VC_LAUNCH(flip_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, outer, mid, inner, accumulate);
  VC_CHECK_LAUNCH("flip");
}

void accumulate_cuda(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  VC_LAUNCH(accumulate_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, n);
  VC_CHECK_LAUNCH("accumulate");
}

void sum_mid_forward_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner) {
  const int64_t n = outer * inner;
  if (n <= 0) return;
  VC_LAUNCH(sum_mid_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, y, outer, mid, inner);
  VC_CHECK_LAUNCH("sum_mid");
}

void fill_cuda(float* y, int64_t n, float value) {
  if (n <= 0) return;
  VC_LAUNCH(fill_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(y, n, value);
  VC_CHECK_LAUNCH("fill");
}

void unary_backward_cuda(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n,
                         double param) {
  if (n <= 0) return;
  VC_LAUNCH(unary_backward_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(op, x, y, dy, dx, n,
                                                                                static_cast<float>(param));
  VC_CHECK_LAUNCH("unary backward");
}

void binary_backward_cuda(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                          const int64_t* b_strides, const float* dy, float* da, float* db, const int64_t* out_shape,
                          int ndim) {
  VC_CHECK(ndim >= 0 && ndim <= 6, "binary op backward: at most 6 dimensions, got " << ndim);
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= out_shape[d];
  if (n <= 0) return;
  const bool a_full = full_shaped(a_strides, out_shape, ndim), b_full = full_shaped(b_strides, out_shape, ndim);
  const bool reads_other = op == BinaryOp::Mul || op == BinaryOp::Div;
  for (const bool wrt_a : {true, false}) {
    float* grad = wrt_a ? da : db;
    if (!grad) continue;
    if (wrt_a ? a_full : b_full) {
      const BroadcastArgs args = broadcast_args(a_strides, b_strides, out_shape, ndim);
      const bool decode = reads_other && !(wrt_a ? b_full : a_full);
      if (decode)
        VC_LAUNCH(binary_backward_full_kernel<true>, cuda::blocks_for(n, kThreads), kThreads, 0)(op, wrt_a, a, b, dy,
                                                                                                grad, n, args);
      else
        VC_LAUNCH(binary_backward_full_kernel<false>, cuda::blocks_for(n, kThreads), kThreads, 0)(op, wrt_a, a, b, dy,
                                                                                                 grad, n, args);
      VC_CHECK_LAUNCH("binary backward (full-shaped operand)");
      continue;
    }
    const int64_t* strides = wrt_a ? a_strides : b_strides;
    BinaryGradArgs g{};
    g.ndim = ndim;
    int64_t stride = 1, elements = 1;
    g.bcast_count = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      g.shape[d] = out_shape[d];
      g.a_strides[d] = a_strides[d];
      g.b_strides[d] = b_strides[d];
      g.out_strides[d] = stride;
      stride *= out_shape[d];
    }
    for (int d = 0; d < ndim; ++d) {
      if (strides[d] != 0 || out_shape[d] == 1) {
        g.kept[g.nkept++] = d;
        elements *= out_shape[d];
      } else {
        g.bcast[g.nbcast++] = d;
        g.bcast_count *= out_shape[d];
      }
    }
    if (g.bcast_count < 32) {
      VC_LAUNCH(binary_backward_serial_kernel, cuda::blocks_for(elements, kThreads), kThreads, 0)(op, wrt_a, a, b, dy,
                                                                                                 grad, elements, g);
      VC_CHECK_LAUNCH("binary backward (broadcast operand, serial)");
    } else {
      VC_LAUNCH(binary_backward_warp_kernel, cuda::blocks_for(elements * 32, kThreads), kThreads, 0)(
          op, wrt_a, a, b, dy, grad, elements, g);
      VC_CHECK_LAUNCH("binary backward (broadcast operand, one warp per element)");
    }
  }
}

void gated_tanh_sigmoid_backward_cuda(const float* x, const float* dy, float* dx, int64_t outer, int64_t C,
                                      int64_t inner) {
  const int64_t n = outer * C * inner;
  if (n <= 0) return;
  VC_LAUNCH(gated_backward_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(x, dy, dx, outer, C, inner);
  VC_CHECK_LAUNCH("gated_tanh_sigmoid backward");
}

void softmax_backward_cuda(const float* y, const float* dy, float* dx, int64_t rows, int64_t n) {
  if (rows <= 0 || n <= 0) return;
  VC_CHECK(rows <= 0x7fffffff, "softmax backward: " << rows << " rows exceed the grid");
  VC_LAUNCH(softmax_backward_kernel, static_cast<unsigned>(rows), kThreads, 0)(y, dy, dx, n);
  VC_CHECK_LAUNCH("softmax backward");
}

void sum_mid_backward_cuda(const float* dy, float* dx, int64_t outer, int64_t mid, int64_t inner) {
  const int64_t n = outer * mid * inner;
  if (n <= 0) return;
  VC_LAUNCH(sum_mid_backward_kernel, cuda::blocks_for(n, kThreads), kThreads, 0)(dy, dx, outer, mid, inner);
  VC_CHECK_LAUNCH("sum_mid backward");
}

}  // namespace vitscuda::kernels
