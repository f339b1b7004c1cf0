#!/usr/bin/env bash
# The lyrics benchmark on a GPU machine: bench/lyrics.py's fine-tuning trials, three split seeds, on both song sets.
#
#   cd <checkout> && ASSETS=<folder> OUT=<results folder> bash bench/lyrics_gpu.sh
#
# Reads ASSETS/billboard_lyrics.csv, ASSETS/billboard_bow.csv (the team's research sets, never in this repository)
# and ASSETS/encoder (an encoder folder, e.g. the packaged MiniLM copied there). TRIALS picks bench/lyrics.py trials.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
ASSETS="${ASSETS:-../assets}"
OUT="${OUT:-lyrics-gpu-results}"
TRIALS="${TRIALS:-songs songs_lora_warm lora_default lora_128_tokens}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
python -m bench.lyrics --data_file "$ASSETS/billboard_lyrics.csv" --text_column lyrics --label_column valence \
  --group_column artist --trials $TRIALS --tag gpu --out "$OUT" -- --model_name_or_path "$ASSETS/encoder" --tf32 True
python -m bench.lyrics --data_file "$ASSETS/billboard_bow.csv" --trials $TRIALS --tag gpu --out "$OUT" \
  -- --model_name_or_path "$ASSETS/encoder" --tf32 True
