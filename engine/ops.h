// Tensor operations: the only way model code computes. Each op checks shapes and
// dtypes (throwing vitscuda::Error with the op's name and the offending shapes),
// allocates its output and dispatches on the input's device and dtype to
// kernels/ (f32 and f64 on the CPU). Layout conventions follow PyTorch:
// sequences are [batch, channels, time] for convolutions.
// Sources: ops_elementwise.cpp, ops_nn.cpp, ops_attention.cpp, ops_spline.cpp, ops_align.cpp,
// ops_audio.cpp, ops_loss.cpp, ops_pad.cpp, one per kernel family; how an op is written: engine/op_support.h.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::kernels {
class StftPlan;  // kernels/stft_mel.h: the STFT's geometry, window and tables
}

namespace vitscuda::ops {

// ---- elementwise, with NumPy broadcasting (up to 4 dims) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double s);       // x * s
Tensor add_scalar(const Tensor& x, double s);  // x + s

Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double slope);
Tensor gelu(const Tensor& x);  // exact (erf) GELU, as torch's default
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor softplus(const Tensor& x);  // log(1 + e^x), stable; torch threshold 20
Tensor ceil(const Tensor& x);
Tensor clamp_min(const Tensor& x, double lo);
// Applies transformers' ACT2FN by name ("relu", "gelu", "gelu_new", "silu", "swish", "tanh", "sigmoid").
Tensor activation(const Tensor& x, const std::string& name);

// WaveNet gate: x [B, 2C, T] -> tanh(x[:, :C]) * sigmoid(x[:, C:])  ([B, C, T]).
Tensor gated_tanh_sigmoid(const Tensor& x);

// ---- shape ----
Tensor transpose(const Tensor& x, int dim0, int dim1);  // materialised copy
Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length);  // copy
Tensor cat(const std::vector<Tensor>& xs, int dim);
Tensor flip(const Tensor& x, int dim);
Tensor sum(const Tensor& x, int dim, bool keepdim);
// torch.nn.functional.pad(x, (left, right), mode="reflect") on the last dimension: padded samples mirror
// the row around its first / last sample (left, right < the last dimension); the backward folds their
// gradients back into the mirrored samples. Source: ops_pad.cpp (kernels/pad.h).
Tensor reflect_pad(const Tensor& x, int64_t left, int64_t right);

// ---- linear algebra ----
// x [..., in] @ w[out, in]^T + b[out] (b may be undefined).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);
// Batched a [..., M, K] @ b [..., K, N]; leading dims must be equal.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- neural-network layers ----
// ids: `batch * time` token ids, table [vocab, C] -> [batch, time, C]. An id outside
// the table is an error naming the id and its position.
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids, int64_t batch, int64_t time);

// x [B, Cin, T], w [Cout, Cin/groups, K], b [Cout] or undefined.
// Output length = (T + pad_left + pad_right - dilation*(K-1) - 1)/stride + 1.
Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad_left, int pad_right,
              int dilation, int groups);
// x [B, Cin, T], w [Cin, Cout, K] (PyTorch ConvTranspose1d layout), b [Cout] or undefined.
// Output length = (T-1)*stride - 2*padding + K.
Tensor conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int padding);

// LayerNorm over the last dimension (nn.LayerNorm): gamma, beta [C].
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps);
// LayerNorm over the channel dimension of x [B, C, T] (nn.LayerNorm applied to x.transpose(1, -1)).
Tensor layer_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps);

// Weight normalisation over dim 0: w = g * v / ||v|| (norm over all dims but 0); g [Cout, 1, ...].
Tensor weight_norm(const Tensor& g, const Tensor& v);

// Softmax over the last dimension.
Tensor softmax(const Tensor& x);

// Multi-head self-attention with windowed relative-position embeddings (VITS).
// q, k, v: [B, H, T, D] (q already scaled by D^-0.5). emb_rel_k, emb_rel_v: [1, 2W+1, D] (W = window;
// undefined when W == 0). key_mask: [B, T] with 1 for valid keys, 0 for padding.
// logits[i, j] = q_i . k_j + (|j-i| <= W ? q_i . emb_rel_k[j-i+W] : 0), masked keys -> -inf (finfo.min);
// out_i = sum_j p_ij v_j + sum_{|j-i|<=W} p_ij emb_rel_v[j-i+W]. Returns [B, H, T, D].
Tensor relative_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& emb_rel_k,
                          const Tensor& emb_rel_v, const Tensor& key_mask, int window);

// Rational-quadratic spline (transformers' _unconstrained_rational_quadratic_spline, tails "linear").
// inputs [N]; unnormalized widths, heights [N, bins]; derivatives [N, bins-1].
// Returns (outputs [N], log|det| [N]); identity outside [-tail_bound, tail_bound].
std::pair<Tensor, Tensor> rational_quadratic_spline(const Tensor& inputs, const Tensor& widths,
                                                    const Tensor& heights, const Tensor& derivatives,
                                                    bool reverse, double tail_bound);

}  // namespace vitscuda::ops

namespace vitscuda::ops {

// ---- audio (kernels/stft_mel.h) ----
// VITS' linear spectrogram (mel_processing.spectrogram_torch): sqrt(|STFT(reflect_pad(wave))|^2 + 1e-6)
// with the plan's window, n_fft and hop (center=False, reflect padding of (n_fft - hop) / 2 on both sides).
// wave [B, S] -> [B, bins = n_fft / 2 + 1, plan.frames(S)]. It is a model input, not a loss term: it has no
// backward, and asking for one (a waveform that needs a gradient while a tape records) is an error.
Tensor linear_spectrogram(const Tensor& wave, const kernels::StftPlan& plan);

// The log-mel of the training loss (mel_processing.mel_spectrogram_torch): log(clamp(filterbank @
// linear_spectrogram(wave), min = 1e-5)). wave [B, S]; filterbank [n_mels, bins], a constant on the wave's
// device in its dtype. Returns [B, n_mels, plan.frames(S)], recorded on the tape when `wave` needs a gradient.
Tensor log_mel(const Tensor& wave, const kernels::StftPlan& plan, const Tensor& filterbank);

// ---- losses (kernels/loss.h) ----
// sum(|generated - target| * mask) / (C * sum(mask)) for generated, target [B, C, frames] of one dtype and
// mask [B, 1, frames] or [B, frames] (any dtype; 1 valid, 0 padding; an error when no frame is valid).
// A scalar (shape []) of the inputs' dtype, recorded on the tape when either input needs a gradient
// (sign(0) = 0, as torch).
Tensor masked_l1_loss(const Tensor& generated, const Tensor& target, const Tensor& mask);

// Alignment expansion (length regulator): out[b, c, f] = x[b, c, index[b*frames + f]], or 0 where the
// index is -1. x [B, C, T]; index has B * frames entries in [-1, T). Returns [B, C, frames].
Tensor gather_frames(const Tensor& x, const std::vector<int32_t>& index, int64_t frames);

// Monotonic alignment search (VITS maximum_path with finetune-hf-vits' tie rule and y != 0 guard) on
// log_likelihood [B, frames, tokens] (f32 or f64, CPU or CUDA; no gradient). Item b uses its first
// frame_lengths[b] frames and token_lengths[b] tokens (token_lengths[b] <= frame_lengths[b], else an error naming b).
// Returns the frame -> token map on the host, B * frames entries, -1 for padding frames (the index gather_frames takes).
std::vector<int32_t> monotonic_alignment_search(const Tensor& log_likelihood, const std::vector<int64_t>& frame_lengths,
                                                const std::vector<int64_t>& token_lengths);

}  // namespace vitscuda::ops
