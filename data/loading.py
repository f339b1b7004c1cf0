"""Read a labelled lyrics table (CSV, JSON/JSONL, Parquet or a `save_to_disk` folder) into clean, split datasets.

The output of every reader is the same: a `DatasetDict` with `train`, `validation` and `test` splits whose rows hold
`song_id` (str), `text` (str), `label` (float in [0, 1]) and `group` (str: artist or other grouping key, or the song
id when there is none).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SPLIT_NAMES = {
    "train": "train",
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class DataError(ValueError):
    """Bad input data: the message names the file and, where it can, the row or column."""


@dataclass
class Columns:
    """Which source column plays which role; `None` where the file has no such column."""

    text: str
    label: str
    song_id: str | None = None
    group: str | None = None
    split: str | None = None


# Layouts recognised without flags, tried in order: the first whose text and label columns are present wins.
KNOWN_LAYOUTS = {
    # Kaggle "150K Lyrics Labeled with Spotify Valence": unnamed index, artist, seq (lyrics), song, label.
    "kaggle-spotify-valence": Columns(text="seq", label="label", song_id="Unnamed: 0", group="artist"),
    # EmoBank: id, split, V, A, D, text (V on 1-5: pass label_range 1 5).
    "emobank": Columns(text="text", label="V", song_id="id", split="split"),  # V is on 1-5
    "generic": Columns(text="text", label="label", song_id="id", group="artist", split="split"),
}
LAYOUT_LABEL_RANGES = {"emobank": (1.0, 5.0)}


def check_utf8(path: Path) -> None:
    """Raise a `DataError` naming the first line of a text file that is not valid UTF-8."""
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}: line {line_number} is not valid UTF-8 (byte {error.start}: {line[error.start:error.start + 4]!r})"
                ) from None


def read_table(path: str | Path) -> datasets.Dataset | datasets.DatasetDict:
    """Load a CSV/TSV, JSON/JSONL or Parquet file as one `Dataset`, or a `save_to_disk` folder as it was saved."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        try:
            return datasets.load_from_disk(str(path))
        except FileNotFoundError as error:
            raise DataError(f"{path}: not a folder written by `save_to_disk` ({error})") from None
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}")
    if file_format != "parquet":
        check_utf8(path)
    kwargs = {"sep": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        return datasets.load_dataset(file_format, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # datasets wraps parser errors in its own types; name the file, keep the cause
        cause = error.__cause__ or error
        raise DataError(f"{path}: cannot be read as {file_format}: {type(cause).__name__}: {cause}") from None


def resolve_columns(
    path: Path, column_names: list[str], requested: Columns | None
) -> tuple[Columns, tuple[float, float] | None]:
    """
    The columns to use, and the label range of the layout if it is known: the columns asked for (each must exist),
    else the first known layout the file matches.
    """
    if requested is None:
        for layout_name, layout in KNOWN_LAYOUTS.items():
            if layout.text in column_names and layout.label in column_names:
                logger.info("%s: recognised the %s layout", path, layout_name)
                columns = Columns(**{role: name if name in column_names else None for role, name in vars(layout).items()})
                return columns, LAYOUT_LABEL_RANGES.get(layout_name)
        raise DataError(
            f"{path}: cannot tell the text and label columns among {column_names}; "
            "name them with --text_column and --label_column"
        )
    for role, name in vars(requested).items():
        if name is not None and name not in column_names:
            raise DataError(f"{path}: no column {name!r} (for {role}); the columns are {column_names}")
    return requested, None


def clean_rows(path: Path, frame: pd.DataFrame, columns: Columns, label_range: tuple[float, float] | None):
    """
    Rename to the standard columns, rescale labels, drop rows with empty text or missing labels (counted), and raise
    a `DataError` naming the row for a label that is infinite or outside [0, 1] after rescaling.
    Returns the clean frame and a dict of counts.
    """
    text = frame[columns.text]
    label = pd.to_numeric(frame[columns.label], errors="coerce")
    not_numeric = label.isna() & frame[columns.label].notna()
    if not_numeric.any():
        row = int(np.flatnonzero(not_numeric.to_numpy())[0])
        raise DataError(
            f"{path}: row {row + 1}, column {columns.label!r}: {frame[columns.label].iloc[row]!r} is not a number"
        )
    if label_range is not None:
        low, high = label_range
        label = (label - low) / (high - low)
    empty_text = text.isna() | (text.astype(str).str.strip() == "")
    missing_label = label.isna()
    keep = ~empty_text & ~missing_label
    bad = keep & ~label.between(0.0, 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame[columns.label].iloc[row]
        hint = "" if label_range is not None else "; pass --label_range LOW HIGH to rescale"
        raise DataError(
            f"{path}: row {row + 1}, column {columns.label!r}: label {value} is outside [0, 1]{hint} "
            f"({int(bad.sum())} such rows)"
        )
    clean = pd.DataFrame(
        {
            "song_id": (frame[columns.song_id] if columns.song_id else pd.Series(frame.index)).astype(str),
            "text": text.astype(str),
            "label": label.astype("float64"),
        }
    )
    clean["group"] = frame[columns.group].astype(str) if columns.group else clean["song_id"]
    if columns.split:
        clean["split"] = frame[columns.split].astype(str).str.strip().str.lower()
    counts = {
        "rows_read": len(frame),
        "dropped_empty_text": int(empty_text.sum()),
        "dropped_missing_label": int((missing_label & ~empty_text).sum()),
    }
    return clean[keep.to_numpy()].reset_index(drop=True), counts


def split_by_column(path: Path, frame: pd.DataFrame, split_column: str) -> dict[str, pd.DataFrame]:
    """Use the file's own split column (train / dev|val|validation / test)."""
    unknown = sorted(set(frame["split"]) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{path}: column {split_column!r} has unknown split names {unknown}; expected {sorted(SPLIT_NAMES)}")
    standard = frame["split"].map(SPLIT_NAMES)
    return {name: frame[standard == name].drop(columns="split") for name in ("train", "validation", "test")}


def split_by_group(frame: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int):
    """Seeded train/validation/test split in which every group (e.g. an artist) falls in exactly one split."""
    groups = frame["group"].unique()
    shuffled = np.random.default_rng(seed).permutation(groups)
    sizes = frame.groupby("group").size().loc[shuffled].to_numpy()
    cumulative = np.cumsum(sizes) / sizes.sum()
    test_groups = set(shuffled[cumulative <= test_fraction])
    validation_groups = set(shuffled[(cumulative > test_fraction) & (cumulative <= test_fraction + validation_fraction)])
    split = np.where(
        frame["group"].isin(test_groups), "test", np.where(frame["group"].isin(validation_groups), "validation", "train")
    )
    return {name: frame[split == name] for name in ("train", "validation", "test")}


def load_splits(
    path: str | Path,
    columns: Columns | None = None,
    label_range: tuple[float, float] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    group_split: bool = True,
    seed: int = 42,
) -> tuple[datasets.DatasetDict, dict]:
    """
    Read `path` and return (splits, counts): a `DatasetDict` with train/validation/test of `song_id`, `text`, `label`,
    `group`, and the counts of rows read, dropped and per split. A `save_to_disk` folder holding a `DatasetDict`
    (as `python -m data.prepare` writes) is used as it is.
    """
    path = Path(path)
    table = read_table(path)
    if isinstance(table, datasets.DatasetDict):
        missing = {"train", "validation", "test"} - set(table)
        if missing:
            raise DataError(f"{path}: the saved DatasetDict lacks the splits {sorted(missing)}")
        counts = {f"{name}_songs": table[name].num_rows for name in ("train", "validation", "test")}
        return table, counts
    frame = table.to_pandas()
    columns, layout_label_range = resolve_columns(path, list(frame.columns), columns)
    clean, counts = clean_rows(path, frame, columns, label_range or layout_label_range)
    if clean.empty:
        raise DataError(f"{path}: no usable rows (all {counts['rows_read']} rows have empty text or no label)")
    if columns.split:
        parts = split_by_column(path, clean, columns.split)
    else:
        if not group_split:
            clean["group"] = clean["song_id"]
        parts = split_by_group(clean, validation_fraction, test_fraction, seed)
    for name, part in parts.items():
        if part.empty:
            raise DataError(f"{path}: the {name} split is empty ({len(clean)} usable rows)")
        counts[f"{name}_songs"] = len(part)
    logger.info("%s: %s", path, ", ".join(f"{key} {value}" for key, value in counts.items()))
    splits = datasets.DatasetDict(
        {name: datasets.Dataset.from_pandas(part.reset_index(drop=True), preserve_index=False) for name, part in parts.items()}
    )
    return splits, counts

