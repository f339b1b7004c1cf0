"""
The data options of `train` and `prepare`: which columns of a labelled table play which role, and how its rows become
leak-free splits. One dataclass, so both commands take the same flags (older spellings kept as aliases).
"""

from dataclasses import dataclass, field

from .columns import Columns


@dataclass
class DataOptions:
    """How a labelled table is read and split. Each field is a flag of `train.py` and of `lyric-valence prepare`."""

    text_column: str | None = field(
        default=None, metadata={"help": "Column holding the lyrics (default: the first of lyrics, text, seq)."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Column holding the valence label (default: the first of valence, label, V; V on 1-5)."},
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "Column holding a song id (default: id, song_id or an unnamed index; else row number)."},
    )
    group_column: str | None = field(
        default=None,
        metadata={
            "help": "Column whose values never span two splits (default: artist, if present).",
            "aliases": ["--artist_column"],
        },
    )
    split_column: str | None = field(
        default=None,
        metadata={"help": "Column naming each row's split: train, dev/validation, test (default: split, if present)."},
    )
    title_column: str | None = field(
        default=None,
        metadata={"help": "Column of the song title, kept as `title` (default: title or song, if present)."},
    )
    label_range: list[float] | None = field(
        default=None,
        metadata={
            "help": "Rescale labels from [LOW, HIGH] to [0, 1] (EmoBank's V on 1-5 is recognised). Without it, labels "
            "outside [0, 1] are an error.",
            "metavar": ("LOW", "HIGH"),
        },
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of songs for validation (when the file has no split column)."}
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "Share of songs for test (when the file has no split column)."}
    )
    group_split: bool = field(
        default=True,
        metadata={
            "help": "Keep all songs of a group (the group column: the artist) in one split.",
            "aliases": ["--group_by_artist"],
        },
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
        if not (
            0 < self.validation_fraction
            and 0 < self.test_fraction
            and self.validation_fraction + self.test_fraction < 1
        ):
            raise ValueError(
                f"validation_fraction ({self.validation_fraction}) and test_fraction ({self.test_fraction}) must be "
                "positive and sum to less than 1"
            )
        if not 0 < self.duplicate_threshold <= 1:
            raise ValueError(f"duplicate_threshold ({self.duplicate_threshold}) must be in (0, 1]")
        if self.label_range is not None and len(self.label_range) != 2:
            raise ValueError(f"--label_range takes two numbers, LOW HIGH; got {self.label_range}")

    def columns(self) -> Columns:
        """The columns the flags name; the others are recognised in the file (`lyric_valence.data.columns`)."""
        return Columns(
            text=self.text_column,
            label=self.label_column,
            song_id=self.id_column,
            group=self.group_column,
            split=self.split_column,
            title=self.title_column,
        )
