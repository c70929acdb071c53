// Bias gradients on the GPU: per-channel sums of an output gradient, ACCUMULATED into the
// bias gradient (db += sum), deterministic (fixed summation order for a given shape, no
// atomics), so repeated runs give identical bits. Used by the conv1d, conv_transpose1d and
// linear backwards. Only .cu files include this.
#pragma once
#include <cstdint>

namespace vitscuda::kernels::cuda {

// db[c] += sum over n in [0, B), t in [0, T) of dy[(n*C + c)*T + t]   (dy [B, C, T]).
void bias_grad_channels(const float* dy, float* db, int64_t B, int64_t C, int64_t T);

// db[c] += sum over r in [0, R) of dy[r*C + c]   (dy [R, C]).
void bias_grad_rows(const float* dy, float* db, int64_t R, int64_t C);

}  // namespace vitscuda::kernels::cuda
