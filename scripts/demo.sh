#!/usr/bin/env bash
# The quick-start demo: builds vitscuda, makes a model (a random mms-tts-eng-sized one, or
# the HF model directory given with --model), synthesises a sentence and prints where everything is.
# Usage: scripts/demo.sh [--model HF_DIR] [--out DIR] [--text "..."]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hf_model="" out="$root/demo_out" text="Hello from vitscuda. This voice was made without a deep learning framework."
while (($#)); do
  case "$1" in
    --model) hf_model="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --text) text="$2"; shift 2 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
build="$root/build"
"$root/scripts/setup.sh" "$build" >/dev/null
mkdir -p "$out"
if [[ -n "$hf_model" ]]; then
  "$build/weights_convert" import "$hf_model" "$out/model"
else
  "$build/weights_convert" init --config "$root/tests/data/mms_tts_eng/config.json" --seed 1 "$out/model"
fi
"$build/vitscuda" info "$out/model"
"$build/vitscuda" synth --model "$out/model" --text "$text" --out "$out/hello.wav"
echo
echo "demo: model in $out/model, audio in $out/hello.wav"
