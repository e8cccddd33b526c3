#!/usr/bin/env bash
# Cheaper settings of the SDM estimator, scored on the ablation's own proxies (issue 32: the
# influence pass should cost ≤ 10 % of the proxy's training). For every seed of bench/ablation.sh
# whose simulation finished, each VARIANTS entry "D:T" (domain_sequences:target_sequences) scores
# the same proxy checkpoints again in bench/out/ablation/variant-dDtT-sS; no proxy is retrained.
# bench/ablation_report.py puts them beside the default (8:16) against the same leave-one-out.
# Resumable (step markers); run it with the ablation's binary: MIXLAB=<binary>.
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/ablation"
VARIANTS="${VARIANTS:-4:8 2:6}"
export RUST_LOG="${RUST_LOG:-info}"
for root in "$W"/s*; do
  seed="${root##*/s}"
  [ -e "$root/out/simulate/utilities.parquet" ] || continue
  proxy="$(find "$root/out/simulate/proxy" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
  for variant in $VARIANTS; do
    d="${variant%:*}" t="${variant#*:}"
    name="variant-d${d}t${t}-s$seed"
    dir="$W/$name"
    mkdir -p "$dir/out/simulate/proxy"
    ln -sfn "$(realpath "$root/out/shards")" "$dir/out/shards"
    ln -sfn "$(realpath "$proxy")" "$dir/out/simulate/proxy/${proxy##*/}"
    sed -e "s/^domain_sequences = .*/domain_sequences = $d/" \
      -e "s/^target_sequences = .*/target_sequences = $t/" "$root/ablation.toml" > "$dir/config.toml"
    step "$name" "$MIXLAB" --out "$dir/out" --log-format json --quiet simulate --config "$dir/config.toml"
  done
done
