#!/usr/bin/env python3
"""Golden losses, alignments and gradients of the vae training step, computed by finetune-hf-vits' own training
forward (utils/modeling_vits_training.py, VitsModelForPreTraining.forward) with PyTorch autograd, and the losses
of its training script (run_vits_finetuning.py: kl_loss, the duration sum, l1_loss on the log-mels).

The anchor's code is imported from a local checkout given on the command line; nothing of it is copied here:
    python3 tools/golden/make_golden_vae.py --anchor /path/to/finetune-hf-vits   # commit 6f3f51f

Writes tests/data/golden/vae/<fixture>/ for two fixtures:
  sdp              single speaker, stochastic duration predictor (the tiny_sdp model of make_golden.py)
  dp_multispeaker  three speakers, deterministic duration predictor (a new tiny model, saved in the directory)
Each holds step.safetensors (inputs, injected draws, alignment, loss terms, every parameter gradient); the
dp_multispeaker directory also holds the model (config.json, model.safetensors, vocab.json).

The step, in the anchor's order (its eval mode: no dropout, no LayerDrop, as finetune-hf-vits trains):
  text encoder -> m_p, logs_p; posterior encoder on the linear spectrogram with eps_q (randn_like) -> z, m_q,
  logs_q; flow forward -> z_p; MAS on the four-term log-likelihood (the anchor's python maximum path, whose only
  difference from its Cython one is an edge guard for infeasible alignments, which these fixtures are not);
  duration loss with e_q (torch.randn) -> sum(log_duration); prior expanded through the alignment; window starts
  from torch.rand -> decoder on z windows -> log-mel; losses:
    mel = l1_loss(target log-mel window, generated log-mel)       kl = kl_loss(z_p, logs_q, m_p', logs_p', mask_y)
    dur = sum(log_duration)                                        total = 35 mel + 1.5 kl + 1 dur
The three random draws are recorded by replacing the anchor module's `torch` with a proxy that draws them from a
seeded generator and keeps them; they are written as posterior_noise [B,F,Ts], duration_noise [B,2,T] and
segment_starts [B].

Not as the anchor's training script: the decoder and the flow's conv_pre/conv_post are NOT re-parametrised with
weight norm here (run_vits_finetuning.py does that before training); vitscuda trains the weights in the
parametrisation the model directory stores, so the gradients are with respect to those (the WaveNet layers are
weight-normed in both: gradients are with respect to weight_g and weight_v).

Linear spectrogram and log-mel: the feature extractor's definitions (reflect pad (n_fft - hop)/2, periodic Hann,
center=False, magnitude sqrt(re^2 + im^2 + 1e-6); log(clamp(slaney_mel @ magnitude, 1e-5))), each utterance on
its own, zero-padded to the batch's frames; N_MELS mel bands (the tiny n_fft of 64 keeps 8 bands non-empty).
Every tensor is float32. Gradient names: "grad." + the state-dict name with legacy weight-norm names.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import safetensors.torch
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "golden"))
import make_golden_gradients as mel_golden  # noqa: E402  (log-mel, speech-like waves, names, metadata sorting)

N_MELS = 8
SEGMENT_FRAMES = 8
C_MEL, C_KL, C_DUR = 35.0, 1.5, 1.0
WAVE_SEED = 777
DRAW_SEED = 2024


class RecordingTorch:
    """Stands in for `torch` inside the anchor's module: randn, randn_like and rand draw from one seeded generator
    and are recorded (in call order) so the C++ test can inject them."""

    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)
        self.draws = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def _keep(self, kind, value):
        self.draws.append((kind, value.clone()))
        return value

    def randn(self, *size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        return self._keep("randn", torch.randn(shape, generator=self.generator, dtype=torch.float32))

    def randn_like(self, t, **kwargs):
        return self._keep("randn_like", torch.randn(t.shape, generator=self.generator, dtype=t.dtype))

    def rand(self, *size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        return self._keep("rand", torch.rand(shape, generator=self.generator, dtype=torch.float32))


def import_anchor(anchor):
    """The anchor's utils.configuration_vits and utils.modeling_vits_training, without running utils/__init__.py
    (it imports plotting and romanisation helpers these modules do not need)."""
    import importlib
    import types

    package = types.ModuleType("utils")
    package.__path__ = [os.path.join(os.path.abspath(anchor), "utils")]
    sys.modules["utils"] = package
    return importlib.import_module("utils.configuration_vits"), importlib.import_module("utils.modeling_vits_training")


def anchor_model(anchor_modules, hf_dir, hop):
    """VitsModelForPreTraining with the generator weights of the VitsModel in hf_dir (the discriminator is unused)."""
    from transformers import VitsModel

    configuration_vits, mvt = anchor_modules
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.pop("architectures", None)
    cfg["segment_size"] = SEGMENT_FRAMES * hop
    cfg["hop_length"] = hop
    config = configuration_vits.VitsConfig(**cfg)
    model = mvt.VitsModelForPreTraining(config)
    source = {mel_golden.legacy_name(k): v.float() for k, v in VitsModel.from_pretrained(hf_dir).state_dict().items()}
    state = model.state_dict()
    loaded = {}
    for name in state:
        if name.startswith("discriminator."):
            continue
        key = mel_golden.legacy_name(name)
        assert key in source, f"{name}: not in {hf_dir}"
        loaded[name] = source[key]
    missing = set(source) - {mel_golden.legacy_name(n) for n in loaded}
    assert not missing, f"weights of {hf_dir} the anchor's model has no place for: {sorted(missing)[:5]}"
    model.load_state_dict(loaded, strict=False)
    model.eval()  # as finetune-hf-vits trains (from_pretrained leaves the model in eval mode)
    return model, config


def make_multispeaker_model(out_dir):
    """A tiny three-speaker model with the deterministic duration predictor, seeded, saved as transformers does."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    base = os.path.join(REPO_ROOT, "tests", "data", "golden", "tiny_dp_multispeaker")
    with open(os.path.join(base, "config.json")) as f:
        cfg = json.load(f)
    for key in ("architectures", "transformers_version", "dtype", "torch_dtype"):
        cfg.pop(key, None)
    # hop 16 with n_fft 64: the STFT's (n_fft - hop) / 2 padding must be whole
    cfg.update(upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8])
    torch.manual_seed(99)
    model = VitsModel(VitsConfig(**cfg))
    model.save_pretrained(out_dir, safe_serialization=True)
    VitsTokenizer.from_pretrained(base).save_pretrained(out_dir)
    return out_dir


