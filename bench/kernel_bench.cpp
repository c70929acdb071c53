// bench_kernels: microbenchmarks of the CUDA forward ops that synthesis uses, at the shapes of the
// model in --config (mms-tts-eng by default), for each batch size and audio length asked for, and
// the forward and the backward of every case of the op case list (tests/support/op_cases.h, the list
// the gradient checks and the CUDA-vs-CPU tests read) at its VITS shape, through the engine's ops and
// tape ("<case>[forward] op case", "<case>[backward/<variant>] op case"; no baseline, no FLOP count).
//
// Every case: inputs drawn at random on the device (never zeros), the output poisoned with NaN and
// checked after the first run (an element left unwritten fails the case), warm-up runs, then timed
// runs, each between two CUDA events on the compute stream, with the L2 flushed before each unless
// --hot. Reported: the median time, the analytic FLOP count and the fewest bytes the op must move
// (each input read once, each output written once), achieved TFLOP/s and GB/s, their fractions of
// the device's peaks from kernels::device_info(), and, where the kernel is our own, the time of a
// vendor baseline timed the same way and the ratio ours / baseline (> 1: ours is slower).
//
// Exit status: 0 every case ran, 1 a case failed, 2 bad arguments, 77 no usable CUDA device (skipped).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "common/error.h"
#include "engine/autograd.h"
#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "io/hf_config.h"
#include "kernels/alignment.h"
#include "kernels/attention.h"
#include "kernels/backend.h"
#include "kernels/conv1d.h"
#include "kernels/conv_transpose1d.h"
#include "kernels/cuda/common.cuh"  // the compute stream and cuBLAS handle the ops use (events, baselines)
#include "kernels/cuda/conv_common.cuh"  // the algorithm cache, cleared for the new-shape-class rows
#include "kernels/device.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"
#include "kernels/philox.h"
#include "kernels/spline.h"
#include "model/adversarial_losses.h"
#include "model/discriminator.h"
#include "support/op_cases.h"

namespace vitscuda::bench {
namespace {

namespace kc = ::vitscuda::kernels::cuda;
using kernels::Conv1dCudaPath;


cudaStream_t stream() { return kc::compute_stream(); }

// ---------------------------------------------------------------- buffers

Rng& input_rng() {
  static Rng rng(20240917);
  return rng;
}

Tensor dev_random(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CUDA);
  input_rng().fill_normal(t);
  return t;
}

Tensor dev_uniform(const Shape& shape, double lo, double hi) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CUDA);
  input_rng().fill_uniform(t, lo, hi);
  return t;
}

// Output buffer filled with NaN (all bits set), so an element the op leaves unwritten shows.
Tensor dev_poisoned(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CUDA);
  CUDA_CHECK(cudaMemsetAsync(t.raw(), 0xFF, t.nbytes(), stream()));
  return t;
}

float* f(const Tensor& t) { return t.data<float>(); }

std::string dims(const std::string& name, const Shape& s) { return name + shape_str(s); }

// ---------------------------------------------------------------- cases

// What a case's prepare() hands back: the op, its baseline (empty: none), the output to check.
// The closures hold the tensors, so the buffers live exactly as long as this.
struct Prepared {
  std::function<void()> run;
  std::function<void()> baseline;
  Tensor output;
  std::function<void()> setup;   // before every run, outside the timed interval (e.g. the forward of a backward)
  std::function<Tensor()> result;  // the output to check when the run allocates it (else `output`)
  double bytes = 0;                // when > 0: the case's byte count, known only once prepared
};

struct Case {
  std::string op, variant, where, config;  // name = op[variant] where config
  std::string shape;
  double flops = 0;  // analytic count (multiply-add = 2; exp, tanh, sqrt... = 1)
  double bytes = 0;  // fewest bytes moved: each input read once, each output written once
  std::string baseline;      // what the baseline is ("" none)
  std::string baseline_ref;  // or: the name of an earlier case whose time is the baseline
  std::function<void()> before;  // e.g. forcing a conv1d path
  std::function<Prepared()> prepare;

  std::string name() const {
    std::string n = op;
    if (!variant.empty()) n += "[" + variant + "]";
    n += " " + where;
    if (!config.empty()) n += " " + config;
    return n;
  }
};

// Copies of the same read+write traffic: a copy of n bytes reads n and writes n.
const char* const kCopyBaseline = "cudaMemcpyAsync D2D of the same traffic (bytes/2 copied)";
const char* const kSetBaseline = "cudaMemsetAsync of the same bytes";

std::function<void()> copy_baseline(double bytes) {
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(bytes / 2 / sizeof(float)));
  Tensor src = dev_random({n});
  Tensor dst = Tensor::empty({n}, DType::F32, Device::CUDA);
  return [src, dst] { CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, stream())); };
}

std::function<void()> set_baseline(double bytes) {
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(bytes / sizeof(float)));
  Tensor dst = Tensor::empty({n}, DType::F32, Device::CUDA);
  return [dst] { CUDA_CHECK(cudaMemsetAsync(dst.raw(), 0x3F, dst.nbytes(), stream())); };
}

// Row-major C[M, N] = A[M, K] B[K, N] for `batch` products with the given element strides, on
// the ops' cuBLAS handle (same math mode: full fp32). cuBLAS is column-major, so C^T = B^T A^T.
void gemm_rowmajor(bool trans_b, int M, int N, int K, const float* A, int64_t sA, const float* B, int64_t sB,
                   float* C, int64_t sC, int batch) {
  const float one = 1.0f, zero = 0.0f;
  // B [K, N] row-major is column-major [N, K] (ld N); with trans_b, B is stored as [N, K] row-major.
  const cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ldb = trans_b ? K : N;
  CUBLAS_CHECK(cublasSgemmStridedBatched(kc::cublas_handle(), opB, CUBLAS_OP_N, N, M, K, &one, B, ldb, sB, A, K, sA,
                                         &zero, C, N, sC, batch));
}

struct Config {
  io::VitsConfig model;
  std::vector<int> batches;
  std::vector<double> seconds;
  double tokens_per_second = 15;
};

struct Combo {
  int B;
  double seconds;
  int64_t frames, tokens, samples;
  std::string label;
};

std::vector<Combo> combos(const Config& cfg) {
  std::vector<Combo> out;
  const int hop = cfg.model.total_upsample();
  for (int B : cfg.batches)
    for (double s : cfg.seconds) {
      Combo c;
      c.B = B;
      c.seconds = s;
      c.frames = std::max<int64_t>(1, std::llround(s * cfg.model.sampling_rate / hop));
      c.tokens = std::max<int64_t>(1, std::llround(s * cfg.tokens_per_second));
      c.samples = c.frames * hop;
      std::ostringstream os;
      os << "B" << B << " " << s << "s";
      c.label = os.str();
      out.push_back(c);
    }
  return out;
}

// ---- conv1d: one case per path per distinct shape

struct ConvShape {
  std::string where;
  int Cin, Cout, K, dilation, groups, pad_left, pad_right;
  int64_t Tin;
  bool bias;
};

