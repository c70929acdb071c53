// Kernel tests for the fused relative-position attention and the rational-quadratic spline.
//
// Attention: the forward against a transcription of transformers' VitsAttention core that keeps
// its pad / reshape index tricks (_get_relative_embeddings, _relative_position_to_absolute_position,
// _absolute_position_to_relative_position), for T in {1, 3, 7, 12} with window 4 (T below and
// above window + 1), 2 heads and padding masks; the backward against central differences.
// Spline: forward and reverse against transformers' own function (tests/data/kernels/
// spline_cases.txt, written by tools/golden/make_kernel_cases_spline.py), the backward against
// torch autograd and against central differences in both directions.
//
// Gradient checks: L = sum(y * r) (+ sum(logdet * r2) for the spline) with fixed random r, never
// a plain sum (softmax's gradient of a plain sum is identically zero, which would hide a wrong
// attention backward); double precision, central differences with h = 1e-6, relative error
// max|numeric - analytic| / max|analytic| < 1e-6. Why that holds: the truncation error of a
// central difference is h^2/6 * |L'''| ~ 1e-13 for these smooth functions of O(1) inputs, and
// rounding contributes about 1e-16 * |L| / h ~ 1e-9 for |L| ~ 10; a wrong index, a missing
// term or a wrong sign gives errors of order 1. Backward buffers start filled with random
// values, so every check also proves the kernels accumulate instead of overwriting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/error.h"
#include "kernels/spline.h"
#include "support/test_support.h"

