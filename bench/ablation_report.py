"""bench/ablation.sh's summary for bench/RESULTS.md (Markdown on stdout).

Reads, under the ablation directory W, every seed's `s<seed>/out`: each arm's `runs/<arm>/metrics.parquet`
(evaluations along the run) and `eval.parquet` (final losses), the simulation's `utilities.parquet`
and, where run, `loo_utilities.parquet`; the job logs `logs/run-s<seed>.log` for stage times.

- Each arm's target loss: the mean of the four targets' final probe losses (equal weights).
- Paired differences against every other arm over seeds, with the 95 % t-interval; "not separable
  at this budget" where the interval crosses zero.
- Effective-compute multiplier: the training tokens uniform needs to reach an arm's final loss
  (uniform's loss-vs-tokens curve, interpolated in log tokens, extrapolated by a power law past its
  end), over the arm's tokens.
- Estimator against leave-one-out (mean over LOO seeds): Spearman on all nine domains (joint) and,
  per target, on the eight domains other than its own.
- SDM's cost: proxy training and scoring wall time against an arm's training time, and in FLOPs
  (6·N·tokens for a forward and backward pass).

Usage: ablation_report.py W MACHINE ISA "SEEDS" "LOO_SEEDS"
"""

import datetime
import glob
import json
import math
import os
import re
import sys
import tomllib

import pyarrow.parquet as pq
from scipy import stats

# The arms and the targets' domains, read from the jobs' configuration (bench/ablation.sh's ARMS
# and TARGETS) in main(): the `small` confirmation runs uniform, natural and SDM only.
ARMS = []
TARGETS = []


def config_of(w, seeds):
    """The first seed's job configuration."""
    for s in seeds:
        path = f"{w}/s{s}/ablation.toml"
        if os.path.exists(path):
            with open(path, "rb") as f:
                return tomllib.load(f)
    return {}


def targets_of(config):
    """The probe domains of the [[simulate.target]] tables (equal weights)."""
    return [t["probe"] for t in config.get("simulate", {}).get("target", [])]


def arms_of(config):
    """The [[ablation]] arms' names, uniform first (the reference of the effective compute)."""
    names = [a["name"] for a in config.get("ablation", [])]
    return sorted(names, key=lambda n: n != "uniform")


def rows(path):
    return pq.read_table(path).to_pylist()


def target_loss(losses):
    """Mean probe loss of the targets in rows with domain, split, loss."""
    by = {(r["domain"], r["split"]): r["loss"] for r in losses}
    return sum(by[(t, "probe")] for t in TARGETS) / len(TARGETS)


def curve(metrics):
    """(tokens, mean valid loss of the targets' domains) at every evaluation of a run (evaluations
    during training score the valid split; the probe split is scored at the end only)."""
    points = {}
    for r in metrics:
        if r.get("split") == "valid" and r.get("domain") in TARGETS and r.get("eval_loss") is not None:
            points.setdefault(r["tokens"], {})[r["domain"]] = r["eval_loss"]
    return sorted((t, sum(v.values()) / len(v)) for t, v in points.items() if len(v) == len(TARGETS))


def tokens_to_reach(points, loss):
    """Tokens at which a loss-vs-tokens curve reaches `loss`: interpolated in log tokens between
    evaluations, extrapolated past the last by a power law through the last two points."""
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if l0 >= loss >= l1:
            f = (l0 - loss) / (l0 - l1) if l0 != l1 else 0.0
            return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))
    (t0, l0), (t1, l1) = points[-2], points[-1]
    if loss > l0 or l1 >= l0:
        return float("nan")
    slope = (math.log(l1) - math.log(l0)) / (math.log(t1) - math.log(t0))
    return math.exp(math.log(t1) + (math.log(loss) - math.log(l1)) / slope)


def interval(diffs):
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def spearman(a, b):
    return stats.spearmanr(a, b).statistic


def utilities(path, target="joint"):
    out = {}
    for r in rows(path):
        if r["target"] == target and r["checkpoint_step"] is None:
            out[r["domain"]] = r["utility"]
    return out


def stage_seconds(log):
    """Seconds of each finished stage in a `mixlab run` JSON log, by stage id."""
    started, seconds = {}, {}
    if not os.path.exists(log):
        return seconds
    for line in open(log):
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        fields = e.get("fields", e)
        stage, event = fields.get("stage"), fields.get("event")
        ts = e.get("timestamp")
        if not (stage and event and ts):
            continue
        t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        if event == "started":
            started[stage] = t
        elif event == "finished" and stage in started:
            seconds[stage] = t - started[stage]
    return seconds


