#!/usr/bin/env python3
"""Golden cases for the monotonic alignment search (ops::monotonic_alignment_search) and its log-likelihood
(model::alignment_log_likelihood), from finetune-hf-vits itself.

The search: the anchor's own Cython `monotonic_align` is built the way its README says (a copy of its
monotonic_align/ directory in a temporary directory, `mkdir monotonic_align`, `python setup.py build_ext
--inplace`) and its `maximum_path(neg_cent, mask)` is called as VitsModelForPreTraining.forward calls it, with
the mask `attention_mask[:, None, :] * labels_mask[:, :, None]` ([B, frames, tokens]).

The log-likelihood: the four-term form of VitsModelForPreTraining.forward (utils/modeling_vits_training.py,
the `with torch.no_grad()` block after the flow), evaluated by torch in float32 and in float64 on the same
float32 inputs.

Writes tests/data/model/alignment_cases.txt: '#' comment lines, then one array per line
  <case>.<name> <ndim> <d0> ... <d(ndim-1)> <v0> <v1> ...      (row-major)
Search cases (<case> = search_<name>):
  log_likelihood [B, F, T]  float32 values (9 significant digits: exact for float32)
  frame_lengths [B], token_lengths [B]  the mask's per-item counts
  path [B, F, T]  maximum_path's 0/1 output (1 where frame f is aligned to token t)
Log-likelihood case (<case> = likelihood):
  z_p [B, C, F], m_p [B, C, T], logs_p [B, C, T]  float32 inputs
  neg_cent_f32, neg_cent_f64 [B, F, T]  the anchor's four terms in float32 and in float64
The likelihood case's float32 result is also the search case search_from_likelihood (realistic magnitudes).

Usage (from the repository root):
  python3 tools/golden/make_alignment_cases.py --anchor /path/to/finetune-hf-vits
Needs torch, numpy, cython (and setuptools, a C compiler and Python's headers) in that interpreter.
"""
import argparse
import importlib
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(ROOT, "tests", "data", "model", "alignment_cases.txt")
SEED = 4242


def build_maximum_path(anchor, workdir):
    """The anchor's monotonic_align package, built in `workdir` as its README builds it; returns maximum_path."""
    source = os.path.join(anchor, "monotonic_align")
    for name in ("core.pyx", "__init__.py", "setup.py"):
        if not os.path.exists(os.path.join(source, name)):
            sys.exit(f"{source} has no {name}: is {anchor} a finetune-hf-vits checkout?")
    package = os.path.join(workdir, "monotonic_align")
    shutil.copytree(source, package)
    os.makedirs(os.path.join(package, "monotonic_align"), exist_ok=True)
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=package,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("building the anchor's Cython monotonic_align failed:\n" + result.stdout + result.stderr)
    sys.path.insert(0, workdir)
    module = importlib.import_module("monotonic_align")
    print("built", module.maximum_path.__module__, "from", os.path.join(source, "core.pyx"))
    return module.maximum_path


def anchor_neg_cent(prior_latents, prior_means, prior_log_variances):
    """VitsModelForPreTraining.forward's four terms. prior_latents [B, C, F]; means, log-stds [B, C, T] (the
    anchor transposes its [B, T, C] text-encoder outputs to this layout first). Returns [B, F, T]."""
    prior_variances = torch.exp(-2 * prior_log_variances)
    neg_cent1 = torch.sum(-0.5 * math.log(2 * math.pi) - prior_log_variances, [1], keepdim=True)
    neg_cent2 = torch.matmul(-0.5 * (prior_latents**2).transpose(1, 2), prior_variances)
    neg_cent3 = torch.matmul(prior_latents.transpose(1, 2), (prior_means * prior_variances))
    neg_cent4 = torch.sum(-0.5 * (prior_means**2) * prior_variances, [1], keepdim=True)
    return neg_cent1 + neg_cent2 + neg_cent3 + neg_cent4


