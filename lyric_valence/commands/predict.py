"""
Score whole songs: text files, folders, tables or standard input, one valence per song.

    lyric-valence predict happy.txt                                   # the shipped songs-minilm model (Spotify valence)
    lyric-valence predict songs.csv --keep_columns artist --output scores.parquet   # lyrics in lyrics, text or seq
    accelerate launch -m lyric_valence.cli predict songs.csv --output scores.csv    # one process per GPU
    torchrun --nproc_per_node 2 -m lyric_valence.cli predict songs.csv --output scores.csv   # 2 processes on the CPU
    lyric-valence predict --engine ray lyrics/ --output scores/                     # a Ray cluster

The flags that choose and run the model are `lyric_valence.loading.ScoringOptions`; the catalogue is scored by
`lyric_valence.local_scoring` (this process, or one per device) or `lyric_valence.ray_scoring` (`--engine ray`).
"""

import argparse
import logging
import sys

from lyric_valence.arguments import ArgumentParser, positive_int
from lyric_valence.errors import UserError
from lyric_valence.loading import ScoringOptions
from lyric_valence.local_scoring import check_output_columns
from lyric_valence.predict_io import OUTPUT_FORMATS, STDIN_FORMATS

EXIT_NOTHING_SCORED = 1
logger = logging.getLogger("lyric_valence")


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        ScoringOptions,
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
        "Several devices: accelerate launch -m lyric_valence.cli predict ... (shards dealt round-robin to the "
        "processes;\neach process reads only its own song files and Parquet row groups, see --block_size).",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="Songs to score: .txt files (each one song), folders (their .txt files), CSV/TSV/JSONL/JSON/Parquet "
        "tables (one song per row, see --text_column), or '-' / nothing for standard input (see --stdin_format).",
    )
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
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local (default): this process, or one per device under accelerate launch. ray: a Ray cluster "
        "(RAY_ADDRESS, else a local one) reads Parquet/CSV/JSONL files, folders or glob patterns, local or remote "
        "(s3://, gs://, az://, hf://datasets/...), and its workers write the scores into the --output folder (local "
        "and shared by the nodes, or s3://, gs://, az://) as Parquet parts that a manifest commits; --resume "
        'continues a killed run (docs/distributed.md; pip install "lyric-valence[ray]").',
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


def ray_main(options: ScoringOptions, args: argparse.Namespace) -> int:
    """`--engine ray`: the catalogue scored by `lyric_valence.ray_scoring.score_catalogue`."""
    from lyric_valence.ray_scoring import score_catalogue

    if args.output is None:
        raise UserError("--engine ray needs --output FOLDER (a folder or a URL: the workers write the scores there)")
    if args.format not in (None, "parquet"):
        raise UserError(f"--format {args.format}: --engine ray writes Parquet files")
    counts = score_catalogue(
        args.inputs,
        args.output,
        options,
        num_workers=args.num_workers,
        gpus_per_worker=args.gpus_per_worker,
        batch_size=args.block_size,
        text_column=args.text_column,
        id_column=args.id_column,
        keep_columns=args.keep_columns,
        score_column=args.score_column,
        decimals=args.decimals,
        resume=args.resume,
        quiet=args.quiet,
    )
    if counts["blocks_already_done"]:
        logger.warning(
            "%d blocks (%d of %d files whole) were scored by the earlier run and kept",
            counts["blocks_already_done"],
            counts["files_already_done"],
            counts["files"],
        )
    if counts["files_already_done"] == counts["files"]:
        return 0
    return report(counts["scored"], counts["skipped"], args.output, counts["capped"], options.max_chunks_per_song)


def main(argv: list[str]) -> int:
    """Score whole songs: text files, folders, tables or standard input, one valence per song."""
    from lyric_valence.local_scoring import score_catalogue

    options, args = parser().parse_args_into_dataclasses(argv)
    silence(args.quiet)
    check_output_columns(args.keep_columns, args.score_column)
    if args.engine == "ray":
        return ray_main(options, args)
    counts = score_catalogue(
        args.inputs,
        args.output,
        options,
        output_format=args.format,
        text_column=args.text_column,
        id_column=args.id_column,
        keep_columns=args.keep_columns,
        score_column=args.score_column,
        stdin_format=args.stdin_format,
        decimals=args.decimals,
        block_size=args.block_size,
        resume=args.resume,
        quiet=args.quiet,
    )
    if counts is None:  # a process other than the main one: the main one reports
        return 0
    destination = args.output or "standard output"
    return report(counts["scored"], counts["skipped"], destination, counts["capped"], options.max_chunks_per_song)
