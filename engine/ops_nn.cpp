// Neural-network ops: linear, matmul, embedding, convolutions, layer norms, weight norm.
// Each checks its operands, allocates the output, runs the kernel for its device and dtype and,
// when a tape is recording and an input needs a gradient, records the matching backward
// kernel (which accumulates into the inputs' gradient slots). The recipe: engine/op_support.h.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/conv1d.h"
#include "kernels/conv_transpose1d.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"

namespace vitscuda::ops {

// ------------------------------------------------------------------ linear / matmul

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const char* op = "linear";
  check_operands(op, {{"x", &x, true}, {"weight", &w, true}, {"bias", &b, false}});
  VC_CHECK(x.ndim() >= 1, op << ": x must have at least one dimension, got " << x.describe());
  VC_CHECK(w.ndim() == 2 && w.dim(1) == x.dim(-1),
           op << ": weight " << w.describe() << " must be [out, " << x.dim(-1) << "] for x " << x.describe());
  const int64_t in = x.dim(-1), out = w.dim(0);
  if (b.defined())
    VC_CHECK(b.ndim() == 1 && b.dim(0) == out, op << ": bias " << b.describe() << " must be [" << out << "]");
  int64_t leading = 1;
  for (int i = 0; i + 1 < x.ndim(); ++i) leading *= x.dim(i);
  const int rows = as_int(op, "rows", leading);
  Shape y_shape = x.shape();
  y_shape.back() = out;
  Tensor y = Tensor::empty(y_shape, x.dtype(), x.device());
  const int in_i = as_int(op, "in", in), out_i = as_int(op, "out", out);
  VC_KERNEL("linear", x, linear_forward, x.data<T>(), w.data<T>(), data_or_null<T>(b), y.data<T>(), rows, in_i, out_i);
  if (autograd::needs_grad({&x, &w, &b})) {
    SlotPtr sx = slot_of(x), sw = slot_of(w), sb = slot_of(b);
    Tensor xs = saved_if(sw != nullptr, x), ws = saved_if(sx != nullptr, w);
    const Shape x_shape = x.shape(), w_shape = w.shape();
    autograd::record(op, y, [=](const Tensor& dy) {
      Tensor dx = grad_buffer(sx, x_shape), dw = grad_buffer(sw, w_shape), db = grad_buffer(sb, {out});
      VC_KERNEL("linear_backward", dy, linear_backward, data_or_null<T>(xs), data_or_null<T>(ws), dy.data<T>(),
                data_or_null<T>(dx), data_or_null<T>(dw), data_or_null<T>(db), rows, in_i, out_i);
    });
  }
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  const char* op = "matmul";
  check_operands(op, {{"a", &a, true}, {"b", &b, true}});
  VC_CHECK(a.ndim() >= 2 && a.ndim() == b.ndim(),
           op << ": operands must have the same number (>= 2) of dimensions, got " << a.describe() << " and "
              << b.describe());
  const int nd = a.ndim();
  for (int i = 0; i < nd - 2; ++i)
    VC_CHECK(a.dim(i) == b.dim(i),
             op << ": leading dimensions differ (no broadcasting): " << a.describe() << " and " << b.describe());
  VC_CHECK(a.dim(-1) == b.dim(-2), op << ": inner dimensions differ: " << a.describe() << " @ " << b.describe());
  const int64_t M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
  int64_t batch = 1;
  for (int i = 0; i < nd - 2; ++i) batch *= a.dim(i);
  const int batch_i = as_int(op, "batch", batch), M_i = as_int(op, "M", M), K_i = as_int(op, "K", K),
            N_i = as_int(op, "N", N);
  Shape c_shape = a.shape();
  c_shape.back() = N;
  Tensor c = Tensor::empty(c_shape, a.dtype(), a.device());
  VC_KERNEL("matmul", a, matmul_forward, a.data<T>(), b.data<T>(), c.data<T>(), batch_i, M_i, K_i, N_i);
  if (autograd::needs_grad({&a, &b})) {
    SlotPtr sa = slot_of(a), sb = slot_of(b);
    Tensor as = saved_if(sb != nullptr, a), bs = saved_if(sa != nullptr, b);
    const Shape a_shape = a.shape(), b_shape = b.shape();
    autograd::record(op, c, [=](const Tensor& dc) {
      Tensor da = grad_buffer(sa, a_shape), db = grad_buffer(sb, b_shape);
      VC_KERNEL("matmul_backward", dc, matmul_backward, data_or_null<T>(as), data_or_null<T>(bs), dc.data<T>(),
                data_or_null<T>(da), data_or_null<T>(db), batch_i, M_i, K_i, N_i);
    });
  }
  return c;
}

