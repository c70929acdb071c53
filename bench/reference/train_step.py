#!/usr/bin/env python3
"""A training objective's step in plain PyTorch on transformers' VitsModel: the reference for bench_train.

--objective mel (default), vae or full: the same step as vitscuda's MelTrainer, VaeTrainer or FullTrainer
(model/train_step.cpp, model/vae_step.cpp, model/full_trainer.cpp; the objective: docs/full_objective.md), at the
same settings as bench_train (bench/train_bench.cpp), in the same order and at the same shapes.

mel (as tools/golden/make_golden_gradients.py, which the C++ step is checked against):
  1. text encoder (with grad) -> hidden, prior means and log-stds
  2. no grad: log-durations from the duration predictor (reverse, noise_scale_duration), w = exp(.) * mask
  3. integer durations: largest-remainder rounding of w so that they sum to the target's frames (host)
  4. expanded prior (one-hot alignment matmul), frame mask
  5. z_p = m + randn * exp(logs) * noise_scale;  6. z = flow(z_p, reverse=True)
  7. whole: x = z * mask; segment: a random K-frame window per item
  8. wave = decoder(x); 9. log-mel (reflect pad (n_fft-hop)/2, torch.stft center=False, periodic Hann,
     sqrt(re^2+im^2+1e-6), Slaney filterbank, log(clamp(., 1e-5)))
 10. masked L1 against the target's log-mel; backward; clip_grad_norm_(1.0); torch.optim.AdamW (lr 2e-4,
     weight decay 0.01 on every trainable tensor, as the C++ trainer)
  Trainable: text_encoder, flow, decoder (and the speaker embedding of a multi-speaker model).

vae (finetune-hf-vits' generator objective without the discriminator; segment settings only):
  1. text encoder -> hidden, m_p, logs_p; 2. no grad: the targets' linear spectrogram (the log-mel's STFT, its
     magnitude), on the device in every step as the C++ step does
  3. posterior_encoder(spectrogram) -> z = m_q + eps * exp(logs_q) (masked); 4. z_p = flow(z) (forward)
  5. no grad: the log-likelihood log N(z_p; m_p, exp(logs_p)) [B, frames, tokens] in the four-term matmul form on
     the device, then the monotonic alignment search (finetune-hf-vits' maximum_path: its tie rule and y != 0
     guard) -> one-hot alignment and durations (frames per token)
  6. duration loss on the detached text encoding: the stochastic duration predictor's training direction
     (transformers' duration_predictor(..., durations=w, reverse=False): nll + logq per item) when the config
     uses it, else the deterministic predictor's squared log-duration error; summed and divided by the tokens
  7. KL between the posterior and the prior expanded through the alignment (matmul), divided by the frames
  8. a random K-frame window of z -> decoder -> log-mel L1 against the target's log-mel window
  9. loss = 35 mel + 1.5 kl + 1 dur; backward; clip_grad_norm_(1.0); AdamW (betas 0.9, 0.999, as the C++)
  Trainable: every generator parameter (posterior encoder and duration predictor included).
full (vae plus the VITS discriminator, as FullTrainer::step with no discriminator warm-up, as bench_train runs it):
  1. the vae forward (1-8 above), kept for the generator's backward
  2. D step: D's gradients zeroed, D(real window), D(sg(fake window)), LSGAN loss * 3, backward, clip 1.0, AdamW
  3. G step against the updated D: D(real) without grad (feature maps), D(fake); loss = the vae terms + adversarial
     + feature matching (2 * sum of mean |fmap_r - fmap_g|), backward, clip 1.0, AdamW; both AdamW betas (0.8, 0.99)
  The discriminator (one scale discriminator on the raw waveform, then one period discriminator per period, weight
  norm on every conv, LeakyReLU 0.1) is written here, sized from the config's discriminator_* fields as
  model/discriminator.cpp reads them (finetune-hf-vits' defaults when absent, no scale discriminator when
  discriminator_scale_channels is null), with PyTorch's default conv initialisation: the same parameter count
  as bench_train's; both counts are printed and stored.

Where the alignment search runs: vitscuda runs it on the device (kernels/cuda/alignment_search.cu, one block per
item) and copies only the frame -> token map back. Here, as in finetune-hf-vits (its Cython maximum_path on the
likelihood moved to the CPU), it runs on the host: numpy, vectorised over the batch and token axes with a Python
loop over the frames; the step's time includes the device -> host copy of the likelihood and that loop, and each
setting reports the median of that part alone (median_mas_s).

Known differences that do not change what is timed: transformers' stochastic duration predictor flips the
channels after its ElementwiseAffine flows in the training direction, finetune-hf-vits and original VITS (and
vitscuda) do not (docs/vits_facts.md): the loss value differs, the work is the same. The random draws (posterior
noise, duration noise, window starts, weights) are torch's, not the engine's Philox stream.

Modules in eval mode (no dropout or layerdrop: the C++ step has none), autograd on. "recompute" settings wrap each
HiFi-GAN residual block in torch.utils.checkpoint (use_reentrant=False), as recompute_decoder does in the C++ step.

Same model shapes (random weights from transformers' own initialisation, or --model DIR), same synthetic
targets (the generator of `vitscuda selftest`), same token sequence (the sentence cycled to --tokens-per-second
tokens per second), same batch shapes, same allocator budget (torch.cuda.set_per_process_memory_fraction), and
the targets' log-mels computed once before timing, as bench_train does. fp32 eager, TF32 off for matmul and
cuDNN, set explicitly and printed. Each timed step ends with torch.cuda.synchronize(); wall clock, median.
An out-of-memory error is a result: recorded, and the next setting runs.

vae and full decode windows only: they run the segment settings (b16_seg32_*), and a --setting that selects only
whole-utterance settings is refused (bench_train accepts those and records the step's error, "segment_frames must
be > 0", for each). Without --setting they run every segment setting.

Exit status: 0 every selected setting ran or ran out of memory, 1 an error, 2 bad arguments (a --setting that
names none of the settings, or only whole-utterance ones for vae and full),
77 --device cuda without a usable device (skipped).
"""
import argparse
import gc
import json
import math
import os
import statistics
import sys
import time

