#!/usr/bin/env python3
"""Golden cases of the VITS discriminator and its losses, computed with finetune-hf-vits' own code.

Imports VitsDiscriminator / VitsModelForPreTraining / VitsConfig from the given finetune-hf-vits checkout
(utils/modeling_vits_training.py, utils/configuration_vits.py) and takes discriminator_loss, generator_loss and
feature_loss from its run_vits_finetuning.py (the function definitions are compiled from that file: importing the
script itself would need datasets, accelerate and the compiled monotonic_align).

Writes tests/data/golden/discriminator/
  cases.safetensors           the discriminator step and the generator's adversarial gradient (below)
  discriminator.safetensors   the discriminator's parameters with weight norm applied (legacy weight_g /
                              weight_v / bias, named discriminator.discriminators.*), as the cases used them
  tiny_train/                 a tiny finetune-hf-vits "-train" checkpoint (VitsModelForPreTraining.save_pretrained
                              after remove_weight_norm: plain discriminator weights) with the tiny_sdp tokenizer
                              files, for the import -> export round trip

Discriminator config (small channels, every structural feature of the default one): kernel 5, stride 3, periods
[2, 3, 5, 7, 11], period channels [1, 4, 8, 16, 16], scale channels [1, 8, 32, 64] (the scale convs' groups are
4, 16, 64: 4^j for the j-th channel-changing conv and 4^(n-1) for the one that keeps the last channel count, so
every channel count after the first must be divisible by its groups; the default [1, 16, 64, 256, 1024] has
groups 4, 16, 64, 256), leaky_relu_slope 0.1. Weight norm applied as run_vits_finetuning.py does
(disc.apply_weight_norm() on each sub-discriminator: torch.nn.utils.weight_norm, dim 0).

The cases (B = 2, N = 512 samples: periods 3, 5, 7, 11 need right reflect padding of 1, 3, 6, 5 samples):
  1. D step: scores and feature maps of D(real) and D(sg(fake)); L_D = discriminator_loss(...)[0];
     backward -> the gradient of L_D for every weight_g, weight_v and bias ("grad_disc." + name).
  2. G side with D fixed: _, fmap_r = D(real); D_g, fmap_g = D(fake); L_adv = generator_loss(D_g)[0];
     L_fm = feature_loss(fmap_r, fmap_g); backward of L_adv + L_fm -> "grad_fake" [B, 1, N].
Tensors: real, fake [B, 1, N]; loss_disc, loss_adv, loss_fm [1]; score.{real,fake}.{k} [B, n_k] (torch's
flatten of [B, 1, H, p] for the period ones); fmap.{real,fake}.{k}.{l} (torch layout: [B, C, T] scale,
[B, C, H, p] periods); grad_disc.*; grad_fake. Stored as float32, but the outputs are computed in float64
(the same discriminator and waveforms converted to float64, so the references carry no float32 rounding of
their own); the script also runs the cases in float32 and prints (and records in the metadata) the largest
relative L2 difference between torch's float32 results and these, the float32 rounding the C++ tolerance
is judged against.

Usage: python3 tools/golden/make_discriminator_cases.py --anchor PATH_TO_FINETUNE_HF_VITS
       [--root REPO_ROOT]
"""
import argparse
import ast
import copy
import importlib
import json
import os
import shutil
import sys
import tempfile
import types
import warnings

import numpy as np
import safetensors.torch
import torch
import transformers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import sort_safetensors_metadata  # noqa: E402  (byte-identical files from run to run)

DISCRIMINATOR_FIELDS = dict(
    discriminator_kernel_size=5,
    discriminator_stride=3,
    discriminator_periods=[2, 3, 5, 7, 11],
    discriminator_period_channels=[1, 4, 8, 16, 16],
    discriminator_scale_channels=[1, 8, 32, 64],
    leaky_relu_slope=0.1,
)
# The generator of the "-train" fixture: as small as vitscuda's config validation allows.
TINY_GENERATOR = dict(
    vocab_size=38, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, window_size=2, ffn_dim=8,
    flow_size=4, spectrogram_bins=9, upsample_initial_channel=8, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
    resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]], prior_encoder_num_flows=1,
    prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1, depth_separable_num_layers=1,
    duration_predictor_flow_bins=2, duration_predictor_num_flows=1, duration_predictor_filter_channels=8,
)
BATCH, SAMPLES = 2, 512


def load_anchor(anchor):
    """MVT and configuration_vits as a package named `ftvits` (its __init__ would import matplotlib), and the
    three loss functions compiled from run_vits_finetuning.py's own source."""
    pkg = types.ModuleType("ftvits")
    pkg.__path__ = [os.path.join(anchor, "utils")]
    sys.modules["ftvits"] = pkg
    mvt = importlib.import_module("ftvits.modeling_vits_training")
    cfg = importlib.import_module("ftvits.configuration_vits")
    rvf_path = os.path.join(anchor, "run_vits_finetuning.py")
    tree = ast.parse(open(rvf_path).read(), rvf_path)
    wanted = {"discriminator_loss", "generator_loss", "feature_loss"}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {f.name for f in funcs} == wanted, "loss functions not found in " + rvf_path
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), rvf_path, "exec"), namespace)
    return mvt, cfg, namespace