// ------------------------------------------------------------------ embedding

Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids, int64_t batch, int64_t time) {
  const char* op = "embedding";
  check_operands(op, {{"table", &table, true}});
  VC_CHECK(table.ndim() == 2, op << ": table must be [vocab, C], got " << table.describe());
  VC_CHECK(batch >= 0 && time >= 0 && static_cast<int64_t>(ids.size()) == batch * time,
           op << ": " << ids.size() << " ids for batch " << batch << " x time " << time);
  const int64_t vocab = table.dim(0), C = table.dim(1);
  for (size_t i = 0; i < ids.size(); ++i)
    VC_CHECK(ids[i] >= 0 && ids[i] < vocab, op << ": id " << ids[i] << " at position " << i << " (batch "
                                               << static_cast<int64_t>(i) / time << ", time "
                                               << static_cast<int64_t>(i) % time << ") is outside the table "
                                               << table.describe() << " (valid ids: 0.." << vocab - 1 << ")");
  Tensor y = Tensor::empty({batch, time, C}, table.dtype(), table.device());
  const int64_t n = batch * time;
  VC_KERNEL("embedding", table, embedding_forward, table.data<T>(), ids.data(), y.data<T>(), n, vocab, C);
  if (autograd::needs_grad({&table})) {
    SlotPtr st = slot_of(table);
    const Shape t_shape = table.shape();
    autograd::record(op, y, [=](const Tensor& dy) {
      Tensor dt = grad_buffer(st, t_shape);
      VC_KERNEL("embedding_backward", dy, embedding_backward, dy.data<T>(), ids.data(), dt.data<T>(), n, vocab, C);
    });
  }
  return y;
}

// ------------------------------------------------------------------ convolutions

Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad_left, int pad_right, int dilation,
              int groups) {
  const char* op = "conv1d";
  check_operands(op, {{"x", &x, true}, {"weight", &w, true}, {"bias", &b, false}});
  VC_CHECK(x.ndim() == 3, op << ": x must be [B, Cin, T], got " << x.describe());
  VC_CHECK(w.ndim() == 3, op << ": weight must be [Cout, Cin/groups, K], got " << w.describe());
  VC_CHECK(stride >= 1 && dilation >= 1 && pad_left >= 0 && pad_right >= 0 && groups >= 1,
           op << ": invalid stride " << stride << ", dilation " << dilation << ", padding (" << pad_left << ", "
              << pad_right << ") or groups " << groups);
  const int B = as_int(op, "batch", x.dim(0)), Cin = as_int(op, "Cin", x.dim(1)), Tin = as_int(op, "T", x.dim(2));
  const int Cout = as_int(op, "Cout", w.dim(0)), K = as_int(op, "K", w.dim(2));
  VC_CHECK(Cin > 0 && Cin % groups == 0 && Cout % groups == 0 && w.dim(1) == Cin / groups && K > 0,
           op << ": weight " << w.describe() << " does not fit x " << x.describe() << " with groups " << groups
              << " (expected [Cout, " << (Cin / groups) << ", K], Cin and Cout divisible by groups)");
  if (b.defined())
    VC_CHECK(b.ndim() == 1 && b.dim(0) == Cout, op << ": bias " << b.describe() << " must be [" << Cout << "]");
  const int64_t Tout = kernels::conv1d_output_length(Tin, K, stride, pad_left, pad_right, dilation);
  VC_CHECK(Tout >= 1, op << ": x " << x.describe() << " with padding (" << pad_left << ", " << pad_right
                         << ") is shorter than the kernel span " << static_cast<int64_t>(dilation) * (K - 1) + 1
                         << " (weight " << w.describe() << ", dilation " << dilation << ")");
  Tensor y = Tensor::empty({B, Cout, Tout}, x.dtype(), x.device());
  VC_KERNEL("conv1d", x, conv1d_forward, x.data<T>(), w.data<T>(), data_or_null<T>(b), y.data<T>(), B, Cin, Tin, Cout,
            K, stride, pad_left, pad_right, dilation, groups);
  if (autograd::needs_grad({&x, &w, &b})) {
    SlotPtr sx = slot_of(x), sw = slot_of(w), sb = slot_of(b);
    Tensor xs = saved_if(sw != nullptr, x), ws = saved_if(sx != nullptr, w);
    const Shape x_shape = x.shape(), w_shape = w.shape();
    autograd::record(op, y, [=](const Tensor& dy) {
      Tensor dx = grad_buffer(sx, x_shape), dw = grad_buffer(sw, w_shape), db = grad_buffer(sb, {Cout});
      VC_KERNEL("conv1d_backward", dy, conv1d_backward, data_or_null<T>(xs), data_or_null<T>(ws), dy.data<T>(),
                data_or_null<T>(dx), data_or_null<T>(dw), data_or_null<T>(db), B, Cin, Tin, Cout, K, stride, pad_left,
                pad_right, dilation, groups);
    });
  }
  return y;
}

