#!/usr/bin/env bash
# Catalogue scoring on one GPU, in about 180 s: (1) the host's share (chunking, padding, the engine's overlap of host
# work with a device stand-in), then bert-base-shaped speed (random weights) of ours bfloat16 (also in 1,024-song
# blocks, which leave no host work to overlap) / float16 / float32 against the naive per-chunk float32 pipeline and
# the same pipeline with batch_size=32, MFU against the GPU's bf16 dense peak, and a batch_tokens sweep; (2) MiniLM
# fine-tuned on EmoBank for one epoch on the GPU, then the EmoBank test quality of every precision (GPU
# float32/bfloat16/float16, CPU float32/bfloat16/int8).
#
#   OUT=/tmp/out ASSETS=../assets bash bench/gpu_scoring.sh      # from the repository root
#
# ASSETS holds vocab.txt (bert-base-uncased) and minilm/ (all-MiniLM-L6-v2); results go to $OUT (default bench/gpu).
# A CPU dry run with tiny sizes: DEVICE=cpu SONGS=4 SWEEP_SONGS=4 METHODS="naive-batch32 ours-bfloat16"
#   TRAIN_FLAGS="--max_steps 2" TIMEOUT_FACTOR=20 bash bench/gpu_scoring.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/gpu}
ASSETS=${ASSETS:-../assets}
DEVICE=${DEVICE:-cuda}
SONGS=${SONGS:-1024}
SWEEP_SONGS=${SWEEP_SONGS:-512}
METHODS=${METHODS:-}  # default: bench/scoring.py's list for the device
TRAIN_FLAGS=${TRAIN_FLAGS:---num_train_epochs 1}
T=${TIMEOUT_FACTOR:-1}  # the dry run on a slow CPU scales the time limits
mkdir -p "$OUT"
start=$SECONDS

echo "[gpu_scoring] speed: bert-base shape, $SONGS songs"
timeout $((120 * T)) python -m bench.scoring --device "$DEVICE" --encoder bert-base --vocab_file "$ASSETS/vocab.txt" \
  --songs "$SONGS" --rounds 3 --budget_s 75 --sweep_songs "$SWEEP_SONGS" --out "$OUT/speed" ${METHODS:+--methods $METHODS} \
  || echo "[gpu_scoring] speed step failed or timed out (exit $?)"
echo "[gpu_scoring] speed done at $((SECONDS - start)) s"

emobank=""
for candidate in data/emobank.csv ../../data/emobank.csv "$ASSETS/emobank.csv"; do
  if [ -f "$candidate" ]; then emobank=$candidate; break; fi
done
if [ -z "$emobank" ] || [ ! -d "$ASSETS/minilm" ]; then
  echo "[gpu_scoring] no EmoBank CSV or no $ASSETS/minilm: quality skipped"
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
