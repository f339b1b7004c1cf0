"""
Catalogue scoring: the torch backend in each precision and the onnxruntime backend against the naive per-chunk
`pipeline("text-classification")` loop, side by side (bench/harness.py); the host's share of the work; a sweep of
`batch_tokens`; each mode's EmoBank quality against float32 of one trained model. Writes scoring_results.json and
SCORING_RESULTS.md to --out (bench/SCORING_RESULTS.md cites the runs kept in bench/scoring/*.json).
"""

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.flops import bf16_dense_peak, flops_per_length, gemm_flops_per_second, int8_gemm_ops_per_second
from bench.harness import METHODS, OurScorer, build_scorer, time_side_by_side
from bench.models import add_model_arguments, build_model, load_tokenizer, save_model
from bench.report import (
    REPO,
    command_line,
    logger,
    machine_info,
    machine_line,
    pick_device,
    rates,
    spread,
    summary,
    table,
    write_json,
)
from bench.songs import length_summary, make_catalogue
from modeling_lyric_valence import DEFAULT_BATCH_TOKENS, DEFAULT_SONGS_PER_BLOCK, chunk_lyrics, score_songs_in_batches

SWEEP_BATCH_TOKENS = {"cpu": (1024, 2048, 4096, 8192, 16384, 32768), "cuda": (8192, 16384, 32768, 65536, 131072)}
log = logger("scoring")
HOST_WORK = "chunking and padding (`score_songs`' host work)"
STAND_IN = "`score_songs` with a device stand-in as fast as the host"

DEFAULT_METHODS = {
    "cpu": ("ours-float32", "ours-int8", "ours-onnxruntime-float32", "ours-onnxruntime-int8"),
    "cuda": (
        "naive-batch32",
        "ours-float32",
        "ours-float32-budget-only",
        "ours-bfloat16",
        "ours-bfloat16-one-block",
        "ours-float16",
    ),
}


def peak_flops(device: torch.device, seconds: float, int8: bool) -> dict:
    """What MFU is measured against: on a GPU the bf16 data-sheet peak (else a measured bf16 GEMM); on a CPU the
    measured fp32 GEMM, and with `int8` onnxruntime's int8 GEMM (`MatMulInteger`) for the int8 modes."""
    if device.type == "cuda":
        if bf16_dense_peak(device):
            return {
                "what": f"{torch.cuda.get_device_name(device)} bf16 dense peak (data sheet)",
                "flops_per_s": bf16_dense_peak(device),
            }
        return {
            "what": "measured bf16 GEMM",
            "flops_per_s": gemm_flops_per_second(8192, seconds, device, torch.bfloat16),
        }
    threads = torch.get_num_threads()
    peak = {
        "what": f"measured fp32 GEMM (2048², {threads} threads)",
        "flops_per_s": gemm_flops_per_second(2048, seconds, device),
    }
    if int8:
        peak.update(
            int8_what=f"measured onnxruntime int8 GEMM (`MatMulInteger`, 2048², {threads} threads)",
            int8_ops_per_s=int8_gemm_ops_per_second(2048, seconds, threads),
        )
    return peak


def is_int8(options: dict | None) -> bool:
    return bool(options) and options.get("quantize") == "int8"


def measure_speed(
    folder: str,
    model,
    tokenizer,
    songs: list[str],
    device: torch.device,
    rounds: int,
    methods: dict,
    budget_s: float,
    started: float,
) -> dict:
    """Every method over the same songs, `rounds` rounds in rotated order; ratios per round. The peaks MFU is measured
    against are measured at the start of each round, as noisy on a shared machine as the methods."""
    forward = flops_per_length(model)
    lengths = [
        len(ids) for ids in chunk_lyrics(tokenizer, songs, model.config.max_length, model.config.stride)["input_ids"]
    ]
    flops = sum(map(forward, lengths))
    log(f"loading {', '.join(methods)}")
    scorers = {name: build_scorer(name, folder, device) for name in methods}
    int8 = any(is_int8(options) for _, options in methods.values())
    peaks = []
    seconds, scores = time_side_by_side(
        scorers,
        songs,
        rounds,
        "catalogue scoring",
        log,
        before_round=lambda _: peaks.append(peak_flops(device, 1.0, int8)),
        stop=lambda: time.perf_counter() - started > budget_s,
    )
    peak = {
        key: summary([round_peaks[key] for round_peaks in peaks]) if key.endswith("_per_s") else value
        for key, value in peaks[0].items()
    }
    results = {
        "songs": len(songs),
        "chunks": len(lengths),
        "real_tokens": sum(lengths),
        "model_flops": flops,
        "peak": peak,
        "rounds": len(seconds["naive"]),
        "methods": {},
    }
    for name, runs in seconds.items():
        against = "int8_ops_per_s" if is_int8(methods[name][1]) and "int8_ops_per_s" in peak else "flops_per_s"
        results["methods"][name] = {
            "description": methods[name][0],
            **rates(runs, songs=len(songs), tokens=sum(lengths)),
            "mfu_against": against,
            "mfu": summary([flops / s / round_peaks[against] for s, round_peaks in zip(runs, peaks, strict=True)]),
            "ratio_vs_naive": summary([naive / s for naive, s in zip(seconds["naive"], runs, strict=True)]),
            "max_difference_vs_naive": float(np.max(np.abs(np.array(scores[name]) - np.array(scores["naive"])))),
        }
    return results


