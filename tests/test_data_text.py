"""Unit tests of `lyric_valence.data.text` and `lyric_valence.data.language`."""

import unicodedata

import pytest

from lyric_valence.data.language import identify_languages
from lyric_valence.data.text import comparable_words, normalise_lyrics


def test_line_endings_trailing_whitespace_and_blank_runs_are_normalised():
    raw = "\r\n  \r\nfirst line  \r\nsecond line\t\rthird line\r\n\r\n\r\n\r\nlast line \u00a0\r\n\r\n"
    assert normalise_lyrics(raw) == "first line\nsecond line\nthird line\n\nlast line"


def test_unicode_is_composed():
    decomposed = "cafe\u0301 de\u0301ja\u0300 vu"
    assert normalise_lyrics(decomposed) == unicodedata.normalize("NFC", decomposed) == "caf\u00e9 d\u00e9j\u00e0 vu"


def test_section_markers_are_kept_by_default_and_stripped_on_request():
    raw = (
        "[Intro]\nhello there\n\n[Chorus]\nsing it loud [x2]\nChorus:\n(Verse 2)\n"
        "bridge over the water\nRepeat chorus x2\nend"
    )
    assert normalise_lyrics(raw) == raw
    assert (
        normalise_lyrics(raw, strip_section_markers=True) == "hello there\n\nsing it loud\nbridge over the water\nend"
    )


def test_only_markers_or_whitespace_normalise_to_empty():
    assert normalise_lyrics(" \r\n\t\r\n") == ""
    assert normalise_lyrics("[Instrumental]\n[Repeat: x6]", strip_section_markers=True) == ""


def test_comparable_words_ignore_case_punctuation_and_markers():
    assert (
        comparable_words("[Chorus]\nHey, YOU!\ndon’t stop")
        == comparable_words("hey you\ndon't stop...")
        == [
            "hey",
            "you",
            "don't",
            "stop",
        ]
    )


def test_languages_are_identified_and_short_texts_undetermined():
    texts = [
        "I walk alone through the city in the rain and nobody is waiting for me tonight",
        "Ich laufe durch die Stadt im Regen und niemand wartet mehr auf mich heute Nacht",
        "Camino solo por la ciudad bajo la lluvia y nadie me espera esta noche",
        "Thank you.",
    ]
    assert identify_languages(texts, show_progress=False) == ["en", "de", "es", "und"]


@pytest.mark.parametrize("text", ["", "oh", "na na na na"])
def test_too_short_texts_are_undetermined(text):
    assert identify_languages([text], show_progress=False) == ["und"]
