"""The SDM ablation's table for bench/RESULTS.md, from bench/out/sdm (written by bench/sdm.sh)."""
import datetime
import glob
import json
import math
import os
import re
import sys
import tomllib

W, MACHINE, ISA = sys.argv[1], sys.argv[2], sys.argv[3]
TARGET_STEPS, PROXY_STEPS, SWEEP_RUNS, SWEEP_STEPS = map(int, sys.argv[4:8])
SEEDS = sys.argv[8].split()
TOKENS_PER_STEP = 16 * 256
TARGETS = [("humaneval", "texts"), ("math", "texts"), ("encyclopedia", "probe"), ("speeches", "probe")]
ARMS = ["uniform", "natural", "unimax", "doremi", "regmix", "sdm-proportional", "sdm-utilimax"]


def events(name):
    path = f"{W}/logs/{name}.log"
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        if line.startswith("{"):
            out.append(json.loads(line)["fields"])
    return out


def event(name, message, which=0):
    found = [e for e in events(name) if e.get("message") == message]
    return found[which] if len(found) > abs(which) else None


def target_losses(result):
    return [result[split][name]["loss"] for name, split in TARGETS]


results = {}
for path in sorted(glob.glob(f"{W}/results/*-s*.json")):
    arm, seed = re.match(r"(.*)-s(\d+)\.json", os.path.basename(path)).groups()
    results.setdefault(arm, {})[seed] = target_losses(json.load(open(path)))

# Compute spent finding each mixture, as a fraction of one target run (FLOPs ≈ 6·params·tokens).
target_start = event(f"train-uniform-s{SEEDS[0]}", "training")
target_flops = 6 * target_start["parameters"] * TARGET_STEPS * TOKENS_PER_STEP if target_start else None
proxy_start, proxy_done = event("simulate", "training"), event("simulate", "trained")
scored = event("simulate", "scored")
compute = {arm: 0.0 for arm in ["uniform", "natural", "unimax"]}
notes = []
if target_flops and proxy_start and proxy_done:
    proxy_flops = 6 * proxy_start["parameters"] * PROXY_STEPS * TOKENS_PER_STEP
    scoring_flops = 0.0
    if scored and "capture_seconds" in scored:
        # Scores from the proxy's own batches: capturing inside the training steps, scoring at checkpoints.
        train_seconds = scored["train_seconds"]
        scoring_flops = proxy_flops * scored["seconds"] / train_seconds
        notes.append(
            f"Simulation (gradients from the proxy's own batches): proxy training {train_seconds:.0f} s, "
            f"influence {scored['seconds']:.1f} s = {100 * scored['seconds'] / train_seconds:.1f}% of training "
            f"(capturing in the training steps {scored['capture_seconds']:.1f} s, scoring at the checkpoints "
            f"{scored['checkpoint_seconds']:.1f} s; {scored['documents']} documents × {scored['targets']} targets "
            f"over 10 checkpoints)."
        )
    elif scored:
        # The influence passes, counted at the proxy's measured training throughput.
        scoring_flops = proxy_flops * scored["seconds"] / proxy_done["train_seconds"]
        notes.append(
            f"Simulation: proxy training {proxy_done['train_seconds']:.0f} s, influence scoring "
            f"{scored['seconds']:.0f} s ({100 * scored['seconds'] / proxy_done['train_seconds']:.0f}% of training; "
            f"{scored['documents']} documents × {scored['targets']} targets × 10 checkpoints)."
        )
    for arm in ["sdm-proportional", "sdm-utilimax"]:
        compute[arm] = (proxy_flops + scoring_flops) / target_flops
    # DoReMi: the uniform reference proxy, plus its own proxy (training and a reference forward pass).
    compute["doremi"] = (proxy_flops + proxy_flops * 8 / 6) / target_flops
    sweep_start = event("sweep", "training")
    if sweep_start:
        sweep_flops = SWEEP_RUNS * 6 * sweep_start["parameters"] * SWEEP_STEPS * TOKENS_PER_STEP
        compute["regmix"] = sweep_flops / target_flops

mixtures = {}
for arm in ARMS:
    path = f"{W}/mixtures/{arm}.toml"
    if os.path.exists(path):
        mixtures[arm] = tomllib.load(open(path, "rb"))["stage"][0]["weights"]
domains = list(next(iter(mixtures.values())).keys()) if mixtures else []

