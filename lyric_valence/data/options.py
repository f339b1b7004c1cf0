"""The options of preparing a raw table: split fractions, seed, grouping, duplicates, language, markers."""

from dataclasses import dataclass, field


@dataclass
class PreparationOptions:
    """How a raw table becomes splits. Each field is also a flag of `lyric-valence prepare`."""

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
