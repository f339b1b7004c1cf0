"""The benchmark's synthetic song catalogues (bench/harness.py): exact token counts and the promised length mix."""

import numpy as np

from bench.harness import MAX_TOKENS, MIN_TOKENS, length_mix, length_summary, make_catalogue


def test_length_mix_is_the_stated_distribution():
    lengths = length_mix(400, seed=0)
    assert len(lengths) == 400 and lengths.min() >= MIN_TOKENS and lengths.max() <= MAX_TOKENS
    assert 250 <= lengths.mean() <= 400
    assert np.median(lengths) == 250
    assert (lengths > 1000).sum() >= 2  # the long tail
    assert np.array_equal(np.sort(lengths), np.sort(length_mix(400, seed=1)))  # the seed only shuffles
    assert not np.array_equal(lengths, length_mix(400, seed=1))


def test_songs_have_exactly_their_token_counts(tokenizer):
    catalogue = make_catalogue(tokenizer.get_vocab(), 30, seed=3)
    assert [len(ids) for ids in tokenizer(catalogue.texts)["input_ids"]] == catalogue.tokens
    assert all(0.1 <= label <= 0.9 for label in catalogue.labels)
    assert make_catalogue(tokenizer.get_vocab(), 30, seed=3).texts == catalogue.texts
    assert "\n" in catalogue.texts[0]


def test_length_summary():
    summary = length_summary([100, 300, 600, 1200])
    assert summary["songs"] == 4 and summary["mean"] == 550 and summary["max"] == 1200
    assert summary["share_over_512"] == 0.5 and summary["share_over_1000"] == 0.25
