#!/usr/bin/env bash
# Runs each fuzz target of src/fuzz/ for FUZZ_SECONDS (default 600) on fresh seeds and appends the
# case counts to bench/RESULTS.md. A failure prints the smallest failing input: add it to
# tests/fuzz-corpus/<target>/found-* once fixed.
#
#   bash bench/fuzz.sh                 # all four targets, 10 minutes each
#   FUZZ_SECONDS=60 bash bench/fuzz.sh config lines
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

seconds="${FUZZ_SECONDS:-600}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config lines shards mixture)

# The test binary is built once and run directly, so editing the tree meanwhile changes nothing.
tests="$(cargo test --bin mixlab --locked --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bin"]:
        print(m["executable"])')"
results=()
for target in "${targets[@]}"; do
  log="$OUT/fuzz-$target.log"
  echo "fuzzing $target for $seconds s (log: $log)"
  if MIXLAB_FUZZ_SECONDS="$seconds" "$tests" --exact "fuzz::$target::fuzz_$target" --nocapture >"$log" 2>&1; then
    results+=("$(grep -h "^fuzz target $target:" "$log")")
  else
    results+=("fuzz target $target: FAILED, see $log: $(grep -h 'minimal input' -A3 "$log" | tr -s ' \n' ' ')")
  fi
  echo "${results[-1]}"
done

{
  echo "## Fuzzing, $(date -u +%Y-%m-%d) ($(machine); $(isa))"
  echo
  echo "\`FUZZ_SECONDS=$seconds bash bench/fuzz.sh ${targets[*]}\`"
  echo
  for line in "${results[@]}"; do echo "- $line"; done
} | append_results
