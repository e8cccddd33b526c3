#!/usr/bin/env bash
# The Scalable Data Mixer ablation on the real corpus (../shared/corpora, the shared 8k BPE).
#
# One `tiny` proxy run gives influence utilities (SDM) and DoReMi's reference; a DoReMi proxy, and
# RegMix's sweep of small proxies, give the baselines; then every arm trains the `small` target
# model for the same token budget and is scored on four targets with equal weights: the HumanEval and
# math probe files and the encyclopedia and speeches probe splits. Finally leave-one-out proxies
# (probe-split targets only) check the estimator's ranking of the real domains.
#
# Resumable: every phase and arm has its own directory under bench/out/sdm and a marker when done;
# a rerun skips finished work (mixlab itself resumes a killed run from its last checkpoint).
# Sizes (environment): TARGET_STEPS (80 steps × 16 × 256 ≈ 328k tokens an arm), PROXY_STEPS (300),
# SWEEP_RUNS (32), SWEEP_STEPS (100), SEEDS ("0 1"), ARMS (the first seed's arms besides RegMix), PHASES (default: all of
# "simulate doremi arms regmix loo variants"); GRADIENTS ("training": documents of the proxy's own batches in the
# CAPTURE_STEPS (8) steps before each checkpoint; "sample": 256 documents a domain re-scored at every checkpoint).
# The estimator study: LOO_SEEDS ("0 1": proxy seeds, each with its influence estimate and its nine
# leave-one-out proxies) and VARIANTS (influence estimates with other [simulate] settings, seed 0
# unless they set it, as "name:key=value,key=value ...", e.g. 'cosine:similarity="cosine"'), all on
# the probe-split targets (VARIANT_TARGETS=sdm: the ablation's four targets instead, for timing the
# influence pass; not comparable with leave-one-out), in out directories of their own under
# bench/out/sdm/loo and bench/out/sdm/variants that share the ablation's shards.
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/sdm"
TARGET_STEPS="${TARGET_STEPS:-80}"
PROXY_STEPS="${PROXY_STEPS:-300}"
SWEEP_RUNS="${SWEEP_RUNS:-32}"
SWEEP_STEPS="${SWEEP_STEPS:-100}"
SEEDS="${SEEDS:-0 1}"
ARMS="${ARMS:-uniform sdm-utilimax sdm-proportional natural unimax doremi}"
PHASES="${PHASES:-simulate doremi arms regmix loo variants}"
LOO_SEEDS="${LOO_SEEDS:-0 1}"
VARIANTS="${VARIANTS:-capture30:capture_steps=30 projection64:projection=64 sample:gradients=\"sample\"}"
GRADIENTS="${GRADIENTS:-training}"
CAPTURE_STEPS="${CAPTURE_STEPS:-8}"
VARIANT_TARGETS="${VARIANT_TARGETS:-loo}"
mkdir -p "$W/done" "$W/logs" "$W/mixtures" "$W/results"
PROBES="$SHARED/corpora/probes"
TEXTS=(--texts "humaneval=$PROBES/humaneval.jsonl.gz" --texts "math=$PROBES/math.jsonl.gz")

# The real corpus's domains (bench/real-corpus.toml up to its own model settings, paths made
# absolute), then the ablation's model, budget and simulation. $1: the targets.
write_config() {
  real_corpus_domains
  cat <<EOF
[model]
preset = "small"

[train]
batch_size = 16
seq_len = 256
steps = $TARGET_STEPS
warmup_steps = 10
eval_every = 100000
eval_sequences = 32
checkpoint_every = 50

[mix]
max_epochs = 4.0

[simulate]
preset = "tiny"
steps = $PROXY_STEPS
checkpoints = 10
gradients = "$GRADIENTS"
capture_steps = $CAPTURE_STEPS
docs_per_domain = 256
max_doc_tokens = 128
target_docs = 16
projection = 32
seed = 0
EOF
  for target in $1; do
    case "$target" in
      humaneval|math) printf '\n[[simulate.target]]\nname = "%s"\npath = "%s/%s.jsonl.gz"\n' "$target" "$PROBES" "$target" ;;
      *) printf '\n[[simulate.target]]\nname = "%s"\nprobe = "%s"\n' "$target" "$target" ;;
    esac
  done
}
write_config "humaneval math encyclopedia speeches" > "$W/sdm.toml"
write_config "encyclopedia speeches" > "$W/loo.toml"

# --quiet hides progress bars; the JSON logs keep the info events the report reads.
export RUST_LOG="${RUST_LOG:-info}"
mixlab() { "$MIXLAB" --out "$W" "$@"; }

want() { [[ " $PHASES " == *" $1 "* ]]; }

step ingest mixlab --quiet ingest --config "$W/sdm.toml"
if want simulate; then
  step simulate mixlab --log-format json --quiet simulate --config "$W/sdm.toml"
fi
if want doremi; then
  step doremi mixlab --log-format json --quiet simulate --config "$W/sdm.toml" --method doremi
fi

# eval_json RUN FILE: the run's losses on every split and target file, as JSON.
eval_json() { "$MIXLAB" --out "$W" eval --run "$1" --json "${TEXTS[@]}" > "$2"; }

