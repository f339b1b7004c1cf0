"""Catalogue scoring: the torch backend in each precision and the onnxruntime backend against the naive per-chunk
`pipeline("text-classification")` loop, side by side; the host's share of the work; a sweep of `batch_tokens`; each
mode's EmoBank quality against float32 of one trained model. Writes scoring_results.json and SCORING_RESULTS.md to --out
(bench/SCORING_RESULTS.md cites the runs kept in bench/scoring/*.json)."""

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments

from bench import harness
from bench.flops import bf16_dense_peak, flops_per_length, gemm_flops_per_second, int8_gemm_ops_per_second
from bench.models import add_model_arguments, build_model, import_training_module, load_tokenizer, save_model
from bench.report import paragraphs, percent, rates, spread, summary, table, write_json
from lyric_valence.loading import load_scoring_model
from modeling_lyric_valence import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_SONGS_PER_BLOCK,
    LyricValenceModel,
    chunk_lyrics,
    score_songs_in_batches,
)

SWEEP_BATCH_TOKENS = {"cpu": (1024, 2048, 4096, 8192, 16384, 32768), "cuda": (8192, 16384, 32768, 65536, 131072)}
log = harness.logger("scoring")
HOST_WORK = "chunking and padding (`score_songs`' host work)"
STAND_IN = "`score_songs` with a device stand-in as fast as the host"


class NaivePipeline:
    """The stock path: the same chunks as text, a `pipeline("text-classification")` called once per chunk, or over all
    chunks with `batch_size` (32: what its docs suggest), float32; chunk scores averaged per song."""

    def __init__(self, folder: str, device: str, batch_size: int | None = None):
        self.pipe = transformers.pipeline("text-classification", model=folder, trust_remote_code=True, device=device)
        self.batch_size = batch_size

    def __call__(self, songs: list[str]) -> list[float]:
        config, tokenizer = self.pipe.model.config, self.pipe.tokenizer
        encoded = chunk_lyrics(tokenizer, songs, config.max_length, config.stride)
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in encoded["input_ids"]]
        if self.batch_size is None:
            outputs = [self.pipe(text, truncation=True)[0] for text in texts]
        else:
            outputs = [output[0] for output in self.pipe(texts, truncation=True, batch_size=self.batch_size, top_k=1)]
        song_of_chunk = encoded["overflow_to_sample_mapping"]
        totals = np.bincount(song_of_chunk, [output["score"] for output in outputs], len(songs))
        return (totals / np.bincount(song_of_chunk, minlength=len(songs))).tolist()


class OurScorer:
    """`lyric-valence predict`'s engine: the model as `load_scoring_model` gives it with `options` (dtype, quantize,
    backend), or with `prepared=False` as `from_pretrained` gives it (token-budget batches alone); `score_songs` in
    `batch_tokens` budgets, `songs_per_block` songs at a time."""

    def __init__(self, folder: str, device: str, batch_tokens=None, songs_per_block=None, prepared=True, **options):
        if prepared:
            model, self.tokenizer = load_scoring_model(folder, device, **options)
        else:
            model = LyricValenceModel.from_pretrained(folder, dtype=torch.float32).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(folder, config=model.config, trust_remote_code=False)
        self.model, self.batch_tokens, self.songs_per_block = model, batch_tokens, songs_per_block

    def __call__(self, songs: list[str]) -> list[float]:
        return self.model.score_songs(songs, self.tokenizer, self.batch_tokens, self.songs_per_block)


class TrainerEvaluation:
    """train.py's evaluation: `ChunkedSongTrainer.predict` over the songs' chunks (`chunk_split`, tokenized once, as
    train.py does before training) in token-budget batches; with `fixed_batches`, in the Trainer's own batches of
    train.py's 64 chunks in dataset order (train.py's evaluation before issue 38). The model as `from_pretrained`
    gives it (full last layer), as training evaluates it; chunk scores averaged per song."""

    def __init__(self, folder: str, device: str, fixed_batches: bool = False):
        self.training = import_training_module()
        model = LyricValenceModel.from_pretrained(folder, dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, config=model.config, trust_remote_code=False)
        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="bench-trainer-eval-"),
            per_device_eval_batch_size=64,
            label_names=list(self.training.LABEL_NAMES),
            report_to=[],
            disable_tqdm=True,
            use_cpu=torch.device(device).type == "cpu",
        )
        trainer_class = self.training.ChunkedSongTrainer
        if fixed_batches:
            trainer_class = type("FixedBatchTrainer", (trainer_class,), {"batches_by_token_budget": lambda *_: False})
        self.trainer = trainer_class(model=model, args=args, data_collator=DataCollatorWithPadding(self.tokenizer))
        self.songs, self.chunks = None, None

    def __call__(self, songs: list[str]) -> list[float]:
        if songs is not self.songs:
            import datasets  # here, not at the top: the GPU machine has no `datasets`, and its methods need none

            split = datasets.Dataset.from_dict({"text": songs, "label": [0.0] * len(songs)})
            config = self.trainer.model.config
            self.songs, self.chunks = (
                songs,
                self.training.chunk_split(split, self.tokenizer, config.max_length, config.stride),
            )
        output = self.trainer.predict(self.chunks)
        _, predicted, *_ = self.training.song_predictions(output.predictions, output.label_ids)
        return predicted.tolist()


