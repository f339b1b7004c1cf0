#!/usr/bin/env python
"""
Which line-level valence to show (`LyricValenceModel.explain_song`'s `method`): line alone, stanza occlusion, or
whole-song occlusion, measured side by side on the same songs with a trained model.

Songs with known line valence are built from EmoBank test sentences (each sentence a line, labels rescaled to 0..1,
stanzas of 4 lines); the example songs in examples/ (written for this project) are added for recomposition only.
Per method:

- recomposition: |mean of the line valences - the song valence| per song (the issue's criterion: do line scores
  recompose the song score?), mean and 90th percentile;
- line agreement: Pearson r of line valences with the lines' EmoBank labels, over all lines and within songs
  (does the colouring point at the right lines?);
- seconds per song.

    python -m experiments.explain --model outputs/lyric-valence          # about 3 minutes on 2 shared CPU cores

Writes experiments/EXPLAIN.md and experiments/explain_results.json.
"""

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import pearsonr

from bench import harness
from lyric_valence.loading import load_scoring_model
from modeling_lyric_valence import EXPLAIN_METHODS

EMOBANK = harness.REPO / "data" / "emobank.csv"


def emobank_songs(path: Path, songs: int, lines: int, seed: int) -> list[tuple[str, list[float]]]:
    """Songs of `lines` EmoBank test sentences each (stanzas of 4), with each line's valence on the 0..1 scale."""
    table = pd.read_csv(path)
    one_line = ~table["text"].str.contains("\n")
    test = table[(table["split"] == "test") & one_line & (table["text"].str.split().str.len() >= 4)]
    rows = list(test[["text", "V"]].itertuples(index=False))
    random.Random(seed).shuffle(rows)
    built = []
    for start in range(0, songs * lines, lines):
        chosen = rows[start : start + lines]
        stanzas = ["\n".join(text.strip() for text, _ in chosen[i : i + 4]) for i in range(0, len(chosen), 4)]
        built.append(("\n\n".join(stanzas), [(value - 1) / 4 for _, value in chosen]))
    return built


def measure(model, tokenizer, songs, examples) -> dict:
    results = {}
    for method in EXPLAIN_METHODS:
        errors, values, labels, within, seconds = [], [], [], [], []
        for lyrics, gold in songs:
            start = time.perf_counter()
            explanation = model.explain_song(lyrics, tokenizer, method=method)
            seconds.append(time.perf_counter() - start)
            errors.append(abs(np.mean(explanation.line_valence) - explanation.song_valence))
            values += explanation.line_valence
            labels += gold
            within.append(pearsonr(explanation.line_valence, gold).statistic)
        example_errors = []
        for lyrics in examples:
            explanation = model.explain_song(lyrics, tokenizer, method=method)
            example_errors.append(abs(np.mean(explanation.line_valence) - explanation.song_valence))
        results[method] = {
            "recomposition_mae": float(np.mean(errors)),
            "recomposition_p90": float(np.percentile(errors, 90)),
            "examples_recomposition_mae": float(np.mean(example_errors)),
            "line_pearson": float(pearsonr(values, labels).statistic),
            "within_song_pearson": float(np.nanmean(within)),
            "line_valence_std": float(np.std(values)),
            "seconds_per_song": float(np.median(seconds)),
        }
        print(method, json.dumps(results[method]), flush=True)
    return results


def markdown(run: dict) -> str:
    rows = "\n".join(
        f"| {method}{' (chosen)' if method == run['chosen'] else ''} | {r['recomposition_mae']:.4f} | "
        f"{r['recomposition_p90']:.4f} | {r['examples_recomposition_mae']:.4f} | {r['line_pearson']:.3f} | "
        f"{r['within_song_pearson']:.3f} | {r['line_valence_std']:.3f} | {r['seconds_per_song']:.2f} |"
        for method, r in run["methods"].items()
    )
    pearson = run.get("model_test_pearson")
    return f"""# Line-level valence: which method

Command: `{run["command"]}`. Machine: {harness.machine_line(run["machine"])} Model `{run["model"]}`, test Pearson
{float("nan") if pearson is None else pearson:.3f} at song level.

Method: {run["songs"]} songs of {run["lines"]} lines, each line an EmoBank test sentence (4 words or more; stanzas of
4 lines), so every line has a human valence label (rescaled to 0..1); plus the {run["examples"]} example songs in
`examples/` for recomposition. All methods run on the same songs in the same invocation.

- **recomposition**: |mean of a song's line valences − the song valence|, averaged over songs (p90: its 90th
  percentile). Small means the line scores add up to the number shown for the song.
- **line r**: Pearson r between line valences and the lines' labels, all lines pooled; **within-song r**: the same
  inside each song, averaged (does the colouring point at the right lines of a song?).
- **std**: spread of the line valences (a method that gave every line the song score would recompose perfectly and
  explain nothing).

| method | recomposition MAE | p90 | on examples/ | line r | within-song r | std | s / song |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Chosen default: **{run["chosen"]}**, the lowest recomposition error on the EmoBank songs (the issue's criterion);
the agreement with the line labels is reported so the choice can be checked against it.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="outputs/lyric-valence")
    parser.add_argument("--data_file", default=str(EMOBANK))
    parser.add_argument("--songs", type=int, default=30)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    help_ = "Folder for EXPLAIN.md and explain_results.json."
    parser.add_argument("--out", default=str(harness.REPO / "experiments"), help=help_)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model, tokenizer = load_scoring_model(args.model, "cpu")
    songs = emobank_songs(Path(args.data_file), args.songs, args.lines, args.seed)
    examples = [path.read_text(encoding="utf-8") for path in sorted((harness.REPO / "examples").glob("*.txt"))]
    methods = measure(model, tokenizer, songs, examples)
    test_results = Path(args.model) / "test_results.json"
    run = {
        "command": harness.command_line("experiments.explain", argv),
        "machine": harness.machine_info(),
        "model": harness.portable_path(args.model, "--model"),
        "model_test_pearson": (
            json.loads(test_results.read_text()).get("test_pearson") if test_results.is_file() else None
        ),
        "songs": args.songs,
        "lines": args.lines,
        "examples": len(examples),
        "methods": methods,
        "chosen": min(methods, key=lambda method: methods[method]["recomposition_mae"]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain_results.json").write_text(json.dumps(run, indent=2) + "\n")
    (out / "EXPLAIN.md").write_text(markdown(run))
    print(f"chosen: {run['chosen']}; wrote {out / 'EXPLAIN.md'}")


if __name__ == "__main__":
    main()
