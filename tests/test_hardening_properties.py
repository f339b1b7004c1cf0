"""Property-based tests (hypothesis) of chunking and song aggregation over arbitrary unicode lyrics."""

import math

import datasets
import numpy as np
import pytest
import torch
from conftest import WORDS, tiny_bert_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.trainer import SeededLengthGroupedSampler, chunk_split, song_predictions
from modeling_lyric_valence import LyricValenceModel, aggregate_chunk_scores, chunk_lyrics

datasets.disable_progress_bars()
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Arbitrary unicode (any category but lone surrogates, which no decoded file can hold), mixed with lyric-like words
# and line breaks so that songs run past one chunk.
pieces = st.one_of(st.text(max_size=12), st.sampled_from(WORDS), st.sampled_from(["\n", "\r\n", "  ", "\t", '"']))
songs = st.lists(pieces, max_size=80).map(" ".join)
non_blank_songs = songs.filter(lambda text: text.strip() != "")
windows = st.integers(min_value=6, max_value=24).flatmap(
    lambda max_length: st.tuples(st.just(max_length), st.integers(min_value=0, max_value=max_length - 3))
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def expected_chunks(token_count: int, max_length: int, stride: int) -> int:
    window, step = max_length - 2, max_length - 2 - stride
    return 1 if token_count <= window else 1 + math.ceil((token_count - window) / step)


@PROPERTY
@given(lyrics=st.lists(songs, min_size=1, max_size=6), window=windows)
def test_chunks_are_the_tokenizer_windows_of_each_song(tokenizer, lyrics, window):
    max_length, stride = window
    encoded = chunk_lyrics(tokenizer, lyrics, max_length, stride)
    song_of_chunk = encoded["overflow_to_sample_mapping"]
    assert song_of_chunk == sorted(song_of_chunk) and set(song_of_chunk) == set(range(len(lyrics)))
    step = max_length - 2 - stride
    for song, text in enumerate(lyrics):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        chunks = [chunk for chunk, owner in zip(encoded["input_ids"], song_of_chunk, strict=True) if owner == song]
        assert len(chunks) == expected_chunks(len(ids), max_length, stride)
        for position, chunk in enumerate(chunks):
            assert len(chunk) <= max_length
            assert chunk[0] == tokenizer.cls_token_id and chunk[-1] == tokenizer.sep_token_id
            assert chunk[1:-1] == ids[position * step : position * step + max_length - 2]


@st.composite
def chunk_assignments(draw):
    """Chunk scores of `num_songs` songs, each with at least one chunk, in an arbitrary order."""
    num_songs = draw(st.integers(min_value=1, max_value=8))
    per_song = draw(st.lists(st.integers(min_value=1, max_value=5), min_size=num_songs, max_size=num_songs))
    song_index = np.repeat(np.arange(num_songs), per_song)
    order = draw(st.permutations(range(len(song_index))))
    scores = draw(
        st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=len(song_index), max_size=len(song_index))
    )
    return num_songs, song_index[list(order)], np.asarray(scores, dtype=np.float32)


