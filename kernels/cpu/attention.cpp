#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace vitscuda::kernels {

template <typename T>
void relative_attention_forward_cpu(const T* q, const T* k, const T* v, const T* emb_k, const T* emb_v,
                                    const T* key_mask, T* out, T* probs, int64_t B, int64_t heads, int64_t time,
                                    int64_t dim, int window) {
  const int64_t BH = B * heads, Tn = time, D = dim;
#pragma omp parallel for if (BH * Tn * Tn * D > (1 << 16))
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t b = bh / heads;
    const T* qb = q + bh * Tn * D;
    const T* kb = k + bh * Tn * D;
    const T* vb = v + bh * Tn * D;
    T* pb = probs + bh * Tn * Tn;
    T* ob = out + bh * Tn * D;
    for (int64_t i = 0; i < Tn; ++i) {
      T* row = pb + i * Tn;
      const T* qi = qb + i * D;
      for (int64_t j = 0; j < Tn; ++j) {
        T s = 0;
        const T* kj = kb + j * D;
        for (int64_t d = 0; d < D; ++d) s += qi[d] * kj[d];
        const int64_t r = j - i + window;
        if (emb_k && r >= 0 && r <= 2 * window) {
          const T* e = emb_k + r * D;
          T s2 = 0;
          for (int64_t d = 0; d < D; ++d) s2 += qi[d] * e[d];
          s += s2;
        }
        // transformers adds finfo(dtype).min to masked logits.
        if (key_mask[b * Tn + j] == T(0)) s += std::numeric_limits<T>::lowest();
        row[j] = s;
      }
      T m = row[0];
      for (int64_t j = 1; j < Tn; ++j) m = std::max(m, row[j]);
      T sum = 0;
      for (int64_t j = 0; j < Tn; ++j) sum += (row[j] = std::exp(row[j] - m));
      for (int64_t j = 0; j < Tn; ++j) row[j] /= sum;
      T* oi = ob + i * D;
      std::fill(oi, oi + D, T(0));
      for (int64_t j = 0; j < Tn; ++j) {
        const T p = row[j];
        const T* vj = vb + j * D;
        for (int64_t d = 0; d < D; ++d) oi[d] += p * vj[d];
      }
      if (emb_v)
        for (int64_t j = std::max<int64_t>(0, i - window); j <= std::min<int64_t>(Tn - 1, i + window); ++j) {
          const T p = row[j];
          const T* e = emb_v + (j - i + window) * D;
          for (int64_t d = 0; d < D; ++d) oi[d] += p * e[d];
        }
    }
  }
}

template <typename T>
void relative_attention_backward_cpu(const T* q, const T* k, const T* v, const T* emb_k, const T* emb_v,
                                     const T* probs, const T* dout, T* dq, T* dk, T* dv, T* demb_k, T* demb_v,
                                     int64_t B, int64_t heads, int64_t time, int64_t dim, int window) {
  const int64_t BH = B * heads, Tn = time, D = dim, R = 2 * static_cast<int64_t>(window) + 1;
  // The relative embeddings are shared by every (item, head): each thread sums privately, then adds once.
#pragma omp parallel if (BH * Tn * Tn * D > (1 << 16))
  {
    std::vector<T> local_ek(demb_k ? R * D : 0, T(0)), local_ev(demb_v ? R * D : 0, T(0));
    std::vector<T> dp(Tn), dlogit(Tn);
#pragma omp for
    for (int64_t bh = 0; bh < BH; ++bh) {
      const T* qb = q + bh * Tn * D;
      const T* kb = k + bh * Tn * D;
      const T* vb = v + bh * Tn * D;
      const T* pb = probs + bh * Tn * Tn;
      const T* gb = dout + bh * Tn * D;
      for (int64_t i = 0; i < Tn; ++i) {
        const T* gi = gb + i * D;
        const T* pi = pb + i * Tn;
        for (int64_t j = 0; j < Tn; ++j) {
          T s = 0;
          const T* vj = vb + j * D;
          for (int64_t d = 0; d < D; ++d) s += gi[d] * vj[d];
          const int64_t r = j - i + window;
          if (emb_v && r >= 0 && r < R) {
            const T* e = emb_v + r * D;
            for (int64_t d = 0; d < D; ++d) s += gi[d] * e[d];
            if (demb_v)
              for (int64_t d = 0; d < D; ++d) local_ev[r * D + d] += pi[j] * gi[d];
          }
          dp[j] = s;
          if (dv) {
            T* dvj = dv + bh * Tn * D + j * D;
            for (int64_t d = 0; d < D; ++d) dvj[d] += pi[j] * gi[d];
          }
        }
        T dot = 0;
        for (int64_t j = 0; j < Tn; ++j) dot += pi[j] * dp[j];
        for (int64_t j = 0; j < Tn; ++j) dlogit[j] = pi[j] * (dp[j] - dot);
        const T* qi = qb + i * D;
        for (int64_t j = 0; j < Tn; ++j) {
          const T g = dlogit[j];
          if (g == T(0)) continue;
          const T* kj = kb + j * D;
          if (dq) {
            T* dqi = dq + bh * Tn * D + i * D;
            for (int64_t d = 0; d < D; ++d) dqi[d] += g * kj[d];
          }
          if (dk) {
            T* dkj = dk + bh * Tn * D + j * D;
            for (int64_t d = 0; d < D; ++d) dkj[d] += g * qi[d];
          }
          const int64_t r = j - i + window;
          if (emb_k && r >= 0 && r < R) {
            if (dq) {
              T* dqi = dq + bh * Tn * D + i * D;
              const T* e = emb_k + r * D;
              for (int64_t d = 0; d < D; ++d) dqi[d] += g * e[d];
            }
            if (demb_k)
              for (int64_t d = 0; d < D; ++d) local_ek[r * D + d] += g * qi[d];
          }
        }
      }
    }
#pragma omp critical
    {
      if (demb_k)
        for (int64_t x = 0; x < R * D; ++x) demb_k[x] += local_ek[x];
      if (demb_v)
        for (int64_t x = 0; x < R * D; ++x) demb_v[x] += local_ev[x];
    }
  }
}

template void relative_attention_forward_cpu<float>(const float*, const float*, const float*, const float*,
                                                    const float*, const float*, float*, float*, int64_t, int64_t,
                                                    int64_t, int64_t, int);
template void relative_attention_forward_cpu<double>(const double*, const double*, const double*, const double*,
                                                     const double*, const double*, double*, double*, int64_t,
                                                     int64_t, int64_t, int64_t, int);
template void relative_attention_backward_cpu<float>(const float*, const float*, const float*, const float*,
                                                     const float*, const float*, const float*, float*, float*,
                                                     float*, float*, float*, int64_t, int64_t, int64_t, int64_t, int);
template void relative_attention_backward_cpu<double>(const double*, const double*, const double*, const double*,
                                                      const double*, const double*, const double*, double*, double*,
                                                      double*, double*, double*, int64_t, int64_t, int64_t, int64_t,
                                                      int);

}  // namespace vitscuda::kernels
