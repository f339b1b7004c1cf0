"""
`lyric-valence predict`: score whole songs from text files, folders, tables or standard input, block by block.

    lyric-valence predict happy.txt                                   # the shipped songs-minilm model (Spotify valence)
    lyric-valence predict songs.csv --keep_columns artist --output scores.parquet   # lyrics in lyrics, text or seq
    accelerate launch -m lyric_valence.cli predict songs.csv --output scores.csv    # one process per GPU
    torchrun --nproc_per_node 2 -m lyric_valence.cli predict songs.csv --output scores.csv   # 2 processes on the CPU

`main` reads top to bottom: parse -> quiet -> load the model -> for each round of shards (one per process): each
process takes its own shard (`process_share`), reads and scores it (`score_shard`), the main process gathers the
round's scores in input order, appends them to the output and records the progress for `--resume`. A shard of song
files or of a Parquet row group is read by the process that scores it alone (`lyric_valence.predict_io.Shard`).
"""

import argparse
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from lyric_valence.arguments import ArgumentParser
from lyric_valence.errors import UserError
from lyric_valence.loading import DEFAULT_MODEL, load_scoring_model
from lyric_valence.predict_io import (
    OUTPUT_FORMATS,
    STDIN_FORMATS,
    ScoreWriter,
    Shard,
    blank_rows,
    check_not_an_input,
    song_shards,
)

