#!/usr/bin/env bash
# Lyrics quality trials on one GPU (issue 16): every bench/lyrics.py trial, PARALLEL train.py runs sharing the GPU,
# the whole run inside BUDGET_S seconds (trials still running then are stopped and reported as such).
#
#   cd <worktree> && OUT=<results folder> bash bench/lyrics_gpu.sh
#
# Reads ASSETS/minilm (the all-MiniLM-L6-v2 folder) and ASSETS/billboard_bow.csv; ASSETS defaults to ../assets (the
# device machine's .device/assets next to .device/wt16). Writes lyrics.json, lyrics.md, songs.csv and logs/ to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
ASSETS="${ASSETS:-../assets}"
OUT="${OUT:-lyrics-gpu-results}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
# TRAIN_FLAGS: TF32 matrix products on the GPU (fp32 weights and optimizer, as on CPU).
# TRIALS: names of bench/lyrics.py trials to run (default: every trial, in its order).
if [ -n "${TRIALS:-}" ]; then SELECTION="--trials $TRIALS"; else SELECTION="--all_trials"; fi
python bench/lyrics.py --data_file "$ASSETS/billboard_bow.csv" $SELECTION --out "$OUT" \
  --parallel "${PARALLEL:-6}" --budget_s "${BUDGET_S:-225}" --reserve_s "${RESERVE_S:-35}" \
  --min_trial_s "${MIN_TRIAL_S:-45}" -- --model_name_or_path "$ASSETS/minilm" ${TRAIN_FLAGS---tf32 True}
