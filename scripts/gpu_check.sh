#!/usr/bin/env bash
# The GPU machine's whole check, as one call, in the repo root, with .gpu/ from scripts/gpu_pack.sh:
#   1. environment: libraries (.gpu/lib + the machine's CUDA, cuBLAS, cuFFT, cuDNN), nvidia-smi, device info
#   2. every test binary (gtest --gtest_brief=1, in parallel); a test that says "no CUDA device" fails the check
#   3. compute-sanitizer memcheck on the GPU tests and on every kernel through bench_kernels (small shapes)
#   4. a random mms-tts-eng model (weights_convert init + export), bench_synth and transformers' VitsModel on it
#   5. the vae and full objectives' selftests on a full-size model; the training step (bench_train) against the same
#      step in PyTorch (bench/reference/train_step.py): the mel step at every setting, then the full step (and the
#      vae step, when the budget allows) at batch 16 x 32-frame windows
#   6. bench_kernels --json, with the time that is left
#   7. a summary table (tests per binary, sanitizer errors, bench headlines, RTF and training step vs PyTorch)
# Everything lands in $OUT (8 files: summary.txt, env.log, tests.log, sanitizer.log, bench.log,
# bench_kernels.json, synth.json (ours and transformers'), train.json (ours and PyTorch's: the mel step's as
# "ours" and "pytorch", the other objectives' under "full" and "vae" in the same form)); without
# $OUT, in ./build-gpu-check.
# Every phase has a timeout, and the whole run keeps inside GPU_CHECK_BUDGET_S (default 480 s).
# Exit status: 0 every check passed, 1 otherwise (on a machine without a GPU it is 1: GPU tests skip,
# the benchmarks report "skipped").
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
out="${OUT:-$root/build-gpu-check}"  # build*/ is git-ignored
mkdir -p "$out"
budget="${GPU_CHECK_BUDGET_S:-480}"
gpu_filter="${GPU_TEST_FILTER:-*Cuda*:*CUDA*:*cuda*:*Gpu*:*GPU*:*gpu*:*Device*:*device*}"
start=$(date +%s)
pack="$root/.gpu"
work="$(mktemp -d /tmp/gpu_check.XXXXXX)"
summary="$out/summary.txt" envlog="$out/env.log" testlog="$out/tests.log" sanlog="$out/sanitizer.log"
benchlog="$out/bench.log"
: >"$envlog"
: >"$testlog"
: >"$sanlog"
: >"$benchlog"

failures=()
fail() {
  failures+=("$*")
  echo "gpu_check: FAIL: $*"
}
elapsed() { echo $(($(date +%s) - start)); }
# tlimit MAX RESERVE: MAX seconds, or fewer so that RESERVE seconds of the budget stay for later phases.
tlimit() {
  local t=$((budget - $(elapsed) - $2))
  ((t > $1)) && t=$1
  ((t < 10)) && t=10
  echo "$t"
}
phase() { echo "== [$(elapsed) s] $*"; }
# Keeps a log under 15 MiB (the device tool returns files of at most 16 MiB): head and tail.
cap_file() {
  local f="$1" max=$((15 * 1048576))
  [[ -f "$f" ]] || return 0
  if (($(stat -c %s "$f") > max)); then
    { head -c $((max / 2)) "$f"; printf '\n... [truncated by gpu_check.sh] ...\n'; tail -c $((max / 2 - 100)) "$f"; } >"$f.cut"
    mv "$f.cut" "$f"
  fi
}

