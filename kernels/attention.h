// Multi-head self-attention with VITS's windowed relative-position embeddings, fused
// (transformers' VitsAttention between the projections). Float and double.
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// q, k, v, out: [BH, T, D] (BH = batch * heads; q pre-scaled). emb_k, emb_v: [2W+1, D] or nullptr when W == 0.
// key_mask: [B, T], 1 for valid keys (head h of item b is row b*heads + h). probs: [BH, T, T], written for the
// backward to reuse.
// logits_ij = q_i.k_j + (|j-i| <= W ? q_i.emb_k[j-i+W] : 0) + (mask_j ? 0 : lowest), lowest = finfo(T).min as
// transformers' attention mask adds it (a row with no valid key comes out uniform, as in torch)
// out_i = sum_j p_ij v_j + sum_{|j-i|<=W} p_ij emb_v[j-i+W]
template <typename T>
void relative_attention_forward_cpu(const T* q, const T* k, const T* v, const T* emb_k, const T* emb_v,
                                    const T* key_mask, T* out, T* probs, int64_t B, int64_t heads, int64_t time,
                                    int64_t dim, int window);

// Given dout [BH, T, D] and the forward's probs, ACCUMULATES (+=) into dq, dk, dv [BH, T, D] and
// demb_k, demb_v [2W+1, D] (any may be nullptr).
template <typename T>
void relative_attention_backward_cpu(const T* q, const T* k, const T* v, const T* emb_k, const T* emb_v,
                                     const T* probs, const T* dout, T* dq, T* dk, T* dv, T* demb_k, T* demb_v,
                                     int64_t B, int64_t heads, int64_t time, int64_t dim, int window);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
// Logits and the weighted sum by cuBLAS batched products; the relative terms, mask and softmax fused.
void relative_attention_forward_cuda(const float* q, const float* k, const float* v, const float* emb_k,
                                     const float* emb_v, const float* key_mask, float* out, float* probs, int64_t B,
                                     int64_t heads, int64_t time, int64_t dim, int window);
// Backward (same arguments as the CPU backward; gradients ACCUMULATE, any may be nullptr): the dense
// products by cuBLAS with beta = 1, the softmax backward and the relative terms fused; demb_k and
// demb_v (sums over all B * heads * T rows) are reduced deterministically.
void relative_attention_backward_cuda(const float* q, const float* k, const float* v, const float* emb_k,
                                      const float* emb_v, const float* probs, const float* dout, float* dq, float* dk,
                                      float* dv, float* demb_k, float* demb_v, int64_t B, int64_t heads, int64_t time,
                                      int64_t dim, int window);

}  // namespace vitscuda::kernels
