#!/usr/bin/env python3
"""Golden training-direction cases of the duration predictors, from finetune-hf-vits' own modules
(utils/modeling_vits_training.py of the checkout named by --anchor): the per-item loss of
VitsStochasticDurationPredictor.forward(reverse=False) (nll + log q) and of the deterministic
VitsDurationPredictor (sum over tokens of (prediction - log(durations + 1e-6) * mask)^2, as
VitsModelForPreTraining.forward forms it), with the gradient of the batch sum of that loss w.r.t. every
parameter of the predictor. The hidden states and the speaker embedding are detached inside the modules, so
the predictor's parameters are the only leaves.

The stochastic predictor draws its posterior noise e_q with torch.randn inside forward. The script replaces
the name `torch` inside the loaded module with a proxy whose randn returns the case's fixed draw (and
otherwise forwards to torch), and asserts that exactly one draw of shape [B, 2, T] was made.

Flow order: finetune-hf-vits (and original VITS) run the ElementwiseAffine flow first without a channel flip
after it; transformers' own VitsStochasticDurationPredictor.forward flips after it too. The same parameters,
inputs and e_q are also run through transformers' module; its loss is stored as
<case>.loss_transformers_order, and the script asserts that it differs from the anchor's, so a port that uses
transformers' order fails the parity test.

Writes tests/data/model/duration_training_cases.txt in the plain case format of tools/golden/README.md
("name ndim d0 ... v0 v1 ...", values as Python's repr of the float32 values, of the float64 ones for
the *_f64 arrays), plus one line per case
  config <case> <compact JSON: the VitsConfig fields that differ from the defaults>
Array names, all prefixed "<case>.":
  param.<name>, grad.<name>   every parameter of the predictor (state-dict names without the
                              "duration_predictor." prefix) and the gradient of sum_b loss_b w.r.t. it
  grad_f64.<name>             the same gradient computed in float64 (from the same float32 parameters
                              and inputs): the reference for a float64 port, free of float32 rounding
  input.hidden_states [B, H, T], input.padding_mask [B, 1, T], input.speaker_embeddings [B, E, 1] (if any),
  input.durations [B, 1, T] (integer frame counts, 0 at padding), input.noise [B, 2, T] (stochastic: e_q)
  loss [B], loss_f64 [B]      the anchor's per-item loss, in float32 and in float64
  loss_transformers_order [B] (stochastic) the same with transformers' flip after the ElementwiseAffine

Parameters get N(0, PERTURB_STD) added after the model's own init (so ones/zeros of LayerNorms, the zero
ElementwiseAffines and the biases do not hide a wrong index); eval mode (no dropout), as finetune-hf-vits
trains. Single-threaded, deterministic. It also prints, per case, how far float32 is from float64 for the
loss and the gradients (the rounding scale a port must stay within).

Usage (from the repository root):
  python3 tools/golden/make_duration_training_cases.py --anchor /path/to/finetune-hf-vits
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(ROOT, "tests", "data", "model", "duration_training_cases.txt")

BATCH = 2
LENGTH = 7
VALID_LENGTHS = [7, 4]  # the second item is padded
PERTURB_STD = 0.2

BASE_FIELDS = {
    "hidden_size": 16,
    "duration_predictor_filter_channels": 24,
    "depth_separable_num_layers": 2,
    "duration_predictor_flow_bins": 4,
    "duration_predictor_num_flows": 2,
    "layer_norm_eps": 0.05,
}

CASES = [
    ("stochastic_no_speaker", {"use_stochastic_duration_prediction": True, "speaker_embedding_size": 0}),
    # A tail bound of 1.5 sends some spline inputs outside [-B, B], exercising the identity tails.
    ("stochastic_speaker", {"use_stochastic_duration_prediction": True, "speaker_embedding_size": 6,
                            "num_speakers": 3, "duration_predictor_tail_bound": 1.5}),
    ("plain_speaker", {"use_stochastic_duration_prediction": False, "speaker_embedding_size": 6, "num_speakers": 3}),
    ("plain_no_speaker", {"use_stochastic_duration_prediction": False, "speaker_embedding_size": 0}),
]


def load_anchor_module(anchor):
    """Imports utils/modeling_vits_training.py of the checkout without running utils/__init__.py (which
    imports plotting libraries): a stand-in package holds the directory, so its relative import of
    configuration_vits resolves."""
    utils_dir = os.path.join(anchor, "utils")
    path = os.path.join(utils_dir, "modeling_vits_training.py")
    if not os.path.isfile(path):
        sys.exit(f"{path}: not found (--anchor must be a finetune-hf-vits checkout)")
    package = types.ModuleType("finetune_hf_vits_utils")
    package.__path__ = [utils_dir]
    sys.modules[package.__name__] = package
    spec = importlib.util.spec_from_file_location(package.__name__ + ".modeling_vits_training", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class InjectedRandn:
    """Replaces `torch` inside `module` by a proxy whose randn returns `draw` (recording each call's shape)."""

    def __init__(self, module, draw):
        self.module = module
        self.draw = draw
        self.shapes = []

    def __enter__(self):
        injector = self

        class TorchProxy(types.ModuleType):
            def __getattr__(self, name):
                return getattr(torch, name)

            @staticmethod
            def randn(*size, **kwargs):
                shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
                injector.shapes.append(shape)
                assert shape == tuple(injector.draw.shape), f"randn{shape}, expected {tuple(injector.draw.shape)}"
                return injector.draw.clone()

        self.original = self.module.torch
        self.module.torch = TorchProxy("torch")
        return self

    def __exit__(self, *exc):
        self.module.torch = self.original


def repr_line(name, t, dtype=torch.float32):
    t = t.detach().to(dtype).contiguous()
    values = " ".join(repr(float(v)) for v in t.reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return f"{name} {t.dim()} {dims} {values}".rstrip()


def plain_loss(module, hidden, mask, speaker, durations):
    # VitsModelForPreTraining.forward (MVT), before the division by the batch's token count.
    target = torch.log(durations + 1e-6) * mask
    prediction = module(hidden, mask, speaker)
    return torch.sum((prediction - target) ** 2, [1, 2])


def run(module, source, stochastic, hidden, mask, speaker, durations, noise):
    """Per-item loss and {name: gradient of sum(loss)}."""
    module.zero_grad(set_to_none=True)
    if stochastic:
        with InjectedRandn(source, noise) as injected:
            loss = module(hidden, mask, speaker, durations=durations, reverse=False)
        assert len(injected.shapes) == 1, f"expected one torch.randn draw, got {injected.shapes}"
    else:
        loss = plain_loss(module, hidden, mask, speaker, durations)
    loss.sum().backward()
    grads = {}
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        grads[name] = p.grad.detach().clone()
    return loss.detach(), grads


def relative_l2(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def make_case(mvt, name, fields, seed):
    config = mvt.VitsConfig(**{**BASE_FIELDS, **fields})
    stochastic = config.use_stochastic_duration_prediction
    torch.manual_seed(seed)
    cls = mvt.VitsStochasticDurationPredictor if stochastic else mvt.VitsDurationPredictor
    module = cls(config)
    owner = types.SimpleNamespace(config=config)
    module.apply(lambda m: mvt.VitsPreTrainedModel._init_weights(owner, m))
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * PERTURB_STD)
    module.eval()

    hidden = torch.randn(BATCH, config.hidden_size, LENGTH)
    mask = torch.zeros(BATCH, 1, LENGTH)
    durations = torch.zeros(BATCH, 1, LENGTH)
    for b, n in enumerate(VALID_LENGTHS):
        mask[b, 0, :n] = 1.0
        durations[b, 0, :n] = torch.randint(1, 7, (n,)).to(torch.float32)
    speaker = torch.randn(BATCH, config.speaker_embedding_size, 1) if config.speaker_embedding_size else None
    noise = torch.randn(BATCH, 2, LENGTH) if stochastic else None

    loss, grads = run(module, mvt, stochastic, hidden, mask, speaker, durations, noise)
    assert torch.isfinite(loss).all(), f"{name}: loss {loss}"
    for pname, g in grads.items():
        assert torch.isfinite(g).all() and float(g.abs().max()) > 0, f"{name}: gradient of {pname} is {g}"

    # The float32 rounding scale, against the same computation in float64.
    module64 = cls(config).double()
    module64.load_state_dict(module.state_dict())
    module64.eval()
    loss64, grads64 = run(module64, mvt, stochastic, hidden.double(), mask.double(),
                          None if speaker is None else speaker.double(), durations.double(),
                          None if noise is None else noise.double())
    loss_error = relative_l2(loss, loss64)
    grad_error, worst = max((relative_l2(grads[k], grads64[k]), k) for k in grads)
    info = (f"{name}: {len(grads)} parameters, loss {loss.tolist()}, fp32 vs fp64: loss rel {loss_error:.2g}, "
            f"worst gradient rel L2 {grad_error:.2g} ({worst})")

    lines = ["config " + name + " " + json.dumps({**BASE_FIELDS, **fields}, separators=(",", ":"))]
    for pname, p in module.state_dict().items():
        lines.append(repr_line(f"{name}.param.{pname}", p))
    for pname, g in grads.items():
        lines.append(repr_line(f"{name}.grad.{pname}", g))
    for pname, g in grads64.items():
        lines.append(repr_line(f"{name}.grad_f64.{pname}", g, torch.float64))
    lines.append(repr_line(f"{name}.input.hidden_states", hidden))
    lines.append(repr_line(f"{name}.input.padding_mask", mask))
    if speaker is not None:
        lines.append(repr_line(f"{name}.input.speaker_embeddings", speaker))
    lines.append(repr_line(f"{name}.input.durations", durations))
    if noise is not None:
        lines.append(repr_line(f"{name}.input.noise", noise))
    lines.append(repr_line(f"{name}.loss", loss))
    lines.append(repr_line(f"{name}.loss_f64", loss64, torch.float64))

    if stochastic:
        # transformers' own module: same names, same parameters, same e_q; it flips after the ElementwiseAffine.
        from transformers import VitsConfig as HfVitsConfig
        from transformers.models.vits import modeling_vits

        hf = modeling_vits.VitsStochasticDurationPredictor(HfVitsConfig(**{**BASE_FIELDS, **fields}))
        hf.load_state_dict(module.state_dict())
        hf.eval()
        hf_loss, _ = run(hf, modeling_vits, True, hidden, mask, speaker, durations, noise)
        difference = float((hf_loss - loss).abs().max())
        assert difference > 1e-2 * float(loss.abs().max()), (
            f"{name}: transformers' flow order gives the same loss ({hf_loss} vs {loss}); "
            "the case cannot tell them apart")
        lines.append(repr_line(f"{name}.loss_transformers_order", hf_loss))
        info += f", transformers' order: loss {hf_loss.tolist()}"
        # Inference is the same in both: a check that the two modules really hold the same parameters.
        with torch.no_grad(), InjectedRandn(mvt, noise):
            ours = module(hidden, mask, speaker, reverse=True, noise_scale=0.7)
        with torch.no_grad(), InjectedRandn(modeling_vits, noise):
            theirs = hf(hidden, mask, speaker, reverse=True, noise_scale=0.7)
        assert torch.equal(ours, theirs), f"{name}: reverse passes differ"
    print(info)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchor", required=True, help="a finetune-hf-vits checkout (commit 6f3f51f used)")
    parser.add_argument("--out", default=OUT_PATH)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    mvt = load_anchor_module(os.path.abspath(args.anchor))

    lines = ["# Generated by tools/golden/make_duration_training_cases.py from finetune-hf-vits' "
             "VitsStochasticDurationPredictor / VitsDurationPredictor (training direction)."]
    for i, (name, fields) in enumerate(CASES):
        lines.extend(make_case(mvt, name, fields, seed=4000 + 10 * i))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
