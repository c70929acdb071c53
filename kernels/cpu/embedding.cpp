#include "kernels/embedding.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace vitscuda::kernels {

namespace {
void check_ids(const char* who, const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i)
    VC_CHECK(ids[i] >= 0 && ids[i] < vocab,
             who << ": id " << ids[i] << " at position " << i << " is outside the table's [0, " << vocab << ") rows");
}
}  // namespace

template <typename T>
void embedding_forward_cpu(const T* table, const int32_t* ids, T* y, int64_t n, int64_t vocab, int64_t C) {
  VC_CHECK(n >= 0 && vocab >= 0 && C >= 0, "embedding: negative size (" << n << ", " << vocab << ", " << C << ")");
  check_ids("embedding", ids, n, vocab);
#pragma omp parallel for schedule(static) if (n * C > 65536)
  for (int64_t i = 0; i < n; ++i) std::memcpy(y + i * C, table + static_cast<int64_t>(ids[i]) * C, sizeof(T) * C);
}

template <typename T>
void embedding_backward_cpu(const T* dy, const int32_t* ids, T* dtable, int64_t n, int64_t vocab, int64_t C) {
  VC_CHECK(n >= 0 && vocab >= 0 && C >= 0,
           "embedding backward: negative size (" << n << ", " << vocab << ", " << C << ")");
  check_ids("embedding backward", ids, n, vocab);
  // Threads split the channels, so repeated ids never race; within a thread positions are
  // visited in order, making the sum deterministic.
  constexpr int64_t kChannelBlock = 64;
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if (n * C > 65536)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t i = 0; i < n; ++i) {
      const T* src = dy + i * C;
      T* dst = dtable + static_cast<int64_t>(ids[i]) * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

#define VITSCUDA_INSTANTIATE_EMBEDDING(T)                                                          \
  template void embedding_forward_cpu<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t); \
  template void embedding_backward_cpu<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t);

VITSCUDA_INSTANTIATE_EMBEDDING(float)
VITSCUDA_INSTANTIATE_EMBEDDING(double)
#undef VITSCUDA_INSTANTIATE_EMBEDDING

}  // namespace vitscuda::kernels