def measure_host(tokenizer, songs: list[str], config, rounds: int = 5) -> dict:
    """
    The host's share of scoring, which a GPU waits for, interleaved `rounds` times: chunking; the engine at the GPU's
    token budget with a model that costs nothing; and the engine with a device stand-in as fast as the host (it sleeps,
    releasing the GIL as a GPU wait does, for that round's host-work time spread over the padded tokens), which takes
    the two added unless the engine overlaps them.
    """
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
    return {
        "songs": len(songs),
        "rounds": rounds,
        "songs_per_block": block,
        "songs_per_s": {name: summary([len(songs) / s for s in runs]) for name, runs in seconds.items()},
        "overlap": {
            "vs_serial": summary(
                [2 * alone / both for alone, both in zip(seconds[HOST_WORK], seconds[STAND_IN], strict=True)]
            ),
            "ideal": 2 * blocks / (blocks + 1),
        },
    }


def measure_sweep(folder: str, songs: list[str], device: torch.device, dtype: str) -> dict:
    """Songs/s of `score_songs` at each token budget, side by side over two rounds."""
    scorers = {
        str(budget): OurScorer(folder, str(device), dtype=dtype, batch_tokens=budget)
        for budget in SWEEP_BATCH_TOKENS[device.type]
    }
    seconds, _ = time_side_by_side(scorers, songs, 2, "batch_tokens sweep", log)
    return {
        "dtype": dtype,
        "songs": len(songs),
        "songs_per_s": {budget: summary([len(songs) / s for s in runs]) for budget, runs in seconds.items()},
    }


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
    results, scores = {"model": folder, "sentences": len(texts), "modes": {}}, {}
    for mode_device, dtype, quantize, backend in quality_modes(device):
        name = f"{mode_device.split(':')[0]}-{dtype}" + (f"-{quantize}" if quantize else "")
        name += "-onnxruntime" if backend == "onnxruntime" else ""
        scores[name] = np.array(OurScorer(folder, mode_device, dtype, quantize, backend=backend)(texts))
        results["modes"][name] = {
            "pearson": float(np.corrcoef(scores[name], labels)[0, 1]),
            "mse": float(np.mean((scores[name] - labels) ** 2)),
        }
        log(f"quality: {name} Pearson {results['modes'][name]['pearson']:.4f}")
    for name, mode in results["modes"].items():
        reference = f"{name.split('-')[0]}-float32"
        mode["pearson_change"] = mode["pearson"] - results["modes"][reference]["pearson"]
        mode["max_score_difference"] = float(np.max(np.abs(scores[name] - scores[reference])))
        mode["recommended"] = abs(mode["pearson_change"]) <= 0.01
    return results


