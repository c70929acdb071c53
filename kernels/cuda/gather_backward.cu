// Backward of the row and frame gathers (gather.cu): scatter-adds, done as gathers. The index
// arrays are on the host, so the host groups the positions by destination (a CSR list, in
// increasing position order) and uploads it in one copy; on the device one thread per
// destination element starts from the gradient already there and adds its sources in that
// order. No atomics: the result is deterministic, and it is the CPU reference's exact
// sequence of float additions, so the two agree bit for bit.
#include <algorithm>
#include <numeric>
#include <vector>

#include "kernels/alignment.h"
#include "kernels/cuda/common.cuh"
#include "kernels/embedding.h"

namespace vitscuda::kernels {

namespace {

// csr = [rows (U) | offsets (U + 1) | positions]: table row rows[u] receives dy rows
// positions[offsets[u] .. offsets[u + 1]). One thread per (u, channel).
__global__ void embedding_backward_kernel(const float* __restrict__ dy, const int64_t* __restrict__ csr,
                                          float* __restrict__ dtable, int64_t U, int64_t C) {
  const int64_t* rows = csr;
  const int64_t* offsets = csr + U;
  const int64_t* positions = csr + 2 * U + 1;
  const int64_t total = U * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t u = i / C, c = i % C;
    float* dst = dtable + rows[u] * C + c;
    float acc = *dst;
    for (int64_t p = offsets[u]; p < offsets[u + 1]; ++p) acc += dy[positions[p] * C + c];
    *dst = acc;
  }
}

// csr = [offsets (B*T_in + 1) | frames]: input column t of item b receives that item's frames
// csr[offsets[b*T_in + t] .. offsets[b*T_in + t + 1]) (the offsets index csr itself, i.e. they
// already skip the offset table). One thread per (b, c, t).
__global__ void gather_frames_backward_kernel(const float* __restrict__ dy, const int64_t* __restrict__ csr,
                                              float* __restrict__ dx, int64_t C, int64_t T_in, int64_t F,
                                              int64_t total) {
  const int64_t* offsets = csr;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i % T_in;
    const int64_t bc = i / T_in;  // b * C + c
    const int64_t key = (bc / C) * T_in + t;
    const int64_t begin = offsets[key], end = offsets[key + 1];
    if (begin == end) continue;  // no frame maps to this column: dx unchanged
    const int64_t* frames = csr + begin;
    const float* dyr = dy + bc * F;
    float acc = dx[i];
    for (int64_t p = 0; p < end - begin; ++p) acc += dyr[frames[p]];
    dx[i] = acc;
  }
}

}  // namespace

void embedding_backward_cuda(const float* dy, const int32_t* ids, float* dtable, int64_t n, int64_t vocab, int64_t C) {
  VC_CHECK(n >= 0 && vocab >= 0 && C >= 0,
           "embedding backward: negative size (" << n << ", " << vocab << ", " << C << ")");
  for (int64_t i = 0; i < n; ++i)
    VC_CHECK(ids[i] >= 0 && ids[i] < vocab, "embedding backward: id " << ids[i] << " at position " << i
                                                                      << " is outside the table's [0, " << vocab
                                                                      << ") rows");
  if (n == 0 || C == 0 || !dtable) return;
  VC_CHECK(dy, "embedding backward: the output gradient dy is null");
  // Positions grouped by id; the stable sort keeps each id's positions in increasing order.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [ids](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  int64_t U = 0;
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || ids[order[k]] != ids[order[k - 1]]) ++U;
  std::vector<int64_t> csr(static_cast<size_t>(2 * U + 1 + n));
  int64_t* rows = csr.data();
  int64_t* offsets = rows + U;
  int64_t u = -1;
  for (int64_t k = 0; k < n; ++k) {
    if (k == 0 || ids[order[k]] != ids[order[k - 1]]) {
      rows[++u] = ids[order[k]];
      offsets[u] = k;
    }
  }
  offsets[U] = n;
  std::copy(order.begin(), order.end(), offsets + U + 1);
  cuda::Scratch dev_csr = cuda::upload(csr.data(), sizeof(int64_t) * csr.size(), "embedding backward positions");
  VC_LAUNCH(embedding_backward_kernel, cuda::blocks_for(U * C, 256), 256, 0)(dy, dev_csr.as<int64_t>(), dtable, U,
                                                                             C);
  VC_CHECK_LAUNCH("embedding backward");
}

void gather_frames_backward_cuda(const float* dy, const int32_t* index, float* dx, int64_t B, int64_t C, int64_t T_in,
                                 int64_t F) {
  VC_CHECK(B >= 0 && C >= 0 && T_in >= 0 && F >= 0,
           "gather_frames backward: negative size (" << B << ", " << C << ", " << T_in << ", " << F << ")");
  check_frame_index("gather_frames backward", index, B * F, T_in);
  if (B == 0 || C == 0 || T_in == 0 || F == 0 || !dx) return;
  VC_CHECK(dy, "gather_frames backward: the output gradient dy is null");
  // Counting sort of the frames by (item, column); frames are visited in order, so each
  // column's list is increasing.
  const int64_t buckets = B * T_in;
  std::vector<int64_t> offsets(static_cast<size_t>(buckets + 1), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f) {
      const int32_t t = index[b * F + f];
      if (t >= 0) ++offsets[b * T_in + t + 1];
    }
  for (int64_t k = 0; k < buckets; ++k) offsets[k + 1] += offsets[k];
  const int64_t nnz = offsets[buckets];
  if (nnz == 0) return;  // every frame is padding
  std::vector<int64_t> csr(static_cast<size_t>(buckets + 1 + nnz));
  std::copy(offsets.begin(), offsets.end(), csr.begin());
  int64_t* frames = csr.data() + buckets + 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f) {
      const int32_t t = index[b * F + f];
      if (t >= 0) frames[offsets[b * T_in + t]++] = f;
    }
  // The kernel indexes frames from the start of csr: shift the offsets by buckets + 1.
  for (int64_t k = 0; k <= buckets; ++k) csr[k] += buckets + 1;
  cuda::Scratch dev_csr = cuda::upload(csr.data(), sizeof(int64_t) * csr.size(), "alignment backward frames");
  const int64_t total = B * C * T_in;
  VC_LAUNCH(gather_frames_backward_kernel, cuda::blocks_for(total, 256), 256, 0)(dy, dev_csr.as<int64_t>(), dx, C,
                                                                                 T_in, F, total);
  VC_CHECK_LAUNCH("gather_frames backward");
}

}  // namespace vitscuda::kernels
