#!/usr/bin/env bash
# Opening a shard set without reading it again (issue 33): the bytes of shard files a command reads
# when it needs only the manifest (`mixlab mix --method natural`: token counts), on the real corpus.
# Three opens of one shard directory: the first after a copy (no record of a full check: every file
# is hashed, then recorded in verified.json), the second (the record matches: no shard read), and
# the second again with --verify (every file hashed). strace counts the bytes read from the shard
# directory's files and the files opened; wall time from /usr/bin/time.
#
# SHARDS=<dir> copies that shard directory (e.g. bench/out/ablation/s0/out/shards); without it the
# real corpus is ingested first (bench/real-corpus.toml, bpe-8k tokenizer).
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/shard-open"
rm -rf "$W/out" && mkdir -p "$W/out"
if [ -n "${SHARDS:-}" ]; then
  cp -r "$SHARDS/." "$W/out/shards"
  rm -f "$W/out/shards/verified.json"
else
  real_corpus_domains > "$W/real-corpus.toml"
  "$MIXLAB" --quiet --out "$W/out" ingest --config "$W/real-corpus.toml" > /dev/null
  rm -f "$W/out/shards/verified.json" # the first open below is then a full pass, as after a copy
fi

# open NAME [global flags...]: one `mix --method natural` under strace; prints
# "NAME <shard-file bytes read> <other bytes read there> <shard files opened> <wall seconds>".
open_once() {
  local name="$1"; shift
  local trace="$W/$name.strace"
  exec 3> "$W/$name.time"
  timed strace -f -y -s 0 -e trace=openat,read,pread64 -o "$trace" \
    "$MIXLAB" --quiet --out "$W/out" "$@" mix --method natural --output "$W/mixture.toml" > /dev/null
  exec 3>&-
  awk -v name="$name" -v wall="$(cut -d' ' -f1 "$W/$name.time")" -v dir="$W/out/shards/" '
    /read(64)?\(/ && index($0, dir) && $NF ~ /^[0-9]+$/ {
      if ($0 ~ /\.parquet>/) shard += $NF; else other += $NF
    }
    /openat\(/ && index($0, dir) && /\.parquet"/ && $NF !~ /^-/ { files++ }
    END { printf "%s %d %d %d %s\n", name, shard, other, files, wall }' "$trace"
}

{
  open_once first
  open_once second
  open_once verify --verify
} | tee "$W/opens.txt"

shard_bytes=$(du -sb "$W/out/shards" | cut -f1)
shard_files=$(find "$W/out/shards" -name '*.parquet' | wc -l)
{
  echo "## Shard verification on open ($(date -u +%F))"
  echo
  echo "Machine: $(machine); ISA: $(isa). Command: \`bash bench/shard_open.sh\`$( [ -n "${SHARDS:-}" ] && echo " with SHARDS=$SHARDS (copied)")."
  echo "Real corpus shard set: $shard_files shard files, $shard_bytes bytes. Each row is one \`mixlab mix --method natural\`"
  echo "(needs only the manifest's token counts); bytes read from the shard files and from the directory's other files"
  echo "(tokenizer, manifest, record), shard files opened, counted by strace."
  echo
  echo "| open | shard bytes read | other bytes read (tokenizer, manifest, record) | shard files opened | wall s (under strace) |"
  echo "|---|---|---|---|---|"
  while read -r name bytes other files wall; do
    case "$name" in
      first) label="first, after a copy (no record: full pass, then recorded)" ;;
      second) label="second (record matches)" ;;
      verify) label="second with --verify (full pass)" ;;
    esac
    echo "| $label | $bytes | $other | $files | $wall |"
  done < "$W/opens.txt"
} | append_results
tail -n 12 "$RESULTS"
