#!/usr/bin/env python3
"""Golden gradients of the mel-mode training step, computed with PyTorch autograd on transformers' VitsModel
modules (text_encoder, duration_predictor, flow, decoder) of the tiny_sdp fixture.

Reads   tests/data/golden/tiny_sdp/            (VitsModel.from_pretrained, VitsTokenizer.from_pretrained)
Writes  tests/data/golden/tiny_sdp_train/step_whole.safetensors     whole utterances (segment_frames 0)
        tests/data/golden/tiny_sdp_train/step_segment.safetensors   segment_frames 8, fixed segment starts

The step (the exact definition lives with the training code; summarised here):
  1. text encoder (with grad) -> hidden [B,T,H], prior means m_p and log-stds logs_p [B,T,F]
  2. without grad: log_duration = stochastic duration predictor(hidden^T, mask [B,1,T], reverse=True,
     noise_scale=noise_scale_duration) on the recorded standard-normal draw duration_noise [B,2,T];
     w = exp(log_duration) * mask
  3. integer durations: largest-remainder rounding of w_b[:T_b] so that they sum to frames_b = S_b // hop
  4. expand m_p, logs_p to frames [B,F,F_max] (zero past frames_b), frame_mask [B,1,F_max]
  5. z_p = m + prior_noise * exp(logs) * noise_scale
  6. z = flow(z_p, frame_mask, reverse=True)
  7. whole: x = z * frame_mask, mel_mask = frame_mask; segment: x[b] = z[b,:,start_b:start_b+K], mel_mask = 1
  8. wave = decoder(x)
  9. generated_logmel = logmel(wave[:,0,:]); target_logmel = logmel of each full target waveform (trimmed to
     frames_b * hop samples, zero-padded to F_max frames; for segments sliced from that full-utterance mel)
 10. loss = sum(|gen - target| * mel_mask) / (n_mels * sum(mel_mask)); backward -> every trainable gradient
Trainable: text_encoder.*, flow.*, decoder.*; the duration predictor and posterior encoder are frozen.
The modules run in eval mode (no dropout, no layerdrop) but with autograd.

Log-mel: reflect pad (n_fft - hop) / 2 on both sides, torch.stft(center=False, onesided, periodic Hann of
win = n_fft), magnitude sqrt(re^2 + im^2 + 1e-6), Slaney filterbank (librosa.filters.mel, norm="slaney",
fmin 0, fmax sr/2; torchaudio's melscale_fbanks when librosa is missing), log(clamp(mel, 1e-5)).
n_fft = 2 * (spectrogram_bins - 1), hop = prod(upsample_rates); N_MELS is fixed below for this tiny n_fft.

Every trainable parameter's gradient is non-zero except the attention key biases (text_encoder...k_proj.bias):
softmax cancels them, so their exact gradient is 0 and the stored values are float32 rounding residue (~1e-11);
compare those with an absolute tolerance. Embedding rows of tokens absent from the batch get exactly 0.

Every tensor is float32. Gradient names are "grad." + the state-dict name, with weight-norm parametrizations
written under their legacy names (...parametrizations.weight.original0 -> ...weight_g, original1 -> weight_v).

Usage (from anywhere): python3 tools/golden/make_golden_gradients.py [--root REPO_ROOT]
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import safetensors.torch
import torch
import transformers
from transformers import VitsModel, VitsTokenizer
from transformers.models.vits import modeling_vits

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N_MELS = 8  # n_fft is 64 for the tiny fixture (33 bins): 8 Slaney bands over 0-8 kHz all stay non-empty
NOISE_SCALE = 0.667
NOISE_SCALE_DURATION = 0.8
SEGMENT_FRAMES = 8
SEGMENT_STARTS = [5, 3]  # must lie in [0, frames_b - SEGMENT_FRAMES]
MAGNITUDE_EPS = 1e-6
LOG_CLAMP = 1e-5

# "yes" -> 7 ids, "hi" -> 5 ids after add_blank: about 3 frames per token, as speech has at this hop.
TEXTS = ["yes", "hi"]
FRAMES = [23, 15]
EXTRA_SAMPLES = [7, 3]  # samples past the last whole frame, which the step must drop (frames_b = S_b // hop)

WAVE_SEED = 4321
FIRST_NOISE_SEED = 3000
# The rounding of step 3 must not depend on the last bits of log_duration: every scaled duration q_i stays this
# far from an integer, and the fractional parts that win a remaining frame stay this far above those that do not.
# float32 implementations differ by ~1e-6 relative here; 1e-3 also tolerates TF32-like products.
ROUNDING_MARGIN = 1e-3


# ----------------------------------------------------------------------------------------------------------------
# Log-mel


def mel_filterbank(sample_rate, n_fft, n_mels):
    """Slaney-scale, Slaney-normalised filterbank [n_mels, n_fft/2 + 1] and the name of the library it came from."""
    try:
        import librosa
    except ImportError:
        librosa = None
    if librosa is not None:
        bank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2.0,
                                   htk=False, norm="slaney", dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(bank)), f"librosa {librosa.__version__} filters.mel"
    import torchaudio

    bank = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2.0, n_mels, sample_rate,
                                                 norm="slaney", mel_scale="slaney")
    return bank.t().contiguous().float(), f"torchaudio {torchaudio.__version__} functional.melscale_fbanks"


def stft_magnitude(wave, n_fft, hop, win):
    """wave [B, S] -> magnitude [B, n_fft/2 + 1, frames], frames = (S + 2 * pad - n_fft) // hop + 1."""
    pad = (n_fft - hop) // 2
    padded = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(win, periodic=True, dtype=wave.dtype)
    spec = torch.stft(padded, n_fft, hop_length=hop, win_length=win, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAGNITUDE_EPS)


