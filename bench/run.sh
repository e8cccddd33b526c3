#!/usr/bin/env bash
# The README's main job: `mixlab run` on the embedded default (datasets.toml) in a fresh directory,
# timed per stage from its JSON event log; then a second, unchanged run (every stage skipped), and
# the report alone. Goal (issue 17): the whole job in under 15 minutes on 2 cores. The peer is the
# same work as separate commands (the README's former main job: ingest, simulate, mix, train) for
# the orchestration's own overhead. Appends the figures to bench/RESULTS.md.
source "$(dirname "$0")/lib.sh"
build_release
W="$OUT/run"
rm -rf "$W" && mkdir -p "$W"
cp "$ROOT/datasets.toml" "$W/"
cd "$W"
export RUST_LOG=info

exec 3> "$W/cold.time"
timed "$MIXLAB" --quiet --log-format json run > cold.out 2> cold.log
exec 3> "$W/warm.time"
timed "$MIXLAB" --quiet --log-format json run > warm.out 2> warm.log
exec 3> "$W/report.time"
timed "$MIXLAB" --quiet report --plan out/pipeline/plan.json --name again > report.out 2> report.log

# The peer: one arm, one seed, as separate commands on a fresh directory.
mkdir -p "$W/peer" && cp "$ROOT/datasets.toml" "$W/peer/" && cd "$W/peer"
exec 3> "$W/peer.time"
timed sh -c "\"$MIXLAB\" -q ingest && \"$MIXLAB\" -q simulate && \"$MIXLAB\" -q mix --method sdm --config datasets.toml && \"$MIXLAB\" -q train --mixture out/mixture.toml --run runs/sdm-s0" > /dev/null 2> peer.log
exec 3> "$W/peer-run.time"
cd "$W" && mkdir -p one && cd one && cp "$ROOT/datasets.toml" . && python3 - <<'PY'
import re
text = open("datasets.toml").read()
text = text[: text.index("\n[run]")] + '\n[run]\nname = "sdm-s0"\nmix = "sdm"\n'
open("datasets.toml", "w").write(text)
PY
timed "$MIXLAB" --quiet run > /dev/null 2> one.log
cd "$W"

stage_table() {
  python3 - "$1" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    e = json.loads(line)
    f = e.get("fields", {})
    if f.get("event") == "finished":
        rows.append((f["stage"], float(f["seconds"])))
for stage, s in rows:
    print(f"| {stage} | {s:.1f} |")
print(f"| **stages in all** | **{sum(s for _, s in rows):.1f}** |")
PY
}
read -r cold_s cold_mb < cold.time
read -r warm_s _ < warm.time
read -r report_s _ < report.time
read -r peer_s _ < peer.time
read -r one_s _ < peer-run.time
append_results <<MD
## $(date -u +%F) mixlab run: the README's main job (issue 17)

Machine: $(machine); $(isa). Command: \`bash bench/run.sh\` (profile $PROFILE).

| what | wall s | peak RSS MB |
|---|---|---|
| \`mixlab run\` on datasets.toml from nothing (ingest, simulate, 2 arms × 2 seeds train + int4, report) | $cold_s | $cold_mb |
| the same, rerun unchanged (every stage skipped) | $warm_s | |
| \`mixlab report\` alone | $report_s | |
| one arm, one seed as separate commands (ingest, simulate, mix, train) | $peer_s | |
| the same arm as \`mixlab run\` (plus its report) | $one_s | |

Stage times of the first run (from its \`--log-format json\` events):

| stage | s |
|---|---|
$(stage_table cold.log)
MD
tail -n 30 "$RESULTS"
