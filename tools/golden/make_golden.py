#!/usr/bin/env python3
"""Golden fixtures for VitsModel inference parity, produced with transformers' VitsModel.

Writes (paths relative to the repository root)
  tests/data/golden/tiny_sdp/              stochastic duration predictor, 1 speaker, F32 weights saved by
                                           save_pretrained (parametrizations.weight.original0/1 names)
  tests/data/golden/tiny_dp_multispeaker/  plain duration predictor, 3 speakers, F16 weights with the legacy
                                           weight_g/weight_v names (the layout of the facebook/mms-tts-* files)
      config.json, model.safetensors, vocab.json, tokenizer_config.json, special_tokens_map.json,
      added_tokens.json, io_noiseless.safetensors, io_noisy.safetensors (+ io_single.safetensors for tiny_sdp)
  tests/data/mms_tts_eng/                  facebook/mms-tts-eng's architecture: state_dict.txt (legacy names and
                                           shapes), config.json, tokenizer files, README.md (parameter counts)

Every io file holds float32 tensors (ids, masks and lengths included) and string metadata
(fixture, noise_scale, noise_scale_duration, speaking_rate, texts, seed). The random draws transformers makes
(torch.randn in the stochastic duration predictor, torch.randn_like for the prior) are recorded as
duration_noise and prior_noise, so an implementation can replay them and match the noisy outputs too.

Usage (from anywhere): python3 tools/golden/make_golden.py [--root REPO_ROOT]
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import VitsConfig, VitsModel, VitsTokenizer
from transformers.models.vits import modeling_vits

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# facebook/mms-tts-eng's vocabulary, in id order ("X" stands for the space), as listed in transformers'
# tests/models/vits/test_tokenization_vits.py, whose integration test checks ids against the hub files.
# "k" (id 0) is both the pad token and the blank interleaved by add_blank.
MMS_TTS_ENG_SYMBOLS = "k ' z y u d h e s w – 3 c p - 1 j m i X f l o 0 b r a 4 2 n _ x v t q 5 6 g".split(" ")
MMS_TTS_ENG_TOKENIZER_OPTIONS = dict(
    pad_token="k",
    unk_token="<unk>",
    language="eng",
    add_blank=True,
    normalize=True,
    phonemize=False,
    is_uroman=False,
)

# Small but complete geometries. The two fixtures differ in hidden size, upsampling (tiny_dp_multispeaker uses
# odd strides whose kernel - stride is odd, so its transposed convolutions emit 1 extra sample each) and duration
# predictor, so an implementation cannot get both right with a hard-coded shape.
TINY_COMMON = dict(
    vocab_size=38,
    num_hidden_layers=2,
    num_attention_heads=2,
    window_size=4,
    ffn_kernel_size=3,
    flow_size=8,
    spectrogram_bins=33,
    resblock_kernel_sizes=[3, 5],
    resblock_dilation_sizes=[[1, 3], [1, 3]],
    depth_separable_num_layers=2,
    duration_predictor_flow_bins=4,
    duration_predictor_num_flows=2,
    duration_predictor_filter_channels=32,
    prior_encoder_num_flows=2,
    prior_encoder_num_wavenet_layers=2,
    posterior_encoder_num_wavenet_layers=2,
    upsample_initial_channel=32,
    sampling_rate=16000,
)

FIXTURES = {
    "tiny_sdp": dict(
        config=dict(
            TINY_COMMON,
            hidden_size=32,
            ffn_dim=64,
            upsample_rates=[4, 4],
            upsample_kernel_sizes=[8, 8],
            use_stochastic_duration_prediction=True,
            num_speakers=1,
            speaker_embedding_size=0,
        ),
        first_seed=1000,
        weights="parametrizations_f32",
        # "kite" starts with the pad token "k", which the tokenizer keeps as one unsplit special token.
        batch_texts=["Hello, world!", "kite"],
        single_text="a",  # 3 ids: shorter than window_size + 1, so the relative embeddings are sliced
        cases=[
            dict(name="io_noiseless", noise_scale=0.0, noise_scale_duration=0.0, speaking_rate=1.0, speaker_id=None),
            dict(name="io_noisy", noise_scale=0.667, noise_scale_duration=0.8, speaking_rate=1.0, speaker_id=None),
            dict(name="io_single", noise_scale=0.667, noise_scale_duration=0.8, speaking_rate=1.0, speaker_id=None,
                 single=True),
        ],
    ),
    "tiny_dp_multispeaker": dict(
        config=dict(
            TINY_COMMON,
            hidden_size=16,
            ffn_dim=32,
            upsample_rates=[5, 3],
            upsample_kernel_sizes=[10, 6],
            use_stochastic_duration_prediction=False,
            num_speakers=3,
            speaker_embedding_size=8,
        ),
        first_seed=2000,
        weights="legacy_f16",
        batch_texts=["Dog's 2 cats", "yes"],
        single_text=None,
        cases=[
            dict(name="io_noiseless", noise_scale=0.0, noise_scale_duration=0.0, speaking_rate=1.0, speaker_id=2),
            dict(name="io_noisy", noise_scale=0.667, noise_scale_duration=0.8, speaking_rate=1.1, speaker_id=1),
        ],
    ),
}

# Durations: exp(log_duration) * length_scale must stay this far from an integer, or rounding differences between
# implementations could flip ceil() and change the frame count. float32 differences are ~1e-6; the wide margin
# also tolerates reduced-precision matrix products (TF32 carries ~1e-3 relative error).
CEIL_MARGIN = 5e-3
MIN_FRAMES_PER_TOKEN = 1
MAX_FRAMES_PER_TOKEN = 10
TARGET_FRAMES_PER_TOKEN = 3.5  # geometric mean that calibration aims at
TARGET_LOG_DURATION_STD = 0.35
TARGET_PRIOR_LOG_STD_MEAN = -0.7  # prior std around 0.5, as in trained models
TARGET_PRIOR_LOG_STD_STD = 0.5
TARGET_DECODER_PRE_TANH_STD = 0.6  # keeps tanh mostly unsaturated so the waveform still carries the errors
PERTURBATION_STD = 0.1
FORWARD_SEED = 1234  # torch.manual_seed before every forward: the recorded noise comes from this generator state


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer


def mms_tts_eng_vocab():
    return {(" " if symbol == "X" else symbol): index for index, symbol in enumerate(MMS_TTS_ENG_SYMBOLS)}


def make_tokenizer():
    """A VitsTokenizer configured like facebook/mms-tts-eng's."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = os.path.join(tmp, "vocab.json")
        with open(vocab_file, "w", encoding="utf-8") as handle:
            json.dump(mms_tts_eng_vocab(), handle, ensure_ascii=False)
        tokenizer = VitsTokenizer(vocab_file, **MMS_TTS_ENG_TOKENIZER_OPTIONS)
    assert len(tokenizer.encoder) == 38 and tokenizer.pad_token_id == 0, "mms-tts-eng vocabulary"
    # Pinned by transformers' tokenizer integration test against the real facebook/mms-tts-eng files.
    expected = [0, 33, 0, 6, 0, 7, 0, 19, 0, 34, 0, 4, 0, 18, 0, 12, 0, 0, 0, 19, 0, 24, 0, 25, 0, 22, 0, 9, 0, 29, 0]
    got = tokenizer("The quick brown")["input_ids"]
    assert got == expected, f"tokenizer ids {got} differ from mms-tts-eng's {expected}"
    return tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Model construction