def main():
    w, machine, isa, seeds, loo_seeds = sys.argv[1:6]
    config = config_of(w, seeds.split())
    TARGETS.extend(targets_of(config))
    ARMS.extend(arms_of(config))
    seeds = [s for s in seeds.split() if os.path.exists(f"{w}/s{s}/out/runs")]
    loo_seeds = [s for s in loo_seeds.split() if os.path.exists(f"{w}/s{s}/out/simulate/loo_utilities.parquet")]
    final, curves = {}, {}
    for s in seeds:
        for arm in ARMS:
            run = f"{w}/s{s}/out/runs/{arm}"
            if os.path.exists(f"{run}/done"):
                final[(arm, s)] = target_loss(rows(f"{run}/eval.parquet"))
                curves[(arm, s)] = curve(rows(f"{run}/metrics.parquet"))
    done = [s for s in seeds if all((a, s) in final for a in ARMS)]
    print(f"## {datetime.date.today()} — SDM ablation through `mixlab run` (bench/ablation.sh)\n")
    print(f"Machine: {machine}; ISA: {isa}. Seeds with every arm finished: {' '.join(done) or 'none'}.\n")
    print("| arm | " + " | ".join(f"s{s}" for s in done) + " | mean |")
    print("|---|" + "---|" * (len(done) + 1))
    for arm in ARMS:
        vals = [final[(arm, s)] for s in done]
        if vals:
            print(f"| {arm} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {sum(vals) / len(vals):.4f} |")
    print("\nPaired differences (row − column, mean target loss; 95 % t-interval over seeds):\n")
    print("| pair | mean | 95 % interval | verdict |")
    print("|---|---|---|---|")
    for a in ["sdm", "own", "natural"]:
        for b in ["uniform", "natural", "own"]:
            if a == b or (a, b) in [("natural", "own")] or not {a, b} <= set(ARMS):
                continue
            diffs = [final[(a, s)] - final[(b, s)] for s in done]
            if not diffs:
                continue
            mean, lo, hi = interval(diffs)
            if len(diffs) < 2:
                verdict = "one seed: no interval"
            elif not (hi < 0 or lo > 0):
                verdict = "not separable at this budget"
            else:
                verdict = f"{a} better" if hi < 0 else f"{b} better"
            print(f"| {a} − {b} | {mean:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {verdict} |")
    print("\nEffective-compute multiplier against uniform (tokens uniform needs for the arm's final valid loss on the targets' domains ÷ the arm's tokens; "
          "past uniform's last evaluation a power law through its last two):\n")
    print("| arm | " + " | ".join(f"s{s}" for s in done) + " |")
    print("|---|" + "---|" * len(done))
    for arm in ARMS[1:]:
        cells = []
        for s in done:
            points = curves[("uniform", s)]
            arm_tokens = curves[(arm, s)][-1][0] if curves[(arm, s)] else float("nan")
            arm_final = curves[(arm, s)][-1][1] if curves[(arm, s)] else float("nan")
            cells.append(f"{tokens_to_reach(points, arm_final) / arm_tokens:.2f}×" if len(points) >= 2 else "-")
        print(f"| {arm} | " + " | ".join(cells) + " |")
    if done:
        print("\nUniform's mean valid loss of the targets' domains along the run (spread = max − min over seeds):\n")
        print("| tokens | mean | spread |")
        print("|---|---|---|")
        for i, (tokens, _) in enumerate(curves[("uniform", done[0])]):
            vals = [curves[("uniform", s)][i][1] for s in done if len(curves[("uniform", s)]) > i]
            print(f"| {tokens:,} | {sum(vals) / len(vals):.4f} | {max(vals) - min(vals):.4f} |")
    estimator_vs_loo(w, seeds, loo_seeds)
    costs(w, done)


