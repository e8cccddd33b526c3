#!/usr/bin/env bash
# Matrix-product benchmark: the trainer's kernels (kernels::matmul, instruction set chosen at run
# time) and burn-flex's product (today's path before issue 13) vs PyTorch eager, fp32, 2 threads,
# on the shapes that dominate a training step; ROUNDS alternating rounds, median ratios per shape.
# On an AVX-512 machine each round also times the trainer's kernels forced to AVX2
# (MIXLAB_MATMUL_ISA=avx2). Records the CPU model and its vector ISA. Appends to bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
python_env torch numpy
ROUNDS="${ROUNDS:-3}"
export RAYON_NUM_THREADS=2
FORCED=""
grep -q avx512f /proc/cpuinfo && FORCED=avx2
for round in $(seq 1 "$ROUNDS"); do
  "$TARGET/$PROFILE_DIR/matmul" > "$OUT/matmul-mixlab-$round.json"
  if [ -n "$FORCED" ]; then
    MIXLAB_MATMUL_ISA=$FORCED "$TARGET/$PROFILE_DIR/matmul" > "$OUT/matmul-forced-$round.json"
  fi
  "$VENV/bin/python" "$ROOT/bench/peers/torch_matmul.py" 2 > "$OUT/matmul-torch-$round.json"
done
"$VENV/bin/python" - "$OUT" "$(machine)" "$(isa)" "$ROUNDS" "$FORCED" <<'PY' | append_results
import datetime, json, os, statistics, sys
out, machine, isa, rounds, forced = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def load(name):
    rows = []
    for r in range(1, rounds + 1):
        path = f"{out}/matmul-{name}-{r}.json"
        rows.append([json.loads(l) for l in open(path) if l.startswith("{")] if os.path.exists(path) else [])
    return rows
def gflops(rows, pick):
    """Per round, GFLOP/s per shape of the lines `pick` selects."""
    return [{(x["m"], x["k"], x["n"]): x["gflops"] for x in r if pick(x)} for r in rows]
mine_rows = load("mixlab")
ours_name = next(x["kernel"] for x in mine_rows[0] if x["kernel"] != "burn-flex")
ours = gflops(mine_rows, lambda x: x["kernel"] != "burn-flex")
flex = gflops(mine_rows, lambda x: x["kernel"] == "burn-flex")
peer = gflops(load("torch"), lambda x: True)
avx2 = gflops(load("forced"), lambda x: x["kernel"] != "burn-flex") if forced else None
import torch
med = lambda rs, s: statistics.median(r[s] for r in rs)
ratio = lambda a, b, s: statistics.median(x[s] / y[s] for x, y in zip(a, b))
print(f"## {datetime.date.today()} matrix products: `bash bench/matmul.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. fp32, 2 threads, {rounds} alternating rounds (GFLOP/s medians). "
      f"PyTorch {torch.__version__} eager. Trainer kernels: `{ours_name}`.\n")
head = f"| shape (m×k×n) | mixlab ({ours_name}) |"
head += " mixlab forced AVX2 |" if forced else ""
head += " burn-flex | PyTorch | mixlab / PyTorch |"
head += " forced AVX2 / burn-flex |" if forced else " mixlab / burn-flex |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for s in ours[0]:
    row = f"| {s[0]}×{s[1]}×{s[2]} | {med(ours, s):.0f} |"
    row += f" {med(avx2, s):.0f} |" if forced else ""
    row += f" {med(flex, s):.0f} | {med(peer, s):.0f} | {ratio(ours, peer, s):.2f} |"
    row += f" {ratio(avx2, flex, s):.2f} |" if forced else f" {ratio(ours, flex, s):.2f} |"
    print(row)
PY
