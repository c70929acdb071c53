#!/usr/bin/env python3
"""Golden gradients of the full objective's two updates, computed by finetune-hf-vits' own code with PyTorch
autograd: its generator training forward (utils/modeling_vits_training.py, VitsModelForPreTraining.forward, with
the random draws injected as make_golden_vae.py does), its VitsDiscriminator (weight norm applied as
run_vits_finetuning.py applies it) and run_vits_finetuning.py's discriminator_loss, generator_loss and
feature_loss (compiled from that file's source, as make_discriminator_cases.py does).

    python3 tools/golden/make_golden_full.py --anchor /path/to/finetune-hf-vits   # commit 6f3f51f

Writes tests/data/golden/full/
  step.safetensors            inputs, injected draws, the alignment, the losses, and
                                grad_disc.<name>  (a) d(c_disc * L_D)/d(every discriminator parameter), the generated
                                                  windows detached: the discriminator step's gradient
                                grad.<name>       (b) d(L_G)/d(every generator parameter), the discriminator fixed:
                                                  L_G = 35 mel + 1.5 kl + 1 dur + 1 L_adv + 1 L_fm
  discriminator.safetensors   the discriminator the step used (legacy weight_g / weight_v / bias, F32)
The generator is tests/data/golden/tiny_sdp; the discriminator has make_discriminator_cases.py's tiny config
(DISCRIMINATOR_FIELDS, stored in the metadata), seeded. The recordings' windows the discriminator judges are
slice_segments(waveforms, ids_slice * hop, K * hop), as the training script slices them.

Both gradients are taken at the same parameters (before any update): (a) is the discriminator step's gradient with
its gradients zeroed before the backward (the anchor's script zeroes them after its step instead, so its next
discriminator gradient also holds the generator backward's; vitscuda does not reproduce that), (b) the generator's
against that same discriminator. As in make_golden_vae.py, the decoder and the flow's conv_pre/conv_post are not
re-parametrised with weight norm: vitscuda trains the weights the model directory stores.
"""
import argparse
import json
import os
import sys
import warnings

import safetensors.torch
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "golden"))
import make_discriminator_cases as disc_golden  # noqa: E402  (tiny discriminator config, the losses' compilation)
import make_golden_gradients as mel_golden  # noqa: E402  (log-mel, speech-like waves, names, metadata sorting)
import make_golden_vae as vae_golden  # noqa: E402  (the anchor's import, its model, draws, kl_loss)

