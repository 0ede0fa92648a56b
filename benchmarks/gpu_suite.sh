#!/usr/bin/env bash
# Every GPU figure in one call, on a bare CUDA box that has torch, numpy, pandas, pyarrow and
# transformers but not this package's other dependencies (run from the repository root):
#
#   INPUTS=artifacts/gpu_inputs OUT=/tmp/gpu bash benchmarks/gpu_suite.sh
#
# INPUTS holds what the box cannot make itself: a day's training bundle (bundle/), the next
# day's engagements (next_day.parquet), the checkpoint config to train (ckpt/config.json) and
# the text encoder's config and tokenizer without its weights (minilm_arch/: throughput does
# not depend on weight values, so random ones of the same architecture stand in).
# With INPUTS/sequential/ (written here by `benchmarks/sequential_protocol.py prepare --dataset
# ml-1m --out DIR`), it also trains and scores the sequential protocol (`seq_gpu.sh`).
# Each step writes JSON under OUT; a failing step is logged and the others still run.
set -u
INPUTS=${INPUTS:-artifacts/gpu_inputs}
OUT=${OUT:-artifacts/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

step() {
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name"
  timeout "${STEP_TIMEOUT:-240}" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || tail -20 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$OUT/gpu.txt"
cat "$OUT/gpu.txt"

step model_throughput $PY benchmarks/model_throughput.py --device "$DEVICE" \
  --out "$OUT/model_throughput.json" --profile "$OUT/model_profile.txt"
step training_recall $PY benchmarks/training_recall.py --device "$DEVICE" --bundle "$INPUTS/bundle" \
  --next-day "$INPUTS/next_day.parquet" --config-from "$INPUTS/ckpt" --out "$OUT/training_recall.json"
step chunked_loss_memory $PY benchmarks/chunked_loss_memory.py --device "$DEVICE" --out "$OUT/chunked_loss_memory.json"

MODEL_DIR=$(mktemp -d)
cp -r "$INPUTS/minilm_arch/." "$MODEL_DIR"
$PY -c "import sys, transformers as t; t.AutoModel.from_config(t.AutoConfig.from_pretrained(sys.argv[1])).save_pretrained(sys.argv[1])" "$MODEL_DIR"
step text_encoder $PY benchmarks/text_encoder.py --model "$MODEL_DIR" --texts 5000 --batch-size 256 --out "$OUT/text_encoder.json"
if [ -d "$INPUTS/sequential" ]; then
  STEP_TIMEOUT=${SEQ_TIMEOUT:-540} step sequential_protocol env INPUTS="$INPUTS/sequential" OUT="$OUT" DEVICE="$DEVICE" PY="$PY" \
    bash benchmarks/seq_gpu.sh
fi
grep -h -A3 '"training_triplets_per_s"\|"inference_nodes_per_s"' "$OUT/model_throughput.json" | head -4
grep -h '"texts_per_s"' "$OUT/text_encoder.json" || true
