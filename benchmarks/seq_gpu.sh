#!/usr/bin/env bash
# The sequential protocol (ML-1M leave-one-out) at GPU length: runs side by side on one GPU, each
# trained for TRAIN_SECONDS (`sequential_protocol.py train --seconds`: a probe times a step, then
# the cosine schedule is stretched over as many steps as fit).
#
#   INPUTS=artifacts/seq_ml1m OUT=/tmp/seq TRAIN_SECONDS=360 bash benchmarks/seq_gpu.sh
#
# INPUTS is what `benchmarks/sequential_protocol.py prepare --dataset ml-1m --out DIR` wrote.
# Each run writes OUT/seq_NAME.json (its report, learning curve included) and OUT/seq_NAME.log
# (progress; the curve so far if a time limit cuts the run short). RUNS lists NAME=JSON pairs,
# each JSON merged over GPU_SEQ_CONFIG. A run whose NAME starts with "free" trains the free-Pin
# diagnostic instead (`train --free-pins`): RUNS='omni={} free={}'.
#
# GPU_SEQ_CONFIG is the README's CPU command (0.2954 / 0.1701 after 12,500 steps of 32 users, its
# curve still rising) with every Pin a candidate, which a GPU step embeds anyway. The CPU runs
# are bound by optimizer steps, so what a GPU adds is steps: the default RUNS trains 32 and 64
# users a step side by side, because what a step of either costs on a GPU is unmeasured (the
# 2026-11-27 H100 run, 256 users a step, 0.062 s a step alone, predates every fix since).
# The in-house SASRec passed the published 0.3159 after about 100 million next-action targets
# (160 epochs); a step of 32 users brings about 3,400, so that is 30,000 steps, or about 15,000
# of 64 users.
set -u
INPUTS=${INPUTS:-artifacts/seq_ml1m}
OUT=${OUT:-artifacts/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-360}
SCORE_EVERY=${SCORE_EVERY:-500}
# No loss chunks: memory is plentiful and launches are not free.
GPU_SEQ_CONFIG='{"user_batch_size": 32, "pair_batch_size": 128, "feature_batch_size": 64, "random_negatives": 256,
  "max_neighbors_per_subgraph": 6, "id_buckets": 16384, "sequence_windows": "random", "seq_layers": 2,
  "dropout": 0.1, "id_residual": true, "seq_max_len": 200, "pin_candidates": "all", "loss_chunk_size": null,
  "deterministic": false}'
RUNS=${RUNS:-'u32={"user_batch_size": 32} u64={"user_batch_size": 64}'}
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
