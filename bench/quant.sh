#!/usr/bin/env bash
# int4 quantization: full precision vs post-training rounding (PTQ) vs quantization-aware training
# with self-distillation (QAT), with and without int8 activations (W4A8), and QAT's full-precision
# control (the same extra steps without rounding), on the `small` teacher and a `tiny` student of
# bench/distill.sh (run it first). Reports validation loss per domain and its mean, the relative regression against
# full precision, and bits per parameter; appends the table to bench/RESULTS.md.
#
# Resumable: every run has its own directory under bench/out/distill/runs and a marker when done.
# Sizes (environment): QAT_STEPS (100).
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/distill"
QAT_STEPS="${QAT_STEPS:-100}"
export RUST_LOG="${RUST_LOG:-info}"
for run in teacher ce-s0; do
  if [ ! -e "$W/done/$run" ]; then echo "run bench/distill.sh first (no finished $run)" >&2; exit 1; fi
done
mixlab() { "$MIXLAB" --out "$W" "$@"; }
evaluate() { step "eval-$1" sh -c "\"$MIXLAB\" --out \"$W\" eval --run runs/$1 --json > \"$W/results/$1.json\""; }

# The full-precision control of QAT's extra steps: the same self-distillation (alpha 1, tau 1, a
# tenth of the learning rate, the same data order) without the rounding, then rounded like PTQ.
python3 - "$W/distill.toml" "$W/fp-extra.toml" "$QAT_STEPS" <<'PY'
import re, sys
src, dst, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src).read()
lr = 3e-3  # [train].lr of distill.toml (the default)
warmup = min(20, steps // 10)
text = re.sub(r"^warmup_steps = .*$", f"warmup_steps = {warmup}\nlr = {lr / 10}", text, flags=re.M)
open(dst, "w").write(text)
PY
for run in teacher ce-s0; do
  preset="$([ "$run" = teacher ] && echo small || echo tiny)"
  step "ptq-$run" mixlab --quiet --log-format json quantize --run "runs/$run" --out-run "runs/$run-ptq"
  evaluate "$run-ptq"
  step "qat-$run" mixlab --quiet --log-format json quantize --run "runs/$run" \
    --qat-steps "$QAT_STEPS" --out-run "runs/$run-qat-int4"
  evaluate "$run-qat-int4"
  step "ptq-a8-$run" mixlab --quiet --log-format json quantize --run "runs/$run" \
    --int8-activations --out-run "runs/$run-w4a8"
  evaluate "$run-w4a8"
  step "qat-a8-$run" mixlab --quiet --log-format json quantize --run "runs/$run" \
    --int8-activations --qat-steps "$QAT_STEPS" --out-run "runs/$run-qat-w4a8"
  evaluate "$run-qat-w4a8"
  step "fp-extra-$run" mixlab --quiet --log-format json distill --config "$W/fp-extra.toml" \
    --preset "$preset" --teacher "runs/$run" --init-from "runs/$run" --alpha 1 --temperature 1 \
    --steps "$QAT_STEPS" --run "runs/$run-fp-extra"
  evaluate "$run-fp-extra"
  step "ptq-$run-fp-extra" mixlab --quiet --log-format json quantize --run "runs/$run-fp-extra" \
    --out-run "runs/$run-fp-extra-ptq"
  evaluate "$run-fp-extra-ptq"
done

python3 - "$W" "$QAT_STEPS" "$(machine)" "$(isa)" <<'PY' | append_results
import json, pathlib, sys, datetime
w, qat_steps, machine, isa = sys.argv[1:]
w = pathlib.Path(w)
def losses(run):
    return json.loads((w / "results" / f"{run}.json").read_text())
print(f"## {datetime.date.today()} int4 quantization: `bash bench/quant.sh`\n")
print(f"Machine: {machine}; ISA: {isa}. Runs of `bash bench/distill.sh` (real corpus, bpe-8k): the `small`")
print(f"teacher and the `tiny` ce-s0 student. PTQ: every weight matrix and the embedding rounded to int4")
print(f"(group 32, f16 scales: 4.5 bits a weight; norms f32). QAT: {qat_steps} steps of quantization-aware")
print("training from the full-precision weights (straight-through, self-distillation α = 1, τ = 1, lr a tenth")
print("of the run's), then rounded. FP + steps: the same training without rounding (QAT's control), then")
print("its PTQ. W4A8: int4 weights and int8 activations (every projection's input rounded per token), by PTQ")
print("or by QAT with the activations rounded in training too. Validation loss, nats/token.\n")
for base in ["teacher", "ce-s0"]:
    arms = [(base, "full precision"), (f"{base}-ptq", "PTQ"), (f"{base}-qat-int4", "QAT"),
            (f"{base}-fp-extra", f"FP + {qat_steps} steps"), (f"{base}-fp-extra-ptq", f"FP + {qat_steps} steps, PTQ"),
            (f"{base}-w4a8", "PTQ W4A8"), (f"{base}-qat-w4a8", "QAT W4A8")]
    results = {label: losses(run) for run, label in arms}
    domains = sorted(results["full precision"]["domains"])
    print(f"**{base}**\n")
    print("| arm | " + " | ".join(domains) + " | mean | vs full precision |")
    print("|---|" + "---|" * (len(domains) + 2))
    fp = results["full precision"]["mean_loss"]
    for _, label in arms:
        r = results[label]
        cells = " | ".join(f"{r['domains'][d]['loss']:.4f}" for d in domains)
        print(f"| {label} | {cells} | {r['mean_loss']:.4f} | {100 * (r['mean_loss'] - fp) / fp:+.2f}% |")
    print()
    gguf = w / "runs" / f"{base}-ptq" / "model-q4_0.gguf"
    f32 = max((w / "runs" / base / "checkpoints").glob("step-*[0-9].bpk"), key=lambda p: p.stat().st_size)
    params = None
    for line in (w / "logs" / f"ptq-{base}.log").read_text().splitlines():
        fields = json.loads(line).get("fields", {})
        if fields.get("message") == "packed int4 weights":
            params = fields["bytes"] * 8 / fields["bits_per_parameter"]
    bits = gguf.stat().st_size * 8 / params if params else float("nan")
    print(f"Packed int4 file (GGUF, Q4_0 blocks): {gguf.stat().st_size:,} bytes, {bits:.2f} bits a parameter,"
          f" {gguf.stat().st_size / f32.stat().st_size:.3f}× the f32 weights ({f32.stat().st_size:,} bytes).\n")
PY
