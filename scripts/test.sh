#!/usr/bin/env bash
# Set-up, build and the whole test suite (CPU; GPU tests skip themselves without a device), then
# the CPU code built a second time with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer
# on) and the test suite again under it. Any sanitizer report fails the run, including one from a
# vitscuda process that a test expected to fail anyway.
# Usage: scripts/test.sh [--no-sanitizers | --only-sanitizers] [BUILD_DIR]
#   BUILD_DIR          the normal (Release) build, default build; the sanitizer build is BUILD_DIR-asan
#   --no-sanitizers    only the normal build and its tests (a quick local run)
#   --only-sanitizers  only the sanitizer build and its tests (dependencies must be installed)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sanitizers=1 normal=1 build=""
while (($#)); do
  case "$1" in
    --no-sanitizers) sanitizers=0; shift ;;
    --only-sanitizers) normal=0; shift ;;
    -*) echo "test.sh: unknown option $1" >&2; exit 2 ;;
    *) build="$1"; shift ;;
  esac
done
build="${build:-$root/build}"
[[ "$build" = /* ]] || build="$PWD/$build"
# Cores for the builds and ctest; nproc alone would honour an OMP_NUM_THREADS set by the caller.
jobs="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"

phase_start=$(date +%s)
phase() { # prints how long the previous phase took
  local now
  now=$(date +%s)
  echo "test.sh: $1 took $((now - phase_start)) s"
  phase_start=$now
}

# The uroman golden test fails instead of skipping when uroman is missing.
export VITSCUDA_REQUIRE_UROMAN=1
# ctest runs one test per core; each test (and the programs it starts) on one OpenMP thread keeps the cores
# from being oversubscribed, where every parallel region's barrier waits for a time slice (the CPU suite:
# 28 s instead of 58 s on an idle 2-core machine, and ten times slower beside other work). Tests of thread-count
# independence set their thread counts themselves. Only the test runs get it: nproc honours OMP_NUM_THREADS,
# and the builds' -j "$(nproc)" would become -j 1.
single_thread=(env OMP_NUM_THREADS=1)
if ((normal)); then
  "$root/scripts/setup.sh" --with-uroman "$build"
  phase "build ($build)"
  (cd "$build" && "${single_thread[@]}" ctest --output-on-failure -j "$jobs" --timeout 900)
  phase "tests ($build)"
fi
((sanitizers)) || exit 0

# ------------------------------------------------------------------ ASan + UBSan
# -O1 with line tables: a sanitized -O0 build runs the numeric code several times slower, -O1 keeps
# every report's stack accurate (frame pointers are kept, see CMakeLists.txt), and -g1 gives the
# reports file and line at about three quarters of the compile time of -g. The programs' and the
# tests' own sources are built at -O0 (see CMakeLists.txt).
asan="$build-asan"
cmake -S "$root" -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
  -DVITSCUDA_ENABLE_CUDA=OFF -DVITSCUDA_SANITIZE=address,undefined
cmake --build "$asan" -j "$jobs"
phase "sanitizer build ($asan)"

# Reports go to files, one per process, so that a report from a vitscuda run that a test expects to
# fail (and whose exit status it therefore accepts) is still seen. UBSan (a runtime of its own with
# GCC) prints to stderr whatever its log_path; aborting after the report lets ASan's handler write
# a report with the stack of the undefined behaviour into the files too.
reports="$asan/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
common="log_path=$reports/report"
export ASAN_OPTIONS="$common:handle_abort=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:strict_string_checks=1"
export UBSAN_OPTIONS="$common:print_stacktrace=1:halt_on_error=1:abort_on_error=1"
export LSAN_OPTIONS="$common"
status=0
(cd "$asan" && "${single_thread[@]}" ctest --output-on-failure -j "$jobs" --timeout 1800) ||
  status=$?
phase "tests under ASan + UBSan"
if compgen -G "$reports/report*" >/dev/null; then
  echo "test.sh: sanitizer reports:" >&2
  for f in "$reports"/report*; do
    echo "---- $f" >&2
    cat "$f" >&2
  done
  status=1
fi
if ((status)); then
  echo "test.sh: FAILED under the sanitizers" >&2
  exit "$status"
fi
echo "test.sh: all tests passed, and under ASan + UBSan with no report"

# ------------------------------------------------------------------ fuzzing, short
# Every parser of outside input under libFuzzer for a few seconds, from the committed corpus (the long
# runs are done by hand: FUZZ_RUNS=1000000 scripts/fuzz.sh). A crash fails the run and keeps the input.
"$root/scripts/fuzz.sh" "${VITSCUDA_CI_FUZZ_SECONDS:-10}"
phase "short fuzzing run"
