#!/usr/bin/env bash
# Logit distillation on the real corpus (../shared/corpora, the shared 8k BPE): a `small` teacher,
# then `tiny` students on the same budget trained with plain cross-entropy or distilled from the
# teacher (`mixlab distill`, α·τ²·KL + (1 − α)·CE). Reports each run's validation loss (mean over
# the nine domains) and the students' training throughput; appends the table to bench/RESULTS.md.
#
# Resumable: every run has its own directory under bench/out/distill and a marker when done.
# Sizes (environment): TEACHER_STEPS (400), STUDENT_STEPS (200), SEEDS ("0 1"), at batch 8 × 256.
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/distill"
TEACHER_STEPS="${TEACHER_STEPS:-400}"
STUDENT_STEPS="${STUDENT_STEPS:-200}"
SEEDS="${SEEDS:-0 1}"
mkdir -p "$W/done" "$W/logs" "$W/results"

{
  real_corpus_domains
  cat <<TOML
[model]
preset = "tiny"

[train]
batch_size = 8
seq_len = 256
warmup_steps = 20
eval_every = 100000
eval_sequences = 32
checkpoint_every = 100
TOML
} > "$W/distill.toml"

export RUST_LOG="${RUST_LOG:-info}"
mixlab() { "$MIXLAB" --out "$W" "$@"; }

evaluate() { step "eval-$1" sh -c "\"$MIXLAB\" --out \"$W\" eval --run runs/$1 --json > \"$W/results/$1.json\""; }

step ingest mixlab --quiet ingest --config "$W/distill.toml"
step teacher mixlab --quiet --log-format json train --config "$W/distill.toml" --run runs/teacher \
  --preset small --steps "$TEACHER_STEPS"
evaluate teacher
for seed in $SEEDS; do
  step "ce-s$seed" mixlab --quiet --log-format json train --config "$W/distill.toml" \
    --run "runs/ce-s$seed" --steps "$STUDENT_STEPS" --seed "$seed"
  evaluate "ce-s$seed"
  step "kd-s$seed" mixlab --quiet --log-format json distill --config "$W/distill.toml" \
    --teacher runs/teacher --alpha 0.5 --temperature 2 --run "runs/kd-s$seed" \
    --steps "$STUDENT_STEPS" --seed "$seed"
  evaluate "kd-s$seed"
done

python3 - "$W" "$TEACHER_STEPS" "$STUDENT_STEPS" "$(machine)" "$(isa)" <<'PY' | append_results
import json, pathlib, statistics, sys, datetime
w, teacher_steps, student_steps, machine, isa = sys.argv[1:]
w = pathlib.Path(w)
def mean_loss(run):
    return json.loads((w / "results" / f"{run}.json").read_text())["mean_loss"]
def throughput(run):
    for line in (w / "logs" / f"{run}.log").read_text().splitlines():
        event = json.loads(line)
        if event.get("fields", {}).get("message") == "trained":
            return event["fields"]["train_tokens_per_second"]
    return float("nan")
# Only this script's runs (bench/quant.sh keeps its results beside them).
runs = sorted(p.stem for p in (w / "results").glob("*.json") if p.stem == "teacher" or p.stem.split("-")[0] in ("ce", "kd") and p.stem.count("-") == 1)
print(f"## {datetime.date.today()} Logit distillation on the real corpus: `bash bench/distill.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. Corpus ../shared/corpora (9 domains), tokenizer bpe-8k, batch 8 × 256.")
print(f"Teacher `small` {teacher_steps} steps; students `tiny` {student_steps} steps each, cross-entropy (ce)")
print("or distilled from the teacher with α = 0.5, τ = 2 (kd). Validation loss: mean over the domains, nats/token.\n")
print("| run | validation loss | training tokens/s |")
print("|---|---|---|")
for run in runs:
    print(f"| {run} | {mean_loss(run):.4f} | {throughput(run):,.0f} |")
seeds = sorted({r.split('-s')[1] for r in runs if '-s' in r})
ce = [mean_loss(f"ce-s{s}") for s in seeds]
kd = [mean_loss(f"kd-s{s}") for s in seeds]
print(f"\n- ce mean {statistics.mean(ce):.4f}, kd mean {statistics.mean(kd):.4f}: kd − ce = {statistics.mean(kd) - statistics.mean(ce):+.4f} nats over {len(seeds)} seeds"
      f" (seed spread of ce {max(ce) - min(ce):.4f}, of kd {max(kd) - min(kd):.4f}).")
print(f"- distillation's cost: kd trains at {statistics.mean(throughput(f'kd-s{s}') for s in seeds) / statistics.mean(throughput(f'ce-s{s}') for s in seeds):.2f}× ce's tokens/s (the teacher's forward pass and the KL on every micro-batch).")
PY