# ---------------------------------------------------------------- 1. environment
phase "environment" | tee -a "$envlog"
[[ -f "$pack/manifest.env" ]] || {
  echo "gpu_check: error: $pack/manifest.env not found: run scripts/gpu_pack.sh here first and carry .gpu" | tee "$summary"
  exit 1
}
# shellcheck disable=SC1091
source "$pack/manifest.env"
# The binaries run from a copy under /tmp, so test files and the unpacked payload never grow .gpu/
# (which must stay small enough to carry).
run_dir="$work/pack"
mkdir -p "$run_dir"
if [[ -n "${PACK_PAYLOAD:-}" ]]; then
  if command -v xz >/dev/null; then
    xz -dc "$pack/$PACK_PAYLOAD" | tar -C "$run_dir" -xf -
  else  # no xz binary: Python's lzma module
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$pack/$PACK_PAYLOAD" "$run_dir"
  fi
else
  cp -a "$pack/bin" "$pack/lib" "$run_dir/"
fi || {
  echo "gpu_check: error: cannot unpack .gpu into $run_dir" | tee "$summary"
  exit 1
}
bin="$run_dir/bin"
[[ -x "$bin/bench_kernels" ]] || {
  echo "gpu_check: error: bench_kernels missing from .gpu: it is incomplete; run scripts/gpu_pack.sh again" | tee "$summary"
  exit 1
}

orig_ld="${LD_LIBRARY_PATH:-}"
cuda_dirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d "$d" ]] && cuda_dirs+=("$d")
done
# PyTorch's pip packages bring cuDNN, cuBLAS, cuFFT and the runtime under site-packages/nvidia/*/lib.
while IFS= read -r d; do [[ -n "$d" ]] && cuda_dirs+=("$d"); done < <(
  python3 - 2>/dev/null <<'PY'
import os
try:
    import nvidia
except Exception:
    raise SystemExit(0)
found = set()
for base in list(nvidia.__path__):
    for dirpath, dirs, files in os.walk(base):
        if os.path.basename(dirpath) == "lib" and any(".so" in f for f in files):
            found.add(dirpath)
print("\n".join(sorted(found)))
PY
)
ld_path="$run_dir/lib"
for d in "${cuda_dirs[@]}"; do ld_path="$ld_path:$d"; done
[[ -n "$orig_ld" ]] && ld_path="$ld_path:$orig_ld"
export LD_LIBRARY_PATH="$ld_path"
# The phoneme front-end's espeak-ng tables travel in the pack (scripts/gpu_pack.sh).
[[ -d "$run_dir/lib/espeak-ng-data" ]] && export ESPEAK_DATA_PATH="$run_dir/lib"
# Our libstdc++ only where the machine's is older than the binaries need.
if ldd "$bin/bench_kernels" 2>&1 | grep -q "GLIBCXX.*not found"; then
  export LD_LIBRARY_PATH="$run_dir/lib/fallback:$LD_LIBRARY_PATH"
  echo "libstdc++ here lacks ${PACK_GLIBCXX_NEEDED:-?}: using .gpu/lib/fallback" | tee -a "$envlog"
fi
missing=""
for b in "$bin"/*; do
  [[ -f "$b" ]] || continue
  m="$(ldd "$b" 2>&1 | grep -E "not found|version .* not found" | sed 's/^[[:space:]]*//' | sort -u | tr '\n' ';')"
  [[ -n "$m" ]] && missing="$missing $(basename "$b"): $m"
done
[[ -n "$missing" ]] && fail "libraries not found:$missing"

{
  echo "pack: commit ${PACK_COMMIT:-?}, packed ${PACK_DATE:-?}, nvcc ${PACK_NVCC:-?}, archs ${PACK_CUDA_ARCHS:-?}"
  echo "host: $(uname -srm), $(nproc) cores, $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(ldd --version 2>&1 | head -1)"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "--- CUDA libraries bench_kernels resolves:"
  ldd "$bin/bench_kernels" | grep -E "cud|cublas|cufft|nvrtc|nvJit" || true
  echo "--- nvidia-smi"
  timeout 30 nvidia-smi 2>&1 || echo "nvidia-smi: not available (exit $?)"
  timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu \
    --format=csv 2>&1 || true
  echo "--- bench_kernels --device-info"
} >>"$envlog" 2>&1
timeout 60 "$bin/bench_kernels" --device-info >>"$envlog" 2>&1
info_rc=$?
have_gpu=0
((info_rc == 0)) && have_gpu=1
((have_gpu)) || fail "no usable CUDA device: bench_kernels --device-info exited $info_rc (see env.log)"
tail -4 "$envlog"

