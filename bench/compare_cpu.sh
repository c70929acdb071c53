#!/usr/bin/env bash
# vitscuda's CPU path beside PyTorch's, in one run, with the same settings and the same thread count:
#   training step  bench_train --device cpu      vs bench/reference/train_step.py --device cpu
#                  (b4_whole, b4_whole_recompute, b16_seg32, b16_seg32_recompute at --seconds 2)
#   synthesis      bench_synth --device cpu      vs bench/reference/synth_rtf.py --device cpu (2 s and 10 s)
# Every case runs in a process of its own, vitscuda's then PyTorch's back to back, so that each process's peak
# resident set size (getrusage's ru_maxrss of the finished child, the same measurement for both) is that case's.
# The whole series runs VITSCUDA_COMPARE_ROUNDS times (default 3), one round after the other, so that a slow phase
# of a shared machine falls on one round rather than on one side. Prints one table: both times (the median over
# the rounds of each process's own median), both peak RSS, the ratio of the medians and each round's ratio
# (vitscuda / PyTorch: below 1 is faster or smaller).
#
# Usage: bench/compare_cpu.sh [OUT_DIR]        (default: build-compare-cpu/results; JSON and logs land there)
# Environment:
#   VITSCUDA_COMPARE_BUILD    build directory (default build-compare-cpu: a CPU-only Release build of its own)
#   VITSCUDA_COMPARE_VENV     a Python venv with torch (CPU) and transformers to use as it is; without it the script
#                             uses (creating and filling it if needed, and saying so) .venv-bench at the repository root
#   VITSCUDA_COMPARE_THREADS  threads for both sides (OMP_NUM_THREADS, torch's intra-op threads; default nproc)
#   VITSCUDA_COMPARE_STEPS    timed training steps per setting (default 3; one warm-up step before them)
#   VITSCUDA_COMPARE_RUNS     timed synthesis runs per length (default 3; one warm-up run before them)
#   VITSCUDA_COMPARE_SECONDS  utterance length of the training settings (default 2)
#   VITSCUDA_COMPARE_ROUNDS   times the whole series runs (default 3; about 7 minutes per round on 2 cores)
# Exit status: 0 the table was printed (a case that failed shows its exit status in the table), 1 the build, the
# venv or the random model could not be made, 2 VITSCUDA_COMPARE_ROUNDS is not a positive integer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${VITSCUDA_COMPARE_BUILD:-$root/build-compare-cpu}"
out="${1:-$build/results}"
threads="${VITSCUDA_COMPARE_THREADS:-$(nproc)}"
steps="${VITSCUDA_COMPARE_STEPS:-3}"
runs="${VITSCUDA_COMPARE_RUNS:-3}"
train_seconds="${VITSCUDA_COMPARE_SECONDS:-2}"
rounds="${VITSCUDA_COMPARE_ROUNDS:-3}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare_cpu: VITSCUDA_COMPARE_ROUNDS=$rounds is not a positive integer" >&2; exit 2; }
config="$root/tests/data/mms_tts_eng/config.json"
mkdir -p "$out"

# ---------------------------------------------------------------- vitscuda, CPU-only Release
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  echo "compare_cpu: configuring a CPU-only Release build in $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVITSCUDA_ENABLE_CUDA=OFF \
    -DVITSCUDA_BUILD_TESTS=OFF "${launcher[@]}" >"$out/cmake.log" 2>&1 ||
    { cat "$out/cmake.log"; echo "compare_cpu: configuring failed" >&2; exit 1; }
fi
echo "compare_cpu: building bench_train bench_synth weights_convert in $build"
cmake --build "$build" -j "$(nproc)" --target bench_train bench_synth weights_convert >"$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; echo "compare_cpu: the build failed (log: $out/build.log)" >&2; exit 1; }

# ---------------------------------------------------------------- PyTorch's venv
if [[ -n "${VITSCUDA_COMPARE_VENV:-}" ]]; then
  venv="$VITSCUDA_COMPARE_VENV"
else
  venv="$root/.venv-bench"
