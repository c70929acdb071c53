// Pointwise, broadcasting, layout and softmax ops (forward + tape-recorded backward).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"

namespace vitscuda::ops {

namespace {

Tensor unary(const char* name, kernels::UnaryOp op, const Tensor& x, double param) {
  check_operands(name, {{"x", &x}});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  VC_KERNEL("unary", x, unary_forward, op, x.data<T>(), y.data<T>(), x.numel(), param);
  // ceil is piecewise constant: torch gives it a zero gradient, so nothing flows back.
  if (op != kernels::UnaryOp::Ceil && autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    // Save only what the derivative reads: y for tanh / sigmoid / exp, nothing for the affine
    // ops, x otherwise.
    const bool from_y = op == kernels::UnaryOp::Tanh || op == kernels::UnaryOp::Sigmoid || op == kernels::UnaryOp::Exp;
    const bool affine = op == kernels::UnaryOp::Scale || op == kernels::UnaryOp::AddScalar;
    Tensor xs = from_y || affine ? Tensor() : x.detach(), ys = from_y ? y.detach() : Tensor();
    const Shape shape = x.shape();
    autograd::record(name, y, [slot, xs, ys, shape, op, param](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, shape);
      VC_KERNEL("unary_backward", dy, unary_backward, op, data_or_null<T>(xs), data_or_null<T>(ys), dy.data<T>(),
                dx.data<T>(), dy.numel(), param);
    });
  }
  return y;
}

struct Broadcast {
  Shape shape;
  std::vector<int64_t> a_strides, b_strides;
};

Broadcast broadcast(const char* op, const Tensor& a, const Tensor& b) {
  const int nd = std::max(a.ndim(), b.ndim());
  VC_CHECK(nd <= 6, op << ": more than 6 dimensions");
  Broadcast r;
  r.shape.assign(nd, 1);
  r.a_strides.assign(nd, 0);
  r.b_strides.assign(nd, 0);
  auto strides_of = [&](const Tensor& t, std::vector<int64_t>& s) {
    int64_t stride = 1;
    for (int i = t.ndim() - 1; i >= 0; --i) {
      const int o = i + nd - t.ndim();
      s[o] = t.dim(i) == 1 ? 0 : stride;
      stride *= t.dim(i);
    }
  };
  for (int o = 0; o < nd; ++o) {
    const int ia = o - (nd - a.ndim()), ib = o - (nd - b.ndim());
    const int64_t da = ia >= 0 ? a.dim(ia) : 1, db = ib >= 0 ? b.dim(ib) : 1;
    VC_CHECK(da == db || da == 1 || db == 1,
             op << ": shapes " << shape_str(a.shape()) << " and " << shape_str(b.shape()) << " do not broadcast");
    r.shape[o] = std::max(da, db);
    if (da == 0 || db == 0) r.shape[o] = 0;
  }
  strides_of(a, r.a_strides);
  strides_of(b, r.b_strides);
  return r;
}

Tensor binary(const char* name, kernels::BinaryOp op, const Tensor& a, const Tensor& b) {
  check_operands(name, {{"a", &a}, {"b", &b}});
  Broadcast bc = broadcast(name, a, b);
  Tensor y = Tensor::empty(bc.shape, a.dtype(), a.device());
  const int nd = static_cast<int>(bc.shape.size());
  VC_KERNEL("binary", a, binary_forward, op, a.data<T>(), bc.a_strides.data(), b.data<T>(), bc.b_strides.data(),
            y.data<T>(), bc.shape.data(), nd);
  if (autograd::needs_grad({&a, &b})) {
    SlotPtr sa = slot_of(a), sb = slot_of(b);
    // d(a*b): da reads b, db reads a; d(a/b): da reads b, db reads a and b.
    const bool keep_a = sb && (op == kernels::BinaryOp::Mul || op == kernels::BinaryOp::Div);
    const bool keep_b = (sa && op == kernels::BinaryOp::Mul) || op == kernels::BinaryOp::Div;
    Tensor as = keep_a ? a.detach() : Tensor(), bs = keep_b ? b.detach() : Tensor();
    const Shape a_shape = a.shape(), b_shape = b.shape();
    autograd::record(name, y, [sa, sb, as, bs, a_shape, b_shape, bc, op](const Tensor& dy) {
      Tensor da = grad_buffer(sa, a_shape), db = grad_buffer(sb, b_shape);
      VC_KERNEL("binary_backward", dy, binary_backward, op, data_or_null<T>(as), bc.a_strides.data(),
                data_or_null<T>(bs), bc.b_strides.data(), dy.data<T>(), data_or_null<T>(da), data_or_null<T>(db),
                bc.shape.data(), static_cast<int>(bc.shape.size()));
    });
  }
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary("add", kernels::BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary("sub", kernels::BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("mul", kernels::BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary("div", kernels::BinaryOp::Div, a, b); }
Tensor scale(const Tensor& x, double s) { return unary("scale", kernels::UnaryOp::Scale, x, s); }
Tensor add_scalar(const Tensor& x, double s) { return unary("add_scalar", kernels::UnaryOp::AddScalar, x, s); }
Tensor relu(const Tensor& x) { return unary("relu", kernels::UnaryOp::Relu, x, 0); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary("leaky_relu", kernels::UnaryOp::LeakyRelu, x, slope); }
Tensor gelu(const Tensor& x) { return unary("gelu", kernels::UnaryOp::Gelu, x, 0); }
Tensor tanh(const Tensor& x) { return unary("tanh", kernels::UnaryOp::Tanh, x, 0); }
Tensor sigmoid(const Tensor& x) { return unary("sigmoid", kernels::UnaryOp::Sigmoid, x, 0); }
Tensor exp(const Tensor& x) { return unary("exp", kernels::UnaryOp::Exp, x, 0); }
Tensor log(const Tensor& x) { return unary("log", kernels::UnaryOp::Log, x, 0); }
Tensor softplus(const Tensor& x) { return unary("softplus", kernels::UnaryOp::Softplus, x, 0); }
Tensor ceil(const Tensor& x) { return unary("ceil", kernels::UnaryOp::Ceil, x, 0); }
Tensor clamp_min(const Tensor& x, double lo) { return unary("clamp_min", kernels::UnaryOp::ClampMin, x, lo); }

Tensor activation(const Tensor& x, const std::string& name) {
  if (name == "relu") return relu(x);
  if (name == "gelu") return gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return unary("gelu_tanh", kernels::UnaryOp::GeluTanh, x, 0);
  if (name == "silu" || name == "swish") return unary("silu", kernels::UnaryOp::Silu, x, 0);
  if (name == "tanh") return tanh(x);
  if (name == "sigmoid") return sigmoid(x);
  VC_FAIL("activation '" << name << "' is not supported (relu, gelu, gelu_new, silu, swish, tanh, sigmoid)");
}

Tensor gated_tanh_sigmoid(const Tensor& x) {
  check_operands("gated_tanh_sigmoid", {{"x", &x}});
  VC_CHECK(x.ndim() == 3 && x.dim(1) % 2 == 0, "gated_tanh_sigmoid: x must be [B, 2C, T], got " << x.describe());
  const int64_t B = x.dim(0), C = x.dim(1) / 2, Tlen = x.dim(2);
  Tensor y = Tensor::empty({B, C, Tlen}, x.dtype(), x.device());
  VC_KERNEL("gated_tanh_sigmoid", x, gated_tanh_sigmoid_forward, x.data<T>(), y.data<T>(), B, C, Tlen);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    Tensor xs = x.detach();
    autograd::record("gated_tanh_sigmoid", y, [slot, xs, B, C, Tlen](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, xs.shape());
      VC_KERNEL("gated_tanh_sigmoid_backward", dy, gated_tanh_sigmoid_backward, xs.data<T>(), dy.data<T>(),
                dx.data<T>(), B, C, Tlen);
    });
  }
  return y;
}

Tensor transpose(const Tensor& x, int dim0, int dim1) {
  check_operands("transpose", {{"x", &x}});
  int a = normalize_dim("transpose", x, dim0), b = normalize_dim("transpose", x, dim1);
  if (a > b) std::swap(a, b);
  Shape out_shape = x.shape();
  std::swap(out_shape[a], out_shape[b]);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  if (a == b) {
    y.copy_from(x);
  } else {
    int64_t d0 = 1, d2 = 1, d4 = 1;
    for (int i = 0; i < a; ++i) d0 *= x.dim(i);
    for (int i = a + 1; i < b; ++i) d2 *= x.dim(i);
    for (int i = b + 1; i < x.ndim(); ++i) d4 *= x.dim(i);
    const int64_t d1 = x.dim(a), d3 = x.dim(b);
    VC_KERNEL("swap_axes", x, swap_axes, x.data<T>(), y.data<T>(), d0, d1, d2, d3, d4, false);
    if (autograd::needs_grad({&x})) {
      SlotPtr slot = slot_of(x);
      const Shape in_shape = x.shape();
      autograd::record("transpose", y, [slot, in_shape, d0, d1, d2, d3, d4](const Tensor& dy) {
        Tensor dx = grad_buffer(slot, in_shape);
        VC_KERNEL("swap_axes", dy, swap_axes, dy.data<T>(), dx.data<T>(), d0, d3, d2, d1, d4, true);
      });
    }
    return y;
  }
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    const Shape in_shape = x.shape();
    autograd::record("transpose", y, [slot, in_shape](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, in_shape);
      VC_KERNEL("accumulate", dy, accumulate, dy.data<T>(), dx.data<T>(), dy.numel());
    });
  }
  return y;
}

Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length) {
  check_operands("narrow", {{"x", &x}});
  const int d = normalize_dim("narrow", x, dim);
  VC_CHECK(start >= 0 && length >= 0 && start + length <= x.dim(d),
           "narrow: [" << start << ", " << start + length << ") outside dim " << d << " of " << x.describe());
  int64_t outer, mid, inner;
  split_at(x, d, outer, mid, inner);
  Shape s = x.shape();
  s[d] = length;
  Tensor y = Tensor::empty(s, x.dtype(), x.device());
  VC_KERNEL("slice_gather", x, slice_gather, x.data<T>(), y.data<T>(), outer, mid, inner, start, length, false);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    const Shape in_shape = x.shape();
    autograd::record("narrow", y, [slot, in_shape, outer, mid, inner, start, length](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, in_shape);
      VC_KERNEL("slice_scatter", dy, slice_scatter, dy.data<T>(), dx.data<T>(), outer, mid, inner, start, length, true);
    });
  }
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int dim) {
  VC_CHECK(!xs.empty(), "cat: no tensors");
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string name = "tensor " + std::to_string(i);
    check_operands("cat", {{"tensor 0", &xs[0]}, {name.c_str(), &xs[i]}});
  }
  const int d = normalize_dim("cat", xs[0], dim);
  Shape s = xs[0].shape();
  int64_t total = 0;
  for (const Tensor& x : xs) {
    VC_CHECK(x.ndim() == xs[0].ndim(), "cat: " << x.describe() << " does not match " << xs[0].describe());
    for (int i = 0; i < x.ndim(); ++i)
      VC_CHECK(i == d || x.dim(i) == xs[0].dim(i), "cat: " << x.describe() << " does not match " << xs[0].describe()
                                                            << " outside dim " << d);
    total += x.dim(d);
  }
  s[d] = total;
  Tensor y = Tensor::empty(s, xs[0].dtype(), xs[0].device());
  int64_t outer, mid, inner;
  split_at(y, d, outer, mid, inner);
  int64_t offset = 0;
  std::vector<int64_t> offsets;
  for (const Tensor& x : xs) {
    offsets.push_back(offset);
    const int64_t len = x.dim(d);
    VC_KERNEL("slice_scatter", x, slice_scatter, x.data<T>(), y.data<T>(), outer, mid, inner, offset, len, false);
    offset += len;
  }
  if (autograd::needs_grad(xs)) {
    std::vector<SlotPtr> slots;
    std::vector<Shape> shapes;
    for (const Tensor& x : xs) {
      slots.push_back(slot_of(x));
      shapes.push_back(x.shape());
    }
    autograd::record("cat", y, [slots, shapes, offsets, d, outer, mid, inner](const Tensor& dy) {
      for (size_t i = 0; i < slots.size(); ++i) {
        if (!slots[i]) continue;
        Tensor dx = grad_buffer(slots[i], shapes[i]);
        VC_KERNEL("slice_gather", dy, slice_gather, dy.data<T>(), dx.data<T>(), outer, mid, inner, offsets[i],
                  shapes[i][d], true);
      }
    });
  }
  return y;
}

