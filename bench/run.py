"""Training throughput (our train.py step vs the reference notebook's pad-to-512 loop), MFU, and EmoBank quality of the
fine-tuning modes and of lora in mixed precision. Writes a run per device and encoder into bench/results.json (sections
a run skips are kept from the previous run) and its section of bench/RESULTS.md. Scoring speed (our engine against the
per-chunk `pipeline`) is bench/scoring.py's."""

import argparse
import json
import shlex
import tempfile
from pathlib import Path

import torch

from bench import harness
from bench.flops import bf16_dense_peak
from bench.models import ENCODERS, add_model_arguments, build_model, load_tokenizer
from bench.report import paragraphs, percent, spread, table, write_json, write_section
from bench.training import chunk_features, epoch_sample, measure_training, profile_training_step
from lyric_valence.fitting import prepare_for_finetuning

BENCH = Path(__file__).resolve().parent
log = harness.logger("bench")


POOL_SONGS = 1440  # about 1,640 chunks: one length-grouped megabatch (1,600) to draw the timed batches from
# Sizes of each mode; the command line overrides the first three.
PRESET_KEYS = ("training_batches", "rounds", "gemm_size", "gemm_seconds", "quality_budget")
PRESETS = {
    "quick": (1, 3, 2048, 1.0, "--num_train_epochs 1 --max_train_songs 1024 --max_eval_songs 200"),
    "full": (5, 5, 4096, 3.0, "--num_train_epochs 3"),
}
# Our training step's variants (train.py flags), and those each device times by default. transformers' default
# optimizer is already the fused AdamW (`adamw_torch_fused`), so every variant runs it.
VARIANT_FLAGS = {
    "fp32": "",
    "tf32": "--tf32 True",
    "bf16": "--bf16 True",
    "bf16+workers4": "--bf16 True --dataloader_num_workers 4 --dataloader_pin_memory True",
    "bf16+compile": "--bf16 True --torch_compile True",
}
# bf16 on a CPU when asked (`--variants fp32 bf16`): only one with native bf16 (AVX512-BF16, AMX) runs it fast.
DEFAULT_VARIANTS = {"cpu": ["fp32"], "cuda": ["fp32", "tf32", "bf16", "bf16+workers4", "bf16+compile"]}
# EmoBank quality runs (`measure_quality`): the fine-tuning modes, and lora in each precision the device runs.
QUALITY_SECTIONS = {
    "quality": {"cpu": ["head_only", "lora", "full"], "cuda": ["head_only", "lora", "full"]},
    "precision": {"cpu": ["lora", "lora, bf16"], "cuda": ["lora", "lora, bf16", "lora, fp16"]},
}
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
RIDGE_REFERENCE = {"pearson": 0.630, "mse": 0.00449}  # of the emobank README
RIDGE_NAME = "frozen mean-pooled MiniLM + ridge (reference)"
METRICS = ("mse", "pearson", "spearman", "r2")
REFERENCE_RUN = {"songs": 24_000, "epochs": 20, "notebook_minutes": 185}  # the notebook's run on a Colab GPU


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Small sizes and a small quality budget.")
    add_model_arguments(parser)
    parser.add_argument("--no_quality", action="store_true", help="Skip the EmoBank quality runs of the modes.")
    help_ = "Skip the EmoBank quality runs of lora in fp32 and mixed precision."
    parser.add_argument("--no_precision", action="store_true", help=help_)
    help_ = "train.py flags added to every quality run, e.g. '--model_name_or_path DIR --data_file emobank.csv' on a "
    parser.add_argument("--quality_flags", default="", help=help_ + "machine without the defaults.")
    help_ = "Skip the training throughput: only the quality runs. Sections a run skips are kept from the previous run "
    parser.add_argument("--no_training", action="store_true", help=help_ + "of the same device and encoder.")
    help_ = f"Our training step's variants to time (default: the device's: {DEFAULT_VARIANTS})."
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANT_FLAGS, help=help_)
    help_ = "Batches of 32 chunks, of the 50 of a length-grouped megabatch, that each training round times "
    parser.add_argument("--training_batches", type=int, default=None, help=help_ + "(default: the mode's).")
    parser.add_argument("--rounds", type=int, default=None, help="Repetitions of each timing (default: the mode's).")
    parser.add_argument("--gemm_size", type=int, default=None, help="Side of the GEMM peak's square matrices.")
    help_ = "JSON file the run is merged into (default: bench/results.json)."
    parser.add_argument("--results", type=Path, default=BENCH / "results.json", help=help_)
    help_ = "Markdown file whose section of this device and encoder is rewritten (default: bench/RESULTS.md)."
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS.md", help=help_)
    args = parser.parse_args(argv)
    preset = zip(PRESET_KEYS, PRESETS["quick" if args.quick else "full"], strict=True)
    given = {name: value for name, value in vars(args).items() if value is not None}  # on the command line
    args.settings = {name: given.get(name, value) for name, value in preset}
    return args


