# Shared helpers of the bench scripts: build, the Python venv, timing and RESULTS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="$ROOT/../shared"
OUT="$ROOT/bench/out"
RESULTS="$ROOT/bench/RESULTS.md"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
# PROFILE=dev reuses the test build (all crates at opt-level 3, debug assertions on) instead of a
# separate release build of the whole dependency tree (about 50 minutes on 2 cores).
PROFILE="${PROFILE:-release}"
PROFILE_DIR="$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
# MIXLAB=<binary> runs a binary built earlier (a long bench keeps its binary while the tree changes).
MIXLAB="${MIXLAB:-$TARGET/$PROFILE_DIR/mixlab}"
VENV="${MIXLAB_BENCH_VENV:-$HOME/.cache/mixlab-bench-venv}"
mkdir -p "$OUT"

build_release() {
  if [ "$MIXLAB" != "$TARGET/$PROFILE_DIR/mixlab" ]; then return; fi
  # The whole workspace, so features unify as in the test build and nothing is rebuilt twice.
  (cd "$ROOT" && cargo build --profile "$PROFILE" --locked --workspace)
}

# Creates the peers' virtual environment with the given pip packages.
python_env() {
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
  "$VENV/bin/pip" install -q "$@"
}

# Runs a command under /usr/bin/time; prints "<wall seconds> <peak RSS MB>" on fd 3 and keeps stdout.
timed() {
  local log
  log="$(mktemp)"
  /usr/bin/time -f "%e %M" -o "$log" "$@"
  awk '{ printf "%s %.1f\n", $1, $2 / 1024 }' "$log" >&3
  rm -f "$log"
}

machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
}

# The widest x86 vector extension the CPU reports (what gemm's run-time dispatch can pick).
isa() {
  if grep -qw avx512f /proc/cpuinfo; then echo "AVX-512 (avx512f)"
  elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then echo "AVX2 + FMA, no AVX-512"
  else echo "no AVX2"; fi
}

append_results() {
  { echo; cat; } >> "$RESULTS"
}

# step NAME COMMAND...: runs COMMAND once in a resumable experiment under $W (stderr in
# $W/logs/NAME.log, stdout in $W/logs/NAME.out) and marks NAME done; a rerun skips it.
step() {
  local name="$1"; shift
  if [ -e "$W/done/$name" ]; then return; fi
  echo "== $name"
  mkdir -p "$W/done" "$W/logs"
  "$@" 2> >(tee "$W/logs/$name.log" >&2) > "$W/logs/$name.out"
  touch "$W/done/$name"
}

# The real corpus's tokenizer, ingest settings and domains: bench/real-corpus.toml up to its own
# model settings, with paths made absolute (for configs written under bench/out).
real_corpus_domains() {
  sed -n '/^# Settings used by/q;p' "$ROOT/bench/real-corpus.toml" | sed "s#\.\./\.\./shared#$SHARED#g"
}
