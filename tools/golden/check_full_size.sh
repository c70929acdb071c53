#!/usr/bin/env bash
# Full-size parity check: facebook/mms-tts-eng's architecture (VitsConfig(vocab_size=38)) with random weights,
# synthesised by transformers and by vitscuda with both noise scales at 0; prints the waveform lengths and the
# largest absolute difference.
#
# Usage: tools/golden/check_full_size.sh [BUILD_DIR] [TEXT]
#   BUILD_DIR  directory holding the weights_convert and vitscuda binaries (default ./build)
#   TEXT       sentence to speak (default below)
# Environment: TOLERANCE (default 1e-3): the largest waveform difference accepted; SEED (default 7000): first
#   initialisation seed tried (seeds are skipped until the durations are safely away from ceil() boundaries).
# Exit status 0 when the lengths agree and the difference is within TOLERANCE, 1 otherwise.
set -euo pipefail

BUILD=${1:-./build}
TEXT=${2:-"Kind words from a full size model."}
TOLERANCE=${TOLERANCE:-1e-3}
SEED=${SEED:-7000}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for binary in weights_convert vitscuda; do
  if [[ ! -x "$BUILD/$binary" ]]; then
    echo "error: $BUILD/$binary not found or not executable (pass the build directory as the first argument)" >&2
    exit 2
  fi
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== transformers: building and running the full-size model (seed from $SEED)"
python3 - "$SCRIPT_DIR" "$WORK" "$TEXT" "$SEED" <<'PYTHON'
import os
import sys

script_dir, work, text, first_seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, script_dir)
import numpy as np
import torch

import make_golden as mg

torch.use_deterministic_algorithms(True)
tokenizer = mg.make_tokenizer()
fixture = dict(
    config=dict(vocab_size=38),  # facebook/mms-tts-eng: VitsConfig defaults
    first_seed=first_seed,
    weights="parametrizations_f32",
    batch_texts=None,
    single_text=text,
    cases=[dict(name="full", noise_scale=0.0, noise_scale_duration=0.0, speaking_rate=1.0, speaker_id=None,
                single=True)],
)
# The same construction as the tiny fixtures: perturbed constant parameters, calibrated prior, durations and
# decoder gain, and a seed whose durations sit at least mg.CEIL_MARGIN away from an integer.
seed, model, results = mg.build_fixture("mms_tts_eng_random", fixture, tokenizer, max_attempts=50)
_, _, io = results["full"]
hf_dir = os.path.join(work, "hf")
model.save_pretrained(hf_dir, safe_serialization=True)
tokenizer.save_pretrained(hf_dir)
length = int(io["sequence_lengths"][0])
np.save(os.path.join(work, "reference.npy"), io["waveform"][0, :length].numpy())
print(f"seed {seed}: {io['input_ids'].shape[1]} tokens, {int(io['durations'].sum())} frames, {length} samples, "
      f"ceil margin {mg.margin_of(io, 1.0):.4f}")
PYTHON

echo "== vitscuda: import and synthesis"
"$BUILD/weights_convert" import "$WORK/hf" "$WORK/ours_model"
"$BUILD/vitscuda" synth --model "$WORK/ours_model" --text "$TEXT" --out "$WORK/ours.wav" \
  --noise-scale 0 --noise-scale-duration 0 --wav-format float

echo "== comparison"
python3 - "$WORK" "$TOLERANCE" <<'PYTHON'
import os
import struct
import sys

import numpy as np

work, tolerance = sys.argv[1], float(sys.argv[2])


def read_float_wav(path):
    """Mono float32 samples of a WAV file (IEEE float, or WAVE_FORMAT_EXTENSIBLE with a float subformat)."""
    try:
        import soundfile
        data, _ = soundfile.read(path, dtype="float32", always_2d=True)
        if data.shape[1] != 1:
            raise SystemExit(f"{path}: {data.shape[1]} channels, expected 1")
        return data[:, 0]
    except ImportError:
        pass
    with open(path, "rb") as handle:
        blob = handle.read()
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise SystemExit(f"{path}: not a RIFF/WAVE file")
    position, fmt, data = 12, None, None
    while position + 8 <= len(blob):
        chunk_id, size = blob[position:position + 4], struct.unpack("<I", blob[position + 4:position + 8])[0]
        body = blob[position + 8:position + 8 + size]
        if chunk_id == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == 0xFFFE:  # extensible: the real format code starts the subformat GUID
                fmt = (struct.unpack("<H", body[24:26])[0],) + fmt[1:]
        elif chunk_id == b"data":
            data = body
        position += 8 + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None or data is None:
        raise SystemExit(f"{path}: missing fmt or data chunk")
    format_code, channels, rate, _, _, bits = fmt
    if format_code != 3 or bits != 32 or channels != 1:
        raise SystemExit(f"{path}: format {format_code}, {bits} bits, {channels} channels; expected mono float32")
    return np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")


reference = np.load(os.path.join(work, "reference.npy"))
ours = read_float_wav(os.path.join(work, "ours.wav"))
common = min(len(reference), len(ours))
difference = np.abs(reference[:common].astype(np.float64) - ours[:common].astype(np.float64))
max_difference = float(difference.max()) if common else float("inf")
relative_l2 = float(np.linalg.norm(reference[:common] - ours[:common]) / max(np.linalg.norm(reference[:common]), 1e-30))
print(f"samples: transformers {len(reference)}, vitscuda {len(ours)}")
print(f"max |difference| over {common} samples: {max_difference:.3e} (at sample {int(difference.argmax()) if common else -1})")
print(f"relative L2 difference: {relative_l2:.3e}; waveform peak {float(np.abs(reference).max()):.3f}")
ok = len(reference) == len(ours) and max_difference <= tolerance
print("PASS" if ok else f"FAIL (tolerance {tolerance:g})")
sys.exit(0 if ok else 1)
PYTHON
