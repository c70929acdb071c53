// Relative-position attention as transformers' VitsAttention computes it, one (item, head) at a
// time: the four T x T products go to BLAS (which brings its own threads, see im2col_gemm.h),
// the relative terms use a [T, 2W+1] matrix in "relative layout" (column r holds position
// j = i + r - W), which is what _absolute_position_to_relative_position produces.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/im2col_gemm.h"

namespace vitscuda::kernels {

namespace {

// Keys j with |j - i| <= window: [first, last].
inline void window_range(int64_t i, int64_t time, int window, int64_t& first, int64_t& last) {
  first = std::max<int64_t>(0, i - window);
  last = std::min<int64_t>(time - 1, i + window);
}

// rel[i, j - i + W] = abs[i, j] inside the window, 0 elsewhere.
template <typename T>
void to_relative(const T* abs, T* rel, int64_t time, int window) {
  const int64_t R = 2 * static_cast<int64_t>(window) + 1;
  std::fill(rel, rel + time * R, T(0));
  for (int64_t i = 0; i < time; ++i) {
    int64_t first, last;
    window_range(i, time, window, first, last);
    for (int64_t j = first; j <= last; ++j) rel[i * R + (j - i + window)] = abs[i * time + j];
  }
}

// abs[i, j] += rel[i, j - i + W] inside the window.
template <typename T>
void add_relative(const T* rel, T* abs, int64_t time, int window) {
  const int64_t R = 2 * static_cast<int64_t>(window) + 1;
  for (int64_t i = 0; i < time; ++i) {
    int64_t first, last;
    window_range(i, time, window, first, last);
    for (int64_t j = first; j <= last; ++j) abs[i * time + j] += rel[i * R + (j - i + window)];
  }
}

}  // namespace

template <typename T>
void relative_attention_forward_cpu(const T* q, const T* k, const T* v, const T* emb_k, const T* emb_v,
                                    const T* key_mask, T* out, T* probs, int64_t B, int64_t heads, int64_t time,
                                    int64_t dim, int window) {
  const int Tn = static_cast<int>(time), D = static_cast<int>(dim), R = 2 * window + 1;
  std::vector<T> rel(static_cast<size_t>(time) * R);
  for (int64_t bh = 0; bh < B * heads; ++bh) {
    const int64_t b = bh / heads;
    const T* qb = q + bh * time * dim;
    const T* kb = k + bh * time * dim;
    const T* vb = v + bh * time * dim;
    T* p = probs + bh * time * time;
    T* ob = out + bh * time * dim;
    detail::gemm<T>(false, true, Tn, Tn, D, T(1), qb, D, kb, D, T(0), p, Tn);  // q_i . k_j
    if (emb_k) {
      detail::gemm<T>(false, true, Tn, R, D, T(1), qb, D, emb_k, D, T(0), rel.data(), R);  // q_i . emb_k[r]
      add_relative(rel.data(), p, time, window);
    }
    // Padding keys get finfo(T).min added, as transformers' _prepare_4d_attention_mask does; a
    // row whose keys are all padding then comes out uniform, as in torch.
    for (int64_t i = 0; i < time; ++i) {
      T* row = p + i * time;
      for (int64_t j = 0; j < time; ++j)
        if (key_mask[b * time + j] == T(0)) row[j] += std::numeric_limits<T>::lowest();
      T m = row[0];
      for (int64_t j = 1; j < time; ++j) m = std::max(m, row[j]);
      T sum = 0;
      for (int64_t j = 0; j < time; ++j) sum += (row[j] = std::exp(row[j] - m));
      const T inv = T(1) / sum;
      for (int64_t j = 0; j < time; ++j) row[j] *= inv;
    }
    detail::gemm<T>(false, false, Tn, D, Tn, T(1), p, Tn, vb, D, T(0), ob, D);  // sum_j p_ij v_j
    if (emb_v) {
      to_relative(p, rel.data(), time, window);
      detail::gemm<T>(false, false, Tn, D, R, T(1), rel.data(), R, emb_v, D, T(1), ob, D);  // + p_ij emb_v[r]
    }
  }
}

template <typename T>
void relative_attention_backward_cpu(const T* q, const T* k, const T* v, const T* emb_k, const T* emb_v,
                                     const T* probs, const T* dout, T* dq, T* dk, T* dv, T* demb_k, T* demb_v,
                                     int64_t B, int64_t heads, int64_t time, int64_t dim, int window) {
  const int Tn = static_cast<int>(time), D = static_cast<int>(dim), R = 2 * window + 1;
  std::vector<T> dp(static_cast<size_t>(time) * time), rel(static_cast<size_t>(time) * R);
  for (int64_t bh = 0; bh < B * heads; ++bh) {
    const int64_t off = bh * time * dim;
    const T* p = probs + bh * time * time;
    const T* g = dout + off;
    // dL/dp_ij = g_i . (v_j + emb_v[j - i + W])
    detail::gemm<T>(false, true, Tn, Tn, D, T(1), g, D, v + off, D, T(0), dp.data(), Tn);
    if (emb_v) {
      detail::gemm<T>(false, true, Tn, R, D, T(1), g, D, emb_v, D, T(0), rel.data(), R);
      add_relative(rel.data(), dp.data(), time, window);
      if (demb_v) {
        to_relative(p, rel.data(), time, window);
        detail::gemm<T>(true, false, R, D, Tn, T(1), rel.data(), R, g, D, T(1), demb_v, D);
      }
    }
    if (dv) detail::gemm<T>(true, false, Tn, D, Tn, T(1), p, Tn, g, D, T(1), dv + off, D);
    // Softmax backward, in place: ds_ij = p_ij (dp_ij - sum_l p_il dp_il). The additive mask is
    // a constant and passes the gradient through unchanged.
    for (int64_t i = 0; i < time; ++i) {
      const T* pi = p + i * time;
      T* di = dp.data() + i * time;
      T dot = 0;
      for (int64_t j = 0; j < time; ++j) dot += pi[j] * di[j];
      for (int64_t j = 0; j < time; ++j) di[j] = pi[j] * (di[j] - dot);
    }
    if (dq) detail::gemm<T>(false, false, Tn, D, Tn, T(1), dp.data(), Tn, k + off, D, T(1), dq + off, D);
    if (dk) detail::gemm<T>(true, false, Tn, D, Tn, T(1), dp.data(), Tn, q + off, D, T(1), dk + off, D);
    if (emb_k && (dq || demb_k)) {
      to_relative(dp.data(), rel.data(), time, window);
      if (dq) detail::gemm<T>(false, false, Tn, D, R, T(1), rel.data(), R, emb_k, D, T(1), dq + off, D);
      if (demb_k) detail::gemm<T>(true, false, R, D, Tn, T(1), rel.data(), R, q + off, D, T(1), demb_k, D);
    }
  }
}

#define VC_INSTANTIATE(T)                                                                                          \
  template void relative_attention_forward_cpu<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, \
                                                  T*, int64_t, int64_t, int64_t, int64_t, int);                   \
  template void relative_attention_backward_cpu<T>(const T*, const T*, const T*, const T*, const T*, const T*,    \
                                                   const T*, T*, T*, T*, T*, T*, int64_t, int64_t, int64_t,       \
                                                   int64_t, int);
VC_INSTANTIATE(float)
VC_INSTANTIATE(double)
#undef VC_INSTANTIATE

}  // namespace vitscuda::kernels