# name: (description, options of NaivePipeline for naive*, of TrainerEvaluation for trainer*, of OurScorer for the
# others)
METHODS = {
    "naive": ('naive: `pipeline("text-classification")` per chunk, float32', {}),
    "naive-batch32": ("naive pipeline with `batch_size=32`, float32", {"batch_size": 32}),
    "ours-float32": ("ours: token-budget batches + CLS-only last layer, float32", {}),
    "ours-float32-budget-only": ("ours: token-budget batches only (full last layer), float32", {"prepared": False}),
    "ours-bfloat16": ("ours, bfloat16", {"dtype": "bfloat16"}),
    "ours-bfloat16-one-block": (
        "ours, bfloat16, 1,024-song blocks (host work not overlapped within 1,024 songs)",
        {"dtype": "bfloat16", "songs_per_block": 1024},
    ),
    "ours-float16": ("ours, float16", {"dtype": "float16"}),
    "ours-int8": ("ours, dynamic int8 Linear layers (torch.ao)", {"quantize": "int8"}),
    "ours-onnxruntime-float32": ("ours, onnxruntime (fused graph), float32", {"backend": "onnxruntime"}),
    "ours-onnxruntime-int8": (
        "ours, onnxruntime (fused graph), dynamic int8, weights per channel",
        {"backend": "onnxruntime", "quantize": "int8"},
    ),
    "trainer-eval": ("train.py's Trainer evaluation: token-budget batches, float32", {}),
    "trainer-eval-fixed-batches": (
        "train.py's Trainer evaluation before issue 38: batches of 64 chunks in dataset order, float32",
        {"fixed_batches": True},
    ),
}
DEFAULT_METHODS = {  # besides naive
    "cpu": "ours-float32 ours-int8 ours-onnxruntime-float32 ours-onnxruntime-int8",
    "cuda": "naive-batch32 ours-float32 ours-float32-budget-only ours-bfloat16 ours-bfloat16-one-block ours-float16",
}


def build_scorer(name: str, folder: str, device: torch.device):
    """The method `name` of METHODS on the model saved in `folder`."""
    scorer = (
        NaivePipeline if name.startswith("naive") else TrainerEvaluation if name.startswith("trainer") else OurScorer
    )
    return scorer(folder, str(device), **METHODS[name][1])


def peak_flops(device: torch.device, seconds: float, int8: bool) -> dict:
    """What MFU is measured against: on a GPU the bf16 data-sheet peak (else a measured bf16 GEMM); on a CPU the
    measured fp32 GEMM, and with `int8` onnxruntime's int8 GEMM (`MatMulInteger`) for the int8 modes."""
    if device.type == "cuda":
        peak = bf16_dense_peak(device)
        what = f"{torch.cuda.get_device_name(device)} bf16 dense peak (data sheet)" if peak else "measured bf16 GEMM"
        return {"what": what, "flops_per_s": peak or gemm_flops_per_second(8192, seconds, device, torch.bfloat16)}
    threads = torch.get_num_threads()
    peak = {"what": f"measured fp32 GEMM (2048², {threads} threads)"}
    peak["flops_per_s"] = gemm_flops_per_second(2048, seconds, device)
    if int8:
        peak["int8_what"] = f"measured onnxruntime int8 GEMM (`MatMulInteger`, 2048², {threads} threads)"
        peak["int8_ops_per_s"] = int8_gemm_ops_per_second(2048, seconds, threads)
    return peak