def run_search(maximum_path, neg_cent, frame_lengths, token_lengths):
    """maximum_path on float32 neg_cent [B, F, T] with the anchor's mask construction."""
    B, F, T = neg_cent.shape
    labels_padding_mask = (torch.arange(F)[None, :] < torch.tensor(frame_lengths)[:, None]).float()[:, None, :]
    input_padding_mask = (torch.arange(T)[None, :] < torch.tensor(token_lengths)[:, None]).float()[:, None, :]
    attn_mask = torch.unsqueeze(input_padding_mask, 2) * torch.unsqueeze(labels_padding_mask, -1)
    path = maximum_path(neg_cent, attn_mask.squeeze(1))
    return path.to(torch.int32)


def backtrack_ties(values, ty, tx):
    """How many of the backtrack's comparisons Q[y-1][x] < Q[y-1][x-1] tie, along the path it takes (the same
    float32 recurrence, in numpy, only to count: the path itself comes from the anchor's Cython)."""
    q = values.astype(np.float32).copy()
    neg = np.float32(-1e9)
    for y in range(ty):
        for x in range(max(0, tx + y - ty), min(tx, y + 1)):
            stay = neg if x == y else q[y - 1, x]
            adv = (np.float32(0) if y == 0 else neg) if x == 0 else q[y - 1, x - 1]
            q[y, x] = q[y, x] + (stay if stay > adv else adv)
    ties, index = 0, tx - 1
    for y in range(ty - 1, -1, -1):
        if index != 0 and y != 0 and index != y:
            ties += int(q[y - 1, index] == q[y - 1, index - 1])
        if index != 0 and y != 0 and (index == y or q[y - 1, index] < q[y - 1, index - 1]):
            index -= 1
    return ties


def check_path(path, frame_lengths, token_lengths):
    """One token per valid frame, monotone from token 0 to the last token, zeros elsewhere."""
    for b, (ty, tx) in enumerate(zip(frame_lengths, token_lengths)):
        p = path[b].numpy()
        assert p[ty:].sum() == 0 and p[:, tx:].sum() == 0, f"item {b}: path outside its lengths"
        assert (p[:ty].sum(1) == 1).all(), f"item {b}: not one token per frame"
        idx = p[:ty].argmax(1)
        assert idx[0] == 0 and idx[-1] == tx - 1 and set(np.diff(idx)) <= {0, 1}, f"item {b}: not monotone"


def search_cases(generator):
    """(name, neg_cent float32 [B, F, T], frame_lengths, token_lengths)."""
    cases = []

    def normal(shape, scale):
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).float()

    # Random values, items of several shapes padded into one batch: Ty > Tx, Ty == Tx, Tx == 1, Ty == Tx == 1.
    cases.append(("random", normal((5, 30, 12), 5.0), [30, 12, 17, 1, 23], [12, 12, 1, 1, 9]))
    # Duplicated token columns and frame rows: equal neighbours make equal partial sums along the way.
    dup = normal((2, 20, 8), 3.0)
    dup[:, :, 3] = dup[:, :, 2]
    dup[:, :, 6] = dup[:, :, 5]
    dup[:, 8, :] = dup[:, 7, :]
    dup[:, 14, :] = dup[:, 13, :]
    dup[:, 15, :] = dup[:, 13, :]
    cases.append(("duplicated", dup, [20, 16], [8, 7]))
    # Exact ties: small integers (float sums of them are exact, so many comparisons tie), and constants.
    ints = torch.randint(-2, 3, (3, 16, 6), generator=generator).float()
    ints[2] = -1.0
    cases.append(("exact_ties", ints, [16, 11, 13], [6, 6, 4]))
    # The training's scale: one long item and a padded one, values with a diagonal ridge.
    B, F, T = 2, 200, 80
    f = torch.arange(F, dtype=torch.float64)[:, None] / F
    t = torch.arange(T, dtype=torch.float64)[None, :] / T
    ridge = (-200.0 - 400.0 * (t - f) ** 2).float()
    cases.append(("long", normal((B, F, T), 3.0) + ridge, [200, 151], [80, 57]))
    return cases