EXIT_NOTHING_SCORED = 1
# modeling_lyric_valence.DEFAULT_MAX_CHUNKS_PER_SONG, written out: importing the model code (torch) would slow --help.
MAX_CHUNKS_PER_SONG = 64
logger = logging.getLogger("lyric_valence")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def add_model_arguments(parser: ArgumentParser) -> None:
    """`--model`, `--encoder_path` and `--device`, as every command that loads a model takes them (predict, explain,
    demo)."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="A shipped model: songs-minilm (the default, offline) or songs-mpnet (bert-base-sized; its encoder comes "
        "from the Hub on first use), both predicting the Spotify (audio) valence of whole songs from their lyrics; "
        "or a folder written by train.py (outputs/lyric-valence: the EmoBank quickstart predicts text valence) or a "
        "Hub repo id holding one, loaded with this package's classes, never with remote code. Default: %(default)s.",
    )
    parser.add_argument(
        "--encoder_path",
        default=None,
        help="For songs-mpnet: a local copy of its encoder, sentence-transformers/all-mpnet-base-v2 (default: the "
        "Hub's, downloaded once into its cache).",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: the process's accelerator)."
    )


def predict_parser() -> ArgumentParser:
    parser = ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="lyric-valence predict",
        description="Score whole songs: one valence (0 sad/negative .. 1 happy/positive) per song. By default with "
        "the shipped songs-minilm model, which predicts Spotify valence (how the recording sounds) from the lyrics; "
        "a model trained on EmoBank predicts text valence (how positive the words are).",
        epilog="Output columns, one row per scored song in input order:\n"
        "  source    the file the song came from (<stdin> for standard input)\n"
        "  id        the --id_column value (else a table's id, song_id or unnamed index column); else the 0-based "
        "row number in its table; a .txt file's name without suffix\n"
        "  ...       the --keep_columns, copied from the input\n"
        "  valence   0 (sad/negative) .. 1 (happy/positive), rounded to --decimals (named by --score_column)\n"
        "Songs with empty lyrics are skipped and counted; a song longer than --max_chunks_per_song chunks is scored on "
        "its opening, named and counted.\n"
        "An --output that is an input, or a song file of an input folder (also through a link), is refused.\n"
        "Exit codes: 0 scored, 1 nothing to score, 2 bad input.\n"
        "Every flag takes both spellings: --text_column and --text-column.\n"
        "Several devices: accelerate launch -m lyric_valence.cli predict ... (shards dealt round-robin to the processes;\n"
        "each process reads only its own song files and Parquet row groups, see --block_size).",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="Songs to score: .txt files (each one song), folders (their .txt files), CSV/TSV/JSONL/JSON/Parquet "
        "tables (one song per row, see --text_column), or '-' / nothing for standard input (see --stdin_format).",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--text_column",
        default=None,
        help="Column of a table holding the lyrics (default: the table's first of lyrics, text, seq, the columns "
        "train recognises).",
    )
    parser.add_argument(
        "--id_column",
        default=None,
        help="Column of a table copied to the output as `id` (default: the table's first of id, song_id and an "
        "unnamed index column; else the row number).",
    )
    parser.add_argument(
        "--keep_columns", nargs="+", default=[], metavar="COLUMN", help="Input columns copied to the output."
    )
    parser.add_argument(
        "--score_column",
        default="valence",
        help="Name of the output column holding the scores (default: %(default)s); it may not be a kept column's.",
    )
    parser.add_argument(
        "--stdin_format",
        choices=STDIN_FORMATS,
        default="text",
        help="Standard input is one song (text, the default) or a table, one song per row (csv, jsonl).",
    )
    parser.add_argument("--output", default=None, help="File to write the scores to (default: standard output).")
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="Output format (default: from the --output suffix, else csv).",
    )
    parser.add_argument(
        "--decimals", type=int, default=6, help="Digits after the point of each score (default: %(default)s)."
    )
    parser.add_argument(
        "--block_size",
        type=positive_int,
        default=1024,
        help="Songs read, scored and written at a time; memory grows with it, not with the catalogue. Parquet files "
        "whose row groups hold at most this many rows are split by row group, each read by one process only "
        "(default: %(default)s).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue a killed run after its last complete shard (same inputs and flags; csv, tsv or jsonl --output).",
    )
    parser.add_argument(
        "--max_chunks_per_song",
        type=positive_int,
        default=MAX_CHUNKS_PER_SONG,
        metavar="N",
        help="Chunks scored per song at most: a longer song is scored on its first N chunks (as if its text ended "
        "there), named on stderr and counted in the summary. The default, %(default)s, is about 24,600 tokens with "
        "512-token chunks and stride 128, many times the longest real song, so only a pathological one (a book or "
        "a log pasted whole) is cut, and it costs a catalogue no more than that.",
    )
    parser.add_argument(
        "--batch_tokens",
        type=positive_int,
        default=None,
        help="Tokens per forward pass: length-sorted chunks are batched so that chunks x longest chunk stays within "
        "it; at least the model's max_length (default: 2048 on CPU, 65536 on GPU; bench/SCORING_RESULTS.md).",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="Precision of the model. On a GPU, bfloat16 or float16: faster than float32 at float32's quality "
        "(bench/SCORING_RESULTS.md); float16 needs a GPU. Default: float32.",
    )
    parser.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime"),
        help="torch (default), or onnxruntime on CPU: the model exported to ONNX and fused by onnxruntime on the first "
        "run, the export kept in the model folder's onnx/ (or ~/.cache/lyric-valence) for later runs (needs pip "
        "install onnxruntime onnx); with --quantize int8 the fastest CPU mode at float32's quality "
        "(bench/SCORING_RESULTS.md).",
    )
    parser.add_argument(
        "--quantize",
        default=None,
        choices=("int8",),
        help="int8: dynamic int8 quantization, weights per channel, CPU only, with --dtype float32. Recommended with "
        "--backend onnxruntime (float32's quality); not with torch (torch.ao loses Pearson). Speed and quality of "
        "each mode: bench/SCORING_RESULTS.md.",
    )
    parser.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local (default): this process, or one per device under accelerate launch. ray: a Ray cluster "
        "(RAY_ADDRESS, else a local one) reads Parquet/CSV/JSONL files, folders or glob patterns and writes one "
        "Parquet file per input file into the --output folder; --resume continues a killed run (docs/distributed.md; "
        'pip install "lyric-valence[ray]").',
    )
    parser.add_argument(
        "--num_workers",
        type=positive_int,
        default=1,
        help="--engine ray: model actors scoring in parallel (default: 1).",
    )
    parser.add_argument(
        "--gpus_per_worker", type=float, default=0, help="--engine ray: GPUs each actor holds (default: 0, the CPU)."
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="Print errors only: no progress, notices or summary."
    )
    return parser


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
    check_not_an_input(Path(output), f"--output {output}", inputs)
    state = progress_file(output)
    check_not_an_input(state, f"--output {output} (its progress file {state.name})", inputs)


def score_texts(
    model, tokenizer, texts: list[str], batch_tokens: int | None, max_chunks_per_song: int
) -> tuple[list[float], list[int]]:
    """
    The valence of each song in `texts`, this process's share of a block, and the positions of the songs scored on
    their first `max_chunks_per_song` chunks only.
    """
    capped = []
    scores = model.score_songs(
        texts, tokenizer, batch_tokens=batch_tokens, max_chunks_per_song=max_chunks_per_song, capped_songs=capped
    )
    return scores, capped


@dataclass
class Progress:
    """How far a run got: input rows read (scored or skipped), output bytes written after the last complete block."""

    settings: dict
    rows_read: int = 0
    output_bytes: int = 0
    scored: int = 0
    skipped: int = 0
    capped: int = 0


def run_settings(args: argparse.Namespace) -> dict:
    """The flags that decide the output's rows and scores: `--resume` continues only a run with the same ones."""
    keys = (
        "inputs",
        "model",
        "text_column",
        "id_column",
        "keep_columns",
        "score_column",
        "stdin_format",
        "format",
        "decimals",
        "block_size",
        "backend",
        "dtype",
        "quantize",
        "max_chunks_per_song",
    )
    return {key: getattr(args, key) for key in keys}


