"""The lyrics benchmark's pieces (bench/lyrics.py) on text written here: baselines, chunk buckets, the table."""

import random

import numpy as np
import pandas as pd
import pytest

from bench.lyrics import baselines, chunks_per_song, metrics_by_chunks
from bench.report import render_lyrics
from conftest import WORDS


def frames_where_one_word_carries_the_label(songs_per_split: int = 60) -> dict[str, pd.DataFrame]:
    """Songs of random words; "sunshine" in a song raises its label by 0.4: a bag-of-words model can learn it."""
    rng = random.Random(0)
    frames = {}
    for split in ("train", "validation", "test"):
        rows = []
        for song in range(songs_per_split):
            happy = rng.random() < 0.5
            words = [rng.choice(WORDS) for _ in range(40)] + ["sunshine"] * (3 if happy else 0)
            rows.append({"song_id": f"{split}{song}", "text": " ".join(words), "label": 0.3 + 0.4 * happy + rng.gauss(0, 0.05)})
        frames[split] = pd.DataFrame(rows)
    return frames


def test_tfidf_ridge_learns_what_the_mean_predictor_cannot():
    frames = frames_where_one_word_carries_the_label()
    results = baselines(frames)
    true = frames["test"]["label"].to_numpy()
    mean_mse = np.mean((results["mean predictor"]["test"]["predicted"] - true) ** 2)
    ridge_mse = np.mean((results["TF-IDF + ridge"]["test"]["predicted"] - true) ** 2)
    assert ridge_mse < 0.5 * mean_mse
    assert np.all(results["mean predictor"]["test"]["predicted"] == frames["train"]["label"].mean())


def test_errors_are_split_by_chunks_per_song(tokenizer):
    texts = ["short song", " ".join(["river"] * 600), " ".join(["river"] * 1500)]
    chunks = chunks_per_song(tokenizer, texts)
    assert chunks.tolist() == [1, 2, 4]  # 384 new tokens per extra chunk of 512 with stride 128
    predicted, true = np.array([0.5, 0.4, 0.9]), np.array([0.5, 0.6, 0.3])
    metrics = metrics_by_chunks(predicted, true, chunks)
    assert metrics["mse_1_chunks"] == 0 and metrics["mse_2_chunks"] == pytest.approx(0.04)
    assert metrics["mse_3+_chunks"] == pytest.approx(0.36) and metrics["songs_3+_chunks"] == 1
    assert metrics["mse"] == pytest.approx((0 + 0.04 + 0.36) / 3)


def test_the_table_shows_every_row_and_what_happened_to_unfinished_trials():
    metrics = {"mse": 0.05, "pearson": 0.3, "spearman": 0.3, "r2": 0.1, "mse_1_chunks": 0.05, "songs_1_chunks": 3,
               "mse_2_chunks": None, "songs_2_chunks": 0, "mse_3+_chunks": None, "songs_3+_chunks": 0}
    record = {
        "data_file": "lyrics.csv", "command": "python bench/lyrics.py", "aggregations": {},
        "counts": {"train_songs": 8, "validation_songs": 3, "test_songs": 3},
        "rows": {"TF-IDF + ridge": {"flags": "ridge", "validation": metrics, "test": metrics},
                 "full": {"flags": "--finetuning_mode full", "status": "stopped at the budget after 190 s"}},
    }
    table = "\n".join(render_lyrics(record))
    assert "| TF-IDF + ridge | `ridge` | 0.0500 | 0.300 | 0.0500 | 0.300 | 0.300 | 0.100 | 0.0500 /  /  |" in table
    assert "| full | `--finetuning_mode full` | stopped at the budget after 190 s |" in table
