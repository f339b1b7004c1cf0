"""
Quality: EmoBank test metrics of `head_only`, `lora` and `full` fine-tuning of the packaged all-MiniLM-L6-v2, each
trained by train.py under the same budget (epochs over the same training sentences, batch 32), with the recipe's
settings for that mode (bench/RECIPE.md).
"""

import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Per-mode settings from bench/RECIPE.md: head_only reads mean-pooled vectors (the frozen MiniLM's [CLS] is a poor
# feature), full fine-tuning takes lr 1e-4; lora is train.py's default.
MODE_FLAGS = {
    "head_only": "--finetuning_mode head_only --learning_rate 1e-3 --pooling mean",
    "lora": "--finetuning_mode lora",
    "full": "--finetuning_mode full --learning_rate 1e-4",
}
RIDGE_REFERENCE = {"pearson": 0.630, "mse": 0.00449}  # frozen mean-pooled MiniLM + ridge (emobank README)
METRICS = ("mse", "pearson", "spearman", "r2")


def train_and_test(mode: str, budget_flags: list[str], output_dir: Path) -> dict:
    """Run train.py for one mode; its validation and test metrics, train seconds and wall seconds."""
    command = [sys.executable, "train.py", *shlex.split(MODE_FLAGS[mode]), *budget_flags,
               "--output_dir", str(output_dir), "--disable_tqdm", "True", "--report_to", "none"]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"train.py {mode} failed:\n{completed.stderr[-3000:]}")
    results = json.loads((output_dir / "all_results.json").read_text())
    return {
        "flags": MODE_FLAGS[mode],
        "train_s": results["train_runtime"],
        "wall_s": wall,
        "validation": {metric: results[f"eval_{metric}"] for metric in METRICS},
        "test": {metric: results[f"test_{metric}"] for metric in METRICS},
    }


def measure_quality(budget_flags: list[str], log=print) -> dict:
    """Train and test every mode under `budget_flags`; the ridge reference alongside."""
    modes = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as root:
        for mode in MODE_FLAGS:
            log(f"quality: training {mode}")
            modes[mode] = train_and_test(mode, budget_flags, Path(root) / mode)
            log(f"quality: {mode} test r {modes[mode]['test']['pearson']:.3f}")
    return {"budget_flags": " ".join(budget_flags), "modes": modes, "ridge_reference": RIDGE_REFERENCE}
