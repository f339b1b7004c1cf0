"""
Synthetic song catalogues of original random text: log-normal lengths in tokens (median 250, sigma 0.6, clipped to
24..3,000), the quantiles at (i + 0.5) / n in shuffled order so that even a small catalogue spans the long tail; lines
of whole vocabulary words and commas, so a song's token count is exact.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

MEDIAN_TOKENS = 250
SIGMA = 0.6
MIN_TOKENS = 24
MAX_TOKENS = 3000
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


@dataclass
class Catalogue:
    """Songs (`texts`), their made-up valence labels in [0.1, 0.9] and their token counts (special tokens included)."""

    texts: list[str]
    labels: list[float]
    tokens: list[int]


def length_mix(count: int, seed: int) -> np.ndarray:
    """`count` song lengths in tokens: log-normal quantiles (median 250, sigma 0.6) in shuffled order."""
    quantiles = (np.arange(count) + 0.5) / count
    lengths = MEDIAN_TOKENS * np.exp(SIGMA * stats.norm.ppf(quantiles))
    lengths = np.clip(np.rint(lengths), MIN_TOKENS, MAX_TOKENS).astype(int)
    return np.random.default_rng(seed).permutation(lengths)


class SongWriter:
    """Songs of Zipf-weighted common words of a WordPiece vocabulary (ids 2000-12000, letters only, 3+ characters):
    verses of 4-9 words a line, a two-line chorus after every fourth line."""

    def __init__(self, vocabulary: dict[str, int], rng: np.random.Generator):
        words = sorted((token_id, token) for token, token_id in vocabulary.items() if 2000 <= token_id < 12000)
        self.words = np.array([token for _, token in words if token.isascii() and token.isalpha() and len(token) >= 3])
        weights = 1.0 / np.arange(1, len(self.words) + 1)
        self.weights, self.rng = weights / weights.sum(), rng

    def line(self) -> list[str]:
        """One line of 4-9 words, sometimes ending with a comma (a token of its own)."""
        words = list(self.rng.choice(self.words, size=self.rng.integers(4, 10), p=self.weights))
        return words + [","] if self.rng.random() < 0.3 else words

    def song(self, tokens: int) -> str:
        """A song of exactly `tokens` tokens, special tokens included."""
        chorus = [self.line(), self.line()]
        lines, budget, verse_lines = [], tokens - SPECIAL_TOKENS, 0
        while budget > 0:
            verse_lines += 1
            for line in [self.line()] + (chorus if verse_lines % 4 == 0 else []):
                lines.append(line[:budget])
                budget -= len(lines[-1])
        return "\n".join(" ".join(line).replace(" ,", ",") for line in lines if line)


def make_catalogue(vocabulary: dict[str, int], count: int, seed: int = 0) -> Catalogue:
    """`count` original songs with the benchmark's length mix and uniform random labels in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    writer = SongWriter(vocabulary, rng)
    lengths = length_mix(count, seed)
    texts = [writer.song(int(length)) for length in lengths]
    labels = rng.uniform(0.1, 0.9, size=count).round(4).tolist()
    return Catalogue(texts, labels, lengths.tolist())


def length_summary(tokens: list[int]) -> dict[str, float]:
    """Mean, median, p90, p99 and max of song lengths in tokens, and the share of songs past 512 and 1,000 tokens."""
    lengths = np.asarray(tokens)
    return {
        "songs": int(lengths.size),
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p90": float(np.percentile(lengths, 90)),
        "p99": float(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
        "share_over_512": float((lengths > 512).mean()),
        "share_over_1000": float((lengths > 1000).mean()),
    }