def ablation():
    """The arms' target losses, compute and mixtures."""
    print(f"## {datetime.date.today()} Scalable Data Mixer ablation on the real corpus: `bash bench/sdm.sh`")
    print(
        f"\nMachine: {MACHINE}; ISA: {ISA}. Corpus ../shared/corpora (9 domains), tokenizer bpe-8k. "
        f"Target model `small` ({target_start['parameters']:,} parameters), {TARGET_STEPS} steps × {TOKENS_PER_STEP} tokens "
        f"= {TARGET_STEPS * TOKENS_PER_STEP:,} tokens an arm. Proxy `tiny`, {PROXY_STEPS} steps "
        f"({PROXY_STEPS * TOKENS_PER_STEP:,} tokens) on a uniform mixture, 10 checkpoints, 256 documents a domain. "
        f"RegMix: {SWEEP_RUNS} `tiny` proxies × {SWEEP_STEPS} steps. Targets (equal weights): HumanEval and math probe "
        f"files, encyclopedia and speeches probe splits; losses in nats/token, lower is better.\n"
        if target_start
        else "\n(no target run yet)\n"
    )
    print("| arm | seed | humaneval | math | encyclopedia | speeches | weighted | compute / target run |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in ARMS:
        for seed, losses in sorted(results.get(arm, {}).items()):
            cost = compute.get(arm)
            cost = "-" if cost is None else f"{cost:.3f}"
            cells = " | ".join(f"{l:.4f}" for l in losses)
            print(f"| {arm} | {seed} | {cells} | **{sum(losses) / 4:.4f}** | {cost} |")


    print()
    for arm in ARMS:
        w = [sum(l) / 4 for l in results.get(arm, {}).values()]
        if len(w) > 1:
            print(f"- {arm}: mean weighted loss {sum(w) / len(w):.4f} over {len(w)} seeds, spread {max(w) - min(w):.4f}.")
    if notes:
        print("- " + notes[0])

    if mixtures:
        print("\nMixtures (weights):\n")
        print("| domain | " + " | ".join(mixtures) + " |")
        print("|---" * (len(mixtures) + 1) + "|")
        for d in domains:
            print(f"| {d} | " + " | ".join(f"{mixtures[a].get(d, 0):.3f}" for a in mixtures) + " |")


def utility_table(name):
    """The domain × target utilities `mixlab simulate` printed in logs/NAME.out (None before it ends)."""
    path = f"{W}/logs/{name}.out"
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    first = next((i for i, l in enumerate(lines) if l.startswith("domain")), None)
    if first is None:
        return None
    header = re.split(r"\s{2,}", lines[first].strip())
    table = {}
    for line in lines[first + 2 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(header):
            break
        table[cells[0]] = {h: float(c.split("±")[0]) for h, c in zip(header[1:], cells[1:])}
    return table


def printed(name, title):
    """The table of logs/NAME.out as a text block under TITLE."""
    path = f"{W}/logs/{name}.out"
    if os.path.exists(path):
        print(f"\n{title}:\n\n```text")
        print("".join(l for l in open(path) if not l.startswith(("wrote", "Spearman"))).rstrip())
        print("```")


if results:
    ablation()
    printed("simulate", "Influence utilities (`mixlab simulate`, domain × target, all checkpoints)")


def ranks(values):
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def mean_table(tables):
    """The cell-wise mean of utility tables with the same domains and targets."""
    first = tables[0]
    return {d: {t: sum(tb[d][t] for tb in tables) / len(tables) for t in first[d]} for d in first}


def influence_share(name):
    """The influence pass's seconds as a share of the proxy's training, from logs/NAME.log."""
    scored = event(name, "scored")
    trained = event(name, "trained")
    train = scored.get("train_seconds") if scored else None
    train = train or (trained or {}).get("train_seconds")
    return f"{scored['seconds']:.1f} s = {100 * scored['seconds'] / train:.1f}%" if scored and train else "-"


def study():
    """The estimator against leave-one-out over proxy seeds, and the estimator's variants."""
    seeds = sorted(
        int(re.match(r"loo-s(\d+)\.out", os.path.basename(p)).group(1)) for p in glob.glob(f"{W}/logs/loo-s*.out")
    )
    seeds = [s for s in seeds if utility_table(f"loo-influence-s{s}") and utility_table(f"loo-s{s}")]
    if not seeds:
        return
    influence = {s: utility_table(f"loo-influence-s{s}") for s in seeds}
    loo = {s: utility_table(f"loo-s{s}") for s in seeds}
    loo_mean, influence_mean = mean_table(list(loo.values())), mean_table(list(influence.values()))
    domains = list(loo_mean)
    targets = list(loo_mean[domains[0]])
    print(f"## {datetime.date.today()} The influence estimator against leave-one-out over proxy seeds: "
          f"`PHASES=\"loo variants\" bash bench/sdm.sh`")
    print(f"\nMachine: {MACHINE}; ISA: {ISA}. Real corpus (9 domains, bpe-8k); proxy `tiny`, {PROXY_STEPS} steps on "
          f"a uniform mixture; targets the encyclopedia and speeches probe splits (equal weights; leave-one-out "
          f"can score only probe splits). Leave-one-out: per seed, the proxy once more without each domain; the "
          f"utility is the rise of the target loss (nats/token) without the domain. Influence: `gradients = "
          f"\"training\"`, 8 captured steps before each of 10 checkpoints, projection 32, 16 target documents.\n")
    cols = [f"influence s{s}" for s in seeds] + [f"LOO s{s}" for s in seeds] + (["LOO mean"] if len(seeds) > 1 else [])
    print("Joint utilities:\n")
    print("| domain | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for d in domains:
        cells = [influence[s][d]["joint"] for s in seeds] + [loo[s][d]["joint"] for s in seeds]
        cells += [loo_mean[d]["joint"]] if len(seeds) > 1 else []
        print(f"| {d} | " + " | ".join(f"{c:+.3g}" for c in cells) + " |")

    def column(table, target):
        return [table[d][target] for d in domains]

    # (comparison, utilities, reference, the log whose influence pass is timed)
    rows = [(f"influence s{s} vs LOO s{s}", influence[s], loo[s], f"loo-influence-s{s}") for s in seeds]
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    rows += [(f"influence s{a} vs influence s{b}", influence[a], influence[b], None) for a, b in pairs]
    rows += [(f"LOO s{a} vs LOO s{b} (the ground truth against itself)", loo[a], loo[b], None) for a, b in pairs]
    if len(seeds) > 1:
        rows.append(("influence mean vs LOO mean", influence_mean, loo_mean, None))
    names = [os.path.basename(p)[: -len(".out")] for p in sorted(glob.glob(f"{W}/logs/variant-*.out"))]
    tables = {name[len("variant-") :]: utility_table(name) for name in names}
    # Only variants on leave-one-out's targets compare with it (VARIANT_TARGETS=sdm ones time the pass).
    variants = {name: t for name, t in tables.items() if t and list(t[domains[0]]) == targets}
    if variants and len(seeds) > 1:
        rows.append((f"influence s{seeds[0]} vs LOO mean (the variants' baseline)", influence[seeds[0]], loo_mean,
                     f"loo-influence-s{seeds[0]}"))
    rows += [(f"variant {name} vs LOO mean", table, loo_mean, f"variant-{name}") for name, table in variants.items()]
    # A variant run again with another seed ("<name>-s<seed>"): the estimator against itself.
    for name, table in variants.items():
        base = re.sub(r"-s\d+$", "", name)
        if base != name and base in variants:
            rows.append((f"variant {base} vs variant {name}", variants[base], table, f"variant-{base}"))
    print("\nSpearman ρ over the nine domains:\n")
    print("| comparison | " + " | ".join(targets) + " | influence time / proxy training |")
    print("|---" * (len(targets) + 2) + "|")
    for name, x, y, log in rows:
        cells = " | ".join(f"{spearman(column(x, t), column(y, t)):+.3f}" for t in targets)
        print(f"| {name} | {cells} | {influence_share(log) if log else '-'} |")
    if variants:
        print("\nJoint utilities of the variants:\n")
        print("| domain | " + " | ".join(variants) + " |")
        print("|---" * (len(variants) + 1) + "|")
        for d in domains:
            print(f"| {d} | " + " | ".join(f"{v[d]['joint']:+.3g}" for v in variants.values()) + " |")
    print()
    for t in targets:
        gaps = [abs(loo[a][d][t] - loo[b][d][t]) for a, b in pairs for d in domains]
        size = sum(abs(loo_mean[d][t]) for d in domains) / len(domains)
        if gaps:
            print(f"- LOO {t}: mean |difference between two seeds| {sum(gaps) / len(gaps):.3f} nats, "
                  f"mean |utility| {size:.3f}.")

study()
