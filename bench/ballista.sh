#!/usr/bin/env bash
# Ingest on Apache DataFusion Ballista vs the local engine, on the real corpus (bench/real-corpus.toml).
#
# Runs, one after the other on this machine: the local engine (and BASELINE=<an earlier mixlab
# binary>'s local engine, for the "keeps its speed" check in the same run), then `--engine
# ballista` against a scheduler with 1 executor and with 2 executors (`mixlab cluster`, every
# process on 127.0.0.1). Records wall time, MB/s, the CPU seconds of the client and of every
# executor, and whether each manifest equals the local engine's. From the CPU seconds it
# estimates a corpus 1,000x the real one at 8 and 64 executors. Appends to bench/RESULTS.md.
#
#   PROFILE=dev BASELINE=~/.cache/mixlab-stream-bin bash bench/ballista.sh
source "$(dirname "$0")/lib.sh"
build_release
BASELINE="${BASELINE:-}"
CONFIG="$ROOT/bench/real-corpus.toml"
W="$OUT/ballista"
rm -rf "$W"
mkdir -p "$W"
TICKS="$(getconf CLK_TCK)"

# CPU seconds (user + system) a live process has used.
cpu_of() { awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

# run NAME BINARY [ingest args...]: one timed ingest; appends "NAME wall rss user sys" to $W/times.
run() {
  local name="$1" binary="$2"; shift 2
  rm -rf "$W/$name"
  /usr/bin/time -f "$name %e %M %U %S" -a -o "$W/times" \
    "$binary" --quiet --out "$W/$name" ingest --config "$CONFIG" "$@" > "$W/$name.stdout"
}

# cluster_run NAME EXECUTORS: a scheduler and EXECUTORS executors (one task each), one ingest.
cluster_run() {
  local name="$1" executors="$2" port=$((51000 + RANDOM % 2000)) pids=()
  "$MIXLAB" cluster scheduler --bind "127.0.0.1:$port" --executor-timeout 10 \
    --min-executors "$executors" 2> "$W/$name-scheduler.log" & pids+=($!)
  for i in $(seq 1 "$executors"); do
    "$MIXLAB" cluster executor --scheduler "127.0.0.1:$port" --bind "127.0.0.1:$((port + 10 * i))" \
      --grpc-port "$((port + 10 * i + 1))" --work-dir "$W/$name-work-$i" --vcores 1 \
      --heartbeat 1 --allow-dir "$ROOT" --allow-dir "$SHARED" 2> "$W/$name-executor-$i.log" & pids+=($!)
  done
  until curl -sf "http://127.0.0.1:$port/readyz" > /dev/null; do sleep 0.2; done
  local before=() after=()
  for pid in "${pids[@]}"; do before+=("$(cpu_of "$pid")"); done
  RUST_LOG="warn,mixlab_ingest=info" run "$name" "$MIXLAB" --engine ballista \
    --scheduler "127.0.0.1:$port" --jobs 4 2> "$W/$name.stderr"
  for pid in "${pids[@]}"; do after+=("$(cpu_of "$pid")"); done
  local cpu=""
  for i in "${!pids[@]}"; do
    cpu+=" $(awk -v a="${after[$i]}" -v b="${before[$i]}" 'BEGIN { printf "%.2f", a - b }')"
  done
  echo "$name$cpu" >> "$W/cluster-cpu"
  kill "${pids[@]}"
  wait "${pids[@]}" 2> /dev/null || true
}

run local "$MIXLAB" --engine local
if [ -n "$BASELINE" ]; then run baseline "$BASELINE"; fi
cluster_run ballista-1 1
cluster_run ballista-2 2
run local-again "$MIXLAB" --engine local

python3 - "$W" "$(machine)" "$(isa)" "$BASELINE" <<'PY' | append_results
import json, sys, datetime
w, machine, isa, baseline = sys.argv[1:5]
times = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(f"{w}/times")}
cpu = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(f"{w}/cluster-cpu")}
def manifest(name):
    return json.load(open(f"{w}/{name}/shards/manifest.json"))
