"""The lyrics benchmark's pieces (bench/lyrics.py) on text written here: baselines, the seeds' table, its section."""

import random

import numpy as np
import pandas as pd
from conftest import WORDS

from bench.lyrics import baselines, summary, trained_model_predictions


def frames_where_words_carry_the_label(songs_per_split: int = 60) -> dict[str, pd.DataFrame]:
    """Songs of random words; "sunshine" raises a song's label by 0.4 and "wonderful" lines read as positive."""
    rng = random.Random(0)
    frames = {}
    for split in ("train", "validation", "test"):
        rows = []
        for song in range(songs_per_split):
            happy = rng.random() < 0.5
            lines = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(5)]
            if happy:
                lines += ["sunshine sunshine sunshine", "what a wonderful happy day"]
            rows.append(
                {"song_id": f"{split}{song}", "text": "\n".join(lines), "label": 0.3 + 0.4 * happy + rng.gauss(0, 0.05)}
            )
        frames[split] = pd.DataFrame(rows)
    return frames


def mse(predicted, true) -> float:
    return float(np.mean((predicted - true) ** 2))


def test_tfidf_ridge_and_the_lexicon_learn_what_the_mean_predictor_cannot():
    frames = frames_where_words_carry_the_label()
    rows = baselines(frames)
    true = frames["test"]["label"].to_numpy()
    assert np.all(rows["mean predictor"]["test"] == frames["train"]["label"].mean())
    mean_mse = mse(rows["mean predictor"]["test"], true)
    assert mse(rows["TF-IDF + ridge"]["test"], true) < 0.5 * mean_mse
    assert mse(rows["VADER lexicon + linear"]["test"], true) < 0.5 * mean_mse


def seed_metrics(mse_value: float, pearson: float) -> dict:
    return {split: {"mse": mse_value, "pearson": pearson} for split in ("validation", "test")}


def test_the_table_averages_seeds_and_compares_with_ridge():
    record = {
        "rows": {
            "TF-IDF + ridge": {"flags": "", "seeds": {"1": seed_metrics(0.05, 0.40), "2": seed_metrics(0.04, 0.50)}},
            "char TF-IDF + ridge": {"flags": "", "seeds": {"1": seed_metrics(0.04, 0.4), "2": seed_metrics(0.05, 0.4)}},
            "songs": {
                "flags": "--recipe songs",
                "seeds": {
                    "1": {**seed_metrics(0.045, 0.45), "train_s": 30},
                    "2": {**seed_metrics(0.036, 0.55), "train_s": 50},
                },
            },
        }
    }
    table = summary(record).set_index("method")
    assert table.loc["songs", "test mse"] == "0.0405 ± 0.0045"
    assert table.loc["songs", "test pearson"] == "0.5000 ± 0.0500"
    assert table.loc["songs", "test MSE vs ridge"] == "-10.0%"
    assert (
        table.loc["songs", "test MSE vs char ridge"] == "-10.0%"
        and table.loc["TF-IDF + ridge", "test MSE vs char ridge"] == "+0.0%"
    )
    assert table.loc["songs", "train s"] == "40" and table.loc["TF-IDF + ridge", "train s"] == ""
    assert table.loc["songs", "flags"] == "`--recipe songs`" and table.loc["songs", "seeds"] == 2


def test_a_model_trained_elsewhere_is_scored_as_saved_without_seeing_the_labels(tiny_model_dir):
    frames = frames_where_words_carry_the_label(songs_per_split=6)
    flipped = {split: frame.assign(label=1 - frame["label"]) for split, frame in frames.items()}
    predicted = trained_model_predictions(str(tiny_model_dir), frames)
    assert {split: len(values) for split, values in predicted.items()} == {"validation": 6, "test": 6}
    assert all(np.all((values >= 0) & (values <= 1)) for values in predicted.values())
    again = trained_model_predictions(str(tiny_model_dir), flipped)
    assert all(np.array_equal(predicted[split], again[split]) for split in predicted)
