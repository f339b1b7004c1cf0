"""Read a labelled lyrics table (CSV, JSON/JSONL, Parquet or a `save_to_disk` folder) into clean, leak-free splits.

Every raw file goes through the same steps, whether `train.py` reads it or `python -m data.prepare` does: normalise
the text, drop rows without text or label, optionally keep only some languages, group near-duplicate lyrics, and
split so that no group (artist and/or near-duplicate group) spans two splits; the counts of every step are returned.
The output is a `DatasetDict` with `train`, `validation` and `test` splits whose rows hold `song_id` (str), `text`
(str), `label` (float in [0, 1]), `group` (str: rows sharing it stay in one split), `duplicate_group` (str: the song id
of the group's first song) and `duplicate_group_label` (mean label of the duplicate group), plus `artist`, `title`
and `language` where the file has or asks for them.
"""

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .duplicates import NearDuplicates, components, find_near_duplicates, leak_rate, star_edges
from .language import UNDETERMINED, identify_languages
from .text import normalise_lyrics

logger = logging.getLogger(__name__)

SPLIT_NAMES = {
    "train": "train",
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}
SPLITS = ("train", "validation", "test")
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
ANY_LANGUAGE = "any"


class DataError(ValueError):
    """Bad input data: the message names the file and, where it can, the row or column."""


@dataclass
class Columns:
    """Which source column plays which role; `None` where the file has no such column."""

    text: str
    label: str
    song_id: str | None = None
    group: str | None = None  # the artist, or another key whose rows must stay in one split
    split: str | None = None
    title: str | None = None


# Layouts recognised without flags, tried in order: the first whose text and label columns are present wins.
KNOWN_LAYOUTS = {
    # Kaggle "150K Lyrics Labeled with Spotify Valence": unnamed index, artist, seq (lyrics), song, label.
    "kaggle-spotify-valence": Columns(text="seq", label="label", song_id="Unnamed: 0", group="artist", title="song"),
    "emobank": Columns(text="text", label="V", song_id="id", split="split"),  # V is on 1-5
    "generic": Columns(text="text", label="label", song_id="id", group="artist", split="split", title="title"),
}
LAYOUT_LABEL_RANGES = {"emobank": (1.0, 5.0)}


