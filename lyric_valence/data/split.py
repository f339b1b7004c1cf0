"""Group rows (artist, near-duplicates) and split them so that no group spans two splits."""

from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from lyric_valence.errors import UserError

from .columns import Columns
from .duplicates import NearDuplicates, components, leak_rate, star_edges
from .options import DataOptions

SPLIT_NAMES = {
    "train": "train",
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}
SPLITS = ("train", "validation", "test")


def group_rows(rows: pd.DataFrame, duplicates: NearDuplicates, options: DataOptions) -> pd.Series:
    """
    The split group of each row: the connected components of "same artist" (if grouping by artist) and "near
    duplicates" (if grouping by duplicates), so that no artist and no duplicate group spans two splits. A group is
    named after its first row: that row's artist when grouping by artist, else its song id. Songs without an artist
    ("") are not grouped by artist.
    """
    edges = [np.empty((0, 2), dtype=np.int64)]
    by_artist = options.group_split and "artist" in rows
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
        raise UserError(f"{path}: the split column has unknown split names {unknown}; expected {sorted(SPLIT_NAMES)}")
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
    """Near-duplicate groups of two or more songs, the songs in them, and the songs merged into an earlier group."""
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


def group_and_split(
    path: Path,
    rows: pd.DataFrame,
    duplicates: NearDuplicates,
    columns: Columns,
    options: DataOptions,
    seed: int,
) -> dict:
    """
    Add the `duplicate_group`, `duplicate_group_label`, `group` and `split` columns to `rows` (the file's own split
    if it has one, else a seeded grouped split); return the counts of duplicates and per split, and the leak rates.
    """
    rows["duplicate_group"] = rows["song_id"].to_numpy()[np.unique(duplicates.group, return_index=True)[1]][
        duplicates.group
    ]
    rows["duplicate_group_label"] = rows.groupby("duplicate_group")["label"].transform("mean")
    rows["group"] = group_rows(rows, duplicates, options)
    if columns.split:
        rows["split"] = split_by_column(path, rows["split"])
    else:
        rows["split"] = split_by_group(
            rows["group"].to_numpy(), options.validation_fraction, options.test_fraction, seed
        )
    counts = duplicate_counts(duplicates)
    for name in SPLITS:
        counts[f"{name}_songs"] = int((rows["split"] == name).sum())
        if counts[f"{name}_songs"] == 0:
            raise UserError(f"{path}: the {name} split is empty ({len(rows)} usable rows)")
    split = rows["split"].to_numpy()
    counts["test_leak_rate"] = round(leak_rate(duplicates, split, "test"), 4)
    counts["validation_leak_rate"] = round(leak_rate(duplicates, split, "validation"), 4)
    return counts
