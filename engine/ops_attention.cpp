// Relative-position multi-head attention (kernels/attention.h), forward + tape-recorded backward.
#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/attention.h"

namespace vitscuda::ops {

Tensor relative_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& emb_rel_k,
                          const Tensor& emb_rel_v, const Tensor& key_mask, int window) {
  const char* op = "relative_attention";
  check_operands(op, {{"q", &q},
                      {"k", &k},
                      {"v", &v},
                      {"emb_rel_k", &emb_rel_k, false},
                      {"emb_rel_v", &emb_rel_v, false},
                      {"key mask", &key_mask, true, false}});
  VC_CHECK(q.ndim() == 4 && k.shape() == q.shape() && v.shape() == q.shape(),
           op << ": q, k, v must be equal [B, H, Tlen, D], got " << q.describe() << ", " << k.describe() << ", "
              << v.describe());
  const int64_t B = q.dim(0), H = q.dim(1), Tlen = q.dim(2), D = q.dim(3);
  VC_CHECK(key_mask.numel() == B * Tlen,
           op << ": key mask " << key_mask.describe() << " for [B=" << B << ", Tlen=" << Tlen << "]");
  VC_CHECK(window >= 0, op << ": negative window " << window);
  if (window > 0)
    for (const Tensor* e : {&emb_rel_k, &emb_rel_v})
      VC_CHECK(e->defined() && e->numel() == (2 * window + 1) * D,
               op << ": relative embeddings must be [1, " << 2 * window + 1 << ", " << D << "], got "
                  << (e->defined() ? e->describe() : "undefined"));
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor probs = Tensor::empty({B * H, Tlen, Tlen}, q.dtype(), q.device());
  Tensor mask = key_mask.dtype() == q.dtype() ? key_mask : key_mask.to(q.dtype());
  Tensor ek = window > 0 ? emb_rel_k : Tensor(), ev = window > 0 ? emb_rel_v : Tensor();
  VC_KERNEL(op, q, relative_attention_forward, q.data<T>(), k.data<T>(), v.data<T>(), data_or_null<T>(ek),
            data_or_null<T>(ev), mask.data<T>(), out.data<T>(), probs.data<T>(), B, H, Tlen, D, window);
  if (autograd::needs_grad({&q, &k, &v, &ek, &ev})) {
    SlotPtr sq = slot_of(q), sk = slot_of(k), sv = slot_of(v), sek = slot_of(ek), sev = slot_of(ev);
    Tensor qs = q.detach(), ks = k.detach(), vs = v.detach(), eks = ek.detach(), evs = ev.detach();
    Tensor ps = probs;
    autograd::record(op, out, [=](const Tensor& dy) {
      Tensor dq = grad_buffer(sq, qs.shape()), dk = grad_buffer(sk, ks.shape()), dv = grad_buffer(sv, vs.shape());
      Tensor dek = grad_buffer(sek, eks.shape()), dev = grad_buffer(sev, evs.shape());
      VC_KERNEL("relative_attention_backward", dy, relative_attention_backward, qs.data<T>(), ks.data<T>(),
                vs.data<T>(), data_or_null<T>(eks), data_or_null<T>(evs), ps.data<T>(), dy.data<T>(),
                data_or_null<T>(dq), data_or_null<T>(dk), data_or_null<T>(dv), data_or_null<T>(dek),
                data_or_null<T>(dev), B, H, Tlen, D, window);
    });
  }
  return out;
}

}  // namespace vitscuda::ops
