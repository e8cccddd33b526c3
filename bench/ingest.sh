#!/usr/bin/env bash
# Ingest benchmark: mixlab vs a Python peer on the real corpus (../shared/corpora), same tokenizer.
#
# Reports MB/s of input text and tokens/s end to end (read → filter → dedup → tokenize → write),
# peak memory, the same on the corpus twice (memory must stay flat), tokenizer-only throughput,
# and the ratios. Appends to bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
python_env tokenizers pyarrow numpy

CORPUS=("$SHARED"/corpora/*.jsonl.gz)
# The corpus twice: every source listed a second time (the copies are exact duplicates).
awk '/^\[\[domain.source\]\]/ { src = 1 } { print } src && /^format/ { print "[[domain.source]]"; print prev; print; src = 0 } { prev = $0 }' \
  "$ROOT/bench/real-corpus.toml" > "$ROOT/bench/real-corpus-x2.toml"

run_mixlab() { # config out_dir
  rm -rf "$2"
  timed "$MIXLAB" --quiet --out "$2" ingest --config "$1" > "$2.stdout"
}
exec 3> "$OUT/ingest.times"
run_mixlab "$ROOT/bench/real-corpus.toml" "$OUT/ingest-x1"
run_mixlab "$ROOT/bench/real-corpus-x2.toml" "$OUT/ingest-x2"
"$TARGET/$PROFILE_DIR/tokenize-only" "$SHARED/tokenizers/bpe-8k.json" "${CORPUS[@]}" > "$OUT/tokenize-only.json"
rm -rf "$OUT/peer"
timed "$VENV/bin/python" "$ROOT/bench/peers/python_ingest.py" "$ROOT/bench/real-corpus.toml" "$OUT/peer" > "$OUT/peer.json"
exec 3>&-

"$VENV/bin/python" - "$OUT" <<'PY' | append_results
import json, sys, datetime, subprocess
out = sys.argv[1]
times = [l.split() for l in open(f"{out}/ingest.times")]
def manifest(d):
    m = json.load(open(f"{out}/{d}/shards/manifest.json"))
    s = [x["stats"] for x in m["domains"]]
    return sum(x["bytes_read"] for x in s), sum(x["documents"] for x in s), sum(x["tokens"] for x in s)
(b1, d1, t1), (b2, d2, t2) = manifest("ingest-x1"), manifest("ingest-x2")
(w1, m1), (w2, m2), (wp, mp) = [(float(a), float(b)) for a, b in times]
tok = json.load(open(f"{out}/tokenize-only.json"))
peer = json.load(open(f"{out}/peer.json"))
mx_mb, mx_tok = b1 / 1e6 / w1, t1 / w1
peer_mb = peer["bytes_read"] / 1e6 / wp
machine = subprocess.run(["bash", "-c", "source bench/lib.sh; machine"], capture_output=True, text=True).stdout.strip()
print(f"## {datetime.date.today()} ingest: `bash bench/ingest.sh`")
print(f"\nMachine: {machine}. Corpus: ../shared/corpora (9 domains), tokenizer ../shared/tokenizers/bpe-8k.json. Wall times include process start.\n")
print("| pipeline | input MB | wall s | MB/s | tokens | tokens/s | documents | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|")
print(f"| mixlab ingest | {b1/1e6:.1f} | {w1:.2f} | {mx_mb:.2f} | {t1:,} | {mx_tok:,.0f} | {d1:,} | {m1:.0f} |")
print(f"| mixlab ingest, corpus twice | {b2/1e6:.1f} | {w2:.2f} | {b2/1e6/w2:.2f} | {t2:,} | {t2/w2:,.0f} | {d2:,} | {m2:.0f} |")
print(f"| Python peer (tokenizers + pyarrow + numpy) | {peer['bytes_read']/1e6:.1f} | {wp:.2f} | {peer_mb:.2f} | {peer['tokens']:,} | {peer['tokens']/wp:,.0f} | {peer['documents']:,} | {mp:.0f} |")
print(f"| tokenizer only (tokenizers crate, rayon) | {tok['bytes']/1e6:.1f} | {tok['seconds']:.2f} | {tok['mb_per_second']:.2f} | {tok['tokens']:,} | {tok['tokens_per_second']:,.0f} | {tok['documents']:,} | - |")
print(f"\nmixlab / Python peer: **{mx_mb/peer_mb:.2f}×** (MB/s). mixlab / tokenizer-only: **{100*mx_mb/tok['mb_per_second']:.0f}%**. "
      f"Peak memory, corpus twice / once: **{m2/m1:.2f}×**. Documents kept: mixlab {d1:,}, peer {peer['documents']:,} "
      f"(same rules; MinHash hash families differ).")
PY
tail -n 12 "$RESULTS"
