#!/usr/bin/env bash
# Issue 13's GPU check, about 200 s on one H100/H200, run from the repository root:
#
#   OUT=/some/folder ASSETS=../assets bash bench/gpu.sh
#
# 1. Training throughput: our step (fp32, tf32, bf16, bf16 with 4 loader workers) against the reference notebook's
#    (fp32, every chunk padded to 512, batch 32, bert-base dropouts) on a bert-base-shaped random-weight encoder;
#    MFU against the GPU's bf16 dense peak; the projected wall time of the reference run (24k songs, 20 epochs);
#    then EmoBank quality of the default MiniLM recipe in fp32, bf16 and fp16 (same seed and budget, the three
#    trained at once). Written to $OUT/results.json and $OUT/RESULTS.md.
# 2. With the time left: bf16 with and without torch.compile (compilation timed as warm-up), to $OUT/compile/.
#
# ASSETS holds vocab.txt (bert-base-uncased's WordPiece vocabulary) and minilm/ (all-MiniLM-L6-v2).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-bench/gpu-out}"
ASSETS="${ASSETS:-../assets}"
BUDGET_S="${BUDGET_S:-195}"
QUALITY_BUDGET="${QUALITY_BUDGET:-}"  # empty: the full mode's (3 epochs); tiny CPU tests pass a smaller one
SIZES="${SIZES:---training_batches 10 --rounds 3 --gemm_size 8192}"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu ENCODER=minilm and small SIZES/QUALITY_BUDGET: a test of this script
ENCODER="${ENCODER:-bert-base}"
VARIANTS="${VARIANTS:-fp32 tf32 bf16 bf16+workers4}"
COMPILE_VARIANTS="${COMPILE_VARIANTS:-bf16 bf16+compile}"
start=$SECONDS
mkdir -p "$OUT/compile"

emobank=""
for candidate in data/emobank.csv ../../data/emobank.csv ../shared/data/emobank/emobank.csv \
                 ../../shared/data/emobank/emobank.csv ../../../shared/data/emobank/emobank.csv; do
    if [ -f "$candidate" ]; then emobank="$(realpath "$candidate")"; break; fi
done
echo "[gpu.sh] EmoBank: ${emobank:-not found}; assets: $ASSETS; out: $OUT"
quality=(--no_quality --no_precision)
if ! python -c "import train" 2>"$OUT/import-train.log"; then
    echo "[gpu.sh] train.py does not import here, no quality runs: $(tail -1 "$OUT/import-train.log")"
elif [ -n "$emobank" ] && [ -d "$ASSETS/minilm" ]; then
    quality=(--no_quality --quality_flags "--model_name_or_path $(realpath "$ASSETS/minilm") --data_file $emobank $QUALITY_BUDGET")
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.csv"

cp bench/results.json "$OUT/results.json"
timeout $((BUDGET_S - 60)) python bench/run.py --device "$DEVICE" --encoder "$ENCODER" \
    --vocab_file "$ASSETS/vocab.txt" --no_inference $SIZES --variants $VARIANTS \
    "${quality[@]}" --results "$OUT/results.json" --markdown "$OUT/RESULTS.md" 2>&1 | tee "$OUT/run.log"
echo "[gpu.sh] part 1 exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"

left=$((BUDGET_S - (SECONDS - start)))
if [ "$left" -gt 30 ]; then
    cp bench/results.json "$OUT/compile/results.json"
    timeout "$left" python bench/run.py --device "$DEVICE" --encoder "$ENCODER" --vocab_file "$ASSETS/vocab.txt" \
        --no_inference --no_quality --no_precision $SIZES \
        --variants $COMPILE_VARIANTS --results "$OUT/compile/results.json" \
        --markdown "$OUT/compile/RESULTS.md" 2>&1 | tee "$OUT/compile/run.log"
    echo "[gpu.sh] part 2 (torch.compile) exit ${PIPESTATUS[0]} after $((SECONDS - start)) s of ${left} s left"
fi
