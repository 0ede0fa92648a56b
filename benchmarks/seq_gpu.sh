#!/usr/bin/env bash
# The sequential protocol (ML-1M leave-one-out) at GPU length: runs side by side on one GPU, each
# trained for TRAIN_SECONDS (`sequential_protocol.py train --seconds`). One run alone keeps an H100
# about half busy (0.062 s a step); six side by side took 0.22 s a step each, 1.7 times one run's
# steps in all. So runs side by side buy seeds cheaply, and length wants few of them.
#
#   INPUTS=artifacts/seq_ml1m OUT=/tmp/seq TRAIN_SECONDS=360 bash benchmarks/seq_gpu.sh
#
# INPUTS is what `benchmarks/sequential_protocol.py prepare --dataset ml-1m --out DIR` wrote.
# Each run writes OUT/seq_NAME.json (its report, learning curve included) and OUT/seq_NAME.log
# (progress; the curve so far if a time limit cuts the run short). RUNS lists NAME=JSON pairs,
# each JSON merged over GPU_SEQ_CONFIG. The H100 runs in docs/sequential_protocol.md predate
# future_window 1: RUNS='before={"future_window": 16}'. A free vector per Pin, side by side:
# RUNS='plain={} resid={"id_residual": true}'. A run whose NAME starts with "free" trains the
# free-Pin diagnostic instead (`train --free-pins`): RUNS='omni={} free={}'.
set -u
INPUTS=${INPUTS:-artifacts/seq_ml1m}
OUT=${OUT:-artifacts/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-360}
SCORE_EVERY=${SCORE_EVERY:-500}
# Sequences of 200 with every position a query (SASRec's dense objective), an exact softmax over
# all 3,883 Pins in one block (no chunks: memory is plentiful and launches are not free).
GPU_SEQ_CONFIG='{"seq_max_len": 200, "user_batch_size": 256, "seq_width": 256, "seq_layers": 2,
  "pin_candidates": "all", "loss_chunk_size": null, "dropout": 0.2, "id_buckets": 16384,
  "sequence_windows": "random", "deterministic": false}'
RUNS=${RUNS:-'seed0={"seed": 0} seed1={"seed": 1}'}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

pids=()
while read -r run; do
  name=${run%%=*}
  free=(); [[ $name == free* ]] && free=(--free-pins)
  timeout $((TRAIN_SECONDS * 2 + 120)) $PY benchmarks/sequential_protocol.py train --inputs "$INPUTS" \
    --device "$DEVICE" --seconds "$TRAIN_SECONDS" --score-every "$SCORE_EVERY" \
    --config "$GPU_SEQ_CONFIG" --config "${run#*=}" --out "$OUT/seq_$name.json" ${free[@]+"${free[@]}"} > /dev/null 2> "$OUT/seq_$name.log" &
  pids+=($!)
done < <(grep -o '[^ ]*={[^}]*}' <<< "$RUNS")
for pid in "${pids[@]}"; do wait "$pid"; done
for log in "$OUT"/seq_*.log; do
  name=$(basename "$log" .log)
  if [ -f "$OUT/$name.json" ]; then
    $PY -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[2], r['steps'], 'steps', r.get('omnisage', r.get('free_pins')), [round(p['hr_at_10'], 4) for p in r['curve']])" "$OUT/$name.json" "$name"
  else
    echo "$name: no report"; tail -3 "$log"
  fi
done
