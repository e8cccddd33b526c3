#!/usr/bin/env bash
# mixlab's exports in the runtimes they are for: llama.cpp (built from llama-cpp-python's source
# package) loads `quantize`'s model-q4_0.gguf and `export --format gguf`'s F16 file, transformers
# loads `export --format hf`'s directory; each scores the probe texts' token sequences that
# `mixlab score` scores (each text alone from position 0, cut at the model's attention window,
# where every runtime attends alike), and llama.cpp tokenizes the probe texts and a sample of the
# corpus with the GGUF's vocabulary, compared with the shards' tokenizer.json id for id.
#
# Two models: the demo (`tiny` on the embedded default corpus, its own 1k tokenizer) and `small`
# on the real corpus (bpe-8k), each int4 (group 32) after quantization-aware training, and F16.
# Appends the table to bench/RESULTS.md. Resumable: steps under bench/out/gguf are skipped once
# done. Sizes (environment): DEMO_STEPS (300), SMALL_STEPS (400), QAT_STEPS (50).
source "$(dirname "$0")/lib.sh"
build_release
# llama-cpp-python has no wheel here: pip compiles llama.cpp (about 5 minutes on 2 cores).
python_env torch transformers safetensors numpy tokenizers "llama-cpp-python==0.3.36"
W="$OUT/gguf"
DEMO_STEPS="${DEMO_STEPS:-300}"
SMALL_STEPS="${SMALL_STEPS:-400}"
QAT_STEPS="${QAT_STEPS:-50}"
PROBES=("$SHARED/corpora/probes/humaneval.jsonl.gz" "$SHARED/corpora/probes/math.jsonl.gz")
CHECK=("$VENV/bin/python" "$ROOT/bench/peers/gguf_check.py")
mkdir -p "$W/demo" "$W/real" "$W/results"
cp "$ROOT/datasets.toml" "$W/demo/datasets.toml"
{
  real_corpus_domains
  cat <<TOML
[model]
preset = "small"

[train]
batch_size = 8
seq_len = 256
warmup_steps = 20
eval_every = 100000
eval_sequences = 32
checkpoint_every = 100
TOML
} > "$W/real/datasets.toml"

