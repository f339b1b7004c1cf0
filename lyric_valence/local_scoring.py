"""
Catalogue scoring in this process, or in one process per device (`accelerate launch`, `torchrun`), block by block and
resumable: `lyric-valence predict --engine local` (the default; `lyric_valence.ray_scoring` is `--engine ray`).

    from lyric_valence.loading import ScoringOptions
    from lyric_valence.local_scoring import score_catalogue

    counts = score_catalogue(["songs.csv"], "scores.csv", ScoringOptions("songs-minilm"), keep_columns=["artist"])

`score_catalogue` reads top to bottom: the first shard of the inputs (their errors come before the model loads) ->
load the model -> for each round of shards (one per process): each process takes its own shard (`process_share`),
reads and scores it (`score_shard`), the main process gathers the round's scores in input order, appends them to the
output and records the progress for `resume`. A shard of song files or of a Parquet row group is read by the process
that scores it alone (`lyric_valence.predict_io.Shard`).
"""

import itertools
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from lyric_valence import storage
from lyric_valence.errors import UserError
from lyric_valence.loading import ScoringOptions
from lyric_valence.predict_io import (
    ScoreWriter,
    Shard,
    blank_rows,
    check_not_an_input,
    check_remote_output,
    song_shards,
)

logger = logging.getLogger("lyric_valence")


def check_output_columns(keep_columns: list[str], score_column: str) -> None:
    """Raise a `UserError` when an output column would overwrite a kept input column: nothing is silently lost."""
    own_columns = {"source": "the songs' source", "id": "the songs' id", "text": "the lyrics"}
    for column in keep_columns:
        if column == score_column:
            raise UserError(
                f"--keep_columns {column}: the scores' column --score_column {score_column} has the same name; "
                f"pass --score_column with another name (e.g. --score_column predicted_{column})"
            )
        if column in own_columns:
            raise UserError(
                f"--keep_columns {column}: the output's own {column!r} column ({own_columns[column]}) has the same name"
            )
    if score_column in own_columns:
        raise UserError(f"--score_column {score_column}: the output's own {score_column!r} column has that name")


def check_outputs_spare_inputs(output: str | None, inputs: list[str]) -> None:
    """The output and its progress file are no input (a `UserError` before anything is read or written)."""
    if output is None:
        return
    if storage.is_remote(output):
        check_remote_output(output, f"--output {output}", inputs)
        return
    check_not_an_input(Path(output), f"--output {output}", inputs)
    state = progress_file(output)
    check_not_an_input(state, f"--output {output} (its progress file {state.name})", inputs)


@dataclass
class Progress:
    """How far a run got: input rows read (scored or skipped), output bytes written after the last complete block."""

    settings: dict
    rows_read: int = 0
    output_bytes: int = 0
    scored: int = 0
    skipped: int = 0
    capped: int = 0


def progress_file(output: str) -> Path:
    return Path(f"{output}.progress.json")


def starting_progress(
    settings: dict, resume: bool, output: str | None, inputs: list[str], output_format: str
) -> Progress:
    """
    A fresh `Progress`, or with `resume` the one a killed run left next to its output; `settings` (what decides the
    output's rows and scores) must be the killed run's.
    """
    if not resume:
        return Progress(settings)
    if output is None or not inputs or "-" in inputs:
        raise UserError("--resume needs input files and an --output file")
    if output_format == "parquet":
        raise UserError(f"{output}: --resume needs a csv, tsv or jsonl output (a cut Parquet file is unreadable)")
    if storage.is_remote(output):
        raise UserError(
            f"--output {output}: --resume needs a local --output (an object cannot be cut back and appended to); "
            "for a resumable run on object storage use --engine ray"
        )
    state = progress_file(output)
    if not state.is_file():
        if Path(output).exists():
            raise UserError(f"{output}: nothing to resume (no {state.name}: the run finished or never started)")
        return Progress(settings)
    progress = Progress(**json.loads(state.read_text(encoding="utf-8")))
    if progress.settings != settings:
        changed = sorted(key for key in settings if settings[key] != progress.settings.get(key))
        raise UserError(f"{output}: --resume with other flags than the killed run ({', '.join(changed)})")
    return progress


def save_progress(output: str, progress: Progress) -> None:
    state = progress_file(output)
    state.with_suffix(".tmp").write_text(json.dumps(asdict(progress)), encoding="utf-8")
    os.replace(state.with_suffix(".tmp"), state)


def unread_shards(shards: Iterator[Shard], rows_read: int) -> Iterator[Shard]:
    """The shards after the first `rows_read` rows; a resumed run meets the same shard boundaries as the killed one."""
    for shard in shards:
        if rows_read <= 0:
            yield shard
        rows_read -= shard.rows


def runs_on_cpu(options: ScoringOptions) -> bool:
    """
    Whether the processes score on the CPU: accelerate then joins the processes that torchrun started over gloo (a
    plain `PartialState()` on a machine without an accelerator would leave each one alone, scoring every block).
    """
    import torch

    if options.device is not None:
        return options.device.split(":")[0] == "cpu"
    return options.backend == "onnxruntime" or not torch.accelerator.is_available()


