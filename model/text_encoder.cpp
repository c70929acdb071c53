#include "model/text_encoder.h"

#include <cmath>
#include <string>

#include "engine/ops.h"
#include "model/layers.h"

namespace vitscuda::model {

void declare_text_encoder(const io::VitsConfig& c, ParameterStore& store) {
  const int H = c.hidden_size;
  store.declare("text_encoder.embed_tokens.weight", {c.vocab_size, H}, {InitKind::Normal, c.initializer_range});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "text_encoder.encoder.layers." + std::to_string(l);
    for (const char* proj : {"k_proj", "v_proj", "q_proj", "out_proj"})
      declare_linear(store, p + ".attention." + proj, H, H, c.initializer_range, c.use_bias);
    if (c.window_size > 0) {
      const int head_dim = H / c.num_attention_heads;
      const double std = 1.0 / std::sqrt(static_cast<double>(head_dim));
      store.declare(p + ".attention.emb_rel_k", {1, 2 * c.window_size + 1, head_dim}, {InitKind::Normal, std});
      store.declare(p + ".attention.emb_rel_v", {1, 2 * c.window_size + 1, head_dim}, {InitKind::Normal, std});
    }
    declare_layer_norm(store, p + ".layer_norm", H);
    declare_conv1d(store, p + ".feed_forward.conv_1", H, c.ffn_dim, c.ffn_kernel_size);
    declare_conv1d(store, p + ".feed_forward.conv_2", c.ffn_dim, H, c.ffn_kernel_size);
    declare_layer_norm(store, p + ".final_layer_norm", H);
  }
  declare_conv1d(store, "text_encoder.project", H, 2 * c.flow_size, 1);
}

namespace {

// [B, T, H] -> [B, heads, T, H/heads]
Tensor split_heads(const Tensor& x, int heads) {
  const int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2);
  return ops::transpose(x.reshape({B, T, heads, H / heads}), 1, 2);
}

Tensor self_attention(const io::VitsConfig& c, const ParameterStore& store, const std::string& p, const Tensor& x,
                      const Tensor& key_mask) {
  const int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2);
  const int heads = c.num_attention_heads;
  const double scaling = 1.0 / std::sqrt(static_cast<double>(H / heads));
  Tensor q = split_heads(ops::scale(linear(store, p + ".q_proj", x), scaling), heads);
  Tensor k = split_heads(linear(store, p + ".k_proj", x), heads);
  Tensor v = split_heads(linear(store, p + ".v_proj", x), heads);
  Tensor emb_k = c.window_size > 0 ? store.get(p + ".emb_rel_k") : Tensor();
  Tensor emb_v = c.window_size > 0 ? store.get(p + ".emb_rel_v") : Tensor();
  Tensor out = ops::relative_attention(q, k, v, emb_k, emb_v, key_mask, c.window_size);  // [B, h, T, d]
  out = ops::transpose(out, 1, 2).reshape({B, T, H});
  return linear(store, p + ".out_proj", out);
}

// transformers' VitsFeedForward: convs over time with (k-1)/2 left and k/2 right padding.
Tensor feed_forward(const io::VitsConfig& c, const ParameterStore& store, const std::string& p, const Tensor& x,
                    const Tensor& mask_bct) {
  const int k = c.ffn_kernel_size;
  const int left = (k - 1) / 2, right = k / 2;
  Tensor h = ops::mul(ops::transpose(x, 1, 2), mask_bct);  // [B, H, T]
  h = ops::conv1d(h, conv_weight(store, p + ".conv_1"), optional_param(store, p + ".conv_1.bias"), 1, left, right, 1, 1);
  h = ops::mul(ops::activation(h, c.hidden_act), mask_bct);
  h = ops::conv1d(h, conv_weight(store, p + ".conv_2"), optional_param(store, p + ".conv_2.bias"), 1, left, right, 1, 1);
  h = ops::mul(h, mask_bct);
  return ops::transpose(h, 1, 2);
}

}  // namespace

TextEncoderOutput run_text_encoder(const io::VitsConfig& c, const ParameterStore& store,
                                   const std::vector<int32_t>& ids, int64_t batch, int64_t time, const Tensor& mask) {
  const Tensor mask_bct = ops::transpose(mask, 1, 2);  // [B, 1, T]
  const Tensor key_mask = mask.reshape({batch, time});
  Tensor h = ops::embedding(store.get("text_encoder.embed_tokens.weight"), ids, batch, time);
  h = ops::mul(ops::scale(h, std::sqrt(static_cast<double>(c.hidden_size))), mask);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "text_encoder.encoder.layers." + std::to_string(l);
    Tensor attn = self_attention(c, store, p + ".attention", h, key_mask);
    h = ops::layer_norm(ops::add(h, attn), store.get(p + ".layer_norm.weight"), store.get(p + ".layer_norm.bias"),
                        c.layer_norm_eps);
    Tensor ff = feed_forward(c, store, p + ".feed_forward", h, mask_bct);
    h = ops::layer_norm(ops::add(h, ff), store.get(p + ".final_layer_norm.weight"),
                        store.get(p + ".final_layer_norm.bias"), c.layer_norm_eps);
  }
  h = ops::mul(h, mask);
  Tensor stats = ops::mul(ops::transpose(conv1d(store, "text_encoder.project", ops::transpose(h, 1, 2)), 1, 2), mask);
  TextEncoderOutput out;
  out.hidden = h;
  out.prior_means = ops::narrow(stats, 2, 0, c.flow_size);
  out.prior_log_std = ops::narrow(stats, 2, c.flow_size, c.flow_size);
  return out;
}

}  // namespace vitscuda::model
