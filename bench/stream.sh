#!/usr/bin/env bash
# Training data streamed from the token cache (issue 34): peak RSS, time to the first step and
# training tokens/s of `small` training (batch 16 × 256, STEPS steps) on the real corpus ×1, ×10
# and ×100, and the time and size of building each cache.
#
# ×1 is bench/real-corpus.toml ingested (bpe-8k tokenizer); ×N are N replicas of its shards with
# new document ids (bench/replicate_shards.py). OLD_MIXLAB=<binary> also runs a build of the
# in-memory sampler (every shard read into memory at start) on OLD_SCALES, side by side, for the
# ratios. Resumable: shard sets and caches are kept under bench/out/stream.
source "$(dirname "$0")/lib.sh"
build_release
python_env pyarrow
SCALES="${SCALES:-1 10 100}"
OLD_SCALES="${OLD_SCALES:-1 10}"
STEPS="${STEPS:-30}"
WARMUP=3
W="$OUT/stream"
mkdir -p "$W"
export RAYON_NUM_THREADS=2

if [ ! -f "$W/x1/shards/manifest.json" ]; then
  real_corpus_domains > "$W/real-corpus.toml"
  "$MIXLAB" --quiet --out "$W/x1" ingest --config "$W/real-corpus.toml" > /dev/null
fi
{
  real_corpus_domains
  printf '[model]\npreset = "small"\n\n[train]\nbatch_size = 16\nseq_len = 256\nsteps = %s\n' "$STEPS"
  printf 'eval_every = 1000\ncheckpoint_every = 1000\neval_sequences = 16\n'
} > "$W/train.toml"
for n in $SCALES; do
  if [ "$n" != 1 ] && [ ! -f "$W/x$n/shards/manifest.json" ]; then
    echo "== replicating the shards x$n"
    mkdir -p "$W/x$n"
    "$VENV/bin/python" "$ROOT/bench/replicate_shards.py" "$W/x1/shards" "$W/x$n/shards" "$n"
  fi
done

# run NAME BINARY SCALE: one training run from nothing; its log and "<wall s> <peak RSS MB>".
run() {
  local name="$1" binary="$2" n="$3"
  rm -rf "$W/x$n/runs/$name"
  date +%s.%N > "$W/$name-x$n.start"
  exec 3> "$W/$name-x$n.time"
  RUST_LOG="info,mixlab=debug" timed "$binary" --log-format json --out "$W/x$n" train \
    --config "$W/train.toml" --run "runs/$name" > /dev/null 2> "$W/$name-x$n.log"
  exec 3>&-
}

: > "$W/rows.txt"
for n in $SCALES; do
  echo "== x$n"
  # The cache from nothing, after a full verification of every shard (what inspect does).
  rm -rf "$W/x$n/shards/cache"
  exec 3> "$W/cache-x$n.time"
  timed "$MIXLAB" --quiet --out "$W/x$n" inspect --rebuild-cache > "$W/inspect-x$n.txt"
  exec 3>&-
  shard_bytes=$(du -sb --exclude=cache "$W/x$n/shards" | cut -f1)
  cache_bytes=$(du -sb "$W/x$n/shards/cache" | cut -f1)
  echo "cache x$n $(cat "$W/cache-x$n.time") $shard_bytes $cache_bytes" >> "$W/rows.txt"
  run streamed "$MIXLAB" "$n"
  echo "run streamed x$n" >> "$W/rows.txt"
  if [ -n "${OLD_MIXLAB:-}" ] && [[ " $OLD_SCALES " == *" $n "* ]]; then
    run memory "$OLD_MIXLAB" "$n"
    echo "run memory x$n" >> "$W/rows.txt"
  fi
done

"$VENV/bin/python" - "$W" "$(machine)" "$(isa)" "$STEPS" "$WARMUP" "${OLD_MIXLAB:-}" <<'PY' | append_results
import datetime, json, sys
w, machine, isa, steps, warmup, old = sys.argv[1:7]
steps, warmup = int(steps), int(warmup)
def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
def measure(name, n):
    log = [json.loads(l) for l in open(f"{w}/{name}-x{n}.log") if l.startswith("{")]
    step_events = [e for e in log if e["fields"].get("message") == "step"]
    assert len(step_events) == steps, f"{name} x{n}: {len(step_events)} steps"
    first = step_events[0]
    tokens_per_step = 16 * 256
    first_end = stamp(first["timestamp"])
    first_step_s = tokens_per_step / first["fields"]["tokens_per_second"]
    start = float(open(f"{w}/{name}-x{n}.start").read())
    timed = [e["fields"]["tokens_per_second"] for e in step_events if e["fields"]["step"] > warmup]
    tps = len(timed) / sum(1.0 / t for t in timed)
    wall, rss = open(f"{w}/{name}-x{n}.time").read().split()
    return first_end - first_step_s - start, tps, float(rss)
caches, runs = {}, {}
for line in open(f"{w}/rows.txt"):
    kind, *rest = line.split()
    if kind == "cache":
        n, wall, rss, shard_bytes, cache_bytes = rest
        caches[n] = (float(wall), float(rss), int(shard_bytes), int(cache_bytes))
    else:
        name, n = rest
        runs[(name, n)] = measure(name, n[1:])
print(f"## {datetime.date.today()} streamed training data: `bash bench/stream.sh`")
print()
print(f"Machine: {machine}; ISA: {isa}. Build: PROFILE=dev. `small` preset, batch 16 × 256, {steps} steps from nothing;")
print(f"tokens/s over steps {warmup + 1}–{steps} (harmonic mean of per-step rates). Time to first step: from launch to the start of")
print("step 1 (shard open, cache open, model, sampler). Peak RSS: /usr/bin/time. ×N: N replicas of the real corpus's shards with new")
print("document ids (bench/replicate_shards.py); the cache built by `mixlab inspect --rebuild-cache` (full verification of every shard included).")
if old:
    print(f"In-memory rows: `{old}`, a build of the sampler before streaming (the whole training split read into memory at start).")
print()
print("| corpus | shards MB | cache MB | cache build s | build peak RSS MB | sampler | time to first step s | train tokens/s | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|")
for n, (wall, rss, shard_bytes, cache_bytes) in caches.items():
    for name in ("streamed", "memory"):
        if (name, n) not in runs:
            continue
        first, tps, peak = runs[(name, n)]
        print(f"| {n} | {shard_bytes / 1e6:,.0f} | {cache_bytes / 1e6:,.0f} | {wall:.1f} | {rss:.0f} | {name} | {first:.2f} | {tps:,.0f} | {peak:,.0f} |")
print()
streamed = {n: runs[("streamed", n)] for n in caches if ("streamed", n) in runs}
ns = list(streamed)
if len(ns) > 1:
    lo, hi = ns[0], ns[-1]
    print(f"Streamed, {hi} vs {lo}: peak RSS {streamed[hi][2] / streamed[lo][2]:.3f}×, time to first step {streamed[hi][0]:.2f} s vs {streamed[lo][0]:.2f} s.")
for n in caches:
    if ("memory", n) in runs:
        s, m = runs[("streamed", n)], runs[("memory", n)]
        print(f"At {n}: streamed / in-memory tokens/s {s[1] / m[1]:.3f}, peak RSS {s[2] / m[2]:.3f}×, time to first step {s[0]:.2f} s vs {m[0]:.2f} s.")
PY
tail -n 20 "$RESULTS"