# train_arm ARM SEED: the target model on mixtures/ARM.toml, then its losses on every target.
train_arm() {
  local arm="$1" seed="$2" run="runs/$1-s$2"
  step "train-$arm-s$seed" mixlab --log-format json --quiet train --config "$W/sdm.toml" \
    --mixture "$W/mixtures/$arm.toml" --run "$run" --seed "$seed"
  step "eval-$arm-s$seed" eval_json "$run" "$W/results/$arm-s$seed.json"
}

if want arms; then
  for method in uniform natural unimax; do
    step "mix-$method" mixlab --quiet mix --method "$method" --config "$W/sdm.toml" --output "$W/mixtures/$method.toml"
  done
  for objective in utilimax proportional; do
    step "mix-sdm-$objective" mixlab --quiet mix --method sdm --objective "$objective" --config "$W/sdm.toml" \
      --output "$W/mixtures/sdm-$objective.toml"
  done
  if want doremi; then
    step mix-doremi mixlab --quiet mix --method doremi --output "$W/mixtures/doremi.toml"
  fi
  first_seed="${SEEDS%% *}"
  for arm in $ARMS; do
    if [ -e "$W/mixtures/$arm.toml" ]; then train_arm "$arm" "$first_seed"; fi
  done
  for seed in ${SEEDS#"$first_seed"}; do
    for arm in uniform sdm-utilimax sdm-proportional; do train_arm "$arm" "$seed"; done
  done
fi

if want regmix; then
  step sweep mixlab --log-format json --quiet sweep --config "$W/sdm.toml" --n "$SWEEP_RUNS" --steps "$SWEEP_STEPS"
  for i in $(seq 0 $((SWEEP_RUNS - 1))); do
    run="$(printf 'sweep/run-%03d' "$i")"
    step "eval-sweep-$i" eval_json "$run" "$W/results/sweep-$i.json"
  done
  # RegMix's run table: each proxy's weighted target loss, the same weighting as the arms.
  python3 - "$W" "$SWEEP_RUNS" <<'PY'
import json, sys
w, n = sys.argv[1], int(sys.argv[2])
rows = ["index,target"]
for i in range(n):
    r = json.load(open(f"{w}/results/sweep-{i}.json"))
    losses = [r["texts"]["humaneval"]["loss"], r["texts"]["math"]["loss"],
              r["probe"]["encyclopedia"]["loss"], r["probe"]["speeches"]["loss"]]
    rows.append(f"{i},{sum(losses) / 4}")
open(f"{w}/sweep/target-losses.csv", "w").write("\n".join(rows) + "\n")
PY
  step mix-regmix mixlab --quiet mix --method regmix --config "$W/sdm.toml" --runs "$W/sweep/runs.csv" \
    --losses "$W/sweep/target-losses.csv" --target target --output "$W/mixtures/regmix.toml"
  train_arm regmix "${SEEDS%% *}"
fi

# with_simulate KEY=VALUE...: the configuration on stdin with these [simulate] keys set (replaced
# where present, added at the end of the table where not).
with_simulate() {
  awk -v settings="$*" '
    BEGIN { n = split(settings, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); value[p[1]] = p[2] } }
    function add_missing() {
      if (section != "[simulate]") return
      for (key in value) if (!(key in set)) { print key " = " value[key]; set[key] = 1 }
    }
    /^\[/ { add_missing(); section = $0 }
    section == "[simulate]" && ($1 in value) && $2 == "=" { print $1 " = " value[$1]; set[$1] = 1; next }
    { print }
    END { add_missing() }'
}

# study_root DIR: an out directory of its own (its simulate/ results apart) sharing the shards.
study_root() {
  mkdir -p "$1"
  ln -sfn "$W/shards" "$1/shards"
}

if want loo; then
  # The estimator against leave-one-out on probe-split targets (LOO cannot score file targets),
  # for each proxy seed: the influence estimate, then one proxy without each domain.
  for seed in $LOO_SEEDS; do
    root="$W/loo/s$seed"
    study_root "$root"
    with_simulate "seed=$seed" < "$W/loo.toml" > "$root/loo.toml"
    step "loo-influence-s$seed" "$MIXLAB" --out "$root" --log-format json --quiet simulate --config "$root/loo.toml"
    step "loo-s$seed" "$MIXLAB" --out "$root" --log-format json --quiet simulate --config "$root/loo.toml" --method loo
  done
fi

if want variants; then
  # Other estimator settings on the same targets, scored against the leave-one-out runs above.
  for variant in $VARIANTS; do
    name="${variant%%:*}"
    root="$W/variants/$name"
    study_root "$root"
    settings="${variant#*:}"
    # shellcheck disable=SC2086 # one word a setting
    with_simulate seed=0 ${settings//,/ } < "$W/$VARIANT_TARGETS.toml" > "$root/loo.toml"
    step "variant-$name" "$MIXLAB" --out "$root" --log-format json --quiet simulate --config "$root/loo.toml"
  done
fi

# REPORT=0 leaves bench/RESULTS.md alone (a run split into several invocations reports once).
if [ "${REPORT:-1}" = 1 ]; then
  python3 "$ROOT/bench/sdm_report.py" "$W" "$(machine)" "$(isa)" "$TARGET_STEPS" "$PROXY_STEPS" \
    "$SWEEP_RUNS" "$SWEEP_STEPS" "$SEEDS" | append_results
  tail -n 40 "$RESULTS"
fi