def make_model(config_kwargs, seed):
    """Random VitsModel whose parameters are all informative (no all-zero or all-one tensors)."""
    torch.manual_seed(seed)
    model = VitsModel(VitsConfig(**config_kwargs))
    model.eval()
    perturb_constant_parameters(model, seed)
    return model


def perturb_constant_parameters(model, seed):
    """transformers initialises biases of Linear layers, LayerNorm weights/biases and the ElementwiseAffine
    flows' translate/log_scale to exact zeros or ones; a wrong implementation that ignores them would still
    match. Add N(0, PERTURBATION_STD) noise to every tensor that is constant."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.numel() > 1 and torch.all(parameter == parameter.reshape(-1)[0]):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * PERTURBATION_STD)
        for name, parameter in model.named_parameters():
            if parameter.numel() > 1:
                assert not torch.all(parameter == parameter.reshape(-1)[0]), f"{name} is still constant"
        for index, flow in enumerate(model.flow.flows):
            # Original VITS zero-initialises this convolution; transformers initialises it like any other.
            assert flow.conv_post.weight.abs().max() > 0, f"flow.flows.{index}.conv_post is zero"


def round_parameters_to_float16(model):
    """Round every parameter to float16 and back, so the float32 model computes with exactly the stored values."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.float16).to(torch.float32))


