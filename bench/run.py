#!/usr/bin/env python
"""
Benchmarks of lyric-valence against the reference recipe, in one command: training throughput (our train.py step vs
the reference notebook's pad-to-512 loop), whole-song inference throughput (`lyric-valence predict`'s path vs a
per-chunk `pipeline("text-classification")` loop), distance to the machine's fp32 GEMM peak (MFU), and EmoBank
quality of head_only / lora / full fine-tuning, and of lora in mixed precision.

    python bench/run.py --quick          # about 4 minutes on 2 CPU cores
    python bench/run.py                  # full mode, about 25 minutes on 2 CPU cores
    python bench/run.py --device cuda --encoder bert-base --no_quality --vocab_file VOCAB.txt   # GPU speed table
    bash bench/gpu.sh                    # the GPU check of about 200 s (see the script)

Writes bench/results.json (a run per device and encoder; other runs already there are kept, and so are the sections
a run skips) and bench/RESULTS.md.
"""

import argparse
import functools
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import transformers  # noqa: E402

from bench.models import ENCODERS, build_model, import_training_module, load_tokenizer  # noqa: E402
from bench.report import machine_info, targets, write_markdown  # noqa: E402
from bench.songs import length_summary, make_catalogue  # noqa: E402
from bench.flops import bf16_dense_peak  # noqa: E402
from bench.speed import (  # noqa: E402
    chunk_features,
    epoch_sample,
    measure_inference,
    measure_training,
    profile_scoring,
    profile_training_step,
)


@dataclass
class Settings:
    """Sizes of one benchmark run."""

    training_batches: int
    catalogue_songs: int
    rounds: int
    gemm_size: int
    gemm_seconds: float
    quality_budget: str


POOL_SONGS = 1440  # about 1,640 chunks: one length-grouped megabatch (1,600) to draw the timed batches from
PROFILED_SONGS = 16
PRESETS = {
    "quick": Settings(training_batches=1, catalogue_songs=12, rounds=3, gemm_size=2048, gemm_seconds=1.0,
                      quality_budget="--num_train_epochs 1 --max_train_songs 1024 --max_eval_songs 200"),
    "full": Settings(training_batches=5, catalogue_songs=64, rounds=5, gemm_size=4096, gemm_seconds=3.0,
                     quality_budget="--num_train_epochs 3"),
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
DEFAULT_VARIANTS = {"cpu": ["fp32", "bf16"], "cuda": ["fp32", "tf32", "bf16", "bf16+workers4", "bf16+compile"]}
# EmoBank quality runs (bench/quality.py): the fine-tuning modes, and lora in each precision the device runs.
QUALITY_SECTIONS = {
    "quality": {"cpu": ["head_only", "lora", "full"], "cuda": ["head_only", "lora", "full"]},
    "precision": {"cpu": ["lora", "lora, bf16"], "cuda": ["lora", "lora, bf16", "lora, fp16"]},
}
REFERENCE_RUN = {"songs": 24_000, "epochs": 20, "notebook_minutes": 185}  # the notebook's run on a Colab GPU
ENCODER_DESCRIPTIONS = {
    "minilm": "all-MiniLM-L6-v2 (packaged, 6 layers, 384 wide)",
    "bert-base": "bert-base-shaped encoder (random weights, 12 layers, 768 wide)",
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Small sizes and a small quality budget (~4 min on 2 "
                        "CPU cores) instead of the full mode (< 60 min).")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available).")
    parser.add_argument("--encoder", default="minilm", choices=ENCODERS, help="minilm: the packaged pretrained "
                        "all-MiniLM-L6-v2; bert-base: a bert-base-shaped encoder with random weights (speed only).")
    parser.add_argument("--vocab_file", default=None, help="WordPiece vocab.txt for --encoder bert-base (default: the "
                        "packaged MiniLM's, which is bert-base-uncased's).")
    parser.add_argument("--no_quality", action="store_true", help="Skip the EmoBank quality runs of the fine-tuning "
                        "modes (section 4).")
    parser.add_argument("--no_precision", action="store_true", help="Skip the EmoBank quality runs of lora in fp32 "
                        "and mixed precision (section 5).")
    parser.add_argument("--quality_flags", default="", help="train.py flags added to every quality run, e.g. "
                        "'--model_name_or_path DIR --data_file emobank.csv' on a machine without the defaults, or a "
                        "smaller budget ('--num_train_epochs 1 --max_train_songs 2000').")
    parser.add_argument("--no_training", action="store_true", help="Skip the training throughput (sections 1 and "
                        "3; implies --no_inference, which needs its GEMM peak): only the quality runs.")
    parser.add_argument("--no_inference", action="store_true", help="Skip the inference throughput (section 2). "
                        "Sections a run skips are kept from the previous run of the same device and encoder.")
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANT_FLAGS, help="Our training step's "
                        f"variants to time (default: the device's: {DEFAULT_VARIANTS}).")
    parser.add_argument("--training_batches", type=int, default=None, help="Batches of 32 chunks, of the 50 of a "
                        "length-grouped megabatch, that each training round times (default: the mode's).")
    parser.add_argument("--catalogue_songs", type=int, default=None, help="Songs scored per inference round "
                        "(default: the mode's).")
    parser.add_argument("--rounds", type=int, default=None, help="Repetitions of each timing (default: the mode's).")
    parser.add_argument("--gemm_size", type=int, default=None, help="Side of the square matrices of the GEMM peak "
                        "measurement (default: the mode's).")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results.json",
                        help="JSON file the run is merged into (default: bench/results.json).")
    parser.add_argument("--markdown", type=Path, default=REPO / "bench" / "RESULTS.md",
                        help="Markdown report rendered from the results file (default: bench/RESULTS.md).")
    args = parser.parse_args(argv)
    args.no_inference |= args.no_training
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    """The mode's preset with the command line's overrides."""
    settings = PRESETS["quick" if args.quick else "full"]
    overrides = {name: getattr(args, name) for name in ("training_batches", "catalogue_songs", "rounds", "gemm_size")}
    return Settings(**{**asdict(settings), **{name: value for name, value in overrides.items() if value is not None}})


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_model(encoder: str, vocab_size: int, lora: bool = True, reference: bool = False):
    """
    A fresh model for the benchmark: LoRA-wrapped as train.py's default mode, or plain for scoring; ours, or the
    `reference` notebook's (the encoder's own dropouts).
    """
    model = build_model(encoder, vocab_size, reference=reference)
    return import_training_module().prepare_for_finetuning(model, "lora") if lora else model


