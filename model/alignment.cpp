#include "model/alignment.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"

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

}  // namespace vitscuda::model
