#!/usr/bin/env bash
# Crash safety of `vitscuda train`: a short CPU run on the demo corpus and model is killed with
# SIGKILL at random moments (at start-up, during training steps, during checkpoint writes), then
# continued with --resume, over and over. After every kill it checks that
#   - the prepared cache is intact (`vitscuda verify` of every CRC, and its bytes unchanged);
#   - no checkpoint directory under its final name is incomplete or corrupt, and the resumed run
#     loads exactly the newest complete checkpoint, found independently of vitscuda (every file's
#     size and CRC32 recomputed with gzip against MANIFEST.json) and by `vitscuda verify`;
# and at the end that the final parameters, the optimizer moments and the metrics log's losses are
# byte for byte those of an uninterrupted run with the same seed.
# Prints a summary (kills, phases hit, checkpoints loaded, result); exits non-zero on any failure.
#
# Usage: scripts/crash_test.sh [--build DIR] [--work DIR] [--kills N] [--seed S] [--steps N] [--objective NAME]
#   --build  build directory with vitscuda and weights_convert (built if missing; default build)
#   --work   scratch directory; the corpus, model and prepared data in it are reused (default
#            BUILD/crash_test)
#   --kills  number of SIGKILLs (default 20); --seed: seed of the kill schedule and of training
#   --steps  optimizer steps of the run (default 48); --objective: the training objective (default full)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build" work="" kills=20 seed=1 steps=48 objective=full
while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --kills) kills="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --objective) objective="$2"; shift 2 ;;
    *) echo "crash_test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
build="$(mkdir -p "$build" && cd "$build" && pwd)"
work="${work:-$build/crash_test}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
vitscuda="$build/vitscuda"
# One thread: the run is small, the machine may be shared, and the comparison is bit for bit.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
start_time=$(date +%s)

if [[ ! -x "$vitscuda" || ! -x "$build/weights_convert" ]]; then
  echo "== building vitscuda and weights_convert in $build"
  VITSCUDA_BUILD_TARGETS="vitscuda weights_convert" "$root/scripts/setup.sh" "$build" >/dev/null
fi

failures=()
fail() {
  failures+=("$1")
  echo "FAIL: $1" >&2
}

# ------------------------------------------------------------------ corpus, model, prepared data
if [[ ! -s "$work/corpus/metadata.csv" ]]; then
  echo "== demo corpus (espeak-ng, 24 utterances)"
  rm -rf "$work/corpus"
  "$root/scripts/make_demo_corpus.sh" "$work/corpus" 24 >/dev/null
fi
if [[ ! -s "$work/model/model.safetensors" ]]; then
  echo "== small random model (scripts/demo_model/config.json)"
  rm -rf "$work/model"
  "$build/weights_convert" init --config "$root/scripts/demo_model/config.json" --seed 1 "$work/model" >/dev/null
fi
if ! "$vitscuda" verify "$work/data" >/dev/null 2>&1; then
  echo "== prepare"
  rm -rf "$work/data"
  "$vitscuda" prepare --manifest "$work/corpus/metadata.csv" --audio-dir "$work/corpus" --model "$work/model" \
    --out "$work/data" --eval-fraction 0.1 >/dev/null
fi
cache_sums="$(cd "$work/data" && sha256sum train.vcds eval.vcds)"

# Checkpoint every step and keep two, so that commits and prunes happen all the time; a few
# epochs, so that epoch boundaries and the data order are restored too; random segments, so that
# the random-number stream has to be restored exactly.
train_args=(train --objective "$objective" --data "$work/data" --model "$work/model" --batch-size 4 --segment-frames 16
  --epochs 1000 --max-steps "$steps" --checkpoint-every 1 --keep-checkpoints 2 --eval-every 8
  --log-every 1 --lr 2e-4 --warmup-steps 4 --seed "$seed")

# ------------------------------------------------------------------ the uninterrupted run
echo "== reference: $steps steps without interruption"
rm -rf "$work/reference" "$work/run" "$work/logs"
mkdir -p "$work/logs"
t0=$(date +%s.%N)
"$vitscuda" "${train_args[@]}" --out "$work/reference" >"$work/logs/reference.log" 2>&1 ||
  { cat "$work/logs/reference.log"; echo "crash_test: the reference run failed" >&2; exit 1; }
