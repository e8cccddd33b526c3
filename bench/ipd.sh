#!/usr/bin/env bash
# Implicit positional distillation (MobileLLM-Pro's context extension) on the real corpus
# (../shared/corpora, the shared 8k BPE) plus synthetic passkey tasks (`mixlab passkey make`).
#
# - base: `tiny` trained at the short context (SHORT tokens) on short passkey tasks only, BASE_STEPS:
#   retrieval appears as a phase change (at 800 steps the key's tokens still cost 2.6 nats each, by
#   3000 steps 91% of the keys are spelled), which the corpus mixtures below would delay past a session;
# - teacher: the base continued at the long context (LONG tokens) on the corpus, short passkey tasks
#   and long ones (the key hundreds of tokens before the question), RoPE base LONG_THETA;
# - student: the base continued at the short context on the corpus and short tasks only;
# - four extensions of the student to LONG tokens with RoPE base LONG_THETA, EXT_STEPS each:
#   ce-long (plain cross-entropy on long documents: books and long tasks, the data shift of the
#   usual recipe), ce-packed (cross-entropy on the student's own short documents packed into long
#   windows: the control) and ipd (the same packed windows, trained only on the teacher's logits,
#   alpha = 1); and, to tell whether the teacher's signal or the data limits ipd, kd-long (the
#   teacher's logits, alpha = 1, on ce-long's long documents).
# Packing is plain causal with running positions: with document-causal masks RoPE would make the
# long positions invisible (trainer/src/model/input.rs tests it), so no distance beyond a document occurs.
#
# Reports passkey retrieval at LONG and SHORT tokens (depths 0 to 1, TRIALS prompts each) and the
# validation loss at the short context (mean over the nine corpus domains) of every run; appends the
# table to bench/RESULTS.md. Resumable: each run its own directory under bench/out/ipd.
# Sizes (environment): BASE_STEPS (3000), TEACHER_STEPS (1200), STUDENT_STEPS (1500), EXT_STEPS (300),
# TRIALS (20).
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/ipd"
SHORT=64
LONG=512
LONG_THETA=100000.0
BASE_STEPS="${BASE_STEPS:-3000}"
TEACHER_STEPS="${TEACHER_STEPS:-1200}"
STUDENT_STEPS="${STUDENT_STEPS:-1500}"
EXT_STEPS="${EXT_STEPS:-300}"
TRIALS="${TRIALS:-20}"
mkdir -p "$W/done" "$W/logs" "$W/results" "$W/data"
export RUST_LOG="${RUST_LOG:-info}"
mixlab() { "$MIXLAB" --out "$W" "$@"; }

# Short tasks fit the short context (about 35 to 55 tokens); long ones fill 300 to 500 tokens.
step data-short mixlab passkey make --output "$W/data/passkey.jsonl.gz" --docs 6000 \
  --min-filler 0 --max-filler 3 --seed 1
step data-long mixlab passkey make --output "$W/data/passkey_long.jsonl.gz" --docs 2000 \
  --min-filler 45 --max-filler 75 --seed 2

# Passkey tasks repeat their filler by design and differ mostly in the key: no repetition filters,
# and MinHash only removes documents with identical word sets.
passkey_domain() { # passkey_domain NAME: the tasks in $W/data/NAME.jsonl.gz
  cat <<TOML
[[domain]]
name = "$1"
filters = { min_stop_words = 0, min_alpha_word_fraction = 0.0, min_alpha_char_fraction = 0.0, mean_word_length = [1.0, 30.0], max_duplicate_line_fraction = 1.0, max_top_ngram_fraction = [1.0, 1.0, 1.0], max_duplicate_ngram_fraction = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0] }
[[domain.source]]
path = "$W/data/$1.jsonl.gz"
format = "jsonl"

TOML
}
config() { # config SEQ_LEN THETA BATCH LR
  real_corpus_domains | sed 's/^minhash = .*/minhash = { threshold = 1.0, num_perm = 128, bands = 16, ngram = 1 }/'
  passkey_domain passkey
  passkey_domain passkey_long
  cat <<TOML
[model]
preset = "tiny"
rope_theta = $2

[train]
seq_len = $1
batch_size = $3
lr = $4
warmup_steps = 30
eval_every = 100000
eval_sequences = 32
checkpoint_every = 100
TOML
}
config "$SHORT" 10000.0 16 3e-3 > "$W/short.toml"
config "$LONG" "$LONG_THETA" 8 3e-3 > "$W/teacher.toml"
config "$LONG" "$LONG_THETA" 8 1e-3 > "$W/extend.toml"

CORPUS="books scripture speeches email_ham email_spam encyclopedia code_python code_rust math"
mixture() { # mixture FILE PASSKEY PASSKEY_LONG BOOKS_EXTRA: the corpus shares the rest equally
  python3 - "$@" "$CORPUS" <<'PY'
import sys
path, short, long_, books, corpus = sys.argv[1], *map(float, sys.argv[2:5]), sys.argv[5].split()
each = (1 - short - long_ - books) / len(corpus)
weights = {d: each + (books if d == "books" else 0.0) for d in corpus}
weights |= {"passkey": short, "passkey_long": long_}
body = ", ".join(f"{d} = {w:.4f}" for d, w in weights.items())
open(path, "w").write(f'[[stage]]\nname = "main"\nweights = {{ {body} }}\n[provenance]\nmethod = "given"\n')
PY
}
mixture "$W/teacher-mix.toml" 0.15 0.40 0.0
mixture "$W/short-mix.toml" 0.37 0.0 0.0
mixture "$W/passkey-mix.toml" 1.0 0.0 0.0
# Long documents only: the long tasks and books (the corpus's long natural documents).
python3 - "$W/long-mix.toml" "$CORPUS" <<'PY'
import sys
weights = {d: 0.0 for d in sys.argv[2].split()} | {"books": 0.5, "passkey": 0.0, "passkey_long": 0.5}
body = ", ".join(f"{d} = {w}" for d, w in weights.items())
open(sys.argv[1], "w").write(f'[[stage]]\nname = "main"\nweights = {{ {body} }}\n[provenance]\nmethod = "given"\n')
PY

