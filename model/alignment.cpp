#include "model/alignment.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace vitscuda::model {

std::vector<int32_t> scale_durations_to_frames(const std::vector<double>& durations, int64_t total_frames) {
  VC_CHECK(!durations.empty(), "scale_durations_to_frames: no tokens");
  VC_CHECK(total_frames >= 0, "scale_durations_to_frames: negative frame count " << total_frames);
  double sum = 0;
  for (size_t i = 0; i < durations.size(); ++i) {
    VC_CHECK(std::isfinite(durations[i]) && durations[i] >= 0,
             "scale_durations_to_frames: token " << i << " has duration " << durations[i]);
    sum += durations[i];
  }
  const size_t n = durations.size();
  std::vector<double> quota(n);
  for (size_t i = 0; i < n; ++i)
    quota[i] = sum > 0 ? durations[i] * static_cast<double>(total_frames) / sum
                       : static_cast<double>(total_frames) / static_cast<double>(n);
  std::vector<int32_t> out(n);
  int64_t assigned = 0;
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<int32_t>(std::floor(quota[i]));
    assigned += out[i];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return quota[a] - std::floor(quota[a]) > quota[b] - std::floor(quota[b]);
  });
  // Floating-point rounding can leave the floors one off in either direction; fix up exactly.
  for (size_t k = 0; assigned < total_frames; k = (k + 1) % n, ++assigned) ++out[order[k]];
  for (size_t k = n; assigned > total_frames;) {
    k = (k == 0 ? n : k) - 1;
    if (out[order[k]] > 0) {
      --out[order[k]];
      --assigned;
    }
  }
  return out;
}

std::vector<int32_t> frame_to_token_index(const std::vector<std::vector<int32_t>>& durations,
                                          const std::vector<int64_t>& lengths, int64_t frames) {
  VC_CHECK(durations.size() == lengths.size(), "frame_to_token_index: " << durations.size() << " duration rows, "
                                                                         << lengths.size() << " lengths");
  const size_t B = durations.size();
  std::vector<int32_t> index(B * static_cast<size_t>(frames), -1);
  for (size_t b = 0; b < B; ++b) {
    int64_t start = 0;
    const int64_t end_frame = std::min(lengths[b], frames);
    for (size_t t = 0; t < durations[b].size() && start < end_frame; ++t) {
      const int64_t stop = std::min(start + durations[b][t], end_frame);
      for (int64_t f = start; f < stop; ++f) index[b * frames + f] = static_cast<int32_t>(t);
      start += durations[b][t];
    }
  }
  return index;
}

Tensor alignment_log_likelihood(const Tensor& z_p, const Tensor& m_p, const Tensor& logs_p) {
  VC_CHECK(z_p.defined() && m_p.defined() && logs_p.defined(), "alignment_log_likelihood: an undefined input");
  VC_CHECK(z_p.ndim() == 3 && m_p.ndim() == 3 && m_p.shape() == logs_p.shape() && z_p.dim(0) == m_p.dim(0) &&
               z_p.dim(1) == m_p.dim(1),
           "alignment_log_likelihood: expected z_p [B, C, F] and m_p, logs_p [B, C, T], got z_p "
               << z_p.describe() << ", m_p " << m_p.describe() << ", logs_p " << logs_p.describe());
  autograd::NoGradScope no_grad;  // the alignment is a constant of the step
  // The four terms of finetune-hf-vits (MVT:2186-2206), in its order of operations, with s = exp(-2 logs_p):
  //   1: sum_c (-0.5 log(2 pi) - logs_p)        [B, 1, T]
  //   2: (-0.5 z_p^2)^T @ s                      [B, F, T]
  //   3: z_p^T @ (m_p * s)                       [B, F, T]
  //   4: sum_c (-0.5 m_p^2) * s                  [B, 1, T]
  const double half_log_2pi = 0.5 * std::log(2.0 * M_PI);
  const Tensor inv_variance = ops::exp(ops::scale(logs_p, -2.0));
  const Tensor term1 = ops::sum(ops::add_scalar(ops::scale(logs_p, -1.0), -half_log_2pi), 1, true);
  const Tensor term2 = ops::matmul(ops::transpose(ops::scale(ops::mul(z_p, z_p), -0.5), 1, 2), inv_variance);
  const Tensor term3 = ops::matmul(ops::transpose(z_p, 1, 2), ops::mul(m_p, inv_variance));
  const Tensor term4 = ops::sum(ops::mul(ops::scale(ops::mul(m_p, m_p), -0.5), inv_variance), 1, true);
  return ops::add(ops::add(ops::add(term1, term2), term3), term4);
}

std::vector<std::vector<int32_t>> durations_of_alignment(const std::vector<int32_t>& index, int64_t frames,
                                                         const std::vector<int64_t>& token_lengths) {
  const size_t B = token_lengths.size();
  VC_CHECK(frames >= 0 && index.size() == B * static_cast<size_t>(frames),
           "durations_of_alignment: " << index.size() << " map entries for " << B << " items of " << frames
                                      << " frames");
  std::vector<std::vector<int32_t>> durations(B);
  for (size_t b = 0; b < B; ++b) {
    VC_CHECK(token_lengths[b] >= 0, "durations_of_alignment: item " << b << " has " << token_lengths[b] << " tokens");
    durations[b].assign(static_cast<size_t>(token_lengths[b]), 0);
    for (int64_t f = 0; f < frames; ++f) {
      const int32_t t = index[b * frames + f];
      VC_CHECK(t >= -1 && t < token_lengths[b], "durations_of_alignment: frame " << f << " of item " << b
                                                    << " maps to token " << t << ", outside [-1, " << token_lengths[b]
                                                    << ")");
      if (t >= 0) ++durations[b][t];
    }
  }
  return durations;
}

AlignabilityProblem alignability_problem(int64_t tokens, int64_t frames, int64_t segment_frames) {
  if (segment_frames > 0 && frames < segment_frames)
    return {"shorter_than_segment", std::to_string(frames) + " frames, fewer than the " +
                                        std::to_string(segment_frames) + "-frame training segment"};
  if (tokens > frames)
    return {"more_tokens_than_frames", std::to_string(tokens) + " tokens for " + std::to_string(frames) +
                                           " frames: no monotonic alignment exists (every token needs a frame)"};
  return {};
}

void check_alignable(int64_t tokens, int64_t frames, int64_t segment_frames, const std::string& item_name) {
  const AlignabilityProblem problem = alignability_problem(tokens, frames, segment_frames);
  VC_CHECK(problem.reason.empty(), "item " << item_name << " cannot be trained on (" << problem.reason << "): "
                                           << problem.detail
                                           << "; prepare the data again with `vitscuda prepare`, which rejects it");
}

}  // namespace vitscuda::model
