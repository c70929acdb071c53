#!/usr/bin/env python3
"""Reference values of transformers' rational-quadratic spline (the VITS stochastic duration
predictor's coupling transform), for tests/kernels/test_spline.cpp.

Writes tests/data/kernels/spline_cases.txt, one array per line (the format of torch_nn_cases.txt):
    name ndim d0 .. d{ndim-1} v0 v1 ...
Values are repr() of float64 numbers, so they round-trip exactly.

For each case <case> (torch.manual_seed(0), then the cases in order):
  <case>.params   [bins, reverse (0/1), tail_bound]
  <case>.inputs   [N]            about a fifth of them outside [-tail_bound, tail_bound], plus
                                 -tail_bound, 0 and tail_bound exactly
  <case>.widths, <case>.heights  [N, bins]   unnormalised
  <case>.derivatives             [N, bins-1] unnormalised (a few above softplus's threshold 20)
  <case>.y64, <case>.logdet64    outputs in float64
  <case>.y32, <case>.logdet32    outputs in float32 (from the same values, which are float32-exact)
  <case>.r_y, <case>.r_logdet    fixed random weights
  <case>.d<name>                 float64 autograd gradient of L = sum(y * r_y) + sum(logdet * r_logdet)
                                 with respect to inputs, widths, heights, derivatives

All inputs are rounded to float32 first so that the float32 and float64 runs see the same numbers.

Usage (from the repository root): python3 tools/golden/make_kernel_cases_spline.py
"""
import os

import torch
from transformers.models.vits.modeling_vits import _unconstrained_rational_quadratic_spline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "kernels", "spline_cases.txt")

# name, N, bins, reverse, tail_bound
CASES = [
    ("forward_bins10", 48, 10, False, 5.0),
    ("reverse_bins10", 48, 10, True, 5.0),
    ("forward_bins4", 32, 4, False, 5.0),
    ("reverse_bins4", 32, 4, True, 5.0),
    ("reverse_bins6_bound3", 24, 6, True, 3.0),
]


def fmt(name, t):
    t = t.detach().to(torch.float64).contiguous()
    shape = list(t.shape)
    return " ".join([name, str(len(shape))] + [str(d) for d in shape] + [repr(float(v)) for v in t.reshape(-1)])


def f32_exact(t):
    return t.to(torch.float32).to(torch.float64)


def make_case(name, n, bins, reverse, bound):
    lines = []
    inputs = (torch.rand(n, dtype=torch.float64) * 2 - 1) * bound * 1.25
    inputs[:3] = torch.tensor([-bound, 0.0, bound], dtype=torch.float64)
    widths = torch.randn(n, bins, dtype=torch.float64) * 1.5
    heights = torch.randn(n, bins, dtype=torch.float64) * 1.5
    derivatives = torch.randn(n, bins - 1, dtype=torch.float64) * 1.5
    derivatives[3, 0] = 21.5  # softplus returns its input above 20
    derivatives[4, -1] = 25.0
    inputs, widths, heights, derivatives = map(f32_exact, (inputs, widths, heights, derivatives))
    r_y = torch.randn(n, dtype=torch.float64)
    r_logdet = torch.randn(n, dtype=torch.float64)

    leaves = {"inputs": inputs, "widths": widths, "heights": heights, "derivatives": derivatives}
    leaves = {k: v.clone().requires_grad_(True) for k, v in leaves.items()}
    y64, logdet64 = _unconstrained_rational_quadratic_spline(
        leaves["inputs"], leaves["widths"], leaves["heights"], leaves["derivatives"], reverse=reverse, tail_bound=bound
    )
    loss = (y64 * r_y).sum() + (logdet64 * r_logdet).sum()
    loss.backward()

    y32, logdet32 = _unconstrained_rational_quadratic_spline(
        inputs.float(), widths.float(), heights.float(), derivatives.float(), reverse=reverse, tail_bound=bound
    )

    lines.append(fmt(f"{name}.params", torch.tensor([bins, int(reverse), bound])))
    for k in ("inputs", "widths", "heights", "derivatives"):
        lines.append(fmt(f"{name}.{k}", leaves[k]))
    lines.append(fmt(f"{name}.y64", y64))
    lines.append(fmt(f"{name}.logdet64", logdet64))
    lines.append(fmt(f"{name}.y32", y32))
    lines.append(fmt(f"{name}.logdet32", logdet32))
    lines.append(fmt(f"{name}.r_y", r_y))
    lines.append(fmt(f"{name}.r_logdet", r_logdet))
    for k in ("inputs", "widths", "heights", "derivatives"):
        lines.append(fmt(f"{name}.d{k}", leaves[k].grad))
    return lines


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    lines = []
    for case in CASES:
        lines += make_case(*case)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(lines)} arrays)")


if __name__ == "__main__":
    main()
