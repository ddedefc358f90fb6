#!/usr/bin/env bash
# Bring back what a lease has made so far, so that a machine lost between calls loses at most one call's progress.
#
#   scripts/gpu_collect.sh RUNS DEST [WAIT_SECONDS]
#     Waits up to WAIT_SECONDS (0) for RUNS/done (scripts/gpu_generators.sh), printing each log's last line every
#     minute, then packs RUNS without optimizer state, snapshots, real-image features and the packs' fp32/fp16/int4
#     weights (int8 packs, evaluations, logs, curves, plots, the judge) into DEST/results.tgz.00, .01, ... of 15 MB
#     each (a device command returns at most 8 files of 16 MiB). End every waiting device call with it, DEST=$OUT.
#     Exits at once (status 2) when RUNS is not there: the call landed on a fresh machine.
#   Here: cat FILES_AT/results.tgz.* | tar xz -C runs/generators
set -uo pipefail
RUNS=$1 DEST=$2 WAIT=${3:-0}
if [ ! -d "$RUNS" ]; then  # a machine lost between calls comes back fresh: waiting would only spend device time
  echo "no $RUNS on this machine (a fresh one: the lease's earlier work is gone); nothing to wait for" >&2
  exit 2
fi
end=$(( $(date +%s) + WAIT ))
while [ ! -f "$RUNS/done" ] && [ "$(date +%s)" -lt "$end" ]; do
  sleep $(( end - $(date +%s) < 60 ? end - $(date +%s) : 60 ))
  for log in "$RUNS"/logs/*.log; do
    [ -f "$log" ] && printf '%s: %s\n' "$(basename "$log")" "$(tail -c 300 "$log" | tr '\r' '\n' | grep . | tail -1 | cut -c1-160)"
  done
done
[ -f "$RUNS/done" ] && echo "done" || echo "not done yet"
mkdir -p "$DEST"
tar czf - -C "$RUNS" --exclude='*.pt' --exclude=snapshots --exclude='real_*' --exclude='pack/*/model.safetensors' \
  --exclude='model.fp16*.safetensors' --exclude='model.int4*.safetensors' . | split -b 15M -d - "$DEST/results.tgz."
ls -l "$DEST"
