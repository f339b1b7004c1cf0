"""Normalise lyrics text: one line-ending convention, Unicode NFC, no trailing whitespace, optional section markers."""

import re
import unicodedata

# "[Chorus]", "[Verse 2: Someone]", "[Repeat: x6]", "[x2]": a bracketed span on one line (lyrics sites' markup).
BRACKETED_MARKER = re.compile(r"[ \t]*\[[^\]\n]*\]")
# A line holding only markers, or only the name of a section with an optional number or repeat count ("Chorus:",
# "(Verse 2)", "Repeat chorus x2"): removed whole, newline included, so no blank line is left in its place.
MARKER_LINE = re.compile(
    r"^(?:(?:[ \t]*\[[^\]\n]*\])+"
    r"|[ \t]*[({]?[ \t]*(?:repeat[ \t]+)?"
    r"(?:chorus|verse|pre-chorus|bridge|intro|outro|hook|refrain|interlude|instrumental)"
    r"(?:[ \t]*\d+)?(?:[ \t]*[x×][ \t]*\d+)?[ \t]*:?[ \t]*[)}]?)[ \t]*(?:\n|\Z)",
    re.IGNORECASE | re.MULTILINE,
)
TRAILING_WHITESPACE = re.compile(r"[ \t\u00a0\u3000]+$", re.MULTILINE)
BLANK_LINE_RUNS = re.compile(r"\n{3,}")
WORD = re.compile(r"\w+(?:'\w+)*")


def normalise_lyrics(text: str, strip_section_markers: bool = False) -> str:
    """
    Lyrics in one canonical form: `\\n` line endings, Unicode NFC, no trailing whitespace on any line, at most one
    blank line in a row, no leading or trailing blank lines; with `strip_section_markers`, bracketed markers
    ("[Chorus]", "[Repeat: x6]") and lines that only name a section ("Chorus:") are removed too.
    An empty result means the row has no lyrics.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if strip_section_markers:
        text = strip_markers(text)
    text = TRAILING_WHITESPACE.sub("", text)
    return BLANK_LINE_RUNS.sub("\n\n", text).strip()


def strip_markers(text: str) -> str:
    """`text` without marker lines and bracketed markers (`\\n` line endings expected)."""
    return BRACKETED_MARKER.sub("", MARKER_LINE.sub("", text))


def comparable_words(text: str) -> list[str]:
    """
    The words of normalised lyrics as near-duplicate detection compares them: section markers removed, case folded,
    punctuation dropped, so "[Chorus]\\nHey, you!" and "hey you" read the same.
    """
    return WORD.findall(strip_markers(text).casefold().replace("’", "'"))