EXIT_SKIPPED = 77
DEFAULT_TEXT = "The birch canoe slid on the smooth planks, and the boy glued the sheet to the dark blue background."
MAGNITUDE_EPS = 1e-6
LOG_CLAMP = 1e-5
OBJECTIVES = ("mel", "vae", "full")
# The loss weights (vitscuda's TrainStepOptions defaults = finetune-hf-vits' weight_mel, weight_kl, ...).
C_MEL, C_KL, C_DUR, C_GEN, C_FM, C_DISC = 35.0, 1.5, 1.0, 1.0, 1.0, 3.0
# The full objective's AdamW betas for both optimisers (finetune-hf-vits' configs; FullTrainer's with_full_betas).
FULL_BETAS = (0.8, 0.99)
OBJECTIVE_LOSSES = {
    "mel": "mel = log-mel L1 of the decoded prior sample (durations from the frozen duration predictor)",
    "vae": f"{C_MEL:g} mel + {C_KL:g} kl + {C_DUR:g} dur (mel: log-mel L1 of the window)",
    "full": f"{C_MEL:g} mel + {C_KL:g} kl + {C_DUR:g} dur + {C_GEN:g} gen + {C_FM:g} fm; "
            f"discriminator {C_DISC:g} disc; AdamW betas {FULL_BETAS} for both",
}


def parse_bytes(text):
    """'7.5G', '512M', '8GB', '1024' -> bytes; '0' or 'none' -> 0 (as vitscuda's parse_memory_size)."""
    t = text.strip().upper()
    if t in ("0", "NONE"):
        return 0
    units = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
             "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}
    i = 0
    while i < len(t) and (t[i].isdigit() or t[i] == "."):
        i += 1
    if i == 0 or t[i:] not in units:
        raise ValueError(f"memory size '{text}': expected a number with an optional unit (K, M, G), e.g. 7.5G")
    return int(float(t[:i]) * units[t[i:]])


def fmt_bytes(n):
    if n is None:
        return "-"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n} bytes"


def first_line(e):
    """An exception's first line (its repr when the message is empty)."""
    return (str(e).splitlines() or [repr(e)])[0]


def adam_impl(opt):
    d = opt.defaults
    if d.get("fused"):
        return "fused"
    if d.get("foreach") is True:
        return "foreach"
    if d.get("foreach") is False:
        return "single-tensor"
    return "torch's default (foreach on CUDA, single-tensor on the CPU)"


def setting_name(batch, segment_frames, recompute, seconds):
    """bench_train's names (compare_training.py joins the two result files on them)."""
    shape = f"seg{segment_frames}" if segment_frames > 0 else "whole"
    return f"b{batch}_{shape}_{seconds:g}s" + ("_recompute" if recompute else "")


# ----------------------------------------------------------------------------------------------------------------
# Data and log-mel (numpy / torch only)


def synthetic_speech(sample_rate, seconds, seed):
    """vitscuda selftest's target generator (harmonics of a gliding f0 under a syllable envelope, a little noise);
    the noise comes from numpy rather than the engine's Philox stream, which changes nothing that is timed."""
    import numpy as np

    n = int(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = np.cumsum(2 * np.pi * f0 / sample_rate)
    s = sum(np.sin(h * phase) / h for h in range(1, 13))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    noise = np.random.default_rng(seed).uniform(size=n) - 0.5
    return (0.15 * envelope * s + 0.003 * noise).astype(np.float32)


def slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin=0.0, fmax=None):
    """librosa.filters.mel(htk=False, norm='slaney', dtype=float32), written out in numpy: triangles on the Slaney
    mel scale (linear below 1 kHz, logarithmic above), rounded to float32, then scaled by 2 / (f[i+2] - f[i])."""
    import numpy as np

    fmax = sample_rate / 2.0 if fmax is None else fmax
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f):
        return min_log_mel + math.log(f / min_log_hz) / logstep if f >= min_log_hz else f / f_sp

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


class LogMel:
    """log(clamp(fb @ sqrt(|stft(reflect_pad(wave))|^2 + 1e-6), 1e-5)) for wave [B, S] (VITS' mel_spectrogram_torch)."""

    def __init__(self, torch, sample_rate, n_fft, hop, win, n_mels, device):
        self.torch, self.n_fft, self.hop, self.win = torch, n_fft, hop, win
        self.pad = (n_fft - hop) // 2
        self.bank = torch.from_numpy(slaney_mel_filterbank(sample_rate, n_fft, n_mels)).to(device)
        self.window = torch.hann_window(win, periodic=True, dtype=torch.float32, device=device)

    def frames(self, samples):
        return (samples + 2 * self.pad - self.n_fft) // self.hop + 1

    def magnitude(self, wave):
        """The linear spectrogram [B, n_fft/2 + 1, frames]: the posterior encoder's input (the feature extractor's)."""
        torch = self.torch
        padded = torch.nn.functional.pad(wave.unsqueeze(1), (self.pad, self.pad), mode="reflect").squeeze(1)
        spec = torch.stft(padded, self.n_fft, hop_length=self.hop, win_length=self.win, window=self.window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAGNITUDE_EPS)

    def __call__(self, wave):
        torch = self.torch
        return torch.log(torch.clamp(torch.matmul(self.bank, self.magnitude(wave)), min=LOG_CLAMP))


def largest_remainder(weights, frames):
    """Integer durations summing to frames, proportional to weights (float64, ties to the lower index): the
    rounding of the C++ step and of make_golden_gradients.py."""
    total = sum(weights)
    count = len(weights)
    scaled = [w * frames / total for w in weights] if total > 0 else [frames / count] * count
    floors = [math.floor(q) for q in scaled]
    remaining = frames - sum(floors)
    order = sorted(range(count), key=lambda i: (-(scaled[i] - floors[i]), i))
    for i in order[:remaining]:
        floors[i] += 1
    return floors


# ----------------------------------------------------------------------------------------------------------------
# The step