def process_share(shards: Iterator[Shard], index: int, count: int) -> Iterator[Shard | None]:
    """
    Shards dealt round-robin to `count` processes: per round of `count` consecutive shards, the one process `index`
    takes (None when the last round has fewer). Every process walks the same shards in the same order, so the rounds
    line up; the other processes' shards are dropped as they pass, never read (files, row groups) nor scored.
    """
    shards = iter(shards)
    while True:
        mine, seen = None, 0
        for position, shard in enumerate(itertools.islice(shards, count)):
            seen += 1
            if position == index:
                mine = shard
        if not seen:
            return
        yield mine


def score_block(
    block: pd.DataFrame, scorer, tokenizer, options: ScoringOptions, score_column: str
) -> tuple[pd.DataFrame, int]:
    """
    One block's scores (in `score_column`) without the lyrics, and how many of its songs were capped (both logged);
    its empty songs are skipped and logged.
    """
    blank = blank_rows(block["text"])
    log_skipped(block[blank])
    songs = block[~blank]
    capped = []
    scores = options.score(scorer, tokenizer, songs["text"].astype(str).tolist(), capped_songs=capped)
    log_capped(songs.iloc[capped])
    scores = pd.Series(scores, index=songs.index, dtype="float64")
    return songs.drop(columns="text").assign(**{score_column: scores}), len(capped)


def score_shard(shard: Shard, scorer, tokenizer, options: ScoringOptions, score_column: str) -> tuple:
    """
    A shard read and scored block by block: its scores, its row count, and how many of its songs were skipped and
    how many capped.
    """
    blocks = [score_block(block, scorer, tokenizer, options, score_column) for block in shard.read()]
    scores = pd.concat([scores for scores, _ in blocks], ignore_index=True)
    return scores, shard.rows, shard.rows - len(scores), sum(capped for _, capped in blocks)


def log_skipped(rows: pd.DataFrame) -> None:
    for source, song_id in rows[["source", "id"]].itertuples(index=False):
        logger.warning("skipped song %s of %s: no lyrics (empty or whitespace-only)", song_id, source)


def log_capped(rows: pd.DataFrame) -> None:
    for source, song_id in rows[["source", "id"]].itertuples(index=False):
        logger.warning("song %s of %s: scored on its first chunks only (--max_chunks_per_song)", song_id, source)


def score_catalogue(
    inputs: list[str],
    output: str | None,
    options: ScoringOptions,
    *,
    output_format: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    keep_columns: list[str] = (),
    score_column: str = "valence",
    stdin_format: str = "text",
    decimals: int = 6,
    block_size: int = 1024,
    resume: bool = False,
    quiet: bool = False,
) -> dict | None:
    """
    Score every song of `inputs` (song files, folders, tables; '-' or none: standard input as `stdin_format`) with
    `options`, `block_size` songs at a time, and write `source`, `id`, the `keep_columns` and `score_column` (rounded
    to `decimals`) to `output` (None: standard output) in `output_format` (None: from its suffix, else csv). Under
    `accelerate launch` or `torchrun`, each process scores its share of the shards and the main process writes.
    `resume` continues the run a killed one left in `output`. `quiet`: no progress bar. Returns, on the main process,
    the counts `scored`, `skipped` (empty songs) and `capped`; None on the others. Raises `UserError`.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    inputs, keep_columns = list(inputs), list(keep_columns)
    check_outputs_spare_inputs(output, inputs)
    writer = ScoreWriter(output, output_format, decimals, score_column)
    # What decides the output's rows and scores: `resume` continues only a run with the same.
    settings = {
        "inputs": inputs,
        "text_column": text_column,
        "id_column": id_column,
        "keep_columns": keep_columns,
        "score_column": score_column,
        "stdin_format": stdin_format,
        "format": output_format,
        "decimals": decimals,
        "block_size": block_size,
        **options.score_settings(),
    }
    progress = starting_progress(settings, resume, output, inputs, writer.format)
    shards = song_shards(inputs, text_column, id_column, keep_columns, stdin_format, block_size)
    first = next(shards, None)  # the inputs' errors (a missing file or column) come before the model loads
    shards = itertools.chain([] if first is None else [first], shards)
    state = PartialState(cpu=runs_on_cpu(options))
    scorer, tokenizer = options.load()

    # A remote output is one stream, written whole or not at all: no progress file (nothing to resume from).
    tracked = output is not None and not storage.is_remote(output)
    if state.is_main_process:
        writer.open(progress.output_bytes)
        if tracked:
            save_progress(output, progress)  # a run killed in its first block resumes too
    bar = tqdm(
        unit="song",
        initial=progress.rows_read,
        disable=True if quiet or not state.is_main_process else None,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    share = process_share(unread_shards(shards, progress.rows_read), state.process_index, state.num_processes)
    for shard in share:
        scored = [] if shard is None else [score_shard(shard, scorer, tokenizer, options, score_column)]
        for scores, rows, skipped, capped in gather_object(scored):  # the round's shards, in input order
            if state.is_main_process:
                progress.output_bytes = writer.write(scores)
                progress.rows_read += rows
                progress.scored += rows - skipped
                progress.skipped += skipped
                progress.capped += capped
                if tracked:
                    save_progress(output, progress)
            bar.update(rows)
    bar.close()
    if not state.is_main_process:
        return None
    writer.close()
    if tracked:
        progress_file(output).unlink(missing_ok=True)
    return {"scored": progress.scored, "skipped": progress.skipped, "capped": progress.capped}
