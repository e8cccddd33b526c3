"""The SDM ablation's table for bench/RESULTS.md, from bench/out/sdm (written by bench/sdm.sh)."""
import datetime
import glob
import json
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


def weighted(arm):
    runs = results.get(arm, {})
    return [sum(l) / 4 for l in runs.values()]


print()
for arm in ARMS:
    w = weighted(arm)
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

simulate_out = f"{W}/logs/simulate.out"
if os.path.exists(simulate_out):
    print("\nInfluence utilities (`mixlab simulate`, domain × target, all checkpoints):\n\n```text")
    print("".join(l for l in open(simulate_out) if not l.startswith("wrote")).rstrip())
    print("```")
loo_out = f"{W}/logs/loo.out"
if os.path.exists(loo_out):
    print("\nLeave-one-out utilities (targets encyclopedia and speeches probes; the rise of each target's loss "
          "without the domain):\n\n```text")
    print("".join(l for l in open(loo_out) if not l.startswith("wrote")).rstrip())
    print("```")
