#!/usr/bin/env python3
"""Golden duration-predictor cases from transformers' VitsStochasticDurationPredictor (reverse=True)
and VitsDurationPredictor, on tiny configs with perturbed parameters.

Writes tests/data/model/duration_cases.txt, a plain-text file of cases:
  case <name>
  config <compact JSON: the VitsConfig fields that differ from the defaults>
  <tensor name> <ndim> <d0> ... <d(ndim-1)> <v0> <v1> ...     (one line per tensor, row-major float32 values)
Tensor names are the module's state-dict names prefixed "duration_predictor." (every parameter,
including the posterior branch that inference does not use), then
  input.hidden_states [B, H, T], input.padding_mask [B, 1, T], input.speaker_embeddings [B, E, 1] (if any),
  input.noise [B, 2, T] (the stochastic predictor's torch.randn draw), output.log_duration [B, 1, T].
The stochastic predictor runs with noise_scale = config.noise_scale_duration.

Parameters get N(0, 0.3) added after transformers' init, so LayerNorm ones/zeros, zero affine
flows and zero biases do not hide a wrong index. layer_norm_eps is 0.05 (not nn.LayerNorm's
1e-5) so a predictor that uses the wrong eps in either place fails. Flow 1 (skipped at
inference) is perturbed too, so running it would change the output.

Usage (from the repository root): python3 tools/golden/make_duration_cases.py
"""
import json
import os
import types

import torch
from transformers import VitsConfig
from transformers.models.vits import modeling_vits
from transformers.models.vits.modeling_vits import VitsDurationPredictor, VitsStochasticDurationPredictor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(ROOT, "tests", "data", "model", "duration_cases.txt")

BATCH = 2
LENGTH = 9
VALID_LENGTHS = [9, 5]  # the second item is padded
PERTURB_STD = 0.3

BASE_FIELDS = {
    "hidden_size": 16,
    "duration_predictor_filter_channels": 24,
    "depth_separable_num_layers": 2,
    "duration_predictor_flow_bins": 4,
    "duration_predictor_num_flows": 2,
    "layer_norm_eps": 0.05,
    "noise_scale_duration": 0.8,
}

CASES = [
    ("stochastic_no_speaker", {"use_stochastic_duration_prediction": True, "speaker_embedding_size": 0}),
    # A small tail bound sends some spline inputs outside [-B, B], exercising the identity tails.
    ("stochastic_speaker", {"use_stochastic_duration_prediction": True, "speaker_embedding_size": 6,
                            "num_speakers": 3, "duration_predictor_tail_bound": 0.8}),
    ("plain_speaker", {"use_stochastic_duration_prediction": False, "speaker_embedding_size": 6, "num_speakers": 3}),
    ("plain_no_speaker", {"use_stochastic_duration_prediction": False, "speaker_embedding_size": 0}),
]


def tensor_line(name, t):
    t = t.detach().to(torch.float32).contiguous()
    values = " ".join("%.9g" % v for v in t.reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return f"{name} {t.dim()} {dims} {values}"


class SplineRecorder:
    """Counts the unpadded spline inputs inside / outside the tail bound while the predictor runs."""

    def __init__(self, mask):
        self.mask = mask.bool()
        self.inside = 0
        self.outside = 0
        self._original = modeling_vits._unconstrained_rational_quadratic_spline

    def __enter__(self):
        def recording(inputs, *args, **kwargs):
            bound = kwargs.get("tail_bound", 5.0)
            inside = (inputs >= -bound) & (inputs <= bound)
            valid = self.mask.expand_as(inputs)
            self.inside += int((inside & valid).sum())
            self.outside += int((~inside & valid).sum())
            return self._original(inputs, *args, **kwargs)

        modeling_vits._unconstrained_rational_quadratic_spline = recording
        return self

    def __exit__(self, *exc):
        modeling_vits._unconstrained_rational_quadratic_spline = self._original


class RandnRecorder:
    """Captures every torch.randn draw made while active."""

    def __init__(self):
        self.draws = []
        self._original = torch.randn

    def __enter__(self):
        def recording(*args, **kwargs):
            t = self._original(*args, **kwargs)
            self.draws.append(t.clone())
            return t

        torch.randn = recording
        return self

    def __exit__(self, *exc):
        torch.randn = self._original


def run_predictor(module, config, hidden, mask, speaker, stochastic, seed):
    with torch.no_grad():
        if stochastic:
            torch.manual_seed(seed)
            with RandnRecorder() as randn, SplineRecorder(mask) as spline:
                out = module(hidden, mask, speaker, reverse=True, noise_scale=config.noise_scale_duration)
            assert len(randn.draws) == 1, f"expected one torch.randn draw, got {len(randn.draws)}"
            return out, randn.draws[0], spline
        return module(hidden, mask, speaker), None, None


def make_case(name, fields, seed):
    config = VitsConfig(**{**BASE_FIELDS, **fields})
    stochastic = config.use_stochastic_duration_prediction
    torch.manual_seed(seed)
    module = VitsStochasticDurationPredictor(config) if stochastic else VitsDurationPredictor(config)
    # transformers' _init_weights scheme (ElementwiseAffine zeros, LayerNorm ones/zeros, kaiming convs), then noise.
    owner = types.SimpleNamespace(config=config)
    module.apply(lambda m: modeling_vits.VitsPreTrainedModel._init_weights(owner, m))
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * PERTURB_STD)
    module.eval()

    hidden = torch.randn(BATCH, config.hidden_size, LENGTH)
    mask = torch.zeros(BATCH, 1, LENGTH)
    for b, n in enumerate(VALID_LENGTHS):
        mask[b, 0, :n] = 1.0
    speaker = torch.randn(BATCH, config.speaker_embedding_size, 1) if config.speaker_embedding_size else None

    out, noise, spline = run_predictor(module, config, hidden, mask, speaker, stochastic, seed + 1)

    # How far fp32 is from fp64 on this case: the scale of rounding the C++ port must stay within.
    module64 = module.to(torch.float64)
    out64, _, _ = run_predictor(module64, config, hidden.double(), mask.double(),
                                None if speaker is None else speaker.double(), stochastic, seed + 1)
    fp32_vs_fp64 = float((out.double() - out64).abs().max())

    lines = [f"case {name}"]
    lines.append("config " + json.dumps({**BASE_FIELDS, **fields}, separators=(",", ":")))
    for pname, p in module.to(torch.float32).state_dict().items():
        lines.append(tensor_line("duration_predictor." + pname, p))
    lines.append(tensor_line("input.hidden_states", hidden))
    lines.append(tensor_line("input.padding_mask", mask))
    if speaker is not None:
        lines.append(tensor_line("input.speaker_embeddings", speaker))
    if noise is not None:
        lines.append(tensor_line("input.noise", noise))
    lines.append(tensor_line("output.log_duration", out))

    info = f"{name}: {len(module.state_dict())} params, fp32 vs fp64 max |diff| {fp32_vs_fp64:.3g}"
    if spline is not None:
        info += f", unpadded spline inputs inside/outside the tail bound {spline.inside}/{spline.outside}"
    print(info)
    return lines


def main():
    lines = ["# Generated by tools/golden/make_duration_cases.py from transformers' VITS duration predictors."]
    for i, (name, fields) in enumerate(CASES):
        lines.extend(make_case(name, fields, seed=1000 + 10 * i))
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    with open(OUT_PATH, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT_PATH}")


if __name__ == "__main__":
    main()