class MelStep:
    def __init__(self, torch, model, logmel, args, device):
        self.torch, self.model, self.logmel, self.args, self.device = torch, model, logmel, args, device
        c = model.config
        self.sdp = c.use_stochastic_duration_prediction
        self.noise_scale = c.noise_scale
        self.noise_scale_duration = c.noise_scale_duration
        self.speaker = None
        self.hop = math.prod(c.upsample_rates)
        self.generator = torch.Generator(device="cpu").manual_seed(args.seed)

    def __call__(self, batch, segment_frames):
        """Forward on the tape; returns the loss (read on the host before the backward, as MelTrainer::step does)."""
        torch, model = self.torch, self.model
        ids, attention_mask, frames = batch["ids"], batch["attention_mask"], batch["frames"]
        B = ids.shape[0]
        f_max = max(frames)
        encoded = model.text_encoder(input_ids=ids, padding_mask=attention_mask.unsqueeze(-1).float(),
                                     attention_mask=attention_mask, return_dict=True)
        input_mask = attention_mask.unsqueeze(1).float()  # [B,1,T]
        speaker = None
        if model.config.num_speakers > 1:
            speaker = model.embed_speaker(torch.zeros(B, dtype=torch.long, device=self.device)).unsqueeze(-1)
        with torch.no_grad():
            hidden = encoded.last_hidden_state.transpose(1, 2).detach()
            if self.sdp:
                log_duration = model.duration_predictor(hidden, input_mask, speaker.detach() if speaker is not None
                                                        else None, reverse=True,
                                                        noise_scale=self.noise_scale_duration)
            else:
                log_duration = model.duration_predictor(hidden, input_mask, speaker)
            w = (torch.exp(log_duration) * input_mask).cpu()
        tokens = attention_mask.sum(1).tolist()
        durations = torch.zeros(B, 1, ids.shape[1])
        for b in range(B):
            weights = w[b, 0, : tokens[b]].double().tolist()
            durations[b, 0, : tokens[b]] = torch.tensor(largest_remainder(weights, frames[b]), dtype=torch.float32)
        durations = durations.to(self.device)
        ends = torch.cumsum(durations[:, 0, :], -1)
        starts = ends - durations[:, 0, :]
        frame = torch.arange(f_max, device=self.device, dtype=torch.float32).view(1, -1, 1)
        align = ((frame >= starts.unsqueeze(1)) & (frame < ends.unsqueeze(1))).float()  # [B,F,T]
        means = torch.matmul(align, encoded.prior_means).transpose(1, 2)
        log_std = torch.matmul(align, encoded.prior_log_variances).transpose(1, 2)
        frame_mask = (torch.arange(f_max, device=self.device).view(1, 1, -1)
                      < torch.tensor(frames, device=self.device).view(-1, 1, 1)).float()
        prior = means + torch.randn_like(means) * torch.exp(log_std) * self.noise_scale
        latents = model.flow(prior, frame_mask, speaker, reverse=True)
        target_full = batch["target_logmel"]
        if segment_frames == 0:
            x, mel_mask, target = latents * frame_mask, frame_mask, target_full
        else:
            k = min(segment_frames, min(frames))
            seg_starts = [int(torch.randint(0, frames[b] - k + 1, (1,), generator=self.generator)) for b in range(B)]
            x = torch.stack([latents[b, :, s:s + k] for b, s in enumerate(seg_starts)])
            target = torch.stack([target_full[b, :, s:s + k] for b, s in enumerate(seg_starts)])
            mel_mask = torch.ones(B, 1, k, device=self.device)
        wave = model.decoder(x, speaker)
        generated = self.logmel(wave[:, 0, :])
        n_mels = generated.shape[1]
        return torch.sum(torch.abs(generated - target) * mel_mask) / (n_mels * torch.sum(mel_mask))


def monotonic_alignment_search(value, frames, tokens):
    """finetune-hf-vits' maximum_path (monotonic_align/core.pyx, with its y != 0 guard; ties keep the current token)
    on value [B, F, T] (frames x tokens, float32 numpy), item b on its first frames[b] x tokens[b] corner. Vectorised
    over the batch and token axes, a Python loop over the frames; float32 additions as the Cython code makes them.
    Returns the one-hot alignment path [B, F, T] (float32; 0 outside each item's corner)."""
    import numpy as np

    B, F, T = value.shape
    q = value.astype(np.float32, copy=True)
    neg = np.float32(-1e9)
    x = np.arange(T)[None, :]
    ty = np.asarray(frames, dtype=np.int64)[:, None]
    tx = np.asarray(tokens, dtype=np.int64)[:, None]
    for y in range(F):
        band = (x >= np.maximum(0, tx + y - ty)) & (x < np.minimum(tx, y + 1)) & (y < ty)  # [B, T]
        if y == 0:
            best = np.where(x == 0, np.float32(0), neg)  # stay is -1e9 at x == y == 0; adv is 0
        else:
            prev = q[:, y - 1, :]
            stay = np.where(x == y, neg, prev)
            adv = np.concatenate([np.full((B, 1), neg, dtype=np.float32), prev[:, :-1]], axis=1)
            best = np.maximum(adv, stay)
        q[:, y, :] = np.where(band, q[:, y, :] + best, q[:, y, :])
    path = np.zeros((B, F, T), dtype=np.float32)
    rows = np.arange(B)
    index = tx[:, 0] - 1
    for y in range(F - 1, -1, -1):
        active = y < ty[:, 0]
        path[rows[active], y, index[active]] = 1
        if y > 0:
            prev = q[:, y - 1, :]
            down = (index == y) | (prev[rows, index] < prev[rows, np.maximum(index - 1, 0)])
            index = index - (active & (index != 0) & down)
    return path


