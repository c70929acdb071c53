#!/usr/bin/env bash
# The reliability report, measured: runs the damaged-input and fault-injection tests, the SIGKILL
# crash test (scripts/crash_test.sh) and a fuzzing pass of every reader (scripts/fuzz.sh), and
# prints one Markdown report of what was tried, how many times, and the outcome. Also written to
# BUILD/reliability.md; docs/reliability.md holds the report of the last run (the README links it).
# Exits non-zero when anything failed.
#
# Usage: scripts/reliability.sh [--build DIR] [--kills N] [--fuzz-seconds S]
#   --build         the normal build (built by scripts/setup.sh if missing; default build)
#   --kills         SIGKILLs of the crash test (default 20)
#   --fuzz-seconds  seconds per fuzz target (default 20); 0 skips fuzzing
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build" kills=20 fuzz_seconds=20
while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --kills) kills="$2"; shift 2 ;;
    --fuzz-seconds) fuzz_seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "reliability.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
build="$(mkdir -p "$build" && cd "$build" && pwd)"
[[ -x "$build/test_io" && -x "$build/test_cli" ]] || "$root/scripts/setup.sh" "$build"
work="$build/reliability"
rm -rf "$work"
mkdir -p "$work"
report="$build/reliability.md"
status=0

# ------------------------------------------------------------------ the tests
# class | what is done to the input or the run | test (Suite.Name) | what must happen
rows=(
  "input|prepared cache (.vcds): every single-byte change, one at a time|Dataset.RandomByteFlipsNeverCrashAndAreAlwaysCaught|every change outside the zero padding is caught when the file is opened"
  "input|prepared cache: damaged header, index, item length fields|Dataset.CorruptHeaderOrIndexIsReported|an error naming the field, before any item is read"
  "input|prepared cache: item length field pointing past the file|Dataset.CorruptLengthFieldIsCaughtBeforeAnyRead|an error at open, no read out of bounds"
  "input|prepared cache: truncated or extended file|Dataset.TruncatedOrExtendedFileIsReported|an error naming the expected and actual size"
  "input|prepared cache: bytes changed and file cut short under an open reader|Dataset.DamageAfterOpenIsCaughtOnEveryReadNeverACrash|each read of a damaged item is an error naming it; no SIGBUS"
  "input|checkpoint MANIFEST.json: every single-bit flip|Checkpoint.AnySingleBitFlipInTheManifestIsDetected|every flip detected"
  "input|checkpoint files: a flipped byte at the start, middle and end of each|Checkpoint.FlippedByteInAnyFileFailsVerificationNamingTheFile|verification fails naming the file"
  "input|checkpoint files truncated, extended or missing|Checkpoint.TruncatedExtendedOrMissingFilesAreNamed|verification fails naming the file"
  "input|checkpoint directory renamed to another step|Checkpoint.RenamedDirectoryDisagreeingWithItsManifestIsRejected|rejected"
  "input|incomplete, corrupt and temporary checkpoints beside valid ones|Checkpoint.LatestValidSkipsAndReportsIncompleteCorruptAndTemporaryDirectories|--resume loads the newest valid one and names each skipped one"
  "input|manifest rows and audio files: missing, unreadable, silent, NaN, too short, too long, no text, no vocabulary characters, duplicate id, bad columns|Prepare.AcceptsAndRejectsExactlyTheExpectedUtterances|each row rejected with its line and reason in rejected.tsv; the good ones cached"
  "input|a corpus where every sample is bad|PrepareCli.EverySampleBadExitsNonZero|non-zero exit, no cache"
  "input|damaged prepared data and checkpoints given to vitscuda verify|Verify.PreparedDataAndItsDamage|FAILED line naming the file and item; non-zero exit"
  "input|a run directory with damaged and half-written checkpoints given to vitscuda verify|Verify.CheckpointsOfARunAndTheOneResumeLoads|names the checkpoint --resume loads"
  "input|fuzzing finding: resampling to zero samples|FuzzRegression.ResamplingToNoSampleIsEmptyNotACrash|no samples, no crash"
  "input|fuzzing finding: audio header claiming 2^36 samples|FuzzRegression.AudioHeaderClaimingHugeLengthReadsWhatIsThere|reads what is there"
  "input|fuzzing finding: LJSpeech id longer than NAME_MAX|FuzzRegression.LJSpeechIdLongerThanNameMaxIsARejectedRow|a rejected row (bad_path)"
  "input|fuzzing finding: JSON nested deeper than 64 levels, in every JSON reader|FuzzRegression.DeeplyNestedJsonIsAnErrorInEveryReader|an error, not a stack overflow"
  "input|fuzzing finding: optimizer state with no elements|FuzzRegression.EmptyOptimizerStateRoundTrips|round-trips, no UB"
  "fault|SIGTERM during training|Train.SigtermSavesALoadableCheckpointAndTheResumedRunIsBitExact|checkpoint, exit 130; the resumed run ends bit-exact"
  "fault|file-size limit (EFBIG) while writing the model, then the optimizer file of a checkpoint|TrainFaults.FileSizeLimitDuringACheckpointStopsTheRunAndKeepsThePreviousOne|error naming the file, exit 1, previous checkpoint intact; resume ends bit-exact"
  "fault|full file system (a small tmpfs, ENOSPC) during a checkpoint|TrainFaults.FullFileSystemDuringACheckpointStopsTheRunAndKeepsThePreviousOne|error naming the file, exit 1, only complete checkpoints; resume ends bit-exact"
  "fault|disk full inside the checkpoint writer|Checkpoint.DiskFullDuringWriteFileThrowsRemovesTempAndKeepsPreviousCheckpoint|error, temporary directory removed, previous checkpoint intact"
  "fault|disk full in the caller's file writer|Checkpoint.DiskFullInTheCallersWriterLeavesNoTemporaryDirectory|error, no temporary directory left"
  "fault|read-only checkpoints directory|Checkpoint.ReadOnlyCheckpointsDirectoryIsAClearError|an error naming the directory"
  "fault|every cache item corrupted while training runs|TrainFaults.CacheItemsCorruptedDuringTrainingAreNamedCountedAndStopTheRun|each sample named; the run stops (--max-error-rate), exit 1, no final model"
  "fault|one cache item corrupted while training runs|TrainFaults.OneCacheItemCorruptedDuringTrainingIsNamedCountedAndTrainingGoesOn|named and counted in each epoch summary; training goes on"
  "fault|prepared cache truncated while training runs|TrainFaults.CacheTruncatedDuringTrainingIsAnErrorNotACrash|each sample named; the run stops, exit 1"
  "fault|every sample failing in training|Train.EverySampleFailingStopsWithinSeconds|stops within seconds, exit 1"
  "fault|non-finite losses|Train.NonFiniteLossesStopAfterTheLimit|stops after --max-bad-steps, exit 1"
)

