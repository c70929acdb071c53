// Alignment expansion (VITS's length regulator) as a gather over frames, and its
// backward, a scatter-add over tokens; and the monotonic alignment search that finds the
// frame -> token map in training.
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

// ---- monotonic alignment search (finetune-hf-vits monotonic_align/core.pyx, maximum_path_each) ----
// log_likelihood [B, F, T] (frames x tokens, read only); item b uses its first frame_lengths[b] frames and
// token_lengths[b] tokens. For each item, on a working copy Q of its values in the input's precision:
//   for y in 0..Ty-1, x in max(0, Tx+y-Ty) .. min(Tx, y+1)-1:
//     stay = x == y ? -1e9 : Q[y-1][x];  adv = x == 0 ? (y == 0 ? 0 : -1e9) : Q[y-1][x-1]
//     Q[y][x] += (stay > adv ? stay : adv)      (Cython's max(adv, stay))
//   x = Tx-1; for y in Ty-1..0: map[y] = x; if x != 0 and y != 0 and (x == y or Q[y-1][x] < Q[y-1][x-1]): --x
// (ties keep the current token). map [B * F] gets the token of every valid frame and -1 for frames at or past
// frame_lengths[b]. The lengths are host arrays of B, checked first (check_alignment_lengths).
void check_alignment_lengths(const char* op, const int64_t* frame_lengths, const int64_t* token_lengths, int64_t B,
                             int64_t F, int64_t T);
// CPU: items in parallel (OpenMP); float input accumulates in float exactly as the Cython code does, double
// input in double.
template <typename T>
void monotonic_alignment_search_cpu(const T* log_likelihood, const int64_t* frame_lengths,
                                    const int64_t* token_lengths, int32_t* map, int64_t B, int64_t F, int64_t T_tokens);
// CUDA (kernels/cuda/alignment_search.cu): log_likelihood on the device, lengths and map on the host. One block
// per item; the rows are visited in order, the tokens of a row's band in parallel, the backtrack runs on the
// device, and the int32 map is copied back (the call waits for it). The same float additions and comparisons
// as the CPU kernel, so the map is identical.
void monotonic_alignment_search_cuda(const float* log_likelihood, const int64_t* frame_lengths,
                                     const int64_t* token_lengths, int32_t* map, int64_t B, int64_t F,
                                     int64_t T_tokens);

}  // namespace vitscuda::kernels
