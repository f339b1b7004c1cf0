"""The data card of prepared splits: counts per step, leak rates, duplicate label spread, histograms (PNG)."""

import itertools
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from datasets.utils import tqdm  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from .duplicates import leak_rate  # noqa: E402
from .load import PreparedData  # noqa: E402
from .options import DataOptions  # noqa: E402
from .split import SPLITS, group_rows, split_by_group  # noqa: E402

LABEL_BINS = np.linspace(0.0, 1.0, 11)
TOKENIZER_BATCH = 256


def chunks_per_song(tokens: np.ndarray, max_length: int, stride: int, special_tokens: int) -> np.ndarray:
    """Chunks a song of `tokens` content tokens becomes when split as the model does (`return_overflowing_tokens`):
    chunks of `max_length - special_tokens` content tokens, consecutive chunks sharing `stride`."""
    window = max_length - special_tokens
    extra = np.maximum(tokens - window, 0)
    return 1 + np.ceil(extra / (window - stride)).astype(np.int64)


def tokens_per_song(texts: list[str], tokenizer) -> np.ndarray:
    """Content tokens (no special tokens) of each text."""
    counts = []
    for start in tqdm(range(0, len(texts), TOKENIZER_BATCH), desc="tokens", unit="batch"):
        encoded = tokenizer(texts[start : start + TOKENIZER_BATCH], add_special_tokens=False, return_length=True)
        counts.extend(encoded["length"])
    return np.asarray(counts, dtype=np.int64)


def duplicate_label_spread(rows: pd.DataFrame) -> dict[str, float]:
    """
    How much the labels of near-duplicate songs disagree. `irreducible_mse` is the mean squared distance of every
    song's label to its duplicate group's mean label: no model giving near-identical lyrics one score can do better
    on these songs (`_all_songs`: spread over the whole data set).
    """
    in_groups = rows[rows.groupby("duplicate_group")["label"].transform("size") > 1]
    if in_groups.empty:
        return {"groups": 0}
    by_group = in_groups.groupby("duplicate_group")["label"]
    squared_distance = (in_groups["label"] - by_group.transform("mean")) ** 2
    ranges = by_group.max() - by_group.min()
    return {
        "groups": int(by_group.ngroups),
        "largest_group": int(by_group.size().max()),
        "mean_within_group_std": float(by_group.std(ddof=0).mean()),
        "median_label_range": float(ranges.median()),
        "max_label_range": float(ranges.max()),
        "irreducible_mse": float(squared_distance.mean()),
        "irreducible_mse_all_songs": float(squared_distance.sum() / len(rows)),
    }


def leak_rates_by_grouping(prepared: PreparedData, options: DataOptions) -> dict[str, float]:
    """Test leak rate (share of test songs with a near-duplicate in train) of seeded splits grouped in each way."""
    groupings = {
        "songs (no grouping)": replace(options, group_split=False, group_by_duplicates=False),
        "artist": replace(options, group_split=True, group_by_duplicates=False),
        "near-duplicates": replace(options, group_split=False, group_by_duplicates=True),
        "artist + near-duplicates": replace(options, group_split=True, group_by_duplicates=True),
    }
    if "artist" not in prepared.rows:
        groupings = {name: grouping for name, grouping in groupings.items() if "artist" not in name}
    rates = {}
    for name, grouping in groupings.items():
        group = group_rows(prepared.rows, prepared.duplicates, grouping).to_numpy()
        split = split_by_group(group, options.validation_fraction, options.test_fraction, prepared.seed)
        rates[name] = leak_rate(prepared.duplicates, split)
    return rates


def label_histograms(rows: pd.DataFrame) -> dict[str, list[int]]:
    """Songs per label bin (0-0.1, ..., 0.9-1) in each split."""
    return {name: np.histogram(rows.loc[rows["split"] == name, "label"], LABEL_BINS)[0].tolist() for name in SPLITS}


def distribution(values: np.ndarray) -> dict[str, float]:
    """Mean and percentiles."""
    percentiles = dict(zip(("p10", "p50", "p90", "p99"), np.percentile(values, [10, 50, 90, 99]).tolist(), strict=True))
    return {"mean": float(values.mean()), **percentiles, "max": int(values.max())}