def run_benchmarks(args: argparse.Namespace, device: torch.device) -> dict:
    """Every timed section asked for, in one process; the run's record for results.json."""
    settings = args.settings
    tokenizer = load_tokenizer(args.encoder, args.vocab_file)
    pool = harness.make_catalogue(tokenizer.get_vocab(), POOL_SONGS, seed=0)
    pool_chunks = chunk_features(tokenizer, pool.texts, pool.labels)
    features = epoch_sample(pool_chunks, settings["training_batches"])

    def model_factory(reference: bool = False):
        """A fresh model, LoRA-wrapped as train.py's default mode: ours, or the reference's."""
        return prepare_for_finetuning(build_model(args.encoder, tokenizer.vocab_size, reference=reference), "lora")

    variants = {name: VARIANT_FLAGS[name] for name in args.variants or DEFAULT_VARIANTS[device.type]}
    run = {
        "mode": "quick" if args.quick else "full",
        "command": harness.command_line("bench.run"),
        "encoder_description": ENCODERS[args.encoder],
        "machine": harness.machine_info(device),
        "settings": settings,
        "inputs": {
            "training_pool_songs": harness.length_summary(pool.tokens),
            "timed_training_chunks": harness.length_summary([len(feature["input_ids"]) for feature in features]),
        },
    }
    if args.no_training:
        return run
    training = measure_training(model_factory, tokenizer, features, device, variants, settings, log)
    training["bf16_dense_peak_flops_per_s"] = bf16_dense_peak(device)
    best = training["variants"][training["best"]]
    chunks = REFERENCE_RUN["songs"] * len(pool_chunks) / POOL_SONGS * REFERENCE_RUN["epochs"]
    training["projection"] = {
        **REFERENCE_RUN,
        "chunks_per_song": len(pool_chunks) / POOL_SONGS,
        "variant": training["best"],
        "ours_minutes": (chunks / best["chunks_per_s"]["median"] + best["warmup_s"]) / 60,
        "reference_minutes": chunks / training["reference"]["chunks_per_s"]["median"] / 60,
    }
    log("profiling our training step")
    training["profile"] = profile_training_step(model_factory, tokenizer, features, device, best["flags"])
    run["training"] = training
    return run


def measure_quality(budget_flags: list[str], modes: list[str], parallel: bool = False) -> dict:
    """EmoBank test metrics of each mode trained by train.py under `budget_flags`, the same seed and the recipe's
    settings for the mode (experiments/RECIPE.md), one after the other or all at once when `parallel` (their training
    seconds then overlap and are not comparable); the ridge reference alongside."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as root:
        running = {}
        for mode in modes:
            log(f"quality: training {mode}")
            output_dir = Path(root) / mode.replace(", ", "-")
            process = harness.start_train_py([*shlex.split(MODE_FLAGS[mode]), *budget_flags], output_dir)
            running[mode] = (process, output_dir)
            if not parallel:
                results[mode] = quality_result(mode, *running.pop(mode))
        for mode, run in running.items():
            results[mode] = quality_result(mode, *run)
    budget = shlex.join(harness.portable_command(budget_flags))
    return {"budget_flags": budget, "parallel": parallel, "modes": results, "ridge_reference": RIDGE_REFERENCE}


def quality_result(mode: str, process, output_dir: Path) -> dict:
    """Wait for a mode's train.py run; its validation and test metrics, train and wall seconds."""
    results = harness.train_py_results(process, output_dir)
    result = {"flags": MODE_FLAGS[mode], "train_s": results["train_runtime"], "wall_s": results["wall_s"]}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        result[split] = {metric: results[f"{prefix}_{metric}"] for metric in METRICS}
    log(f"quality: {mode} test r {result['test']['pearson']:.3f}, MSE {result['test']['mse']:.5f}")
    return result


