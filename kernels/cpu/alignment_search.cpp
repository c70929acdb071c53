// Monotonic alignment search on the CPU: the dynamic programme of finetune-hf-vits'
// monotonic_align/core.pyx (maximum_path_each), one item per OpenMP thread.
#include <algorithm>
#include <vector>

#include "common/error.h"
#include "kernels/alignment.h"

namespace vitscuda::kernels {

void check_alignment_lengths(const char* op, const int64_t* frame_lengths, const int64_t* token_lengths, int64_t B,
                             int64_t F, int64_t T) {
  for (int64_t b = 0; b < B; ++b) {
    VC_CHECK(frame_lengths[b] >= 1 && frame_lengths[b] <= F,
             op << ": item " << b << " has " << frame_lengths[b] << " frames, outside [1, " << F << "]");
    VC_CHECK(token_lengths[b] >= 1 && token_lengths[b] <= T,
             op << ": item " << b << " has " << token_lengths[b] << " tokens, outside [1, " << T << "]");
    VC_CHECK(token_lengths[b] <= frame_lengths[b],
             op << ": item " << b << " has " << token_lengths[b] << " tokens but only " << frame_lengths[b]
                << " frames: no monotonic alignment gives every token a frame");
  }
}

namespace {

// One item: Q is the item's [Ty, Tx] working copy, filled from the log-likelihood as the DP reaches each row
// (a cell outside the band is never read). The arithmetic is the Cython code's, in T: one addition per cell of
// the larger of the two predecessors (-1e9 where there is none). Cython compiles max(v_prev, v_cur) to
// `v_cur > v_prev ? v_cur : v_prev`; the same expression keeps even NaN and signed-zero cases identical.
template <typename T>
void search_item(const T* value, int64_t T_tokens, int64_t Ty, int64_t Tx, std::vector<T>& Q, int32_t* map) {
  const T max_neg_val = static_cast<T>(-1e9);
  Q.assign(static_cast<size_t>(Ty * Tx), T(0));
  for (int64_t y = 0; y < Ty; ++y) {
    const T* row = value + y * T_tokens;
    T* q = Q.data() + y * Tx;
    const T* prev = y > 0 ? q - Tx : q;  // row y - 1 (read only when y > 0)
    const int64_t lo = std::max<int64_t>(0, Tx + y - Ty), hi = std::min<int64_t>(Tx, y + 1);
    for (int64_t x = lo; x < hi; ++x) {
      const T v_cur = x == y ? max_neg_val : prev[x];
      const T v_prev = x == 0 ? (y == 0 ? T(0) : max_neg_val) : prev[x - 1];
      q[x] = row[x] + (v_cur > v_prev ? v_cur : v_prev);
    }
  }
  int64_t index = Tx - 1;
  for (int64_t y = Ty - 1; y >= 0; --y) {
    map[y] = static_cast<int32_t>(index);
    if (index != 0 && y != 0 && (index == y || Q[(y - 1) * Tx + index] < Q[(y - 1) * Tx + index - 1])) --index;
  }
}

}  // namespace

template <typename T>
void monotonic_alignment_search_cpu(const T* log_likelihood, const int64_t* frame_lengths,
                                    const int64_t* token_lengths, int32_t* map, int64_t B, int64_t F,
                                    int64_t T_tokens) {
  if (B <= 0) return;
  check_alignment_lengths("monotonic_alignment_search", frame_lengths, token_lengths, B, F, T_tokens);
  std::fill(map, map + B * F, -1);
  // A thread per item pays off only when there is real work: ~1 ns per cell of the items' [Ty, Tx] grids.
  int64_t cells = 0;
  for (int64_t b = 0; b < B; ++b) cells += frame_lengths[b] * token_lengths[b];
#pragma omp parallel if (B > 1 && cells > (int64_t(1) << 18))
  {
    std::vector<T> Q;  // one working buffer per thread, reused across its items
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b)
      search_item(log_likelihood + b * F * T_tokens, T_tokens, frame_lengths[b], token_lengths[b], Q, map + b * F);
  }
}

template void monotonic_alignment_search_cpu<float>(const float*, const int64_t*, const int64_t*, int32_t*, int64_t,
                                                    int64_t, int64_t);
template void monotonic_alignment_search_cpu<double>(const double*, const int64_t*, const int64_t*, int32_t*,
                                                     int64_t, int64_t, int64_t);

}  // namespace vitscuda::kernels
