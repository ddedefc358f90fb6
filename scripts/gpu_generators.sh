#!/usr/bin/env bash
# Issue 14 in one lease: the judge, every run of RUNS trained side by side on every GPU of this machine, the scaling
# study's snapshots scored, the shipped and compared runs scored in full, everything collected.
#
#   scripts/gpu_generators.sh DATA INCEPTION
#     DATA: a built data set with its token cache (`python -m maskmamba.data tokenize DATA --augment 3`): training
#     reads tokens, captions and the manifest, the judge and FID read the pixels. INCEPTION: the TF-Inception
#     TorchScript file (`python -m maskmamba.eval fid-fp16`).
#   env: RUNS (VARIANT@SIZE[:full|:score][/GPU] items, longest first; `full` runs get the full evaluation below;
#        `score` runs are not trained: INIT/VARIANT, the files as they are, gets the full evaluation, one at a time
#        per GPU (a new judge rescoring what is shipped); /GPU pins a run to a GPU, /0+1 trains it on several under
#        torchrun (scripts/launch_train.sh), else runs take free slots), JUDGE_GPU (1), JUDGE_FROM (a trained
#        judge's classifier folder, such as judge/classifier: copied into OUT/judge/classifier and reused, not
#        retrained, so that every lease scores with one judge),
#        SHIPPED (variants recorded under `shipped`), STEPS (6000, or `auto`: short probes of every run, laid out on
#        the GPUs as the runs will be, and the slowest sets the steps that fit TRAIN_MINUTES; or `each`: the same
#        probes, and every run gets the steps its own rate fits; kept in OUT/steps for reruns; scripts/choose_steps.py),
#        STEPS_SET (VARIANT@SIZE=STEPS items: these runs get exactly these steps, as a comparison with an earlier run
#        needs, whatever STEPS gave them),
#        PROBE_SECONDS (60: the probes stop together then, so that runs sharing a GPU are timed while they share
#        it; probes train with TRAIN_FLAGS, so a taught run's probe pays for its teacher), PROBE_STEPS (a cap on
#        the probes' steps, 100000), BATCH (256), SNAPSHOTS (3), PARALLEL (runs per GPU, 3),
#        TRAIN_MINUTES (training stops by then, counted from the start of training, best EMA exported; 17), DEADLINE
#        (epoch seconds: training stops then instead, and probes fit the steps to the time left, so that legs started
#        one after another on one machine, each with its own OUT, end together; where a probe's rate was too hopeful,
#        --time-schedule still takes each cosine to its floor by the stop), SNAP_N (images per
#        point of the CFG sweeps, the snapshots and the iteration curve; 2000),
#        SNAP_SWEEP (2,3), EVAL_N (10000), SWEEP (1,2,3,4), STORAGE (int8), COMPARE (fp32,int4; set empty for none),
#        TOKENIZER (assets/tokenizer), INIT (a folder of one generator folder per variant, such as assets: each
#        new run starts from its variant's weights there, `--init`), PARAPHRASES, TRAIN_FLAGS,
#        EVAL_FLAGS (extra flags of every evaluation), RESCORE (sampler flags, such as "--temperature 0.9": every
#        `full` run's stored pack is scored in full again with them, into OUT/eval/rescore/VARIANT@SIZE.json, so that
#        a change of the sampler's defaults is decided on the same files, judge and seeds),
#        DEVICE (cuda), OUT (runs/generators)
#
# Per run: OUT/VARIANT@SIZE (checkpoints, log, curves), OUT/pack/VARIANT@SIZE/VARIANT (the best EMA in fp32, int8
# and int4), OUT/eval/VARIANT@SIZE/STEP.json (each snapshot: FID of SNAP_N images at the best of SNAP_SWEEP, class,
# prompt and paraphrase top-5), and for `full` runs OUT/eval/full/VARIANT@SIZE.json (FID of EVAL_N images at the
# best of SWEEP, the other storage formats on the same seeds, default_cfg written into the pack's config.json).
# At the end: OUT/scaling.json + plots, OUT/generators.json + plots, OUT/done. Resumable: rerun the same command;
# finished trainings and evaluations are kept. Start it detached (setsid ... &) so it outlives the device command.
set -uo pipefail
DATA=$1 INCEPTION=$2
RUNS=${RUNS:-"maskmamba-serial-half@medium:full/0 transformer@small/0 mmamba@small:full/1 maskmamba-serial-half@small/1 uvit@medium:full/2 maskmamba-parallel-4@small:full/2 uvit@small/2 transformer@medium:full/3 maskmamba-parallel-2@small:full/3 maskmamba-serial-interleave@small:full/3"}
SHIPPED=${SHIPPED:-maskmamba-serial-half,maskmamba-serial-interleave,maskmamba-parallel-2,maskmamba-parallel-4,uvit,mmamba}
STEPS=${STEPS:-6000} PROBE_STEPS=${PROBE_STEPS:-100000} PROBE_SECONDS=${PROBE_SECONDS:-60} BATCH=${BATCH:-256} SNAPSHOTS=${SNAPSHOTS:-3} PARALLEL=${PARALLEL:-3} TRAIN_MINUTES=${TRAIN_MINUTES:-17}
SNAP_N=${SNAP_N:-2000} SNAP_SWEEP=${SNAP_SWEEP:-2,3} EVAL_N=${EVAL_N:-10000} SWEEP=${SWEEP:-1,2,3,4}
STORAGE=${STORAGE:-int8} COMPARE=${COMPARE-fp32,int4} TOKENIZER=${TOKENIZER:-assets/tokenizer}
PARAPHRASES=${PARAPHRASES:-assets/eval/paraphrases.json} TRAIN_FLAGS=${TRAIN_FLAGS:-} EVAL_FLAGS=${EVAL_FLAGS:-} DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/generators} RESCORE=${RESCORE:-} JUDGE_GPU=${JUDGE_GPU:-1} JUDGE_FROM=${JUDGE_FROM:-} INIT=${INIT:-} DEADLINE=${DEADLINE:-}
NGPU=$( [ "$DEVICE" = cuda ] && nvidia-smi -L | wc -l || echo 1 )
mkdir -p "$OUT/logs" "$OUT/eval/full" "$OUT/judge"
rm -f "$OUT/done"
if [ -n "$JUDGE_FROM" ] && [ ! -f "$OUT/judge/ready" ]; then  # a judge reused: checked before any training
  rm -rf "$OUT/judge/classifier" && cp -r "$JUDGE_FROM" "$OUT/judge/classifier" && touch "$OUT/judge/ready" || exit 1
