#!/usr/bin/env bash
# The quick-start demo: builds vitscuda, synthesises a ~200-utterance English corpus with espeak-ng,
# makes a small model (or imports the HF model given with --model), prepares the data, trains
# briefly, saves the final model, synthesises a sentence with it and prints where everything is.
# Usage: scripts/demo.sh [--model HF_DIR] [--out DIR] [--epochs N] [--utterances N] [--text "..."]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hf_model="" out="$root/demo_out" epochs=2 utterances=200
text="this voice was trained with vitscuda."
while (($#)); do
  case "$1" in
    --model) hf_model="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --utterances) utterances="$2"; shift 2 ;;
    --text) text="$2"; shift 2 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
build="$root/build"
echo "== building (scripts/setup.sh)"
VITSCUDA_BUILD_TARGETS="vitscuda weights_convert" "$root/scripts/setup.sh" "$build" >/dev/null
rm -rf "$out"
mkdir -p "$out"

echo "== corpus: $utterances utterances synthesised with espeak-ng"
"$root/scripts/make_demo_corpus.sh" "$out/corpus" "$utterances"

if [[ -n "$hf_model" ]]; then
  echo "== importing $hf_model"
  "$build/weights_convert" import "$hf_model" "$out/model"
else
  echo "== a randomly initialised small model (scripts/demo_model/config.json, mms-tts-eng vocabulary)"
  "$build/weights_convert" init --config "$root/scripts/demo_model/config.json" --seed 1 "$out/model"
fi

echo "== prepare"
"$build/vitscuda" prepare --manifest "$out/corpus/metadata.csv" --audio-dir "$out/corpus" --model "$out/model" \
  --out "$out/data"

echo "== train ($epochs epochs)"
# The full objective with a freshly initialised discriminator: 20 updates train it alone (the default, 200,
# would take all of the demo's 50 updates) before its terms reach the generator.
"$build/vitscuda" train --data "$out/data" --model "$out/model" --out "$out/training" --epochs "$epochs" \
  --batch-size 8 --segment-frames 32 --lr 2e-4 --warmup-steps 10 --checkpoint-every 25 --eval-every 25 --log-every 5 \
  --disc-warmup-steps 20

echo "== synthesis with the trained model"
"$build/vitscuda" synth --model "$out/training/final_model" --text "$text" --out "$out/trained.wav" --seed 1

elapsed=$(( $(date +%s) - start ))
last_metrics=$(tail -n 1 "$out/training/metrics.jsonl")
cat <<SUMMARY

== demo finished in ${elapsed} s
  corpus              $out/corpus (metadata.csv, wavs/)
  prepared data       $out/data (train.vcds, eval.vcds, rejected.tsv)
  checkpoints         $out/training/checkpoints
  metrics             $out/training/metrics.jsonl (last: $last_metrics)
  final model (HF)    $out/training/final_model
  synthesised audio   $out/trained.wav
SUMMARY
