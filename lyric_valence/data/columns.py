"""
Which column of a table holds the lyrics, the label, the song id, the artist, the split and the title: the one
resolver of `train`, `prepare`, `predict` and `predict --engine ray`. A column named by a flag is used (and must
exist); a role no flag names is played by the first column of its recognised names that the table has.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from lyric_valence.errors import UserError

logger = logging.getLogger(__name__)


@dataclass
class Columns:
    """Which source column plays which role; `None` where the table has no such column, or none was named."""

    text: str | None = None
    label: str | None = None
    song_id: str | None = None
    group: str | None = None  # the artist, or another key whose rows must stay in one split
    split: str | None = None
    title: str | None = None


# The names each role is recognised by, in order of preference. They cover the Kaggle "150K Lyrics Labeled with
# Spotify Valence" file (unnamed index, artist, seq, song, label), EmoBank (id, split, V, A, D, text) and the
# Billboard set's layout (artist, song, year, lyrics, valence).
RECOGNISED = {
    "text": ("lyrics", "text", "seq"),
    "label": ("valence", "label", "V"),
    "song_id": ("id", "song_id", "Unnamed: 0"),
    "group": ("artist",),
    "split": ("split",),
    "title": ("title", "song"),
}
FLAGS = {
    "text": "--text_column",
    "label": "--label_column",
    "song_id": "--id_column",
    "group": "--group_column / --artist_column",
    "split": "--split_column",
    "title": "--title_column",
}
# Recognised label columns whose scale is known: EmoBank's V(alence) runs from 1 to 5.
LABEL_RANGES = {"V": (1.0, 5.0)}


def recognised_column(role: str, column_names, taken=()) -> str | None:
    """The first of the role's recognised names among `column_names` and not `taken` by another role; else None."""
    return next((name for name in RECOGNISED[role] if name in column_names and name not in taken), None)


def resolve_columns(
    path: Path | str, column_names: list[str], requested: Columns | None = None, needed=("text", "label")
) -> tuple[Columns, tuple[float, float] | None]:
    """
    The columns to use, and the label range when the label column was recognised on a known scale: each column
    `requested` names (it must exist), each other role recognised ([`RECOGNISED`]). A `UserError` names the file,
    its columns and the flags when a `needed` role has no column.
    """
    requested = requested or Columns()
    for role, name in vars(requested).items():
        if name is not None and name not in column_names:
            raise UserError(f"{path}: no column {name!r} (see {FLAGS[role]}); the columns are {list(column_names)}")
    given = {name for name in vars(requested).values() if name is not None}
    columns = Columns(
        **{
            role: name if name is not None else recognised_column(role, column_names, given)
            for role, name in vars(requested).items()
        }
    )
    missing = [role for role in needed if getattr(columns, role) is None]
    if missing:
        names = "; ".join(f"{role}: {', '.join(RECOGNISED[role])}" for role in missing)
        raise UserError(
            f"{path}: cannot tell the {' and '.join(missing)} column{'s' if len(missing) > 1 else ''} among "
            f"{list(column_names)} (recognised: {names}); name {'them' if len(missing) > 1 else 'it'} with "
            f"{' and '.join(FLAGS[role] for role in missing)}"
        )
    recognised = {
        role: name for role, name in vars(columns).items() if name is not None and getattr(requested, role) is None
    }
    if recognised:
        logger.info(
            "%s: recognised %s", path, ", ".join(f"the {role} column {name!r}" for role, name in recognised.items())
        )
    return columns, LABEL_RANGES.get(columns.label) if "label" in recognised else None
