#!/usr/bin/env python3
"""Golden AdamW, gradient clipping and learning-rate schedule values from PyTorch.

Writes tests/data/engine/adam_cases.txt, one array per line:
    name ndim d0 .. d{ndim-1} v0 v1 ...
(ndim 0 = a scalar with one value; values are repr() of Python floats, so float32 data round-trips exactly).

Shared fixture: four parameter tensors laid out one after another in a flat buffer, in the order
    w1 [10, 16] (decay), b1 [16] (no decay), w2 [3, 4, 5] (decay), g [9] (no decay)
so the weight-decay group is two separate ranges (`decay_ranges`, pairs begin end). Ten steps of fixed
random gradients (`grad.<k>`, flat) with per-step magnitudes from 1e-3 to 10 and a few exact zeros, and
a learning rate that changes every step (`lrs`).

AdamW cases (torch.optim.AdamW, foreach=False, fused=False: _single_tensor_adam), param groups
[{params: [w1, w2], weight_decay: wd}, {params: [b1, g], weight_decay: 0.0}]:
  default  betas (0.9, 0.999), eps 1e-8, wd 0.01 (torch's defaults)
  custom   betas (0.3, 0.95), eps 1e-6, wd 0.1 (beta1 < 0.5 takes lerp's other branch)
  clipped  defaults, torch.nn.utils.clip_grad_norm_(params, max_norm) before every step; `total_norms`
           are the norms it returned (float32), and the steps whose norm is below max_norm are not clipped.
Each case: <case>.betas, .eps, .weight_decay, .max_norm (0 = no clipping), .param.final, .exp_avg.final,
.exp_avg_sq.final (flat) and .step (torch's state["step"]).

clip_grad_norm_ on grad.0 alone: clip.total_norm (float32, torch's result), clip.total_norm_f64 (the same
norm computed in float64), and for max_norm in {trigger: 1.0, no_trigger: 1e3}: clip.<which>.max_norm and
clip.<which>.grads (the gradients after clipping).

Schedules: schedule.exponential.{base_lr, gamma, lrs} (torch ExponentialLR's get_last_lr() after
0..E-1 scheduler.step() calls) and schedule.warmup.{base_lr, warmup_steps, lrs} (transformers'
get_constant_schedule_with_warmup, get_last_lr() after 0..S-1 steps).

Usage (from the repository root): python3 tools/golden/make_adam_cases.py
"""
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "engine", "adam_cases.txt")

SHAPES = [("w1", (10, 16), True), ("b1", (16,), False), ("w2", (3, 4, 5), True), ("g", (9,), False)]
STEPS = 10
GRAD_MAGNITUDES = [1.0, 0.5, 2.0, 1e-3, 1.0, 10.0, 0.1, 1.0, 3.0, 0.2]
LRS = [1e-3, 2e-3, 5e-3, 1e-2, 1e-2, 8e-3, 6e-3, 4e-3, 2e-3, 1e-3]
CASES = [
    # name, betas, eps, weight decay, max_norm (0: none)
    ("default", (0.9, 0.999), 1e-8, 0.01, 0.0),
    ("custom", (0.3, 0.95), 1e-6, 0.1, 0.0),
    ("clipped", (0.9, 0.999), 1e-8, 0.01, 5.0),
]


def fmt(name, values, shape):
    values = [float(x) for x in values]
    return " ".join([name, str(len(shape))] + [str(d) for d in shape] + [repr(v) for v in values])


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def split(flat_tensor):
    out, offset = [], 0
    for _, shape, _ in SHAPES:
        n = 1
        for d in shape:
            n *= d
        out.append(flat_tensor[offset:offset + n].reshape(shape).clone())
        offset += n
    return out