fi
python="$venv/bin/python"
if ! "$python" -c "import torch, transformers, numpy" 2>/dev/null; then
  if [[ -n "${VITSCUDA_COMPARE_VENV:-}" ]]; then
    echo "compare_cpu: VITSCUDA_COMPARE_VENV=$venv cannot import torch, transformers and numpy" >&2
    exit 1
  fi
  echo "compare_cpu: installing torch (CPU build), transformers and numpy into $venv"
  [[ -x "$python" ]] || python3 -m venv "$venv"
  # PyTorch's own index has the CPU-only wheel (a fraction of the size); where it cannot be reached, PyPI's wheel
  # (CUDA libraries included) runs on the CPU just the same.
  if ! "$python" -m pip install -q --retries 1 --timeout 30 --index-url https://download.pytorch.org/whl/cpu torch; then
    echo "compare_cpu: download.pytorch.org unreachable; installing torch from PyPI instead"
    "$python" -m pip install -q torch
  fi
  "$python" -m pip install -q transformers numpy
fi

# ---------------------------------------------------------------- the random model synthesis reads
model="$out/model"
if [[ ! -f "$model/model.safetensors" ]]; then
  echo "compare_cpu: writing a random mms-tts-eng model to $model"
  { "$build/weights_convert" init --config "$config" "$out/model-init" --tokenizer "$root/tests/data/mms_tts_eng" \
      --seed 0 &&
    "$build/weights_convert" export "$out/model-init" "$model" --layout parametrizations; } >"$out/model.log" 2>&1 ||
    { cat "$out/model.log"; echo "compare_cpu: could not write the random model" >&2; exit 1; }
fi

# ---------------------------------------------------------------- the runs
export OMP_NUM_THREADS="$threads"
# Runs "$@" with its output in LOG; records "<exit status> <wall seconds> <peak RSS bytes>" in LOG.rusage, the peak
# from the finished child's getrusage (ru_maxrss, KiB on Linux): the same measurement for both implementations.
measure() {
  local log="$1"
  shift
  "$python" - "$log" "$@" <<'EOF'
import os, subprocess, sys, time
log, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
with open(log, "w") as f:
    child = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(log + ".rusage", "w") as f:
    f.write(f"{code} {time.monotonic() - t0:.3f} {usage.ru_maxrss * 1024}\n")
EOF
}

echo "compare_cpu: $threads threads each; load before the runs: $(uptime | sed 's/.*load average/load average/')"
echo "$(uptime)" >"$out/load_before.txt"
names=()
for setting in b4_whole b4_whole_recompute b16_seg32 b16_seg32_recompute; do
  # setting_name(): b4_whole + _2s (+ _recompute)
  base="${setting%_recompute}"
  name="${base}_${train_seconds}s"
  [[ "$setting" == *_recompute ]] && name+="_recompute"
  names+=("train:$name")
done
names+=("synth:2" "synth:10")
for ((round = 1; round <= rounds; ++round)); do
  for case in "${names[@]}"; do
    kind="${case%%:*}" name="${case#*:}"
    if [[ "$kind" == train ]]; then
      echo "compare_cpu: round $round/$rounds, training step $name: vitscuda, then PyTorch"
      prefix="$out/train_$name.r$round"
      measure "$prefix.vitscuda.log" "$build/bench/bench_train" --device cpu --config "$config" \
        --seconds "$train_seconds" --warmup 1 --steps "$steps" --exact --setting "$name" --json "$prefix.vitscuda.json"
      measure "$prefix.pytorch.log" "$python" bench/reference/train_step.py --device cpu --config "$config" \
        --seconds "$train_seconds" --warmup 1 --steps "$steps" --exact --setting "$name" --json "$prefix.pytorch.json"
    else
      echo "compare_cpu: round $round/$rounds, synthesis $name s: vitscuda, then PyTorch"
      prefix="$out/synth_$name.r$round"
      measure "$prefix.vitscuda.log" "$build/bench/bench_synth" --device cpu --model "$model" \
        --seconds "$name" --warmup 1 --runs "$runs" --json "$prefix.vitscuda.json"
      measure "$prefix.pytorch.log" "$python" bench/reference/synth_rtf.py --device cpu --model "$model" \
        --seconds "$name" --warmup 1 --runs "$runs" --json "$prefix.pytorch.json"
    fi
  done
