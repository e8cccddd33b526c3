#!/usr/bin/env bash
# Specialist merging: from the `small` teacher of bench/distill.sh (run it first), three specialists
# annealed on domain-skewed mixtures (code-, math- and prose-heavy; learning rate decaying to 0), then
# merged by averaging their weights, with equal weights and with weights searched on the validation
# split (Nelder-Mead on the simplex). Reports every domain's validation loss and the mean validation
# and probe loss of the base, each specialist and both merges; appends the table to bench/RESULTS.md.
#
# Resumable: every run has its own directory under bench/out/distill/runs and a marker when done.
# Sizes (environment): SPEC_STEPS (60 steps at batch 8 × 256), SEARCH_ITERS (15).
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/distill"
SPEC_STEPS="${SPEC_STEPS:-60}"
SEARCH_ITERS="${SEARCH_ITERS:-15}"
export RUST_LOG="${RUST_LOG:-info}"
if [ ! -e "$W/done/teacher" ]; then echo "run bench/distill.sh first (no finished teacher)" >&2; exit 1; fi
mixlab() { "$MIXLAB" --out "$W" "$@"; }
evaluate() { step "eval-$1" sh -c "\"$MIXLAB\" --out \"$W\" eval --run runs/$1 --json > \"$W/results/$1.json\""; }

cat > "$W/specialists.toml" <<TOML
# Each specialist keeps a little of every other domain, so it stays a language model.
steps = $SPEC_STEPS

[[specialist]]
name = "code"
weights = { code_python = 0.35, code_rust = 0.35, books = 0.03, scripture = 0.03, speeches = 0.04, email_ham = 0.04, email_spam = 0.02, encyclopedia = 0.07, math = 0.07 }

[[specialist]]
name = "math"
weights = { math = 0.7, code_python = 0.05, code_rust = 0.05, books = 0.03, scripture = 0.03, speeches = 0.04, email_ham = 0.02, email_spam = 0.01, encyclopedia = 0.07 }

[[specialist]]
name = "prose"
weights = { books = 0.2, scripture = 0.15, speeches = 0.2, encyclopedia = 0.2, email_ham = 0.05, email_spam = 0.02, code_python = 0.04, code_rust = 0.04, math = 0.1 }
TOML

step merge-uniform mixlab --quiet --log-format json merge --base runs/teacher \
  --specialists "$W/specialists.toml" --run runs/teacher-merged
step merge-search mixlab --quiet --log-format json merge --base runs/teacher \
  --specialists "$W/specialists.toml" --weights search --search-iters "$SEARCH_ITERS" \
  --run runs/teacher-merged-search
for run in teacher-code teacher-math teacher-prose teacher-merged teacher-merged-search; do
  evaluate "$run"
done

python3 - "$W" "$SPEC_STEPS" "$SEARCH_ITERS" "$(machine)" "$(isa)" <<'PY' | append_results
import json, pathlib, sys, datetime
w, spec_steps, search_iters, machine, isa = sys.argv[1:]
w = pathlib.Path(w)
runs = ["teacher", "teacher-code", "teacher-math", "teacher-prose", "teacher-merged", "teacher-merged-search"]
names = ["base", "code", "math", "prose", "merged (uniform)", "merged (search)"]
results = {r: json.loads((w / "results" / f"{r}.json").read_text()) for r in runs}
KEY = {"valid": "domains", "probe": "probe"}  # eval --json's names of the splits
def mean(r, split):
    losses = [v["loss"] for v in results[r][KEY[split]].values()]
    return sum(losses) / len(losses)
found = ""
for line in (w / "logs" / "merge-search.log").read_text().splitlines():
    fields = json.loads(line).get("fields", {}) if line.startswith("{") else {}
    if fields.get("message") == "merge weights found":
        found = f"{fields['weights']} after {fields['evaluations']} evaluations"
print(f"## {datetime.date.today()} Specialist merging: `bash bench/merge.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. Base: the `small` teacher of bench/distill.sh (real corpus, bpe-8k,")
print(f"batch 8 × 256). Specialists: {spec_steps} steps each from its final checkpoint on code-, math- and")
print("prose-heavy mixtures (70% of the tokens on their domains), learning rate from a tenth of the base's to 0.")
print(f"Merges: parameter average with equal weights, and with weights searched ({search_iters} Nelder-Mead")
print(f"iterations) on the mean validation loss: {found}. Losses in nats/token; the probe split is not")
print("seen by the search.\n")
print("| domain (valid) | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for domain in results["teacher"]["domains"]:
    print(f"| {domain} | " + " | ".join(f"{results[r]['domains'][domain]['loss']:.4f}" for r in runs) + " |")
for split in ["valid", "probe"]:
    print(f"| **mean ({split})** | " + " | ".join(f"**{mean(r, split):.4f}**" for r in runs) + " |")
best_specialist = min(mean(r, "valid") for r in runs[1:4])
print(f"\n- merged (uniform) − best specialist, mean valid: {mean('teacher-merged', 'valid') - best_specialist:+.4f};"
      f" merged (search): {mean('teacher-merged-search', 'valid') - best_specialist:+.4f}.")
best_probe = min(mean(r, "probe") for r in runs[1:4])
print(f"- on the probe split: merged (uniform) {mean('teacher-merged', 'probe') - best_probe:+.4f},"
      f" merged (search) {mean('teacher-merged-search', 'probe') - best_probe:+.4f} against the best specialist.")
PY
tail -n 20 "$RESULTS"