def progress_file(output: str) -> Path:
    return Path(f"{output}.progress.json")


def starting_progress(args: argparse.Namespace, output_format: str) -> Progress:
    """A fresh `Progress`, or with `--resume` the one a killed run left next to its output."""
    settings = run_settings(args)
    if not args.resume:
        return Progress(settings)
    if args.output is None or not args.inputs or "-" in args.inputs:
        raise UserError("--resume needs input files and an --output file")
    if output_format == "parquet":
        raise UserError(f"{args.output}: --resume needs a csv, tsv or jsonl output (a cut Parquet file is unreadable)")
    state = progress_file(args.output)
    if not state.is_file():
        if Path(args.output).exists():
            raise UserError(f"{args.output}: nothing to resume (no {state.name}: the run finished or never started)")
        return Progress(settings)
    progress = Progress(**json.loads(state.read_text(encoding="utf-8")))
    if progress.settings != settings:
        changed = sorted(key for key in settings if settings[key] != progress.settings.get(key))
        raise UserError(f"{args.output}: --resume with other flags than the killed run ({', '.join(changed)})")
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


def runs_on_cpu(device: str | None, backend: str) -> bool:
    """
    Whether the processes score on the CPU: accelerate then joins the processes that torchrun started over gloo (a
    plain `PartialState()` on a machine without an accelerator would leave each one alone, scoring every block).
    """
    import torch

    if device is not None:
        return device.split(":")[0] == "cpu"
    return backend == "onnxruntime" or not torch.accelerator.is_available()


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


def score_block(block: pd.DataFrame, model, tokenizer, args: argparse.Namespace) -> tuple[pd.DataFrame, int]:
    """
    One block's scores without the lyrics, and how many of its songs were capped (both logged); its empty songs are
    skipped and logged.
    """
    blank = blank_rows(block["text"])
    log_skipped(block[blank])
    songs = block[~blank]
    scores, capped = score_texts(
        model, tokenizer, songs["text"].astype(str).tolist(), args.batch_tokens, args.max_chunks_per_song
    )
    log_capped(songs.iloc[capped])
    scores = pd.Series(scores, index=songs.index, dtype="float64")
    return songs.drop(columns="text").assign(**{args.score_column: scores}), len(capped)


def score_shard(shard: Shard, model, tokenizer, args: argparse.Namespace) -> tuple:
    """
    A shard read and scored block by block: its scores, its row count, and how many of its songs were skipped and
    how many capped.
    """
    blocks = [score_block(block, model, tokenizer, args) for block in shard.read()]
    scores = pd.concat([scores for scores, _ in blocks], ignore_index=True)
    return scores, shard.rows, shard.rows - len(scores), sum(capped for _, capped in blocks)


def log_skipped(rows: pd.DataFrame) -> None:
    for source, song_id in rows[["source", "id"]].itertuples(index=False):
        logger.warning("skipped song %s of %s: no lyrics (empty or whitespace-only)", song_id, source)


def log_capped(rows: pd.DataFrame) -> None:
    for source, song_id in rows[["source", "id"]].itertuples(index=False):
        logger.warning("song %s of %s: scored on its first chunks only (--max_chunks_per_song)", song_id, source)


def silence(quiet: bool) -> None:
    """No notices (and with `quiet` no progress bars) from the libraries; bars only on a terminal."""
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if quiet or not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
    logger.setLevel(logging.ERROR if quiet else logging.NOTSET)