local = manifest("local")
mb = sum(d["stats"]["bytes_read"] for d in local["domains"]) / 1e6
tokens = sum(d["stats"]["tokens"] for d in local["domains"])
print(f"## {datetime.date.today()} Ballista ingest: `PROFILE=dev BASELINE={baseline or '-'} bash bench/ballista.sh`")
print(f"\nMachine: {machine}, {isa}. Corpus: bench/real-corpus.toml ({mb:.1f} MB of text, 9 domains of one file each, "
      f"{tokens:,} tokens kept). Every process on this machine; executors run one task at a time (`--vcores 1`), "
      "and the judge UDF spreads a batch over the machine's cores (rayon). Wall times include process start.\n")
print("| run | wall s | MB/s | vs local | client CPU s | scheduler CPU s | executor CPU s | peak RSS client MB | manifest = local |")
print("|---|---|---|---|---|---|---|---|---|")
base_wall = (times["local"][0] + times["local-again"][0]) / 2
for name in ["local", "local-again", "baseline", "ballista-1", "ballista-2"]:
    if name not in times:
        continue
    wall, rss, user, sys_ = times[name]
    c = cpu.get(name)
    same = "yes" if manifest(name) == local else "no"
    print(f"| {name} | {wall:.2f} | {mb / wall:.2f} | {base_wall / wall:.2f}x | {user + sys_:.1f} | "
          f"{c[0] if c else 0:.1f} | {' + '.join(f'{x:.1f}' for x in c[1:]) if c else '-'} | {rss / 1024:.0f} | {same} |")
if "baseline" in times:
    print(f"\nLocal engine now / before this change (BASELINE binary, same run): **{times['baseline'][0] / base_wall:.2f}x** "
          f"(MB/s; goal >= 0.95).")
for name in ["ballista-1", "ballista-2"]:
    print(f"{name}: overhead over local {times[name][0] - base_wall:+.1f} s wall ({times[name][0] / base_wall:.2f}x).", end=" ")
print()
# Estimate for a corpus 1,000x this one (many files: every executor busy), from CPU seconds:
# executors' work (reading twice, judging, staging, the dedup queries, tokenizing, shard writing)
# parallelizes over executors x cores; the client's (resolving the dedup groups, dropped lists,
# the manifest) and the scheduler's stay on one machine each.
wall, rss, user, sys_ = times["ballista-2"]
client = user + sys_
executors = sum(cpu["ballista-2"][1:])
scheduler = cpu["ballista-2"][0]
cores = 2
print(f"\nEstimate for 1,000x the corpus ({mb * 1000 / 1e3:.0f} GB of text) from the ballista-2 CPU seconds: "
      f"executors {executors:.1f} s, client {client:.1f} s, scheduler {scheduler:.1f} s per corpus.")
print("\n| executors (2 cores each) | executor-bound hours | client-bound hours | scheduler-bound hours | estimated MB/s |")
print("|---|---|---|---|---|")
for n in [1, 2, 8, 64]:
    ex = 1000 * executors / (n * cores) / 3600
    cl = 1000 * client / 3600
    sc = 1000 * scheduler / 3600
    print(f"| {n} | {ex:.2f} | {cl:.2f} | {sc:.2f} | {mb * 1000 / (max(ex, cl, sc) * 3600):.1f} |")
# What dedup sends the client: exact duplicates (ordinal and first ordinal, 16 bytes each) and the
# records whose band keys collide (ordinal and 128-slot signature, 520 bytes each).
import re
log = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{w}/ballista-2.stderr").read())  # without colours
found = re.search(r"exact_duplicates=(\d+) colliding=(\d+)", log)
if found:
    exact, colliding = map(int, found.groups())
    records = sum(d["stats"]["records_read"] for d in local["domains"])
    kept = sum(d["stats"]["documents"] for d in local["domains"])
    held = exact * 16 + colliding * (8 + 4 * 128)
    print(f"\nDedup on the cluster returned {exact:,} exact duplicates and {colliding:,} colliding records "
          f"of {records:,} records ({held / 1e6:.2f} MB to the client); at 1,000x with the same duplicate rates "
          f"about {held * 1000 / 1e9:.1f} GB, against {kept * 1000 * (16 + 4 * 128 + 24 * 16) / 1e9:.0f} GB "
          "for the index of every kept document that the client held before.")
PY
tail -n 25 "$RESULTS"
