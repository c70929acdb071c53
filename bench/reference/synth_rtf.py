#!/usr/bin/env python3
"""Synthesis real-time factor of transformers' VitsModel: the reference for bench/synth_bench.cpp.

Same model directory, text, target lengths, speaking-rate calibration, batch and timing as
bench_synth: for each target the sentence is repeated to about --tokens-per-second tokens per
second of audio, one run at rate 1 captures the duration predictor's log-durations (a forward
hook), and the rate is solved so that sum(ceil(exp(log_duration) / rate)) comes out at the target
frame count. Each timed run is a whole forward call plus the waveform's copy to the host, with
torch.cuda.synchronize() before and after. fp32, eager (no compilation), TF32 off for cuDNN and
for matmul, set explicitly and printed.

Exit status: 0 done, 1 an error, 77 --device cuda without a usable device (skipped).
"""
import argparse
import json
import math
import statistics
import sys
import time

DEFAULT_TEXT = "The birch canoe slid on the smooth planks, and the boy glued the sheet to the dark blue background."
EXIT_SKIPPED = 77


def parse_seconds(text):
    out = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = -1.0
        if not value > 0:
            sys.exit(f"error: --seconds: '{item}' in '{text}' is not a positive number")
        out.append(value)
    return out


def peak_text(nbytes):
    return f"{nbytes / 2**20:.1f} MiB" if nbytes else "-"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF VitsModel directory (the one bench_synth reads)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--seconds", default="2,10", help="target audio lengths, comma-separated")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed before every run")
    p.add_argument("--tokens-per-second", type=float, default=15.0)
    p.add_argument("--no-calibrate", action="store_true", help="speak --text once at the config's speaking rate")
    p.add_argument("--json", help="write the results as JSON to this file")
    args = p.parse_args()
    if args.batch < 1 or args.runs < 1 or args.warmup < 0:
        sys.exit("error: --batch and --runs must be >= 1 and --warmup >= 0")
    targets = [0.0] if args.no_calibrate else parse_seconds(args.seconds)

    try:
        import torch
        import transformers
        from transformers import VitsModel, VitsTokenizer
    except ImportError as e:
        sys.exit(f"error: synth_rtf.py needs torch and transformers: {e}")

    transformers.utils.logging.disable_progress_bar()  # the weight-loading bar would fill the log
    if args.device == "cuda" and not torch.cuda.is_available():
        print("synth_rtf.py: skipped: --device cuda but torch sees no CUDA device")
        return EXIT_SKIPPED
    # Full fp32 arithmetic, as vitscuda's kernels do (cuBLAS default math, no TF32).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if args.device == "cuda" else "cpu"

    try:
        model, info = VitsModel.from_pretrained(args.model, output_loading_info=True)
    except TypeError:  # a transformers without output_loading_info
        model, info = VitsModel.from_pretrained(args.model), {}
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"error: {args.model} does not load cleanly into VitsModel: {problems}")
    model = model.float().eval().to(device)
    tokenizer = VitsTokenizer.from_pretrained(args.model)
    config = model.config
    hop = math.prod(config.upsample_rates)
    sr = config.sampling_rate

    print(f"synth_rtf.py: transformers {transformers.__version__}, torch {torch.__version__}, {args.model} on "
          f"{args.device} ({device_name}), batch {args.batch}, {args.warmup} warm-up + {args.runs} timed runs per target")
    print(f"fp32 eager; torch.backends.cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"torch.backends.cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")

    captured = {}

    def keep_log_duration(module, inputs, output):
        captured["log_duration"] = output.detach()

    def synth_once(ids, mask):
        torch.manual_seed(args.seed)
        if args.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask)
        out.waveform.cpu()
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    results = []
    for target in targets:
        # The sentence's words, cycled, until the text has the tokens for the target length (as bench_synth).
        if args.no_calibrate:
            text = args.text
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
        else:
            words = args.text.split()
            if not words:
                sys.exit("error: --text is empty")
            i = 0
            while True:
                if i >= 100000:
                    sys.exit(f"error: --text gives too few tokens to reach {target} s")
                text = " ".join(words[j % len(words)] for j in range(i + 1))
                ids = tokenizer(text, return_tensors="pt")["input_ids"]
                if ids.shape[1] >= target * args.tokens_per_second:
                    break
                i += 1
        tokens = ids.shape[1]
        ids = ids.repeat(args.batch, 1).to(device)
        mask = torch.ones_like(ids)

        model.speaking_rate = config.speaking_rate
        if not args.no_calibrate:
            model.speaking_rate = 1.0
            hook = model.duration_predictor.register_forward_hook(keep_log_duration)
            try:
                synth_once(ids, mask)  # also the first warm-up
            finally:
                hook.remove()
            exp_ld = torch.exp(captured["log_duration"][0, 0, :tokens].float()).cpu()
            target_frames = max(1, round(target * sr / hop))

            def frames_at(rate):
                return max(1, int(torch.ceil(exp_ld * (1.0 / rate)).sum().item()))

            lo, hi = math.log(1e-3), math.log(1e3)  # the largest length <= target: frames fall as rate rises
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if frames_at(math.exp(mid)) > target_frames:
                    lo = mid
                else:
                    hi = mid
            model.speaking_rate = math.exp(hi)
            got = frames_at(model.speaking_rate)
            if abs(got - target_frames) > 0.05 * target_frames:
                print(f"warning: target {target:.1f} s: {got} frames is the closest this text reaches (want {target_frames})")
        for _ in range(args.warmup):
            synth_once(ids, mask)

        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        walls = []
        out = None
        for _ in range(args.runs):
            wall, out = synth_once(ids, mask)
            walls.append(wall)
        peak = torch.cuda.max_memory_allocated(device) if args.device == "cuda" else 0
        reserved = torch.cuda.max_memory_reserved(device) if args.device == "cuda" else 0
        samples = int(out.sequence_lengths.sum().item())
        frames = int(out.sequence_lengths[0].item()) // hop
        audio = samples / sr
        median = statistics.median(walls)
        results.append(dict(target_seconds=target, tokens=tokens, frames=frames, speaking_rate=model.speaking_rate,
                            audio_seconds=audio, wall_seconds=median, wall_seconds_runs=walls, rtf=median / audio,
                            peak_memory_bytes=peak, peak_reserved_bytes=reserved))

    print(f"\n{'target_s':>8} {'tokens':>7} {'frames':>7} {'rate':>7} {'audio_s':>9} {'wall_s':>10} {'min_s':>10} "
          f"{'RTF':>8} {'peak_mem':>12}")
    for r in results:
        print(f"{r['target_seconds']:8.1f} {r['tokens']:7d} {r['frames']:7d} {r['speaking_rate']:7.3f} "
              f"{r['audio_seconds']:9.3f} {r['wall_seconds']:10.4f} {min(r['wall_seconds_runs']):10.4f} "
              f"{r['rtf']:8.4f} {peak_text(r['peak_memory_bytes']):>12}")
    print("RTF = median wall time / audio seconds (all items of the batch); peak_mem = torch.cuda.max_memory_allocated"
          if args.device == "cuda" else "RTF = median wall time / audio seconds (all items of the batch)")

    if args.json:
        doc = dict(program="synth_rtf.py", implementation="transformers", device=args.device, device_name=device_name,
                   model=args.model, seed=args.seed, batch=args.batch, warmup=args.warmup, runs=args.runs,
                   text=args.text, torch_version=torch.__version__, transformers_version=transformers.__version__,
                   tf32=dict(cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                             cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32),
                   timing="forward() plus the waveform's copy to the host, torch.cuda.synchronize() around it",
                   cases=results)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
