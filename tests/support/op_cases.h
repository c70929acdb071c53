// The op case list: one entry per op case, read by every op check and by the benchmark (the idea
// of ggml's test-backend-ops). Each case names the ops:: functions it exercises, its inputs (small
// shapes for the double-precision gradient check on the CPU, VITS-size shapes for CUDA against the
// CPU and for bench_kernels), how to build the output from the inputs with ops:: (run under a
// recording tape for the gradients), how closely CUDA must match the CPU and why, and which inputs
// are differentiable. From this list:
//   - tests/engine/test_op_cases.cpp: OpCases/Gradcheck.* (f64 central differences, one test per
//     case), OpCases/AtVitsShape.* (the VITS-size case runs forward and backward on the CPU), and the
//     coverage test (every op declared in engine/ops*.h has a case or a stated exemption);
//   - tests/cuda/test_cuda_op_cases.cpp: OpCases/CudaVsCpu.{Forward,Backward}/<case>;
//   - bench/kernel_bench.cpp: a forward and a backward row per case (and CUDA variant).
// Adding an op: one entry in op_cases.cpp gives all of these.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::testing {

// How CUDA's f32 result must match the CPU's f32 result, and why.
struct Tolerance {
  enum class Kind {
    Exact,       // max |a - b| == 0
    Pointwise,   // |a - b| <= abs + rel * |b| for every element
    RelativeL2,  // ||a - b|| / ||b|| < rel
  };
  std::string name;
  Kind forward = Kind::Exact;
  double forward_abs = 0, forward_rel = 0;
  double backward_rel_l2 = 2e-5;  // input gradients, always compared in relative L2
  std::string reason;
};

// Copies, gathers, layout ops and IEEE-correctly-rounded +, -, *, / (same order on both sides):
// exact. Their gradients sum over broadcast or repeated positions in another order (atomics in
// scatter-adds): relative L2 2e-5 (~sqrt(K) * 6e-8 for sums of K terms, with margin).
extern const Tolerance kExact;
// libm functions: CUDA's expf/tanhf/erff/log1pf are within 2 ulp and glibc's within 1, so the two
// differ by a few ulp (~4e-7 relative): abs 2e-6 + rel 2e-6 leaves margin.
extern const Tolerance kPointwise;
// Sums of K products in another order (cuBLAS, our kernels): float error ~sqrt(K) * 6e-8 ~ 1e-6
// for K ~ 2800; 2e-5 relative L2 catches any wrong index, padding or offset (O(1) errors).
extern const Tolerance kReduction;
// cuDNN may choose an FFT or Winograd algorithm, whose fp32 error reaches ~1e-5 relative: 1e-4
// still catches any wrong padding, dilation or channel mapping (O(1) errors). Same for gradients.
extern const Tolerance kCudnn;
// Normalisations: per-row statistics accumulated in double on both sides; only the final float
// roundings differ, so the output matches to 1e-5 relative L2 (inputs offset by 50, where a
// one-pass variance would lose digits).
extern const Tolerance kNormalisation;
// Weight norm: one norm per output row accumulated in double, then a scale: 1e-6 relative L2.
extern const Tolerance kWeightNorm;
// The spline's outputs and log|det|: libm ulps (expf, logf, log1pf within 2 ulp on the GPU)
// amplified by the local slope and by the log-determinant's conditioning f''/f' (measured 8.6e-4
// worst element with a simulated 1-ulp libm change): 1e-4 relative L2, forward and backward.
extern const Tolerance kSpline;

struct Comparison {
  bool ok = false;
  double value = 0;  // the measured error (Exact: max |diff|; Pointwise: worst ratio; L2: relative L2)
  std::string detail;
};
// CUDA's output against the CPU's (shapes must match; a shape mismatch or a NaN on one side only fails).
Comparison compare_forward(const Tolerance& tolerance, const Tensor& got, const Tensor& reference);
Comparison compare_gradient(const Tolerance& tolerance, const Tensor& got, const Tensor& reference);