def legacy_name(name):
    """parametrizations.weight.original0/1 -> weight_g/weight_v (the names in the facebook/mms-tts-* files)."""
    return name.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"
    )


def legacy_state_dict(model, dtype):
    state = {}
    for name, tensor in model.state_dict().items():
        state[legacy_name(name)] = tensor.detach().to(dtype).contiguous().clone()
    return state


# ----------------------------------------------------------------------------------------------------------------
# Capturing intermediate tensors of VitsModel.forward


class _TorchSeenByVits:
    """Stands in for the `torch` module inside transformers.models.vits.modeling_vits: delegates everything to
    torch and records what randn, randn_like, ceil and matmul return (and randn_like's argument)."""

    def __init__(self, log):
        self._log = log

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn(self, *args, **kwargs):
        out = torch.randn(*args, **kwargs)
        self._log.append(("randn", out.detach().clone(), None))
        return out

    def randn_like(self, reference, *args, **kwargs):
        out = torch.randn_like(reference, *args, **kwargs)
        self._log.append(("randn_like", out.detach().clone(), reference.detach().clone()))
        return out

    def ceil(self, *args, **kwargs):
        out = torch.ceil(*args, **kwargs)
        self._log.append(("ceil", out.detach().clone(), None))
        return out

    def matmul(self, *args, **kwargs):
        out = torch.matmul(*args, **kwargs)
        self._log.append(("matmul", out.detach().clone(), None))
        return out


@contextlib.contextmanager
def capture_forward(model):
    """Yields a dict filled, after the forward, with the tensors the io files hold."""
    log = []
    captured = {}
    hooks = [
        model.text_encoder.register_forward_hook(lambda m, a, out: captured.__setitem__("text_encoder", out)),
        model.duration_predictor.register_forward_hook(lambda m, a, out: captured.__setitem__("log_duration", out)),
        model.flow.register_forward_pre_hook(lambda m, args: captured.__setitem__("prior_latents", args[0])),
        model.decoder.register_forward_pre_hook(lambda m, args: captured.__setitem__("decoder_input", args[0])),
    ]
    original_torch = modeling_vits.torch
    modeling_vits.torch = _TorchSeenByVits(log)
    try:
        yield captured
    finally:
        modeling_vits.torch = original_torch
        for hook in hooks:
            hook.remove()
    captured["log"] = log