void add_conv1d(std::vector<Case>& cases, std::set<std::string>& seen, const ConvShape& s, const Combo& cb) {
  std::ostringstream key;
  key << cb.B << ' ' << s.Cin << ' ' << s.Cout << ' ' << s.K << ' ' << s.dilation << ' ' << s.groups << ' '
      << s.pad_left << ' ' << s.pad_right << ' ' << s.Tin << ' ' << s.bias;
  if (!seen.insert(key.str()).second) return;  // the same shape elsewhere in the model
  const int B = cb.B;
  const int64_t Tout = kernels::conv1d_output_length(s.Tin, s.K, 1, s.pad_left, s.pad_right, s.dilation);
  const Shape xs{B, s.Cin, s.Tin}, ws{s.Cout, s.Cin / s.groups, s.K}, ys{B, s.Cout, Tout};
  Case base;
  base.op = "conv1d";
  base.where = s.where;
  base.config = cb.label;
  base.shape = dims("x", xs) + " w" + shape_str(ws) + " y" + shape_str(ys) + " dil " + std::to_string(s.dilation) +
               " groups " + std::to_string(s.groups) + " pad " + std::to_string(s.pad_left) + "/" +
               std::to_string(s.pad_right) + (s.bias ? " bias" : "");
  base.flops = 2.0 * B * s.Cout * (s.Cin / s.groups) * s.K * Tout;
  base.bytes = 4.0 * (shape_numel(xs) + shape_numel(ws) + (s.bias ? s.Cout : 0) + shape_numel(ys));
  base.prepare = [=] {
    Tensor x = dev_random(xs), w = dev_random(ws), y = dev_poisoned(ys);
    Tensor b = s.bias ? dev_random({s.Cout}) : Tensor();
    Prepared p;
    p.output = y;
    p.run = [=] {
      kernels::conv1d_forward_cuda(f(x), f(w), b.defined() ? f(b) : nullptr, f(y), B, s.Cin, static_cast<int>(s.Tin),
                                   s.Cout, s.K, 1, s.pad_left, s.pad_right, s.dilation, s.groups);
    };
    return p;
  };
  Case cudnn = base;
  cudnn.variant = "cudnn";
  cudnn.before = [] { kernels::conv1d_set_cuda_path(Conv1dCudaPath::Cudnn); };
  Case ours = base;
  ours.variant = "im2col";
  ours.before = [] { kernels::conv1d_set_cuda_path(Conv1dCudaPath::Im2colGemm); };
  ours.baseline = "conv1d cuDNN path, same shape";
  ours.baseline_ref = cudnn.name();
  // The first call of a new shape class: the algorithm choice (cuDNN's heuristic ranking and the
  // workspace queries) plus the convolution; its baseline is the same call with the class cached.
  Case fresh = cudnn;
  fresh.variant = "cudnn/new shape class";
  fresh.baseline = "the same call with its shape class cached";
  fresh.baseline_ref = cudnn.name();
  fresh.prepare = [prepare = base.prepare] {
    Prepared p = prepare();
    p.run = [run = p.run] {
      kernels::cuda::conv_plan_cache_clear();
      run();
    };
    return p;
  };
  cases.push_back(cudnn);
  cases.push_back(ours);
  cases.push_back(fresh);
}

void conv1d_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  std::set<std::string> seen;
  const int H = c.hidden_size;
  const int64_t T = cb.tokens, F = cb.frames;
  // Text encoder (tokens): the feed-forward convs and the prior projection.
  const int fk = c.ffn_kernel_size;
  add_conv1d(cases, seen, {"encoder.ffn.conv_1", H, c.ffn_dim, fk, 1, 1, (fk - 1) / 2, fk / 2, T, true}, cb);
  add_conv1d(cases, seen, {"encoder.ffn.conv_2", c.ffn_dim, H, fk, 1, 1, (fk - 1) / 2, fk / 2, T, true}, cb);
  add_conv1d(cases, seen, {"encoder.project", H, 2 * c.flow_size, 1, 1, 1, 0, 0, T, true}, cb);
  // Stochastic duration predictor (tokens): 1x1 convs, the depthwise dilated convs, the flows' convs.
  if (c.use_stochastic_duration_prediction) {
    add_conv1d(cases, seen, {"duration.pointwise", H, H, 1, 1, 1, 0, 0, T, true}, cb);
    const int k = c.duration_predictor_kernel_size;
    for (int i = 0, d = 1; i < c.depth_separable_num_layers; ++i, d *= k)
      add_conv1d(cases, seen, {"duration.dds.depthwise d" + std::to_string(d), H, H, k, d, H, (k * d - d) / 2,
                               (k * d - d) / 2, T, true},
                 cb);
    const int half = c.depth_separable_channels / 2;
    add_conv1d(cases, seen, {"duration.flow.conv_pre", half, H, 1, 1, 1, 0, 0, T, true}, cb);
    add_conv1d(cases, seen,
               {"duration.flow.conv_proj", H, half * (3 * c.duration_predictor_flow_bins - 1), 1, 1, 1, 0, 0, T, true},
               cb);
  }
  // Flow (frames): coupling layers' convs and the WaveNet's.
  const int half = c.flow_size / 2;
  add_conv1d(cases, seen, {"flow.conv_pre", half, H, 1, 1, 1, 0, 0, F, true}, cb);
  const int wk = c.wavenet_kernel_size;
  for (int i = 0, d = 1; i < c.prior_encoder_num_wavenet_layers; ++i, d *= c.wavenet_dilation_rate)
    add_conv1d(cases, seen, {"flow.wavenet.in d" + std::to_string(d), H, 2 * H, wk, d, 1, (wk * d - d) / 2,
                             (wk * d - d) / 2, F, true},
               cb);
  add_conv1d(cases, seen, {"flow.wavenet.res_skip", H, 2 * H, 1, 1, 1, 0, 0, F, true}, cb);
  add_conv1d(cases, seen, {"flow.wavenet.res_skip.last", H, H, 1, 1, 1, 0, 0, F, true}, cb);
  add_conv1d(cases, seen, {"flow.conv_post", H, half, 1, 1, 1, 0, 0, F, true}, cb);
  // HiFi-GAN: conv_pre, every resblock conv of every stage, conv_post.
  add_conv1d(cases, seen, {"decoder.conv_pre", c.flow_size, c.upsample_initial_channel, 7, 1, 1, 3, 3, F, true}, cb);
  int64_t len = F;
  int channels = c.upsample_initial_channel;
  for (size_t i = 0; i < c.upsample_rates.size(); ++i) {
    len *= c.upsample_rates[i];
    channels = c.upsample_initial_channel >> (i + 1);
    for (size_t r = 0; r < c.resblock_kernel_sizes.size(); ++r) {
      const int k = c.resblock_kernel_sizes[r];
      for (int d : c.resblock_dilation_sizes[r])
        add_conv1d(cases, seen,
                   {"decoder.s" + std::to_string(i) + ".res k" + std::to_string(k) + " d" + std::to_string(d), channels,
                    channels, k, d, 1, (k * d - d) / 2, (k * d - d) / 2, len, true},
                   cb);
      // convs2 are dilation 1: the same shape as convs1's first unless the config says otherwise.
      add_conv1d(cases, seen,
                 {"decoder.s" + std::to_string(i) + ".res k" + std::to_string(k) + " d1", channels, channels, k, 1, 1,
                  (k - 1) / 2, (k - 1) / 2, len, true},
                 cb);
    }
  }
  add_conv1d(cases, seen, {"decoder.conv_post", channels, 1, 7, 1, 1, 3, 3, len, false}, cb);
}

// ---- conv_transpose1d: each upsampler (cuDNN's backward-data convolution)