def measure_speed(folder: str, model, tokenizer, songs: list[str], device, methods: dict, rounds: int, end: float):
    """Every method over the same songs, `rounds` rounds in rotated order, none started after `end` (`perf_counter`
    time); ratios per round. The peaks MFU is measured against are measured at the start of each round, as noisy on a
    shared machine as the methods."""
    config = model.config
    lengths = [len(ids) for ids in chunk_lyrics(tokenizer, songs, config.max_length, config.stride)["input_ids"]]
    flops = sum(map(flops_per_length(model), lengths))
    log(f"loading {', '.join(methods)}")
    scorers = {name: build_scorer(name, folder, device) for name in methods}
    int8 = any(options.get("quantize") == "int8" for _, options in methods.values())
    peaks = []

    def measure_peak(_round: int) -> None:
        peaks.append(peak_flops(device, 1.0, int8))

    seconds, scores = harness.time_side_by_side(scorers, songs, rounds, "catalogue scoring", log, measure_peak, end)
    peak = {
        key: summary([each[key] for each in peaks]) if key.endswith("_per_s") else value
        for key, value in peaks[0].items()
    }
    results = {"songs": len(songs), "chunks": len(lengths), "real_tokens": sum(lengths), "model_flops": flops}
    results.update(peak=peak, rounds=len(seconds["naive"]), methods={})
    for name, runs in seconds.items():
        int8_method = methods[name][1].get("quantize") == "int8" and "int8_ops_per_s" in peak
        against = "int8_ops_per_s" if int8_method else "flops_per_s"
        results["methods"][name] = {
            "description": methods[name][0],
            **rates(runs, songs=len(songs), tokens=sum(lengths)),
            "mfu_against": against,
            "mfu": summary([flops / s / each[against] for s, each in zip(runs, peaks, strict=True)]),
            "ratio_vs_naive": summary([naive / s for naive, s in zip(seconds["naive"], runs, strict=True)]),
            "max_difference_vs_naive": float(np.max(np.abs(np.array(scores[name]) - np.array(scores["naive"])))),
        }
    return results