class VaeStep:
    """The vae objective's forward (model/vae_step.cpp's order); returns the loss terms, the decoded windows and
    the targets' waveform windows (the full objective's real input to the discriminator)."""

    def __init__(self, torch, model, logmel, args, device):
        self.torch, self.model, self.logmel, self.args, self.device = torch, model, logmel, args, device
        self.sdp = model.config.use_stochastic_duration_prediction
        self.hop = math.prod(model.config.upsample_rates)
        self.generator = torch.Generator(device="cpu").manual_seed(args.seed)
        self.mas_seconds = []  # host alignment search per step, device -> host copy of the likelihood included

    def __call__(self, batch, segment_frames):
        torch, model = self.torch, self.model
        ids, attention_mask, frames = batch["ids"], batch["attention_mask"], batch["frames"]
        B, T, F = ids.shape[0], ids.shape[1], max(frames)
        K = segment_frames
        tokens = attention_mask.sum(1).tolist()
        input_mask = attention_mask.unsqueeze(1).float()  # [B,1,T]
        frame_mask = (torch.arange(F, device=self.device).view(1, 1, -1)
                      < torch.tensor(frames, device=self.device).view(-1, 1, 1)).float()  # [B,1,F]
        encoded = model.text_encoder(input_ids=ids, padding_mask=attention_mask.unsqueeze(-1).float(),
                                     attention_mask=attention_mask, return_dict=True)
        hidden = encoded.last_hidden_state.transpose(1, 2)  # [B,H,T]
        prior_means = encoded.prior_means.transpose(1, 2)  # [B,C,T]
        prior_log_std = encoded.prior_log_variances.transpose(1, 2)  # log-std (docs/vits_facts.md)
        speaker = None
        if model.config.num_speakers > 1:
            speaker = model.embed_speaker(torch.zeros(B, dtype=torch.long, device=self.device)).unsqueeze(-1)

        with torch.no_grad():
            spectrogram = self.logmel.magnitude(batch["wave"]) * frame_mask  # [B, bins, F]
        latents, _, posterior_log_std = model.posterior_encoder(spectrogram, frame_mask, speaker)
        prior_latents = model.flow(latents, frame_mask, speaker, reverse=False)

        with torch.no_grad():
            # log N(z_p[f]; m_p[t], exp(logs_p[t])) summed over channels, [B, F, T] (MVT's four terms).
            inv_var = torch.exp(-2 * prior_log_std)
            z = prior_latents.detach()
            likelihood = (torch.sum(-0.5 * math.log(2 * math.pi) - prior_log_std, 1, keepdim=True)
                          + torch.matmul((-0.5 * z * z).transpose(1, 2), inv_var)
                          + torch.matmul(z.transpose(1, 2), prior_means * inv_var)
                          + torch.sum(-0.5 * prior_means * prior_means * inv_var, 1, keepdim=True))
            if likelihood.is_cuda:  # the copy below waits for the forward anyway; this keeps it out of mas_seconds
                torch.cuda.synchronize(likelihood.device)
            t0 = time.perf_counter()
            path = monotonic_alignment_search(likelihood.float().cpu().numpy(), frames, tokens)
            alignment = torch.from_numpy(path).to(self.device)  # [B, F, T], one-hot per valid frame
            self.mas_seconds.append(time.perf_counter() - t0)  # copy out, search, copy back
            durations = alignment.sum(1).unsqueeze(1)  # [B, 1, T]

        if self.sdp:
            per_item = model.duration_predictor(hidden.detach(), input_mask,
                                                speaker.detach() if speaker is not None else None,
                                                durations=durations, reverse=False)
            duration_loss = torch.sum(per_item) / torch.sum(input_mask)
        else:
            log_duration = model.duration_predictor(hidden.detach(), input_mask, speaker)
            target = torch.log(durations + 1e-6) * input_mask
            duration_loss = torch.sum((log_duration - target) ** 2 * input_mask) / torch.sum(input_mask)

        expanded_means = torch.matmul(alignment, prior_means.transpose(1, 2)).transpose(1, 2)  # [B,C,F]
        expanded_log_std = torch.matmul(alignment, prior_log_std.transpose(1, 2)).transpose(1, 2)
        kl = (expanded_log_std - posterior_log_std - 0.5
              + 0.5 * (prior_latents - expanded_means) ** 2 * torch.exp(-2 * expanded_log_std))
        kl_loss = torch.sum(kl * frame_mask) / torch.sum(frame_mask)

        starts = [int(torch.randint(0, frames[b] - K + 1, (1,), generator=self.generator)) for b in range(B)]
        window = torch.stack([latents[b, :, s:s + K] for b, s in enumerate(starts)])
        target = torch.stack([batch["target_logmel"][b, :, s:s + K] for b, s in enumerate(starts)])
        real = torch.stack([batch["wave"][b, s * self.hop:(s + K) * self.hop] for b, s in enumerate(starts)])
        wave = model.decoder(window, speaker)  # [B, 1, K * hop]
        mel_loss = torch.mean(torch.abs(self.logmel(wave[:, 0, :]) - target))
        total = C_MEL * mel_loss + C_KL * kl_loss + C_DUR * duration_loss
        return dict(total=total, mel=mel_loss, kl=kl_loss, dur=duration_loss, fake=wave, real=real.unsqueeze(1))