def render_run(key: str, run: dict) -> str:
    """One run's section of RESULTS.md."""
    machine = run["machine"]
    where = machine.get("gpu", f"{machine['cpu']}, {machine['cpu_cores']} cores")

    def heading(section: str, title: str) -> str:
        kept = run.get("kept", {}).get(section)
        return paragraphs(f"### {title}", kept and f"Kept from the run of {kept}.")

    inputs = [
        {
            "set": name.replace("_", " "),
            "songs or chunks": row["songs"],
            "mean tokens": f"{row['mean']:.0f}",
            "median": f"{row['median']:.0f}",
            "p99": f"{row['p99']:.0f}",
            "max": row["max"],
            "> 512": f"{row['share_over_512']:.0%}",
        }
        for name, row in run["inputs"].items()
    ]
    parts = [
        f"## {key}: {run['encoder_description']} on {where}",
        f"Command: `{run['command']}` ({run['mode']} mode). Machine: {harness.machine_line(machine)}",
        *(f"Note: {note}" for note in run.get("notes", [])),
        "### Inputs",
        table(inputs),
    ]
    if "training" in run:
        training, projection = run["training"], run["training"]["projection"]
        gpu_peak = training.get("bf16_dense_peak_flops_per_s")
        rows = {
            **{f"ours, {name}": row for name, row in training["variants"].items()},
            "reference (pad to 512, fp32, plain loop, the encoder's dropouts)": training["reference"],
        }
        steps = []
        for name, row in rows.items():
            step = {"step": name, "train.py flags": f"`{row['flags']}`" if row.get("flags") else ""}
            step.update({"chunks/s": spread(row["chunks_per_s"]), "tokens/s": spread(row["tokens_per_s"], ".0f")})
            step.update({"MFU": percent(row["mfu"]), "HFU": percent(row["hfu"])})
            if gpu_peak:
                step["MFU (bf16 dense peak)"] = percent(row["model_flops_per_s"], 1 / gpu_peak)
            step["warm-up s"] = f"{row['warmup_s']:.1f}" if "warmup_s" in row else ""
            step["ours / reference"] = spread(row["ratio"], suffix="×") if "ratio" in row else "1"
            steps.append(step)
        parts += [
            heading("training", "1. Training throughput (LoRA r=4 on query/value of the last 4 layers, batch 32)"),
            f"{training['chunks']} chunks ({training['real_tokens']:,} tokens) per pass; each round is one pass "
            "of each of our variants, interleaved step by step with a pass of the reference step over the same "
            "chunks. Median (min–max) over rounds; warm-up (first step, set-up, compilation) not timed. MFU: "
            "model FLOPs on real tokens against the measured fp32 GEMM peak; HFU: FLOPs of the padded shapes.",
            table(steps),
            "\n".join(f"- {name} did not run: {error}" for name, error in training.get("failed", {}).items()),
            f"Projected training-step time of the reference run ({projection['songs']:,} songs, "
            f"{projection['epochs']} epochs): **{projection['ours_minutes']:.1f} min** with this package "
            f"({projection['variant']}), {projection['reference_minutes']:.1f} min with the reference step "
            f"(the notebook: {projection['notebook_minutes']} min on a Colab GPU).",
            f"GEMM peak (fp32 `torch.mm`, {run['settings']['gemm_size']}², before each round): "
            f"{spread(training['gemm_peak_flops_per_s'], '.1f', 1e-9)} GFLOP/s"
            + (f"; data-sheet dense bf16 peak {gpu_peak / 1e12:.0f} TFLOP/s" if gpu_peak else "")
            + ".",
        ]
    for section, title in (
        ("quality", "2. Quality of the fine-tuning modes"),
        ("precision", "3. Quality in mixed precision (lora, same seed and budget)"),
    ):
        if section in run:
            quality = run[section]
            rows = [
                {
                    "mode": mode,
                    "train.py flags": f"`{row['flags']}`",
                    "train s": f"{row['train_s']:.0f}",
                    "test Pearson": f"{row['test']['pearson']:.3f}",
                    "test MSE": f"{row['test']['mse']:.5f}",
                    "validation Pearson": f"{row['validation']['pearson']:.3f}",
                }
                for mode, row in quality["modes"].items()
            ]
            ridge = quality["ridge_reference"]
            rows.append(
                {"mode": RIDGE_NAME, "test Pearson": f"{ridge['pearson']:.3f}", "test MSE": f"{ridge['mse']:.5f}"}
            )
            parts += [
                heading(section, title),
                f"EmoBank, its own split; budget: `{quality['budget_flags']}`, one seed (42).",
                table(rows),
            ]
    profile = run.get("training", {}).get("profile")
    if profile:
        top = [
            {"operator or kernel": f"`{row['op'][:70]}`", "s": f"{row['s']:.3f}", "share": f"{row['share']:.1%}"}
            for row in profile["top"]
        ]
        parts += [
            "### Where the time goes: our training step, one batch of 32 chunks (torch.profiler)",
            f"{profile['total_s']:.2f} s of {profile['counting']}; matrix products "
            f"{profile['matrix_product_share']:.0%}.",
            table(top),
        ]
    return paragraphs(*parts) + "\n"


def save(results_path: Path, markdown_path: Path, key: str, run: dict) -> None:
    """Merge the run into the results file (sections it skipped kept from the previous run of `key`, each noted with
    the run that measured it) and rewrite its section of the markdown."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    previous = results["runs"].get(key, {})
    for section in ("training", *QUALITY_SECTIONS):
        if section not in run and section in previous:
            run[section] = previous[section]
            measured = f"{previous['machine']['date']}, `{previous['command']}`"
            run.setdefault("kept", {})[section] = previous.get("kept", {}).get(section, measured)
    results["runs"][key] = run
    write_json(results_path, results)
    write_section(markdown_path, f"bench.run {key}", render_run(key, run))


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    device = harness.pick_device(args.device)
    key = f"{device.type}-{args.encoder}"
    run = run_benchmarks(args, device)
    save(args.results, args.markdown, key, run)  # the speed sections are kept should the quality runs fail
    log(f"wrote {args.results} and {args.markdown} ({key})")
    for section, skip in (("precision", args.no_precision), ("quality", args.no_quality)):
        if not skip:
            budget = shlex.split(args.settings["quality_budget"]) + shlex.split(args.quality_flags)
            run[section] = measure_quality(budget, QUALITY_SECTIONS[section][device.type], device.type == "cuda")
            run.get("kept", {}).pop(section, None)
            save(args.results, args.markdown, key, run)
            log(f"wrote the {section} runs to {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
