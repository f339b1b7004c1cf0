"""Machine description, targets, and the human-readable RESULTS.md rendered from results.json."""

import datetime
import os
import platform
from pathlib import Path

import numpy
import peft
import tokenizers
import torch
import transformers

from bench.speed import is_matrix_product

OPERATION_NOTES = {
    "bernoulli": "random masks of dropout",
    "aten::mul": "element-wise products: dropout masks applied, scaling",
    "aten::_softmax": "attention softmax, unfused (attention dropout keeps SDPA's fused kernel out in training)",
    "aten::bmm": "attention products QKᵀ and AV, unfused",
    "addmm": "linear layers",
    "aten::mm": "linear layers' gradients",
    "scaled_dot_product": "fused attention (SDPA)",
    "attention": "fused attention (SDPA)",
    "fmha": "fused attention kernel",
    "gemm": "matrix product kernel",
    "copy_": "copies and layout changes",
    "layer_norm": "layer norm",
    "gelu": "GELU activation",
    "isneginf": "attention-mask checks",
    "where": "attention mask applied",
    "adamw": "optimizer",
}
TARGETS = {
    "training_ratio": ("training throughput, ours / reference step", 3.0),
    "inference_ratio": ("whole-song inference, ours / naive per-chunk pipeline", 5.0),
    "training_mfu": ("training MFU (our step, fp32 GEMM peak)", 0.30),
}
INPUTS_NOTE = (
    "Synthetic songs written by `bench/songs.py` (original random text, nothing copyrighted): token lengths are the "
    "quantiles of a log-normal (median 250, sigma 0.6: mean about 300 tokens, about 1% past 1,000, clipped to "
    "24..3,000) in shuffled order; lines of 4-9 Zipf-weighted common vocabulary words with a repeated chorus. Songs are "
    "chunked as train.py does (512 tokens, stride 128). Training: the chunks of a 1,440-song pool are ordered by "
    "transformers' `get_length_grouped_indices` (what train.py's `LengthGroupedSampler` runs; on any dataset of "
    "6,400+ chunks it sorts random megabatches of 50 batches of 32); batches evenly spaced across one megabatch, from "
    "the longest to the shortest, are the timed chunks, fed to both steps. (On a small dataset the sampler shrinks "
    "its megabatches to a single batch and groups nothing, so timing a whole small epoch would misrepresent "
    "train.py at scale.)"
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()`)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    """Physical memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def machine_info(device: torch.device) -> dict:
    """Where and with what the benchmark ran."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(memory_gib(), 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def target_check(name: str, median: float) -> dict:
    """Whether the median meets the target, and the factor by which it falls short (1 when met)."""
    description, goal = TARGETS[name]
    return {"description": description, "goal": goal, "median": median, "met": median >= goal,
            "shortfall_factor": max(goal / median, 1.0) if median > 0 else float("inf")}


def targets(run: dict) -> dict:
    """The three targets checked against a run's medians."""
    return {
        "training_ratio": target_check("training_ratio", run["training"]["ratio"]["median"]),
        "inference_ratio": target_check("inference_ratio", run["inference"]["ratio"]["median"]),
        "training_mfu": target_check("training_mfu", run["training"]["ours"]["mfu"]["median"]),
    }


def spread(stats: dict, scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    """'median (min–max)' of a summary."""
    values = [stats[key] * scale for key in ("median", "min", "max")]
    return f"{values[0]:.{digits}f}{suffix} ({values[1]:.{digits}f}–{values[2]:.{digits}f})"


def percent(stats: dict) -> str:
    return spread(stats, 100, 1, "%")


def render_targets(run: dict) -> list[str]:
    lines = ["| target | measured: median (min–max) | goal | status |", "|---|---|---|---|"]
    sources = {
        "training_ratio": (run["training"]["ratio"], lambda s: spread(s, suffix="×"), lambda g: f"≥ {g:g}×"),
        "inference_ratio": (run["inference"]["ratio"], lambda s: spread(s, suffix="×"), lambda g: f"≥ {g:g}×"),
        "training_mfu": (run["training"]["ours"]["mfu"], percent, lambda g: f"≥ {g:.0%}"),
    }
    for name, check in run["targets"].items():
        stats, measured, goal = sources[name]
        status = "met" if check["met"] else f"**missed**: {check['shortfall_factor']:.2f}× short"
        lines.append(f"| {check['description']} | {measured(stats)} | {goal(check['goal'])} | {status} |")
    return lines


def render_training(training: dict) -> list[str]:
    lines = [
        f"{training['chunks']} chunks, {training['real_tokens']:,} real tokens (mean "
        f"{training['mean_chunk_tokens']:.0f} per chunk), {training['steps_per_epoch']} steps per pass; each round is "
        "one pass of each step kind over these chunks, interleaved step by step in one process (one of our steps, then "
        "a reference step), each on its own copy of the model.",
        "",
        "| step | chunks/s | real tokens/s | executed tokens/s (padding included) | MFU | HFU (padded shapes) |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("ours", "ours (train.py: Trainer, dynamic padding, length-grouped)"),
                        ("reference", "reference (every chunk padded to 512, plain loop)")):
        row = training[name]
        lines.append(f"| {label} | {spread(row['chunks_per_s'])} | {spread(row['tokens_per_s'], digits=0)} | "
                     f"{spread(row['padded_tokens_per_s'], digits=0)} | {percent(row['mfu'])} | {percent(row['hfu'])} |")
    lines += ["", f"Ratio ours / reference (chunks/s, per round): **{spread(training['ratio'], suffix='×')}**."]
    return lines


def render_inference(inference: dict) -> list[str]:
    gpu = inference["ours"].get("peak_gpu_mib") is not None
    header = "| method | songs/s | real tokens/s | MFU | HFU (padded shapes) | peak RSS (MiB) |" + (
        " peak GPU memory (MiB) |" if gpu else "")
    padding = (f" ({1 - inference['real_tokens'] / inference['ours_padded_tokens']:.0%} of its computed tokens are "
               "padding on this catalogue)") if "ours_padded_tokens" in inference else ""
    lines = [
        f"{inference['songs']} songs, {inference['chunks']} chunks, {inference['real_tokens']:,} tokens; each method in "
        "its own process (model loaded once, not timed), rounds alternating which goes first. Ours pads each sorted "
        f"batch to its longest chunk{padding}; the naive loop pads nothing.",
        "",
        header,
        "|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    for name, label in (("ours", "ours: `score_songs` (`lyric-valence predict`)"),
                        ("naive", "naive: `pipeline(\"text-classification\")` per chunk")):
        row = inference[name]
        cells = [label, spread(row["songs_per_s"]), spread(row["tokens_per_s"], digits=0), percent(row["mfu"]),
                 percent(row["hfu"]) if "hfu" in row else "not recorded", f"{row['peak_rss_mib']:.0f}"] + ([f"{row['peak_gpu_mib']:.0f}"] if gpu else [])
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Ratio ours / naive (songs/s, per round): **{spread(inference['ratio'], suffix='×')}**; largest "
              f"difference between the two methods' song scores: {inference['max_score_difference']:.1e}."]
    return lines


