// Alignment: per-token frame counts and the frame -> token map of the length regulator; in training, the
// log-likelihood the monotonic alignment search maximises (ops::monotonic_alignment_search), the durations
// of the map it returns, and which utterances can be aligned at all.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::model {

// Rounds float durations to integers that sum to exactly `total_frames`, in proportion to
// `durations` (largest-remainder rounding: floors first, then one extra frame each to the
// tokens with the largest fractional parts, lower index first on ties). All-zero durations
// share the frames evenly. Throws on negative or non-finite durations.
std::vector<int32_t> scale_durations_to_frames(const std::vector<double>& durations, int64_t total_frames);

// Frame f of item b maps to token i when cum[i-1] <= f < cum[i]; frames at or past
// `lengths[b]` (or covered by no token) map to -1. durations: B rows of T_b counts.
// Returns B * frames entries.
std::vector<int32_t> frame_to_token_index(const std::vector<std::vector<int32_t>>& durations,
                                          const std::vector<int64_t>& lengths, int64_t frames);

// The MAS log-likelihood L[b, f, t] = sum_c log N(z_p[b,c,f]; m_p[b,c,t], exp(logs_p[b,c,t])), computed with
// matmuls in the usual four-term form (full_objective.md 2.5). z_p [B,C,F]; m_p, logs_p [B,C,T]. No gradient
// (call it under NoGradScope or on detached tensors). Returns [B, F, T] on the inputs' device.
// It opens its own NoGradScope too, so nothing is recorded even for inputs that require a gradient.
Tensor alignment_log_likelihood(const Tensor& z_p, const Tensor& m_p, const Tensor& logs_p);
// Frames per token from a frame -> token map (B * frames entries, -1 = none): B rows of token_lengths[b] counts.
std::vector<std::vector<int32_t>> durations_of_alignment(const std::vector<int32_t>& index, int64_t frames,
                                                         const std::vector<int64_t>& token_lengths);

// Why an utterance of `tokens` token ids (after add_blank) and `frames` spectrogram frames cannot be trained on,
// as a stable name and a detail, or an empty reason when it can: "shorter_than_segment" when it has fewer than
// `segment_frames` frames (the decoder's random window must fit; 0: no window), else "more_tokens_than_frames"
// when tokens > frames (no monotonic alignment gives every token a frame). prepare writes the reason to
// rejected.tsv; check_alignable turns it into an error.
struct AlignabilityProblem {
  std::string reason;  // empty: alignable
  std::string detail;
};
AlignabilityProblem alignability_problem(int64_t tokens, int64_t frames, int64_t segment_frames);
// Throws a vitscuda::Error naming the item, the reason and the numbers when alignability_problem finds one (an
// item from a cache prepared before these checks existed).
void check_alignable(int64_t tokens, int64_t frames, int64_t segment_frames, const std::string& item_name);

}  // namespace vitscuda::model