C_GEN, C_FM, C_DISC = 1.0, 1.0, 3.0
DISC_SEED = 1234
TEXTS = ["Hello, world!", "kite"]
FRAMES = [40, 21]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchor", required=True, help="checkout of ylacombe/finetune-hf-vits (6f3f51f)")
    parser.add_argument("--root", default=REPO_ROOT, help="repository root to write tests/data under")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.nn.utils.weight_norm's deprecation
    anchor = os.path.abspath(args.anchor)
    modules = vae_golden.import_anchor(anchor)
    configuration_vits, mvt = modules
    _, _, losses = disc_golden.load_anchor(anchor)

    golden = os.path.join(args.root, "tests", "data", "golden")
    hf_dir = os.path.join(golden, "tiny_sdp")
    out_dir = os.path.join(golden, "full")
    hop, K = 16, vae_golden.SEGMENT_FRAMES
    model, config = vae_golden.anchor_model(modules, hf_dir, hop)

    torch.manual_seed(DISC_SEED)
    disc_config = configuration_vits.VitsConfig(**disc_golden.DISCRIMINATOR_FIELDS)
    disc = mvt.VitsDiscriminator(disc_config)
    for d in disc.discriminators:
        d.apply_weight_norm()  # as run_vits_finetuning.py does before training
    disc.eval()

    # The generator's training forward, as make_golden_vae.py runs it.
    from transformers import VitsTokenizer

    n_fft = 2 * (config.spectrogram_bins - 1)
    bank, bank_source = mel_golden.mel_filterbank(config.sampling_rate, n_fft, vae_golden.N_MELS)
    enc = VitsTokenizer.from_pretrained(hf_dir)(TEXTS, padding=True, return_tensors="pt")
    ids, attention = enc["input_ids"], enc["attention_mask"]
    B, F_max = len(TEXTS), max(FRAMES)
    gen = torch.Generator().manual_seed(vae_golden.WAVE_SEED)
    waves = [mel_golden.speech_like_wave(f * hop, config.sampling_rate, 110.0 + 40 * b, gen)
             for b, f in enumerate(FRAMES)]
    spec = torch.zeros(B, config.spectrogram_bins, F_max)
    target_mel = torch.zeros(B, vae_golden.N_MELS, F_max)
    padded_waves = torch.zeros(B, 1, F_max * hop)
    labels_mask = torch.zeros(B, F_max)
    for b, w in enumerate(waves):
        spec[b, :, :FRAMES[b]] = mel_golden.stft_magnitude(w.unsqueeze(0), n_fft, hop, n_fft)[0]
        target_mel[b, :, :FRAMES[b]] = mel_golden.log_mel(w.unsqueeze(0), bank, n_fft, hop, n_fft)[0]
        padded_waves[b, 0, :w.numel()] = w
        labels_mask[b, :FRAMES[b]] = 1
    recorder = vae_golden.RecordingTorch(vae_golden.DRAW_SEED)
    original = mvt.torch
    mvt.torch = recorder
    try:
        out = model(input_ids=ids, attention_mask=attention, labels=spec, labels_attention_mask=labels_mask,
                    return_dict=True)
    finally:
        mvt.torch = original
    assert [k for k, _ in recorder.draws] == ["randn_like", "randn", "rand"], recorder.draws
    ids_slice = out.ids_slice
    mel_generated = mel_golden.log_mel(out.waveform.squeeze(1), bank, n_fft, hop, n_fft)
    loss_mel = torch.nn.functional.l1_loss(mvt.slice_segments(target_mel, ids_slice, K), mel_generated)
    loss_kl = vae_golden.kl_loss(out.prior_latents, out.posterior_log_variances, out.prior_means,
                                 out.prior_log_variances, out.labels_padding_mask)
    loss_dur = torch.sum(out.log_duration)
    wav_real = mvt.slice_segments(padded_waves, ids_slice * hop, K * hop)
    wav_fake = out.waveform

    # (a) The discriminator step's gradient: c_disc * L_D on sg(fake).
    disc.zero_grad(set_to_none=True)
    real_scores, _ = disc(wav_real)
    fake_scores, _ = disc(wav_fake.detach())
    loss_disc = losses["discriminator_loss"](real_scores, fake_scores)[0]
    (C_DISC * loss_disc).backward()
    tensors = {}
    for name, p in disc.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
        tensors["grad_disc.discriminator." + name] = p.grad.detach().clone()

    # (b) The generator's gradient with the discriminator fixed.
    for p in disc.parameters():
        p.requires_grad_(False)
    _, fmap_real = disc(wav_real)
    gen_scores, fmap_fake = disc(wav_fake)
    loss_adv = losses["generator_loss"](gen_scores)[0]
    loss_fm = losses["feature_loss"](fmap_real, fmap_fake)
    total = (vae_golden.C_MEL * loss_mel + vae_golden.C_KL * loss_kl + vae_golden.C_DUR * loss_dur + C_GEN * loss_adv
             + C_FM * loss_fm)
    model.zero_grad()
    total.backward()
    nonzero = 0
    for name, p in model.named_parameters():
        if name.startswith("discriminator."):
            continue
        assert p.grad is not None, f"{name} got no gradient"
        tensors["grad." + mel_golden.legacy_name(name)] = p.grad.detach().float().contiguous()
        nonzero += int(p.grad.abs().max().item() > 0)

    attn = out.attn[:, 0]
    alignment = torch.full((B, F_max), -1.0)
    for b in range(B):
        alignment[b, :FRAMES[b]] = attn[b, :FRAMES[b]].argmax(-1).float()
    tensors.update({
        "input_ids": ids.float(), "attention_mask": attention.float(), "posterior_noise": recorder.draws[0][1],
        "duration_noise": recorder.draws[1][1], "segment_starts": ids_slice.float(), "alignment": alignment,
        "loss_mel": loss_mel.detach().reshape(1), "loss_kl": loss_kl.detach().reshape(1),
        "loss_dur": loss_dur.detach().reshape(1), "loss_adv": loss_adv.detach().reshape(1),
        "loss_fm": loss_fm.detach().reshape(1), "loss_disc": loss_disc.detach().reshape(1),
        "loss_total": total.detach().reshape(1),
    })
    for b, w in enumerate(waves):
        tensors[f"target_wave_{b}"] = w
    metadata = {
        "anchor": "finetune-hf-vits VitsModelForPreTraining.forward, VitsDiscriminator, run_vits_finetuning.py losses",
        "mel_filterbank": bank_source, "sample_rate": str(config.sampling_rate), "n_fft": str(n_fft), "hop": str(hop),
        "win": str(n_fft), "n_mels": str(vae_golden.N_MELS), "segment_frames": str(K), "c_mel": str(vae_golden.C_MEL),
        "c_kl": str(vae_golden.C_KL), "c_dur": str(vae_golden.C_DUR), "c_gen": str(C_GEN), "c_fm": str(C_FM),
        "c_disc": str(C_DISC), "torch": torch.__version__, "frames": json.dumps(FRAMES),
        "model": os.path.relpath(hf_dir, os.path.join(REPO_ROOT, "tests", "data")),
        "discriminator_config": json.dumps(disc_golden.DISCRIMINATOR_FIELDS),
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "step.safetensors")
    safetensors.torch.save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, path, metadata=metadata)
    mel_golden.sort_safetensors_metadata(path)
    disc_path = os.path.join(out_dir, "discriminator.safetensors")
    safetensors.torch.save_file(disc_golden.legacy_state(disc), disc_path,
                                metadata={"format": "pt", "config": json.dumps(disc_golden.DISCRIMINATOR_FIELDS)})
    mel_golden.sort_safetensors_metadata(disc_path)
    print(f"{path}: mel {loss_mel.item():.6f} kl {loss_kl.item():.6f} dur {loss_dur.item():.6f} adv "
          f"{loss_adv.item():.6f} fm {loss_fm.item():.6f} disc {loss_disc.item():.6f} total {total.item():.6f}; "
          f"{nonzero} non-zero generator gradients; windows {ids_slice.tolist()}")


if __name__ == "__main__":
    main()