namespace vitscuda::kernels {
namespace {

using Vec = std::vector<double>;

Vec random_vector(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (double& x : v) x = normal(gen);
  return v;
}

template <typename T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

// max|a - b| / max|b| (max|a - b| when b is all zero).
template <typename A>
double relative_max_error(const std::vector<A>& a, const Vec& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return den > 0.0 ? num / den : num;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central-difference gradient of loss() with respect to every element of *param.
Vec numeric_gradient(Vec* param, const std::function<double()>& loss) {
  constexpr double h = 1e-6;
  Vec grad(param->size());
  for (size_t i = 0; i < param->size(); ++i) {
    const double saved = (*param)[i];
    (*param)[i] = saved + h;
    const double plus = loss();
    (*param)[i] = saved - h;
    const double minus = loss();
    (*param)[i] = saved;
    grad[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

constexpr double kGradTolerance = 1e-6;

// A gradient buffer pre-filled with random values; added() is what the backward contributed.
struct AccumulatedGrad {
  Vec buffer, initial;
  AccumulatedGrad(size_t n, uint32_t seed) : buffer(random_vector(n, seed)), initial(buffer) {}
  double* data() { return buffer.data(); }
  Vec added() const {
    Vec d(buffer.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = buffer[i] - initial[i];
    return d;
  }
};

// ================================================================== attention

struct AttentionShape {
  int64_t B, H, T, D;
  int W;
  std::vector<int64_t> lengths;  // valid keys per item; the rest are padding
  int64_t qkv() const { return B * H * T * D; }
  int64_t R() const { return 2 * W + 1; }
};

struct AttentionInputs {
  Vec q, k, v, emb_k, emb_v, mask;
};

AttentionInputs random_attention_inputs(const AttentionShape& s, uint32_t seed) {
  AttentionInputs in{random_vector(s.qkv(), seed, 0.8),      random_vector(s.qkv(), seed + 1, 0.8),
                     random_vector(s.qkv(), seed + 2),        random_vector(s.R() * s.D, seed + 3, 0.8),
                     random_vector(s.R() * s.D, seed + 4),    Vec(s.B * s.T, 0.0)};
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.lengths[b]; ++t) in.mask[b * s.T + t] = 1.0;
  return in;
}

// transformers' VitsAttention core for one (item, head), transcribed with its index tricks.
// q, k, v: [T, D]; emb: [2W+1, D]. Returns out [T, D] and probs [T, T].
void reference_attention_head(const double* q, const double* k, const double* v, const Vec& emb_k, const Vec& emb_v,
                              const double* key_mask, int64_t T, int64_t D, int W, double* out, double* probs) {
  // _get_relative_embeddings: pad both ends with max(T - (W+1), 0) zero rows, then take
  // 2T - 1 rows from max(W+1 - T, 0).
  auto relative_embeddings = [&](const Vec& emb) {
    const int64_t pad = std::max<int64_t>(T - (W + 1), 0);
    Vec padded((2 * W + 1 + 2 * pad) * D, 0.0);
    std::copy(emb.begin(), emb.end(), padded.begin() + pad * D);
    const int64_t start = std::max<int64_t>(W + 1 - T, 0);
    return Vec(padded.begin() + start * D, padded.begin() + (start + 2 * T - 1) * D);
  };
  const Vec rel_k = relative_embeddings(emb_k), rel_v = relative_embeddings(emb_v);
  const int64_t L = 2 * T - 1;
  // relative_logits [T, 2T-1] = q @ rel_k^T
  Vec rel_logits(T * L, 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t c = 0; c < L; ++c)
      for (int64_t d = 0; d < D; ++d) rel_logits[i * L + c] += q[i * D + d] * rel_k[c * D + d];
  // _relative_position_to_absolute_position: pad a column -> [T, 2T]; flatten; pad T-1 zeros;
  // view [T+1, 2T-1]; keep [:T, T-1:].
  Vec flat(T * 2 * T + (T - 1), 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t c = 0; c < L; ++c) flat[i * 2 * T + c] = rel_logits[i * L + c];
  Vec logits(T * T, 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) {
      double s = 0.0;
      for (int64_t d = 0; d < D; ++d) s += q[i * D + d] * k[j * D + d];
      logits[i * T + j] = s + flat[i * L + (T - 1 + j)];
    }
  // attention_mask: 0 where valid, finfo.min where padding; then softmax.
  for (int64_t i = 0; i < T; ++i) {
    double* row = logits.data() + i * T;
    for (int64_t j = 0; j < T; ++j)
      if (key_mask[j] == 0.0) row[j] += std::numeric_limits<double>::lowest();
    const double m = *std::max_element(row, row + T);
    double sum = 0.0;
    for (int64_t j = 0; j < T; ++j) sum += std::exp(row[j] - m);
    for (int64_t j = 0; j < T; ++j) probs[i * T + j] = std::exp(row[j] - m) / sum;
  }
  // out = P V + _absolute_position_to_relative_position(P) @ rel_v, where the latter pads
  // T-1 columns -> [T, 2T-1], flattens, prepends T zeros, views [T, 2T] and drops column 0.
  Vec flat2(T + T * L, 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) flat2[T + i * L + j] = probs[i * T + j];
  for (int64_t i = 0; i < T; ++i)
    for (int64_t d = 0; d < D; ++d) {
      double s = 0.0;
      for (int64_t j = 0; j < T; ++j) s += probs[i * T + j] * v[j * D + d];
      for (int64_t c = 0; c < L; ++c) s += flat2[i * 2 * T + 1 + c] * rel_v[c * D + d];
      out[i * D + d] = s;
    }
}

void reference_attention(const AttentionShape& s, const AttentionInputs& in, Vec& out, Vec& probs) {
  out.assign(s.qkv(), 0.0);
  probs.assign(s.B * s.H * s.T * s.T, 0.0);
  for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
    const int64_t o = bh * s.T * s.D;
    reference_attention_head(in.q.data() + o, in.k.data() + o, in.v.data() + o, in.emb_k, in.emb_v,
                             in.mask.data() + (bh / s.H) * s.T, s.T, s.D, s.W, out.data() + o,
                             probs.data() + bh * s.T * s.T);
  }
}

template <typename T>
void run_attention(const AttentionShape& s, const AttentionInputs& in, std::vector<T>& out, std::vector<T>& probs,
                   bool relative = true) {
  const std::vector<T> q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v), ek = cast<T>(in.emb_k),
                       ev = cast<T>(in.emb_v), mask = cast<T>(in.mask);
  out.assign(s.qkv(), T(0));
  probs.assign(s.B * s.H * s.T * s.T, T(0));
  relative_attention_forward_cpu<T>(q.data(), k.data(), v.data(), relative ? ek.data() : nullptr,
                                    relative ? ev.data() : nullptr, mask.data(), out.data(), probs.data(), s.B, s.H,
                                    s.T, s.D, s.W);
}

std::vector<AttentionShape> attention_shapes() {
  // Window 4: T = 1 and 3 are below window + 1 (every pair is inside the window), 7 and 12
  // above it. The second item has padding keys.
  return {{2, 2, 1, 3, 4, {1, 1}}, {2, 2, 3, 3, 4, {3, 2}}, {2, 2, 7, 3, 4, {7, 4}}, {2, 2, 12, 3, 4, {12, 9}}};
}

TEST(AttentionKernel, ForwardMatchesTransformersIndexTricks) {
  for (const AttentionShape& s : attention_shapes()) {
    SCOPED_TRACE("T=" + std::to_string(s.T));
    const AttentionInputs in = random_attention_inputs(s, static_cast<uint32_t>(10 + s.T));
    Vec ref_out, ref_probs;
    reference_attention(s, in, ref_out, ref_probs);
    std::vector<double> out, probs;
    run_attention(s, in, out, probs);
    // Same arithmetic in another order (BLAS products): agreement near double rounding.
    EXPECT_LT(relative_max_error(out, ref_out), 1e-13);
    EXPECT_LT(relative_max_error(probs, ref_probs), 1e-13);
    // Padding keys get exactly zero probability; each row sums to 1.
    for (int64_t bh = 0; bh < s.B * s.H; ++bh)
      for (int64_t i = 0; i < s.T; ++i) {
        double row = 0.0;
        for (int64_t j = 0; j < s.T; ++j) {
          const double p = probs[(bh * s.T + i) * s.T + j];
          row += p;
          if (j >= s.lengths[bh / s.H]) {
            EXPECT_EQ(p, 0.0) << "bh " << bh << " i " << i << " j " << j;
          }
        }
        EXPECT_NEAR(row, 1.0, 1e-14);
      }
    // f32: inputs of O(1), sums of at most 12 terms: within 2e-6 of the largest value.
    std::vector<float> out32, probs32;
    run_attention(s, in, out32, probs32);
    EXPECT_LT(relative_max_error(out32, ref_out), 2e-6);
    EXPECT_LT(relative_max_error(probs32, ref_probs), 2e-6);
  }
}

// The relative terms matter: changing the embeddings changes the output exactly where the
// window reaches, and a zero window (no embeddings) gives plain attention.
TEST(AttentionKernel, RelativeTermsOnlyReachTheWindow) {
  const AttentionShape s{1, 1, 12, 3, 4, {12}};
  AttentionInputs in = random_attention_inputs(s, 5);
  // With keys identical, q.k_j is the same for every j, so the logits differ only by the
  // relative-key term: p_ij is uniform outside the window and larger or smaller inside it.
  for (int64_t j = 1; j < s.T; ++j)
    for (int64_t d = 0; d < s.D; ++d) in.k[j * s.D + d] = in.k[d];
  std::vector<double> out, probs;
  run_attention(s, in, out, probs);
  for (int64_t i = 0; i < s.T; ++i) {
    std::vector<double> outside;
    for (int64_t j = 0; j < s.T; ++j)
      if (std::abs(j - i) > s.W) outside.push_back(probs[i * s.T + j]);
    for (double p : outside) EXPECT_NEAR(p, outside.front(), 1e-15) << "row " << i;
  }
  // Without relative embeddings: plain softmax(q k^T) v, checked against a direct loop.
  std::vector<double> plain, plain_probs;
  AttentionShape s0 = s;
  s0.W = 0;
  in = random_attention_inputs(s, 6);
  run_attention(s0, in, plain, plain_probs, /*relative=*/false);
  for (int64_t i = 0; i < s.T; ++i) {
    Vec logits(s.T);
    for (int64_t j = 0; j < s.T; ++j)
      for (int64_t d = 0; d < s.D; ++d) logits[j] += in.q[i * s.D + d] * in.k[j * s.D + d];
    const double m = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (double& l : logits) sum += (l = std::exp(l - m));
    for (int64_t d = 0; d < s.D; ++d) {
      double o = 0.0;
      for (int64_t j = 0; j < s.T; ++j) o += logits[j] / sum * in.v[j * s.D + d];
      EXPECT_NEAR(plain[i * s.D + d], o, 1e-14);
    }
  }
}

// A row whose keys are all padding: torch adds finfo.min to every logit, they all round to
// finfo.min, and softmax gives the uniform distribution. The kernel must do the same (and not
// produce NaN from -inf - -inf).
TEST(AttentionKernel, FullyMaskedRowIsUniformAsInTorch) {
  const AttentionShape s{2, 2, 5, 3, 4, {5, 0}};
  const AttentionInputs in = random_attention_inputs(s, 8);
  std::vector<double> out, probs;
  run_attention(s, in, out, probs);
  std::vector<float> out32, probs32;
  run_attention(s, in, out32, probs32);
  for (int64_t h = 0; h < s.H; ++h)
    for (int64_t i = 0; i < s.T; ++i)
      for (int64_t j = 0; j < s.T; ++j) {
        const int64_t idx = ((1 * s.H + h) * s.T + i) * s.T + j;
        EXPECT_EQ(probs[idx], 1.0 / 5.0);
        EXPECT_FLOAT_EQ(probs32[idx], 1.0f / 5.0f);
      }
  for (double o : out) EXPECT_TRUE(std::isfinite(o));
}

// dL/d(q, k, v, emb_k, emb_v) for L = sum(out * r), against central differences.
void check_attention_gradients(const AttentionShape& s, bool relative, uint32_t seed) {
  AttentionInputs in = random_attention_inputs(s, seed);
  const Vec r = random_vector(s.qkv(), seed + 50);
  auto loss = [&]() {
    std::vector<double> out, probs;
    run_attention(s, in, out, probs, relative);
    return dot(out, r);
  };
  std::vector<double> out, probs;
  run_attention(s, in, out, probs, relative);
  AccumulatedGrad dq(s.qkv(), 1), dk(s.qkv(), 2), dv(s.qkv(), 3), dek(s.R() * s.D, 4), dev(s.R() * s.D, 5);
  relative_attention_backward_cpu<double>(in.q.data(), in.k.data(), in.v.data(),
                                          relative ? in.emb_k.data() : nullptr, relative ? in.emb_v.data() : nullptr,
                                          probs.data(), r.data(), dq.data(), dk.data(), dv.data(),
                                          relative ? dek.data() : nullptr, relative ? dev.data() : nullptr, s.B, s.H,
                                          s.T, s.D, s.W);
  EXPECT_LT(relative_max_error(dq.added(), numeric_gradient(&in.q, loss)), kGradTolerance) << "dq";
  EXPECT_LT(relative_max_error(dk.added(), numeric_gradient(&in.k, loss)), kGradTolerance) << "dk";
  EXPECT_LT(relative_max_error(dv.added(), numeric_gradient(&in.v, loss)), kGradTolerance) << "dv";
  if (relative) {
    EXPECT_LT(relative_max_error(dek.added(), numeric_gradient(&in.emb_k, loss)), kGradTolerance) << "demb_k";
    EXPECT_LT(relative_max_error(dev.added(), numeric_gradient(&in.emb_v, loss)), kGradTolerance) << "demb_v";
  } else {
    EXPECT_EQ(dek.buffer, dek.initial);
  }
}

TEST(AttentionKernel, BackwardMatchesFiniteDifferences) {
  for (const AttentionShape& s : attention_shapes()) {
    SCOPED_TRACE("T=" + std::to_string(s.T));
    check_attention_gradients(s, true, static_cast<uint32_t>(100 + s.T));
  }
  SCOPED_TRACE("no relative embeddings");
  check_attention_gradients({2, 2, 7, 3, 0, {7, 5}}, false, 300);
}

// Keys that are padding still receive the (tiny, here exactly zero) gradient torch gives them,
// and gradients requested for only some inputs are the same as when all are requested.
TEST(AttentionKernel, BackwardWithSomeGradientsOmitted) {
  const AttentionShape s{2, 2, 7, 3, 4, {7, 4}};
  const AttentionInputs in = random_attention_inputs(s, 21);
  const Vec r = random_vector(s.qkv(), 22);
  std::vector<double> out, probs;
  run_attention(s, in, out, probs);
  Vec dq(s.qkv()), dk(s.qkv()), dv(s.qkv()), dek(s.R() * s.D), dev(s.R() * s.D);
  relative_attention_backward_cpu<double>(in.q.data(), in.k.data(), in.v.data(), in.emb_k.data(), in.emb_v.data(),
                                          probs.data(), r.data(), dq.data(), dk.data(), dv.data(), dek.data(),
                                          dev.data(), s.B, s.H, s.T, s.D, s.W);
  Vec dq_only(s.qkv()), dev_only(s.R() * s.D);
  relative_attention_backward_cpu<double>(in.q.data(), in.k.data(), in.v.data(), in.emb_k.data(), in.emb_v.data(),
                                          probs.data(), r.data(), dq_only.data(), nullptr, nullptr, nullptr,
                                          dev_only.data(), s.B, s.H, s.T, s.D, s.W);
  EXPECT_EQ(dq_only, dq);
  EXPECT_EQ(dev_only, dev);
  // Padding keys and values of item 1 (keys 4..6) get no gradient: their probabilities are 0.
  for (int64_t h = 0; h < s.H; ++h)
    for (int64_t j = 4; j < 7; ++j)
      for (int64_t d = 0; d < s.D; ++d) {
        EXPECT_EQ(dv[((1 * s.H + h) * s.T + j) * s.D + d], 0.0);
        EXPECT_EQ(dk[((1 * s.H + h) * s.T + j) * s.D + d], 0.0);
      }
}

// The f32 backward against the f64 one: within 1e-5 of the largest gradient.
TEST(AttentionKernel, FloatBackwardMatchesDouble) {
  const AttentionShape s{2, 2, 12, 3, 4, {12, 9}};
  const AttentionInputs in = random_attention_inputs(s, 31);
  const Vec r = random_vector(s.qkv(), 32);
  std::vector<double> out, probs;
  run_attention(s, in, out, probs);
  Vec dq(s.qkv()), dk(s.qkv()), dv(s.qkv()), dek(s.R() * s.D), dev(s.R() * s.D);
  relative_attention_backward_cpu<double>(in.q.data(), in.k.data(), in.v.data(), in.emb_k.data(), in.emb_v.data(),
                                          probs.data(), r.data(), dq.data(), dk.data(), dv.data(), dek.data(),
                                          dev.data(), s.B, s.H, s.T, s.D, s.W);
  std::vector<float> out32, probs32;
  run_attention(s, in, out32, probs32);
  std::vector<float> q = cast<float>(in.q), k = cast<float>(in.k), v = cast<float>(in.v), ek = cast<float>(in.emb_k),
                     ev = cast<float>(in.emb_v), r32 = cast<float>(r);
  std::vector<float> dq32(s.qkv()), dk32(s.qkv()), dv32(s.qkv()), dek32(s.R() * s.D), dev32(s.R() * s.D);
  relative_attention_backward_cpu<float>(q.data(), k.data(), v.data(), ek.data(), ev.data(), probs32.data(),
                                         r32.data(), dq32.data(), dk32.data(), dv32.data(), dek32.data(), dev32.data(),
                                         s.B, s.H, s.T, s.D, s.W);
  EXPECT_LT(relative_max_error(dq32, dq), 1e-5);
  EXPECT_LT(relative_max_error(dk32, dk), 1e-5);
  EXPECT_LT(relative_max_error(dv32, dv), 1e-5);
  EXPECT_LT(relative_max_error(dek32, dek), 1e-5);
  EXPECT_LT(relative_max_error(dev32, dev), 1e-5);
}

// ================================================================== spline

// The reference arrays of a case file (tools/golden/make_kernel_cases_*.py), values and shapes.
std::map<std::string, Vec> load_cases(const std::string& relative, std::map<std::string, std::vector<int64_t>>* shapes) {
  std::map<std::string, Vec> out;
  for (auto& [name, array] : testing::read_case_file(relative)) {
    if (shapes) (*shapes)[name] = array.shape;
    out[name] = std::move(array.values);
  }
  return out;
}

struct SplineCase {
  std::string name;
  int64_t n = 0;
  int bins = 0;
  bool reverse = false;
  double bound = 0;
  Vec inputs, widths, heights, derivatives;
};

const std::map<std::string, Vec>& spline_file() {
  static const std::map<std::string, Vec> cases = load_cases("kernels/spline_cases.txt", nullptr);
  return cases;
}

const Vec& spline_array(const std::string& name) {
  auto it = spline_file().find(name);
  VC_CHECK(it != spline_file().end(), "spline_cases.txt has no '" << name << "'");
  return it->second;
}

SplineCase spline_case(const std::string& name) {
  SplineCase c;
  c.name = name;
  const Vec& p = spline_array(name + ".params");
  c.bins = static_cast<int>(p.at(0));
  c.reverse = p.at(1) != 0.0;
  c.bound = p.at(2);
  c.inputs = spline_array(name + ".inputs");
  c.widths = spline_array(name + ".widths");
  c.heights = spline_array(name + ".heights");
  c.derivatives = spline_array(name + ".derivatives");
  c.n = static_cast<int64_t>(c.inputs.size());
  return c;
}

const std::vector<std::string> kSplineCases = {"forward_bins10", "reverse_bins10", "forward_bins4", "reverse_bins4",
                                               "reverse_bins6_bound3"};

template <typename T>
void run_spline(const SplineCase& c, std::vector<T>& y, std::vector<T>& logdet) {
  const std::vector<T> x = cast<T>(c.inputs), w = cast<T>(c.widths), h = cast<T>(c.heights),
                       d = cast<T>(c.derivatives);
  y.assign(c.n, T(0));
  logdet.assign(c.n, T(0));
  rational_quadratic_spline_forward_cpu<T>(x.data(), w.data(), h.data(), d.data(), y.data(), logdet.data(), c.n,
                                           c.bins, c.reverse, c.bound);
}

TEST(SplineKernel, MatchesTransformersForwardAndReverse) {
  ASSERT_EQ(kSplineCases.size(), 5u);
  for (const std::string& name : kSplineCases) {
    SCOPED_TRACE(name);
    const SplineCase c = spline_case(name);
    std::vector<double> y, logdet;
    run_spline(c, y, logdet);
    // f64 against torch's f64: the same formulas; differences come from exp/log1p rounding
    // (~1e-16) amplified by at most ~1e3 through narrow bins.
    EXPECT_LT(relative_max_error(y, spline_array(name + ".y64")), 1e-12);
    EXPECT_LT(relative_max_error(logdet, spline_array(name + ".logdet64")), 1e-12);
    // f32 against torch's f32 on the same (f32-exact) values: the same operation order, so a
    // few units in the last place, again amplified by narrow bins: 1e-5 of the largest value.
    std::vector<float> y32, logdet32;
    run_spline(c, y32, logdet32);
    EXPECT_LT(relative_max_error(y32, spline_array(name + ".y32")), 1e-5);
    EXPECT_LT(relative_max_error(logdet32, spline_array(name + ".logdet32")), 1e-5);
    // Outside the tail bound: identity with log|det| 0, exactly.
    int outside = 0;
    for (int64_t i = 0; i < c.n; ++i)
      if (std::fabs(c.inputs[i]) > c.bound) {
        ++outside;
        EXPECT_EQ(y[i], c.inputs[i]);
        EXPECT_EQ(logdet[i], 0.0);
      }
    EXPECT_GT(outside, 0) << "the case has no input outside the bound";
  }
}

// Reverse undoes forward, and its log|det| is the negative of forward's.
TEST(SplineKernel, ReverseInvertsForward) {
  const SplineCase f = spline_case("forward_bins10");
  std::vector<double> y, logdet;
  run_spline(f, y, logdet);
  SplineCase r = f;
  r.reverse = true;
  r.inputs = y;
  std::vector<double> x, logdet_r;
  run_spline(r, x, logdet_r);
  for (int64_t i = 0; i < f.n; ++i) {
    EXPECT_NEAR(x[i], f.inputs[i], 1e-10) << "element " << i;
    EXPECT_NEAR(logdet_r[i], -logdet[i], 1e-8) << "element " << i;
  }
}

TEST(SplineKernel, InvalidParametersNameTheElement) {
  SplineCase c = spline_case("reverse_bins4");
  c.heights[5 * c.bins + 1] = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> y, logdet;
  try {
    run_spline(c, y, logdet);
    FAIL() << "no error for NaN spline parameters";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("negative discriminant"), std::string::npos) << msg;
    EXPECT_NE(msg.find("element 5"), std::string::npos) << msg;
  }
}

struct SplineGrads {
  AccumulatedGrad dx, dw, dh, dd;
  explicit SplineGrads(const SplineCase& c)
      : dx(c.n, 71), dw(c.n * c.bins, 72), dh(c.n * c.bins, 73), dd(c.n * (c.bins - 1), 74) {}
};

void spline_backward(const SplineCase& c, const Vec& r_y, const Vec& r_logdet, SplineGrads& g) {
  rational_quadratic_spline_backward_cpu<double>(c.inputs.data(), c.widths.data(), c.heights.data(),
                                                 c.derivatives.data(), r_y.data(), r_logdet.data(), g.dx.data(),
                                                 g.dw.data(), g.dh.data(), g.dd.data(), c.n, c.bins, c.reverse,
                                                 c.bound);
}

// Against torch autograd's gradients of sum(y * r_y) + sum(logdet * r_logdet).
TEST(SplineKernel, BackwardMatchesTorchAutograd) {
  for (const std::string& name : kSplineCases) {
    SCOPED_TRACE(name);
    const SplineCase c = spline_case(name);
    SplineGrads g(c);
    spline_backward(c, spline_array(name + ".r_y"), spline_array(name + ".r_logdet"), g);
    // The same derivatives in another association order; narrow bins amplify rounding.
    EXPECT_LT(relative_max_error(g.dx.added(), spline_array(name + ".dinputs")), 1e-10);
    EXPECT_LT(relative_max_error(g.dw.added(), spline_array(name + ".dwidths")), 1e-10);
    EXPECT_LT(relative_max_error(g.dh.added(), spline_array(name + ".dheights")), 1e-10);
    EXPECT_LT(relative_max_error(g.dd.added(), spline_array(name + ".dderivatives")), 1e-10);
  }
}

// Random parameters of moderate size (so no bin is so narrow that h = 1e-6 stops being small
// next to it), inputs inside and outside the bound but at least 1e-3 from it (the spline meets
// the identity tail there with a kink in log|det|'s derivative).
SplineCase random_spline_case(int64_t n, int bins, bool reverse, uint32_t seed) {
  SplineCase c;
  c.n = n;
  c.bins = bins;
  c.reverse = reverse;
  c.bound = 5.0;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> uniform(-6.0, 6.0);
  for (int64_t i = 0; i < n; ++i) {
    double x;
    do x = uniform(gen);
    while (std::fabs(std::fabs(x) - c.bound) < 1e-3);
    c.inputs.push_back(x);
  }
  c.widths = random_vector(n * bins, seed + 1, 0.7);
  c.heights = random_vector(n * bins, seed + 2, 0.7);
  c.derivatives = random_vector(n * (bins - 1), seed + 3, 0.7);
  return c;
}

TEST(SplineKernel, BackwardMatchesFiniteDifferencesBothDirections) {
  for (const bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "reverse" : "forward");
    SplineCase c = random_spline_case(40, 5, reverse, reverse ? 900 : 800);
    const Vec r_y = random_vector(c.n, 11), r_logdet = random_vector(c.n, 12);
    auto loss = [&]() {
      std::vector<double> y, logdet;
      run_spline(c, y, logdet);
      return dot(y, r_y) + dot(logdet, r_logdet);
    };
    SplineGrads g(c);
    spline_backward(c, r_y, r_logdet, g);
    EXPECT_LT(relative_max_error(g.dx.added(), numeric_gradient(&c.inputs, loss)), kGradTolerance) << "inputs";
    EXPECT_LT(relative_max_error(g.dw.added(), numeric_gradient(&c.widths, loss)), kGradTolerance) << "widths";
    EXPECT_LT(relative_max_error(g.dh.added(), numeric_gradient(&c.heights, loss)), kGradTolerance) << "heights";
    EXPECT_LT(relative_max_error(g.dd.added(), numeric_gradient(&c.derivatives, loss)), kGradTolerance)
        << "derivatives";
  }
}

// Each output's gradient on its own (the op records the two outputs as two tape nodes), and
// null buffers for the gradients nobody needs.
TEST(SplineKernel, BackwardOfEachOutputSeparatelyAddsUpToTheJointOne) {
  const SplineCase c = spline_case("reverse_bins10");
  const Vec& r_y = spline_array("reverse_bins10.r_y");
  const Vec& r_logdet = spline_array("reverse_bins10.r_logdet");
  Vec dx(c.n, 0.0), dw(c.n * c.bins, 0.0), dh(c.n * c.bins, 0.0), dd(c.n * (c.bins - 1), 0.0);
  rational_quadratic_spline_backward_cpu<double>(c.inputs.data(), c.widths.data(), c.heights.data(),
                                                 c.derivatives.data(), r_y.data(), nullptr, dx.data(), dw.data(),
                                                 dh.data(), dd.data(), c.n, c.bins, true, c.bound);
  rational_quadratic_spline_backward_cpu<double>(c.inputs.data(), c.widths.data(), c.heights.data(),
                                                 c.derivatives.data(), nullptr, r_logdet.data(), dx.data(), nullptr,
                                                 dh.data(), nullptr, c.n, c.bins, true, c.bound);
  EXPECT_LT(relative_max_error(dx, spline_array("reverse_bins10.dinputs")), 1e-10);
  EXPECT_LT(relative_max_error(dh, spline_array("reverse_bins10.dheights")), 1e-10);
  // Widths and derivatives only got the output's part: not the whole gradient.
  EXPECT_GT(relative_max_error(dw, spline_array("reverse_bins10.dwidths")), 1e-3);
}

// The f32 backward against the f64 one on the torch cases.
TEST(SplineKernel, FloatBackwardMatchesDouble) {
  for (const std::string& name : {std::string("forward_bins4"), std::string("reverse_bins10")}) {
    SCOPED_TRACE(name);
    const SplineCase c = spline_case(name);
    const Vec& r_y = spline_array(name + ".r_y");
    const Vec& r_logdet = spline_array(name + ".r_logdet");
    const std::vector<float> x = cast<float>(c.inputs), w = cast<float>(c.widths), h = cast<float>(c.heights),
                             d = cast<float>(c.derivatives), ry = cast<float>(r_y), rl = cast<float>(r_logdet);
    std::vector<float> dx(c.n), dw(c.n * c.bins), dh(c.n * c.bins), dd(c.n * (c.bins - 1));
    rational_quadratic_spline_backward_cpu<float>(x.data(), w.data(), h.data(), d.data(), ry.data(), rl.data(),
                                                  dx.data(), dw.data(), dh.data(), dd.data(), c.n, c.bins, c.reverse,
                                                  c.bound);
    // Rounding in f32 (6e-8) amplified by the narrowest bins (~1e2 here): 1e-4 of the largest gradient.
    EXPECT_LT(relative_max_error(dx, spline_array(name + ".dinputs")), 1e-4);
    EXPECT_LT(relative_max_error(dw, spline_array(name + ".dwidths")), 1e-4);
    EXPECT_LT(relative_max_error(dh, spline_array(name + ".dheights")), 1e-4);
    EXPECT_LT(relative_max_error(dd, spline_array(name + ".dderivatives")), 1e-4);
  }
}

}  // namespace
}  // namespace vitscuda::kernels