fi

TRAINED=$(printf '%s\n' $RUNS | grep -v ':score' || true)  # the runs that train
if [[ $STEPS == auto || $STEPS == each ]] && [ -f "$OUT/steps" ]; then :  # a rerun keeps the schedule
elif [[ $STEPS == auto || $STEPS == each ]] && [ -z "$TRAINED" ]; then : > "$OUT/steps"  # nothing to probe
elif [[ $STEPS == auto || $STEPS == each ]]; then  # probes laid out as the runs will be (pinned GPU, else in turn), side by side
  probe=$OUT/probes; rm -rf "$probe"; mkdir -p "$probe"; i=0  # per OUT: two leases side by side keep their own
  probe_minutes=$(awk "BEGIN { print $PROBE_SECONDS / 60 }")
  for item in $TRAINED; do
    name=${item%%/*}; name=${name%%:*}; gpu=$(( i++ % NGPU )); [[ $item == */* ]] && gpu=${item##*/}
    BATCH=$BATCH DEVICE=$DEVICE NGPU=$NGPU scripts/launch_train.sh "$gpu" --variant "${name%%@*}" \
      --size "${name#*@}" --data "$DATA" --out "$probe/$name" $TRAIN_FLAGS --steps "$PROBE_STEPS" \
      --minutes "$probe_minutes" --eval-every 100000 --snapshot-every 0 --log-every 50 --device "$DEVICE" > "$probe/$name.log" 2>&1 &
  done
  wait
  flag=""; [ "$STEPS" = each ] && flag=--each
  window=$TRAIN_MINUTES; [ -n "$DEADLINE" ] && window=$(( (DEADLINE - $(date +%s)) / 60 ))
  python3 scripts/choose_steps.py $flag "$window" "$BATCH" "$probe"/*/log.jsonl > "$OUT/steps.part" \
    2>> "$OUT/logs/probe.log" || exit 1
  mv "$OUT/steps.part" "$OUT/steps"
else
  echo "$STEPS" > "$OUT/steps"
fi
if [ -n "${STEPS_SET:-}" ]; then  # fixed counts replace what STEPS gave those runs
  names=""; for item in $TRAINED; do name=${item%%/*}; names="$names ${name%%:*}"; done
  python3 scripts/choose_steps.py --fix "$OUT/steps" "$names" $STEPS_SET || exit 1
fi
echo "steps: $(cat "$OUT/steps")"
STOP_AT=${DEADLINE:-$(( $(date +%s) + TRAIN_MINUTES * 60 ))}
steps_of() {  # VARIANT@SIZE -> its steps: OUT/steps holds one count for all, or "VARIANT@SIZE STEPS" lines
  local file=$OUT/steps
  if [ "$(wc -l < "$file")" -le 1 ] && [[ $(cat "$file") =~ ^[0-9]+$ ]]; then cat "$file"
  else awk -v run="$1" '$1 == run { print $2 }' "$file"; fi
}
export -f steps_of
export DATA INCEPTION SHIPPED BATCH SNAPSHOTS STOP_AT SNAP_N SNAP_SWEEP EVAL_N SWEEP STORAGE COMPARE TOKENIZER
export PARAPHRASES TRAIN_FLAGS EVAL_FLAGS RESCORE DEVICE OUT NGPU INIT OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1

evaluate() {  # CHECKPOINTS VARIANT OUTFILE [flags...]: one judge (OUT/judge) scores everything
  local folder=$1 variant=$2 out=$3; shift 3
  python3 -m maskmamba.eval generator --data "$DATA" --checkpoints "$folder" --variants "$variant" \
    --tokenizer "$TOKENIZER" --inception "$INCEPTION" --device "$DEVICE" --paraphrases "$PARAPHRASES" \
    --work "$OUT/judge" --out "$out" $EVAL_FLAGS "$@"
}
export -f evaluate

# The judge and every evaluation read INCEPTION and DATA's image shards, which a lease may carry in later device
# calls than the one that starts this script: wait for them, unpacking whatever has landed of the lease's inputs
# (scripts/lease_inputs.py, when DATA is its ROOT/data) every 5 s, so that a call that forgets the unpack costs nothing
inputs_ready() {
  local root; root=$(dirname "$DATA")
  until [ -f "$INCEPTION" ] && compgen -G "$DATA/train-*.safetensors" > /dev/null; do
    [ "$(basename "$DATA")" = data ] && [ -d "$root/L1" ] && python3 scripts/lease_inputs.py unpack --root "$root" \
      >> "$OUT/logs/inputs.log" 2>&1
    sleep 5
  done
}
export -f inputs_ready

# the judge and the real features, once, beside the first trainings; evaluations wait for OUT/judge/ready
rm -f "$OUT/judge/failed"
( inputs_ready
  [ -f "$OUT/judge/ready" ] || { CUDA_VISIBLE_DEVICES=$(( JUDGE_GPU % NGPU )) evaluate "$OUT" "" "$OUT/eval/judge.json" --plots "$OUT/eval" \
    > "$OUT/logs/judge.log" 2>&1 && touch "$OUT/judge/ready" || touch "$OUT/judge/failed"; } ) &

judge_ready() {  # waits for OUT/judge and the evaluations' inputs; fails when the judge could not be trained
  until [ -f "$OUT/judge/ready" ]; do [ -f "$OUT/judge/failed" ] && return 1; sleep 5; done
  inputs_ready
}
export -f judge_ready

full_evaluation() {  # NAME VARIANT: the full evaluation of OUT/pack/NAME (and its RESCORE); the judge is ready
  local name=$1 variant=$2
  local shipped=""; [[ ",$SHIPPED," == *",$variant,"* ]] && shipped=$variant
  local scored=(--n "$EVAL_N" --sweep "$SWEEP" --sweep-n "$SNAP_N" --storage "$STORAGE" --shipped "$shipped")  # full and rescore alike
  if [ ! -f "$OUT/eval/full/$name.json" ]; then
    evaluate "$OUT/pack/$name" "$variant" "$OUT/eval/full/$name.json.part" "${scored[@]}" \
      --compare-storage "$COMPARE" --write-default-cfg --curve-n "$SNAP_N" \
      --plots "$OUT/eval/full/$name" >> "$OUT/logs/$name.eval.log" 2>&1 \
      && mv "$OUT/eval/full/$name.json.part" "$OUT/eval/full/$name.json"
  fi
  if [ -n "$RESCORE" ] && [ ! -f "$OUT/eval/rescore/$name.json" ]; then
    mkdir -p "$OUT/eval/rescore"
    evaluate "$OUT/pack/$name" "$variant" "$OUT/eval/rescore/$name.json.part" "${scored[@]}" --steps-curve "" $RESCORE \
      >> "$OUT/logs/$name.eval.log" 2>&1 && mv "$OUT/eval/rescore/$name.json.part" "$OUT/eval/rescore/$name.json"
  fi
}
export -f full_evaluation

score_one() {  # NAME VARIANT GPU: INIT/VARIANT scored in full as it is, one such run at a time on each GPU
  local name=$1 variant=$2
  judge_ready || return 1  # INIT may come later than the first call
  [ -d "$INIT/$variant" ] || { echo "score run $name: no $INIT/$variant" >> "$OUT/logs/$name.eval.log"; return 1; }
  mkdir -p "$OUT/pack/$name" && rm -rf "$OUT/pack/$name/$variant" && cp -r "$INIT/$variant" "$OUT/pack/$name/"
  if command -v flock > /dev/null; then flock "$OUT/logs/score-gpu$3.lock" bash -c 'full_evaluation "$0" "$1"' "$name" "$variant"
  else full_evaluation "$name" "$variant"; fi
}
export -f score_one

run_one() {  # VARIANT@SIZE[:full|:score][/GPU]; xargs sets SLOT, so unpinned runs hold PARALLEL per GPU at most
  local item=${1%%/*} gpu=$SLOT name variant size kind
  [[ $1 == */* ]] && gpu=${1##*/}
  name=${item%%:*} variant=${item%%@*} size=${name#*@} kind=${item#"$name"}
  [ "$DEVICE" = cuda ] && export CUDA_VISIBLE_DEVICES=$(( ${gpu%%+*} % NGPU ))  # evaluations: the first GPU
  if [ "$kind" = ":score" ]; then
    score_one "$name" "$variant" "${gpu%%+*}"
    return
  fi
  local steps init=(); steps=$(steps_of "$name")
  [ -n "$INIT" ] && init=(--init "$INIT/$variant")
  [ -n "$steps" ] || { echo "no steps for $name in $OUT/steps" >> "$OUT/logs/$name.log"; return 1; }
  local minutes; minutes=$(awk -v left=$(( STOP_AT - $(date +%s) )) 'BEGIN { m = left / 60; print (m < 1 ? 1 : m) }')
  CUDA_VISIBLE_DEVICES= scripts/launch_train.sh "$gpu" --variant "$variant" --size "$size" --data "$DATA" --out "$OUT/$name" \
    --steps "$steps" --snapshot-every $(( steps / SNAPSHOTS )) --eval-every $(( steps / 20 > 0 ? steps / 20 : 1 )) \
    --minutes "$minutes" --device "$DEVICE" --export "$OUT/pack/$name/$variant" --storage fp32,int8,int4 --time-schedule "${init[@]}" $TRAIN_FLAGS \
    >> "$OUT/logs/$name.log" 2>&1
  judge_ready || return 1
  [ "$kind" = ":full" ] && full_evaluation "$name" "$variant"
  mkdir -p "$OUT/eval/$name"
  for snap in "$OUT/$name"/snapshots/*/; do
    [ -d "$snap" ] || continue
    local step; step=$(basename "$snap")
    [ -f "$OUT/eval/$name/$step.json" ] || { evaluate "$snap" "$variant" "$OUT/eval/$name/$step.part" --n "$SNAP_N" \
      --sweep "$SNAP_SWEEP" --sweep-n "$SNAP_N" --steps-curve "" --plots "$OUT/eval/$name/plots" \
      >> "$OUT/logs/$name.eval.log" 2>&1 && mv "$OUT/eval/$name/$step.part" "$OUT/eval/$name/$step.json"; }
  done
}
export -f run_one
printf '%s\n' $RUNS | xargs -P $(( PARALLEL * NGPU )) --process-slot-var=SLOT -L1 bash -c 'run_one "$0"'
wait

python3 -m maskmamba.eval scaling --runs "$OUT" --out "$OUT/scaling.json" --plots "$OUT" > "$OUT/logs/collect.log" 2>&1
python3 -m maskmamba.eval merge --replace --out "$OUT/generators.json" --plots "$OUT" "$OUT"/eval/full/*.json >> "$OUT/logs/collect.log" 2>&1
touch "$OUT/done"
