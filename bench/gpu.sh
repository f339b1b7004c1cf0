#!/usr/bin/env bash
# The training check on one H100/H200 (under 200 s), from the repository root; results in $OUT (bench/README.md):
#   OUT=/some/folder bash bench/gpu.sh        # ASSETS (default ../assets): vocab.txt and minilm/
# 1. training throughput of our step (fp32, tf32, bf16, bf16 with 4 loader workers) against the reference step on a
#    bert-base-shaped encoder (python -m bench.run); 2. EmoBank quality of the default recipe in fp32, bf16 and fp16;
# 3. with the time left, bf16 with and without torch.compile, to $OUT/compile/.
# A CPU test: DEVICE=cpu ENCODER=minilm VARIANTS=fp32 COMPILE_VARIANTS=fp32 with small SIZES and QUALITY_BUDGET.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT="${OUT:-bench/gpu-out}"
ASSETS="${ASSETS:-../assets}"
BUDGET_S="${BUDGET_S:-195}"
DEVICE="${DEVICE:-cuda}"
ENCODER="${ENCODER:-bert-base}"
SIZES="${SIZES:---training_batches 10 --rounds 3 --gemm_size 8192}"
VARIANTS="${VARIANTS:-fp32 tf32 bf16 bf16+workers4}"
COMPILE_VARIANTS="${COMPILE_VARIANTS:-bf16 bf16+compile}"
QUALITY_BUDGET="${QUALITY_BUDGET:-}"  # empty: the full mode's 3 epochs
SPEED_S="${SPEED_S:-95}"  # part 1's limit
start=$SECONDS
mkdir -p "$OUT/compile"
elapsed() { echo $((SECONDS - start)); }
bench() {  # bench SECONDS RESULTS_DIR run.py-flags...: one bench.run, stopped after SECONDS
    local limit=$1 dir=$2
    shift 2
    timeout "$limit" python -m bench.run --device "$DEVICE" --encoder "$ENCODER" --vocab_file "$ASSETS/vocab.txt" \
        $SIZES --no_quality --results "$dir/results.json" --markdown "$dir/RESULTS.md" "$@"
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.csv"
cp bench/results.json bench/RESULTS.md "$OUT/"
cp bench/results.json bench/RESULTS.md "$OUT/compile/"

echo "[gpu.sh] part 1: training throughput"
bench "$SPEED_S" "$OUT" --no_precision --variants $VARIANTS 2>&1 | tee "$OUT/speed.log"
echo "[gpu.sh] part 1 exit ${PIPESTATUS[0]} at $(elapsed) s"

emobank="$(realpath data/emobank.csv)"
if [ ! -d "$ASSETS/minilm" ]; then
    echo "[gpu.sh] part 2 skipped: $ASSETS/minilm missing"
else
    echo "[gpu.sh] part 2: EmoBank quality in fp32 / bf16 / fp16 ($emobank)"
    bench $((BUDGET_S - 25 - $(elapsed))) "$OUT" --no_training \
        --quality_flags "--model_name_or_path $(realpath "$ASSETS/minilm") --data_file $emobank $QUALITY_BUDGET" \
        2>&1 | tee "$OUT/precision.log"
    echo "[gpu.sh] part 2 exit ${PIPESTATUS[0]} at $(elapsed) s"
fi

left=$((BUDGET_S - $(elapsed)))
if [ "$left" -gt 20 ]; then
    echo "[gpu.sh] part 3: torch.compile, ${left} s left"
    bench "$left" "$OUT/compile" --no_precision --variants $COMPILE_VARIANTS 2>&1 | tee "$OUT/compile/speed.log"
    echo "[gpu.sh] part 3 exit ${PIPESTATUS[0]} at $(elapsed) s"
fi