def main():
    gen = torch.Generator().manual_seed(20240611)
    initial = []
    for name, shape, decays in SHAPES:
        if name == "g":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif decays:
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            t = 0.1 * torch.randn(shape, generator=gen)
        initial.append(t.float())
    n_total = sum(t.numel() for t in initial)
    grads = []
    for k in range(STEPS):
        gk = torch.randn(n_total, generator=gen) * GRAD_MAGNITUDES[k]
        if k == 2:
            gk[::7] = 0.0  # exact zeros: the moments decay without input
        grads.append(gk.float())

    decay_ranges, offset = [], 0
    for t, (_, _, decays) in zip(initial, SHAPES):
        if decays:
            decay_ranges += [offset, offset + t.numel()]
        offset += t.numel()

    lines = [
        fmt("param.initial", flat(initial), (n_total,)),
        fmt("decay_ranges", decay_ranges, (len(decay_ranges) // 2, 2)),
        fmt("lrs", LRS, (STEPS,)),
    ]
    lines += [fmt(f"grad.{k}", grads[k], (n_total,)) for k in range(STEPS)]

    for case, betas, eps, wd, max_norm in CASES:
        params = [t.clone().requires_grad_(True) for t in initial]
        decay = [p for p, (_, _, d) in zip(params, SHAPES) if d]
        no_decay = [p for p, (_, _, d) in zip(params, SHAPES) if not d]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
            lr=LRS[0], betas=betas, eps=eps, foreach=False, fused=False)
        norms = []
        for k in range(STEPS):
            for p, gk in zip(params, split(grads[k])):
                p.grad = gk
            if max_norm > 0:
                norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)))
            for group in opt.param_groups:
                group["lr"] = LRS[k]
            opt.step()
        state = [opt.state[p] for p in params]
        steps = {float(s["step"]) for s in state}
        assert steps == {float(STEPS)}, steps
        lines += [
            fmt(f"{case}.betas", betas, (2,)),
            fmt(f"{case}.eps", [eps], ()),
            fmt(f"{case}.weight_decay", [wd], ()),
            fmt(f"{case}.max_norm", [max_norm], ()),
            fmt(f"{case}.step", [STEPS], ()),
            fmt(f"{case}.param.final", flat(params), (n_total,)),
            fmt(f"{case}.exp_avg.final", flat([s["exp_avg"] for s in state]), (n_total,)),
            fmt(f"{case}.exp_avg_sq.final", flat([s["exp_avg_sq"] for s in state]), (n_total,)),
        ]
        if max_norm > 0:
            lines.append(fmt(f"{case}.total_norms", norms, (STEPS,)))
            assert any(x > max_norm for x in norms) and any(x < max_norm for x in norms), norms

    # clip_grad_norm_ alone, on the per-parameter views of grad.0.
    lines.append(fmt("clip.total_norm_f64", [float(grads[0].double().norm())], ()))
    for which, max_norm in [("trigger", 1.0), ("no_trigger", 1e3)]:
        params = [t.clone().requires_grad_(True) for t in initial]
        for p, gk in zip(params, split(grads[0])):
            p.grad = gk
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
        assert (float(total) > max_norm) == (which == "trigger")
        if which == "trigger":
            lines.append(fmt("clip.total_norm", [float(total)], ()))
        lines += [
            fmt(f"clip.{which}.max_norm", [max_norm], ()),
            fmt(f"clip.{which}.grads", flat([p.grad for p in params]), (n_total,)),
        ]

    # ExponentialLR stepped once per epoch (VITS: gamma = lr_decay = 0.999875).
    base_lr, gamma, epochs = 2e-4, 0.999875, 400
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=base_lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    lrs = []
    for _ in range(epochs):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    lines += [fmt("schedule.exponential.base_lr", [base_lr], ()), fmt("schedule.exponential.gamma", [gamma], ()),
              fmt("schedule.exponential.lrs", lrs, (epochs,))]

    # transformers' linear warm-up then constant.
    from transformers import get_constant_schedule_with_warmup
    base_lr, warmup, steps = 2e-5, 7, 12
    opt = torch.optim.AdamW([p], lr=base_lr)
    sched = get_constant_schedule_with_warmup(opt, num_warmup_steps=warmup)
    lrs = []
    for _ in range(steps):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    lines += [fmt("schedule.warmup.base_lr", [base_lr], ()), fmt("schedule.warmup.warmup_steps", [warmup], ()),
              fmt("schedule.warmup.lrs", lrs, (steps,))]

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(lines)} arrays, {n_total} parameters, torch {torch.__version__})")


if __name__ == "__main__":
    main()
