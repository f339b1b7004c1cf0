"""Standard columns from a raw frame: normalised text, rescaled label, unique song ids.

Rows without text or label are dropped and counted.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from datasets.utils import tqdm

from lyric_valence.errors import UserError

from .columns import Columns
from .text import normalise_lyrics


def first_row_where(mask: pd.Series | np.ndarray) -> int:
    """Position of the first true value."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def read_labels(path: Path, frame: pd.DataFrame, column: str, label_range: tuple[float, float] | None) -> pd.Series:
    """The label column as floats rescaled from `label_range` to [0, 1]; NaN where missing; a `UserError` naming the
    row for a value that is not a number."""
    label = pd.to_numeric(frame[column], errors="coerce")
    not_numeric = label.isna() & frame[column].notna()
    if not_numeric.any():
        row = first_row_where(not_numeric)
        raise UserError(f"{path}: row {row + 1}, column {column!r}: {frame[column].iloc[row]!r} is not a number")
    if label_range is not None:
        low, high = label_range
        label = (label - low) / (high - low)
    return label.astype("float64")


def read_song_ids(path: Path, frame: pd.DataFrame, column: str | None, keep: pd.Series) -> pd.Series:
    """The song ids as strings (the row number without an id column); a `UserError` naming the first kept row whose
    id is missing or repeated."""
    song_id = (frame[column] if column else pd.Series(frame.index)).astype("str")
    missing = song_id.isna() & keep
    if missing.any():
        row = first_row_where(missing)
        raise UserError(f"{path}: row {row + 1}, column {column!r}: no song id")
    repeated = song_id.duplicated(keep=False) & keep
    if repeated.any():
        row = first_row_where(repeated)
        raise UserError(f"{path}: row {row + 1}, column {column!r}: song id {song_id.iloc[row]!r} is not unique")
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
    normalisation or whose label is missing (counted). Raises a `UserError` naming the row for a label outside [0, 1]
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
        raise UserError(
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