def kl_loss(prior_latents, posterior_log_variance, prior_means, prior_log_variance, labels_mask):
    """run_vits_finetuning.py's kl_loss, term for term."""
    kl = prior_log_variance - posterior_log_variance - 0.5
    kl += 0.5 * ((prior_latents - prior_means) ** 2) * torch.exp(-2.0 * prior_log_variance)
    kl = torch.sum(kl * labels_mask)
    return kl / torch.sum(labels_mask)


def run_step(anchor_modules, hf_dir, texts, frames, speakers, out_dir):
    from transformers import VitsTokenizer

    _, mvt = anchor_modules
    hop = 16
    model, config = anchor_model(anchor_modules, hf_dir, hop)
    n_fft = 2 * (config.spectrogram_bins - 1)
    bank, bank_source = mel_golden.mel_filterbank(config.sampling_rate, n_fft, N_MELS)
    tokenizer = VitsTokenizer.from_pretrained(hf_dir)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ids, attention = enc["input_ids"], enc["attention_mask"]
    B = len(texts)
    token_lengths = attention.sum(1).tolist()
    assert all(t <= f for t, f in zip(token_lengths, frames)), "an alignment needs at least one frame per token"

    gen = torch.Generator().manual_seed(WAVE_SEED)
    waves = [mel_golden.speech_like_wave(f * hop, config.sampling_rate, 110.0 + 40 * b, gen) for b, f in enumerate(frames)]
    F_max = max(frames)
    spec = torch.zeros(B, config.spectrogram_bins, F_max)
    target_mel = torch.zeros(B, N_MELS, F_max)
    for b, w in enumerate(waves):
        spec[b, :, :frames[b]] = mel_golden.stft_magnitude(w.unsqueeze(0), n_fft, hop, n_fft)[0]
        target_mel[b, :, :frames[b]] = mel_golden.log_mel(w.unsqueeze(0), bank, n_fft, hop, n_fft)[0]
    labels_mask = torch.zeros(B, F_max)
    for b, f in enumerate(frames):
        labels_mask[b, :f] = 1

    recorder = RecordingTorch(DRAW_SEED)
    original = mvt.torch
    mvt.torch = recorder
    try:
        out = model(input_ids=ids, attention_mask=attention, labels=spec, labels_attention_mask=labels_mask,
                    speaker_id=speakers, return_dict=True)
    finally:
        mvt.torch = original
    kinds = [k for k, _ in recorder.draws]
    expected = ["randn_like", "randn", "rand"] if config.use_stochastic_duration_prediction else ["randn_like", "rand"]
    assert kinds == expected, f"the anchor drew {kinds}, expected {expected}"
    posterior_noise = recorder.draws[0][1]
    duration_noise = recorder.draws[1][1] if config.use_stochastic_duration_prediction else None

    ids_slice = out.ids_slice
    mel_target = mvt.slice_segments(target_mel, ids_slice, SEGMENT_FRAMES)
    mel_generated = mel_golden.log_mel(out.waveform.squeeze(1), bank, n_fft, hop, n_fft)
    assert mel_generated.shape == mel_target.shape, f"{mel_generated.shape} vs {mel_target.shape}"
    loss_mel = torch.nn.functional.l1_loss(mel_target, mel_generated)
    loss_kl = kl_loss(out.prior_latents, out.posterior_log_variances, out.prior_means, out.prior_log_variances,
                      out.labels_padding_mask)
    loss_dur = torch.sum(out.log_duration)
    total = C_MEL * loss_mel + C_KL * loss_kl + C_DUR * loss_dur
    model.zero_grad()
    total.backward()

    # The alignment as a frame -> token map (-1: padding frames), checked to be a monotonic path.
    attn = out.attn[:, 0]  # [B, Ts, Tt]
    alignment = torch.full((B, F_max), -1.0)
    for b in range(B):
        for f in range(frames[b]):
            row = attn[b, f]
            assert row.sum().item() == 1.0, f"item {b} frame {f} is aligned to {row.sum().item()} tokens"
            alignment[b, f] = float(row.argmax().item())
        steps = alignment[b, 1:frames[b]] - alignment[b, :frames[b] - 1]
        assert alignment[b, 0] == 0 and alignment[b, frames[b] - 1] == token_lengths[b] - 1
        assert bool(((steps == 0) | (steps == 1)).all()), f"item {b}: not a monotonic path"

    tensors = {
        "input_ids": ids.float(), "attention_mask": attention.float(), "posterior_noise": posterior_noise,
        "segment_starts": ids_slice.float(), "alignment": alignment,
        "loss_mel": loss_mel.detach().reshape(1), "loss_kl": loss_kl.detach().reshape(1),
        "loss_dur": loss_dur.detach().reshape(1), "loss_total": total.detach().reshape(1),
        "z_p": out.prior_latents.detach(), "posterior_log_std": out.posterior_log_variances.detach(),
    }
    if duration_noise is not None:
        tensors["duration_noise"] = duration_noise
    if speakers is not None:
        tensors["speaker_ids"] = torch.tensor(speakers, dtype=torch.float32)
    for b, w in enumerate(waves):
        tensors[f"target_wave_{b}"] = w
    nonzero = 0
    for name, p in model.named_parameters():
        if name.startswith("discriminator."):
            continue
        assert p.grad is not None, f"{name} got no gradient"
        tensors["grad." + mel_golden.legacy_name(name)] = p.grad.detach().float().contiguous()
        nonzero += int(p.grad.abs().max().item() > 0)
    metadata = {
        "anchor": "finetune-hf-vits utils/modeling_vits_training.py VitsModelForPreTraining.forward",
        "mel_filterbank": bank_source, "sample_rate": str(config.sampling_rate), "n_fft": str(n_fft),
        "hop": str(hop), "win": str(n_fft), "n_mels": str(N_MELS), "segment_frames": str(SEGMENT_FRAMES),
        "c_mel": str(C_MEL), "c_kl": str(C_KL), "c_dur": str(C_DUR), "torch": torch.__version__,
        "frames": json.dumps(frames), "model": os.path.relpath(hf_dir, os.path.join(REPO_ROOT, "tests", "data")),
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "step.safetensors")
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)
    mel_golden.sort_safetensors_metadata(path)
    print(f"{path}: mel {loss_mel.item():.6f} kl {loss_kl.item():.6f} dur {loss_dur.item():.6f} "
          f"total {total.item():.6f}; {nonzero} non-zero parameter gradients; windows {ids_slice.tolist()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchor", required=True, help="checkout of ylacombe/finetune-hf-vits (6f3f51f)")
    parser.add_argument("--root", default=REPO_ROOT, help="repository root to write tests/data under")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    modules = import_anchor(args.anchor)
    golden = os.path.join(args.root, "tests", "data", "golden")
    run_step(modules, os.path.join(golden, "tiny_sdp"), ["Hello, world!", "kite"], [40, 21], None,
             os.path.join(golden, "vae", "sdp"))
    multi = make_multispeaker_model(os.path.join(golden, "vae", "dp_multispeaker"))
    run_step(modules, multi, ["Dog's 2 cats", "yes"], [44, 12], [2, 0], multi)


if __name__ == "__main__":
    main()
