// Embedding lookup (a row gather from a table) and its backward (a scatter-add into the
// table's gradient).
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// y[i, :] = table[ids[i], :] for i in [0, n); table [vocab, C], y [n, C]. An id outside
// [0, vocab) throws vitscuda::Error naming the id and its position i.
template <typename T>
void embedding_forward_cpu(const T* table, const int32_t* ids, T* y, int64_t n, int64_t vocab, int64_t C);

// dtable[ids[i], :] += dy[i, :] (ACCUMULATES; repeated ids add up). Same id checks as the forward.
template <typename T>
void embedding_backward_cpu(const T* dy, const int32_t* ids, T* dtable, int64_t n, int64_t vocab, int64_t C);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
// ids is a host array (checked, then uploaded).
void embedding_forward_cuda(const float* table, const int32_t* ids, float* y, int64_t n, int64_t vocab, int64_t C);
// Backward (kernels/cuda/gather_backward.cu): ids checked as the CPU does, grouped by id on the
// host and uploaded; deterministic (no atomics), the CPU's order of additions. dtable may be nullptr.
void embedding_backward_cuda(const float* dy, const int32_t* ids, float* dtable, int64_t n, int64_t vocab, int64_t C);

}  // namespace vitscuda::kernels