@dataclass
class PreparationOptions:
    """How a raw table becomes splits. Each field is also a flag of `python -m data.prepare`."""

    validation_fraction: float = field(default=0.1, metadata={"help": "Share of songs in the validation split."})
    test_fraction: float = field(default=0.1, metadata={"help": "Share of songs in the test split."})
    seed: int = field(default=42, metadata={"help": "Seed of the split."})
    group_by_artist: bool = field(
        default=True, metadata={"help": "Keep all songs of an artist (the file's group column) in one split."}
    )
    group_by_duplicates: bool = field(
        default=True, metadata={"help": "Keep each group of near-duplicate lyrics in one split."}
    )
    duplicate_threshold: float = field(
        default=0.4,
        metadata={
            "help": "Estimated Jaccard similarity of word 3-gram sets from which two songs are near-duplicates. Low on "
            "purpose: a missed duplicate leaks into the test split, a false match only keeps two songs together."
        },
    )
    strip_section_markers: bool = field(
        default=False, metadata={"help": 'Remove section markers such as "[Chorus]", "[Repeat: x6]" or "Verse 2:".'}
    )
    language: list[str] | None = field(
        default=None,
        metadata={
            "help": "Keep only songs identified as these ISO 639-1 languages (e.g. en de), plus texts too short to "
            "identify; 'any' identifies and keeps all. Not given: languages are not identified."
        },
    )

    def __post_init__(self):
        if not (0 < self.validation_fraction and 0 < self.test_fraction and self.validation_fraction + self.test_fraction < 1):
            raise ValueError(
                f"validation_fraction ({self.validation_fraction}) and test_fraction ({self.test_fraction}) must be "
                "positive and sum to less than 1"
            )
        if not 0 < self.duplicate_threshold <= 1:
            raise ValueError(f"duplicate_threshold ({self.duplicate_threshold}) must be in (0, 1]")


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
        languages: songs per identified language before filtering (empty when languages were not identified).
        seconds: wall-clock seconds per step.
    """

    splits: datasets.DatasetDict
    counts: dict[str, int | float]
    rows: pd.DataFrame
    duplicates: NearDuplicates
    languages: dict[str, int]
    seconds: dict[str, float]


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


def read_table(path: Path) -> pd.DataFrame:
    """Load a CSV/TSV (quoted multi-line fields allowed), JSON/JSONL or Parquet file as one frame."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a raw file (a prepared folder is read by `load_splits` as it is)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}")
    try:
        open(path, "rb").close()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    if file_format != "parquet":
        check_utf8(path)
    kwargs = {"sep": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        table = datasets.load_dataset(file_format, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # datasets wraps parser errors in its own types; name the file, keep the cause
        cause = error.__cause__ or error
        raise DataError(f"{path}: cannot be read as {file_format}: {type(cause).__name__}: {str(cause).strip()}") from None
    return table.to_pandas()


def read_saved_splits(path: Path) -> tuple[datasets.DatasetDict, dict]:
    """A `save_to_disk` folder holding train/validation/test, as it was saved, and its split sizes."""
    try:
        table = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise DataError(f"{path}: not a folder written by `save_to_disk` ({error})") from None
    missing = set(SPLITS) - set(table) if isinstance(table, datasets.DatasetDict) else set(SPLITS)
    if missing:
        raise DataError(f"{path}: the saved data lacks the splits {sorted(missing)}")
    return table, {f"{name}_songs": table[name].num_rows for name in SPLITS}


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


def first_row_where(mask: pd.Series | np.ndarray) -> int:
    """Position of the first true value."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def read_labels(path: Path, frame: pd.DataFrame, column: str, label_range: tuple[float, float] | None) -> pd.Series:
    """The label column as floats rescaled from `label_range` to [0, 1]; NaN where missing; a `DataError` naming the
    row for a value that is not a number."""
    label = pd.to_numeric(frame[column], errors="coerce")
    not_numeric = label.isna() & frame[column].notna()
    if not_numeric.any():
        row = first_row_where(not_numeric)
        raise DataError(f"{path}: row {row + 1}, column {column!r}: {frame[column].iloc[row]!r} is not a number")
    if label_range is not None:
        low, high = label_range
        label = (label - low) / (high - low)
    return label.astype("float64")


def read_song_ids(path: Path, frame: pd.DataFrame, column: str | None, keep: pd.Series) -> pd.Series:
    """The song ids as strings (the row number without an id column); a `DataError` naming the first kept row whose
    id is missing or repeated."""
    song_id = (frame[column] if column else pd.Series(frame.index)).astype("str")
    missing = song_id.isna() & keep
    if missing.any():
        row = first_row_where(missing)
        raise DataError(f"{path}: row {row + 1}, column {column!r}: no song id")
    repeated = song_id.duplicated(keep=False) & keep
    if repeated.any():
        row = first_row_where(repeated)
        raise DataError(f"{path}: row {row + 1}, column {column!r}: song id {song_id.iloc[row]!r} is not unique")
    return song_id


def normalise_texts(texts: pd.Series, strip_section_markers: bool) -> pd.Series:
    """`normalise_lyrics` of each text; missing texts become empty."""
    return pd.Series(
        [
            normalise_lyrics(text, strip_section_markers) if isinstance(text, str) else ""
            for text in tqdm(texts, desc="normalise", unit="song", total=len(texts))
        ],
        index=texts.index,
        dtype="str",
    )


def clean_rows(
    path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    label_range: tuple[float, float] | None,
    strip_section_markers: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """
    Standard columns (`song_id`, `text` normalised, `label` rescaled, and `artist` (from the group column), `title`,
    `split` where the file has them; missing artists and titles become ""), without the rows whose text is empty after
    normalisation or whose label is missing (counted). Raises a `DataError` naming the row for a label outside [0, 1]
    after rescaling, or a song id that is missing or repeated.
    Returns the clean frame and a dict of counts.
    """
    text = normalise_texts(frame[columns.text], strip_section_markers)
    label = read_labels(path, frame, columns.label, label_range)
    empty_text = text == ""
    missing_label = label.isna()
    keep = ~empty_text & ~missing_label
    bad = keep & ~label.between(0.0, 1.0)
    if bad.any():
        row = first_row_where(bad)
        value = frame[columns.label].iloc[row]
        hint = "" if label_range is not None else "; pass --label_range LOW HIGH to rescale"
        raise DataError(
            f"{path}: row {row + 1}, column {columns.label!r}: label {value} is outside [0, 1]{hint} "
            f"({int(bad.sum())} such rows)"
        )
    song_id = read_song_ids(path, frame, columns.song_id, keep)
    clean = pd.DataFrame({"song_id": song_id, "text": text, "label": label})
    if columns.group:
        clean["artist"] = frame[columns.group].astype("str").fillna("")
    if columns.title:
        clean["title"] = frame[columns.title].astype("str").fillna("")
    if columns.split:
        clean["split"] = frame[columns.split].astype("str").fillna("").str.strip().str.lower()
    counts = {
        "rows_read": len(frame),
        "dropped_empty_text": int(empty_text.sum()),
        "dropped_missing_label": int((missing_label & ~empty_text).sum()),
    }
    return clean[keep.to_numpy()].reset_index(drop=True), counts


def filter_languages(rows: pd.DataFrame, languages: list[str]) -> tuple[pd.DataFrame, dict, dict[str, int]]:
    """
    Identify each song's language (new `language` column) and keep the songs in `languages` and those too short to
    identify, unless `languages` is ["any"]. Returns the kept rows, counts, and songs per language before filtering.
    """
    rows["language"] = identify_languages(rows["text"], total=len(rows))
    seen = rows["language"].value_counts().to_dict()
    keep = np.ones(len(rows), dtype=bool)
    if languages != [ANY_LANGUAGE]:
        keep = rows["language"].isin([*languages, UNDETERMINED]).to_numpy()
    counts = {
        "language_undetermined": int((rows["language"] == UNDETERMINED).sum()),
        "dropped_other_language": int((~keep).sum()),
    }
    return rows[keep].reset_index(drop=True), counts, seen


def group_rows(rows: pd.DataFrame, duplicates: NearDuplicates, options: PreparationOptions) -> pd.Series:
    """
    The split group of each row: the connected components of "same artist" (if grouping by artist) and "near
    duplicates" (if grouping by duplicates), so that no artist and no duplicate group spans two splits. A group is
    named after its first row: that row's artist when grouping by artist, else its song id. Songs without an artist
    ("") are not grouped by artist.
    """
    edges = [np.empty((0, 2), dtype=np.int64)]
    by_artist = options.group_by_artist and "artist" in rows
    if by_artist:
        with_artist = np.flatnonzero(rows["artist"].to_numpy() != "")
        edges.append(with_artist[star_edges(rows["artist"].to_numpy()[with_artist])])
    if options.group_by_duplicates:
        edges.append(star_edges(duplicates.group))
    group = components(len(rows), np.vstack(edges))
    _, first_row = np.unique(group, return_index=True)
    names = rows["song_id"].to_numpy()[first_row]
    if by_artist:
        names = np.where(rows["artist"].to_numpy()[first_row] != "", rows["artist"].to_numpy()[first_row], names)
    return pd.Series(names[group], index=rows.index, dtype="str")


def split_by_column(path: Path, split: pd.Series) -> np.ndarray:
    """The file's own split column (train / dev|val|valid|validation / test) as standard split names."""
    unknown = sorted(set(split) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{path}: the split column has unknown split names {unknown}; expected {sorted(SPLIT_NAMES)}")
    return split.map(SPLIT_NAMES).to_numpy()


def split_by_group(group: np.ndarray, validation_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """
    Seeded train/validation/test assignment of each row in which every group falls in exactly one split: groups are
    taken in a shuffled order and each goes to the split furthest below its target size.
    """
    names, row_group, sizes = np.unique(group, return_inverse=True, return_counts=True)
    targets = np.array([1 - validation_fraction - test_fraction, validation_fraction, test_fraction]) * len(group)
    order = np.random.default_rng(seed).permutation(len(names))
    # Groups bigger than a holdout split come first, while train is the furthest below target: they land in train.
    order = order[np.argsort(sizes[order] <= targets[1:].min(), kind="stable")]
    filled = np.zeros(len(SPLITS))
    split_of_group = np.empty(len(names), dtype=np.int64)
    for group_index in order:
        split_index = int(np.argmax(targets - filled))
        split_of_group[group_index] = split_index
        filled[split_index] += sizes[group_index]
    return np.asarray(SPLITS)[split_of_group[row_group]]


def duplicate_counts(duplicates: NearDuplicates) -> dict[str, int]:
    """Near-duplicate groups of two or more songs, the songs in them, and the songs merged into an earlier one's group."""
    sizes = np.bincount(duplicates.group)
    return {
        "duplicate_groups": int((sizes > 1).sum()),
        "songs_in_duplicate_groups": int(sizes[sizes > 1].sum()),
        "duplicates_merged": int(len(duplicates.group) - len(sizes)),
    }


def to_dataset_dict(rows: pd.DataFrame) -> datasets.DatasetDict:
    """One `Dataset` per split, without the `split` column."""
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_pandas(
                rows[rows["split"] == name].drop(columns="split").reset_index(drop=True), preserve_index=False
            )
            for name in SPLITS
        }
    )


@contextmanager
def timed(seconds: dict[str, float], step: str):
    """Record the wall-clock seconds of the block as `seconds[step]`."""
    start = time.perf_counter()
    yield
    seconds[step] = round(time.perf_counter() - start, 2)


def group_and_split(
    path: Path, rows: pd.DataFrame, duplicates: NearDuplicates, columns: Columns, options: PreparationOptions
) -> dict:
    """
    Add the `duplicate_group`, `duplicate_group_label`, `group` and `split` columns to `rows` (the file's own split
    if it has one, else a seeded grouped split); return the counts of duplicates and per split, and the leak rates.
    """
    rows["duplicate_group"] = rows["song_id"].to_numpy()[np.unique(duplicates.group, return_index=True)[1]][duplicates.group]
    rows["duplicate_group_label"] = rows.groupby("duplicate_group")["label"].transform("mean")
    rows["group"] = group_rows(rows, duplicates, options)
    if columns.split:
        rows["split"] = split_by_column(path, rows["split"])
    else:
        rows["split"] = split_by_group(
            rows["group"].to_numpy(), options.validation_fraction, options.test_fraction, options.seed
        )
    counts = duplicate_counts(duplicates)
    for name in SPLITS:
        counts[f"{name}_songs"] = int((rows["split"] == name).sum())
        if counts[f"{name}_songs"] == 0:
            raise DataError(f"{path}: the {name} split is empty ({len(rows)} usable rows)")
    split = rows["split"].to_numpy()
    counts["test_leak_rate"] = round(leak_rate(duplicates, split, "test"), 4)
    counts["validation_leak_rate"] = round(leak_rate(duplicates, split, "validation"), 4)
    return counts


def prepare(
    path: str | Path,
    columns: Columns | None = None,
    label_range: tuple[float, float] | None = None,
    options: PreparationOptions | None = None,
) -> PreparedData:
    """Read a raw file (CSV/TSV, JSON/JSONL, Parquet), then clean, filter, group and split it; see `PreparedData`."""
    path, options, seconds, languages = Path(path), options or PreparationOptions(), {}, {}
    with timed(seconds, "read"):
        frame = read_table(path)
    with timed(seconds, "normalise"):
        columns, layout_label_range = resolve_columns(path, list(frame.columns), columns)
        rows, counts = clean_rows(path, frame, columns, label_range or layout_label_range, options.strip_section_markers)
        del frame
    if options.language is not None:
        with timed(seconds, "language"):
            rows, language_counts, languages = filter_languages(rows, options.language)
        counts.update(language_counts)
    if rows.empty:
        raise DataError(f"{path}: no usable rows ({counts})")
    with timed(seconds, "duplicates"):
        duplicates = find_near_duplicates(rows["text"], options.duplicate_threshold, total=len(rows))
    with timed(seconds, "split"):
        counts.update(group_and_split(path, rows, duplicates, columns, options))
        splits = to_dataset_dict(rows)
    logger.info("%s: %s", path, ", ".join(f"{key} {value}" for key, value in counts.items()))
    logger.info("%s: seconds per step: %s", path, seconds)
    return PreparedData(splits, counts, rows, duplicates, languages, seconds)


def load_splits(
    path: str | Path,
    columns: Columns | None = None,
    label_range: tuple[float, float] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    group_split: bool = True,
    seed: int = 42,
    **options,
) -> tuple[datasets.DatasetDict, dict]:
    """
    Read `path` and return (splits, counts): a `DatasetDict` with train/validation/test of `song_id`, `text`, `label`,
    `group` (and more columns, see the module docstring), and the counts of rows read, dropped, grouped and per split
    with the leak rates. A raw file is prepared by `prepare` (`group_split` is `PreparationOptions.group_by_artist`;
    `options` are further `PreparationOptions` fields, e.g. `language=["en"]`); a `save_to_disk` folder holding a
    `DatasetDict` (as `python -m data.prepare` writes) is used as it is.
    """
    path = Path(path)
    if path.is_dir():
        return read_saved_splits(path)
    preparation = PreparationOptions(
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        group_by_artist=group_split,
        seed=seed,
        **options,
    )
    prepared = prepare(path, columns, label_range, preparation)
    return prepared.splits, prepared.counts