def waveforms(seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(SAMPLES, dtype=torch.float64) / 16000.0
    out = []
    for b in range(BATCH):
        f0 = 140.0 + 60.0 * torch.rand((), generator=g, dtype=torch.float64)
        wave = sum(0.3 / k * torch.sin(2 * torch.pi * k * f0 * t + k) for k in range(1, 5))
        wave = wave + 0.05 * torch.randn(SAMPLES, generator=g, dtype=torch.float64)
        out.append(wave)
    return torch.stack(out).unsqueeze(1).float()


def legacy_state(disc):
    return {"discriminator." + k: v.detach().clone().contiguous() for k, v in disc.state_dict().items()}


def run_cases(disc, losses, real, fake_value):
    """The two cases on `disc` (weight-normed) in its dtype; returns the tensors to store."""
    out = {}
    disc.zero_grad(set_to_none=True)
    fake = fake_value.detach()
    real_scores, real_fmaps = disc(real)
    fake_scores, fake_fmaps = disc(fake)
    loss_disc = losses["discriminator_loss"](real_scores, fake_scores)[0]
    loss_disc.backward()
    for k in range(len(real_scores)):
        out[f"score.real.{k}"] = real_scores[k]
        out[f"score.fake.{k}"] = fake_scores[k]
        for l in range(len(real_fmaps[k])):
            out[f"fmap.real.{k}.{l}"] = real_fmaps[k][l]
            out[f"fmap.fake.{k}.{l}"] = fake_fmaps[k][l]
    for name, p in disc.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
        out["grad_disc.discriminator." + name] = p.grad
    out["loss_disc"] = loss_disc.reshape(1)

    disc.zero_grad(set_to_none=True)
    for p in disc.parameters():
        p.requires_grad_(False)
    fake = fake_value.detach().clone().requires_grad_(True)
    _, fmap_r = disc(real)
    gen_scores, fmap_g = disc(fake)
    loss_adv = losses["generator_loss"](gen_scores)[0]
    loss_fm = losses["feature_loss"](fmap_r, fmap_g)
    (loss_adv + loss_fm).backward()
    for p in disc.parameters():
        p.requires_grad_(True)
    out["loss_adv"] = loss_adv.reshape(1)
    out["loss_fm"] = loss_fm.reshape(1)
    out["grad_fake"] = fake.grad
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def relative_l2(a, b):
    a, b = a.double(), b.double()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def make_train_checkpoint(mvt, cfg, out_dir, tokenizer_dir):
    torch.manual_seed(4321)
    config = cfg.VitsConfig(**TINY_GENERATOR, **DISCRIMINATOR_FIELDS)
    model = mvt.VitsModelForPreTraining(config)
    # post_init's _init_weights gives the period convs N(0, 0.02) weights and zero biases: perturb every
    # discriminator tensor so that a dropped or swapped one shows.
    with torch.no_grad():
        for p in model.discriminator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir)
    for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))
    tensors = safetensors.torch.load_file(os.path.join(out_dir, "model.safetensors"))
    disc_keys = [k for k in tensors if k.startswith("discriminator.")]
    assert disc_keys and all(k.endswith(".weight") or k.endswith(".bias") for k in disc_keys), disc_keys[:4]
    return len(tensors), len(disc_keys)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--anchor", required=True, help="finetune-hf-vits checkout (commit 6f3f51f)")
    ap.add_argument("--root", default=REPO_ROOT, help="repository root to write tests/data under")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.nn.utils.weight_norm's deprecation
    mvt, cfg, losses = load_anchor(os.path.abspath(args.anchor))

    out_dir = os.path.join(args.root, "tests", "data", "golden", "discriminator")
    os.makedirs(out_dir, exist_ok=True)

    torch.manual_seed(1234)
    config = cfg.VitsConfig(**DISCRIMINATOR_FIELDS)
    disc = mvt.VitsDiscriminator(config)  # torch's default conv init (VitsDiscriminator does not post_init)
    for d in disc.discriminators:
        d.apply_weight_norm()
    disc.eval()
    real = waveforms(11)
    fake = waveforms(22) * 0.8
    results32 = run_cases(disc, losses, real, fake)

    disc64 = copy.deepcopy(disc).double()
    results = {k: v.float() for k, v in run_cases(disc64, losses, real.double(), fake.double()).items()}
    worst = max((relative_l2(results32[k], results[k]), k) for k in results)
    print(f"torch float32 vs float64: largest relative L2 {worst[0]:.3g} ({worst[1]})")

    metadata = {
        "batch": str(BATCH), "samples": str(SAMPLES), "config": json.dumps(DISCRIMINATOR_FIELDS),
        "sub_discriminators": str(len(disc.discriminators)), "computed_in": "float64", "float32_worst_relative_l2": f"{worst[0]:.3g}",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
    }
    results["real"] = real
    results["fake"] = fake
    cases_path = os.path.join(out_dir, "cases.safetensors")
    safetensors.torch.save_file(dict(sorted(results.items())), cases_path, metadata=metadata)
    sort_safetensors_metadata(cases_path)
    disc_path = os.path.join(out_dir, "discriminator.safetensors")
    safetensors.torch.save_file(legacy_state(disc), disc_path,
                                metadata={"format": "pt", "config": json.dumps(DISCRIMINATOR_FIELDS)})
    sort_safetensors_metadata(disc_path)
    n, nd = make_train_checkpoint(mvt, cfg, os.path.join(out_dir, "tiny_train"),
                                  os.path.join(args.root, "tests", "data", "golden", "tiny_sdp"))
    print(f"loss_disc {results['loss_disc'].item():.6f} loss_adv {results['loss_adv'].item():.6f} "
          f"loss_fm {results['loss_fm'].item():.6f}; {len(disc.discriminators)} sub-discriminators")
    print(f"tiny_train: {n} tensors, {nd} of them discriminator.*")


if __name__ == "__main__":
    main()
