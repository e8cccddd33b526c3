#!/usr/bin/env bash
# Matrix-product benchmark: the trainer's backend (burn-flex → gemm, kernel chosen at run time) vs
# PyTorch eager, fp32, 2 threads, on the shapes that dominate a training step; ROUNDS alternating
# rounds, the median ratio per shape. Records the CPU model and its vector ISA. Appends to
# bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
python_env torch numpy
ROUNDS="${ROUNDS:-3}"
export RAYON_NUM_THREADS=2
for round in $(seq 1 "$ROUNDS"); do
  "$TARGET/$PROFILE_DIR/matmul" > "$OUT/matmul-mixlab-$round.json"
  "$VENV/bin/python" "$ROOT/bench/peers/torch_matmul.py" 2 > "$OUT/matmul-torch-$round.json"
done
"$VENV/bin/python" - "$OUT" "$(machine)" "$(isa)" "$ROUNDS" <<'PY' | append_results
import datetime, json, statistics, sys
out, machine, isa, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
load = lambda path: [json.loads(l) for l in open(path) if l.startswith("{")]
ours = [load(f"{out}/matmul-mixlab-{r}.json") for r in range(1, rounds + 1)]
peer = [load(f"{out}/matmul-torch-{r}.json") for r in range(1, rounds + 1)]
import torch
print(f"## {datetime.date.today()} matrix products: `bash bench/matmul.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. fp32, 2 threads, {rounds} alternating rounds (GFLOP/s medians). "
      f"PyTorch {torch.__version__} eager.\n")
print("| shape (m×k×n) | mixlab (burn-flex) | PyTorch | ratio (median of rounds) |")
print("|---|---|---|---|")
for i, s in enumerate(ours[0]):
    mine = [r[i]["gflops"] for r in ours]
    theirs = [r[i]["gflops"] for r in peer]
    ratio = statistics.median(a / b for a, b in zip(mine, theirs))
    print(f"| {s['m']}×{s['k']}×{s['n']} | {statistics.median(mine):.0f} | {statistics.median(theirs):.0f} | {ratio:.2f} |")
PY