Tensor conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int padding) {
  const char* op = "conv_transpose1d";
  check_operands(op, {{"x", &x, true}, {"weight", &w, true}, {"bias", &b, false}});
  VC_CHECK(x.ndim() == 3, op << ": x must be [B, Cin, T], got " << x.describe());
  VC_CHECK(w.ndim() == 3 && w.dim(0) == x.dim(1) && w.dim(1) > 0 && w.dim(2) > 0,
           op << ": weight " << w.describe() << " must be [Cin=" << x.dim(1) << ", Cout, K] for x " << x.describe());
  VC_CHECK(stride >= 1 && padding >= 0, op << ": invalid stride " << stride << " or padding " << padding);
  const int B = as_int(op, "batch", x.dim(0)), Cin = as_int(op, "Cin", x.dim(1)), Tin = as_int(op, "T", x.dim(2));
  const int Cout = as_int(op, "Cout", w.dim(1)), K = as_int(op, "K", w.dim(2));
  VC_CHECK(Cin > 0 && Tin > 0, op << ": x " << x.describe() << " has no channels or no time steps");
  if (b.defined())
    VC_CHECK(b.ndim() == 1 && b.dim(0) == Cout, op << ": bias " << b.describe() << " must be [" << Cout << "]");
  const int64_t Tout = kernels::conv_transpose1d_output_length(Tin, K, stride, padding);
  VC_CHECK(Tout >= 1, op << ": output length " << Tout << " for x " << x.describe() << ", weight " << w.describe()
                         << ", stride " << stride << ", padding " << padding);
  as_int(op, "output length", Tout);
  Tensor y = Tensor::empty({B, Cout, Tout}, x.dtype(), x.device());
  VC_KERNEL("conv_transpose1d", x, conv_transpose1d_forward, x.data<T>(), w.data<T>(), data_or_null<T>(b), y.data<T>(),
            B, Cin, Tin, Cout, K, stride, padding);
  if (autograd::needs_grad({&x, &w, &b})) {
    SlotPtr sx = slot_of(x), sw = slot_of(w), sb = slot_of(b);
    Tensor xs = saved_if(sw != nullptr, x), ws = saved_if(sx != nullptr, w);
    const Shape x_shape = x.shape(), w_shape = w.shape();
    autograd::record(op, y, [=](const Tensor& dy) {
      Tensor dx = grad_buffer(sx, x_shape), dw = grad_buffer(sw, w_shape), db = grad_buffer(sb, {Cout});
      VC_KERNEL("conv_transpose1d_backward", dy, conv_transpose1d_backward, data_or_null<T>(xs), data_or_null<T>(ws),
                dy.data<T>(), data_or_null<T>(dx), data_or_null<T>(dw), data_or_null<T>(db), B, Cin, Tin, Cout, K,
                stride, padding);
    });
  }
  return y;
}