done
echo "$(uptime)" >"$out/load_after.txt"

# ---------------------------------------------------------------- the table
"$python" - "$out" "$threads" "$rounds" "${names[@]}" <<'EOF'
import json, os, statistics, sys
out, threads, rounds, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]

def run(prefix, impl):
    """(exit status, wall s, peak RSS bytes, JSON or None) of one process."""
    base = os.path.join(out, f"{prefix}.{impl}")
    try:
        code, wall, rss = open(base + ".log.rusage").read().split()
    except OSError:
        return None, None, None, None
    try:
        doc = json.load(open(base + ".json"))
    except (OSError, ValueError):
        doc = None
    return int(code), float(wall), int(rss), doc

def seconds_of(kind, doc, name):
    """The case's time: the median s/step of the setting, or the synthesis real-time factor."""
    if doc is None:
        return None
    if kind == "train":
        for s in doc.get("settings", []):
            if s.get("name") == name and s.get("status") == "ok":
                return s.get("median_step_s")
        return None
    cases = doc.get("cases") or [{}]
    return cases[0].get("rtf")

def fmt(x, spec):
    return "-" if x is None else format(x, spec)

def ratio(a, b):
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

rows = []
for n in names:
    kind, name = n.split(":")
    stem = f"train_{name}" if kind == "train" else f"synth_{name}"
    label = f"train {name} (s/step)" if kind == "train" else f"synth {name} s (RTF)"
    times = {"vitscuda": [], "pytorch": []}
    peaks = {"vitscuda": [], "pytorch": []}
    note = []
    for r in range(1, rounds + 1):
        prefix = f"{stem}.r{r}"
        for impl in times:
            code, _, rss, doc = run(prefix, impl)
            t = seconds_of(kind, doc, name)
            if code is None:
                note.append(f"{impl} round {r} not run")
            elif code != 0 or t is None:
                note.append(f"{impl} round {r} exit {code} (log {prefix}.{impl}.log)")
            times[impl].append(t)
            peaks[impl].append(rss)
    t_ours, t_theirs = median(times["vitscuda"]), median(times["pytorch"])
    each = " ".join(ratio(a, b) for a, b in zip(times["vitscuda"], times["pytorch"]))
    peak = lambda impl: None if not any(peaks[impl]) else max(p for p in peaks[impl] if p) / 2**20
    rows.append((label, fmt(t_ours, ".4f"), fmt(t_theirs, ".4f"), ratio(t_ours, t_theirs), each,
                 fmt(peak("vitscuda"), ".0f"), fmt(peak("pytorch"), ".0f"), ratio(peak("vitscuda"), peak("pytorch")),
                 "; ".join(note)))

head = ("case", "vitscuda", "PyTorch", "ratio", "each round", "vitscuda RSS MiB", "PyTorch RSS MiB", "RSS ratio", "")
print()
print(f"| {' | '.join(head[:-1])} |")
print("|" + "|".join(["---"] + ["---:"] * 7) + "|")
for r in rows:
    print(f"| {' | '.join(r[:-1])} |" + (f" {r[-1]}" if r[-1] else ""))
print(f"\nthreads: {threads} (OMP_NUM_THREADS, both); rounds: {rounds}; time: median over the rounds of each "
      f"process's median over its timed steps/runs; ratio: vitscuda / PyTorch of those medians (below 1: vitscuda "
      f"faster or smaller), each round's beside it; RSS: the highest peak resident set of the whole process over the "
      f"rounds (getrusage of the finished child)")
for f in ("load_before.txt", "load_after.txt"):
    print(f"{f[:-4].replace('_', ' ')}: {open(os.path.join(out, f)).read().strip()}")
EOF
