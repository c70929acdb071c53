// Alignment expansion (VITS's length regulator) as a gather over frames, and its
// backward, a scatter-add over tokens.
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// Every kernel here first checks the index: entries in [-1, T_in) (-1: a padding frame), else an
// error naming `op`, the entry and its position.
void check_frame_index(const char* op, const int32_t* index, int64_t count, int64_t T_in);

// y[b, c, f] = index[b*F + f] < 0 ? 0 : x[b, c, index[b*F + f]];  x [B, C, T], y [B, C, F].
template <typename T>
void gather_frames_cpu(const T* x, const int32_t* index, T* y, int64_t B, int64_t C, int64_t T_in, int64_t F);

// dx[b, c, index[b*F + f]] += dy[b, c, f] (accumulates into dx).
template <typename T>
void gather_frames_backward_cpu(const T* dy, const int32_t* index, T* dx, int64_t B, int64_t C, int64_t T_in, int64_t F);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
// index is a host array (uploaded).
void gather_frames_cuda(const float* x, const int32_t* index, float* y, int64_t B, int64_t C, int64_t T_in, int64_t F);
// Backward (kernels/cuda/gather_backward.cu): index grouped by column on the host and uploaded;
// deterministic (no atomics), the CPU's order of additions. dx may be nullptr.
void gather_frames_backward_cuda(const float* dy, const int32_t* index, float* dx, int64_t B, int64_t C, int64_t T_in,
                                 int64_t F);

}  // namespace vitscuda::kernels
