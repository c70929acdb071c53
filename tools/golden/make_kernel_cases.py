#!/usr/bin/env python3
"""Reference outputs and gradients of PyTorch's conv1d, conv_transpose1d, layer norm, weight norm,
linear and matmul, for the op tests in tests/engine/test_ops_nn.cpp.

Writes tests/data/kernels/torch_nn_cases.txt, one array per line (the format of adam_cases.txt):
    name ndim d0 .. d{ndim-1} v0 v1 ...
Values are repr() of float64 numbers, so they round-trip exactly.

Every case is computed in float64 with random inputs (torch.manual_seed(0)). For each case <op>.<case>:
  .params  the op's integer arguments (see below), or absent
  inputs   x, w, b (conv / linear), a, b (matmul), x, gamma, beta (layer norms), g, v (weight norm)
  .r       a fixed random tensor shaped like the output
  .y       the output
  .d<name> torch autograd's gradient of L = sum(y * r) with respect to input <name>
params: conv1d [stride, pad_left, pad_right, dilation, groups] (asymmetric padding is F.pad then conv1d,
as transformers' causal and "same" paddings do); conv_transpose1d [stride, padding];
layer norms [eps * 1e9] (an integer).

Usage (from the repository root): python3 tools/golden/make_kernel_cases.py
"""
import os

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "kernels", "torch_nn_cases.txt")

# name, B, Cin, T, Cout, K, stride, pad_left, pad_right, dilation, groups, bias
CONV1D = [
    ("same", 2, 4, 11, 6, 3, 1, 1, 1, 1, 1, True),
    ("strided_dilated_groups_asym", 1, 4, 17, 4, 5, 2, 3, 1, 2, 2, True),
    ("depthwise_dilated", 2, 3, 10, 3, 3, 1, 3, 3, 3, 3, True),
    ("pointwise_no_bias", 2, 5, 7, 3, 1, 1, 0, 0, 1, 1, False),
]
# name, B, Cin, T, Cout, K, stride, padding, bias
CONV_TRANSPOSE1D = [
    ("hifigan_k16_s8", 2, 6, 5, 3, 16, 8, 4, True),
    ("k4_s2", 1, 4, 7, 2, 4, 2, 1, False),
    ("k11_s5", 1, 3, 4, 2, 11, 5, 3, True),
]


def fmt(name, t):
    t = t.detach().to(torch.float64).contiguous()
    shape = list(t.shape)
    return " ".join([name, str(len(shape))] + [str(d) for d in shape] + [repr(float(v)) for v in t.reshape(-1)])


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def emit(lines, prefix, inputs, y, params=None):
    """Writes inputs, r, y and d<input> for L = sum(y * r)."""
    r = randn(*y.shape)
    (y * r).sum().backward()
    if params is not None:
        lines.append(fmt(prefix + ".params", torch.tensor(params, dtype=torch.float64)))
    for name, t in inputs.items():
        lines.append(fmt(f"{prefix}.{name}", t))
    lines.append(fmt(prefix + ".r", r))
    lines.append(fmt(prefix + ".y", y))
    for name, t in inputs.items():
        lines.append(fmt(f"{prefix}.d{name}", t.grad))


def leaf(t):
    return t.clone().requires_grad_(True)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    lines = []
    for name, B, cin, T, cout, K, stride, pl, pr, dil, groups, bias in CONV1D:
        inputs = {"x": leaf(randn(B, cin, T)), "w": leaf(randn(cout, cin // groups, K))}
        if bias:
            inputs["b"] = leaf(randn(cout))
        y = F.conv1d(F.pad(inputs["x"], (pl, pr)), inputs["w"], inputs.get("b"), stride=stride, dilation=dil,
                     groups=groups)
        emit(lines, "conv1d." + name, inputs, y, [stride, pl, pr, dil, groups])
    for name, B, cin, T, cout, K, stride, padding, bias in CONV_TRANSPOSE1D:
        inputs = {"x": leaf(randn(B, cin, T)), "w": leaf(randn(cin, cout, K))}
        if bias:
            inputs["b"] = leaf(randn(cout))
        y = F.conv_transpose1d(inputs["x"], inputs["w"], inputs.get("b"), stride=stride, padding=padding)
        emit(lines, "conv_transpose1d." + name, inputs, y, [stride, padding])

    # nn.LayerNorm over the last dimension; inputs offset from zero so the variance is not trivial.
    eps = 1e-5
    inputs = {"x": leaf(randn(2, 5, 7) * 0.7 + 3.0), "gamma": leaf(randn(7)), "beta": leaf(randn(7))}
    y = F.layer_norm(inputs["x"], (7,), inputs["gamma"], inputs["beta"], eps)
    emit(lines, "layer_norm.last_dim", inputs, y, [round(eps * 1e9)])
    # VitsLayerNorm / transformers' channel layer norm: LayerNorm of x.transpose(1, -1).
    eps = 1e-4
    inputs = {"x": leaf(randn(2, 6, 9)), "gamma": leaf(randn(6)), "beta": leaf(randn(6))}
    y = F.layer_norm(inputs["x"].transpose(1, -1), (6,), inputs["gamma"], inputs["beta"], eps).transpose(1, -1)
    emit(lines, "layer_norm_channels.basic", inputs, y, [round(eps * 1e9)])

    # weight_norm(dim=0) as nn.utils.weight_norm and its parametrization compute it.
    inputs = {"g": leaf(randn(6, 1, 1)), "v": leaf(randn(6, 3, 5))}
    emit(lines, "weight_norm.conv_weight", inputs, torch._weight_norm(inputs["v"], inputs["g"], 0))

    inputs = {"x": leaf(randn(2, 3, 5)), "w": leaf(randn(4, 5)), "b": leaf(randn(4))}
    emit(lines, "linear.with_bias", inputs, F.linear(inputs["x"], inputs["w"], inputs["b"]))
    inputs = {"a": leaf(randn(2, 3, 4, 5)), "b": leaf(randn(2, 3, 5, 2))}
    emit(lines, "matmul.batched", inputs, torch.matmul(inputs["a"], inputs["b"]))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} arrays to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