def build_discriminator(torch, config):
    """The VITS discriminator (finetune-hf-vits' VitsDiscriminator; model/discriminator.cpp): one scale discriminator
    on the raw waveform when discriminator_scale_channels is not null, then one period discriminator per period.
    Every conv weight-normed (dim 0: weight_g and weight_v, as vitscuda trains them). forward(wave [B, 1, N]) ->
    (scores: per sub-discriminator [B, n_k]; feature maps: per sub-discriminator, every conv's output after the
    LeakyReLU, then the final conv's output)."""
    nn = torch.nn
    weight_norm = torch.nn.utils.parametrizations.weight_norm
    field = lambda name, default: getattr(config, name, default)  # noqa: E731 (absent: finetune-hf-vits' default)
    kernel, stride = field("discriminator_kernel_size", 5), field("discriminator_stride", 3)
    periods = field("discriminator_periods", [2, 3, 5, 7, 11])
    period_channels = field("discriminator_period_channels", [1, 32, 128, 512, 1024])
    scale_channels = field("discriminator_scale_channels", [1, 16, 64, 256, 1024])  # None: no scale discriminator
    slope = config.leaky_relu_slope

    def conv_stack(convs, final_conv, x):
        """A sub-discriminator's convs (leaky ReLU after each) and final conv: its flat scores and feature maps."""
        fmaps = []
        for conv in convs:
            x = nn.functional.leaky_relu(conv(x), slope)
            fmaps.append(x)
        x = final_conv(x)
        fmaps.append(x)
        return torch.flatten(x, 1, -1), fmaps

    class Scale(nn.Module):
        def __init__(self, ch):
            super().__init__()
            n, last = len(ch), ch[-1]
            convs = [nn.Conv1d(ch[0], ch[1], 15, 1, padding=7)]
            convs += [nn.Conv1d(ch[j], ch[j + 1], 41, 4, groups=4**j, padding=20) for j in range(1, n - 1)]
            convs += [nn.Conv1d(last, last, 41, 4, groups=4 ** (n - 1), padding=20),
                      nn.Conv1d(last, last, 5, 1, padding=2)]
            self.convs = nn.ModuleList(weight_norm(c) for c in convs)
            self.final_conv = weight_norm(nn.Conv1d(last, 1, 3, 1, padding=1))

        def forward(self, x):
            return conv_stack(self.convs, self.final_conv, x)

    class Period(nn.Module):
        def __init__(self, period, ch):
            super().__init__()
            self.period, pad, last = period, (kernel - 1) // 2, ch[-1]
            convs = [nn.Conv2d(ch[j], ch[j + 1], (kernel, 1), (stride, 1), padding=(pad, 0))
                     for j in range(len(ch) - 1)]
            convs.append(nn.Conv2d(last, last, (kernel, 1), 1, padding=(pad, 0)))
            self.convs = nn.ModuleList(weight_norm(c) for c in convs)
            self.final_conv = weight_norm(nn.Conv2d(last, 1, (3, 1), 1, padding=(1, 0)))

        def forward(self, x):
            B, C, N = x.shape
            if N % self.period:
                x = nn.functional.pad(x, (0, self.period - N % self.period), "reflect")
            x = x.view(B, C, -1, self.period)
            return conv_stack(self.convs, self.final_conv, x)

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            subs = [Scale(scale_channels)] if scale_channels else []
            self.discriminators = nn.ModuleList(subs + [Period(p, period_channels) for p in periods])

        def forward(self, wave):
            outputs = [d(wave) for d in self.discriminators]
            return [o[0] for o in outputs], [o[1] for o in outputs]

    return Discriminator()


