#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, CPU only) and runs each one
# against a working copy of its seed corpus, then prints a table: target, executions, seconds,
# crashes. Exits non-zero if any target crashed, leaked, timed out or ran out of memory; the
# input that did it is kept under the build folder and its path printed.
#
# Usage: scripts/fuzz.sh [--merge] [SECONDS] [TARGET...]
#   SECONDS      time per target (default 60); FUZZ_RUNS=N runs N executions per target instead
#   TARGET       fuzz_<name> (default: every tests/fuzz/fuzz_*.cpp)
#   --merge      afterwards, add the working corpus's inputs that reach new code to the committed
#                corpus (tests/fuzz/corpus); without it the committed corpus is never written
#   --make-corpus  rewrite the seed corpora with make_corpus (tests/fuzz/make_corpus.cpp) and exit
# Writes the table to FUZZ_BUILD_DIR/fuzz-results.tsv too.
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_RUNS, FUZZ_JOBS (targets run side by side,
# default the number of cores), FUZZ_TIMEOUT (seconds per input, default 10), FUZZ_RSS_MB (default 2048).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
corpus_root="$root/tests/fuzz/corpus"
dict_root="$root/tests/fuzz/dict"

merge=0
make_corpus=0
seconds=60
targets=()
for arg in "$@"; do
  case "$arg" in
    --merge) merge=1 ;;
    --make-corpus) make_corpus=1 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    [0-9]*) seconds="$arg" ;;
    fuzz_*) targets+=("$arg") ;;
    *) echo "fuzz: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- packages (idempotent)
packages=(clang-14 libclang-rt-14-dev cmake ninja-build pkg-config libsndfile1-dev libsoxr-dev nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- build
build_start=$(date +%s)
# No build type: the project's -O1 -g only, and no NDEBUG, so that assertions (nlohmann's too) stay on.
cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE= \
  -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$build" -j "$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
echo "fuzz: built in $build ($(($(date +%s) - build_start)) s)"

scratch="$(mktemp -d /dev/shm/vitscuda-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export VITSCUDA_FUZZ_SCRATCH="$scratch"

if ((make_corpus)); then
  rm -rf "$corpus_root"
  "$build/make_corpus" "$root" "$corpus_root"
  du -sh "$corpus_root"
  exit 0
fi

if ((${#targets[@]} == 0)); then
  for src in "$root"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# ---------------------------------------------------------------- run
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ -n "${FUZZ_RUNS:-}" ]]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$seconds"); fi
# The same table as tab-separated values (target, executions, seconds, exec/s, crashes, result), for
# scripts/reliability.sh.
results="$build/fuzz-results.tsv"
: >"$results"

# One target: runs it, prints its failure report, and writes its table row to $build/run/$t/row.
fuzz_one() {
  local t="$1" exe="$build/$1" work="$build/run/$1" artifacts="$build/artifacts/$1"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$artifacts"
  [[ -d "$corpus_root/$t" ]] && cp -r "$corpus_root/$t/." "$work/corpus/"
  local args=("${limit[@]}" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -print_final_stats=1
    -artifact_prefix="$artifacts/")
  [[ -f "$dict_root/$t.dict" ]] && args+=(-dict="$dict_root/$t.dict")
  find "$artifacts" -type f | sort >"$work/artifacts.before"
  echo "fuzz: $t ${limit[*]}"
  local start status
  start=$(date +%s%N)
  set +e
  "$exe" "${args[@]}" "$work/corpus" >"$work/log" 2>&1
  status=$?
  set -e
  local elapsed execs crashes verdict rate
  elapsed=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log" | tail -1 | awk '{print $2}')
  find "$artifacts" -type f | sort | comm -13 "$work/artifacts.before" - >"$work/artifacts.new"
  crashes=$(wc -l <"$work/artifacts.new")
  verdict=ok
  if ((status != 0 || crashes > 0)); then
    verdict=$(grep -o -m1 -E 'ERROR: libFuzzer: [a-z -]+[a-z]|ERROR: AddressSanitizer: [a-zA-Z-]+|ERROR: LeakSanitizer|runtime error: [a-z ]+[a-z]|fuzz invariant violated|terminate called' "$work/log" | head -1)
    verdict="${verdict:-exit status $status}"
    {
      echo "fuzz: $t FAILED ($verdict); log: $work/log"
      # The report from its first line (the sanitizer's or the invariant's), without the shadow legend.
      awk '/ERROR:|runtime error: [a-z ]+[a-z]|fuzz invariant violated|terminate called|deadly signal/ { on = 1 }
           /Shadow bytes around|SUMMARY:/ { if (on) { print; exit } }
           on && shown++ < 40 { print }' "$work/log" | sed 's/^/    /'
      while read -r a; do echo "fuzz: $t input: $a  (rerun: $exe $a)"; done <"$work/artifacts.new"
    } >"$work/report"
    cat "$work/report"
  fi
  rate=$(awk -v n="${execs:-0}" -v s="$elapsed" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "$elapsed" "$rate" "$crashes" "$verdict" >"$work/row"
  if ((merge)) && [[ "$verdict" == ok ]]; then
    mkdir -p "$corpus_root/$t"
    "$exe" -merge=1 -timeout="${FUZZ_TIMEOUT:-10}" "$corpus_root/$t" "$work/corpus" >"$work/merge.log" 2>&1
    echo "fuzz: $t merge: $(grep -o 'MERGE-OUTER: [0-9]* new files' "$work/merge.log" || echo 'see '"$work/merge.log")"
  fi
}

# The targets run side by side, one per core (each is single-threaded): FUZZ_JOBS sets how many.
for t in "${targets[@]}"; do
  [[ -x "$build/$t" ]] || { echo "fuzz: no target $t in $build" >&2; exit 2; }
done
parallel="${FUZZ_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}"
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
  fuzz_one "$t" &
done
wait

rows=()
failed=()
for t in "${targets[@]}"; do
  row="$build/run/$t/row"
  [[ -f "$row" ]] || { echo "fuzz: $t wrote no result (see $build/run/$t)" >&2; failed+=("$t"); continue; }
  cat "$row" >>"$results"
  IFS=$'\t' read -r name execs elapsed rate crashes verdict <"$row"
  rows+=("$(printf '%-26s %11s %9s %8s %8d  %s' "$name" "$execs" "$elapsed" "$rate" "$crashes" "$verdict")")
  [[ "$verdict" == ok ]] || failed+=("$t")
done

echo
printf '%-26s %11s %9s %8s %8s  %s\n' target executions seconds exec/s crashes result
for r in "${rows[@]}"; do echo "$r"; done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (inputs under $build/artifacts)"
  exit 1
fi