Tensor flip(const Tensor& x, int dim) {
  check_operands("flip", {{"x", &x}});
  const int d = normalize_dim("flip", x, dim);
  int64_t outer, mid, inner;
  split_at(x, d, outer, mid, inner);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  VC_KERNEL("flip", x, flip, x.data<T>(), y.data<T>(), outer, mid, inner, false);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    const Shape in_shape = x.shape();
    autograd::record("flip", y, [slot, in_shape, outer, mid, inner](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, in_shape);
      VC_KERNEL("flip", dy, flip, dy.data<T>(), dx.data<T>(), outer, mid, inner, true);
    });
  }
  return y;
}

Tensor sum(const Tensor& x, int dim, bool keepdim) {
  check_operands("sum", {{"x", &x}});
  const int d = normalize_dim("sum", x, dim);
  int64_t outer, mid, inner;
  split_at(x, d, outer, mid, inner);
  Shape s = x.shape();
  if (keepdim)
    s[d] = 1;
  else
    s.erase(s.begin() + d);
  Tensor y = Tensor::empty(s, x.dtype(), x.device());
  VC_KERNEL("sum_mid", x, sum_mid_forward, x.data<T>(), y.data<T>(), outer, mid, inner);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    const Shape in_shape = x.shape();
    autograd::record("sum", y, [slot, in_shape, outer, mid, inner](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, in_shape);
      VC_KERNEL("sum_mid_backward", dy, sum_mid_backward, dy.data<T>(), dx.data<T>(), outer, mid, inner);
    });
  }
  return y;
}

Tensor softmax(const Tensor& x) {
  check_operands("softmax", {{"x", &x}});
  const int64_t n = x.dim(-1), rows = x.numel() / std::max<int64_t>(n, 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  VC_KERNEL("softmax", x, softmax_forward, x.data<T>(), y.data<T>(), rows, n);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    Tensor ys = y.detach();
    autograd::record("softmax", y, [slot, ys, rows, n](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, ys.shape());
      VC_KERNEL("softmax_backward", dy, softmax_backward, ys.data<T>(), dy.data<T>(), dx.data<T>(), rows, n);
    });
  }
  return y;
}

}  // namespace vitscuda::ops