def likelihood_case(generator):
    B, C, F, T = 2, 192, 24, 10
    z_p = torch.randn((B, C, F), generator=generator, dtype=torch.float64).float()
    m_p = (torch.randn((B, C, T), generator=generator, dtype=torch.float64) * 0.7).float()
    logs_p = (torch.randn((B, C, T), generator=generator, dtype=torch.float64) * 0.3 - 0.5).float()
    neg_cent_f32 = anchor_neg_cent(z_p, m_p, logs_p)
    neg_cent_f64 = anchor_neg_cent(z_p.double(), m_p.double(), logs_p.double())
    # The float32 result's error, relative to the size of the summed terms (the C++ test's bound is 1e-5 of it).
    s = torch.exp(-2 * logs_p.double())
    magnitude = (torch.sum((0.5 * math.log(2 * math.pi) + logs_p.double()).abs(), 1, keepdim=True) +
                 torch.matmul(0.5 * (z_p.double()**2).transpose(1, 2), s) +
                 torch.matmul(z_p.double().abs().transpose(1, 2), m_p.double().abs() * s) +
                 torch.sum(0.5 * m_p.double()**2 * s, 1, keepdim=True))
    worst = ((neg_cent_f32.double() - neg_cent_f64).abs() / magnitude).max().item()
    print(f"likelihood: float32 vs float64 error, worst {worst:.2e} of the terms' magnitude")
    assert worst < 1e-6
    return z_p, m_p, logs_p, neg_cent_f32, neg_cent_f64


def line(name, array):
    a = np.asarray(array)
    dims = " ".join(str(d) for d in a.shape)
    if a.dtype.kind in "iub":
        values = " ".join(str(int(v)) for v in a.reshape(-1))
    elif a.dtype == np.float32:
        # 9 significant digits round-trip every float32 exactly.
        texts = ["%.9g" % float(v) for v in a.reshape(-1)]
        assert all(np.float32(float(t)) == v for t, v in zip(texts, a.reshape(-1)))
        values = " ".join(texts)
    else:
        values = " ".join(repr(float(v)) for v in a.reshape(-1))  # float64: 17 digits, exact
    return f"{name} {a.ndim} {dims} {values}\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchor", required=True, help="finetune-hf-vits checkout (monotonic_align/, utils/)")
    parser.add_argument("--out", default=OUT_PATH)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)

    with tempfile.TemporaryDirectory(prefix="vitscuda_mas_") as workdir:
        maximum_path = build_maximum_path(os.path.abspath(args.anchor), workdir)
        z_p, m_p, logs_p, neg_cent_f32, neg_cent_f64 = likelihood_case(generator)
        cases = search_cases(generator)
        cases.append(("from_likelihood", neg_cent_f32, [24, 19], [10, 7]))
        lines = [
            "# Generated by tools/golden/make_alignment_cases.py from finetune-hf-vits' monotonic_align (Cython)\n",
            "# and the four-term log-likelihood of VitsModelForPreTraining.forward (torch "
            f"{torch.__version__}, seed {SEED}).\n",
        ]
        for name, neg_cent, frame_lengths, token_lengths in cases:
            assert all(tx <= ty for tx, ty in zip(token_lengths, frame_lengths))
            path = run_search(maximum_path, neg_cent.clone(), frame_lengths, token_lengths)
            check_path(path, frame_lengths, token_lengths)
            ties = sum(backtrack_ties(neg_cent[b].numpy(), ty, tx) for b, (ty, tx) in
                       enumerate(zip(frame_lengths, token_lengths)))
            print(f"search_{name}: {list(neg_cent.shape)}, frames {frame_lengths}, tokens {token_lengths}, "
                  f"{ties} tied backtrack comparisons")
            if name in ("duplicated", "exact_ties"):
                assert ties > 0, f"search_{name} was meant to exercise the tie rule"
            lines.append(line(f"search_{name}.log_likelihood", neg_cent.numpy()))
            lines.append(line(f"search_{name}.frame_lengths", np.array(frame_lengths, dtype=np.int64)))
            lines.append(line(f"search_{name}.token_lengths", np.array(token_lengths, dtype=np.int64)))
            lines.append(line(f"search_{name}.path", path.numpy()))
        lines.append(line("likelihood.z_p", z_p.numpy()))
        lines.append(line("likelihood.m_p", m_p.numpy()))
        lines.append(line("likelihood.logs_p", logs_p.numpy()))
        lines.append(line("likelihood.neg_cent_f32", neg_cent_f32.numpy()))
        lines.append(line("likelihood.neg_cent_f64", neg_cent_f64.numpy()))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.writelines(lines)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
