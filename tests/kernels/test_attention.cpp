// Kernel tests of the fused relative-position attention (kernels/attention.h): the forward against a
// transcription of transformers' VitsAttention core that keeps its pad / reshape index tricks
// (_get_relative_embeddings, _relative_position_to_absolute_position,
// _absolute_position_to_relative_position), for T in {1, 3, 7, 12} with window 4 (T below and above
// window + 1), 2 heads and padding masks; the backward against central differences of
// L = sum(out * r) (never a plain sum: softmax's gradient of a plain sum is identically zero, which
// would hide a wrong backward; kernel_checks.h). Backward buffers start filled with random values, so
// every check also proves the kernel accumulates instead of overwriting.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "kernels/attention.h"
#include "kernel_checks.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

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

}  // namespace
}  // namespace vitscuda::kernels