# model NAME STEPS: trains, quantizes (QAT) and exports the model of $W/NAME/datasets.toml, scores
# the probe texts with mixlab and checks them in llama.cpp and transformers.
model() {
  local name="$1" steps="$2" dir="$W/$1"
  mixlab() { (cd "$dir" && "$MIXLAB" --quiet "$@"); }
  step "$name-ingest" mixlab ingest
  step "$name-train" mixlab train --run runs/fp --steps "$steps"
  step "$name-qat" mixlab quantize --run runs/fp --qat-steps "$QAT_STEPS"
  step "$name-f16" mixlab export --run runs/fp --format gguf --precision f16
  step "$name-hf" mixlab export --run runs/fp --format hf
  local q4="$dir/out/runs/fp-qat-int4/model-q4_0.gguf" f16="$dir/out/runs/fp/gguf/model-f16.gguf"
  for probe in "${PROBES[@]}"; do
    local p; p="$(basename "$probe" .jsonl.gz)"
    step "$name-score-fp-$p" sh -c "cd '$dir' && '$MIXLAB' score --run runs/fp --texts '$probe' > '$W/results/$name-fp-$p.jsonl'"
    step "$name-score-q4-$p" sh -c "cd '$dir' && '$MIXLAB' score --run runs/fp-qat-int4 --gguf --texts '$probe' > '$W/results/$name-q4-$p.jsonl'"
    # On CPUs with AMX, llama.cpp's AMX kernels for Q4_0 crash on batches of these small models
    # (also on llama.cpp's own Q4_0 quantization of the same weights): then repacking off.
    local llama_q4="$(printf '%q ' "${CHECK[@]}") llama --gguf '$q4' --scores '$W/results/$name-q4-$p.jsonl'"
    step "$name-llama-q4-$p" sh -c "$llama_q4 > '$W/results/$name-llama-q4-$p.json' || $llama_q4 --no-repack > '$W/results/$name-llama-q4-$p.json'"
    step "$name-llama-f16-$p" sh -c "$(printf '%q ' "${CHECK[@]}") llama --gguf '$f16' --scores '$W/results/$name-fp-$p.jsonl' > '$W/results/$name-llama-f16-$p.json'"
    step "$name-hf-$p" sh -c "$(printf '%q ' "${CHECK[@]}") hf --dir '$dir/out/runs/fp/hf' --scores '$W/results/$name-fp-$p.jsonl' > '$W/results/$name-hf-$p.json'"
  done
  # Tokenization: the probe texts, and the first 300 records of every corpus file (the real
  # corpus) or of the demo's generated sources.
  local sample=("${PROBES[@]}")
  if [ "$name" = real ]; then sample+=("$SHARED"/corpora/*.jsonl.gz); else sample+=("$dir"/data/demo/*.jsonl*); fi
  step "$name-tokens" sh -c "$(printf '%q ' "${CHECK[@]}") tokens --gguf '$q4' --tokenizer '$dir/out/shards/tokenizer.json' --per-file 300 $(printf '%q ' "${sample[@]}") > '$W/results/$name-tokens.json'"
}
model demo "$DEMO_STEPS"
model real "$SMALL_STEPS"

LLAMA_VERSION="$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
python3 - "$W/results" "$(machine)" "$(isa)" "$LLAMA_VERSION" "$DEMO_STEPS" "$SMALL_STEPS" "$QAT_STEPS" <<'PY' | append_results
import json, pathlib, sys, datetime
res, machine, isa, llama_version, demo_steps, small_steps, qat_steps = sys.argv[1:]
res = pathlib.Path(res)
load = lambda name: json.loads((res / f"{name}.json").read_text())
print(f"## {datetime.date.today()} mixlab's exports in llama.cpp and transformers: `bash bench/gguf.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. llama.cpp from llama-cpp-python {llama_version} (vendored")
print("llama.cpp 0c1e57098, built by pip from the source package); transformers `LlamaForCausalLM` in")
print(f"f32. Models: demo = `tiny` on the embedded default corpus ({demo_steps} steps, its 1k tokenizer,")
print(f"window 64); real = `small` on the real corpus ({small_steps} steps, bpe-8k, window 128); int4 = Q4_0")
print(f"(group 32) after {qat_steps} QAT steps (`quantize --qat-steps`). Sequences: every probe text")
print("(HumanEval, math) alone from position 0, cut at the window; per-token losses of the runtime vs")
print("`mixlab score` on the same token ids (int4: `score --gguf`, F16 and transformers: the f32")
print("checkpoint). Goals: llama.cpp int4 within 0.5 %, F16 within 0.1 %, transformers within 1e-4 nats.\n")
print("| model | runtime | weights | probe | sequences | tokens | mixlab loss | runtime loss | mean rel. diff | max abs token diff | mean abs token diff |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for model in ["demo", "real"]:
    for kind, runtime, weights in [("llama-q4", "llama.cpp", "Q4_0 (QAT)"), ("llama-f16", "llama.cpp", "F16"), ("hf", "transformers", "F32")]:
        for probe in ["humaneval", "math"]:
            r = load(f"{model}-{kind}-{probe}")
            label = runtime if r.get("repacking", True) else f"{runtime} (repacking off)"
            print(f"| {model} | {label} | {weights} | {probe} | {r['sequences']} | {r['tokens']} | "
                  f"{r['mixlab_mean']:.5f} | {r['runtime_mean']:.5f} | {100 * r['mean_relative_difference']:.4f} % | "
                  f"{r['max_abs_token_difference']:.2e} | {r['mean_abs_token_difference']:.2e} |")
print("\nTokenization (llama.cpp's `tokenize` with the GGUF's vocabulary vs the shards' tokenizer.json):\n")
for model in ["demo", "real"]:
    t = load(f"{model}-tokens")
    print(f"- {model}: {t['identical']} of {t['texts']} texts ({t['tokens']:,} tokens) with identical ids"
          + (f"; differing: {t['differ']}" if t["differ"] else ""))
PY
