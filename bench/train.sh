#!/usr/bin/env bash
# Trainer benchmark: mixlab (burn, flex CPU backend) vs the identical model in PyTorch eager, CPU.
#
# `small` preset (≈10M parameters at the 8k vocabulary), sequence 256, batch 16, 2 threads:
# training tokens/s (forward + backward + AdamW step), eval tokens/s (forward without autodiff) and
# peak memory, in ROUNDS alternating rounds; then memory over 1,000 steps of the `tiny` preset
# (must stay flat).
# Uses the real-corpus shards of bench/ingest.sh (made here if missing). Appends to bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
python_env torch numpy
STEPS="${STEPS:-12}"
WARMUP=3
ROUNDS="${ROUNDS:-3}"
SHARDS_ROOT="$OUT/ingest-x1"
if [ ! -f "$SHARDS_ROOT/shards/manifest.json" ]; then
  "$MIXLAB" --quiet --out "$SHARDS_ROOT" ingest --config "$ROOT/bench/real-corpus.toml"
fi
export RAYON_NUM_THREADS=2
# Rounds alternate mixlab and PyTorch so that both see the same drift in this shared machine's
# speed; each side times STEPS steps after WARMUP warm-up steps. The ratio reported is the median
# of the rounds' ratios.
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$SHARDS_ROOT/runs/bench-small"
  RUST_LOG="info,mixlab=debug" "$MIXLAB" --log-format json --out "$SHARDS_ROOT" train \
    --config "$ROOT/bench/real-corpus.toml" --run runs/bench-small --preset small \
    --steps $((STEPS + WARMUP)) > /dev/null 2> "$OUT/train-small-$round.log"
  model_json=$("$VENV/bin/python" -c "import json,sys,tomllib; print(json.dumps(tomllib.load(open(sys.argv[1],'rb'))['model']))" \
    "$SHARDS_ROOT/runs/bench-small/config.toml")
  "$VENV/bin/python" "$ROOT/bench/peers/torch_train.py" --config "$model_json" --batch 16 --seq 256 \
    --steps "$STEPS" --warmup "$WARMUP" --threads 2 > "$OUT/train-torch-$round.json"
done

# Memory over 1,000 steps: tiny preset, batch 4 × 128 tokens (so 1,000 steps take minutes), an
# evaluation and an RSS reading every 100 steps.
sed -e 's/^steps = .*/steps = 1000\neval_every = 100\ncheckpoint_every = 500/' \
  -e 's/^batch_size = .*/batch_size = 4/' -e 's/^seq_len = .*/seq_len = 128/' \
  "$ROOT/bench/real-corpus.toml" > "$OUT/train-memory.toml"
sed -i "s|\.\./\.\./shared|$SHARED|g" "$OUT/train-memory.toml"
rm -rf "$SHARDS_ROOT/runs/bench-memory"
"$MIXLAB" --log-format json --out "$SHARDS_ROOT" train --config "$OUT/train-memory.toml" \
  --run runs/bench-memory --preset tiny > /dev/null 2> "$OUT/train-memory.log"

"$VENV/bin/python" - "$OUT" "$(machine); ISA: $(isa)" "$STEPS" "$WARMUP" "$ROUNDS" <<'PY' | append_results
import datetime, json, statistics, sys
out, machine, steps, warmup, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def events(path):
    return [json.loads(l)["fields"] for l in open(path) if l.startswith("{")]
rows = []
for r in range(1, rounds + 1):
    log = events(f"{out}/train-small-{r}.log")
    per_step = [e["tokens_per_second"] for e in log if e.get("message") == "step" and e["step"] > warmup]
    assert len(per_step) == steps, f"round {r}: {len(per_step)} timed steps"
    train = len(per_step) / sum(1.0 / t for t in per_step)  # tokens per second over the timed steps
    trained = next(e for e in log if e.get("message") == "trained")
    torch = json.load(open(f"{out}/train-torch-{r}.json"))
    rows.append((train, trained["eval_tokens_per_second"], trained["peak_rss_mb"], torch))
mem = [(e["step"], e["rss_mb"]) for e in events(f"{out}/train-memory.log") if e.get("message") == "evaluated"]
torch = rows[0][3]
print(f"## {datetime.date.today()} trainer: `bash bench/train.sh`")
print(f"\nMachine: {machine}. `small` preset ({torch['parameters']:,} parameters), sequence 256, batch 16, "
      f"{rounds} rounds alternating mixlab and PyTorch, each timing {steps} steps after {warmup} warm-up steps, "
      "2 threads (RAYON_NUM_THREADS=2, torch.set_num_threads(2)).\n")
print("| round | mixlab train tok/s | PyTorch train tok/s | ratio | mixlab eval tok/s | PyTorch eval tok/s | ratio | peak RSS MB mixlab / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
train_ratios, eval_ratios = [], []
for i, (train, ev, rss, t) in enumerate(rows, 1):
    train_ratios.append(train / t["train_tokens_per_second"])
    eval_ratios.append(ev / t["eval_tokens_per_second"])
    print(f"| {i} | {train:,.0f} | {t['train_tokens_per_second']:,.0f} | {train_ratios[-1]:.2f} | {ev:,.0f} | "
          f"{t['eval_tokens_per_second']:,.0f} | {eval_ratios[-1]:.2f} | {rss:.0f} / {t['peak_rss_mb']:.0f} |")
print(f"\nmixlab / PyTorch (median of rounds): training **{statistics.median(train_ratios):.2f}×** "
      f"(range {min(train_ratios):.2f}–{max(train_ratios):.2f}), eval **{statistics.median(eval_ratios):.2f}×** "
      f"(range {min(eval_ratios):.2f}–{max(eval_ratios):.2f}). PyTorch {torch['torch']} eager.")
print("\nMemory over 1,000 steps (`tiny`, batch 4 × 128, RSS MB at each evaluation): " + ", ".join(f"{s}: {r:.0f}" for s, r in mem)
      + (f". Growth from step 200 to 1,000: {mem[-1][1] - mem[1][1]:+.0f} MB." if len(mem) > 2 else "."))
PY
tail -n 12 "$RESULTS"
