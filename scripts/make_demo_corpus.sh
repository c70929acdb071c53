#!/usr/bin/env bash
# Synthesises a small English speech corpus with espeak-ng, in LJSpeech layout:
#   OUT_DIR/wavs/demo_NNNN.wav (22050 Hz, 16-bit mono) and OUT_DIR/metadata.csv (id|text|text).
# Sentences are built from word lists with a fixed pseudo-random sequence, so the same N gives
# the same corpus on every machine; voice, speed and pitch vary per utterance from the same
# sequence. `vitscuda prepare` resamples the audio to the model's rate.
# Usage: scripts/make_demo_corpus.sh OUT_DIR [N=200]
set -euo pipefail

if (($# < 1 || $# > 2)); then
  echo "usage: $0 OUT_DIR [N=200]" >&2
  exit 2
fi
out="$1"
n="${2:-200}"
if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1 || n > 5000)); then
  echo "make_demo_corpus: N must be an integer in 1..5000, got '$n'" >&2
  exit 2
fi
command -v espeak-ng >/dev/null || {
  echo "make_demo_corpus: espeak-ng not found (apt-get install espeak-ng)" >&2
  exit 1
}

mkdir -p "$out/wavs"
jobs="$out/.jobs"
# One line per utterance: id, voice, speed, pitch, text (tab-separated). The generator is the
# Park-Miller minimal standard LCG in integer-exact double arithmetic (the product stays below
# 2^53), because awk's own rand() differs between awk implementations.
awk -v n="$n" '
function rnd(m) { seed = (seed * 16807) % 2147483647; return seed % m }
function pick(list,   a, k) { k = split(list, a, " "); return a[rnd(k) + 1] }
function phrase(   s) {
  s = pick(det) " "
  if (rnd(2)) s = s pick(adj) " "
  return s pick(noun)
}
function sentence(   s, t, w) {
  t = rnd(6)
  if (t == 0)      s = phrase() " " pick(verb) " " phrase()
  else if (t == 1) s = phrase() " " pick(verb) " " pick(prep) " " phrase()
  else if (t == 2) s = phrase() " " pick(adv) " " pick(verb) " " phrase() ", " \
                       pick(conj) " " phrase() " " pick(verb) " " pick(prep) " " phrase()
  else if (t == 3) s = pick(qw) " " pick(aux) " " phrase() " " pick(base) " " phrase()
  else if (t == 4) s = pick(intro) ", " phrase() " " pick(verb) " " phrase() " " pick(prep) " " phrase()
  else             s = phrase() " " pick(verb) " " phrase() " " pick(adv)
  return s (t == 3 ? "?" : ".")
}
function words(s,   a) { gsub(/[,.?]/, "", s); return split(s, a, " ") }
BEGIN {
  seed = 20240531
  det   = "the a this that every one my your our their some"
  adj   = "quick lazy small large quiet loud bright dark warm cold old young green blue gentle clever happy tired"
  noun  = "fox dog cat river city garden window teacher child bird ship market forest letter song road bridge lamp"
  verb  = "finds sees follows paints carries watches crosses builds opens answers reaches hears"
  base  = "find see follow paint carry watch cross build open answer reach hear"
  prep  = "near over under beside behind through across toward"
  adv   = "slowly quickly quietly often always rarely happily carefully"
  conj  = "and but while because"
  qw    = "why where when how"
  aux   = "does did will can"
  intro = "today yesterday tonight meanwhile later"
  nvoice = split("en-us en-us+f3 en-us+m3 en en+f2 en+m2 en-gb-x-rp en-us+f4", voice, " ")
  made = 0
  while (made < n) {
    s = sentence()
    c = words(s)
    if (c < 5 || c > 12 || (s in seen)) continue
    seen[s] = 1
    made++
    printf "demo_%04d\t%s\t%d\t%d\t%s\n", made, voice[rnd(nvoice) + 1], 150 + rnd(31), 40 + rnd(21), s
  }
}' >"$jobs"

# espeak-ng writes each WAV directly (-w gives correct RIFF sizes); two processes at a time.
# The fields travel NUL-separated, five per job, so the text needs no quoting.
export DEMO_CORPUS_WAVS="$out/wavs"
tr '\t\n' '\0\0' <"$jobs" |
  xargs -0 -n5 -P2 sh -c 'espeak-ng -v "$2" -s "$3" -p "$4" -w "$DEMO_CORPUS_WAVS/$1.wav" "$5"' sh

awk -F'\t' '{ printf "%s|%s|%s\n", $1, $5, $5 }' "$jobs" >"$out/metadata.csv.tmp"
mv "$out/metadata.csv.tmp" "$out/metadata.csv"
rm -f "$jobs"
echo "make_demo_corpus: $n utterances in $out/wavs, manifest $out/metadata.csv"