def plot_histograms(out: Path, rows: pd.DataFrame, tokens: np.ndarray | None, chunks: np.ndarray | None) -> list[str]:
    """Write labels.png (per split) and, given token counts, tokens_per_song.png and chunks_per_song.png."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in SPLITS:
        labels = rows.loc[rows["split"] == name, "label"]
        axes.hist(
            labels, bins=LABEL_BINS, density=True, histtype="step", linewidth=1.5, label=f"{name} ({len(labels)})"
        )
    axes.set(xlabel="valence label", ylabel="density", title="Label distribution per split")
    axes.legend()
    figure.savefig(out / "labels.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    if tokens is None:
        return ["labels.png"]
    for file_name, values, xlabel, bins in (
        ("tokens_per_song.png", tokens, "tokens per song", 50),
        ("chunks_per_song.png", chunks, "chunks per song", np.arange(0.5, chunks.max() + 1.5)),
    ):
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.hist(values, bins=bins)
        axes.set(xlabel=xlabel, ylabel="songs", title=f"{xlabel.capitalize()} ({len(values)} songs)")
        figure.savefig(out / file_name, dpi=100, bbox_inches="tight")
        plt.close(figure)
    return ["labels.png", "tokens_per_song.png", "chunks_per_song.png"]


def summarise(
    prepared: PreparedData,
    options: DataOptions,
    source: str,
    tokenizer_name: str | None,
    max_length: int,
    stride: int,
) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
    """All figures of the data card as a JSON-ready dict, and the token and chunk counts per song (None without
    a tokenizer)."""
    rows = prepared.rows
    summary = {
        "source": source,
        "options": {**vars(options), "seed": prepared.seed},
        "columns": vars(prepared.columns),
        "counts": prepared.counts,
        "seconds_per_step": dict(prepared.seconds),
        "languages_before_filtering": prepared.languages,
        "duplicate_label_spread": duplicate_label_spread(rows),
        "test_leak_rate_by_grouping": leak_rates_by_grouping(prepared, options),
        "label_histograms": {"bins": LABEL_BINS.round(2).tolist(), **label_histograms(rows)},
        "label_mean": {name: float(rows.loc[rows["split"] == name, "label"].mean()) for name in SPLITS},
    }
    tokens = chunks = None
    if tokenizer_name is not None:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
        start = time.perf_counter()
        tokens = tokens_per_song(rows["text"].tolist(), tokenizer)
        summary["seconds_per_step"]["tokens"] = round(time.perf_counter() - start, 2)
        chunks = chunks_per_song(tokens, max_length, stride, tokenizer.num_special_tokens_to_add())
        summary["tokenizer"] = {"name": tokenizer_name, "max_length": max_length, "stride": stride}
        summary["tokens_per_song"] = distribution(tokens)
        summary["chunks_per_song"] = distribution(chunks)
    return summary, tokens, chunks


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_format(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def data_card_markdown(summary: dict, images: list[str]) -> str:
    """The data card as Markdown, from `summarise`'s dict."""
    counts = summary["counts"]
    sections = [
        f"# Data card: {summary['source']}",
        "## Counts per step\n\n" + markdown_table(["step", "value"], [[key, value] for key, value in counts.items()]),
        "`duplicates_merged` songs were found to be near-duplicates of an earlier song and share its `duplicate_group` "
        "(they are kept, never split apart). A leak rate is the share of test (validation) songs with a "
        "near-duplicate in train.",
    ]
    sections.append(
        "## Test leak rate of seeded splits by grouping (same seed and fractions)\n\n"
        + markdown_table(["split grouped by", "test leak rate"], list(summary["test_leak_rate_by_grouping"].items()))
    )
    spread = summary["duplicate_label_spread"]
    sections.append(
        "## Label spread inside near-duplicate groups\n\n"
        + markdown_table(["figure", "value"], list(spread.items()))
        + "\n\n`irreducible_mse`: mean squared distance of a grouped song's label to its group's mean label, a floor "
        "for the error of any model on those songs."
    )
    if summary["languages_before_filtering"]:
        top = sorted(summary["languages_before_filtering"].items(), key=lambda item: -item[1])[:15]
        sections.append("## Languages before filtering (top 15)\n\n" + markdown_table(["language", "songs"], top))
    bins = summary["label_histograms"]["bins"]
    bin_names = [f"{low:.1f}-{high:.1f}" for low, high in itertools.pairwise(bins)]
    sections.append(
        "## Label histogram per split\n\n"
        + markdown_table(
            ["split", "mean", *bin_names],
            [[name, summary["label_mean"][name], *summary["label_histograms"][name]] for name in SPLITS],
        )
    )
    if "tokens_per_song" in summary:
        tokenizer = summary["tokenizer"]
        sections.append(
            f"## Tokens and chunks per song\n\nTokenizer `{tokenizer['name']}`, chunks of {tokenizer['max_length']} "
            f"tokens sharing {tokenizer['stride']}.\n\n"
            + markdown_table(
                ["per song", *summary["tokens_per_song"]],
                [["tokens", *summary["tokens_per_song"].values()], ["chunks", *summary["chunks_per_song"].values()]],
            )
        )
    sections.append("## Figures\n\n" + "\n".join(f"![{image}]({image})" for image in images))
    return "\n\n".join(sections) + "\n"


def write_data_card(out: Path, summary: dict, rows: pd.DataFrame, tokens, chunks) -> None:
    """Write data_card.md, data_card.json and the histogram PNGs into `out`."""
    images = plot_histograms(out, rows, tokens, chunks)
    (out / "data_card.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "data_card.md").write_text(data_card_markdown(summary, images))
