#!/usr/bin/env bash
# The decisive SDM ablation on the real corpus (issue 32), through `mixlab run`: one job per seed s,
# each with its own proxy seed ([simulate].seed = s) and one training run per arm at seed s, so arms
# are paired by seed. Arms: uniform, natural, SDM (proportional) and the own-domain control (utility
# 1 on each target's own domain, the same floor). Targets: the probe splits of code_python, math,
# encyclopedia and speeches, equal weights (probe splits, so leave-one-out can score them too).
# After each seed in LOO_SEEDS, the leave-one-out ground truth in the same directory (the seed's uniform
# proxy is the simulation run itself, so only the nine proxies without a domain are trained).
#
# Resumable: `mixlab run` skips finished stages and resumes a killed run from its last checkpoint;
# `simulate --method loo` skips finished proxies. Every seed's directory shares the first one's shards.
# Sizes (environment): SEEDS ("0 1 2 3 4"), LOO_SEEDS ("0 1 2"; empty for none), PRESET (tiny), STEPS (640 steps ×
# 16 × 256 = 2.6M tokens an arm), EVAL_EVERY (160: the curve of loss against tokens), PROXY_STEPS (300),
# DOMAIN_SEQUENCES (8) and TARGET_SEQUENCES (16) of the estimator, ARMS ("uniform natural sdm own"),
# ABLATION_DIR (bench/out/ablation; the `small` confirmation uses its own directory).
# REPORT=0 skips the summary appended to bench/RESULTS.md (bench/ablation_report.py).
source "$(dirname "$0")/lib.sh"
build_release
W="${ABLATION_DIR:-$OUT/ablation}"
ARMS="${ARMS:-uniform natural sdm own}"
SEEDS="${SEEDS:-0 1 2 3 4}"
LOO_SEEDS="${LOO_SEEDS-0 1 2}"
PRESET="${PRESET:-tiny}"
STEPS="${STEPS:-640}"
EVAL_EVERY="${EVAL_EVERY:-160}"
PROXY_STEPS="${PROXY_STEPS:-300}"
# The estimator's sample sizes, pinned so every seed's job scores alike whatever the defaults become.
DOMAIN_SEQUENCES="${DOMAIN_SEQUENCES:-8}"
TARGET_SEQUENCES="${TARGET_SEQUENCES:-16}"
# The targets: these domains' probe splits, equal weights.
TARGETS="code_python math encyclopedia speeches"
mkdir -p "$W/done" "$W/logs"
export RUST_LOG="${RUST_LOG:-info}"

# write_config SEED: the real corpus's domains, the target budget, the simulation and the arms.
write_config() {
  real_corpus_domains
  cat <<EOF
[model]
preset = "$PRESET"

[train]
batch_size = 16
seq_len = 256
steps = $STEPS
warmup_steps = 30
eval_every = $EVAL_EVERY
eval_sequences = 32
checkpoint_every = $EVAL_EVERY
seed = $1

[mix]
max_epochs = 4.0

[simulate]
preset = "tiny"
steps = $PROXY_STEPS
checkpoints = 10
domain_sequences = $DOMAIN_SEQUENCES
target_sequences = $TARGET_SEQUENCES
seed = $1
EOF
  for target in $TARGETS; do
    printf '\n[[simulate.target]]\nname = "%s"\nprobe = "%s"\n' "$target" "$target"
  done
  cat <<EOF

[run]
seeds = [$1]
EOF
  for arm in $ARMS; do
    printf '\n[[ablation]]\nname = "%s"\nmix = "%s"\n' "$arm" "$arm"
    case "$arm" in sdm | own) echo 'objective = "proportional"' ;; esac
  done
}

first="${SEEDS%% *}"
for seed in $SEEDS; do
  root="$W/s$seed"
  mkdir -p "$root"
  write_config "$seed" > "$root/ablation.toml"
  if [ "$seed" != "$first" ] && [ -e "$W/s$first/out/shards/manifest.json" ]; then
    mkdir -p "$root/out" && ln -sfn "$W/s$first/out/shards" "$root/out/shards"
  fi
  step "run-s$seed" "$MIXLAB" --out "$root/out" --log-format json --quiet run --config "$root/ablation.toml"
  if [[ " $LOO_SEEDS " == *" $seed "* ]]; then
    step "loo-s$seed" "$MIXLAB" --out "$root/out" --log-format json --quiet simulate \
      --config "$root/ablation.toml" --method loo
  fi
done

if [ "${REPORT:-1}" = 1 ]; then
  python3 "$ROOT/bench/ablation_report.py" "$W" "$(machine)" "$(isa)" "$SEEDS" "$LOO_SEEDS" | append_results
  tail -n 60 "$RESULTS"
fi