def run_benchmarks(args: argparse.Namespace, settings: Settings, device: torch.device) -> dict:
    """Every section asked for, in one process; the run's record for results.json."""
    tokenizer = load_tokenizer(args.encoder, args.vocab_file)
    vocabulary = tokenizer.get_vocab()
    pool = make_catalogue(vocabulary, POOL_SONGS, seed=0)
    pool_chunks = chunk_features(tokenizer, pool.texts, pool.labels)
    features = epoch_sample(pool_chunks, settings.training_batches)
    catalogue = make_catalogue(vocabulary, settings.catalogue_songs, seed=1)
    model_factory = functools.partial(make_model, args.encoder, tokenizer.vocab_size)
    variants = {name: VARIANT_FLAGS[name] for name in args.variants or DEFAULT_VARIANTS[device.type]}
    run = {
        "mode": "quick" if args.quick else "full",
        "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]),
        "encoder_description": ENCODER_DESCRIPTIONS[args.encoder],
        "machine": machine_info(device),
        "settings": asdict(settings),
        "inputs": {"training_pool_songs": length_summary(pool.tokens),
                   "timed_training_chunks": length_summary([len(feature["input_ids"]) for feature in features]),
                   "catalogue_songs": length_summary(catalogue.tokens)},
    }
    start = time.perf_counter()
    if args.no_training:
        return {**run, "wall_s": 0.0}
    training = measure_training(model_factory, tokenizer, features, device, variants, settings.rounds,
                                settings.gemm_size, settings.gemm_seconds, log)
    training["bf16_dense_peak_flops_per_s"] = bf16_dense_peak(device)
    training["projection"] = project_reference_run(training, len(pool_chunks) / POOL_SONGS)
    log("profiling our training step")
    training["profile"] = profile_training_step(model_factory, tokenizer, features, device,
                                                training["variants"][training["best"]]["flags"])
    run["training"] = training
    if not args.no_inference:
        peak = training["gemm_peak_flops_per_s"]["median"]
        run["inference"] = measure_inference(model_factory(lora=False), tokenizer, catalogue, device,
                                             settings.rounds, peak, log)
        log("profiling scoring")
        run["inference"]["profile"] = profile_scoring(model_factory(lora=False), tokenizer,
                                                      catalogue.texts[:PROFILED_SONGS], device)
    run["wall_s"] = time.perf_counter() - start
    return run


def run_quality(section: str, args: argparse.Namespace, settings: Settings, device: torch.device) -> dict:
    """The EmoBank quality runs of a section ("quality" or "precision"); all at once on a GPU."""
    from bench.quality import measure_quality

    budget = shlex.split(settings.quality_budget) + shlex.split(args.quality_flags)
    return measure_quality(budget, QUALITY_SECTIONS[section][device.type], parallel=device.type == "cuda", log=log)


def project_reference_run(training: dict, chunks_per_song: float) -> dict:
    """
    Wall time of the reference notebook's run (24k songs of the bench's length mix, 20 epochs, training steps only)
    at the measured chunks/s of our fastest variant and of the reference step, each with its warm-up step.
    """
    chunks = REFERENCE_RUN["songs"] * chunks_per_song * REFERENCE_RUN["epochs"]
    best = training["variants"][training["best"]]
    return {
        **REFERENCE_RUN,
        "chunks_per_song": chunks_per_song,
        "variant": training["best"],
        "ours_minutes": (chunks / best["chunks_per_s"]["median"] + best["warmup_s"]) / 60,
        "reference_minutes": chunks / training["reference"]["chunks_per_s"]["median"] / 60,
    }


def save(results_path: Path, markdown_path: Path, key: str, run: dict) -> None:
    """
    Merge the run into the results file (replacing an earlier run of the same key; sections it skipped are kept from
    that run, each noted with the run that measured it) and re-render the markdown.
    """
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    previous = results["runs"].get(key, {})
    for section in ("training", "inference", *QUALITY_SECTIONS):
        if section not in run and section in previous:
            run[section] = previous[section]
            run.setdefault("kept", {})[section] = previous.get("kept", {}).get(
                section, f"{previous['machine']['date']}, `{previous['command']}`")
    run["targets"] = targets(run)
    results["runs"][key] = run
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, markdown_path)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    settings = settings_from(args)
    run = run_benchmarks(args, settings, device)
    key = f"{device.type}-{args.encoder}"
    save(args.results, args.markdown, key, run)  # the speed sections are kept should the quality runs fail
    log(f"wrote {args.results} and {args.markdown} ({key}, {run['wall_s']:.0f} s)")
    for section, skip in (("precision", args.no_precision), ("quality", args.no_quality)):
        if not skip:
            run[section] = run_quality(section, args, settings, device)
            run.get("kept", {}).pop(section, None)
            save(args.results, args.markdown, key, run)
            log(f"wrote the {section} runs to {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