void conv_transpose_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  int64_t len = cb.frames;
  for (size_t i = 0; i < c.upsample_rates.size(); ++i) {
    const int Cin = c.upsample_initial_channel >> i, Cout = c.upsample_initial_channel >> (i + 1);
    const int K = c.upsample_kernel_sizes[i], stride = c.upsample_rates[i], pad = (K - stride) / 2;
    const int64_t Tin = len, Tout = kernels::conv_transpose1d_output_length(Tin, K, stride, pad);
    len = Tout;
    const int B = cb.B;
    const Shape xs{B, Cin, Tin}, ws{Cin, Cout, K}, ys{B, Cout, Tout};
    Case cs;
    cs.op = "conv_transpose1d";
    cs.where = "decoder.upsampler." + std::to_string(i);
    cs.config = cb.label;
    cs.shape = dims("x", xs) + " w" + shape_str(ws) + " y" + shape_str(ys) + " stride " + std::to_string(stride) +
               " pad " + std::to_string(pad);
    cs.flops = 2.0 * B * Cin * Cout * K * Tin;
    cs.bytes = 4.0 * (shape_numel(xs) + shape_numel(ws) + Cout + shape_numel(ys));
    cs.baseline = "cublasSgemm of the equal-FLOP product W^T X per item (no col2im, no bias)";
    cs.prepare = [=] {
      Tensor x = dev_random(xs), w = dev_random(ws), b = dev_random({Cout}), y = dev_poisoned(ys);
      Tensor cols = Tensor::empty({B, int64_t(Cout) * K, Tin}, DType::F32, Device::CUDA);
      Prepared p;
      p.output = y;
      p.run = [=] {
        kernels::conv_transpose1d_forward_cuda(f(x), f(w), f(b), f(y), B, Cin, static_cast<int>(Tin), Cout, K, stride,
                                               pad);
      };
      // cols[b] [Cout*K, Tin] = W^T [Cout*K, Cin] x[b] [Cin, Tin]; W is [Cin, Cout*K] row-major.
      p.baseline = [=] {
        const float one = 1.0f, zero = 0.0f;
        const int M = Cout * K, N = static_cast<int>(Tin);
        CUBLAS_CHECK(cublasSgemmStridedBatched(kc::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_T, N, M, Cin, &one, f(x), N,
                                               int64_t(Cin) * N, f(w), M, 0, &zero, f(cols), N, int64_t(M) * N, B));
      };
      return p;
    };
    cases.push_back(cs);
  }
}

// ---- linear / matmul (cuBLAS)

void linear_matmul_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int H = c.hidden_size;
  const int rows = static_cast<int>(cb.B * cb.tokens);
  {
    Case cs;
    cs.op = "linear";
    cs.where = "encoder.attention.proj";
    cs.config = cb.label;
    cs.shape = "x[" + std::to_string(rows) + ", " + std::to_string(H) + "] w[" + std::to_string(H) + ", " +
               std::to_string(H) + "] bias";
    cs.flops = 2.0 * rows * H * H;
    cs.bytes = 4.0 * (2.0 * rows * H + double(H) * H + H);
    cs.baseline = "cublasSgemm alone (no bias)";
    cs.prepare = [=] {
      Tensor x = dev_random({rows, H}), w = dev_random({H, H}), b = dev_random({H}), y = dev_poisoned({rows, H});
      Tensor y2 = Tensor::empty({rows, H}, DType::F32, Device::CUDA);
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::linear_forward_cuda(f(x), f(w), f(b), f(y), rows, H, H); };
      p.baseline = [=] { gemm_rowmajor(true, rows, H, H, f(x), 0, f(w), 0, f(y2), 0, 1); };
      return p;
    };
    cases.push_back(cs);
  }
  {
    // The attention logits' shape: q [BH, T, D] @ k^T [BH, D, T].
    const int BH = cb.B * c.num_attention_heads, T = static_cast<int>(cb.tokens), D = H / c.num_attention_heads;
    Case cs;
    cs.op = "matmul";
    cs.where = "attention-logits shape";
    cs.config = cb.label;
    cs.shape = "a[" + std::to_string(BH) + ", " + std::to_string(T) + ", " + std::to_string(D) + "] b[" +
               std::to_string(BH) + ", " + std::to_string(D) + ", " + std::to_string(T) + "]";
    cs.flops = 2.0 * BH * T * T * D;
    cs.bytes = 4.0 * (2.0 * BH * T * D + double(BH) * T * T);
    cs.baseline = "cublasSgemmStridedBatched called directly";
    cs.prepare = [=] {
      Tensor a = dev_random({BH, T, D}), b = dev_random({BH, D, T}), y = dev_poisoned({BH, T, T});
      Tensor y2 = Tensor::empty({BH, T, T}, DType::F32, Device::CUDA);
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::matmul_forward_cuda(f(a), f(b), f(y), BH, T, D, T); };
      p.baseline = [=] {
        gemm_rowmajor(false, T, T, D, f(a), int64_t(T) * D, f(b), int64_t(D) * T, f(y2), int64_t(T) * T, BH);
      };
      return p;
    };
    cases.push_back(cs);
  }
}

// ---- relative attention

void attention_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int64_t B = cb.B, heads = c.num_attention_heads, T = cb.tokens, D = c.hidden_size / heads;
  const int64_t BH = B * heads;
  const int W = c.window_size;
  const int64_t E = W > 0 ? 2 * W + 1 : 0;
  Case cs;
  cs.op = "relative_attention";
  cs.where = "encoder.attention";
  cs.config = cb.label;
  cs.shape = dims("qkv", {BH, T, D}) + " window " + std::to_string(W) + " probs" + shape_str({BH, T, T});
  // Logits and weighted sum (2 x 2 BH T T D), the relative terms (2 x 2 BH T E D), softmax with mask (~5 per logit).
  cs.flops = 4.0 * BH * T * T * D + 4.0 * BH * T * E * D + 5.0 * BH * T * T;
  cs.bytes = 4.0 * (3.0 * BH * T * D + 2.0 * E * D + B * T + BH * T * D + double(BH) * T * T);
  cs.baseline = "cuBLAS strided-batched GEMMs q k^T and p v alone (no relative terms, mask or softmax)";
  cs.prepare = [=] {
    Tensor q = dev_random({BH, T, D}), k = dev_random({BH, T, D}), v = dev_random({BH, T, D});
    Tensor ek = W > 0 ? dev_random({E, D}) : Tensor(), ev = W > 0 ? dev_random({E, D}) : Tensor();
    Tensor mask = Tensor::full({B, T}, 1.0, DType::F32, Device::CUDA);  // every key valid (one item per length)
    Tensor out = dev_poisoned({BH, T, D}), probs = dev_poisoned({BH, T, T});
    Tensor logits = Tensor::empty({BH, T, T}, DType::F32, Device::CUDA), out2 = Tensor::empty({BH, T, D}, DType::F32, Device::CUDA);
    Prepared p;
    p.output = out;
    p.run = [=] {
      kernels::relative_attention_forward_cuda(f(q), f(k), f(v), ek.defined() ? f(ek) : nullptr,
                                               ev.defined() ? f(ev) : nullptr, f(mask), f(out), f(probs), B, heads, T,
                                               D, W);
    };
    p.baseline = [=] {
      const int t = static_cast<int>(T), d = static_cast<int>(D), bh = static_cast<int>(BH);
      gemm_rowmajor(true, t, t, d, f(q), T * D, f(k), T * D, f(logits), T * T, bh);
      gemm_rowmajor(false, t, d, t, f(logits), T * T, f(v), T * D, f(out2), T * D, bh);
    };
    return p;
  };
  cases.push_back(cs);
}

