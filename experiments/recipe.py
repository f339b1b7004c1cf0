"""
Training-recipe trials: run train.py once per named trial and tabulate validation and test metrics.

    python -m experiments.recipe --trials lora_ref lora_default --out recipe_trials.md [-- extra train.py flags]

Each row gives the settings, the wall time of the whole run, the validation metrics of the best checkpoint (what
defaults are picked from) and the test metrics (what is reported), plus the command that reproduces it.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TRIALS = {
    # The reference notebook's recipe as written: CLS pooling, LoRA r=4 on query/value of the last 4 layers, lr 2e-5.
    "lora_ref": "--learning_rate 2e-5 --head_learning_rate 2e-5 --init_head_bias_to_label_mean False --num_train_epochs 3",
    "lora_lr5e-4": "--learning_rate 5e-4 --head_learning_rate 5e-4 --init_head_bias_to_label_mean False --num_train_epochs 3",
    "lora_lr5e-4_bias": "--learning_rate 5e-4 --head_learning_rate 5e-4 --num_train_epochs 3",
    "lora_lr5e-4_head1e-3": "--learning_rate 5e-4 --head_learning_rate 1e-3 --num_train_epochs 3",
    "lora_lr1e-3_head1e-3": "--learning_rate 1e-3 --head_learning_rate 1e-3 --num_train_epochs 3",
    "lora_lr2e-3_head1e-3": "--learning_rate 2e-3 --head_learning_rate 1e-3 --num_train_epochs 3",
    "lora_lr1e-3_head3e-3": "--learning_rate 1e-3 --head_learning_rate 3e-3 --num_train_epochs 3",
    "lora_lr1e-3_mean": "--learning_rate 1e-3 --head_learning_rate 1e-3 --pooling mean --num_train_epochs 3",
    "lora_lr1e-3_6layers": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --num_train_epochs 3",
    "lora_lr1e-3_6layers_mean": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --pooling mean --num_train_epochs 3",
    "lora_lr1e-3_r16": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_r 16 --lora_alpha 32 --num_train_epochs 3",
    "lora_lr1e-3_6layers_r16": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --lora_r 16 --lora_alpha 32 --num_train_epochs 3",
    "lora_lr1e-3_6layers_5ep": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --num_train_epochs 5",
    "lora_lr1e-3_qkvd": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --lora_target_modules query key value dense --num_train_epochs 3",
    "lora_lr1e-3_bs16": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --per_device_train_batch_size 16 --num_train_epochs 3",
    "head_only_lr1e-3": "--finetuning_mode head_only --learning_rate 1e-3 --head_learning_rate 1e-3 --num_train_epochs 3",
    "head_only_lr1e-3_mean": "--finetuning_mode head_only --learning_rate 1e-3 --head_learning_rate 1e-3 --pooling mean --num_train_epochs 3",
    "full_lr5e-5": "--finetuning_mode full --learning_rate 5e-5 --head_learning_rate 1e-3 --num_train_epochs 3",
    "full_lr1e-4": "--finetuning_mode full --learning_rate 1e-4 --head_learning_rate 1e-3 --num_train_epochs 3",
}
COLUMNS = ("mse", "pearson")


def run_trial(name: str, extra: list[str], output_root: Path) -> dict:
    output_dir = output_root / name
    command = [
        sys.executable,
        "train.py",
        *shlex.split(TRIALS[name]),
        *extra,
        "--output_dir",
        str(output_dir),
        "--disable_tqdm",
        "True",
    ]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        return {"name": name, "error": completed.stderr.strip().splitlines()[-1], "wall": wall}
    results = json.loads((output_dir / "all_results.json").read_text())
    return {"name": name, "wall": wall, "train_runtime": results["train_runtime"], **results}


def format_row(result: dict) -> str:
    if "error" in result:
        return f"| {result['name']} | {TRIALS[result['name']]} | failed: {result['error']} |"
    cells = [
        f"{result[f'{split}_{metric}']:.4f}" if metric == "pearson" else f"{result[f'{split}_{metric}']:.5f}"
        for split in ("eval", "test")
        for metric in COLUMNS
    ]
    return (
        f"| {result['name']} | `{TRIALS[result['name']]}` | {result['train_runtime']:.0f} | {result['wall']:.0f} | "
        + " | ".join(cells)
        + " |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS), help="Trials to run.")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file the table is appended to.")
    parser.add_argument("--output_root", type=Path, default=Path("/tmp/recipe-trials"), help="Where runs write.")
    parser.add_argument("--label", default="", help="Written above the table (machine, date).")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="After --: flags added to every train.py run.")
    args = parser.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    with args.out.open("a") as table:
        table.write(f"\n{args.label}\nExtra flags: `{' '.join(extra)}`\n\n")
        table.write(
            "| trial | flags | train s | wall s | val mse | val r | test mse | test r |\n|---|---|---|---|---|---|---|---|\n"
        )
        for name in args.trials:
            row = format_row(run_trial(name, extra, args.output_root))
            print(row, flush=True)
            table.write(row + "\n")
            table.flush()


if __name__ == "__main__":
    main()
