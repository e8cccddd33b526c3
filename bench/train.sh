#!/usr/bin/env bash
# Trainer benchmark: mixlab (burn, flex CPU backend) vs the identical model in PyTorch eager, CPU.
#
# `small` preset (≈10M parameters at the 8k vocabulary), sequence 256, batch 16, 2 threads:
# training tokens/s (forward + backward + AdamW step), eval tokens/s (forward without autodiff) and
# peak memory; then memory over 1,000 steps of the `tiny` preset (must stay flat).
# Uses the real-corpus shards of bench/ingest.sh (made here if missing). Appends to bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
python_env torch numpy
STEPS="${STEPS:-30}"
SHARDS_ROOT="$OUT/ingest-x1"
if [ ! -f "$SHARDS_ROOT/shards/manifest.json" ]; then
  "$MIXLAB" --quiet --out "$SHARDS_ROOT" ingest --config "$ROOT/bench/real-corpus.toml"
fi
export RAYON_NUM_THREADS=2
rm -rf "$SHARDS_ROOT/runs/bench-small" "$SHARDS_ROOT/runs/bench-memory"
"$MIXLAB" --log-format json --out "$SHARDS_ROOT" train --config "$ROOT/bench/real-corpus.toml" \
  --run runs/bench-small --preset small --steps "$STEPS" > /dev/null 2> "$OUT/train-small.log"

model_json=$("$VENV/bin/python" -c "import json,sys,tomllib; print(json.dumps(tomllib.load(open(sys.argv[1],'rb'))['model']))" \
  "$SHARDS_ROOT/runs/bench-small/config.toml")
"$VENV/bin/python" "$ROOT/bench/peers/torch_train.py" --config "$model_json" --batch 16 --seq 256 \
  --steps "$STEPS" --threads 2 > "$OUT/train-torch.json"

# Memory over 1,000 steps: tiny preset, batch 4 × 128 tokens (so 1,000 steps take minutes), an
# evaluation and an RSS reading every 100 steps.
sed -e 's/^steps = .*/steps = 1000\neval_every = 100\ncheckpoint_every = 500/' \
  -e 's/^batch_size = .*/batch_size = 4/' -e 's/^seq_len = .*/seq_len = 128/' \
  "$ROOT/bench/real-corpus.toml" > "$OUT/train-memory.toml"
sed -i "s|\.\./\.\./shared|$SHARED|g" "$OUT/train-memory.toml"
"$MIXLAB" --log-format json --out "$SHARDS_ROOT" train --config "$OUT/train-memory.toml" \
  --run runs/bench-memory --preset tiny > /dev/null 2> "$OUT/train-memory.log"

"$VENV/bin/python" - "$OUT" "$(machine)" "$STEPS" <<'PY' | append_results
import datetime, json, sys
out, machine, steps = sys.argv[1], sys.argv[2], sys.argv[3]
def events(path):
    return [json.loads(l)["fields"] for l in open(path) if l.startswith("{")]
small = next(e for e in events(f"{out}/train-small.log") if e.get("message") == "trained")
torch = json.load(open(f"{out}/train-torch.json"))
mem = [(e["step"], e["rss_mb"]) for e in events(f"{out}/train-memory.log") if e.get("message") == "evaluated"]
print(f"## {datetime.date.today()} trainer: `bash bench/train.sh`")
print(f"\nMachine: {machine}. `small` preset ({torch['parameters']:,} parameters), sequence 256, batch 16, "
      f"{steps} steps after warm-up, 2 threads (RAYON_NUM_THREADS=2, torch.set_num_threads(2)).\n")
print("| | train tokens/s | eval tokens/s | peak RSS MB |")
print("|---|---|---|---|")
print(f"| mixlab (burn 0.22 flex) | {small['train_tokens_per_second']:,.0f} | {small['eval_tokens_per_second']:,.0f} | {small['peak_rss_mb']:.0f} |")
print(f"| PyTorch {torch['torch']} eager | {torch['train_tokens_per_second']:,.0f} | {torch['eval_tokens_per_second']:,.0f} | {torch['peak_rss_mb']:.0f} |")
print(f"\nmixlab / PyTorch: training **{small['train_tokens_per_second'] / torch['train_tokens_per_second']:.2f}×**, "
      f"eval **{small['eval_tokens_per_second'] / torch['eval_tokens_per_second']:.2f}×**.")
print("\nMemory over 1,000 steps (`tiny`, batch 4 × 128, RSS MB at each evaluation): " + ", ".join(f"{s}: {r:.0f}" for s, r in mem)
      + (f". Growth from step 200 to 1,000: {mem[-1][1] - mem[1][1]:+.0f} MB." if len(mem) > 2 else "."))
PY
tail -n 12 "$RESULTS"