# The test binaries have the packing machine's source and build paths compiled in (tests/data,
# temporary files, the programs the CLI tests run). tests/support reads these two variables first;
# links at the compiled-in paths, where those are free, also serve anything that uses them directly.
export VITSCUDA_TEST_SOURCE_DIR="$root" VITSCUDA_TEST_BINARY_DIR="$bin"
map_path() {  # map_path BAKED TARGET
  local baked="$1" target="$2"
  [[ -z "$baked" ]] && return 0
  if [[ -e "$baked" || -L "$baked" ]]; then
    [[ "$(realpath "$baked")" == "$(realpath "$target")" ]] ||
      echo "note: $baked exists here and is not $target: the tests rely on VITSCUDA_TEST_*_DIR" >>"$envlog"
    return 0
  fi
  mkdir -p "$(dirname "$baked")" && ln -s "$target" "$baked" && echo "linked $baked -> $target" >>"$envlog"
}
map_path "${PACK_SOURCE_DIR:-}" "$root"
map_path "${PACK_BINARY_DIR:-}" "$bin"

# ---------------------------------------------------------------- 2. tests
phase "tests" | tee -a "$testlog"
read -r -a test_names <<<"${PACK_TESTS:-}"
((${#test_names[@]})) || fail "the manifest lists no test binaries"
threads=$(($(nproc) / (${#test_names[@]} > 0 ? ${#test_names[@]} : 1)))
((threads < 1)) && threads=1
t_tests=$(tlimit 200 260)
declare -A test_rc=()
pids=()
for t in "${test_names[@]}"; do
  (
    cd "$bin" && OMP_NUM_THREADS=$threads timeout -k 5 "$t_tests" "./$t" --gtest_brief=1 \
      --gtest_output="json:$work/$t.json" >"$work/$t.log" 2>&1
    echo $? >"$work/$t.rc"
  ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for t in "${test_names[@]}"; do
  test_rc[$t]=$(cat "$work/$t.rc" 2>/dev/null || echo 255)
  {
    echo "===== $t (exit ${test_rc[$t]}; timeout ${t_tests} s, OMP_NUM_THREADS=$threads)"
    cat "$work/$t.log"
  } >>"$testlog"
done
python3 - "$work" "${test_names[@]}" >"$work/tests.summary" <<'PY'
import json, os, sys
work, names = sys.argv[1], sys.argv[2:]
for n in names:
    rc = open(os.path.join(work, n + ".rc")).read().strip() if os.path.exists(os.path.join(work, n + ".rc")) else "?"
    path = os.path.join(work, n + ".json")
    if not os.path.exists(path):
        print(f"{n}|-|-|-|{rc}|no result file (crashed or timed out)|")
        continue
    doc = json.load(open(path))
    passed = failed = skipped = 0
    failed_names, skipped_names = [], []
    for suite in doc.get("testsuites", []):
        for t in suite.get("testsuite", []):
            full = f"{suite['name']}.{t['name']}"
            if t.get("failures"):
                failed += 1
                failed_names.append(full)
            elif t.get("result") == "SKIPPED":
                skipped += 1
                skipped_names.append(full)
            elif t.get("status", "RUN") == "RUN":
                passed += 1
    print(f"{n}|{passed}|{failed}|{skipped}|{rc}|{' '.join(failed_names)}|{' '.join(skipped_names)}")
PY
while IFS='|' read -r n passed failed skipped rc failed_names skipped_names; do
  [[ "$rc" == "0" ]] || fail "$n exited $rc ($failed failed${failed_names:+: $failed_names})"
done <"$work/tests.summary"
# GPU tests must run here: any test that skipped for want of a device fails the check.
no_device="$(grep -hiE "no CUDA device|no usable CUDA|built without CUDA|CUDA runtime: cuda" "$work"/test_*.log | sort | uniq -c || true)"
if [[ -n "$no_device" ]]; then
  fail "GPU tests skipped for want of a CUDA device: $(echo "$no_device" | head -5 | tr -s ' ' | tr '\n' ';')"
  echo "!!!!! GPU TESTS SKIPPED: NO CUDA DEVICE !!!!!" | tee -a "$testlog"
fi
cap_file "$testlog"

# ---------------------------------------------------------------- 3. compute-sanitizer
phase "compute-sanitizer memcheck" | tee -a "$sanlog"
san_summary=()
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
run_sanitized() {  # run_sanitized LABEL TIMEOUT CMD...
  local label="$1" tmo="$2"
  shift 2
  echo "===== $label: compute-sanitizer --tool memcheck $* (timeout $tmo s)" >>"$sanlog"
  (cd "$bin" && timeout -k 5 "$tmo" "$sanitizer" --tool memcheck --error-exitcode 86 --print-limit 50 "$@") \
    >"$work/san.log" 2>&1
  local rc=$?
  cat "$work/san.log" >>"$sanlog"
  local errors
  errors="$(grep -oE "ERROR SUMMARY: [0-9]+" "$work/san.log" | tail -1 | grep -oE "[0-9]+$" || true)"
  san_summary+=("$label|${errors:-?}|$rc")
  if grep -qiE "device not supported|unable to|failed to (initialize|launch)" "$work/san.log"; then
    fail "compute-sanitizer could not run $label here (see sanitizer.log)"
  elif ((rc == 124 || rc == 137)); then
    fail "compute-sanitizer: $label timed out after $tmo s ($(grep -c '^========= Invalid\|^========= Error' "$work/san.log") memcheck reports before that; see sanitizer.log)"
  elif [[ "$errors" != "0" ]]; then
    fail "compute-sanitizer: $label: ${errors:-no summary} memcheck errors (exit $rc)"
  elif ((rc != 0)); then
    fail "compute-sanitizer: $label exited $rc with no memcheck error (a test failed or it timed out)"
  fi
}
if [[ -z "$sanitizer" ]]; then
  fail "compute-sanitizer not found (PATH, /usr/local/cuda/bin)"
  san_summary+=("(all)|-|not run: compute-sanitizer not found")
elif ((!have_gpu)); then
  echo "skipped: no CUDA device" | tee -a "$sanlog"
  san_summary+=("(all)|-|skipped: no CUDA device")
else
  for t in "${test_names[@]}"; do
    count=$(cd "$bin" && "./$t" --gtest_list_tests --gtest_filter="$gpu_filter" 2>/dev/null | grep -c '^  ' || true)
    ((count > 0)) || continue
    run_sanitized "$t ($count GPU tests)" "$(tlimit 150 200)" "./$t" --gtest_brief=1 --gtest_filter="$gpu_filter"
  done
  ((${#san_summary[@]})) || fail "no test matches GPU_TEST_FILTER=$gpu_filter in any test binary: nothing ran under memcheck"
  # Every kernel once at small shapes (the weight norms are batch-independent).
  run_sanitized "bench_kernels (B1 2s cases, once)" "$(tlimit 90 180)" ./bench_kernels --hot --reps 0 \
    --filter "B1 2s" --filter weight_norm --config "$root/tests/data/mms_tts_eng/config.json"
fi
cap_file "$sanlog"

# ---------------------------------------------------------------- 4. synthesis: ours and transformers'
phase "synthesis real-time factor" | tee -a "$benchlog"
model="$work/model"
synth_rc="not run" ref_rc="not run"
{
  timeout 60 "$bin/weights_convert" init --config tests/data/mms_tts_eng/config.json "$work/model-init" \
    --tokenizer tests/data/mms_tts_eng --seed 0 &&
    timeout 60 "$bin/weights_convert" export "$work/model-init" "$model" --layout parametrizations
} >>"$benchlog" 2>&1 || fail "could not write the random mms-tts-eng model (see bench.log)"
if [[ -d "$model" ]]; then
  echo "--- bench_synth" >>"$benchlog"
  timeout -k 5 "$(tlimit 100 200)" "$bin/bench_synth" --model "$model" --device cuda --json "$work/bench_synth.json" \
    >>"$benchlog" 2>&1
  synth_rc=$?
  ((synth_rc == 0)) || fail "bench_synth exited $synth_rc$( ((synth_rc == 77)) && echo ' (skipped: no CUDA device)')"
  echo "--- bench/reference/synth_rtf.py (transformers)" >>"$benchlog"
  # Python gets the machine's own library path: ours (.gpu/lib first) is for our binaries only.
  LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 timeout -k 5 "$(tlimit 150 100)" \
    python3 bench/reference/synth_rtf.py --model "$model" --device cuda --json "$work/synth_rtf_reference.json" \
    >>"$benchlog" 2>&1
  ref_rc=$?
  ((ref_rc == 0)) || fail "bench/reference/synth_rtf.py exited $ref_rc$( ((ref_rc == 77)) && echo ' (skipped: no CUDA device)')"
fi

# ---------------------------------------------------------------- 5. training step: ours and PyTorch's
phase "vae objective selftest (full-size random mms-tts-eng, CUDA)" | tee -a "$benchlog"
timeout -k 5 "$(tlimit 90 200)" "$bin/vitscuda" selftest --objective vae --device cuda --steps 5 --seconds 2 \
  --config tests/data/mms_tts_eng/config.json >>"$benchlog" 2>&1
vae_rc=$?
((vae_rc == 0)) || fail "vitscuda selftest --objective vae exited $vae_rc"
phase "full objective selftest (full-size random mms-tts-eng with its discriminator, CUDA)" | tee -a "$benchlog"
timeout -k 5 "$(tlimit 60 200)" "$bin/vitscuda" selftest --objective full --device cuda --steps 3 --seconds 2 \
  --config tests/data/mms_tts_eng/config.json >>"$benchlog" 2>&1
full_rc=$?
((full_rc == 0)) || fail "vitscuda selftest --objective full exited $full_rc"
phase "training step" | tee -a "$benchlog"
train_rc="not run" train_ref_rc="not run"
if [[ -x "$bin/bench_train" ]]; then
  echo "--- bench_train" >>"$benchlog"
  timeout -k 5 "$(tlimit 150 150)" "$bin/bench_train" --quick --config tests/data/mms_tts_eng/config.json \
    --json "$work/train_ours.json" >>"$benchlog" 2>&1
  train_rc=$?
  ((train_rc == 0)) || fail "bench_train exited $train_rc$( ((train_rc == 77)) && echo ' (skipped: no CUDA device)')"
  echo "--- bench/reference/train_step.py (PyTorch)" >>"$benchlog"
  LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 timeout -k 5 "$(tlimit 150 100)" \
    python3 bench/reference/train_step.py --quick --device cuda --config tests/data/mms_tts_eng/config.json \
    --json "$work/train_torch.json" >>"$benchlog" 2>&1
  train_ref_rc=$?
  ((train_ref_rc == 0)) || fail "bench/reference/train_step.py exited $train_ref_rc"
  if [[ -f "$work/train_ours.json" && -f "$work/train_torch.json" ]]; then
    python3 bench/reference/compare_training.py "$work/train_ours.json" "$work/train_torch.json" \
      --merge "$out/train.json" >"$work/train_compare.txt" 2>&1 || fail "compare_training.py failed"
    cat "$work/train_compare.txt" >>"$benchlog"
  fi
  # The other objectives at one setting each (1 warm-up + 3 timed steps): full first, vae only with time to spare.
  # Each runs only with needed_s of the budget left (both sides, 90 s each at most, and a little for bench_kernels);
  # a step skipped for time is noted in the summary, not failed.
  declare -A needed_s=([full]=150 [vae]=240)
  for objective in full vae; do
    if (($(tlimit 600 0) < ${needed_s[$objective]})); then
      echo "$objective step: not run (less than ${needed_s[$objective]} s of the budget left)" |
        tee -a "$benchlog" >"$work/train_compare_$objective.txt"
      continue
    fi
    setting="b16_seg32_10s"
    echo "--- bench_train --objective $objective --setting $setting" >>"$benchlog"
    timeout -k 5 "$(tlimit 90 60)" "$bin/bench_train" --objective "$objective" --setting "$setting" --exact --quick \
      --config tests/data/mms_tts_eng/config.json --json "$work/train_ours_$objective.json" >>"$benchlog" 2>&1
    rc=$?
    ((rc == 0)) || fail "bench_train --objective $objective exited $rc"
    echo "--- bench/reference/train_step.py --objective $objective (PyTorch)" >>"$benchlog"
    LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 timeout -k 5 "$(tlimit 90 30)" \
      python3 bench/reference/train_step.py --objective "$objective" --setting "$setting" --exact --quick \
      --device cuda --config tests/data/mms_tts_eng/config.json --json "$work/train_torch_$objective.json" \
      >>"$benchlog" 2>&1
    rc=$?
    ((rc == 0)) || fail "bench/reference/train_step.py --objective $objective exited $rc"
    if [[ -f "$work/train_ours_$objective.json" || -f "$work/train_torch_$objective.json" ]]; then
      python3 bench/reference/compare_training.py "$work/train_ours_$objective.json" \
        "$work/train_torch_$objective.json" --merge "$work/train_$objective.json" \
        >"$work/train_compare_$objective.txt" 2>&1 || fail "compare_training.py ($objective) failed"
      cat "$work/train_compare_$objective.txt" >>"$benchlog"
    fi
  done
  # One train.json (the device tool returns at most 8 files): the mel comparison's two documents, then the others'.
  python3 - "$work" "$out/train.json" <<'PY'
import json, os, sys
work, dest = sys.argv[1:3]
def load(path):  # None when the step did not write it; a damaged file is an error
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
doc = load(dest) or {"ours": None, "pytorch": None}
for objective in ("full", "vae"):
    both = load(os.path.join(work, f"train_{objective}.json"))
    if both:
        doc[objective] = both
json.dump(doc, open(dest, "w"), indent=1)
PY
else
  fail "bench_train was not packed"
fi

# ---------------------------------------------------------------- 6. kernel benchmarks
phase "bench_kernels" | tee -a "$benchlog"
t_kernels=$(tlimit 300 20)
max_s=$((t_kernels - 45))
((max_s < 10)) && max_s=10
echo "--- bench_kernels (timeout $t_kernels s, --max-seconds $max_s)" >>"$benchlog"
timeout -k 5 "$t_kernels" "$bin/bench_kernels" --json "$work/bench_kernels.json" --max-seconds "$max_s" \
  --reps 20 --case-seconds 0.15 --config tests/data/mms_tts_eng/config.json >>"$benchlog" 2>&1
kernels_rc=$?
((kernels_rc == 0)) || fail "bench_kernels exited $kernels_rc$( ((kernels_rc == 77)) && echo ' (skipped: no CUDA device)')"
cap_file "$benchlog"
[[ -f "$work/bench_kernels.json" ]] && cp "$work/bench_kernels.json" "$out/bench_kernels.json"
# Both synthesis results in one file: the device tool returns at most 8 files.
python3 - "$work" "$out/synth.json" <<'PY'
import json, os, sys
work, dest = sys.argv[1:3]
def load(name):
    try:
        return json.load(open(os.path.join(work, name)))
    except Exception:
        return None
json.dump({"ours": load("bench_synth.json"), "transformers": load("synth_rtf_reference.json")}, open(dest, "w"), indent=1)
PY

# ---------------------------------------------------------------- 7. summary
{
  echo "gpu_check summary ($(elapsed) s; pack ${PACK_COMMIT:-?}; $(grep -m1 '^device:' "$envlog" || echo 'device: none'))"
  echo
  printf '%-16s %7s %7s %8s %6s\n' "tests" "passed" "failed" "skipped" "exit"
  while IFS='|' read -r n passed failed skipped rc failed_names skipped_names; do
    printf '%-16s %7s %7s %8s %6s\n' "$n" "$passed" "$failed" "$skipped" "$rc"
    [[ -n "$failed_names" ]] && echo "    failed: $failed_names"
    [[ -n "$skipped_names" ]] && echo "    skipped: $(echo "$skipped_names" | cut -c1-400)"
  done <"$work/tests.summary"
  echo
  printf '%-40s %8s %s\n' "compute-sanitizer memcheck" "errors" "exit"
  for s in "${san_summary[@]}"; do
    IFS='|' read -r label errors rc <<<"$s"
    printf '%-40s %8s %s\n' "$label" "$errors" "$rc"
  done
  echo
  python3 - "$work" "$synth_rc" "$ref_rc" "$kernels_rc" <<'PY'
import json, math, os, statistics, sys
work, synth_rc, ref_rc, kernels_rc = sys.argv[1:5]

def load(name):
    try:
        return json.load(open(os.path.join(work, name)))
    except Exception:
        return None

def fmt(v, spec):  # "-" for a missing value, padded to the field's width
    return format(v, spec) if v is not None else format("-", ">" + spec.split(".")[0])

k = load("bench_kernels.json")
if not k:
    print(f"bench_kernels: no results (exit {kernels_rc}{', skipped: no CUDA device' if kernels_rc == '77' else ''})")
else:
    recs = k["records"]
    ok = [r for r in recs if r["status"] == "ok"]
    bad = [r for r in recs if r["status"].startswith("error")]
    print(f"bench_kernels on {k['device']['name']}: {len(ok)} ok, {len(bad)} failed, {len(recs) - len(ok) - len(bad)} not run "
          f"(peaks: fp32 {k['device']['peak_fp32_tflops']:.1f} TFLOP/s, {k['device']['peak_bandwidth_gbs']:.0f} GB/s)")
    for r in bad[:5]:
        print(f"    FAILED {r['name']}: {r['status'][:200]}")
    print(f"{'op':<22} {'cases':>5} {'best TFLOP/s':>12} {'best %fp32':>10} {'best GB/s':>10} {'best %bw':>8} "
          f"{'median ratio':>12} {'worst ratio':>11}  baseline")
    ops = {}
    case_rows = [r for r in ok if r["where"] == "op case"]  # the op case list: one row per case and direction
    for r in ok:
        if r["where"] == "op case":
            continue
        key = r["op"] + (f"[{r['variant']}]" if r["variant"] else "")
        ops.setdefault(key, []).append(r)
    for key, rs in ops.items():
        tf = [r["tflops"] for r in rs if r["tflops"] is not None]
        bw = [r["gbs"] for r in rs if r["gbs"] is not None]
        ratios = [r["ratio"] for r in rs if r["ratio"] is not None]
        best_tf = max(tf) if tf else None
        best_bw = max(bw) if bw else None
        print(f"{key:<22} {len(rs):>5} {fmt(best_tf, '12.2f')} "
              f"{fmt(best_tf and 100 * best_tf / k['device']['peak_fp32_tflops'], '10.1f')} {fmt(best_bw, '10.0f')} "
              f"{fmt(best_bw and 100 * best_bw / k['device']['peak_bandwidth_gbs'], '8.1f')} "
              f"{fmt(statistics.median(ratios) if ratios else None, '12.2f')} {fmt(max(ratios) if ratios else None, '11.2f')}  "
              f"{rs[0]['baseline'] or 'none (vendor kernel)'}")
    if case_rows:
        for direction in ("forward", "backward"):
            rows = sorted((r for r in case_rows if r["variant"].startswith(direction)), key=lambda r: -r["time_ms"])
            if rows:
                print(f"op cases, {direction}: {len(rows)} rows; slowest: " +
                      "; ".join(f"{r['op']}[{r['variant']}] {r['time_ms']:.3f} ms" for r in rows[:4]))
    worst = sorted((r for r in ok if r["ratio"] is not None), key=lambda r: -r["ratio"])[:5]
    if worst:
        print("slowest against their baseline: " + "; ".join(f"{r['name']} x{r['ratio']:.2f}" for r in worst))
    slow = sorted(ok, key=lambda r: -r["time_ms"])[:3]
    print("longest: " + "; ".join(f"{r['name']} {r['time_ms']:.3f} ms" for r in slow))
print()
ours, ref = load("bench_synth.json"), load("synth_rtf_reference.json")
def note(rc):
    return {"77": "skipped: no CUDA device", "not run": "not run"}.get(rc, f"exit {rc}")
if not ours and not ref:
    print(f"synthesis RTF: no results (bench_synth {note(synth_rc)}, transformers {note(ref_rc)})")
else:
    print(f"{'synthesis':<10} {'audio s':>8} {'ours wall s':>11} {'ours RTF':>9} {'ours peak':>10} "
          f"{'hf audio s':>10} {'hf wall s':>9} {'hf RTF':>8} {'hf peak':>9} {'speed-up':>8}")
    oc = {c["target_seconds"]: c for c in (ours or {}).get("cases", [])}
    rc_ = {c["target_seconds"]: c for c in (ref or {}).get("cases", [])}
    for t in sorted(set(oc) | set(rc_)):
        o, r = oc.get(t), rc_.get(t)
        g = lambda c, f, spec: fmt(c[f] if c else None, spec)
        mib = lambda c: f"{c['peak_memory_bytes'] / 2**20:.0f} MiB" if c else "-"
        speed = f"{r['rtf'] / o['rtf']:.2f}x" if o and r and o["rtf"] > 0 else "-"
        print(f"{str(t) + ' s':<10} {g(o, 'audio_seconds', '8.2f')} {g(o, 'wall_seconds', '11.4f')} {g(o, 'rtf', '9.4f')} "
              f"{mib(o):>10} {g(r, 'audio_seconds', '10.2f')} {g(r, 'wall_seconds', '9.4f')} {g(r, 'rtf', '8.4f')} "
              f"{mib(r):>9} {speed:>8}")
    if ref:
        print(f"transformers {ref.get('transformers_version')}, torch {ref.get('torch_version')}, fp32 eager, TF32 off: {ref.get('tf32')}")
    print("speed-up = transformers' RTF / ours (> 1: ours faster); RTF = wall / audio seconds")
PY
  echo
  for objective in full vae; do
    if [[ -f "$work/train_compare_$objective.txt" ]]; then
      echo "--- $objective objective"
      cat "$work/train_compare_$objective.txt"
      echo
    fi
  done
  if [[ -f "$work/train_compare.txt" ]]; then
    cat "$work/train_compare.txt"
  else
    echo "training step: no comparison (bench_train $train_rc, PyTorch reference $train_ref_rc)"
  fi
  echo
  if ((${#failures[@]})); then
    echo "FAILED CHECKS (${#failures[@]}):"
    for f in "${failures[@]}"; do echo "  - $f"; done
  else
    echo "ALL CHECKS PASSED"
  fi
} >"$summary" 2>&1
rm -rf "$work"
echo
cat "$summary"
((${#failures[@]} == 0))