filter_of() { # the rows' tests that live in test binary $1 (suites listed in $2)
  local binary="$1" suites="$2" row test filter=""
  for row in "${rows[@]}"; do
    IFS='|' read -r _ _ test _ <<<"$row"
    [[ " $suites " == *" ${test%%.*} "* ]] && filter+="${filter:+:}$test"
  done
  echo "$filter"
}
# One line per test case of a gtest XML report: Suite.Name <tab> result <tab> cases <tab> message.
results_of() {
  awk '
    function attr(s, name,   m) { if (match(s, name "=\"[^\"]*\"")) { m = substr(s, RSTART + length(name) + 2, RLENGTH - length(name) - 3); return m } return "" }
    function flush() { if (test != "") print test "\t" result "\t" (cases == "" ? 1 : cases) "\t" text(message); test = "" }
    /<testcase / { flush(); test = attr($0, "classname") "." attr($0, "name"); result = attr($0, "result"); cases = ""; message = ""
                   if (attr($0, "status") == "notrun") result = "not run"; if ($0 ~ /\/>[ \t]*$/) flush(); next }
    /<property name="cases"/ { cases = attr($0, "value") }
    /<failure / { result = "FAILED"; if (message == "") message = attr($0, "message") }
    /<skipped / { if (result != "FAILED") result = "skipped"; message = attr($0, "message") }
    # gtest prefixes a skip or failure message with its file:line and a newline.
    function text(m) { gsub(/&#x0A;/, "\n", m); sub(/^[^\n]*:[0-9]+\n/, "", m); gsub(/\n/, " ", m)
                       gsub(/&quot;/, "\"", m); gsub(/&apos;/, "\047", m); gsub(/&lt;/, "<", m); gsub(/&gt;/, ">", m)
                       gsub(/&amp;/, "\\&", m); return m }
    /<\/testcase>/ { flush() }
  ' "$1"
}

echo "== damaged inputs and injected faults (tests)"
: >"$work/results.tsv"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
for binary in test_io:"Dataset Checkpoint FuzzRegression" test_cli:"Prepare PrepareCli Verify Train TrainFaults"; do
  exe="${binary%%:*}" suites="${binary#*:}"
  filter="$(filter_of "$exe" "$suites")"
  [[ -n "$filter" ]] || continue
  (cd "$build" && "./$exe" --gtest_filter="$filter" --gtest_output="xml:$work/$exe.xml") >"$work/$exe.log" 2>&1 || status=1
  [[ -f "$work/$exe.xml" ]] || { echo "reliability.sh: $exe wrote no report; see $work/$exe.log" >&2; status=1; continue; }
  results_of "$work/$exe.xml" >>"$work/results.tsv"
done

# ------------------------------------------------------------------ the crash test
echo "== SIGKILL crash test ($kills kills)"
crash_status=0
"$root/scripts/crash_test.sh" --build "$build" --kills "$kills" >"$work/crash_test.log" 2>&1 || crash_status=$?
((crash_status == 0)) || status=1

# ------------------------------------------------------------------ fuzzing
fuzz_status=0
if ((fuzz_seconds > 0)); then
  echo "== fuzzing, $fuzz_seconds s per target"
  FUZZ_BUILD_DIR="${FUZZ_BUILD_DIR:-$root/build-fuzz}" "$root/scripts/fuzz.sh" "$fuzz_seconds" >"$work/fuzz.log" 2>&1 ||
    fuzz_status=$?
  ((fuzz_status == 0)) || status=1
fi

# ------------------------------------------------------------------ the report
{
  echo "Produced by \`scripts/reliability.sh --kills $kills --fuzz-seconds $fuzz_seconds\` on $(date -u +%Y-%m-%d)," \
    "$(nproc) CPU cores, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo "| class | what was tried | cases | expected | outcome | test |"
  echo "|---|---|---|---|---|---|"
  for row in "${rows[@]}"; do
    IFS='|' read -r class what test expected <<<"$row"
    line="$(awk -F'\t' -v t="$test" '$1 == t' "$work/results.tsv")"
    if [[ -z "$line" ]]; then
      outcome="NOT RUN" cases="-"
      status=1
    else
      IFS=$'\t' read -r _ result cases message <<<"$line"
      case "$result" in
        completed) outcome="passed" ;;
        skipped) outcome="skipped: ${message:-no reason given}" ;;
        *) outcome="FAILED${message:+: ${message:0:120}}"; status=1 ;;
      esac
    fi
    outcome="${outcome//|/\\|}"
    echo "| $class | $what | $cases | $expected | $outcome | \`$test\` |"
  done
  echo
  echo "SIGKILL at random moments (\`scripts/crash_test.sh --kills $kills\`), exit status $crash_status:"
  echo
  echo '```'
  sed -n '/^== crash test summary/,$p' "$work/crash_test.log"
  ((crash_status == 0)) || grep '^FAIL' "$work/crash_test.log" || tail -n 20 "$work/crash_test.log"
  echo '```'
  if ((fuzz_seconds > 0)); then
    echo
    echo "Fuzzing (\`scripts/fuzz.sh $fuzz_seconds\`), exit status $fuzz_status:"
    echo
    echo "| target | executions | seconds | exec/s | crashes | result |"
    echo "|---|---|---|---|---|---|"
    tsv="${FUZZ_BUILD_DIR:-$root/build-fuzz}/fuzz-results.tsv"
    if [[ -s "$tsv" ]]; then
      awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$tsv"
    else
      echo "| (no results: see $work/fuzz.log) | | | | | |"
    fi
  fi
} >"$report"
cat "$report"
echo
echo "reliability.sh: report in $report; logs in $work"
exit "$status"