def render(run: dict) -> str:
    """The run as markdown tables."""
    lines = [
        "# Catalogue scoring",
        "",
        f"Command: `{run['command']}`. Machine: {machine_line(run['machine'])} {run['note']}",
        "",
    ]
    speed = run.get("speed")
    if speed:
        inputs, peak = run["inputs"], speed["peak"]
        peaks = f"{peak['what']} ({spread(peak['flops_per_s'], ',.0f', 1e-9)} GFLOP/s)"
        if "int8_ops_per_s" in peak:
            peaks += f"; the int8 modes' against the {peak['int8_what']} ({spread(peak['int8_ops_per_s'], ',.0f', 1e-9)} GOP/s)"
        lines += [
            f"## Speed: {run['encoder']}, {speed['songs']:,} synthetic songs (bench/songs.py mix)",
            "",
            f"{speed['chunks']:,} chunks, {speed['real_tokens']:,} tokens (song tokens: mean {inputs['mean']:.0f}, "
            f"median {inputs['median']:.0f}, p99 {inputs['p99']:.0f}, max {inputs['max']}); {speed['rounds']} "
            f"rounds, median (min–max). MFU against the {peaks}. Default `batch_tokens`: "
            f"{DEFAULT_BATCH_TOKENS.get(run['device'].split(':')[0], '')}.",
            "",
            table(
                [
                    {
                        "method": method["description"],
                        "songs/s": spread(method["songs_per_s"], ".1f"),
                        "× naive (per round)": spread(method["ratio_vs_naive"], suffix="×"),
                        "MFU": spread(method["mfu"], ".1f", 100, "%")
                        + (" of int8" if method["mfu_against"] == "int8_ops_per_s" else ""),
                        "max \\|score − naive\\|": f"{method['max_difference_vs_naive']:.1e}",
                    }
                    for method in speed["methods"].values()
                ]
            ),
            "",
        ]
    host = run.get("host")
    if host:
        lines += [
            f"## Host work: {host['songs']:,} songs, {host['rounds']} interleaved rounds, batches at the GPU's "
            f"{DEFAULT_BATCH_TOKENS['cuda']:,}-token budget",
            "",
            table(
                [{"host work": name, "songs/s": spread(value, ".0f")} for name, value in host["songs_per_s"].items()]
            ),
            "",
            f"Overlap of host work with a device stand-in ({host['songs_per_block']}-song blocks): "
            f"{spread(host['overlap']['vs_serial'])}× as fast as the two one after the other; ideal "
            f"{host['overlap']['ideal']:.2f}×.",
            "",
        ]
    sweep = run.get("sweep")
    if sweep:
        lines += [
            f"## `batch_tokens` sweep ({sweep['dtype']}, {sweep['songs']} songs, 2 rounds)",
            "",
            table(
                [
                    {"batch_tokens": budget, "songs/s": spread(value, ".1f")}
                    for budget, value in sweep["songs_per_s"].items()
                ]
            ),
            "",
        ]
    quality = run.get("quality")
    if quality:
        lines += [
            f"## Quality: EmoBank test ({quality['sentences']:,} sentences), model `{quality['model']}`",
            "",
            "Against float32 of the same model on the same device; recommended: within 0.01 Pearson.",
            "",
            table(
                [
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
            ),
            "",
        ]
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--songs", type=int, default=1000, help="Synthetic catalogue size (default: 1000).")
    parser.add_argument("--sweep_songs", type=int, default=300, help="Songs of the batch_tokens sweep (0: no sweep).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget_s", type=float, default=3600, help="Stop starting new speed rounds after this.")
    parser.add_argument("--no_speed", action="store_true", help="Quality only.")
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        choices=[name for name in METHODS if name != "naive"],
        help="Methods to time besides naive (default: the device's list in DEFAULT_METHODS).",
    )
    parser.add_argument("--quality_model", default=None, help="A trained model folder: measure EmoBank quality.")
    parser.add_argument("--emobank", default=str(REPO / "data" / "emobank.csv"), help="EmoBank CSV.")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scoring" / "latest")
    parser.add_argument("--note", default="", help="A sentence on the machine's state, e.g. that it was shared.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    started = time.perf_counter()
    device = pick_device(args.device)
    run = {
        "command": command_line("bench.scoring", argv),
        "device": str(device),
        "encoder": args.encoder,
        "machine": machine_info(device),
        "note": args.note,
    }
    if not args.no_speed:
        tokenizer = load_tokenizer(args.encoder, args.vocab_file)
        catalogue = make_catalogue(tokenizer.get_vocab(), args.songs, seed=1)
        run["inputs"] = length_summary(catalogue.tokens)
        model = build_model(args.encoder, tokenizer.vocab_size)
        folder = save_model(tempfile.mkdtemp(prefix="bench-scoring-"), model, tokenizer)
        methods = {name: METHODS[name] for name in ["naive", *(args.methods or DEFAULT_METHODS[device.type])]}
        run["host"] = measure_host(tokenizer, catalogue.texts[:1024], model.config)
        run["speed"] = measure_speed(
            folder, model, tokenizer, catalogue.texts, device, args.rounds, methods, args.budget_s, started
        )
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