def estimator_vs_loo(w, seeds, loo_seeds):
    if not loo_seeds:
        return
    loo = [utilities(f"{w}/s{s}/out/simulate/loo_utilities.parquet") for s in loo_seeds]
    domains = sorted(loo[0])
    mean_loo = [sum(l[d] for l in loo) / len(loo) for d in domains]
    print(f"\nEstimator against leave-one-out (LOO mean over seeds {' '.join(loo_seeds)}; Spearman ρ):\n")
    others = [d for d in domains if d not in TARGETS]
    print(f"| estimate | all 9 (joint) | the {len(others)} that are no target's own (joint) | "
          + " | ".join(f"{t}: other 8" for t in TARGETS) + " |")
    print("|---|---|---|" + "---|" * len(TARGETS))
    for i, s in enumerate(loo_seeds):
        agreement = [spearman([loo[i][d] for d in domains], [loo[j][d] for d in domains])
                     for j in range(len(loo)) if j != i]
        if agreement:
            print(f"| LOO s{s} vs the other LOO seeds (mean) | {sum(agreement) / len(agreement):.3f} |" + " |" * (len(TARGETS) + 1))
    def cells(path):
        est = utilities(path)
        row = [spearman([est[d] for d in domains], mean_loo)]
        rest = [mean_loo[domains.index(d)] for d in others]
        row.append(spearman([est[d] for d in others], rest))
        for t in TARGETS:
            est_t = utilities(path, t)
            loo_t = [sum(utilities(f"{w}/s{x}/out/simulate/loo_utilities.parquet", t)[d] for x in loo_seeds) / len(loo_seeds)
                     for d in domains if d != t]
            row.append(spearman([est_t[d] for d in domains if d != t], loo_t))
        return row

    # The default estimator (8 domain and 16 target sequences) and the cheaper variants of
    # bench/ablation_variants.sh, scored on the same proxies; then each one's mean over seeds.
    estimates = {"influence (8:16)": {s: f"{w}/s{s}/out/simulate/utilities.parquet" for s in seeds}}
    for dir in sorted(glob.glob(f"{w}/variant-d*t*-s*")):
        d, t, s = re.fullmatch(r"variant-d(\d+)t(\d+)-s(\d+)", os.path.basename(dir)).groups()
        estimates.setdefault(f"influence ({d}:{t})", {})[s] = f"{dir}/out/simulate/utilities.parquet"
    means = []
    for label, paths in estimates.items():
        rows_of = {s: cells(p) for s, p in sorted(paths.items()) if s in seeds and os.path.exists(p)}
        for s, row in rows_of.items():
            print(f"| {label} s{s} | " + " | ".join(f"{c:.3f}" for c in row) + " |")
        if rows_of:
            mean = [sum(col) / len(col) for col in zip(*rows_of.values())]
            means.append(f"| **{label}, mean over seeds {' '.join(rows_of)}** | " + " | ".join(f"{c:.3f}" for c in mean) + " |")
    for line in means:
        print(line)
    print("\nJoint utilities (LOO: nats of the mean target loss lost without the domain, mean ± seed sd):\n")
    print("| domain | LOO | " + " | ".join(f"influence s{s}" for s in seeds) + " |")
    print("|---|---|" + "---|" * len(seeds))
    ests = {s: utilities(f"{w}/s{s}/out/simulate/utilities.parquet") for s in seeds
            if os.path.exists(f"{w}/s{s}/out/simulate/utilities.parquet")}
    for k, d in enumerate(domains):
        vals = [l[d] for l in loo]
        sd = math.sqrt(sum((v - mean_loo[k]) ** 2 for v in vals) / max(len(vals) - 1, 1))
        print(f"| {d} | {mean_loo[k]:+.4f} ± {sd:.4f} | " + " | ".join(f"{ests[s][d]:+.3e}" if s in ests else "-" for s in seeds) + " |")


def costs(w, done):
    if not done:
        return
    print("\nWall time per seed (seconds, from the job's stage events):\n")
    print("| seed | simulate (proxy + scoring) | " + " | ".join(f"train {a}" for a in ARMS) + " | simulate ÷ train sdm |")
    print("|---|---|" + "---|" * len(ARMS) + "---|")
    for s in done:
        sec = stage_seconds(f"{w}/logs/run-s{s}.log")
        sim = sum(v for k, v in sec.items() if k.startswith("simulate"))
        trains = [sec.get(f"train/{a}", float("nan")) for a in ARMS]
        print(f"| s{s} | {sim:.0f} | " + " | ".join(f"{t:.0f}" for t in trains) + f" | {sim / trains[2]:.3f} |")
    scored = glob.glob(f"{w}/logs/run-s*.log")
    print(f"\n(Logs read: {len(scored)}.)")
    scoring_shares(w, done[0])


def scoring_shares(w, seed):
    """The influence pass's FLOPs against the proxy's training, for the default and each variant:
    at every checkpoint one forward and backward pass over D windows a domain and T sequences a
    target, of seq_len tokens each, against steps × batch × seq_len training tokens."""
    with open(f"{w}/s{seed}/ablation.toml", "rb") as f:
        config = tomllib.load(f)
    sim, train = config["simulate"], config["train"]
    domains, targets = len(config["domain"]), len(sim["target"])
    trained = sim["steps"] * train["batch_size"]
    variants = {(sim["domain_sequences"], sim["target_sequences"])}
    for dir in glob.glob(f"{w}/variant-d*t*-s*"):
        d, t = re.fullmatch(r"variant-d(\d+)t(\d+)-s\d+", os.path.basename(dir)).groups()
        variants.add((int(d), int(t)))
    print(f"\nThe influence pass in FLOPs, against the proxy's training ({sim['checkpoints']} checkpoints, "
          f"{domains} domains, {targets} targets, {trained:,} training sequences):\n")
    print("| domain:target sequences | sequences scored | share of the proxy's training |")
    print("|---|---|---|")
    for d, t in sorted(variants, reverse=True):
        scored = sim["checkpoints"] * (domains * d + targets * t)
        print(f"| {d}:{t} | {scored:,} | {scored / trained:.1%} |")


if __name__ == "__main__":
    main()
