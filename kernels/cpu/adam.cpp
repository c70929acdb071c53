#include "kernels/adam.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace vitscuda::kernels {

namespace {

constexpr int64_t kParallelThreshold = 65536;
constexpr int64_t kChunk = 16384;  // elements per OpenMP work item

// GCC only: clang (14) does not multiversion function templates and rejects the attribute.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VITSCUDA_FMA_CLONES __attribute__((target_clones("default", "arch=haswell")))
#else
#define VITSCUDA_FMA_CLONES
#endif

template <typename T>
struct UpdateCoefficients {
  T grad_scale, clip_coef, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
  // at::lerp(start, end, w) as ATen's CPU kernels evaluate it (vectorised and scalar paths alike):
  // fma(lerp_coeff, end - start, lerp_anchor_is_end ? end : start), with coeff w when |w| < 0.5
  // and w - 1 otherwise (anchored at the nearer end).
  T lerp_coeff;
  bool lerp_anchor_is_end;
  // 1 - lr * weight_decay; exactly 1 without decay, where multiplying changes no bit (torch skips it).
  T decay_factor = T(1);
};

// The update of elements [begin, end). Also compiled for Haswell (FMA, AVX2) and picked at
// load time where the CPU has it: std::fma is then one instruction instead of a libm call.
// Every operation is elementwise and correctly rounded, so both builds give identical bits.
template <typename T>
VITSCUDA_FMA_CLONES void adamw_span(T* param, const T* grad, T* m, T* v, int64_t begin, int64_t end,
                                    const UpdateCoefficients<T> c) {
  for (int64_t i = begin; i < end; ++i) {
    const T g = (grad[i] * c.grad_scale) * c.clip_coef;
    const T p = param[i] * c.decay_factor;                         // param.mul_(1 - lr * wd)
    const T mi = std::fma(c.lerp_coeff, g - m[i], c.lerp_anchor_is_end ? g : m[i]);  // exp_avg.lerp_(grad, 1 - beta1)
    const T vi = std::fma(c.one_minus_beta2 * g, g, v[i] * c.beta2);  // exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
    const T denom = std::sqrt(vi) / c.bc2_sqrt + c.eps;            // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
    param[i] = p + (c.neg_step_size * mi) / denom;                 // param.addcdiv_(exp_avg, denom, -step_size)
    m[i] = mi;
    v[i] = vi;
  }
}

void check_ranges(const std::vector<AdamRange>& ranges, int64_t n) {
  int64_t previous_end = 0;
  for (size_t r = 0; r < ranges.size(); ++r) {
    const AdamRange& range = ranges[r];
    VC_CHECK(range.begin >= previous_end && range.begin <= range.end && range.end <= n,
             "adamw: range " << r << " [" << range.begin << ", " << range.end
                             << ") is not sorted, non-overlapping and within the " << n << "-element buffers"
                             << " (previous range ended at " << previous_end << ")");
    VC_CHECK(std::isfinite(range.weight_decay) && range.weight_decay >= 0.0,
             "adamw: range " << r << " has weight decay " << range.weight_decay << ", expected a finite value >= 0");
    previous_end = range.end;
  }
}

}  // namespace

template <typename T>
void adamw_update_cpu(T* param, const T* grad, T* m, T* v, int64_t n, const std::vector<AdamRange>& ranges,
                      const AdamStepScalars& s) {
  check_ranges(ranges, n);
  VC_CHECK(s.step >= 1, "adamw: step " << s.step << " must be >= 1 (the count after this update)");

  // Host scalars exactly as _single_tensor_adam forms them from Python floats (doubles);
  // each is then rounded once to T, as ATen does for a Python scalar operand.
  const double step = static_cast<double>(s.step);
  const double bias_correction1 = 1.0 - std::pow(s.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(s.beta2, step);
  const double step_size = s.lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);  // Python's `** 0.5`

  UpdateCoefficients<T> c;
  c.grad_scale = static_cast<T>(s.grad_scale);
  c.clip_coef = static_cast<T>(s.clip_coef);
  const T lerp_weight = static_cast<T>(1.0 - s.beta1);
  c.lerp_anchor_is_end = !(std::fabs(lerp_weight) < T(0.5));
  c.lerp_coeff = c.lerp_anchor_is_end ? lerp_weight - T(1) : lerp_weight;
  c.beta2 = static_cast<T>(s.beta2);
  c.one_minus_beta2 = static_cast<T>(1.0 - s.beta2);
  c.bc2_sqrt = static_cast<T>(bias_correction2_sqrt);
  c.eps = static_cast<T>(s.eps);
  c.neg_step_size = static_cast<T>(-step_size);

  int64_t total = 0;
  for (const AdamRange& r : ranges) total += r.end - r.begin;

#pragma omp parallel if (total > kParallelThreshold)
  for (const AdamRange& r : ranges) {
    UpdateCoefficients<T> rc = c;
    rc.decay_factor = static_cast<T>(1.0 - s.lr * r.weight_decay);
    const int64_t chunks = (r.end - r.begin + kChunk - 1) / kChunk;
#pragma omp for schedule(static) nowait
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t begin = r.begin + chunk * kChunk;
      adamw_span(param, grad, m, v, begin, std::min(begin + kChunk, r.end), rc);
    }
  }
}

template <typename T>
void adamw_update_cpu(T* param, const T* grad, T* m, T* v, int64_t n, int64_t boundary, double weight_decay,
                      const AdamStepScalars& scalars) {
  VC_CHECK(boundary >= 0 && boundary <= n,
           "adamw: weight-decay boundary " << boundary << " is outside the " << n << "-element buffers");
  const std::vector<AdamRange> ranges = {{0, boundary, weight_decay}, {boundary, n, 0.0}};
  adamw_update_cpu(param, grad, m, v, n, ranges, scalars);
}

template <typename T>
double flat_sum_squares_cpu(const T* x, int64_t n) {
  // Fixed chunks summed in order, whatever the number of threads: the gradient norm (and so the
  // clipped update) is the same bits on any machine, as OpenMP's reduction would not guarantee.
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    double sum = 0.0;
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      const double xi = static_cast<double>(x[i]);
      sum += xi * xi;
    }
    partial[static_cast<size_t>(c)] = sum;
  }
  double sum = 0.0;
  for (const double p : partial) sum += p;
  return sum;
}

template <typename T>
void flat_scale_cpu(T* x, int64_t n, double s) {
  const T factor = static_cast<T>(s);
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

template <typename T>
void flat_zero_cpu(T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) x[i] = T(0);
}

#define VITSCUDA_INSTANTIATE_ADAM(T)                                                                        \
  template void adamw_update_cpu<T>(T*, const T*, T*, T*, int64_t, const std::vector<AdamRange>&,            \
                                    const AdamStepScalars&);                                                 \
  template void adamw_update_cpu<T>(T*, const T*, T*, T*, int64_t, int64_t, double, const AdamStepScalars&); \
  template double flat_sum_squares_cpu<T>(const T*, int64_t);                                              \
  template void flat_scale_cpu<T>(T*, int64_t, double);                                                    \
  template void flat_zero_cpu<T>(T*, int64_t);

VITSCUDA_INSTANTIATE_ADAM(float)
VITSCUDA_INSTANTIATE_ADAM(double)
#undef VITSCUDA_INSTANTIATE_ADAM

}  // namespace vitscuda::kernels
