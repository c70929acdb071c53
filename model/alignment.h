// Alignment: per-token frame counts and the frame -> token map of the length regulator.
#pragma once
#include <cstdint>
#include <vector>

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

}  // namespace vitscuda::model