def report(scored: int, skipped: int, destination: str, capped: int, max_chunks_per_song: int) -> int:
    """The run's summary line; exit 1 when nothing was scored."""
    unit = "chunk" if max_chunks_per_song == 1 else "chunks"
    capped_note = f" ({capped} capped at {max_chunks_per_song} {unit})" if capped else ""
    logger.warning(
        "scored %d song%s%s, skipped %d empty; scores written to %s",
        scored,
        "" if scored == 1 else "s",
        capped_note,
        skipped,
        destination,
    )
    if scored == 0:
        print(
            "lyric-valence predict: error: nothing to score: "
            f"{'every song was empty' if skipped else 'the input holds no songs'}",
            file=sys.stderr,
        )
        return EXIT_NOTHING_SCORED
    return 0


def ray_main(args: argparse.Namespace) -> int:
    """`--engine ray`: the catalogue scored by `lyric_valence.ray_scoring.score_catalogue`."""
    from lyric_valence.ray_scoring import score_catalogue

    if args.output is None:
        raise UserError("--engine ray needs --output FOLDER (one Parquet file per input file is written there)")
    if args.format not in (None, "parquet"):
        raise UserError(f"--format {args.format}: --engine ray writes Parquet files")
    counts = score_catalogue(
        args.inputs,
        args.output,
        args.model,
        num_workers=args.num_workers,
        gpus_per_worker=args.gpus_per_worker,
        device=args.device,
        backend=args.backend,
        dtype=args.dtype,
        quantize=args.quantize,
        batch_tokens=args.batch_tokens,
        batch_size=args.block_size,
        text_column=args.text_column,
        id_column=args.id_column,
        keep_columns=args.keep_columns,
        score_column=args.score_column,
        decimals=args.decimals,
        resume=args.resume,
        quiet=args.quiet,
        max_chunks_per_song=args.max_chunks_per_song,
    )
    if counts["files_already_done"]:
        logger.warning(
            "%d of %d files were scored by the earlier run and kept", counts["files_already_done"], counts["files"]
        )
    if counts["files_already_done"] == counts["files"]:
        return 0
    return report(counts["scored"], counts["skipped"], args.output, counts["capped"], args.max_chunks_per_song)


def main(argv: list[str]) -> int:
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    args = predict_parser().parse_args(argv)
    silence(args.quiet)
    check_output_columns(args.keep_columns, args.score_column)
    if args.engine == "ray":
        return ray_main(args)
    check_outputs_spare_inputs(args.output, args.inputs)
    writer = ScoreWriter(args.output, args.format, args.decimals, args.score_column)
    progress = starting_progress(args, writer.format)
    shards = song_shards(
        args.inputs, args.text_column, args.id_column, args.keep_columns, args.stdin_format, args.block_size
    )
    first = next(shards, None)  # the inputs' errors (a missing file or column) come before the model loads
    shards = itertools.chain([] if first is None else [first], shards)
    state = PartialState(cpu=runs_on_cpu(args.device, args.backend))
    model, tokenizer = load_scoring_model(
        args.model, args.device, args.backend, args.dtype, args.quantize, encoder_path=args.encoder_path
    )
    if args.batch_tokens is not None and args.batch_tokens < model.config.max_length:
        raise UserError(
            f"--batch_tokens {args.batch_tokens}: must be at least the model's max_length ({model.config.max_length}), "
            "so that a full chunk fits in a batch"
        )

    if state.is_main_process:
        writer.open(progress.output_bytes)
        if args.output is not None:
            save_progress(args.output, progress)  # a run killed in its first block resumes too
    bar = tqdm(
        unit="song",
        initial=progress.rows_read,
        disable=True if args.quiet or not state.is_main_process else None,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    share = process_share(unread_shards(shards, progress.rows_read), state.process_index, state.num_processes)
    for shard in share:
        scored = [] if shard is None else [score_shard(shard, model, tokenizer, args)]
        for scores, rows, skipped, capped in gather_object(scored):  # the round's shards, in input order
            if state.is_main_process:
                progress.output_bytes = writer.write(scores)
                progress.rows_read += rows
                progress.scored += rows - skipped
                progress.skipped += skipped
                progress.capped += capped
                if args.output is not None:
                    save_progress(args.output, progress)
            bar.update(rows)
    bar.close()
    if not state.is_main_process:
        return 0
    writer.close()
    if args.output is not None:
        progress_file(args.output).unlink(missing_ok=True)
    return report(
        progress.scored, progress.skipped, args.output or "standard output", progress.capped, args.max_chunks_per_song
    )