def run_forward(model, input_ids, attention_mask, speaker_id, noise_scale, noise_scale_duration, speaking_rate):
    """One VitsModel forward with every io tensor captured (float32, contiguous)."""
    # Set on the model: VitsModel copies these from the config in __init__ and never reads the config again.
    model.noise_scale = noise_scale
    model.noise_scale_duration = noise_scale_duration
    model.speaking_rate = speaking_rate
    torch.manual_seed(FORWARD_SEED)
    with torch.no_grad(), capture_forward(model) as captured:
        output = model(input_ids=input_ids, attention_mask=attention_mask, speaker_id=speaker_id)
    log = captured["log"]
    kinds = [entry[0] for entry in log]

    stochastic = model.config.use_stochastic_duration_prediction
    assert kinds.count("randn") == (1 if stochastic else 0), f"unexpected torch.randn calls: {kinds}"
    assert kinds.count("randn_like") == 1 and kinds.count("ceil") == 1, f"unexpected calls: {kinds}"
    prior_draw_at = kinds.index("randn_like")
    # The last two matmuls before the prior draw are the alignment expansions of the means and log-stds.
    matmuls_before = [i for i in range(prior_draw_at) if kinds[i] == "matmul"]
    assert len(matmuls_before) >= 2
    expanded_means = log[matmuls_before[-2]][1].transpose(1, 2)
    expanded_log_std = log[matmuls_before[-1]][1].transpose(1, 2)
    assert torch.equal(expanded_means, log[prior_draw_at][2]), "expanded means are not what randn_like saw"

    batch, length = input_ids.shape
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    text_out = captured["text_encoder"]
    tensors = {
        "input_ids": input_ids.to(torch.float32),
        "attention_mask": mask.to(torch.float32),
        "text_hidden": text_out.last_hidden_state,
        "prior_means": text_out.prior_means,
        "prior_log_std": text_out.prior_log_variances,
        "log_duration": captured["log_duration"],
        "durations": log[kinds.index("ceil")][1],
        "expanded_means": expanded_means,
        "expanded_log_std": expanded_log_std,
        "prior_noise": log[prior_draw_at][1],
        "prior_latents": captured["prior_latents"],
        "spectrogram": output.spectrogram,
        "waveform": output.waveform,
        "sequence_lengths": output.sequence_lengths.to(torch.float32),
    }
    if stochastic:
        tensors["duration_noise"] = log[kinds.index("randn")][1]
    if speaker_id is not None:
        tensors["speaker_id"] = torch.tensor([float(speaker_id)])

    assert torch.equal(captured["decoder_input"], output.spectrogram), "decoder input differs from the spectrogram"
    frames = tensors["expanded_means"].shape[2]
    flow = model.config.flow_size
    expected_shapes = {
        "text_hidden": (batch, length, model.config.hidden_size),
        "prior_means": (batch, length, flow),
        "prior_log_std": (batch, length, flow),
        "log_duration": (batch, 1, length),
        "durations": (batch, 1, length),
        "expanded_log_std": (batch, flow, frames),
        "prior_noise": (batch, flow, frames),
        "prior_latents": (batch, flow, frames),
        "spectrogram": (batch, flow, frames),
        "sequence_lengths": (batch,),
    }
    if stochastic:
        expected_shapes["duration_noise"] = (batch, 2, length)
    for name, shape in expected_shapes.items():
        assert tuple(tensors[name].shape) == shape, f"{name}: shape {tuple(tensors[name].shape)}, expected {shape}"
    # The prior sample is what the recorded pieces say it is.
    recomputed = expanded_means + tensors["prior_noise"] * torch.exp(expanded_log_std) * noise_scale
    assert torch.allclose(recomputed, tensors["prior_latents"], rtol=0, atol=1e-6)
    assert torch.equal(tensors["durations"].sum(dim=(1, 2)).clamp_min(1).long(),
                       (output.sequence_lengths // int(np.prod(model.config.upsample_rates))))
    return {name: value.detach().to(torch.float32).contiguous() for name, value in tensors.items()}


# ----------------------------------------------------------------------------------------------------------------
# Calibration and sanity checks


def tokenize(tokenizer, texts):
    encoding = tokenizer(texts, padding=True, return_tensors="pt")
    return encoding["input_ids"], encoding["attention_mask"]


def case_inputs(fixture, case, tokenizer):
    if case.get("single"):
        input_ids, _ = tokenize(tokenizer, [fixture["single_text"]])
        return input_ids, None, [fixture["single_text"]]  # no attention_mask: the unpadded path
    input_ids, attention_mask = tokenize(tokenizer, fixture["batch_texts"])
    return input_ids, attention_mask, fixture["batch_texts"]


def valid_log_durations(model, fixture, tokenizer):
    """log_duration at the valid tokens of every case's inputs, run without noise."""
    values = []
    for case in fixture["cases"]:
        input_ids, attention_mask, _ = case_inputs(fixture, case, tokenizer)
        io = run_forward(model, input_ids, attention_mask, case["speaker_id"], 0.0, 0.0, 1.0)
        mask = io["attention_mask"].bool()
        values.append(io["log_duration"][:, 0, :][mask])
    return torch.cat(values)


def calibrate_durations(model, fixture, tokenizer):
    """Bring the predicted durations into a plausible range (a few frames per token, moderate spread) by moving
    the last affine step of the duration predictor: the stochastic predictor's ElementwiseAffine (run in reverse,
    it is the last operation producing channel 0) or the plain predictor's output projection."""
    log_duration = valid_log_durations(model, fixture, tokenizer).to(torch.float64)
    target_mean = math.log(TARGET_FRAMES_PER_TOKEN)
    with torch.no_grad():
        if model.config.use_stochastic_duration_prediction:
            affine = model.duration_predictor.flows[0]
            translate = float(affine.translate[0, 0])
            log_scale = float(affine.log_scale[0, 0])
            # reverse: log_duration = (x - translate) * exp(-log_scale)
            pre_affine = log_duration * math.exp(log_scale) + translate
            gain = TARGET_LOG_DURATION_STD / max(float(pre_affine.std()), 1e-3)
            affine.log_scale[0, 0] = -math.log(gain)
            affine.translate[0, 0] = float(pre_affine.mean()) - target_mean / gain
        else:
            projection = model.duration_predictor.proj
            bias = float(projection.bias[0])
            gain = TARGET_LOG_DURATION_STD / max(float(log_duration.std()), 1e-3)
            without_bias = log_duration - bias
            projection.weight.mul_(gain)
            projection.bias[0] = target_mean - gain * float(without_bias.mean())


def calibrate_prior_log_std(model, fixture, tokenizer):
    """Random projections give prior log-stds up to ~5 (std e^5), which lets the sampling noise swamp the prior
    means. Rescale the log-std half of the text encoder's projection to trained-model-like values."""
    values = []
    for case in fixture["cases"]:
        input_ids, attention_mask, _ = case_inputs(fixture, case, tokenizer)
        io = run_forward(model, input_ids, attention_mask, case["speaker_id"], 0.0, 0.0, 1.0)
        values.append(io["prior_log_std"][io["attention_mask"].bool()])
    log_std = torch.cat(values).to(torch.float64)
    flow = model.config.flow_size
    gain = TARGET_PRIOR_LOG_STD_STD / float(log_std.std())
    with torch.no_grad():
        projection = model.text_encoder.project
        projection.weight[flow:].mul_(gain)
        projection.bias[flow:] = gain * (projection.bias[flow:] - float(log_std.mean())) + TARGET_PRIOR_LOG_STD_MEAN


def calibrate_decoder(model, fixture, tokenizer):
    """Scale the decoder's final convolution so its output (tanh's input) has a moderate spread."""
    pre_tanh = []
    hook = model.decoder.conv_post.register_forward_hook(lambda m, a, out: pre_tanh.append(out.detach()))
    try:
        for case in fixture["cases"]:
            input_ids, attention_mask, _ = case_inputs(fixture, case, tokenizer)
            run_forward(model, input_ids, attention_mask, case["speaker_id"], case["noise_scale"],
                        case["noise_scale_duration"], case["speaking_rate"])
    finally:
        hook.remove()
    # The noisiest case sets the scale, so that none of them saturates.
    std = max(float(value.std()) for value in pre_tanh)
    with torch.no_grad():
        model.decoder.conv_post.weight.mul_(TARGET_DECODER_PRE_TANH_STD / std)


def scaled_durations(io, speaking_rate):
    """exp(log_duration) * length_scale at the valid tokens: ceil()'s argument, evaluated as VitsModel.forward
    does (same expression, float32)."""
    mask = io["attention_mask"]
    scaled = torch.exp(io["log_duration"]) * mask.unsqueeze(1) * (1.0 / speaking_rate)
    return scaled[:, 0, :][mask.bool()]


def duration_problems(io, speaking_rate):
    """Why these durations are unfit for a golden file (empty when fit)."""
    problems = []
    valid = scaled_durations(io, speaking_rate)
    distance = (valid - torch.round(valid)).abs()
    if float(distance.min()) <= CEIL_MARGIN:
        problems.append(f"exp(log_duration)*length_scale within {CEIL_MARGIN} of an integer "
                        f"({float(valid[distance.argmin()]):.6f})")
    frames = torch.ceil(valid)
    if float(frames.min()) < MIN_FRAMES_PER_TOKEN or float(frames.max()) > MAX_FRAMES_PER_TOKEN:
        problems.append(f"frames per token in [{float(frames.min())}, {float(frames.max())}]")
    return problems


def waveform_problems(io):
    wave = io["waveform"]
    problems = []
    saturated = float((wave.abs() > 0.99).float().mean())
    if saturated > 0.02:
        problems.append(f"{saturated:.1%} of the waveform is saturated")
    if float(wave.std()) < 0.05:
        problems.append(f"waveform nearly silent (std {float(wave.std()):.4f})")
    return problems


def margin_of(io, speaking_rate):
    valid = scaled_durations(io, speaking_rate)
    return float((valid - torch.round(valid)).abs().min())


# ----------------------------------------------------------------------------------------------------------------
# Fixtures


def build_fixture(name, fixture, tokenizer, max_attempts=200):
    """Seeds are tried in order until the calibrated model gives durations with a safe ceil() margin."""
    for seed in range(fixture["first_seed"], fixture["first_seed"] + max_attempts):
        model = make_model(fixture["config"], seed)
        calibrate_prior_log_std(model, fixture, tokenizer)
        calibrate_durations(model, fixture, tokenizer)
        calibrate_decoder(model, fixture, tokenizer)
        if fixture["weights"] == "legacy_f16":
            round_parameters_to_float16(model)
        results = {}
        problems = []
        for case in fixture["cases"]:
            input_ids, attention_mask, texts = case_inputs(fixture, case, tokenizer)
            io = run_forward(model, input_ids, attention_mask, case["speaker_id"], case["noise_scale"],
                             case["noise_scale_duration"], case["speaking_rate"])
            problems += [f"{case['name']}: {p}" for p in duration_problems(io, case["speaking_rate"])]
            problems += [f"{case['name']}: {p}" for p in waveform_problems(io)]
            results[case["name"]] = (case, texts, io)
        if not problems:
            return seed, model, results
        print(f"  {name}: seed {seed} rejected: {'; '.join(problems)}")
    raise RuntimeError(f"{name}: no seed in {max_attempts} attempts gave usable durations")


def save_model_files(name, fixture, model, tokenizer, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    if fixture["weights"] == "parametrizations_f32":
        model.save_pretrained(out_dir, safe_serialization=True)
    else:
        model.config.dtype = torch.float16  # the file holds F16 tensors
        model.config.save_pretrained(out_dir)
        safetensors.torch.save_file(legacy_state_dict(model, torch.float16),
                                    os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        model.config.dtype = torch.float32
    tokenizer.save_pretrained(out_dir)

    # The weight names are the ones this fixture is meant to exercise.
    with safetensors.safe_open(os.path.join(out_dir, "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
        dtypes = {handle.get_slice(k).get_dtype() for k in keys}
    has_legacy = any(k.endswith("weight_g") for k in keys)
    has_parametrizations = any("parametrizations.weight.original0" in k for k in keys)
    if fixture["weights"] == "parametrizations_f32":
        assert has_parametrizations and not has_legacy and dtypes == {"F32"}, (name, dtypes)
    else:
        assert has_legacy and not has_parametrizations and dtypes == {"F16"}, (name, dtypes)


def check_reload(name, fixture, out_dir, model, results):
    """transformers must load the saved directory to the same parameters and reproduce every io file exactly."""
    loaded, info = VitsModel.from_pretrained(out_dir, output_loading_info=True)
    loaded.eval()
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert not info.get(kind), f"{name}: {kind} when reloading: {info[kind]}"
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32, f"{name}: {key} loaded as {value.dtype}"
        assert torch.equal(value, original[key]), f"{name}: {key} changed on reload"
    reloaded_tokenizer = VitsTokenizer.from_pretrained(out_dir)
    for case_name, (case, texts, io) in results.items():
        input_ids, attention_mask, _ = case_inputs(fixture, case, reloaded_tokenizer)
        assert torch.equal(input_ids.to(torch.float32), io["input_ids"]), f"{name}/{case_name}: tokenizer reload"
        again = run_forward(loaded, input_ids, attention_mask, case["speaker_id"], case["noise_scale"],
                            case["noise_scale_duration"], case["speaking_rate"])
        for key in io:
            assert torch.equal(again[key], io[key]), f"{name}/{case_name}: {key} differs after reload"


def sort_safetensors_metadata(path):
    """safetensors writes __metadata__ in hash order, which changes from run to run; sort it in place so that
    regenerating the fixtures gives byte-identical files."""
    with open(path, "r+b") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        raw = handle.read(header_length)
        header = json.loads(raw, object_pairs_hook=dict)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        header = {"__metadata__": header.pop("__metadata__"), **header}
        rewritten = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        rewritten += b" " * (header_length - len(rewritten))
        assert len(rewritten) == header_length, f"{path}: header grew when sorting its metadata"
        handle.seek(8)
        handle.write(rewritten)


def write_io_files(name, out_dir, seed, results):
    for case_name, (case, texts, io) in results.items():
        metadata = {
            "fixture": name,
            "noise_scale": repr(case["noise_scale"]),
            "noise_scale_duration": repr(case["noise_scale_duration"]),
            "speaking_rate": repr(case["speaking_rate"]),
            "texts": json.dumps(texts, ensure_ascii=False),
            "seed": str(seed),
            "forward_seed": str(FORWARD_SEED),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }
        path = os.path.join(out_dir, case_name + ".safetensors")
        safetensors.torch.save_file(io, path, metadata=metadata)
        sort_safetensors_metadata(path)
        reread = safetensors.torch.load_file(path)
        assert reread.keys() == io.keys() and all(torch.equal(reread[k], io[k]) for k in io), path


def describe(name, seed, results):
    print(f"{name}: seed {seed}")
    for case_name, (case, texts, io) in results.items():
        frames = io["durations"].sum(dim=(1, 2)).tolist()
        print(f"  {case_name}: texts {texts}, ids {tuple(io['input_ids'].shape)}, frames {frames}, "
              f"waveform {tuple(io['waveform'].shape)}, ceil margin {margin_of(io, case['speaking_rate']):.4f}, "
              f"durations {io['durations'][:, 0, :].int().tolist()}")


def make_fixtures(golden_dir):
    tokenizer = make_tokenizer()
    for name, fixture in FIXTURES.items():
        seed, model, results = build_fixture(name, fixture, tokenizer)
        out_dir = os.path.join(golden_dir, name)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        save_model_files(name, fixture, model, tokenizer, out_dir)
        check_reload(name, fixture, out_dir, model, results)
        write_io_files(name, out_dir, seed, results)
        describe(name, seed, results)


# ----------------------------------------------------------------------------------------------------------------
# facebook/mms-tts-eng architecture


def mms_tts_eng_config():
    return VitsConfig(vocab_size=38)


def inference_parameter_names(model):
    """Parameters VitsModel.forward reads: not the posterior encoder, not the stochastic duration predictor's
    posterior branch, and not flows[1], which the reverse pass drops ("remove a useless vflow")."""
    names = []
    for name, _ in model.named_parameters():
        if name.startswith("posterior_encoder."):
            continue
        if name.startswith("duration_predictor.post_") or name.startswith("duration_predictor.flows.1."):
            continue
        names.append(name)
    return names


def make_mms_tts_eng(out_dir, tokenizer):
    os.makedirs(out_dir, exist_ok=True)
    config = mms_tts_eng_config()
    torch.manual_seed(0)
    model = VitsModel(config)
    state = legacy_state_dict(model, torch.float32)
    lines = [f"{name}\t{','.join(str(d) for d in tensor.shape)}" for name, tensor in sorted(state.items())]
    with open(os.path.join(out_dir, "state_dict.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as handle:
        handle.write(config.to_json_string())
    tokenizer.save_pretrained(out_dir)

    total = sum(t.numel() for t in state.values())
    modules = ["text_encoder", "flow", "decoder", "duration_predictor", "posterior_encoder", "embed_speaker"]
    per_module = {m: sum(t.numel() for k, t in state.items() if k.startswith(m + ".")) for m in modules}
    assert sum(per_module.values()) == total, "a parameter outside the listed modules"
    params = dict(model.named_parameters())
    inference = sum(params[n].numel() for n in inference_parameter_names(model))
    sdp = model.duration_predictor
    sdp_posterior = sum(p.numel() for n, p in sdp.named_parameters() if n.startswith("post_"))
    return dict(total=total, per_module=per_module, inference=inference, sdp_posterior=sdp_posterior,
                tensors=len(state))


def write_mms_readme(out_dir, counts):
    documented_total = 36_284_592
    rows = "\n".join(f"| {m} | {n:,} | {n / 1e6:.2f} M |" for m, n in counts["per_module"].items())
    verdict = ("matches" if counts["total"] == documented_total
               else f"DIFFERS from (by {counts['total'] - documented_total:+,})")
    text = f"""# facebook/mms-tts-eng architecture

Written by `tools/golden/make_golden.py` from transformers {transformers.__version__}:
`VitsModel(VitsConfig(vocab_size=38))`, which is facebook/mms-tts-eng's architecture (VitsConfig's defaults are
that model's settings; only the vocabulary size is given). No weights are stored here.

- `state_dict.txt`: one line per tensor, `name<TAB>comma-separated shape`, sorted by name, with the legacy
  weight-norm names `weight_g`/`weight_v` that facebook/mms-tts-eng's model.safetensors uses (transformers
  {transformers.__version__} itself saves them as `parametrizations.weight.original0`/`original1`).
  {counts['tensors']} tensors.
- `config.json`: `VitsConfig(vocab_size=38).to_json_string()`.
- `vocab.json`, `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`: written by
  `VitsTokenizer.save_pretrained` for a tokenizer built with mms-tts-eng's options (pad token "k" = id 0, also the
  blank; `<unk>` becomes added token 38, outside the 38-row embedding; add_blank, normalize, no phonemizer, no
  uroman, language "eng"). The vocabulary was reconstructed, not downloaded from the hub: the symbol list of
  transformers' tests/models/vits/test_tokenization_vits.py, whose integration test checks the ids of three
  sentences against facebook/mms-tts-eng's files (pinning the ids of the 28 symbols those sentences use; the
  script re-checks one of them), and whose full order agrees with independent copies of mms-tts-eng's vocab.json
  in public code.

## Parameter counts

Total: **{counts['total']:,}** ({verdict} the 36,284,592 in docs/vits_facts.md).

| module | parameters | |
|---|---|---|
{rows}

Of the duration predictor, {counts['sdp_posterior']:,} parameters are the stochastic predictor's posterior branch
(`post_*`), used only by the training objective.
Parameters read by inference (`VitsModel.forward`: everything except the posterior encoder, the duration
predictor's `post_*` branch and `duration_predictor.flows.1`, which the reverse pass skips):
**{counts['inference']:,}**.
"""
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=REPO_ROOT, help="repository root to write tests/data/... under")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same summation order on every machine that regenerates the files

    make_fixtures(os.path.join(args.root, "tests", "data", "golden"))
    mms_dir = os.path.join(args.root, "tests", "data", "mms_tts_eng")
    counts = make_mms_tts_eng(mms_dir, make_tokenizer())
    write_mms_readme(mms_dir, counts)
    print(f"mms-tts-eng: {counts['total']:,} parameters ({counts['tensors']} tensors), per module "
          f"{counts['per_module']}, inference {counts['inference']:,}")


if __name__ == "__main__":
    sys.exit(main())