def render_limit(run: dict) -> list[str]:
    training, gemm = run["training"], run["training"]["gemm_peak_flops_per_s"]
    return [
        f"Sustained fp32 `torch.matmul` ({run['settings']['gemm_size']}² matrices, back-to-back products for "
        f"{run['settings']['gemm_seconds']:g} s, measured before each training round): "
        f"**{spread(gemm, 1e-9, 1)} GFLOP/s**.",
        "",
        "Model FLOPs (`bench/flops.py`): 2·weights·tokens per layer forward plus attention 4·L²·h; in training, input "
        "gradients through every layer from the lowest one with trainable weights up (another 2·weights·tokens and "
        "8·L²·h) and weight gradients for the trainable weights only. MFU counts real tokens; HFU counts the padded "
        "shapes actually computed.",
        "",
        f"- training, our step: MFU {percent(training['ours']['mfu'])}; by the coarser convention '×3 in every layer "
        f"gradients flow through' (weight gradients of frozen weights counted) it would read "
        f"{percent(training['ours']['mfu_convention'])}",
        f"- training, reference step: MFU {percent(training['reference']['mfu'])}, HFU "
        f"{percent(training['reference']['hfu'])}",
        f"- inference: ours MFU {percent(run['inference']['ours']['mfu'])}, naive MFU "
        f"{percent(run['inference']['naive']['mfu'])}",
    ]