reference_seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
step_seconds=$(awk -v t="$reference_seconds" -v n="$steps" 'BEGIN { printf "%.3f", t / n }')
echo "   $reference_seconds s, about $step_seconds s per step with its checkpoint"

# ------------------------------------------------------------------ independent checks
# CRC-32 (IEEE, as zlib) of a file, from the trailer gzip writes: an implementation independent
# of vitscuda's.
crc32_of() { gzip -1 -c "$1" | tail -c 8 | head -c 4 | od -An -tx4 | tr -d ' \n'; }

# "ok" when every file MANIFEST.json of checkpoint DIR lists has the listed size and CRC32 and
# nothing else is in the directory; otherwise the reason.
check_checkpoint() {
  local dir="$1" manifest="$1/MANIFEST.json" name size crc listed=" MANIFEST.json "
  [[ -f "$manifest" ]] || { echo "no MANIFEST.json"; return; }
  # MANIFEST.json is pretty-printed with sorted keys: "crc32", "name", "size" per file entry.
  while read -r crc name size; do
    listed+="$name "
    [[ -f "$dir/$name" ]] || { echo "$name missing"; return; }
    [[ "$(stat -c %s "$dir/$name")" == "$size" ]] || { echo "$name has the wrong size"; return; }
    [[ "$(crc32_of "$dir/$name")" == "$crc" ]] || { echo "$name has the wrong CRC32"; return; }
  done < <(awk -F'"' '/"crc32":/ {c=$4} /"name":/ {n=$4} /"size":/ {s=$3; gsub(/[^0-9]/, "", s); print c, n, s}' "$manifest")
  [[ "$listed" != " MANIFEST.json " ]] || { echo "MANIFEST.json lists no files"; return; }
  for f in "$dir"/*; do
    [[ "$listed" == *" $(basename "$f") "* ]] || { echo "unlisted file $(basename "$f")"; return; }
  done
  echo ok
}

# The newest checkpoint that checks out (empty if none). A step-N directory newer than it that does
# not check out would be a torn checkpoint under its final name, which must never exist; an older
# broken one is what an interrupted prune leaves (it is removed later), which is allowed.
newest_valid=""
scan_checkpoints() {
  newest_valid=""
  local ck="$work/run/checkpoints" d verdict
  [[ -d "$ck" ]] || return 0
  for d in $(find "$ck" -mindepth 1 -maxdepth 1 -type d -name 'step-*' ! -name '*.tmp-*' -printf '%f\n' |
    sort -t- -k2,2nr); do
    verdict="$(check_checkpoint "$ck/$d")"
    if [[ "$verdict" == ok ]]; then
      newest_valid="$ck/$d"
      return 0
    fi
    fail "kill $kill: $ck/$d exists under its final name but is not a complete checkpoint: $verdict"
  done
}

# Checkpoints older than the newest complete one that do not check out, one name per line: what a
# prune that was interrupted while deleting leaves (the next prune removes them).
half_pruned() {
  local ck="$work/run/checkpoints" d
  [[ -n "$newest_valid" ]] || return 0
  for d in $(find "$ck" -mindepth 1 -maxdepth 1 -type d -name 'step-*' ! -name '*.tmp-*' -printf '%f\n' | sort); do
    [[ "$ck/$d" != "$newest_valid" && "$(check_checkpoint "$ck/$d")" != ok ]] && echo "$d"
  done
  return 0
}

# What the run was doing when it was killed, from what it left on disk and in its log (called after
# scan_checkpoints).
phase_of() {
  local log="$1" pid="$2" ck="$work/run/checkpoints" tmp
  # Only the killed run's own temporary directory (the name carries the writer's pid).
  tmp="$(find "$ck" -mindepth 1 -maxdepth 1 -type d -name "step-*.tmp-$pid" 2>/dev/null | head -n 1)"
  # A half-removed old checkpoint that was not there before this run: its prune was cut short.
  if [[ -n "$(comm -13 <(echo "$pruned_before") <(half_pruned))" ]]; then echo "checkpoint prune: deleting an old checkpoint"
  elif [[ -n "$tmp" ]]; then
    if [[ -e "$tmp/MANIFEST.json" ]]; then echo "checkpoint write: manifest written, before the rename"
    elif compgen -G "$tmp/trainer_state.json" >/dev/null; then echo "checkpoint write: trainer state and config"
    elif compgen -G "$tmp/optimizer.safetensors*" >/dev/null; then echo "checkpoint write: optimizer moments"
    else echo "checkpoint write: model weights"; fi
  elif ! grep -q '^training ' "$log"; then echo "start-up (model, data, checkpoint scan)"
  elif compgen -G "$work/run/final_model/*.tmp-*" >/dev/null; then echo "final model write"
  elif grep -q '^training done' "$log"; then echo "after the run finished"
  else echo "training step (between checkpoint writes)"; fi
}

# ------------------------------------------------------------------ kill, check, resume
declare -A phases=()
loaded=()
RANDOM=$seed
kill=0
echo "== $kills SIGKILLs, each followed by a resume"
scan_checkpoints
while ((kill < kills)); do
  kill=$((kill + 1))
  expected="$newest_valid"
  log="$work/logs/run-$kill.log"
  args=("${train_args[@]}" --out "$work/run")
  [[ -n "$expected" ]] && args+=(--resume)
  # Three kinds of moment, in turn: a random time in the first 0.6 s; a random time into the
  # training steps; and a given moment of a checkpoint write, each in turn: a file of it appearing
  # in its temporary directory (the write may have moved on by the time the kill lands), or one of
  # the two moments too short to hit by timing, where vitscuda waits when told to
  # (VITSCUDA_TEST_CRASH_POINT, io/checkpoint.cpp): the manifest written but the directory not yet
  # renamed, and an old checkpoint half removed by the prune.
  targets=("model.safetensors*" "optimizer.safetensors*" "trainer_state.json" "MANIFEST.json"
    "crash point: checkpoint-before-rename" "crash point: checkpoint-prune")
  target="${targets[$(((kill / 3) % ${#targets[@]}))]}"
  crash_point=""
  ((kill % 3 == 0)) && [[ "$target" == "crash point: "* ]] && crash_point="${target#crash point: }"
  pruned_before="$(half_pruned)"
  VITSCUDA_TEST_CRASH_POINT="$crash_point" "$vitscuda" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  case $((kill % 3)) in
    1) sleep "0.$(printf '%03d' $((RANDOM % 600)))" ;;
    2) sleep "$(awk -v s="$step_seconds" -v r=$((RANDOM % 400)) 'BEGIN { printf "%.3f", 0.5 + s * r / 100 }')" ;;
    0) for _ in $(seq 20000); do
         if [[ -n "$crash_point" ]]; then
           grep -qF "$target" "$log" && break
         else
           compgen -G "$work/run/checkpoints/step-*.tmp-$pid/$target" >/dev/null && break
         fi
         kill -0 "$pid" 2>/dev/null || break
         sleep 0.001
       done ;;
  esac
  if ! kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "   kill $kill: the run ended before the kill (exit status below); retrying"
    tail -n 3 "$log"
    grep -q '^training done' "$log" && { fail "the run finished before $kills kills: raise --steps"; break; }
    kill=$((kill - 1))
    scan_checkpoints
    continue
  fi
  wait "$pid" 2>/dev/null || true
  scan_checkpoints
  phase="$(phase_of "$log" "$pid")"
  phases[$phase]=$((${phases[$phase]:-0} + 1))

  # The resume this run started with loaded the checkpoint the scan before it found.
  if [[ -n "$expected" ]]; then
    if grep -q '^resumed from' "$log"; then
      got="$(sed -n 's/^resumed from \(.*\): step .*/\1/p' "$log")"
      [[ "$got" == "$expected" ]] || fail "kill $kill: resumed from '$got', expected the newest complete '$expected'"
      loaded+=("$(basename "$got")")
    elif [[ "$phase" != start-up* ]]; then
      fail "kill $kill: the run got past start-up without saying which checkpoint it loaded"
    fi
  fi
  grep -q "^error:" "$log" && fail "kill $kill: the run reported an error: $(grep '^error:' "$log")"

  # After the kill: the cache is untouched and intact, every final-named checkpoint is complete, and
  # vitscuda's own scan picks the same checkpoint as the independent one.
  [[ "$(cd "$work/data" && sha256sum train.vcds eval.vcds)" == "$cache_sums" ]] ||
    fail "kill $kill: the prepared cache changed"
  "$vitscuda" verify "$work/data" >"$work/logs/verify-data-$kill.log" 2>&1 ||
    fail "kill $kill: the prepared cache does not verify: $(grep FAILED "$work/logs/verify-data-$kill.log")"
  if [[ -n "$newest_valid" ]]; then
    # Its exit status also counts older checkpoints that an interrupted prune left half-deleted;
    # what matters here is the checkpoint a resume would load.
    "$vitscuda" verify "$work/run" >"$work/logs/verify-run-$kill.log" 2>&1 || true
    grep -qF "newest valid: $newest_valid " "$work/logs/verify-run-$kill.log" ||
      fail "kill $kill: vitscuda verify and the independent check disagree on the newest checkpoint:" \
        "$(grep -E 'newest|FAILED' "$work/logs/verify-run-$kill.log")"
  fi
  printf '   kill %2d: %-48s newest checkpoint now %s\n' "$kill" "$phase" "${newest_valid:+$(basename "$newest_valid")}"
done

# ------------------------------------------------------------------ the last resume runs to the end
scan_checkpoints
expected="$newest_valid"
"$vitscuda" "${train_args[@]}" --out "$work/run" ${expected:+--resume} >"$work/logs/final.log" 2>&1 ||
  fail "the final resumed run failed: $(tail -n 3 "$work/logs/final.log")"
if [[ -n "$expected" ]]; then
  got="$(sed -n 's/^resumed from \(.*\): step .*/\1/p' "$work/logs/final.log")"
  [[ "$got" == "$expected" ]] || fail "final run: resumed from '$got', expected '$expected'"
  loaded+=("$(basename "$got")")
fi

# Bit-exact against the uninterrupted run: weights, optimizer moments, losses step by step.
same_bytes() { cmp -s "$1" "$2" || fail "$3 differs from the uninterrupted run's"; }
same_bytes "$work/reference/final_model/model.safetensors" "$work/run/final_model/model.safetensors" \
  "final_model/model.safetensors"
for f in model.safetensors optimizer.safetensors; do
  same_bytes "$work/reference/checkpoints/step-$steps/$f" "$work/run/checkpoints/step-$steps/$f" "step-$steps/$f"
done
losses() { grep '"loss":' "$1" | sed 's/.*"loss":\([^,}]*\).*"step":\([0-9]*\)[,}].*/\2 \1/'; }
if [[ "$(losses "$work/reference/metrics.jsonl")" != "$(losses "$work/run/metrics.jsonl")" ]]; then
  fail "metrics.jsonl: the (step, loss) records differ from the uninterrupted run's"
  diff <(losses "$work/reference/metrics.jsonl") <(losses "$work/run/metrics.jsonl") | head -n 10 >&2 || true
fi
[[ "$(cd "$work/data" && sha256sum train.vcds eval.vcds)" == "$cache_sums" ]] || fail "the prepared cache changed"

# ------------------------------------------------------------------ summary
elapsed=$(($(date +%s) - start_time))
echo
echo "== crash test summary ($elapsed s)"
echo "   kills: $kill SIGKILL(s) over a $steps-step run (checkpoint every step, 2 kept)"
echo "   phases hit:"
for p in "${!phases[@]}"; do printf '     %3d  %s\n' "${phases[$p]}" "$p"; done | sort -k2
echo "   checkpoints loaded by the resumed runs (${#loaded[@]}): ${loaded[*]:-none}"
echo "   checks after each kill: cache bytes and CRCs, every final-named checkpoint complete, the newest"
echo "   one loaded; at the end: model.safetensors, optimizer moments and losses against the reference"
if ((${#failures[@]})); then
  echo "   result: FAILED (${#failures[@]} problem(s))"
  printf '     - %s\n' "${failures[@]}"
  exit 1
fi
echo "   result: PASSED (final parameters identical to the uninterrupted run, byte for byte)"