def log_mel(wave, bank, n_fft, hop, win):
    mel = torch.matmul(bank, stft_magnitude(wave, n_fft, hop, win))
    return torch.log(torch.clamp(mel, min=LOG_CLAMP))


def check_stft_against_numpy(n_fft, hop, win):
    """The torch STFT framing (padding, window, frame count) against a direct numpy DFT."""
    rng = np.random.default_rng(7)
    signal = rng.standard_normal(5 * hop + 3)
    pad = (n_fft - hop) // 2
    padded = np.pad(signal, pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    frames = (len(padded) - n_fft) // hop + 1
    expected = np.stack([np.abs(np.fft.rfft(padded[f * hop:f * hop + n_fft] * window)) for f in range(frames)], 1)
    expected = np.sqrt(expected**2 + MAGNITUDE_EPS)
    got = stft_magnitude(torch.from_numpy(signal).unsqueeze(0), n_fft, hop, win)[0].numpy()
    assert got.shape == expected.shape, f"stft frames {got.shape} vs numpy {expected.shape}"
    assert np.abs(got - expected).max() < 1e-9, "torch.stft framing differs from the numpy reference"


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def speech_like_wave(num_samples, sample_rate, f0_base, generator):
    """Five harmonics of a slowly gliding f0 under a syllable-like envelope, plus a little noise; peak 0.3."""
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    f0 = f0_base * (1.0 + 0.15 * torch.sin(2 * math.pi * 3.0 * t))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    wave = sum(torch.sin(k * phase + 0.3 * k) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * torch.sin(math.pi * t / t[-1]).pow(0.5)
    wave = wave * envelope + 0.05 * torch.randn(num_samples, generator=generator, dtype=torch.float64)
    return (0.3 * wave / wave.abs().max()).float()


def largest_remainder_durations(weights, frames):
    """Integer durations summing to frames, proportional to weights (float64 arithmetic on the float32 values).

    Returns the durations and the smallest distance from a rounding decision (see ROUNDING_MARGIN)."""
    weights = weights.double()
    total = weights.sum().item()
    count = weights.numel()
    scaled = weights * frames / total if total > 0 else torch.full((count,), frames / count, dtype=torch.float64)
    floors = torch.floor(scaled)
    fractions = scaled - floors
    remaining = frames - int(floors.sum().item())
    assert 0 <= remaining <= count, f"remainder {remaining} outside [0, {count}]"
    order = sorted(range(count), key=lambda i: (-fractions[i].item(), i))  # ties: lower index first
    durations = floors.clone()
    for i in order[:remaining]:
        durations[i] += 1
    margin = min(min(f, 1.0 - f) for f in fractions.tolist())
    if 0 < remaining < count:
        margin = min(margin, fractions[order[remaining - 1]].item() - fractions[order[remaining]].item())
    assert int(durations.sum().item()) == frames
    return durations, margin


class RandnReplay:
    """Stands in for the `torch` module inside modeling_vits so that the stochastic duration predictor's
    torch.randn returns the recorded draw."""

    def __init__(self, draw):
        self._draw = draw
        self.calls = 0

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn(self, *size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        assert tuple(shape) == tuple(self._draw.shape), f"randn{shape} but the recorded draw is {self._draw.shape}"
        self.calls += 1
        return self._draw.clone()


def legacy_name(name):
    return name.replace(".parametrizations.weight.original0", ".weight_g").replace(
        ".parametrizations.weight.original1", ".weight_v")


# ----------------------------------------------------------------------------------------------------------------
# The step


def predict_durations(model, hidden, input_mask, duration_noise, frames):
    """Steps 2-3 (no grad). Returns log_duration [B,1,T], integer durations [B,1,T] (float), rounding margin."""
    replay = RandnReplay(duration_noise)
    original_torch = modeling_vits.torch
    modeling_vits.torch = replay
    try:
        with torch.no_grad():
            log_duration = model.duration_predictor(hidden.transpose(1, 2).detach(), input_mask, None,
                                                    reverse=True, noise_scale=NOISE_SCALE_DURATION)
    finally:
        modeling_vits.torch = original_torch
    assert replay.calls == 1, f"the duration predictor drew {replay.calls} times, expected 1"
    weights = torch.exp(log_duration) * input_mask
    durations = torch.zeros_like(log_duration)
    margin = math.inf
    for b, frames_b in enumerate(frames):
        tokens_b = int(input_mask[b].sum().item())
        item_durations, item_margin = largest_remainder_durations(weights[b, 0, :tokens_b], frames_b)
        durations[b, 0, :tokens_b] = item_durations.float()
        margin = min(margin, item_margin)
    return log_duration, durations, margin


def alignment(durations, frames_max):
    """One-hot [B, F_max, T]: frame f of item b takes token i where cum_{i-1} <= f < cum_i."""
    ends = torch.cumsum(durations[:, 0, :], -1)  # [B,T]
    starts = ends - durations[:, 0, :]
    frame = torch.arange(frames_max, dtype=durations.dtype).view(1, -1, 1)
    return ((frame >= starts.unsqueeze(1)) & (frame < ends.unsqueeze(1))).to(durations.dtype)


def training_step(model, batch, noise, durations, segment_starts, segment_frames):
    """Steps 1 and 4-10 with the durations fixed. Returns the loss and the intermediates (detached)."""
    ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    frames = batch["frames"]
    frames_max = max(frames)
    dtype = model.text_encoder.embed_tokens.weight.dtype

    encoded = model.text_encoder(input_ids=ids, padding_mask=attention_mask.unsqueeze(-1).to(dtype),
                                 attention_mask=attention_mask, return_dict=True)
    align = alignment(durations.to(dtype), frames_max)  # [B,F_max,T]
    means = torch.matmul(align, encoded.prior_means).transpose(1, 2)  # [B,F,F_max]
    log_std = torch.matmul(align, encoded.prior_log_variances).transpose(1, 2)
    frame_mask = (torch.arange(frames_max).view(1, 1, -1) < torch.tensor(frames).view(-1, 1, 1)).to(dtype)

    prior_latents = means + noise.to(dtype) * torch.exp(log_std) * NOISE_SCALE
    latents = model.flow(prior_latents, frame_mask, None, reverse=True)

    target_full = torch.zeros(len(frames), batch["bank"].shape[0], frames_max, dtype=dtype)
    for b, wave_b in enumerate(batch["target_waves"]):
        trimmed = wave_b[: frames[b] * batch["hop"]].to(dtype)
        target_full[b, :, : frames[b]] = log_mel(trimmed.unsqueeze(0), batch["bank"].to(dtype), batch["n_fft"],
                                                 batch["hop"], batch["win"])[0]

    if segment_frames == 0:
        decoder_input = latents * frame_mask
        mel_mask = frame_mask
        target = target_full
    else:
        k_eff = min(segment_frames, min(frames))
        for b, start in enumerate(segment_starts):
            assert 0 <= start <= frames[b] - k_eff, f"segment start {start} outside [0, {frames[b] - k_eff}]"
        decoder_input = torch.stack([latents[b, :, s:s + k_eff] for b, s in enumerate(segment_starts)])
        mel_mask = torch.ones(len(frames), 1, k_eff, dtype=dtype)
        target = torch.stack([target_full[b, :, s:s + k_eff] for b, s in enumerate(segment_starts)])

    wave = model.decoder(decoder_input, None)  # [B,1,frames*hop]
    generated = log_mel(wave[:, 0, :], batch["bank"].to(dtype), batch["n_fft"], batch["hop"], batch["win"])
    assert generated.shape == target.shape, f"generated {tuple(generated.shape)} vs target {tuple(target.shape)}"
    n_mels = batch["bank"].shape[0]
    loss = torch.sum(torch.abs(generated - target) * mel_mask) / (n_mels * torch.sum(mel_mask))

    intermediates = dict(
        prior_means=encoded.prior_means, prior_log_std=encoded.prior_log_variances, expanded_means=means,
        expanded_log_std=log_std, prior_latents=prior_latents, flow_output=latents, decoder_input=decoder_input,
        waveform=wave[:, 0, :], target_logmel=target_full, generated_logmel=generated)
    return loss, {k: v.detach() for k, v in intermediates.items()}


def trainable_parameters(model):
    return [(name, p) for name, p in model.named_parameters() if name.startswith(("text_encoder.", "flow.",
                                                                                    "decoder."))]


def check_gradients(model, used_token_ids, variant):
    state_names = set(model.state_dict().keys())
    for name, parameter in trainable_parameters(model):
        assert name in state_names, f"{name} is not a state-dict name"
        grad = parameter.grad
        assert grad is not None, f"{variant}: {name} got no gradient"
        assert torch.isfinite(grad).all(), f"{variant}: {name} has a non-finite gradient"
        if name == "text_encoder.embed_tokens.weight":
            # Only the rows of tokens in the batch receive gradient; the others must be exactly zero.
            for row in range(grad.shape[0]):
                used = row in used_token_ids
                nonzero = bool(grad[row].abs().max() > 0)
                assert nonzero == used, f"{variant}: embedding row {row} (used={used}) has nonzero={nonzero}"
        elif name.endswith(".attention.k_proj.bias"):
            # A key bias adds q_i . b to every score of query i, which softmax cancels: the exact gradient is 0
            # and float32 leaves only rounding residue (~1e-11 against ~1e-3 for the query bias).
            reference = dict(model.named_parameters())[name.replace("k_proj", "q_proj")].grad.abs().max()
            assert grad.abs().max() < 1e-5 * reference, f"{variant}: {name} gradient is not ~0"
        else:
            assert grad.abs().max() > 0, f"{variant}: {name} has an all-zero gradient"


# ----------------------------------------------------------------------------------------------------------------
# Files


def sort_safetensors_metadata(path):
    """safetensors writes __metadata__ in hash order; sort it in place so regenerated files are byte-identical."""
    with open(path, "r+b") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        header = {"__metadata__": header.pop("__metadata__"), **header}
        rewritten = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        rewritten += b" " * (header_length - len(rewritten))
        assert len(rewritten) == header_length, f"{path}: header grew when sorting its metadata"
        handle.seek(8)
        handle.write(rewritten)


def sha256_of(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=REPO_ROOT, help="repository root holding tests/data/golden")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same summation order on every machine that regenerates the files

    golden = os.path.join(args.root, "tests", "data", "golden")
    model_dir = os.path.join(golden, "tiny_sdp")
    model_file = os.path.join(model_dir, "model.safetensors")
    if not os.path.isfile(model_file):
        sys.exit(f"{model_file} is missing: run tools/golden/make_golden.py first")
    out_dir = os.path.join(golden, "tiny_sdp_train")
    os.makedirs(out_dir, exist_ok=True)

    model = VitsModel.from_pretrained(model_dir).float()
    model.eval()  # no dropout, no layerdrop; autograd stays on
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(("text_encoder.", "flow.", "decoder.")))
    tokenizer = VitsTokenizer.from_pretrained(model_dir)
    config = model.config

    n_fft = 2 * (config.spectrogram_bins - 1)
    win = n_fft
    hop = int(np.prod(config.upsample_rates))
    sample_rate = config.sampling_rate
    bank, bank_source = mel_filterbank(sample_rate, n_fft, N_MELS)
    assert bank.shape == (N_MELS, n_fft // 2 + 1)
    assert (bank.sum(1) > 0).all(), "an empty mel band"
    check_stft_against_numpy(n_fft, hop, win)

    encoded_texts = tokenizer(TEXTS, padding=True, return_tensors="pt")
    input_ids = encoded_texts["input_ids"]
    attention_mask = encoded_texts["attention_mask"]
    batch_size, num_tokens = input_ids.shape
    for b in range(batch_size):
        tokens_b = int(attention_mask[b].sum())
        assert FRAMES[b] >= 3 * tokens_b, f"item {b}: {FRAMES[b]} frames for {tokens_b} tokens"
        assert SEGMENT_FRAMES <= FRAMES[b]

    wave_generator = torch.Generator().manual_seed(WAVE_SEED)
    target_waves = [speech_like_wave(FRAMES[b] * hop + EXTRA_SAMPLES[b], sample_rate, f0, wave_generator)
                    for b, f0 in enumerate([130.0, 210.0])]
    frames = [w.numel() // hop for w in target_waves]
    assert frames == FRAMES
    frames_max = max(frames)
    batch = dict(input_ids=input_ids, attention_mask=attention_mask, frames=frames, target_waves=target_waves,
                 bank=bank, n_fft=n_fft, hop=hop, win=win)
    input_mask = attention_mask.unsqueeze(1).float()  # [B,1,T]

    with torch.no_grad():
        hidden = model.text_encoder(input_ids=input_ids, padding_mask=attention_mask.unsqueeze(-1).float(),
                                    attention_mask=attention_mask).last_hidden_state

    # The first noise seed whose durations are safely away from every rounding decision.
    for noise_seed in range(FIRST_NOISE_SEED, FIRST_NOISE_SEED + 100):
        generator = torch.Generator().manual_seed(noise_seed)
        duration_noise = torch.randn(batch_size, 2, num_tokens, generator=generator)
        prior_noise = torch.randn(batch_size, config.flow_size, frames_max, generator=generator)
        log_duration, durations, margin = predict_durations(model, hidden, input_mask, duration_noise, frames)
        if margin >= ROUNDING_MARGIN:
            break
    else:
        sys.exit("no noise seed in 100 gives durations clear of the rounding margin")
    for b in range(batch_size):
        assert int(durations[b].sum()) == frames[b], f"item {b}: durations sum {durations[b].sum()} != {frames[b]}"
        tokens_b = int(attention_mask[b].sum())
        assert (durations[b, 0, tokens_b:] == 0).all()

    used_token_ids = {int(t) for b in range(batch_size) for t in input_ids[b, : int(attention_mask[b].sum())]}
    model_sha = sha256_of(model_file)
    summaries = []
    for variant, segment_frames in (("whole", 0), ("segment", SEGMENT_FRAMES)):
        model.zero_grad(set_to_none=True)
        starts = SEGMENT_STARTS if segment_frames else None
        loss, inter = training_step(model, batch, prior_noise, durations, starts, segment_frames)
        assert torch.isfinite(loss) and loss.item() > 0, f"{variant}: loss {loss.item()}"
        loss.backward()
        check_gradients(model, used_token_ids, variant)

        tensors = {
            "input_ids": input_ids.float(),
            "attention_mask": attention_mask.float(),
            "duration_noise": duration_noise,
            "prior_noise": prior_noise,
            "log_duration": log_duration,
            "durations": durations,
            "mel_filterbank": bank,
            "loss": loss.detach().reshape(1),
        }
        for b, wave_b in enumerate(target_waves):
            tensors[f"target_wave_{b}"] = wave_b
        if segment_frames:
            tensors["segment_starts"] = torch.tensor(SEGMENT_STARTS, dtype=torch.float32)
        tensors.update(inter)
        for name, parameter in trainable_parameters(model):
            tensors["grad." + legacy_name(name)] = parameter.grad.detach()
        tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}

        metadata = {
            "n_mels": str(N_MELS),
            "n_fft": str(n_fft),
            "hop": str(hop),
            "win": str(win),
            "sample_rate": str(sample_rate),
            "noise_scale": str(NOISE_SCALE),
            "noise_scale_duration": str(NOISE_SCALE_DURATION),
            "segment_frames": str(segment_frames),
            "mel_filterbank_source": bank_source,
            "texts": json.dumps(TEXTS),
            "frames": json.dumps(frames),
            "noise_seed": str(noise_seed),
            "wave_seed": str(WAVE_SEED),
            "rounding_margin": f"{margin:.6f}",
            "model": "tiny_sdp",
            "model_sha256": model_sha,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }
        path = os.path.join(out_dir, f"step_{variant}.safetensors")
        safetensors.torch.save_file(tensors, path, metadata=metadata)
        sort_safetensors_metadata(path)
        grads = sum(1 for k in tensors if k.startswith("grad."))
        summaries.append(f"{variant}: loss {loss.item():.6f}, {grads} gradients, {os.path.getsize(path)} bytes")

    print(f"noise seed {noise_seed}, rounding margin {margin:.4f}, durations "
          f"{[durations[b, 0, : int(attention_mask[b].sum())].int().tolist() for b in range(batch_size)]}")
    print("\n".join(summaries))


if __name__ == "__main__":
    sys.exit(main())