def render_quality(quality: dict) -> list[str]:
    lines = [
        f"EmoBank, its own split (8,062 train / 1,000 test sentences), valence rescaled to 0–1; budget for every mode: "
        f"`{quality['budget_flags']}` (batch 32, best epoch on validation MSE), one seed (42).",
        "",
        "| mode | train.py flags | train s | test Pearson | test MSE | test Spearman | test R² | validation Pearson |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in quality["modes"].items():
        test = row["test"]
        lines.append(f"| {mode} | `{row['flags']}` | {row['train_s']:.0f} | {test['pearson']:.3f} | {test['mse']:.5f} "
                     f"| {test['spearman']:.3f} | {test['r2']:.3f} | {row['validation']['pearson']:.3f} |")
    ridge = quality["ridge_reference"]
    lines.append(f"| frozen mean-pooled MiniLM + ridge (reference, from the EmoBank README) | | | {ridge['pearson']:.3f} "
                 f"| {ridge['mse']:.5f} | | | |")
    return lines


def render_profile(profile: dict) -> list[str]:
    lines = []
    for name, title in (("training_step", "our training step (one length-grouped batch of 32 chunks near the "
                                          f"median length, up to {profile['training_batch']['max_tokens']} tokens)"),
                        ("scoring", f"whole-song scoring of {profile['scoring_songs']} songs")):
        part = profile[name]
        lines += [f"**{title}**: {part['total_s']:.2f} s of {part['counting']}, matrix products (linear layers, "
                  f"attention) {part['matrix_product_share']:.0%} of it.", "",
                  "| operator or kernel | s | share | what it is |", "|---|---|---|---|"]
        lines += [f"| `{shorten(row['op'])}` | {row['s']:.3f} | {row['share']:.1%} | {explain(row['op'])} |"
                  for row in part["top"]]
        lines.append("")
    return lines


def shorten(name: str, width: int = 70) -> str:
    """A profiler event name cut to `width` characters (CUDA kernel names run to hundreds)."""
    return name if len(name) <= width else name[: width - 1] + "…"


def explain(name: str) -> str:
    """What a profiler event does in this model, where known."""
    lowered = name.lower()
    for key, meaning in OPERATION_NOTES.items():
        if key in lowered:
            return meaning
    return ""


def top_overheads(part: dict, count: int = 3) -> str:
    """The `count` costliest events that are not matrix products, with their shares."""
    rows = [row for row in part["top"] if not is_matrix_product(row["op"])][:count]
    return ", ".join(f"`{shorten(row['op'], 40)}` {row['share']:.0%}" + (f" ({explain(row['op'])})"
                     if explain(row["op"]) else "") for row in rows)


def render_limits_note(run: dict) -> list[str]:
    """What bounds each missed target, read off the measurements and the profile."""
    training, inference, checks = run["training"], run["inference"], run["targets"]
    ours, reference = training["ours"], training["reference"]
    lines = []
    if not checks["training_ratio"]["met"]:
        work_ratio = reference["executed_flops"]["median"] / ours["executed_flops"]["median"]
        lines.append(
            f"- **Training ratio.** Padding to 512 makes the reference compute {work_ratio:.2f}× the FLOPs of our "
            f"step on this length mix (mean chunk {training['mean_chunk_tokens']:.0f} tokens): the ratio removing "
            f"padding can give at equal speed per FLOP. Per computed FLOP our step runs at HFU {percent(ours['hfu'])} "
            f"and the reference at {percent(reference['hfu'])}. Beyond the padding, a faster step needs fewer or "
            "cheaper FLOPs or less non-GEMM work; our step's largest non-GEMM costs: "
            f"{top_overheads(run['profile']['training_step'])}.")
    if not checks["inference_ratio"]["met"]:
        padding = 1 - inference["real_tokens"] / inference["ours_padded_tokens"]
        lines.append(
            "- **Inference ratio.** The naive loop runs one chunk at a time and pads nothing; ours computes "
            f"{padding:.0%} padding here and gains only where batching raises the speed per FLOP: HFU "
            f"{percent(inference['ours']['hfu'])} against the naive loop's {percent(inference['naive']['hfu'])}. "
            "Scoring's largest non-GEMM costs: " + top_overheads(run["profile"]["scoring"]) + ".")
    if not checks["training_mfu"]["met"]:
        part = run["profile"]["training_step"]
        lines.append(
            f"- **Training MFU.** Matrix products take {part['matrix_product_share']:.0%} of the profiled step; the "
            f"largest other costs are {top_overheads(part)}, which run far below the GEMM peak.")
    return lines or ["- Every target is met."]


def render_run(key: str, run: dict) -> list[str]:
    """One run's section of RESULTS.md."""
    machine = run["machine"]
    where = machine.get("gpu", f"{machine['cpu']}, {machine['cpu_cores']} cores")
    lines = [
        f"## {key}: {run['encoder_description']} on {where}",
        "",
        f"Command: `{run['command']}` ({run['mode']} mode), {machine['date']}.",
        "",
        f"Machine: {machine['cpu']}, {machine['cpu_cores']} cores ({machine['torch_threads']} torch threads), "
        f"{machine['memory_gib']} GiB" + (f", GPU {machine['gpu']}" if "gpu" in machine else "") + f"; Python "
        f"{machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, peft {machine['peft']}"
        + "".join(f", {name} {machine[name]}" for name in ("tokenizers", "numpy") if name in machine) + ".",
        "",
        *(f"Note: {note}\n" for note in run.get("notes", [])),
        "### Targets",
        "",
        *render_targets(run),
        "",
        "### Inputs",
        "",
        INPUTS_NOTE,
        "",
        "| set | songs or chunks | mean tokens | median | p90 | p99 | max | > 512 | > 1,000 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("training_pool_songs", "timed_training_chunks", "catalogue_songs"):
        row = run["inputs"][name]
        lines.append(f"| {name.replace('_', ' ')} | {row['songs']} | {row['mean']:.0f} | {row['median']:.0f} | "
                     f"{row['p90']:.0f} | {row['p99']:.0f} | {row['max']} | {row['share_over_512']:.0%} | "
                     f"{row['share_over_1000']:.1%} |")
    lines += ["", "### 1. Training throughput (LoRA r=4 on query/value of the last 4 layers, batch 32, fp32)", "",
              *render_training(run["training"]), "", "### 2. Inference throughput (whole songs, batch 32)", "",
              *render_inference(run["inference"]), "", "### 3. Distance to the limit", "", *render_limit(run), ""]
    if "quality" in run:
        lines += ["### 4. Quality", "", *render_quality(run["quality"]), ""]
    lines += ["### Where the time goes (torch.profiler)", "", *render_profile(run["profile"]),
              "### What limits the missed targets", "", *render_limits_note(run), ""]
    return lines


def machine_line(machine: dict) -> str:
    where = machine.get("gpu") or f"{machine['cpu']}, {machine['cpu_cores']} cores"
    return (f"{where}; {machine['date']}; torch {machine['torch']}, transformers {machine['transformers']}, "
            f"peft {machine['peft']}")


def lyrics_cells(metrics: dict | None, keys: tuple[str, ...]) -> list[str]:
    formats = {"mse": "{:.4f}", "pearson": "{:.3f}", "spearman": "{:.3f}", "r2": "{:.3f}"}
    return [formats.get(key, "{:.4f}").format(metrics[key]).replace("nan", "–")
            if metrics and metrics.get(key) is not None else "" for key in keys]


def render_lyrics_goals(rows: dict) -> list[str]:
    """Issue 16's goals on the test split, for the default recipe and the songs preset."""
    if "test" not in rows.get("TF-IDF + ridge", {}) or "test" not in rows.get("mean predictor", {}):
        return []
    ridge, mean = rows["TF-IDF + ridge"]["test"], rows["mean predictor"]["test"]
    lines = ["", f"Goals on the test split: beat TF-IDF + ridge on Pearson ({ridge['pearson']:.3f}) and MSE "
             f"({ridge['mse']:.4f}), and the mean predictor's MSE by 15% (≤ {0.85 * mean['mse']:.4f}):", ""]
    for name in ("default", "recipe_songs", "max_length_128_epochs_6"):
        test = rows.get(name, {}).get("test")
        if test:
            checks = [("Pearson", test["pearson"] > ridge["pearson"], f"{test['pearson']:.3f}"),
                      ("MSE vs ridge", test["mse"] < ridge["mse"], f"{test['mse']:.4f}"),
                      ("MSE vs 0.85 × mean", test["mse"] <= 0.85 * mean["mse"], f"{test['mse']:.4f}")]
            lines.append(f"- {name}: " + "; ".join(f"{what} {value} **{'met' if ok else 'missed'}**"
                                                   for what, ok, value in checks))
    return lines


def render_lyrics(record: dict) -> list[str]:
    """The lyrics section: every method on the Billboard split, aggregations per trial, and the goals."""
    counts = record["counts"]
    rows = record["rows"]
    lines = [
        "## Lyrics: Billboard bag-of-words, song level",
        "",
        f"`{record['data_file']}` (../shared/data/billboard-bow: Billboard Hot-100 songs 1965–2015, Spotify valence, "
        f"lyrics as word counts rendered as text; not in this repository), split by artist and near-duplicate group "
        f"(seed 42): {counts['train_songs']} train / {counts['validation_songs']} validation / "
        f"{counts['test_songs']} test songs. Song-level metrics by the `song_valence` evaluate module; chunks per song "
        f"under the default chunking (512 tokens, stride 128). Fine-tuned rows: packaged all-MiniLM-L6-v2, one "
        f"train.py run each (best epoch on validation MSE), one seed (42).",
        "",
        *([record["note"], ""] if record.get("note") else []),
        f"Command: `{record['command']}`" + (f"; machine: {machine_line(record['machine'])}" if "machine" in record else "")
        + (f"; wall {record['wall_s']:.0f} s" if "wall_s" in record else "") + ".",
        "",
        "| method | flags | val MSE | val r | test MSE | test r | test Spearman | test R² "
        "| test MSE, 1 / 2 / 3+ chunks | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    test_buckets = next((row["test"] for row in rows.values() if "test" in row), {})
    for name, row in rows.items():
        if "test" not in row:
            lines.append(f"| {name} | `{row['flags']}` | {row['status']} | | | | | | | |")
            continue
        buckets = " / ".join(lyrics_cells(row["test"], ("mse_1_chunks", "mse_2_chunks", "mse_3+_chunks")))
        train_s = f"{row['train_s']:.0f}" if row.get("train_s") else ""
        lines.append(
            f"| {name} | `{row['flags']}` | "
            + " | ".join(lyrics_cells(row["validation"], ("mse", "pearson")) + lyrics_cells(row["test"], ("mse", "pearson", "spearman", "r2")))
            + f" | {buckets} | {train_s} |"
        )
    lines += render_lyrics_goals(rows)
    if test_buckets:
        lines += ["", "Test songs per bucket: " + ", ".join(
            f"{test_buckets[f'songs_{bucket}_chunks']} with {bucket} chunks" for bucket in ("1", "2", "3+")) + "."]
    if record["aggregations"]:
        lines += [
            "",
            "Aggregation of chunk scores into a song score, the same trained model scored three ways (validation "
            "picks; test reported):",
            "",
            "| trial | val MSE mean / median / length-weighted | val r mean / median / length-weighted "
            "| test MSE mean / median / length-weighted | test r mean / median / length-weighted |",
            "|---|---|---|---|---|",
        ]
        for name, by_aggregation in record["aggregations"].items():
            cells = [
                " / ".join(lyrics_cells(by_aggregation[aggregation][split], (metric,))[0] for aggregation in by_aggregation)
                for split in ("validation", "test") for metric in ("mse", "pearson")
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(results: dict) -> str:
    """RESULTS.md for every run in results.json."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py` from `bench/results.json`; each run below names the command that produced it. "
        "Timings are medians with (min–max) over repeated rounds. Targets are reported, not tuned for.",
        "",
    ]
    for key, run in sorted(results["runs"].items()):  # cpu-* before cuda-*
        lines += render_run(key, run)
    if "lyrics" in results:  # written by bench/lyrics.py
        lines += render_lyrics(results["lyrics"])
    return "\n".join(lines)