def measure_host(tokenizer, songs: list[str], config, rounds: int = 5) -> dict:
    """The host's share of scoring, which a GPU waits for, interleaved `rounds` times: chunking; the engine at the GPU's
    token budget with a model that costs nothing; and the engine with a device stand-in as fast as the host (it sleeps,
    releasing the GIL as a GPU wait does, for that round's host-work time spread over the padded tokens), which takes
    the two added unless the engine overlaps them."""
    budget, block = DEFAULT_BATCH_TOKENS["cuda"], DEFAULT_SONGS_PER_BLOCK["cuda"]
    padded_tokens = []

    def no_model(inputs: dict) -> torch.Tensor:
        return torch.zeros(len(inputs["input_ids"]))

    def device_stand_in(inputs: dict) -> torch.Tensor:
        time.sleep(inputs["input_ids"].numel() * seconds[HOST_WORK][-1] / sum(padded_tokens))
        return no_model(inputs)

    def engine(score_batch) -> None:
        score_songs_in_batches(score_batch, songs, tokenizer, config, budget, block)

    ways = {
        "chunking (tokenizer)": lambda: chunk_lyrics(tokenizer, songs, config.max_length, config.stride),
        HOST_WORK: lambda: engine(no_model),
        STAND_IN: lambda: engine(device_stand_in),
    }
    engine(lambda inputs: padded_tokens.append(inputs["input_ids"].numel()) or no_model(inputs))
    seconds = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            seconds[name].append(time.perf_counter() - start)
    log("host: " + ", ".join(f"{name} {min(runs):.3f} s" for name, runs in seconds.items()))
    blocks = -(-len(songs) // block)
    overlap = [2 * alone / both for alone, both in zip(seconds[HOST_WORK], seconds[STAND_IN], strict=True)]
    return {
        "songs": len(songs),
        "rounds": rounds,
        "songs_per_block": block,
        "songs_per_s": {name: summary([len(songs) / s for s in runs]) for name, runs in seconds.items()},
        "overlap": {"vs_serial": summary(overlap), "ideal": 2 * blocks / (blocks + 1)},
    }


def measure_sweep(folder: str, songs: list[str], device: torch.device, dtype: str) -> dict:
    """Songs/s of `score_songs` at each token budget, side by side over two rounds."""
    budgets = SWEEP_BATCH_TOKENS[device.type]
    scorers = {str(budget): OurScorer(folder, str(device), budget, dtype=dtype) for budget in budgets}
    seconds, _ = harness.time_side_by_side(scorers, songs, 2, "batch_tokens sweep", log)
    songs_per_s = {budget: summary([len(songs) / s for s in runs]) for budget, runs in seconds.items()}
    return {"dtype": dtype, "songs": len(songs), "songs_per_s": songs_per_s}


def emobank_test(path: str) -> tuple[list[str], np.ndarray]:
    """EmoBank's own test split: sentences and valence rescaled from 1..5 to 0..1 (blank sentences dropped)."""
    frame = pd.read_csv(path, keep_default_na=False)
    test = frame[(frame["split"] == "test") & (frame["text"].str.strip() != "")]
    return test["text"].tolist(), ((test["V"].to_numpy(dtype=float) - 1.0) / 4.0)


def quality_modes(device: torch.device) -> list[tuple[str, str, str | None, str]]:
    """(device, dtype, quantize, backend) of every mode a machine can measure: CPU modes always (onnxruntime's where it
    is installed), GPU modes when there is one."""
    modes = [("cpu", "float32", None, "torch"), ("cpu", "bfloat16", None, "torch"), ("cpu", "float32", "int8", "torch")]
    if importlib.util.find_spec("onnxruntime"):  # an optional extra: a GPU machine may not have it
        modes += [("cpu", "float32", None, "onnxruntime"), ("cpu", "float32", "int8", "onnxruntime")]
    if device.type == "cuda":
        modes += [(str(device), dtype, None, "torch") for dtype in ("float32", "bfloat16", "float16")]
    return modes


def measure_quality(folder: str, emobank: str, device: torch.device) -> dict:
    """Pearson and MSE on EmoBank test of each mode, and each mode's Pearson change against float32 on its device."""
    texts, labels = emobank_test(emobank)
    results = {"model": harness.portable_path(folder, "--quality_model"), "sentences": len(texts), "modes": {}}
    scores = {}
    for mode_device, dtype, quantize, backend in quality_modes(device):
        name = f"{mode_device.split(':')[0]}-{dtype}" + (f"-{quantize}" if quantize else "")
        name += "-onnxruntime" if backend == "onnxruntime" else ""
        scorer = OurScorer(folder, mode_device, dtype=dtype, quantize=quantize, backend=backend)
        scores[name] = np.array(scorer(texts))
        pearson, mse = np.corrcoef(scores[name], labels)[0, 1], np.mean((scores[name] - labels) ** 2)
        results["modes"][name] = {"pearson": float(pearson), "mse": float(mse)}
        log(f"quality: {name} Pearson {pearson:.4f}")
    for name, mode in results["modes"].items():
        reference = f"{name.split('-')[0]}-float32"
        mode["pearson_change"] = mode["pearson"] - results["modes"][reference]["pearson"]
        mode["max_score_difference"] = float(np.max(np.abs(scores[name] - scores[reference])))
        mode["recommended"] = abs(mode["pearson_change"]) <= 0.01
    return results


def render(run: dict) -> str:
    """The run as markdown tables."""
    parts = [
        "# Catalogue scoring",
        f"Command: `{run['command']}`. Machine: {harness.machine_line(run['machine'])} {run['note']}",
    ]
    speed, host, sweep, quality = (run.get(part) for part in ("speed", "host", "sweep", "quality"))
    if speed:
        inputs, peak = run["inputs"], speed["peak"]
        peaks = f"{peak['what']} ({spread(peak['flops_per_s'], ',.0f', 1e-9)} GFLOP/s)"
        if "int8_ops_per_s" in peak:
            gops = spread(peak["int8_ops_per_s"], ",.0f", 1e-9)
            peaks += f"; the int8 modes' against the {peak['int8_what']} ({gops} GOP/s)"
        rows = [
            {
                "method": method["description"],
                "songs/s": spread(method["songs_per_s"], ".1f"),
                "× naive (per round)": spread(method["ratio_vs_naive"], suffix="×"),
                "MFU": percent(method["mfu"]) + (" of int8" if method["mfu_against"] == "int8_ops_per_s" else ""),
                "max \\|score − naive\\|": f"{method['max_difference_vs_naive']:.1e}",
            }
            for method in speed["methods"].values()
        ]
        parts += [
            f"## Speed: {run['encoder']}, {speed['songs']:,} synthetic songs (bench/harness.py mix)",
            f"{speed['chunks']:,} chunks, {speed['real_tokens']:,} tokens (song tokens: mean {inputs['mean']:.0f}, "
            f"median {inputs['median']:.0f}, p99 {inputs['p99']:.0f}, max {inputs['max']}); {speed['rounds']} "
            f"rounds, median (min–max). MFU against the {peaks}. Default `batch_tokens`: "
            f"{DEFAULT_BATCH_TOKENS.get(run['device'].split(':')[0], '')}.",
            table(rows),
        ]
    if host:
        rows = [{"host work": name, "songs/s": spread(value, ".0f")} for name, value in host["songs_per_s"].items()]
        parts += [
            f"## Host work: {host['songs']:,} songs, {host['rounds']} interleaved rounds, batches at the GPU's "
            f"{DEFAULT_BATCH_TOKENS['cuda']:,}-token budget",
            table(rows),
            f"Overlap of host work with a device stand-in ({host['songs_per_block']}-song blocks): "
            f"{spread(host['overlap']['vs_serial'])}× as fast as the two one after the other; ideal "
            f"{host['overlap']['ideal']:.2f}×.",
        ]
    if sweep:
        rows = [
            {"batch_tokens": budget, "songs/s": spread(value, ".1f")} for budget, value in sweep["songs_per_s"].items()
        ]
        parts += [f"## `batch_tokens` sweep ({sweep['dtype']}, {sweep['songs']} songs, 2 rounds)", table(rows)]
    if quality:
        rows = [
            {
                "mode": name,
                "Pearson": f"{mode['pearson']:.4f}",
                "MSE": f"{mode['mse']:.5f}",
                "Pearson change vs float32": f"{mode['pearson_change']:+.4f}",
                "max \\|score − float32\\|": f"{mode['max_score_difference']:.1e}",
                "recommended": "yes" if mode["recommended"] else "**no**",
            }
            for name, mode in quality["modes"].items()
        ]
        parts += [
            f"## Quality: EmoBank test ({quality['sentences']:,} sentences), model `{quality['model']}`",
            "Against float32 of the same model on the same device; recommended: within 0.01 Pearson.",
            table(rows),
        ]
    return paragraphs(*parts) + "\n"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--songs", type=int, default=1000, help="Synthetic catalogue size (default: 1000).")
    parser.add_argument("--sweep_songs", type=int, default=300, help="Songs of the batch_tokens sweep (0: no sweep).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget_s", type=float, default=3600, help="Stop starting new speed rounds after this.")
    parser.add_argument("--no_speed", action="store_true", help="Quality only.")
    methods = [name for name in METHODS if name != "naive"]
    help_ = "Methods to time besides naive (default: the device's list in DEFAULT_METHODS)."
    parser.add_argument("--methods", nargs="*", default=None, choices=methods, help=help_)
    parser.add_argument("--quality_model", default=None, help="A trained model folder: measure EmoBank quality.")
    parser.add_argument("--emobank", default=str(harness.REPO / "data" / "emobank.csv"), help="EmoBank CSV.")
    parser.add_argument("--out", type=Path, default=harness.REPO / "bench" / "scoring" / "latest")
    parser.add_argument("--note", default="", help="A sentence on the machine's state, e.g. that it was shared.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    started = time.perf_counter()
    device = harness.pick_device(args.device)
    run = {"command": harness.command_line("bench.scoring", argv), "device": str(device), "encoder": args.encoder}
    run.update(machine=harness.machine_info(device), note=args.note)
    if not args.no_speed:
        tokenizer = load_tokenizer(args.encoder, args.vocab_file)
        catalogue = harness.make_catalogue(tokenizer.get_vocab(), args.songs, seed=1)
        run["inputs"] = harness.length_summary(catalogue.tokens)
        model = build_model(args.encoder, tokenizer.vocab_size)
        folder = save_model(tempfile.mkdtemp(prefix="bench-scoring-"), model, tokenizer)
        methods = {name: METHODS[name] for name in ["naive", *(args.methods or DEFAULT_METHODS[device.type].split())]}
        run["host"] = measure_host(tokenizer, catalogue.texts[:1024], model.config)
        end = started + args.budget_s
        run["speed"] = measure_speed(folder, model, tokenizer, catalogue.texts, device, methods, args.rounds, end)
        save(args.out, run)
        if args.sweep_songs:
            dtype = "float32" if device.type == "cpu" else "bfloat16"
            run["sweep"] = measure_sweep(folder, catalogue.texts[: args.sweep_songs], device, dtype)
            save(args.out, run)
    if args.quality_model:
        run["quality"] = measure_quality(args.quality_model, args.emobank, device)
    run["wall_s"] = time.perf_counter() - started
    save(args.out, run)
    log(f"wrote {args.out / 'scoring_results.json'} and {args.out / 'SCORING_RESULTS.md'} ({run['wall_s']:.0f} s)")


def save(out: Path, run: dict) -> None:
    write_json(out / "scoring_results.json", run)
    (out / "SCORING_RESULTS.md").write_text(render(run) + "\n")


if __name__ == "__main__":
    main()