// An input's values: f64 on the CPU, for one input of `shape`; `shapes` are all the case's input
// shapes at the same size (index generators take their ranges from them).
using Generator = std::function<Tensor(const Shape& shape, const std::vector<Shape>& shapes, uint32_t seed)>;
Generator normal(double scale = 1.0);
Generator uniform(double lo, double hi);
// Normal values at least `gap` away from each kink (relu's 0, clamp_min's bound, softplus's
// threshold, the spline's tail bound), so central differences never straddle one.
Generator away_from(double scale, std::vector<double> kinks, double gap = 1e-3);
// |normal(scale)| + 0.05: inputs of log.
Generator positive(double scale = 2.0);
// Integers in [0, shapes[input][dim]) (embedding ids: repeats included, so gradients add up).
Generator indices_below(int input, int dim);
// [B, F] frame indices into [0, T = shapes[input][dim]): a monotone expansion using every token, with
// the last item padded (-1) after 3/4 of its frames (the length regulator's index).
Generator frame_expansion(int input, int dim);
// [B, T] key mask: item 0 all valid, item b > 0 valid for its first T * 3/5 positions, 0 after.
Generator padding_mask();

// The integer values of a host input (ids, frame indices).
std::vector<int32_t> int_values(const Tensor& t);

struct InputSpec {
  std::string name;
  Shape small, large;
  Generator generate;
  bool differentiable = true;
  bool host = false;  // stays on the CPU as f64 (integer indices the op reads on the host)
};

enum class CaseSize { Small, Large };

// A way to run the op on CUDA (e.g. conv1d's cuDNN and im2col paths), with its own tolerance.
struct CudaVariant {
  std::string name;
  std::function<void()> select;  // sets the path; reset_cuda_variants() restores the default
  Tolerance tolerance;
};

using BuildFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string name;              // test and benchmark name: the op and what the case is about
  std::vector<std::string> ops;  // the ops:: functions it exercises (the coverage test reads this)
  std::vector<InputSpec> inputs;
  BuildFn build;
  Tolerance tolerance;
  std::vector<CudaVariant> cuda_variants;  // empty: one run with `tolerance`
  double gradcheck_tolerance = 1e-6;       // support/gradcheck.h explains why 1e-6 holds
  // The op has no backward and refuses an input that needs a gradient (rather than recording
  // nothing): the gradient check then expects that error.
  bool refuses_gradient = false;

  bool any_differentiable() const;
  std::vector<bool> differentiable() const;
  // The variants CUDA runs (the case's own tolerance when it lists none).
  std::vector<CudaVariant> variants() const;
};

// Every case, in a fixed order; names are unique and valid gtest parameter names.
const std::vector<OpCase>& op_cases();
std::vector<std::string> op_case_names();
const OpCase& op_case(const std::string& name);  // throws naming the case when it is not in the list
// The default CUDA paths (after running a variant).
void reset_cuda_variants();

// The inputs of `c` at `size`: f64 CPU tensors, drawn from seeds derived from the case and input
// names (the same values in every run and binary).
std::vector<Tensor> case_inputs(const OpCase& c, CaseSize size);
// The inputs converted to `dtype` and moved to `device` (host inputs stay as they are).
std::vector<Tensor> place_inputs(const OpCase& c, const std::vector<Tensor>& values, Device device, DType dtype);
// The output with nothing recorded.
Tensor run_forward(const OpCase& c, const std::vector<Tensor>& placed);
// The gradients of L = sum((f(x) + f(x)) * r) (r uniform in [-1, 1) from `r_seed`) for every
// differentiable input (undefined for the others): f runs twice, so each gradient is the sum of two
// backward calls and the kernels' "accumulate (+=)" contract is exercised; the weighted sum keeps
// gradients that a plain sum would cancel (softmax, normalisations) visible.
std::vector<Tensor> run_gradients(const OpCase& c, const std::vector<Tensor>& placed, uint64_t r_seed = 99);
// "x f32[2, 3] cpu, w ..." for messages and the benchmark's shape column.
std::string describe_inputs(const OpCase& c, const std::vector<Tensor>& values);

}  // namespace vitscuda::testing