// ------------------------------------------------------------------ normalisation

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  const char* op = "layer_norm";
  check_operands(op, {{"x", &x, true}, {"gamma", &gamma, true}, {"beta", &beta, true}});
  VC_CHECK(x.ndim() >= 1 && x.dim(-1) > 0, op << ": x must have a non-empty last dimension, got " << x.describe());
  const int64_t C = x.dim(-1);
  VC_CHECK(gamma.ndim() == 1 && gamma.dim(0) == C && beta.ndim() == 1 && beta.dim(0) == C,
           op << ": gamma " << gamma.describe() << " and beta " << beta.describe() << " must be [" << C << "] for x "
              << x.describe());
  VC_CHECK(eps >= 0.0, op << ": eps " << eps << " must be >= 0");
  const int rows = as_int(op, "rows", x.numel() / C), C_i = as_int(op, "C", C);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  VC_KERNEL("layer_norm", x, layer_norm_forward, x.data<T>(), gamma.data<T>(), beta.data<T>(), y.data<T>(), rows, C_i,
            eps);
  if (autograd::needs_grad({&x, &gamma, &beta})) {
    SlotPtr sx = slot_of(x), sg = slot_of(gamma), sb = slot_of(beta);
    Tensor xs = x.detach(), gs = gamma.detach();
    autograd::record(op, y, [=](const Tensor& dy) {
      Tensor dx = grad_buffer(sx, xs.shape()), dg = grad_buffer(sg, {C}), db = grad_buffer(sb, {C});
      VC_KERNEL("layer_norm_backward", dy, layer_norm_backward, xs.data<T>(), gs.data<T>(), dy.data<T>(),
                data_or_null<T>(dx), data_or_null<T>(dg), data_or_null<T>(db), rows, C_i, eps);
    });
  }
  return y;
}

Tensor layer_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  const char* op = "layer_norm_channels";
  check_operands(op, {{"x", &x, true}, {"gamma", &gamma, true}, {"beta", &beta, true}});
  VC_CHECK(x.ndim() == 3 && x.dim(1) > 0, op << ": x must be [B, C, T] with C > 0, got " << x.describe());
  const int64_t C = x.dim(1);
  VC_CHECK(gamma.ndim() == 1 && gamma.dim(0) == C && beta.ndim() == 1 && beta.dim(0) == C,
           op << ": gamma " << gamma.describe() << " and beta " << beta.describe() << " must be [" << C << "] for x "
              << x.describe());
  VC_CHECK(eps >= 0.0, op << ": eps " << eps << " must be >= 0");
  const int B = as_int(op, "batch", x.dim(0)), C_i = as_int(op, "C", C), T_len = as_int(op, "T", x.dim(2));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  VC_KERNEL("layer_norm_channels", x, layer_norm_channels_forward, x.data<T>(), gamma.data<T>(), beta.data<T>(),
            y.data<T>(), B, C_i, T_len, eps);
  if (autograd::needs_grad({&x, &gamma, &beta})) {
    SlotPtr sx = slot_of(x), sg = slot_of(gamma), sb = slot_of(beta);
    Tensor xs = x.detach(), gs = gamma.detach();
    autograd::record(op, y, [=](const Tensor& dy) {
      Tensor dx = grad_buffer(sx, xs.shape()), dg = grad_buffer(sg, {C}), db = grad_buffer(sb, {C});
      VC_KERNEL("layer_norm_channels_backward", dy, layer_norm_channels_backward, xs.data<T>(), gs.data<T>(),
                dy.data<T>(), data_or_null<T>(dx), data_or_null<T>(dg), data_or_null<T>(db), B, C_i, T_len, eps);
    });
  }
  return y;
}

Tensor weight_norm(const Tensor& g, const Tensor& v) {
  const char* op = "weight_norm";
  check_operands(op, {{"g", &g, true}, {"v", &v, true}});
  VC_CHECK(v.ndim() >= 1 && v.dim(0) > 0, op << ": v must have a non-empty first dimension, got " << v.describe());
  const int64_t rows = v.dim(0);
  VC_CHECK(g.ndim() >= 1 && g.dim(0) == rows && g.numel() == rows,
           op << ": g " << g.describe() << " must hold one value per row of v " << v.describe() << " (shape [" << rows
              << ", 1, ...])");
  const int rows_i = as_int(op, "rows", rows), n = as_int(op, "row length", v.numel() / rows);
  Tensor w = Tensor::empty(v.shape(), v.dtype(), v.device());
  VC_KERNEL("weight_norm", v, weight_norm_forward, g.data<T>(), v.data<T>(), w.data<T>(), rows_i, n);
  if (autograd::needs_grad({&g, &v})) {
    SlotPtr sg = slot_of(g), sv = slot_of(v);
    Tensor gs = g.detach(), vs = v.detach();
    autograd::record(op, w, [=](const Tensor& dw) {
      Tensor dg = grad_buffer(sg, gs.shape()), dv = grad_buffer(sv, vs.shape());
      VC_KERNEL("weight_norm_backward", dw, weight_norm_backward, gs.data<T>(), vs.data<T>(), dw.data<T>(),
                data_or_null<T>(dg), data_or_null<T>(dv), rows_i, n);
    });
  }
  return w;
}

}  // namespace vitscuda::ops
