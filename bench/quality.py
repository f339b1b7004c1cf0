"""EmoBank test metrics of the fine-tuning modes of all-MiniLM-L6-v2 and of lora in mixed precision, each trained by
train.py under the same budget and seed, with the recipe's settings for that mode (experiments/RECIPE.md)."""

import shlex
import tempfile
import time
from pathlib import Path

from bench.report import start_train_py, train_py_results

# Per-mode settings from experiments/RECIPE.md: head_only reads mean-pooled vectors (the frozen MiniLM's [CLS] is a poor
# feature), full fine-tuning takes lr 1e-4; lora is train.py's default.
# Mixed precision: the Trainer's bf16 / fp16 autocast (fp16 with loss scaling; CUDA only).
MODE_FLAGS = {
    "head_only": "--finetuning_mode head_only --learning_rate 1e-3 --pooling mean",
    "lora": "--finetuning_mode lora",
    "full": "--finetuning_mode full --learning_rate 1e-4",
    "lora, bf16": "--finetuning_mode lora --bf16 True",
    "lora, fp16": "--finetuning_mode lora --fp16 True",
}
RIDGE_REFERENCE = {"pearson": 0.630, "mse": 0.00449}  # frozen mean-pooled MiniLM + ridge (emobank README)
METRICS = ("mse", "pearson", "spearman", "r2")


def measure_quality(budget_flags: list[str], modes: list[str], parallel: bool = False, log=print) -> dict:
    """Train and test every mode under `budget_flags`, one after the other, or all at once when `parallel` (their
    training seconds then overlap and are not comparable); the ridge reference alongside."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as root:
        running = {}
        for mode in modes:
            log(f"quality: training {mode}")
            output_dir = Path(root) / mode.replace(", ", "-")
            process = start_train_py([*shlex.split(MODE_FLAGS[mode]), *budget_flags], output_dir)
            running[mode] = (process, output_dir, time.perf_counter())
            if not parallel:
                results[mode] = finish(mode, *running.pop(mode), log)
        for mode, run in running.items():
            results[mode] = finish(mode, *run, log)
    return {
        "budget_flags": " ".join(budget_flags),
        "parallel": parallel,
        "modes": results,
        "ridge_reference": RIDGE_REFERENCE,
    }


def finish(mode: str, process, output_dir: Path, started: float, log=print) -> dict:
    """Wait for a mode's train.py run; its validation and test metrics, train and wall seconds."""
    results = train_py_results(process, output_dir)
    result = {
        "flags": MODE_FLAGS[mode],
        "train_s": results["train_runtime"],
        "wall_s": time.perf_counter() - started,
        "validation": {metric: results[f"eval_{metric}"] for metric in METRICS},
        "test": {metric: results[f"test_{metric}"] for metric in METRICS},
    }
    log(f"quality: {mode} test r {result['test']['pearson']:.3f}, MSE {result['test']['mse']:.5f}")
    return result
