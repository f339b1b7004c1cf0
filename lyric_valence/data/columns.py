"""Which column of a table holds the lyrics, the label, the song id, the artist and the split."""

import logging
from dataclasses import dataclass
from pathlib import Path

from lyric_valence.errors import UserError

logger = logging.getLogger(__name__)


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
        raise UserError(
            f"{path}: cannot tell the text and label columns among {column_names}; "
            "name them with --text_column and --label_column"
        )
    for role, name in vars(requested).items():
        if name is not None and name not in column_names:
            raise UserError(f"{path}: no column {name!r} (for {role}); the columns are {column_names}")
    return requested, None