def discriminator_loss(torch, real_scores, fake_scores):
    """L_D = sum_k mean((1 - D_k(real))^2) + mean(D_k(fake)^2)."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f ** 2) for r, f in zip(real_scores, fake_scores))


def generator_adversarial_loss(torch, fake_scores):
    """L_adv = sum_k mean((1 - D_k(fake))^2)."""
    return sum(torch.mean((1 - f) ** 2) for f in fake_scores)


def feature_matching_loss(torch, real_maps, fake_maps):
    """L_fm = 2 * sum_k sum_l mean(|sg(fmap_real) - fmap_fake|)."""
    return 2 * sum(torch.mean(torch.abs(r.detach() - f))
                   for rs, fs in zip(real_maps, fake_maps) for r, f in zip(rs, fs))


def set_decoder_recompute(torch, decoder, on):
    """Wraps (or unwraps) every HiFi-GAN residual block's forward in activation checkpointing: only the block's
    input is kept, its inside is recomputed in the backward (the C++ recompute_decoder)."""
    import torch.utils.checkpoint as checkpoint

    for block in decoder.resblocks:
        if on and "forward" not in block.__dict__:
            original = block.forward

            def wrapped(*inputs, _original=original, **kwargs):
                return checkpoint.checkpoint(_original, *inputs, use_reentrant=False, **kwargs)

            block.forward = wrapped
        elif not on and "forward" in block.__dict__:
            del block.forward


def make_optimizer(torch, params, args, betas=(0.9, 0.999)):
    kwargs = dict(lr=args.lr, betas=betas, eps=1e-8, weight_decay=0.01)
    if args.adam == "foreach":
        kwargs["foreach"] = True
    elif args.adam == "fused":
        kwargs["fused"] = True
    elif args.adam == "single":
        kwargs["foreach"] = False
    return torch.optim.AdamW(params, **kwargs)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", default="tests/data/mms_tts_eng/config.json",
                     help="HF config.json: random weights from transformers' initialisation (default: mms-tts-eng's)")
    src.add_argument("--model", help="or an HF VitsModel directory (its weights)")
    p.add_argument("--tokenizer", help="directory with vocab.json (default: the config's or the model's)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--objective", default="mel", choices=OBJECTIVES,
                   help="the step timed: mel (default), vae or full (segment settings only), as bench_train's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=10.0, help="length of every utterance (default 10)")
    p.add_argument("--tokens-per-second", type=float, default=15.0)
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, help="timed steps per setting (default 10; --quick: 3)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--budget", default="7.5G", help="allocator cap, e.g. 7.5G; 0 for none (CUDA; default 7.5G)")
    p.add_argument("--adam", default="default", choices=["default", "foreach", "fused", "single"],
                   help="torch.optim.AdamW implementation (default: torch's choice, foreach on CUDA)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--setting", action="append", default=[],
                   help="run only settings whose name contains this (repeatable; adamw and logmel are names too)")
    p.add_argument("--exact", action="store_true", help="--setting gives whole names (b4_whole_2s: not its _recompute)")
    p.add_argument("--quick", action="store_true", help="3 timed steps, fewer AdamW and log-mel repetitions")
    p.add_argument("--list", action="store_true", help="print the setting names and exit")
    p.add_argument("--json", help="write the results as JSON to this file")
    args = p.parse_args()
    steps = args.steps if args.steps is not None else (3 if args.quick else 10)
    adam_reps, logmel_reps = (20, 5) if args.quick else (50, 10)
    if steps < 1 or args.warmup < 0 or not args.seconds > 0 or not args.tokens_per_second > 0:
        print("error: --steps must be >= 1, --warmup >= 0, --seconds and --tokens-per-second > 0", file=sys.stderr)
        return 2
    try:
        budget = parse_bytes(args.budget)
    except ValueError as e:
        print(f"error: --budget: {e}", file=sys.stderr)
        return 2

    settings = [(setting_name(b, k, rc, args.seconds), b, k, rc) for b, k in ((4, 0), (16, 32)) for rc in (False, True)]
    names = [s[0] for s in settings] + ["adamw", "logmel"]
    # vae and full decode a random window per item: the whole-utterance settings are not theirs.
    whole = [s[0] for s in settings if s[2] == 0] if args.objective != "mel" else []
    runnable = [n for n in names if n not in whole]
    if args.list:
        print("\n".join(runnable))
        return 0

    def matches(pattern, name):
        return pattern == name if args.exact else pattern in name

    def selected(name):
        return name in runnable and (not args.setting or any(matches(s, name) for s in args.setting))

    # A typo must not silently run nothing (bench_train refuses the same way).
    unknown = [s for s in args.setting if not any(matches(s, n) for n in names)]
    for s in unknown:
        print(f"error: --setting '{s}' matches none of the names this program runs: {', '.join(names)}", file=sys.stderr)
    only_whole = [s for s in args.setting if s not in unknown and not any(matches(s, n) for n in runnable)]
    for s in only_whole:
        print(f"error: --setting '{s}' selects only whole-utterance settings, and --objective {args.objective} decodes "
              f"a random window per item (segment settings only): choose among {', '.join(runnable)}", file=sys.stderr)
    if unknown or only_whole:
        return 2

    try:
        import numpy as np
        import torch
        import transformers
        from transformers import VitsConfig, VitsModel, VitsTokenizer
    except ImportError as e:
        print(f"error: train_step.py needs numpy, torch and transformers: {e}", file=sys.stderr)
        return 1

    if args.device == "cuda" and not torch.cuda.is_available():
        print("train_step.py: skipped: --device cuda but torch sees no CUDA device")
        return EXIT_SKIPPED
    # Full fp32 arithmetic, as vitscuda's kernels do (no TF32 anywhere).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = torch.device(args.device)
    cuda = args.device == "cuda"
    torch.manual_seed(args.seed)

    device_info = {"name": "cpu"}
    if cuda:
        props = torch.cuda.get_device_properties(device)
        device_info = {"name": props.name, "total_memory_bytes": props.total_memory,
                       "compute_capability": f"{props.major}.{props.minor}",
                       "multiprocessors": props.multi_processor_count}
        clock_khz, bus = getattr(props, "memory_clock_rate", None), getattr(props, "memory_bus_width", None)
        if clock_khz and bus:  # the same formula as vitscuda's device_info(): clock x 2 (DDR) x bus width / 8
            device_info["peak_bandwidth_gbs"] = clock_khz * 1e3 * 2 * bus / 8 / 1e9
        if budget:
            # The caching allocator's cap, as vitscuda's budget caps its reserved bytes.
            torch.cuda.set_per_process_memory_fraction(min(1.0, budget / props.total_memory), device)

    if args.model:
        model = VitsModel.from_pretrained(args.model)
        source, tok_dir = args.model, args.tokenizer or args.model
    else:
        model = VitsModel(VitsConfig.from_json_file(args.config))
        source = f"{args.config} (random weights, transformers' initialisation, seed {args.seed})"
        tok_dir = args.tokenizer or (os.path.dirname(args.config) or ".")
    model = model.float().to(device).eval()  # eval: no dropout or layerdrop; autograd stays on
    config = model.config
    trainable_prefixes = ("text_encoder.", "flow.", "decoder.", "embed_speaker.")
    if args.objective != "mel":  # every generator parameter (vitscuda's trainable_in_vae_mode)
        trainable_prefixes += ("duration_predictor.", "posterior_encoder.")
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(trainable_prefixes))
        if param.requires_grad:
            trainable.append(param)
    initial_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    disc = disc_params = initial_disc_state = None
    if args.objective == "full":
        disc = build_discriminator(torch, model.config).to(device)  # seeded by torch.manual_seed(args.seed) above
        disc_params = list(disc.parameters())
        initial_disc_state = {k: v.detach().clone().cpu() for k, v in disc.state_dict().items()}
    tokenizer = VitsTokenizer.from_pretrained(tok_dir)

    words = args.text.split()
    if not words:
        print("error: --text is empty", file=sys.stderr)
        return 2
    i = 0
    while True:
        text = " ".join(words[j % len(words)] for j in range(i + 1))
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        if ids.shape[1] >= args.seconds * args.tokens_per_second:
            break
        i += 1
        if i > 100000:
            print(f"error: --text gives too few tokens for {args.seconds} s", file=sys.stderr)
            return 2
    tokens = ids.shape[1]

    sample_rate = config.sampling_rate
    n_fft = 2 * (config.spectrogram_bins - 1)
    hop = math.prod(config.upsample_rates)
    n_mels = min(80, max(1, config.spectrogram_bins // 4))  # vitscuda's mel_config_for
    logmel = LogMel(torch, sample_rate, n_fft, hop, n_fft, n_mels, device)
    step = (MelStep if args.objective == "mel" else VaeStep)(torch, model, logmel, args, device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def used_bytes():
        if not cuda:
            return None
        free, total = torch.cuda.mem_get_info(device)
        return total - free

    def make_batch(batch_size):
        waves = [synthetic_speech(sample_rate, args.seconds, args.seed + 1000 + b) for b in range(batch_size)]
        frames = [len(w) // hop for w in waves]
        with torch.no_grad():
            targets = [logmel(torch.from_numpy(w[: f * hop]).to(device).unsqueeze(0))[0] for w, f in zip(waves, frames)]
        target = torch.zeros(batch_size, n_mels, max(frames), device=device)
        for b, t in enumerate(targets):
            target[b, :, : t.shape[1]] = t
        batch = dict(ids=ids.repeat(batch_size, 1).to(device), attention_mask=torch.ones(batch_size, tokens,
                                                                                           dtype=torch.long,
                                                                                           device=device),
                     frames=frames, target_logmel=target, waves=waves)
        if args.objective != "mel":  # the posterior's spectrogram and the real windows come from the waveforms
            if len(set(frames)) != 1:
                raise ValueError("the vae step here stacks the waveforms: every utterance must have the same frames")
            batch["wave"] = torch.from_numpy(np.stack([w[: f * hop] for w, f in zip(waves, frames)])).to(device)
        return batch

    generator_count = sum(p.numel() for p in model.parameters())
    disc_count = sum(p.numel() for p in disc_params) if disc is not None else 0
    print(f"train_step.py: transformers {transformers.__version__}, torch {torch.__version__}, {source} on "
          f"{args.device} ({device_info['name']}), {generator_count} parameters"
          + (f" + discriminator {disc_count} ({len(disc.discriminators)} sub-discriminators)" if disc is not None
             else ""))
    print(f"objective {args.objective}: {OBJECTIVE_LOSSES[args.objective]}; "
          f"{sum(p.numel() for p in trainable)} trainable generator parameters")
    print(f"fp32 eager; torch.backends.cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
          f"torch.backends.cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"cudnn.benchmark={torch.backends.cudnn.benchmark}; budget {fmt_bytes(budget) if budget and cuda else 'none'}; "
          f"{tokens} tokens per {args.seconds:g} s utterance; {args.warmup} warm-up + {steps} timed steps per setting")
    sys.stdout.flush()

    results = []
    failed = False
    for name, batch_size, segment_frames, recompute in settings:
        if not selected(name):
            continue
        print(f"-- {name} ...", end="", flush=True)
        t_setting = time.perf_counter()
        r = dict(name=name, batch=batch_size, segment_frames=segment_frames, recompute_decoder=recompute,
                 tokens=tokens, status="not run", error="")
        model.load_state_dict(initial_state)
        set_decoder_recompute(torch, model.decoder, recompute)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        opt = disc_opt = None
        batch = None
        try:
            batch = make_batch(batch_size)
            r["frames"] = batch["frames"][0]
            r["decoded_frames"] = min(segment_frames, min(batch["frames"])) if segment_frames else batch["frames"][0]
            r["decoded_audio_seconds_per_step"] = batch_size * r["decoded_frames"] * hop / sample_rate
            opt = make_optimizer(torch, trainable, args, FULL_BETAS if args.objective == "full" else (0.9, 0.999))
            r["adam_impl"] = adam_impl(opt)
            if disc is not None:
                disc.load_state_dict(initial_disc_state)
                disc_opt = make_optimizer(torch, disc_params, args, FULL_BETAS)
            step_terms = []  # per step: the unweighted loss terms, read as the C++ trainers read them

            def mel_step():
                opt.zero_grad(set_to_none=True)
                loss = step(batch, segment_frames)
                value = loss.item()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                opt.step()
                return value

            def vae_step():
                opt.zero_grad(set_to_none=True)
                out = step(batch, segment_frames)
                values = torch.stack([out["total"], out["mel"], out["kl"], out["dur"]]).tolist()
                step_terms.append(dict(zip(("mel", "kl", "dur"), values[1:])))
                out["total"].backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                opt.step()
                return values[0]

            def full_step():
                out = step(batch, segment_frames)  # the generator's forward, kept for its backward below
                # D step: its gradients zeroed first (they also hold the last G backward's contribution).
                disc_opt.zero_grad(set_to_none=True)
                real_scores, _ = disc(out["real"])
                fake_scores, _ = disc(out["fake"].detach())
                disc_loss = discriminator_loss(torch, real_scores, fake_scores)
                disc_value = disc_loss.item()
                (C_DISC * disc_loss).backward()
                torch.nn.utils.clip_grad_norm_(disc_params, 1.0)
                disc_opt.step()
                # G step against the updated discriminator.
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    _, real_maps = disc(out["real"])
                fake_scores, fake_maps = disc(out["fake"])
                adversarial = generator_adversarial_loss(torch, fake_scores)
                matching = feature_matching_loss(torch, real_maps, fake_maps)
                total = out["total"] + C_GEN * adversarial + C_FM * matching
                values = torch.stack([total, out["mel"], out["kl"], out["dur"], adversarial, matching]).tolist()
                step_terms.append(dict(zip(("mel", "kl", "dur", "gen", "fm"), values[1:]), disc=disc_value))
                total.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                opt.step()
                return values[0]

            one_step = dict(mel=mel_step, vae=vae_step, full=full_step)[args.objective]

            warm_used = 0
            for _ in range(args.warmup):
                one_step()
                sync()
                warm_used = max(warm_used, used_bytes() or 0)
            if cuda:
                r["warmup_peak_live_bytes"] = torch.cuda.max_memory_allocated(device)
                r["warmup_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
                r["warmup_device_used_bytes"] = warm_used
                torch.cuda.reset_peak_memory_stats(device)
            walls, losses, used_max = [], [], 0
            step_terms.clear()
            if args.objective != "mel":
                step.mas_seconds.clear()
            for _ in range(steps):
                sync()
                t0 = time.perf_counter()
                losses.append(one_step())
                sync()
                walls.append(time.perf_counter() - t0)
                used_max = max(used_max, used_bytes() or 0)
            med = statistics.median(walls)
            r.update(status="ok" if all(math.isfinite(v) for v in losses) else "non_finite", step_seconds=walls,
                     median_step_s=med, min_step_s=min(walls), samples_per_s=batch_size / med,
                     decoded_audio_s_per_s=r["decoded_audio_seconds_per_step"] / med, losses=losses)
            if args.objective != "mel":
                r.update(loss_terms=step_terms, median_mas_s=statistics.median(step.mas_seconds))
            if cuda:
                r.update(peak_live_bytes=torch.cuda.max_memory_allocated(device),
                         peak_reserved_bytes=torch.cuda.max_memory_reserved(device), device_used_max_bytes=used_max)
        except torch.cuda.OutOfMemoryError as e:
            r.update(status="out_of_memory", error=first_line(e))
        except RuntimeError as e:  # cuDNN and cuFFT report their allocation failures as RuntimeError
            message = first_line(e)
            r.update(status="out_of_memory" if "out of memory" in message.lower() or "ALLOC_FAILED" in message
                     else "error", error=message)
        if r["status"] in ("error", "non_finite"):
            failed = True
        print(f" {r['status']} ({time.perf_counter() - t_setting:.1f} s)")
        if r["error"]:
            print(f"   {r['error']}")
        # Free everything this setting held before the next one measures its peaks.
        opt = disc_opt = batch = None
        for param in list(model.parameters()) + (disc_params or []):
            param.grad = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        results.append(r)
    set_decoder_recompute(torch, model.decoder, False)
    model.load_state_dict(initial_state)

    if results:
        print(f"\n{'setting':<26} {'status':<13} {'s/step':>9} {'min s':>9} {'items/s':>8} {'peak alloc':>11} "
              f"{'peak rsrvd':>11} {'dev used':>11}")
        for r in results:
            if "median_step_s" not in r:
                print(f"{r['name']:<26} {r['status']:<13} {'-':>9} {'-':>9} {'-':>8} {'-':>11} {'-':>11} {'-':>11}")
                continue
            print(f"{r['name']:<26} {r['status']:<13} {r['median_step_s']:9.4f} {r['min_step_s']:9.4f} "
                  f"{r['samples_per_s']:8.2f} {fmt_bytes(r.get('peak_live_bytes')):>11} "
                  f"{fmt_bytes(r.get('peak_reserved_bytes')):>11} {fmt_bytes(r.get('device_used_max_bytes')):>11}")
        print("s/step: median wall time of one step + torch.cuda.synchronize(); peak alloc/rsrvd: "
              "torch.cuda.max_memory_allocated/reserved; dev used: mem_get_info high-water after the steps")
        for r in results:
            if r.get("loss_terms"):
                terms = ", ".join(f"{k} {v:.4g}" for k, v in r["loss_terms"][-1].items())
                print(f"{r['name']}: alignment search on the host {1e3 * r['median_mas_s']:.1f} ms per step "
                      f"(median, in s/step); losses {r['losses'][0]:.4g} -> {r['losses'][-1]:.4g}; "
                      f"last step's terms: {terms}")

    adam = None
    if selected("adamw"):
        gc.collect()
        adam = dict(name="adamw")
        try:
            for param in trainable:
                param.grad = torch.zeros_like(param)
            opt = make_optimizer(torch, trainable, args)
            for _ in range(3):
                opt.step()
            sync()
            t0 = time.perf_counter()
            for _ in range(adam_reps):
                opt.step()
            sync()
            per_step = (time.perf_counter() - t0) / adam_reps
            n = sum(param.numel() for param in trainable)
            # Counted as for bench_train: the minimum traffic of the update (foreach/fused kernels may move more).
            nbytes = n * (4 + 3) * 4
            adam.update(status="ok", elements_updated=n, reps=adam_reps, step_s=per_step, bytes_per_step=nbytes,
                        achieved_gbs=nbytes / per_step / 1e9, adam_impl=adam_impl(opt))
            if device_info.get("peak_bandwidth_gbs"):
                adam["fraction_of_peak_bandwidth"] = adam["achieved_gbs"] / device_info["peak_bandwidth_gbs"]
            print(f"\nAdamW ({adam_impl(opt)}) over {n} elements: {1e3 * per_step:.3f} ms/step, "
                  f"{adam['achieved_gbs']:.1f} GB/s")
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            adam.update(status="out_of_memory" if "out of memory" in str(e).lower() else "error",
                        error=first_line(e))
            failed |= adam["status"] == "error"
            print(f"\nAdamW: {adam['status']}: {adam['error']}")
        opt = None
        for param in trainable:
            param.grad = None
        model.load_state_dict(initial_state)

    mel = None
    if selected("logmel"):
        mel = dict(name="logmel", batch=4, seconds=args.seconds)
        try:
            waves = [synthetic_speech(sample_rate, args.seconds, args.seed + 1000 + b) for b in range(4)]
            wave = torch.from_numpy(np.stack(waves)).to(device).requires_grad_(True)
            frames = logmel.frames(wave.shape[1])
            grad_out = torch.ones(4, n_mels, frames, device=device)

            def fwd():
                with torch.no_grad():
                    logmel(wave)
                sync()

            def fwd_bwd():
                wave.grad = None
                logmel(wave).backward(grad_out)
                sync()

            for _ in range(2):
                fwd_bwd()
            f_times, fb_times = [], []
            for _ in range(logmel_reps):
                t0 = time.perf_counter()
                fwd()
                f_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                fwd_bwd()
                fb_times.append(time.perf_counter() - t0)
            mel.update(status="ok", samples=wave.shape[1], frames=frames, n_fft=n_fft, hop=hop, n_mels=n_mels,
                       reps=logmel_reps, forward_s=statistics.median(f_times),
                       forward_backward_s=statistics.median(fb_times))
            print(f"log-mel, batch 4 x {args.seconds:g} s ({frames} frames each): forward {1e3 * mel['forward_s']:.3f} ms, "
                  f"forward+backward {1e3 * mel['forward_backward_s']:.3f} ms")
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            mel.update(status="out_of_memory" if "out of memory" in str(e).lower() else "error",
                       error=first_line(e))
            failed |= mel["status"] == "error"
            print(f"log-mel: {mel['status']}: {mel['error']}")

    if args.json:
        doc = dict(program="train_step.py", implementation="pytorch", objective=args.objective,
                   parameters=generator_count, trainable_parameters=sum(p.numel() for p in trainable),
                   discriminator_parameters=disc_count, device=device_info, config=args.config,
                   model=args.model, seed=args.seed, seconds=args.seconds, tokens=tokens, warmup=args.warmup,
                   steps=steps, quick=args.quick, budget_bytes=budget if cuda else 0,
                   torch_version=torch.__version__, transformers_version=transformers.__version__,
                   tf32=dict(cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                             cudnn_allow_tf32=torch.backends.cudnn.allow_tf32),
                   cudnn_benchmark=torch.backends.cudnn.benchmark,
                   timing="one step (zero_grad, forward, loss.item(), backward, clip, AdamW) then synchronize; median",
                   settings=results)
        if adam is not None:
            doc["adamw"] = adam
        if mel is not None:
            doc["logmel"] = mel
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
