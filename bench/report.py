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

from bench.speed import is_matrix_product, summary

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
    "nvjet": "matrix product kernel (cuBLAS, Hopper)",
    "sdpa": "fused attention kernel (cuDNN)",
    "copy_": "copies and layout changes",
    "layer_norm": "layer norm",
    "gelu": "GELU activation",
    "isneginf": "attention-mask checks",
    "where": "attention mask applied",
    "adamw": "optimizer",
}
# Goals per device type: (description, goal); MFU on CUDA is against the data-sheet bf16 dense peak.
TARGETS = {
    "cpu": {
        "training_ratio": ("training throughput, our fastest step / reference step", 3.0),
        "inference_ratio": ("whole-song inference, ours / naive per-chunk pipeline", 5.0),
        "training_mfu": ("training MFU (our fastest step, measured fp32 GEMM peak)", 0.30),
    },
    "cuda": {
        "training_ratio": ("training throughput, our fastest step / reference step", 4.0),
        "inference_ratio": ("whole-song inference, ours / naive per-chunk pipeline", 5.0),
        "training_mfu": ("training MFU (our fastest step, data-sheet bf16 dense peak)", 0.25),
        "reference_run_minutes": ("reference run (24k songs, 20 epochs) with this package, minutes", 15.0),
    },
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


def device_type(run: dict) -> str:
    return run["machine"]["device"].split(":")[0]


def fastest(training: dict) -> dict:
    """The record of our fastest training variant."""
    return training["variants"][training["best"]]


def bf16_peak_mfu(training: dict) -> dict | None:
    """Our fastest variant's MFU against the data-sheet bf16 dense peak, per round (None without a known peak)."""
    peak = training.get("bf16_dense_peak_flops_per_s")
    if not peak:
        return None
    return summary([flops / peak for flops in fastest(training)["model_flops_per_s"]["runs"]])


def target_sources(run: dict) -> dict:
    """Per target: (measured summary or value, how to print it, how to print the goal, whether lower is better)."""
    training = run["training"]
    ratio = (lambda s: spread(s, suffix="×"), lambda g: f"≥ {g:g}×", False)
    sources = {"training_ratio": (fastest(training)["ratio"], *ratio)}
    if "inference" in run:
        sources["inference_ratio"] = (run["inference"]["ratio"], *ratio)
    mfu = bf16_peak_mfu(training) if device_type(run) == "cuda" else fastest(training)["mfu"]
    if mfu is not None:
        sources["training_mfu"] = (mfu, percent, lambda g: f"≥ {g:.0%}", False)
    if device_type(run) == "cuda" and "projection" in training:
        minutes = training["projection"]["ours_minutes"]
        sources["reference_run_minutes"] = ({"median": minutes}, lambda s: f"{s['median']:.1f}",
                                            lambda g: f"< {g:g}", True)
    return sources


def targets(run: dict) -> dict:
    """The device's targets checked against a run's medians."""
    checks = {}
    for name, (stats, _, _, lower_is_better) in target_sources(run).items():
        description, goal = TARGETS[device_type(run)][name]
        median = stats["median"]
        met = median < goal if lower_is_better else median >= goal
        short = median / goal if lower_is_better else (goal / median if median > 0 else float("inf"))
        checks[name] = {"description": description, "goal": goal, "median": median, "met": met,
                        "shortfall_factor": max(short, 1.0)}
    return checks


def spread(stats: dict, scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    """'median (min–max)' of a summary."""
    values = [stats[key] * scale for key in ("median", "min", "max")]
    return f"{values[0]:.{digits}f}{suffix} ({values[1]:.{digits}f}–{values[2]:.{digits}f})"


def percent(stats: dict) -> str:
    return spread(stats, 100, 1, "%")


def render_targets(run: dict) -> list[str]:
    lines = ["| target | measured: median (min–max) | goal | status |", "|---|---|---|---|"]
    sources = target_sources(run)
    for name, check in targets(run).items():
        stats, measured, goal, _ = sources[name]
        status = "met" if check["met"] else f"**missed**: {check['shortfall_factor']:.2f}× short"
        lines.append(f"| {check['description']} | {measured(stats)} | {goal(check['goal'])} | {status} |")
    return lines


def render_training(training: dict) -> list[str]:
    gpu_peak = training.get("bf16_dense_peak_flops_per_s")
    lines = [
        f"{training['chunks']} chunks, {training['real_tokens']:,} real tokens (mean "
        f"{training['mean_chunk_tokens']:.0f} per chunk), {training['steps_per_epoch']} steps per pass; each round is "
        "one pass of each of our variants over these chunks, each interleaved step by step with a pass of the "
        "reference step over the same chunks (one of our steps, then a reference step), every one on its own copy of "
        "the model. Ours: train.py's Trainer, dynamic padding, length-grouped batches, no dropout on attention "
        "probabilities, with the variant's train.py flags; the reference: every chunk padded to 512, a plain fp32 "
        + ("loop, the encoder's own dropouts (0.1 on attention probabilities too). " if training.get(
            "reference_dropouts") == "encoder's own" else "loop, no dropout on attention probabilities (as ours). ")
        + "Warm-up: the first step and the Trainer's set-up (compilation included), not in the timings.",
        "",
        "| step | train.py flags | chunks/s | real tokens/s | MFU (measured fp32 GEMM peak) | HFU (padded shapes) | "
        + ("MFU (data-sheet bf16 dense peak) | " if gpu_peak else "") + "warm-up s | ours / reference |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if gpu_peak else ""),
    ]
    for name, row in [*training["variants"].items(), ("reference", training["reference"])]:
        flags = f"`{row['flags']}`" if row.get("flags") else ""
        cells = [f"ours, {name}" if name != "reference" else "reference (pad to 512, fp32, plain loop)", flags,
                 spread(row["chunks_per_s"]), spread(row["tokens_per_s"], digits=0), percent(row["mfu"]),
                 percent(row["hfu"])]
        if gpu_peak:
            cells.append(percent(summary([f / gpu_peak for f in row["model_flops_per_s"]["runs"]])))
        warmup = row.get("warmup_s")
        cells += [f"{warmup:.1f}" if warmup is not None else "", spread(row["ratio"], suffix="×") if "ratio" in row
                  else "1"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Fastest: **{training['best']}**, **{spread(fastest(training)['ratio'], suffix='×')}** the "
              "reference step's chunks/s (per round)."]
    lines += [f"- {name} did not run: {error}" for name, error in training.get("failed", {}).items()]
    projection = training.get("projection")
    if projection:
        lines += ["", f"Projected wall time of the reference run ({projection['songs']:,} songs of this length mix, "
                  f"{projection['chunks_per_song']:.2f} chunks per song, {projection['epochs']} epochs, training steps "
                  f"only) on this machine: **{projection['ours_minutes']:.1f} min with this package** "
                  f"({projection['variant']}), {projection['reference_minutes']:.1f} min with the reference step; "
                  f"the reference notebook took {projection['notebook_minutes']} min on a Colab GPU."]
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
        *render_gemm_probe(training),
        "",
        "Model FLOPs (`bench/flops.py`): 2·weights·tokens per layer forward plus attention 4·L²·h; in training, input "
        "gradients through every layer from the lowest one with trainable weights up (another 2·weights·tokens and "
        "8·L²·h) and weight gradients for the trainable weights only. MFU counts real tokens; HFU counts the padded "
        "shapes actually computed.",
        "",
        f"- training, our fastest step ({training['best']}): MFU {percent(fastest(training)['mfu'])} of the fp32 "
        "GEMM peak" + (f", {percent(bf16_peak_mfu(training))} of the data-sheet bf16 dense peak" if bf16_peak_mfu(
            training) else "") + "; by the coarser "
        "convention '×3 in every layer gradients flow through' (weight gradients of frozen weights counted) it would "
        f"read {percent(fastest(training)['mfu_convention'])}",
        f"- training, reference step: MFU {percent(training['reference']['mfu'])}, HFU "
        f"{percent(training['reference']['hfu'])}",
    ] + ([f"- inference: ours MFU {percent(run['inference']['ours']['mfu'])}, naive MFU "
          f"{percent(run['inference']['naive']['mfu'])}"] if "inference" in run else [])


def render_gemm_probe(training: dict) -> list[str]:
    """The fp32-vs-bf16 GEMM probe and the data-sheet bf16 peak, where recorded."""
    lines = []
    probe = training.get("gemm_probe")
    if probe:
        lines.append(f"fp32 against bf16 `torch.matmul` ({probe['size']}² matrices, 1 s each): "
                     f"{probe['float32_flops_per_s'] / 1e9:.1f} against {probe['bfloat16_flops_per_s'] / 1e9:.1f} "
                     "GFLOP/s.")
    if training.get("bf16_dense_peak_flops_per_s"):
        lines.append(f"Data-sheet dense bf16 peak of this GPU: {training['bf16_dense_peak_flops_per_s'] / 1e12:.0f} "
                     "TFLOP/s (the MFU target's denominator).")
    return [" ".join(lines)] if lines else []


def render_quality(quality: dict) -> list[str]:
    lines = [
        f"EmoBank, its own split (8,062 train / 1,000 test sentences), valence rescaled to 0–1; budget for every mode: "
        f"`{quality['budget_flags']}` (batch 32, best epoch on validation MSE), one seed (42)"
        + ("; the runs trained at the same time on the one GPU, so their train seconds overlap." if quality.get(
            "parallel") else "."),
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


def render_profile(run: dict) -> list[str]:
    lines = []
    training = run["training"]["profile"]
    parts = [(training, f"our training step ({run['training']['best']}; one length-grouped batch of 32 chunks near the "
                        f"median length, up to {training['max_tokens']} tokens)")]
    if "inference" in run:
        parts.append((run["inference"]["profile"], f"whole-song scoring of {run['inference']['profile']['songs']} songs"))
    for part, title in parts:
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
    training, inference, checks = run["training"], run.get("inference"), targets(run)
    ours, reference = fastest(training), training["reference"]
    lines = []
    if not checks["training_ratio"]["met"]:
        work_ratio = reference["executed_flops"]["median"] / ours["executed_flops"]["median"]
        lines.append(
            f"- **Training ratio.** Padding to 512 makes the reference compute {work_ratio:.2f}× the FLOPs of our "
            f"step on this length mix (mean chunk {training['mean_chunk_tokens']:.0f} tokens): the ratio removing "
            f"padding can give at equal speed per FLOP. Per computed FLOP our step runs at HFU {percent(ours['hfu'])} "
            f"and the reference at {percent(reference['hfu'])}. Beyond the padding, a faster step needs fewer or "
            "cheaper FLOPs or less non-GEMM work; our step's largest non-GEMM costs: "
            f"{top_overheads(training['profile'])}.")
    if "inference_ratio" in checks and not checks["inference_ratio"]["met"]:
        padding = 1 - inference["real_tokens"] / inference["ours_padded_tokens"]
        lines.append(
            "- **Inference ratio.** The naive loop runs one chunk at a time and pads nothing; ours computes "
            f"{padding:.0%} padding here and gains only where batching raises the speed per FLOP: HFU "
            f"{percent(inference['ours']['hfu'])} against the naive loop's {percent(inference['naive']['hfu'])}. "
            "Scoring's largest non-GEMM costs: " + top_overheads(inference["profile"]) + ".")
    if "training_mfu" in checks and not checks["training_mfu"]["met"]:
        part = training["profile"]
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
    kept = run.get("kept", {})
    lines += ["", "### 1. Training throughput (LoRA r=4 on query/value of the last 4 layers, batch 32)", "",
              *([f"Kept from the run of {kept['training']}.", ""] if "training" in kept else []),
              *render_training(run["training"]), ""]
    if "inference" in run:
        lines += ["### 2. Inference throughput (whole songs, `score_songs` defaults of the run's date)", "",
                  *([f"Kept from the run of {kept['inference']}.", ""] if "inference" in kept else []),
                  *render_inference(run["inference"]), ""]
    lines += ["### 3. Distance to the limit", "", *render_limit(run), ""]
    for section, title in (("quality", "4. Quality of the fine-tuning modes"),
                           ("precision", "5. Quality in mixed precision (lora, same seed and budget)")):
        if section in run:
            lines += [f"### {title}", "", *([f"Kept from the run of {kept[section]}.", ""] if section in kept else []),
                      *render_quality(run[section]), ""]
    lines += ["### Where the time goes (torch.profiler)", "", *render_profile(run),
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
        f"`{record['data_file']}` (the Billboard bag-of-words set: Hot-100 songs 1965–2015, Spotify valence, "
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


OTHER_SECTIONS = "<!-- predict-memory"


def write_markdown(results: dict, markdown_path: Path) -> None:
    """Render `results` into RESULTS.md, keeping the sections other bench scripts write (bench/predict_memory.py)."""
    previous = markdown_path.read_text() if markdown_path.exists() else ""
    kept = previous[previous.index(OTHER_SECTIONS):] if OTHER_SECTIONS in previous else ""
    markdown_path.write_text(render_markdown(results) + "\n" + ("\n" + kept if kept else ""))


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