step ingest mixlab --quiet ingest --config "$W/short.toml"
step base mixlab --quiet --log-format json train --config "$W/short.toml" \
  --mixture "$W/passkey-mix.toml" --run runs/base --steps "$BASE_STEPS"
step teacher mixlab --quiet --log-format json train --config "$W/teacher.toml" \
  --mixture "$W/teacher-mix.toml" --run runs/teacher --steps "$TEACHER_STEPS" --init-from runs/base
step student mixlab --quiet --log-format json train --config "$W/short.toml" \
  --mixture "$W/short-mix.toml" --run runs/student --steps "$STUDENT_STEPS" --init-from runs/base
step ce-long mixlab --quiet --log-format json train --config "$W/extend.toml" \
  --mixture "$W/long-mix.toml" --run runs/ce-long --steps "$EXT_STEPS" --init-from runs/student
step ce-packed mixlab --quiet --log-format json train --config "$W/extend.toml" \
  --mixture "$W/short-mix.toml" --run runs/ce-packed --steps "$EXT_STEPS" --init-from runs/student
step ipd mixlab --quiet --log-format json distill --config "$W/extend.toml" \
  --mixture "$W/short-mix.toml" --run runs/ipd --steps "$EXT_STEPS" --init-from runs/student \
  --teacher runs/teacher --alpha 1 --temperature 1
step kd-long mixlab --quiet --log-format json distill --config "$W/extend.toml" \
  --mixture "$W/long-mix.toml" --run runs/kd-long --steps "$EXT_STEPS" --init-from runs/student \
  --teacher runs/teacher --alpha 1 --temperature 1

RUNS="base teacher student ce-long ce-packed ipd kd-long"
for run in $RUNS; do
  for context in "$SHORT" "$LONG"; do
    step "passkey-$run-$context" sh -c "\"$MIXLAB\" --out \"$W\" passkey eval --run runs/$run \
      --context $context --trials $TRIALS --json > \"$W/results/passkey-$run-$context.json\""
  done
  step "eval-$run" sh -c "\"$MIXLAB\" --out \"$W\" eval --run runs/$run --seq-len $SHORT --json \
    > \"$W/results/eval-$run.json\""
done

python3 - "$W" "$RUNS" "$CORPUS" "$SHORT" "$LONG" "$LONG_THETA" "$BASE_STEPS" "$TEACHER_STEPS" "$STUDENT_STEPS" \
  "$EXT_STEPS" "$TRIALS" "$(machine)" "$(isa)" <<'PY' | append_results
import datetime, json, pathlib, sys
w, runs, corpus, short, long_, theta, b_steps, t_steps, s_steps, e_steps, trials, machine, isa = sys.argv[1:]
w = pathlib.Path(w)
def load(name):
    return json.loads((w / "results" / f"{name}.json").read_text())
def seconds(run):
    log = w / "logs" / f"{run}.log"
    for line in (log.read_text().splitlines() if log.exists() else []):
        fields = json.loads(line).get("fields", {}) if line.startswith("{") else {}
        if fields.get("message") == "trained":
            return fields["train_seconds"]
    return float("nan")
print(f"## {datetime.date.today()} Implicit positional distillation: `bash bench/ipd.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. Corpus ../shared/corpora (9 domains) + passkey tasks, tokenizer bpe-8k, `tiny` models.")
print(f"Base: {b_steps} steps at {short} tokens (batch 16, θ 10000) on short passkey tasks only.")
print(f"Teacher: the base + {t_steps} steps at {long_} tokens (batch 8, RoPE θ {theta}) on the corpus, short and long passkey tasks.")
print(f"Student: the base + {s_steps} steps at {short} tokens (batch 16, θ 10000) on the corpus and short tasks.")
print(f"Extensions of the student: {e_steps} steps at {long_} tokens (batch 8, θ {theta}, lr 1e-3); causal packing, running positions.")
print(f"Passkey: {trials} prompts per depth (0, 0.25, 0.5, 0.75, 1), accuracy = greedy answer spells the key; answer nats = mean loss of the key's tokens (lower: more of the key retrieved).")
print(f"Short-context loss: validation at {short} tokens, mean over the 9 corpus domains (nats/token).\n")
print(f"| run | passkey @{long_} | answer nats @{long_} by depth | passkey @{short} | answer nats @{short} | loss @{short} | train s |")
print("|---|---|---|---|---|---|---|")
for run in runs.split():
    at_long, at_short = load(f"passkey-{run}-{long_}"), load(f"passkey-{run}-{short}")
    depths = " ".join(f"{d['answer_loss']:.2f}" for d in at_long["depths"])
    domains = load(f"eval-{run}")["domains"]
    loss = sum(domains[d]["loss"] for d in corpus.split()) / len(corpus.split())
    print(f"| {run} | {100 * at_long['accuracy']:.0f}% | {at_long['answer_loss']:.2f}: {depths} | {100 * at_short['accuracy']:.0f}% | {at_short['answer_loss']:.2f} | {loss:.4f} | {seconds(run):.0f} |")
PY
