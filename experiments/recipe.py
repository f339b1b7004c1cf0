"""
Training-recipe trials: run train.py once per named trial and tabulate validation and test metrics.

    python -m experiments.recipe --trials lora_ref lora_default --out recipe_trials.md [-- extra train.py flags]

Each row gives the settings, the training and wall time of the whole run, the validation metrics of the best
checkpoint (what defaults are picked from) and the test metrics (what is reported); the command and the machine line
are written above the table.
"""

import argparse
import shlex
import tempfile
from pathlib import Path

from bench import harness

TRIALS = {
    # The reference notebook's recipe as written: CLS pooling, LoRA r=4 on query/value of the last 4 layers, lr 2e-5.
    "lora_ref": "--learning_rate 2e-5 --head_learning_rate 2e-5 --init_head_bias_to_label_mean False "
    "--num_train_epochs 3",
    "lora_lr5e-4": "--learning_rate 5e-4 --head_learning_rate 5e-4 --init_head_bias_to_label_mean False "
    "--num_train_epochs 3",
    "lora_lr5e-4_bias": "--learning_rate 5e-4 --head_learning_rate 5e-4 --num_train_epochs 3",
    "lora_lr5e-4_head1e-3": "--learning_rate 5e-4 --head_learning_rate 1e-3 --num_train_epochs 3",
    "lora_lr1e-3_head1e-3": "--learning_rate 1e-3 --head_learning_rate 1e-3 --num_train_epochs 3",
    "lora_lr2e-3_head1e-3": "--learning_rate 2e-3 --head_learning_rate 1e-3 --num_train_epochs 3",
    "lora_lr1e-3_head3e-3": "--learning_rate 1e-3 --head_learning_rate 3e-3 --num_train_epochs 3",
    "lora_lr1e-3_mean": "--learning_rate 1e-3 --head_learning_rate 1e-3 --pooling mean --num_train_epochs 3",
    "lora_lr1e-3_6layers": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --num_train_epochs 3",
    "lora_lr1e-3_6layers_mean": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --pooling mean "
    "--num_train_epochs 3",
    "lora_lr1e-3_r16": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_r 16 --lora_alpha 32 "
    "--num_train_epochs 3",
    "lora_lr1e-3_6layers_r16": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 --lora_r 16 "
    "--lora_alpha 32 --num_train_epochs 3",
    "lora_lr1e-3_6layers_5ep": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 "
    "--num_train_epochs 5",
    "lora_lr1e-3_qkvd": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 "
    "--lora_target_modules query key value dense --num_train_epochs 3",
    "lora_lr1e-3_bs16": "--learning_rate 1e-3 --head_learning_rate 1e-3 --lora_num_layers 6 "
    "--per_device_train_batch_size 16 --num_train_epochs 3",
    "head_only_lr1e-3": "--finetuning_mode head_only --learning_rate 1e-3 --head_learning_rate 1e-3 "
    "--num_train_epochs 3",
    "head_only_lr1e-3_mean": "--finetuning_mode head_only --learning_rate 1e-3 --head_learning_rate 1e-3 "
    "--pooling mean --num_train_epochs 3",
    "full_lr5e-5": "--finetuning_mode full --learning_rate 5e-5 --head_learning_rate 1e-3 --num_train_epochs 3",
    "full_lr1e-4": "--finetuning_mode full --learning_rate 1e-4 --head_learning_rate 1e-3 --num_train_epochs 3",
}
COLUMNS = ("mse", "pearson")
HEADER = "| trial | flags | train s | wall s | val mse | val r | test mse | test r |\n" + "|---" * 8 + "|\n"


def run_trial(name: str, extra: list[str], output_root: Path) -> dict:
    """One train.py run of trial `name`: its all_results.json and wall seconds, or the last line of its error."""
    try:
        return {"name": name, **harness.run_train_py([*shlex.split(TRIALS[name]), *extra], output_root / name)}
    except RuntimeError as error:
        return {"name": name, "error": str(error).strip().splitlines()[-1]}


def format_row(result: dict) -> str:
    if "error" in result:
        return f"| {result['name']} | {TRIALS[result['name']]} | failed: {result['error']} |"
    cells = [
        f"{result[f'{split}_{metric}']:.4f}" if metric == "pearson" else f"{result[f'{split}_{metric}']:.5f}"
        for split in ("eval", "test")
        for metric in COLUMNS
    ]
    return (
        f"| {result['name']} | `{TRIALS[result['name']]}` | {result['train_runtime']:.0f} | {result['wall_s']:.0f} | "
        + " | ".join(cells)
        + " |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS), help="Trials to run.")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file the table is appended to.")
    help_ = "Where runs write (default: a new temporary folder)."
    parser.add_argument("--output_root", type=Path, default=None, help=help_)
    parser.add_argument("--label", default="", help="A sentence written above the table (e.g. the machine's state).")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="After --: flags added to every train.py run.")
    args = parser.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    output_root = args.output_root or Path(tempfile.mkdtemp(prefix="recipe-trials-"))
    command = harness.command_line("experiments.recipe", argv)
    with args.out.open("a") as table:
        table.write(f"\n{args.label}\nCommand: `{command}`. Machine: {harness.machine_line(harness.machine_info())}\n")
        table.write(f"Extra flags: `{' '.join(harness.portable_command(extra))}`\n\n{HEADER}")
        for name in args.trials:
            row = format_row(run_trial(name, extra, output_root))
            print(row, flush=True)
            table.write(row + "\n")
            table.flush()


if __name__ == "__main__":
    main()