@PROPERTY
@given(assignment=chunk_assignments())
def test_every_song_gets_one_aggregate_of_its_own_chunks(assignment):
    num_songs, song_index, scores = assignment
    index, values = torch.from_numpy(song_index), torch.from_numpy(scores)
    mean = aggregate_chunk_scores(values, index, num_songs, "mean")
    median = aggregate_chunk_scores(values, index, num_songs, "median")
    assert mean.shape == median.shape == (num_songs,)
    for song in range(num_songs):
        own = np.sort(scores[song_index == song])
        assert mean[song].item() == pytest.approx(float(own.astype(np.float64).mean()), abs=1e-5)
        assert median[song].item() == own[(len(own) - 1) // 2]  # torch's median: the lower middle value


@PROPERTY
@given(assignment=chunk_assignments(), repeats=st.lists(st.integers(min_value=0, max_value=30), max_size=6))
def test_song_predictions_count_each_song_once_whatever_the_order_and_repeats(assignment, repeats):
    num_songs, song_index, scores = assignment
    labels = (song_index / 10.0).astype(np.float32)
    chunk_id = np.arange(len(song_index))
    # Shards of a distributed sampler repeat some chunks; they must count once.
    extra = np.asarray([r % len(chunk_id) for r in repeats], dtype=np.int64)
    rows = np.concatenate([chunk_id, extra])
    songs, predicted, true, chunk_scores, _ = song_predictions(
        scores[rows, None], (labels[rows], song_index[rows], chunk_id[rows], np.ones_like(chunk_id)[rows])
    )
    assert songs.tolist() == list(range(num_songs))
    assert len(chunk_scores) == len(chunk_id)
    for song in range(num_songs):
        assert predicted[song] == pytest.approx(float(scores[song_index == song].astype(np.float64).mean()), abs=1e-6)
        assert true[song] == pytest.approx(song / 10.0, abs=1e-6)


@settings(PROPERTY, max_examples=25)  # a datasets map per example
@given(lyrics=st.lists(songs, min_size=1, max_size=5), window=windows, data=st.data())
def test_chunked_training_rows_keep_song_label_and_index(tokenizer, lyrics, window, data):
    max_length, stride = window
    labels = data.draw(st.lists(st.floats(0, 1), min_size=len(lyrics), max_size=len(lyrics)))
    split = datasets.Dataset.from_dict({"text": lyrics, "label": labels})
    chunks = chunk_split(split, tokenizer, max_length, stride)
    counts = np.bincount(chunks["song_index"], minlength=len(lyrics))
    for song, text in enumerate(lyrics):
        token_count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert counts[song] == expected_chunks(token_count, max_length, stride)
    assert chunks["chunk_id"] == list(range(chunks.num_rows))
    assert chunks["labels"] == pytest.approx([labels[song] for song in chunks["song_index"]])
    assert chunks["length"] == [len(ids) for ids in chunks["input_ids"]]


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    torch.manual_seed(0)
    config = LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, layers=2), max_length=24, stride=6)
    return LyricValenceModel(config).eval()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lyrics=st.lists(non_blank_songs, min_size=1, max_size=5), batch_tokens=st.integers(24, 240))
def test_score_songs_gives_each_song_one_finite_score_independent_of_its_batch(
    tiny_model, tokenizer, lyrics, batch_tokens
):
    scores = tiny_model.score_songs(lyrics, tokenizer, batch_tokens=batch_tokens, songs_per_block=2)
    assert len(scores) == len(lyrics) and all(math.isfinite(score) for score in scores)
    alone = [tiny_model.score_songs([text], tokenizer)[0] for text in lyrics]
    assert scores == pytest.approx(alone, abs=1e-5)


@PROPERTY
@given(
    lyrics=st.lists(songs, min_size=2, max_size=5),
    blank=st.sampled_from(["", " ", "\n\t ", "\u3000", "\r\n"]),
    data=st.data(),
)
def test_a_blank_song_is_refused_naming_its_position(tiny_model, tokenizer, lyrics, blank, data):
    lyrics = [text if text.strip() else "la" for text in lyrics]
    position = data.draw(st.integers(0, len(lyrics) - 1))
    lyrics[position] = blank
    with pytest.raises(ValueError, match=f"song {position} "):
        tiny_model.score_songs(lyrics, tokenizer)


def test_token_budgets_below_one_full_chunk_are_refused_rather_than_scoring_garbage(tiny_model, tokenizer):
    for batch_tokens in (23, 0, -1):  # max_length is 24
        with pytest.raises(ValueError, match="batch_tokens"):
            tiny_model.score_songs(["a song"], tokenizer, batch_tokens=batch_tokens)


def test_length_grouped_order_depends_on_seed_and_epoch_only():
    """Resumed runs and every process of a distributed run must draw the same order, whatever their torch RNG."""
    lengths = [3, 9, 4, 7, 1, 8, 2, 6, 5, 9, 3, 4] * 4

    def order(seed, epoch, rng_seed):
        sampler = SeededLengthGroupedSampler(4, lengths=lengths, seed=seed)
        sampler.set_epoch(epoch)
        torch.manual_seed(rng_seed)
        return list(sampler)

    assert order(7, 1, rng_seed=0) == order(7, 1, rng_seed=123)
    assert sorted(order(7, 1, rng_seed=0)) == list(range(len(lengths)))
    assert order(7, 1, rng_seed=0) != order(7, 2, rng_seed=0)
    assert order(7, 1, rng_seed=0) != order(8, 1, rng_seed=0)
