#!/usr/bin/env bash
# A CFG grid on the GPU machine: generator files scored at each scale of a grid, 10,000 images a point, by the judge
# in git, one evaluation after another (several at once stalled an H200's 16 cores: each evaluation's FIDs take
# every core).
#
#   scripts/gpu_cfg_grid.sh DATA INCEPTION SCALES FOLDER...
#     SCALES: CFG scales, comma-separated (1.5,2.5). FOLDER: a generator folder, such as .gpu/m3/uvit (a copy of
#     assets/uvit) or a leg's OUT/pack/VARIANT@SIZE/VARIANT; its name is the variant.
#   env: OUT (runs/grid), JUDGE (judge/classifier: copied in, so that one judge scores every point), AFTER (a leg's
#        OUT: wait for its `done` while its scripts/gpu_generators.sh runs, so that the grid starts when the leg
#        ends), EVAL_N (10000), DEVICE (cuda), EVAL_FLAGS (extra flags of every evaluation).
# Per point OUT/eval/VARIANT-SCALE.json and OUT/logs/VARIANT-SCALE.log, then OUT/done. Resumable: points already
# scored are kept. Start it detached (setsid nohup ... &), bring it back with scripts/gpu_collect.sh OUT DEST WAIT,
# and merge it here with `python -m maskmamba.eval cfg-grid --out assets/results/generators.json OUT/eval/*.json`.
set -uo pipefail
DATA=$1 INCEPTION=$2 SCALES=$3
shift 3
OUT=${OUT:-runs/grid} JUDGE=${JUDGE:-judge/classifier} AFTER=${AFTER:-} EVAL_N=${EVAL_N:-10000} DEVICE=${DEVICE:-cuda}
EVAL_FLAGS=${EVAL_FLAGS:-}
mkdir -p "$OUT/eval" "$OUT/logs"
rm -f "$OUT/done"
while [ -n "$AFTER" ] && [ ! -f "$AFTER/done" ] && pgrep -f scripts/gpu_generators.sh > /dev/null; do sleep 10; done
if [ ! -f "$OUT/work/judge-ready" ]; then  # one work folder: the judge and the real features serve every point
  rm -rf "$OUT/work/classifier" && mkdir -p "$OUT/work" && cp -r "$JUDGE" "$OUT/work/classifier" \
    && touch "$OUT/work/judge-ready" || exit 1
fi
for folder in "$@"; do
  variant=$(basename "$folder")
  for scale in ${SCALES//,/ }; do
    point=$OUT/eval/$variant-$scale.json
    [ -f "$point" ] && continue
    python3 -m maskmamba.eval generator --data "$DATA" --checkpoints "$(dirname "$folder")" --variants "$variant" \
      --inception "$INCEPTION" --device "$DEVICE" --work "$OUT/work" --out "$point.part" --plots "$OUT/plots" \
      --n "$EVAL_N" --sweep "$scale" --sweep-n 100 --storage int8 --steps-curve '' $EVAL_FLAGS \
      > "$OUT/logs/$variant-$scale.log" 2>&1 && mv "$point.part" "$point" \
      || echo "failed: $variant at $scale (see $OUT/logs/$variant-$scale.log)" | tee -a "$OUT/logs/grid.log"
  done
done
touch "$OUT/done"
