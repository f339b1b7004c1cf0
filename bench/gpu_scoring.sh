#!/usr/bin/env bash
# Catalogue scoring on one GPU (about 180 s), from the repository root; results in $OUT (bench/README.md):
#   OUT=gpu-out ASSETS=../assets bash bench/gpu_scoring.sh       # ASSETS: vocab.txt (bert-base-uncased) and minilm/
# 1. python -m bench.scoring on a bert-base-shaped encoder: host work, the GPU methods against the naive pipeline,
#    the batch_tokens sweep; 2. MiniLM fine-tuned on EmoBank for one epoch, then the quality of every precision.
# A CPU dry run: DEVICE=cpu SONGS=4 SWEEP_SONGS=4 METHODS="naive-batch32 ours-bfloat16" TRAIN_FLAGS="--max_steps 2"
#   TIMEOUT_FACTOR=20 bash bench/gpu_scoring.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/gpu}
ASSETS=${ASSETS:-../assets}
DEVICE=${DEVICE:-cuda}
SONGS=${SONGS:-1024}
SWEEP_SONGS=${SWEEP_SONGS:-512}
METHODS=${METHODS:-}  # default: bench.scoring's list for the device
TRAIN_FLAGS=${TRAIN_FLAGS:---num_train_epochs 1}
T=${TIMEOUT_FACTOR:-1}  # the dry run on a slow CPU scales the time limits
mkdir -p "$OUT"
start=$SECONDS

echo "[gpu_scoring] speed: bert-base shape, $SONGS songs"
timeout $((120 * T)) python -m bench.scoring --device "$DEVICE" --encoder bert-base --vocab_file "$ASSETS/vocab.txt" \
  --songs "$SONGS" --rounds 3 --budget_s 75 --sweep_songs "$SWEEP_SONGS" --out "$OUT/speed" ${METHODS:+--methods $METHODS} \
  || echo "[gpu_scoring] speed step failed or timed out (exit $?)"
echo "[gpu_scoring] speed done at $((SECONDS - start)) s"

emobank=data/emobank.csv
if [ ! -d "$ASSETS/minilm" ]; then
  echo "[gpu_scoring] no $ASSETS/minilm: quality skipped"
  exit 0
fi
echo "[gpu_scoring] quality: training MiniLM (LoRA, 1 epoch) on $emobank"
model=$(mktemp -d)/minilm
timeout $((50 * T)) python train.py --model_name_or_path "$ASSETS/minilm" --data_file "$emobank" --output_dir "$model" \
  $TRAIN_FLAGS --disable_tqdm True --report_to none > "$OUT/train.log" 2>&1 \
  || { echo "[gpu_scoring] training failed or timed out (exit $?); tail of $OUT/train.log:"; tail -5 "$OUT/train.log"; exit 0; }
cp "$model/test_results.json" "$OUT/train_test_results.json" 2>/dev/null
echo "[gpu_scoring] trained at $((SECONDS - start)) s; scoring EmoBank test in every precision"
timeout $((30 * T)) python -m bench.scoring --device "$DEVICE" --no_speed --quality_model "$model" --emobank "$emobank" \
  --out "$OUT/quality" || echo "[gpu_scoring] quality step failed or timed out (exit $?)"
echo "[gpu_scoring] done at $((SECONDS - start)) s"
