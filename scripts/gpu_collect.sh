#!/usr/bin/env bash
# Bring back what a lease has made so far, so that a machine lost between calls loses at most one call's progress.
#
#   scripts/gpu_collect.sh RUNS DEST [WAIT_SECONDS]
#     RUNS: one OUT folder of scripts/gpu_generators.sh, or several joined by commas (legs run side by side, each
#     with its own OUT). Waits up to WAIT_SECONDS (0) for every RUNS/done, printing each log's last line every
#     minute, then packs each folder without optimizer state, snapshots, real-image features and the packs'
#     fp32/fp16/int4 weights (int8 packs, evaluations, logs, curves, plots, the judge) into DEST/results.tgz.00, .01,
#     ... of 15 MB each (several folders: DEST/NAME.tgz.00, ... per folder, NAME its base name; a device command
#     returns at most 8 files of 16 MiB). End every waiting device call with it, DEST=$OUT.
#     Exits at once (status 2) when none of RUNS is there: the call landed on a fresh machine.
#   Here: cat FILES_AT/results.tgz.* | tar xz -C runs/generators   (several: cat FILES_AT/NAME.tgz.* | tar xz -C runs/NAME)
set -uo pipefail
IFS=, read -ra FOLDERS <<< "$1"
DEST=$2 WAIT=${3:-0}
present=()
for f in "${FOLDERS[@]}"; do [ -d "$f" ] && present+=("$f") || echo "no $f on this machine" >&2; done
if [ ${#present[@]} -eq 0 ]; then  # a machine lost between calls comes back fresh: waiting would only spend device time
  echo "none of $1 on this machine (a fresh one: the lease's earlier work is gone); nothing to wait for" >&2
  exit 2
fi
all_done() { local f; for f in "${present[@]}"; do [ -f "$f/done" ] || return 1; done; }
end=$(( $(date +%s) + WAIT ))
while ! all_done && [ "$(date +%s)" -lt "$end" ]; do
  sleep $(( end - $(date +%s) < 60 ? end - $(date +%s) : 60 ))
  for f in "${present[@]}"; do
    for log in "$f"/logs/*.log; do
      [ -f "$log" ] && printf '%s: %s\n' "$log" "$(tail -c 300 "$log" | tr '\r' '\n' | grep . | tail -1 | cut -c1-160)"
    done
  done
done
all_done && echo "done" || echo "not done yet"
mkdir -p "$DEST"
for f in "${present[@]}"; do
  name=results; [ ${#FOLDERS[@]} -gt 1 ] && name=$(basename "$f")
  tar czf - -C "$f" --exclude='*.pt' --exclude=snapshots --exclude='real_*' --exclude='pack/*/model.safetensors' \
    --exclude='model.fp16*.safetensors' --exclude='model.int4*.safetensors' . | split -b 15M -d - "$DEST/$name.tgz."
done
ls -l "$DEST"
