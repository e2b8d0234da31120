#!/usr/bin/env bash
# Runs built libFuzzer targets, each for a bounded time, and prints one summary line per
# target. Called by fuzz/Makefile:  run.sh OUT_DIR SECONDS TARGET...
#   OUT_DIR   where the binaries are (OUT_DIR/fuzz_TARGET); the working corpus
#             (OUT_DIR/corpus/TARGET), the artifacts (OUT_DIR/artifacts/) and the logs go there
#   SECONDS   -max_total_time of each run
# The seeds of fuzz/corpus/TARGET are copied into the working corpus first, so new inputs
# never land in the repository. Exits non-zero when any run found something.
set -u
cd "$(dirname "$0")"
out=$1
seconds=$2
shift 2

status=0
for t in "$@"; do
  bin="$out/fuzz_$t"
  work="$out/corpus/$t"
  log="$out/fuzz_$t.log"
  mkdir -p "$work" "$out/artifacts"
  cp corpus/"$t"/* "$work"/
  dict=()
  [ -f "$t.dict" ] && dict=("-dict=$t.dict")
  lsan=""
  [ -f "$t.lsan" ] && lsan="suppressions=$PWD/$t.lsan:print_suppressions=0"
  LSAN_OPTIONS="$lsan" \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$t-" "${dict[@]}" "$work" >"$log" 2>&1
  rc=$?
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)
  runs=$(echo "$done_line" | awk '{print $2}')
  [ -n "$runs" ] || runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(echo "$done_line" | awk '{print $5}')
  final=$(grep -E '^#[0-9]+[[:space:]]+DONE ' "$log" | tail -n 1)
  cov=$(echo "$final" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$final" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$final" | sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p')
  if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
    echo "fuzz_$t: $runs runs clean in $secs s (cov: ${cov:-?}, ft: ${ft:-?}, corpus: ${corp:-?})"
  else
    status=1
    echo "!! fuzz_$t: FAILED (exit $rc); the end of $log:"
    tail -n 80 "$log" | sed 's/^/   /'
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ -n "$artifact" ]; then
      echo "   input: $artifact"
      echo "   hex:   $(od -An -tx1 -v "$artifact" | tr -d ' \n' | head -c 2000)"
      echo "   replay: $bin $artifact"
    fi
    echo "fuzz_$t: FAILED after ${runs:-?} runs"
  fi
done
exit $status