// ---- normalisations

void norm_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int H = c.hidden_size;
  const int rows = static_cast<int>(cb.B * cb.tokens);
  {
    Case cs;
    cs.op = "layer_norm";
    cs.where = "encoder (last dim)";
    cs.config = cb.label;
    cs.shape = dims("x", {rows, H});
    cs.flops = 8.0 * rows * H;  // mean, variance, normalise, scale and shift
    cs.bytes = 4.0 * (2.0 * rows * H + 2.0 * H);
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    const double eps = c.layer_norm_eps;
    cs.prepare = [=] {
      Tensor x = dev_random({rows, H}), g = dev_random({H}), b = dev_random({H}), y = dev_poisoned({rows, H});
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::layer_norm_forward_cuda(f(x), f(g), f(b), f(y), rows, H, eps); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  {
    const int B = cb.B, T = static_cast<int>(cb.tokens);
    Case cs;
    cs.op = "layer_norm_channels";
    cs.where = "duration.dds (channel dim)";
    cs.config = cb.label;
    cs.shape = dims("x", {B, H, T});
    cs.flops = 8.0 * B * H * T;
    cs.bytes = 4.0 * (2.0 * B * H * T + 2.0 * H);
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor x = dev_random({B, H, T}), g = dev_random({H}), b = dev_random({H}), y = dev_poisoned({B, H, T});
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::layer_norm_channels_forward_cuda(f(x), f(g), f(b), f(y), B, H, T, 1e-5); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
}

// Weight norm runs on every forward for the flow's WaveNet convs; its shapes do not depend on the batch.
void weight_norm_cases(const Config& cfg, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int H = c.hidden_size;
  struct WN {
    std::string where;
    int rows, n;
  };
  const std::vector<WN> shapes = {{"flow.wavenet.in", 2 * H, H * c.wavenet_kernel_size},
                                  {"flow.wavenet.res_skip", 2 * H, H},
                                  {"flow.wavenet.res_skip.last", H, H}};
  for (const WN& s : shapes) {
    Case cs;
    cs.op = "weight_norm";
    cs.where = s.where;
    cs.shape = dims("v", {s.rows, s.n});
    cs.flops = 3.0 * s.rows * s.n + 2.0 * s.rows;  // squares, sum, scale; a sqrt and a divide per row
    cs.bytes = 4.0 * (2.0 * s.rows * s.n + s.rows);
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor g = dev_random({s.rows}), v = dev_random({s.rows, s.n}), w = dev_poisoned({s.rows, s.n});
      Prepared p;
      p.output = w;
      p.run = [=] { kernels::weight_norm_forward_cuda(f(g), f(v), f(w), s.rows, s.n); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
}

// ---- pointwise

std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

void pointwise_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int H = c.hidden_size;
  const int64_t B = cb.B, F = cb.frames;
  // The decoder's activations: conv_pre's output, then each stage's resblock input.
  std::vector<std::pair<std::string, Shape>> stages = {{"decoder.pre", {B, c.upsample_initial_channel, F}}};
  int64_t len = F;
  for (size_t i = 0; i < c.upsample_rates.size(); ++i) {
    len *= c.upsample_rates[i];
    stages.push_back({"decoder.s" + std::to_string(i), {B, c.upsample_initial_channel >> (i + 1), len}});
  }
  for (const auto& stage : stages) {
    const std::string where = stage.first;
    const Shape shape = stage.second;  // a copy the closures capture (C++17 cannot capture bindings)
    const int64_t n = shape_numel(shape);
    Case cs;
    cs.op = "leaky_relu";
    cs.where = where;
    cs.config = cb.label;
    cs.shape = dims("x", shape);
    cs.flops = 1.0 * n;
    cs.bytes = 8.0 * n;
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    const double slope = c.leaky_relu_slope;
    cs.prepare = [=] {
      Tensor x = dev_random(shape), y = dev_poisoned(shape);
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::unary_forward_cuda(kernels::UnaryOp::LeakyRelu, f(x), f(y), n, slope); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  // Residual adds of the resblocks (same shapes).
  for (size_t i = 1; i < stages.size(); ++i) {
    const Shape shape = stages[i].second;
    const int64_t n = shape_numel(shape);
    Case cs;
    cs.op = "add";
    cs.where = stages[i].first + ".residual";
    cs.config = cb.label;
    cs.shape = dims("a", shape) + " + b" + shape_str(shape);
    cs.flops = 1.0 * n;
    cs.bytes = 12.0 * n;
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor a = dev_random(shape), b = dev_random(shape), y = dev_poisoned(shape);
      const std::vector<int64_t> st = contiguous_strides(shape);
      Prepared p;
      p.output = y;
      p.run = [=] {
        kernels::binary_forward_cuda(kernels::BinaryOp::Add, f(a), st.data(), f(b), st.data(), f(y), shape.data(),
                                     static_cast<int>(shape.size()));
      };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  // Broadcast over channels: the flow's masking ([B, C, T] with a [B, 1, T] mask).
  {
    const Shape shape{B, H, F}, ms{B, 1, F};
    const int64_t n = shape_numel(shape);
    Case cs;
    cs.op = "add.broadcast";
    cs.where = "flow [B,C,T] + [B,1,T]";
    cs.config = cb.label;
    cs.shape = dims("a", shape) + " + b" + shape_str(ms);
    cs.flops = 1.0 * n;
    cs.bytes = 4.0 * (2.0 * n + shape_numel(ms));
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor a = dev_random(shape), b = dev_random(ms), y = dev_poisoned(shape);
      const std::vector<int64_t> sa = contiguous_strides(shape);
      std::vector<int64_t> sb = contiguous_strides(ms);
      sb[1] = 0;  // the broadcast dimension
      Prepared p;
      p.output = y;
      p.run = [=] {
        kernels::binary_forward_cuda(kernels::BinaryOp::Add, f(a), sa.data(), f(b), sb.data(), f(y), shape.data(),
                                     static_cast<int>(shape.size()));
      };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  // WaveNet gate.
  {
    const Shape xs{B, 2 * H, F}, ys{B, H, F};
    const int64_t n = shape_numel(ys);
    Case cs;
    cs.op = "gated_tanh_sigmoid";
    cs.where = "flow.wavenet";
    cs.config = cb.label;
    cs.shape = dims("x", xs) + " -> y" + shape_str(ys);
    cs.flops = 3.0 * n;  // tanh, sigmoid, product
    cs.bytes = 12.0 * n;
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor x = dev_random(xs), y = dev_poisoned(ys);
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::gated_tanh_sigmoid_forward_cuda(f(x), f(y), B, H, F); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
}

// ---- layout copies the encoder and the flow make on every layer

void layout_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int64_t B = cb.B, T = cb.tokens, F = cb.frames, H = c.hidden_size;
  {
    Case cs;
    cs.op = "transpose";
    cs.where = "encoder [B,T,H]->[B,H,T]";
    cs.config = cb.label;
    cs.shape = dims("x", {B, T, H});
    cs.bytes = 8.0 * B * T * H;
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor x = dev_random({B, T, H}), y = dev_poisoned({B, H, T});
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::swap_axes_cuda(f(x), f(y), B, T, 1, H, 1, false); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  {
    const int64_t C = c.flow_size;
    Case cs;
    cs.op = "flip";
    cs.where = "flow (channels)";
    cs.config = cb.label;
    cs.shape = dims("x", {B, C, F});
    cs.bytes = 8.0 * B * C * F;
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor x = dev_random({B, C, F}), y = dev_poisoned({B, C, F});
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::flip_cuda(f(x), f(y), B, C, F, false); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
}

// ---- the rest of synthesis: embedding, spline, length regulator, noise

void misc_cases(const Config& cfg, const Combo& cb, std::vector<Case>& cases) {
  const io::VitsConfig& c = cfg.model;
  const int64_t B = cb.B, T = cb.tokens, F = cb.frames, H = c.hidden_size;
  {
    const int64_t n = B * T, vocab = c.vocab_size;
    Case cs;
    cs.op = "embedding";
    cs.where = "encoder.embed_tokens";
    cs.config = cb.label;
    cs.shape = "ids[" + std::to_string(n) + "] table" + shape_str({vocab, H});
    cs.bytes = 4.0 * (n + 2.0 * n * H);  // ids, the rows read, the output
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor table = dev_random({vocab, H}), y = dev_poisoned({n, H});
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % vocab);
      Prepared p;
      p.output = y;
      // ids is a host array: the call includes its upload, as in synthesis.
      p.run = [=] { kernels::embedding_forward_cuda(f(table), ids.data(), f(y), n, vocab, H); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  if (c.use_stochastic_duration_prediction) {
    const int64_t n = B * T * (c.depth_separable_channels / 2);
    const int bins = c.duration_predictor_flow_bins;
    Case cs;
    cs.op = "spline";
    cs.where = "duration.flow (reverse)";
    cs.config = cb.label;
    cs.shape = "n " + std::to_string(n) + " bins " + std::to_string(bins);
    // Per value: two softmaxes and cumulative sums over the bins, softplus on the derivatives,
    // the bin search and the inverse rational-quadratic (~30).
    cs.flops = double(n) * (11.0 * bins + 30.0);
    cs.bytes = 4.0 * n * (1.0 + 2.0 * bins + (bins - 1) + 2.0);
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    const double tail = c.duration_predictor_tail_bound;
    cs.prepare = [=] {
      // Inputs inside and outside the tail bound (both branches), unnormalised bin parameters.
      Tensor in = dev_uniform({n}, -1.2 * tail, 1.2 * tail);
      Tensor w = dev_random({n, bins}), h = dev_random({n, bins}), d = dev_random({n, bins - 1});
      Tensor out = dev_poisoned({n}), lad = dev_poisoned({n});
      Prepared p;
      p.output = out;
      p.run = [=] {
        kernels::rational_quadratic_spline_forward_cuda(f(in), f(w), f(h), f(d), f(out), f(lad), n, bins, true, tail);
      };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  {
    const int64_t C = c.flow_size;
    Case cs;
    cs.op = "gather_frames";
    cs.where = "length regulator";
    cs.config = cb.label;
    cs.shape = dims("x", {B, C, T}) + " -> y" + shape_str({B, C, F});
    cs.bytes = 4.0 * (B * C * T + B * F + B * C * F);
    cs.baseline = kCopyBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor x = dev_random({B, C, T}), y = dev_poisoned({B, C, F});
      // A monotone expansion using every token, as the alignment makes it.
      std::vector<int32_t> index(static_cast<size_t>(B * F));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t fr = 0; fr < F; ++fr) index[b * F + fr] = static_cast<int32_t>(fr * T / F);
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::gather_frames_cuda(f(x), index.data(), f(y), B, C, T, F); };
      p.baseline = copy_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
  for (const auto& draw : std::vector<std::pair<std::string, Shape>>{{"prior noise", {B, c.flow_size, F}},
                                                                       {"duration noise", {B, 2, T}}}) {
    const std::string where = draw.first;
    const Shape shape = draw.second;
    const int64_t n = shape_numel(shape);
    Case cs;
    cs.op = "normal";
    cs.where = where;
    cs.config = cb.label;
    cs.shape = dims("y", shape);
    cs.flops = 0;  // Philox integer rounds and double-precision log/sqrt/cos: no fp32 FLOP count
    cs.bytes = 4.0 * n;
    cs.baseline = kSetBaseline;
    const double bytes = cs.bytes;
    cs.prepare = [=] {
      Tensor y = dev_poisoned(shape);
      Prepared p;
      p.output = y;
      p.run = [=] { kernels::fill_normal_cuda(f(y), n, 12345, 0); };
      p.baseline = set_baseline(bytes);
      return p;
    };
    cases.push_back(cs);
  }
}

// ---- the discriminator of the full objective: forward, the discriminator step's backward and the generator
// side's backward at the training segment (B 16 x 8192 samples), the config's discriminator (full channels by
// default). FLOPs: the convs' multiply-adds (model::discriminator_forward_flops); a backward counts twice its
// forwards (input and weight gradients), slightly more than it does (the first convs' input gradients of the
// real branch are skipped). Bytes: the parameters and the waveforms read once, the outputs written once.

struct DiscriminatorBench {
  std::unique_ptr<model::Discriminator> disc;
  Tensor real, fake;
  autograd::Tape tape;
  Tensor loss;
};

void discriminator_cases(const Config& cfg, std::vector<Case>& cases) {
  const int64_t B = 16, N = 8192;
  const double forward = model::discriminator_forward_flops(cfg.model, B, N);
  const io::VitsConfig config = cfg.model;
  const std::string shape = dims("waveform", {B, 1, N});
  auto make = [config, B, N](bool trainable) {
    auto st = std::make_shared<DiscriminatorBench>();
    st->disc = std::make_unique<model::Discriminator>(config);
    st->disc->initialize(7);
    st->disc->to(Device::CUDA);
    if (trainable) st->disc->params().enable_grad([](const std::string&) { return true; });
    st->real = dev_uniform({B, 1, N}, -0.5, 0.5);
    st->fake = dev_uniform({B, 1, N}, -0.5, 0.5);
    return st;
  };
  auto param_bytes = [](const DiscriminatorBench& st) { return 4.0 * st.disc->params().count(); };

  Case fwd;
  fwd.op = "discriminator";
  fwd.variant = "forward";
  fwd.where = "B16 x 8192";
  fwd.shape = shape;
  fwd.flops = forward;
  fwd.prepare = [make, param_bytes] {
    auto st = make(false);
    auto out = std::make_shared<Tensor>();
    Prepared p;
    p.run = [st, out] { *out = st->disc->forward(st->real).scores.back(); };
    p.result = [out] { return *out; };
    p.bytes = param_bytes(*st) + 4.0 * st->real.numel();
    return p;
  };
  cases.push_back(fwd);

  // The discriminator step: L_D of D(real) and D(sg(fake)), gradients of every discriminator parameter.
  Case dstep = fwd;
  dstep.variant = "backward/discriminator-step";
  dstep.flops = 2.0 * 2.0 * forward;
  dstep.prepare = [make, param_bytes] {
    auto st = make(true);
    Prepared p;
    p.setup = [st] {
      st->tape.clear();
      autograd::RecordingScope recording(st->tape);
      const model::DiscriminatorOutput r = st->disc->forward(st->real), f = st->disc->forward(st->fake);
      st->loss = model::discriminator_loss(r.scores, f.scores).loss;
    };
    p.run = [st] { st->tape.backward(st->loss); };
    p.output = st->disc->params().grads();
    p.bytes = 3.0 * param_bytes(*st) + 2.0 * 4.0 * st->real.numel();
    return p;
  };
  cases.push_back(dstep);

  // The generator side: L_adv + L_fm with D(real)'s maps detached, gradients of the generated waveform (and,
  // as in finetune-hf-vits, of the discriminator's parameters).
  Case gside = fwd;
  gside.variant = "backward/generator-side";
  gside.flops = 2.0 * forward;
  gside.prepare = [make, param_bytes] {
    auto st = make(true);
    auto slot = std::make_shared<autograd::GradSlot>();
    slot->shape = st->fake.shape();
    slot->device = Device::CUDA;
    st->fake.set_grad_slot(slot);
    Prepared p;
    p.setup = [st] {
      st->tape.clear();
      autograd::RecordingScope recording(st->tape);
      model::DiscriminatorOutput r;
      {
        autograd::NoGradScope no_grad;  // its maps are constants of the loss
        r = st->disc->forward(st->real);
      }
      const model::DiscriminatorOutput f = st->disc->forward(st->fake);
      st->loss = ops::add(model::generator_adversarial_loss(f.scores).loss,
                          model::feature_matching_loss(r.feature_maps, f.feature_maps).loss);
    };
    p.run = [st] { st->tape.backward(st->loss); };
    p.output = slot->accumulator();
    p.bytes = 3.0 * param_bytes(*st) + 3.0 * 4.0 * st->real.numel();
    return p;
  };
  cases.push_back(gside);
}

// ---- the op case list: forward and backward of every case at its VITS shape, per CUDA variant

double device_bytes(const testing::OpCase& oc, const std::vector<Tensor>& values, bool differentiable_only) {
  double bytes = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (!oc.inputs[i].host && (!differentiable_only || oc.inputs[i].differentiable)) bytes += 4.0 * values[i].numel();
  return bytes;
}

// The tape of one forward, replayed backward by each timed run.
struct BackwardState {
  autograd::Tape tape;
  std::vector<Tensor> leaves;
  Tensor y, dy;
};

void op_case_rows(std::vector<Case>& cases) {
  for (const testing::OpCase& oc : testing::op_cases()) {
    std::string shapes;
    for (const testing::InputSpec& in : oc.inputs) shapes += (shapes.empty() ? "" : " ") + dims(in.name, in.large);
    const std::vector<testing::CudaVariant> variants = oc.variants();
    for (size_t v = 0; v < variants.size(); ++v)
      for (const bool backward : {false, true}) {
        if (backward && !oc.any_differentiable()) continue;  // no gradient flows (ceil)
        Case cs;
        cs.op = oc.name;
        cs.variant = std::string(backward ? "backward" : "forward") +
                     (variants[v].name.empty() ? "" : "/" + variants[v].name);
        cs.where = "op case";
        cs.shape = shapes;
        cs.before = variants[v].select;
        const std::string name = oc.name;
        cs.prepare = [name, backward] {
          const testing::OpCase& c = testing::op_case(name);
          const std::vector<Tensor> values = testing::case_inputs(c, testing::CaseSize::Large);
          const std::vector<Tensor> placed = testing::place_inputs(c, values, Device::CUDA, DType::F32);
          const Tensor y0 = testing::run_forward(c, placed);
          Prepared p;
          if (!backward) {
            auto out = std::make_shared<Tensor>();
            p.run = [&c, placed, out] { *out = testing::run_forward(c, placed); };
            p.result = [out] { return *out; };
            p.bytes = device_bytes(c, values, false) + 4.0 * y0.numel();
            return p;
          }
          auto st = std::make_shared<BackwardState>();
          Tensor first_grad;
          for (size_t i = 0; i < placed.size(); ++i) {
            if (!c.inputs[i].differentiable) {
              st->leaves.push_back(placed[i]);
              continue;
            }
            Tensor leaf = placed[i];
            auto slot = std::make_shared<autograd::GradSlot>();
            slot->shape = leaf.shape();
            slot->dtype = leaf.dtype();
            slot->device = leaf.device();
            leaf.set_grad_slot(slot);
            if (!first_grad.defined()) first_grad = slot->accumulator();
            st->leaves.push_back(leaf);
          }
          st->dy = dev_uniform(y0.shape(), -1.0, 1.0);
          p.setup = [&c, st] {
            st->tape.clear();
            autograd::RecordingScope recording(st->tape);
            st->y = c.build(st->leaves);
          };
          p.run = [st] { st->tape.backward_from(st->y, st->dy); };
          p.output = first_grad;
          // Read: the inputs the backward saved and dy; written: each differentiable input's gradient.
          p.bytes = device_bytes(c, values, false) + 4.0 * y0.numel() + device_bytes(c, values, true);
          return p;
        };
        cases.push_back(cs);
      }
  }
}

std::vector<Case> build_cases(const Config& cfg) {
  std::vector<Case> cases;
  op_case_rows(cases);
  weight_norm_cases(cfg, cases);
  discriminator_cases(cfg, cases);
  for (const Combo& cb : combos(cfg)) {
    conv1d_cases(cfg, cb, cases);
    conv_transpose_cases(cfg, cb, cases);
    linear_matmul_cases(cfg, cb, cases);
    attention_cases(cfg, cb, cases);
    norm_cases(cfg, cb, cases);
    pointwise_cases(cfg, cb, cases);
    layout_cases(cfg, cb, cases);
    misc_cases(cfg, cb, cases);
  }
  return cases;
}

// ---------------------------------------------------------------- timing

struct Timer {
  cudaEvent_t start = nullptr, stop = nullptr;
  Tensor flush;  // written before each timed run so inputs come from device memory, not the L2
  Timer(size_t flush_bytes) {
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    if (flush_bytes) flush = Tensor::empty({static_cast<int64_t>(flush_bytes / 4)}, DType::F32, Device::CUDA);
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
};

struct Timing {
  double median_ms = NAN;
  int reps = 0;
};

// `setup` (if any) runs before each run, outside the timed interval.
Timing time_fn(Timer& timer, const std::function<void()>& fn, int warmup, int reps, double budget_s,
               const std::function<void()>& setup = nullptr) {
  for (int i = 0; i < warmup; ++i) {
    if (setup) setup();
    fn();
  }
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  std::vector<double> samples;
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) {
    if (setup) setup();
    if (timer.flush.defined())
      CUDA_CHECK(cudaMemsetAsync(timer.flush.raw(), r & 0xFF, timer.flush.nbytes(), stream()));
    CUDA_CHECK(cudaEventRecord(timer.start, stream()));
    fn();
    CUDA_CHECK(cudaEventRecord(timer.stop, stream()));
    CUDA_CHECK(cudaEventSynchronize(timer.stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, timer.start, timer.stop));
    samples.push_back(ms);
    const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (samples.size() >= 3 && spent > budget_s) break;  // long cases: fewer repeats, still a median of >= 3
  }
  std::sort(samples.begin(), samples.end());
  Timing t;
  t.reps = static_cast<int>(samples.size());
  const size_t m = samples.size() / 2;
  t.median_ms = samples.size() % 2 ? samples[m] : 0.5 * (samples[m - 1] + samples[m]);
  return t;
}

// Non-finite elements of the output after a run (the output started as NaN).
int64_t non_finite(const Tensor& t) {
  const std::vector<float> host = t.to_float_vector();
  int64_t bad = 0;
  for (float v : host) bad += std::isfinite(v) ? 0 : 1;
  return bad;
}

// True when the CUDA context still works after a failed case (a kernel fault poisons it for good).
bool context_alive(std::string* why) {
  cudaError_t err = cudaStreamSynchronize(stream());
  if (err == cudaSuccess) {
    void* p = nullptr;
    err = cudaMalloc(&p, 256);
    if (err == cudaSuccess) {
      err = cudaMemsetAsync(p, 0, 256, stream());
      if (err == cudaSuccess) err = cudaStreamSynchronize(stream());
      cudaFree(p);
    }
  }
  if (err != cudaSuccess) *why = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  return err == cudaSuccess;
}

int runtime_version() {
  int v = 0;
  CUDA_CHECK(cudaRuntimeGetVersion(&v));
  return v;
}

int driver_version() {
  int v = 0;
  CUDA_CHECK(cudaDriverGetVersion(&v));
  return v;
}

// ---------------------------------------------------------------- output

struct Record {
  Case cs;
  std::string status = "ok";  // "ok", "error: ...", "not run: ..."
  double time_ms = NAN, baseline_ms = NAN;
  int reps = 0;
};

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

struct Derived {
  double tflops = NAN, gbs = NAN, flop_frac = NAN, bw_frac = NAN, ratio = NAN;
};

Derived derive(const Record& r, const kernels::DeviceInfo& dev) {
  Derived d;
  if (!(r.time_ms > 0)) return d;
  const double s = r.time_ms * 1e-3;
  if (r.cs.flops > 0) {
    d.tflops = r.cs.flops / s * 1e-12;
    d.flop_frac = d.tflops / dev.peak_fp32_tflops;
  }
  d.gbs = r.cs.bytes / s * 1e-9;
  d.bw_frac = d.gbs / dev.peak_bandwidth_gbs;
  if (r.baseline_ms > 0) d.ratio = r.time_ms / r.baseline_ms;
  return d;
}

nlohmann::json to_json(const std::vector<Record>& records, const kernels::DeviceInfo& dev, const nlohmann::json& options) {
  nlohmann::json j;
  j["program"] = "bench_kernels";
  j["device"] = {{"name", dev.name},
                 {"compute_capability", std::to_string(dev.compute_major) + "." + std::to_string(dev.compute_minor)},
                 {"multiprocessors", dev.multiprocessors},
                 {"sm_clock_ghz", dev.sm_clock_ghz},
                 {"memory_clock_ghz", dev.memory_clock_ghz},
                 {"memory_bus_bits", dev.memory_bus_bits},
                 {"peak_fp32_tflops", dev.peak_fp32_tflops},
                 {"peak_bandwidth_gbs", dev.peak_bandwidth_gbs},
                 {"l2_bytes", dev.l2_bytes},
                 {"total_memory", dev.total_memory}};
  j["options"] = options;
  j["notes"] = "ratio = time_ms / baseline_ms (> 1: ours slower). flops: multiply-add counts 2, a transcendental 1. "
               "bytes: each input read once, each output written once.";
  nlohmann::json recs = nlohmann::json::array();
  for (const Record& r : records) {
    const Derived d = derive(r, dev);
    recs.push_back({{"name", r.cs.name()},
                    {"op", r.cs.op},
                    {"variant", r.cs.variant},
                    {"where", r.cs.where},
                    {"config", r.cs.config},
                    {"shape", r.cs.shape},
                    {"status", r.status},
                    {"time_ms", num(r.time_ms)},
                    {"reps", r.reps},
                    {"flops", r.cs.flops},
                    {"bytes", r.cs.bytes},
                    {"tflops", num(d.tflops)},
                    {"gbs", num(d.gbs)},
                    {"fp32_peak_fraction", num(d.flop_frac)},
                    {"bandwidth_peak_fraction", num(d.bw_frac)},
                    {"baseline", r.cs.baseline.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.cs.baseline)},
                    {"baseline_ms", num(r.baseline_ms)},
                    {"ratio", num(d.ratio)},
                    {"device", dev.name}});
  }
  j["records"] = recs;
  return j;
}

std::string fmt(const char* spec, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

void print_header() {
  std::printf("%-50s %10s %8s %6s %8s %6s %10s %7s  %s\n", "case", "ms", "TFLOP/s", "%fp32", "GB/s", "%bw", "base ms",
              "ratio", "status");
}

void print_row(const Record& r, const kernels::DeviceInfo& dev) {
  const Derived d = derive(r, dev);
  std::printf("%-50s %10s %8s %6s %8s %6s %10s %7s  %s\n", r.cs.name().c_str(), fmt("%.4f", r.time_ms).c_str(),
              fmt("%.2f", d.tflops).c_str(), fmt("%.1f", 100 * d.flop_frac).c_str(), fmt("%.1f", d.gbs).c_str(),
              fmt("%.1f", 100 * d.bw_frac).c_str(), fmt("%.4f", r.baseline_ms).c_str(), fmt("%.2f", d.ratio).c_str(),
              r.status.c_str());
  std::fflush(stdout);
}

std::vector<double> parse_list(const std::string& text, const char* what) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    VC_CHECK(!item.empty() && end && *end == '\0' && v > 0, what << ": '" << item << "' in '" << text
                                                                 << "' is not a positive number");
    out.push_back(v);
  }
  VC_CHECK(!out.empty(), what << ": empty list");
  return out;
}

int run(int argc, char** argv) {
  CLI::App app{"bench_kernels: CUDA op microbenchmarks at a VITS model's shapes and of the op case list"};
  std::string config_path = "tests/data/mms_tts_eng/config.json", json_path, batches_s = "1,8", seconds_s = "2,10";
  std::vector<std::string> filters;
  bool quick = false, list = false, hot = false;
  int reps = -1, warmup = -1;
  double max_seconds = 0, case_seconds = -1, tps = 15;
  app.add_option("--config", config_path, "HF config.json giving the shapes (default: mms-tts-eng's, from the repo root)");
  app.add_option("--filter", filters, "Run only cases whose name contains SUBSTR (repeatable: any of them)");
  app.add_flag("--quick", quick, "Few repeats (1 warm-up, 5 timed runs)");
  app.add_option("--json", json_path, "Write one JSON record per case to FILE (rewritten after each case)");
  app.add_flag("--list", list, "List the cases and exit (needs no GPU)");
  bool info_only = false;
  app.add_flag("--device-info", info_only, "Print the device's properties and peaks and exit");
  app.add_flag("--hot", hot, "Do not flush the L2 before each timed run");
  app.add_option("--reps", reps, "Timed runs per case (default 30; --quick 5; 0: run each case once and check its output, no timing)");
  app.add_option("--warmup", warmup, "Warm-up runs per case (default 3; --quick 1)");
  app.add_option("--case-seconds", case_seconds, "Stop repeating a case after this long, >= 3 runs (default 0.25; --quick 0.05)");
  app.add_option("--max-seconds", max_seconds, "Stop starting cases after this long; the rest are recorded as not run (0: no limit)");
  app.add_option("--batches", batches_s, "Batch sizes, comma-separated (default 1,8)");
  app.add_option("--seconds", seconds_s, "Audio lengths in seconds, comma-separated (default 2,10)");
  app.add_option("--tokens-per-second", tps, "Text tokens (with blanks) per second of audio (default 15)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (reps < 0) reps = quick ? 5 : 30;
  if (warmup < 0) warmup = quick ? 1 : 3;
  if (case_seconds < 0) case_seconds = quick ? 0.05 : 0.25;
  VC_CHECK(reps >= 0, "--reps must be >= 0, got " << reps);

  Config cfg;
  cfg.model = io::VitsConfig::from_file(config_path);
  for (double b : parse_list(batches_s, "--batches")) cfg.batches.push_back(static_cast<int>(b));
  cfg.seconds = parse_list(seconds_s, "--seconds");
  cfg.tokens_per_second = tps;

  std::vector<Case> all = build_cases(cfg);
  std::vector<std::string> all_names;
  for (const Case& cs : all) all_names.push_back(cs.name());
  if (report_unmatched("--filter", unmatched_patterns(filters, all_names), all_names)) return kExitBadArguments;
  std::vector<Case> cases;
  for (const Case& cs : all) {
    const std::string n = cs.name();
    bool keep = filters.empty();
    for (const std::string& s : filters) keep = keep || n.find(s) != std::string::npos;
    if (keep) cases.push_back(cs);
  }
  if (list && !info_only) {
    for (const Case& cs : cases) std::printf("%s  |  %s\n", cs.name().c_str(), cs.shape.c_str());
    std::printf("%zu of %zu cases\n", cases.size(), all.size());
    return 0;
  }
  VC_CHECK(info_only || !cases.empty(), "--filter matched none of the " << all.size() << " cases (see --list)");

  std::string why;
  if (!kernels::built_with_cuda() || !kernels::cuda_device_available(&why)) {
    std::printf("bench_kernels: skipped: no usable CUDA device (%s)\n", why.c_str());
    return kExitSkipped;
  }
  DeviceAllocator::instance();  // installs the kernels' scratch allocator
  const kernels::DeviceInfo dev = kernels::device_info();
  std::printf("device: %s (sm_%d%d), %d SMs, SM clock %.2f GHz, memory %.2f GHz x %d bits, L2 %.0f MiB, %.1f GiB\n",
              dev.name.c_str(), dev.compute_major, dev.compute_minor, dev.multiprocessors, dev.sm_clock_ghz,
              dev.memory_clock_ghz, dev.memory_bus_bits, dev.l2_bytes / 1048576.0, dev.total_memory / 1073741824.0);
  std::printf("peaks (from the device's properties): fp32 %.1f TFLOP/s, memory %.0f GB/s\n", dev.peak_fp32_tflops,
              dev.peak_bandwidth_gbs);
  if (info_only) {
    std::printf("free memory %.1f GiB, cuDNN %zu\n", dev.free_memory / 1073741824.0,
                static_cast<size_t>(cudnnGetVersion()));
    int cublas_version = 0;
    CUBLAS_CHECK(cublasGetVersion(kc::cublas_handle(), &cublas_version));
    std::printf("cuBLAS %d, CUDA runtime %d, driver %d\n", cublas_version, runtime_version(), driver_version());
    return 0;
  }
  std::printf("%zu cases; %d warm-up + up to %d timed runs each (median, <= %.2f s per case); L2 %s\n", cases.size(),
              warmup, reps, case_seconds, hot ? "not flushed (--hot)" : "flushed before each timed run");
  std::printf("ratio = ours / baseline (> 1: ours slower); baselines: conv1d[im2col] vs the cuDNN path; "
              "pointwise and norms vs a device copy of the same traffic; attention vs its cuBLAS GEMMs alone; "
              "op cases (tests/support/op_cases.cpp, forward and backward through the engine): none\n\n");
  VC_CHECK(dev.peak_fp32_tflops > 0 && dev.peak_bandwidth_gbs > 0,
           "device_info() reports no peak (fp32 " << dev.peak_fp32_tflops << " TFLOP/s, memory "
                                                  << dev.peak_bandwidth_gbs << " GB/s): cannot compute fractions");

  const nlohmann::json options = {{"config", config_path}, {"quick", quick},          {"hot", hot},
                                  {"reps", reps},          {"warmup", warmup},        {"case_seconds", case_seconds},
                                  {"max_seconds", max_seconds}, {"batches", cfg.batches}, {"seconds", cfg.seconds},
                                  {"tokens_per_second", tps}, {"filters", filters}};
  Timer timer(hot ? 0 : std::max<size_t>(3 * dev.l2_bytes, size_t(64) << 20));
  std::vector<Record> records;
  std::map<std::string, double> times;  // by case name, for baseline_ref
  const auto t0 = std::chrono::steady_clock::now();
  int failed = 0, not_run = 0;
  bool context_lost = false;
  print_header();
  for (const Case& cs : cases) {
    Record r;
    r.cs = cs;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (context_lost) {
      r.status = "not run: the CUDA context was lost earlier";
      ++not_run;
    } else if (max_seconds > 0 && elapsed > max_seconds) {
      r.status = "not run: --max-seconds reached";
      ++not_run;
    } else {
      try {
        if (cs.before) cs.before();
        Prepared p = cs.prepare();
        if (p.bytes > 0) r.cs.bytes = p.bytes;
        if (p.setup) p.setup();
        p.run();  // first run: the output must be complete and finite
        CUDA_CHECK(cudaStreamSynchronize(stream()));
        const Tensor output = p.result ? p.result() : p.output;
        const int64_t bad = non_finite(output);
        VC_CHECK(bad == 0, bad << " of " << output.numel()
                               << " output elements are NaN or infinite after a run (left unwritten, or overflow)");
        if (reps == 0) {
          r.status = "checked (not timed)";  // a correctness pass, e.g. under compute-sanitizer
        } else {
          const Timing t = time_fn(timer, p.run, warmup, reps, case_seconds, p.setup);
          r.time_ms = t.median_ms;
          r.reps = t.reps;
          times[cs.name()] = t.median_ms;
          if (!cs.baseline_ref.empty()) {
            auto it = times.find(cs.baseline_ref);
            if (it != times.end()) r.baseline_ms = it->second;
          } else if (p.baseline) {
            r.baseline_ms = time_fn(timer, p.baseline, warmup, reps, case_seconds).median_ms;
          }
        }
      } catch (const std::exception& e) {
        r.status = std::string("error: ") + e.what();
        ++failed;
        std::string lost;
        if (!context_alive(&lost)) {
          context_lost = true;
          r.status += " [CUDA context lost: " + lost + "; later cases not run]";
        }
      }
      kernels::conv1d_set_cuda_path(Conv1dCudaPath::Auto);
    }
    records.push_back(r);
    print_row(r, dev);
    if (!json_path.empty()) write_json_file(json_path, to_json(records, dev, options));
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n%zu cases: %d ok, %d failed, %d not run; %.1f s\n", records.size(),
              static_cast<int>(records.size()) - failed - not_run, failed, not_run, total);
  if (!json_path.empty()) std::printf("wrote %s\n", json_path.c_str());
  for (const Record& r : records)
    if (r.status.rfind("error", 0) == 0) std::printf("FAILED %s: %s\n", r.cs.name().c_str(), r.status.c_str());
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace vitscuda::bench

int main(int argc, char** argv) { return vitscuda::bench::bench_main(vitscuda::bench::run, argc, argv); }
