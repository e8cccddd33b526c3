#!/usr/bin/env bash
# Regression-mixer benchmark on RegMix's public runs (../shared/benchmarks/regmix).
#
# Fits every model on the 512 training mixtures (1M-parameter proxies), reports Spearman ρ, Pearson r,
# MSE on the 256 test mixtures at 1M and at 60M and the fit time, then times the top-k search over
# 1,000,000 Dirichlet samples around the Pile token prior (RegMix's prior, bench/regmix-prior.csv) and
# compares the recommended Pile-CC mixture with RegMix's published one. Appends to bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
R="$SHARED/benchmarks/regmix"
TARGET_COL="metric/the_pile_pile_cc_val_loss"
common=(--runs "$R/train_mixture_1m.csv" --losses "$R/train_pile_loss_1m.csv" --target "$TARGET_COL" --normalize)
for scale in 1m 60m; do
  "$MIXLAB" --quiet --out "$OUT/regmix" regress "${common[@]}" --model linear,loglinear,mixing-law,gbm,gbm-linear \
    --test-runs "$R/test_mixture_$scale.csv" --test-losses "$R/test_pile_loss_$scale.csv" > "$OUT/regmix-$scale.txt"
done
"$MIXLAB" --log-format json --out "$OUT/regmix" mix "${common[@]}" --model gbm --prior-file "$ROOT/bench/regmix-prior.csv" \
  --samples 1000000 --output "$OUT/regmix/mixture.toml" > "$OUT/regmix-mix.txt" 2> "$OUT/regmix-mix.log"

python3 - "$OUT" "$(machine)" <<'PY' | append_results
import datetime, json, sys, tomllib
out, machine = sys.argv[1], sys.argv[2]
def table(scale):
    lines = open(f"{out}/regmix-{scale}.txt").read().splitlines()
    rows = [l.split() for l in lines[3:] if l.strip()]
    return {r[0]: r for r in rows}
t1, t60 = table("1m"), table("60m")
search = [json.loads(l) for l in open(f"{out}/regmix-mix.log") if l.startswith("{")]
seconds = next(float(l["fields"]["seconds"]) for l in search if l["fields"].get("message") == "searched the simplex")
mix = tomllib.load(open(f"{out}/regmix/mixture.toml", "rb"))
w = mix["stage"][0]["weights"]
print(f"## {datetime.date.today()} regression mixer on RegMix's runs: `bash bench/regmix.sh`")
print(f"\nMachine: {machine}. Target Pile-CC validation loss; fit on 512 runs at 1M parameters; test on 256 held-out mixtures. ρ and r ×100.\n")
print("| model | cv ρ | test ρ 1M | test r 1M | test MSE 1M | test ρ 60M | test r 60M | fit s |")
print("|---|---|---|---|---|---|---|---|")
for m in ["linear", "loglinear", "mixing-law", "gbm", "gbm-linear"]:
    a, b = t1[m], t60[m]
    print(f"| {m} | {a[1]} | {a[4]} | {a[5]} | {a[6]} | {b[4]} | {b[5]} | {a[7]} |")
print("\nRegMix paper (LightGBM): ρ ≈ 98.5 at 1M, 98.6 at 60M; linear ≈ 90.")
top = sorted(w.items(), key=lambda kv: -kv[1])[:4]
print(f"\nTop-128 search over 1,000,000 Dirichlet samples (prior: Pile tokens, strength 1; model gbm): **{seconds:.2f} s**. "
      f"Recommended mixture: " + ", ".join(f"{k.removeprefix('train_the_pile_')} {v:.3f}" for k, v in top)
      + f"; predicted loss {mix['provenance']['predicted_objective']:.3f}. RegMix published: pile_cc 0.891, ubuntu_irc 0.061, pubmed_abstracts 0.012.")
PY
tail -n 14 "$RESULTS"
