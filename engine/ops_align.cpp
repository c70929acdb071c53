#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/alignment.h"

namespace vitscuda::ops {

Tensor gather_frames(const Tensor& x, const std::vector<int32_t>& index, int64_t frames) {
  check_operands("gather_frames", {{"x", &x}});
  VC_CHECK(x.ndim() == 3, "gather_frames: x must be [B, C, T], got " << x.describe());
  const int64_t B = x.dim(0), C = x.dim(1), Tin = x.dim(2);
  VC_CHECK(static_cast<int64_t>(index.size()) == B * frames,
           "gather_frames: " << index.size() << " indices for batch " << B << " x " << frames << " frames");
  for (size_t i = 0; i < index.size(); ++i)
    VC_CHECK(index[i] >= -1 && index[i] < Tin,
             "gather_frames: index " << index[i] << " at " << i << " outside [-1, " << Tin << ")");
  Tensor y = Tensor::empty({B, C, frames}, x.dtype(), x.device());
  VC_KERNEL("gather_frames", x, gather_frames, x.data<T>(), index.data(), y.data<T>(), B, C, Tin, frames);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    autograd::record("gather_frames", y, [slot, index, B, C, Tin, frames](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, {B, C, Tin});
      VC_KERNEL("gather_frames_backward", dy, gather_frames_backward, dy.data<T>(), index.data(), dx.data<T>(), B, C,
                Tin, frames);
    });
  }
  return y;
}

std::vector<int32_t> monotonic_alignment_search(const Tensor& log_likelihood, const std::vector<int64_t>& frame_lengths,
                                                const std::vector<int64_t>& token_lengths) {
  check_operands("monotonic_alignment_search", {{"log_likelihood", &log_likelihood}});
  VC_CHECK(log_likelihood.ndim() == 3,
           "monotonic_alignment_search: log_likelihood must be [B, frames, tokens], got " << log_likelihood.describe());
  const int64_t B = log_likelihood.dim(0), F = log_likelihood.dim(1), tokens = log_likelihood.dim(2);
  VC_CHECK(static_cast<int64_t>(frame_lengths.size()) == B && static_cast<int64_t>(token_lengths.size()) == B,
           "monotonic_alignment_search: " << frame_lengths.size() << " frame lengths and " << token_lengths.size()
                                          << " token lengths for a batch of " << B << " ("
                                          << log_likelihood.describe() << ")");
  // The kernels check the lengths again; here the message can name the tensor.
  for (int64_t b = 0; b < B; ++b) {
    VC_CHECK(frame_lengths[b] >= 1 && frame_lengths[b] <= F && token_lengths[b] >= 1 && token_lengths[b] <= tokens,
             "monotonic_alignment_search: item " << b << " has " << frame_lengths[b] << " frames and "
                                                 << token_lengths[b] << " tokens, outside the log-likelihood "
                                                 << log_likelihood.describe());
    VC_CHECK(token_lengths[b] <= frame_lengths[b],
             "monotonic_alignment_search: item " << b << " has " << token_lengths[b] << " tokens but only "
                                                 << frame_lengths[b]
                                                 << " frames: no monotonic alignment gives every token a frame");
  }
  std::vector<int32_t> map(static_cast<size_t>(B * F), -1);
  // Nothing is recorded: the alignment is a constant of the step (the search has no gradient).
  VC_KERNEL("monotonic_alignment_search", log_likelihood, monotonic_alignment_search, log_likelihood.data<T>(),
            frame_lengths.data(), token_lengths.data(), map.data(), B, F, tokens);
  return map;
}

}  // namespace vitscuda::ops
