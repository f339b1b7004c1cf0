"""The lexical channel and closed-form (ridge) fitting: on original text whose valence is set by its words."""

import json
import random
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import WORDS, assert_one_line_error, predict_in_process, tiny_bert_config
from sklearn.linear_model import Ridge
from transformers import AutoModel, AutoTokenizer

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.commands import train
from lyric_valence.ridge import (
    LexicalSettings,
    encode_songs,
    fit_ridge,
    lexical_idf,
    lexical_rows,
    solve,
    standardised,
)
from modeling_lyric_valence import LyricValenceModel

BRIGHT, DARK = WORDS[:5], WORDS[5:10]
NEUTRAL = WORDS[10:]
BUCKETS = 2**16


def worded_song(rng: random.Random, valence: float) -> str:
    """Lines of neutral words with bright and dark words mixed in at the shares that `valence` sets."""
    lines = []
    for _ in range(rng.randint(3, 12)):
        words = []
        for _ in range(rng.randint(4, 9)):
            draw = rng.random()
            pool = BRIGHT if draw < 0.4 * valence else DARK if draw < 0.4 else NEUTRAL
            words.append(rng.choice(pool))
        lines.append(" ".join(words))
    return "\n".join(lines)


def ordered_song(rng: random.Random, valence: float) -> str:
    """Lines of two neutral words around the pair "bright dark" (at the share `valence` sets) or "dark bright": every
    line has each word once, so only their order says anything."""
    lines = []
    for _ in range(rng.randint(3, 12)):
        pair = [BRIGHT[0], DARK[0]] if rng.random() < valence else [DARK[0], BRIGHT[0]]
        lines.append(" ".join([rng.choice(NEUTRAL), *pair, rng.choice(NEUTRAL)]))
    return "\n".join(lines)


def worded_songs(count: int, seed: int, song=worded_song) -> tuple[list[str], list[float]]:
    rng = random.Random(seed)
    labels = [round(rng.random(), 3) for _ in range(count)]
    return [song(rng, label) for label in labels], labels


def artists(count: int) -> list[str]:
    return [f"a{i % 30}" for i in range(count)]


def lexical_model(tokenizer, **config) -> LyricValenceModel:
    torch.manual_seed(0)
    settings = {"max_length": 32, "stride": 8, "pooling": "mean", "lexical_buckets": BUCKETS, **config}
    return LyricValenceModel(LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), **settings)).eval()


@pytest.fixture(scope="module")
def songs():
    return {
        name: worded_songs(count, seed)
        for name, count, seed in (("train", 120, 0), ("validation", 40, 1), ("test", 40, 2))
    }


@pytest.fixture(scope="module")
def fitted(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer)
    fit = fit_ridge(model, tokenizer, *songs["train"], artists(len(songs["train"][0])), show_progress=False)
    return model, fit


def mse(predicted, true) -> float:
    return float(np.mean((np.asarray(predicted) - np.asarray(true)) ** 2))


def test_the_fitted_model_scores_what_the_regression_predicts(fitted, tokenizer, songs):
    model, fit = fitted
    lyrics = songs["validation"][0]
    regression = fit.solution.predict(encode_songs(model, tokenizer, lyrics, show_progress=False))
    assert model.score_songs(lyrics, tokenizer) == pytest.approx(regression.tolist(), abs=1e-5)
    assert fit.cv_mse == min(trial["cv_mse"] for trial in fit.trials)
    assert {trial["encoder_scale"] for trial in fit.trials} == {0.35, 0.5, 0.7}
    assert {(trial["lexical_bigrams"], trial["lexical_min_df"]) for trial in fit.trials} == {
        (True, 1),
        (True, 2),
        (False, 1),
        (False, 2),
    }


def test_the_dual_solution_is_scikit_learns_ridge(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer)
    lyrics, labels = songs["train"]
    encoded = encode_songs(model, tokenizer, lyrics, show_progress=False)
    solution = solve(encoded, np.asarray(labels), LexicalSettings(True, 2), 3.0, 0.5, tokenizer.vocab_size)
    encoder = standardised(encoded.pooled, solution.mean, solution.std) * 0.5
    features = sp.hstack([lexical_rows(encoded, solution.idf), sp.csr_matrix(encoder)]).tocsr()
    reference = Ridge(alpha=3.0, solver="sparse_cg", tol=1e-12).fit(features, labels)
    assert solution.predict(encoded) == pytest.approx(reference.predict(features), abs=1e-8)
    assert solution.lexical_weight == pytest.approx(reference.coef_[: model.lexical.buckets], abs=1e-8)


def test_the_lexical_channel_learns_what_words_say(fitted, tokenizer, songs):
    model, _ = fitted
    lyrics, labels = songs["test"]
    mean_predictor = mse([np.mean(songs["train"][1])] * len(labels), labels)
    assert mse(model.score_songs(lyrics, tokenizer), labels) < 0.5 * mean_predictor
    bright, dark = (tokenizer.convert_tokens_to_ids(words) for words in (BRIGHT, DARK))
    assert model.lexical.weight[bright].mean() > 0 > model.lexical.weight[dark].mean()


def test_idf_and_weights_come_from_fitting_songs_only(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer)
    lyrics, labels = songs["train"]
    fit_ridge(model, tokenizer, lyrics, labels, artists(len(lyrics)), show_progress=False)
    unseen = tokenizer.convert_tokens_to_ids("zeppelin")  # a word of no fitting song
    assert model.lexical.idf[unseen].item() == 0.0 and model.lexical.weight[unseen].item() == 0.0
    assert model.lexical.idf[tokenizer.convert_tokens_to_ids(NEUTRAL[0])] > 0
    # an unseen word counts neither in the channel's score nor in its norm
    inputs = tokenizer(
        [f"{BRIGHT[0]} {NEUTRAL[0]}", f"{BRIGHT[0]} {NEUTRAL[0]} zeppelin"], padding=True, return_tensors="pt"
    )
    with_unseen = model.lexical(inputs["input_ids"], inputs["attention_mask"])
    assert with_unseen[1].item() == pytest.approx(with_unseen[0].item(), abs=1e-6) and with_unseen[0].item() != 0


def test_min_df_drops_buckets_of_fewer_chunks(tokenizer, songs):
    model = lexical_model(tokenizer)
    encoded = encode_songs(model, tokenizer, songs["train"][0][:30], show_progress=False)
    frequency = np.bincount(encoded.counts.indices, minlength=encoded.counts.shape[1])
    vocab = tokenizer.vocab_size
    for settings in (LexicalSettings(True, 1), LexicalSettings(True, 2), LexicalSettings(False, 2)):
        idf = lexical_idf(encoded.counts, settings, vocab)
        kept = frequency >= settings.min_df
        if not settings.bigrams:
            kept[vocab:] = False
        assert np.array_equal(idf > 0, kept)
        assert idf[kept] == pytest.approx(np.log((1 + encoded.counts.shape[0]) / (1 + frequency[kept])) + 1)


def test_the_encoder_is_unchanged_and_the_head_is_the_linear_solution(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer, lexical_buckets=0)
    encoder_before = {name: weight.clone() for name, weight in model.encoder.state_dict().items()}
    fit = fit_ridge(model, tokenizer, *songs["train"], artists(len(songs["train"][0])), show_progress=False)
    assert all(torch.equal(weight, encoder_before[name]) for name, weight in model.encoder.state_dict().items())
    assert "lexical_bigrams" not in fit.metrics() and {trial["encoder_scale"] for trial in fit.trials} == {0.35}
    pooled = encode_songs(model, tokenizer, songs["test"][0], show_progress=False).pooled
    slope, offset = model.head.dense.weight[0].double(), model.head.dense.bias[0].double()
    linear = torch.from_numpy(pooled) @ slope + offset
    assert torch.allclose(
        torch.tensor(model.score_songs(songs["test"][0], tokenizer), dtype=torch.float64), linear, atol=1e-5
    )


def test_median_aggregation_cannot_be_fitted(tokenizer, songs):
    with pytest.raises(ValueError, match="linear aggregation"):
        fit_ridge(lexical_model(tokenizer, aggregation="median"), tokenizer, *songs["train"], artists(120))


def test_songs_of_one_group_cannot_be_cross_validated(tokenizer, songs):
    with pytest.raises(ValueError, match="2 groups or more"):
        fit_ridge(lexical_model(tokenizer), tokenizer, *songs["train"], ["one artist"] * 120)


def test_too_few_buckets_for_the_vocabulary_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="must exceed the encoder's vocabulary"):
        LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), lexical_buckets=1000)


def test_a_unigram_channel_counts_each_token_once_and_learns_what_words_say(
    tokenizer, songs, tmp_path, one_torch_thread
):
    model = lexical_model(tokenizer, lexical_buckets=tokenizer.vocab_size, lexical_bigrams=False)
    inputs = tokenizer(["river river thunder", "candle"], padding=True, return_tensors="pt")
    chunk, feature, count = model.lexical.term_counts(inputs["input_ids"], inputs["attention_mask"])
    assert int(count.sum()) == int(inputs["attention_mask"].sum())  # one feature per token: no bigrams
    assert bool((feature < tokenizer.vocab_size).all())
    river = tokenizer.convert_tokens_to_ids("river")
    assert int(count[(chunk == 0) & (feature == river)]) == 2
    fit_ridge(model, tokenizer, *songs["train"], artists(120), bigrams=(False,), show_progress=False)
    lyrics, labels = songs["validation"]
    assert mse(model.score_songs(lyrics, tokenizer), labels) < 0.5 * float(np.var(labels))
    bright, dark = (tokenizer.convert_tokens_to_ids(words) for words in (BRIGHT, DARK))
    assert model.lexical.weight[bright].mean() > 0 > model.lexical.weight[dark].mean()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.config.lexical_bigrams is False
    assert loaded.score_songs(lyrics[:8], tokenizer) == pytest.approx(
        model.score_songs(lyrics[:8], tokenizer), abs=1e-6
    )


def test_a_unigram_channel_needs_a_bucket_per_token(tokenizer):
    with pytest.raises(ValueError, match="must be at least the encoder's vocabulary"):
        LyricValenceConfig(
            encoder=tiny_bert_config(tokenizer.vocab_size, 2), lexical_buckets=1000, lexical_bigrams=False
        )


def best_cv_mse(fit, bigrams: bool) -> float:
    return min(trial["cv_mse"] for trial in fit.trials if trial["lexical_bigrams"] is bigrams)


def test_bigrams_are_kept_where_word_order_tells_valence(tokenizer, one_torch_thread):
    model = lexical_model(tokenizer, lexical_bigrams=False)
    lyrics, labels = worded_songs(150, 3, song=ordered_song)
    fit = fit_ridge(model, tokenizer, lyrics, labels, artists(len(lyrics)), show_progress=False)
    assert fit.metrics()["lexical_bigrams"] is True and model.config.lexical_bigrams and model.lexical.bigrams
    assert best_cv_mse(fit, True) < 0.5 * best_cv_mse(fit, False)  # one of each word per line: unigrams see nothing
    assert best_cv_mse(fit, False) > 0.9 * float(np.var(labels))


def test_bigrams_are_dropped_where_words_come_in_any_order(fitted, tokenizer, tmp_path):
    model, fit = fitted
    assert fit.metrics()["lexical_bigrams"] is False and not model.config.lexical_bigrams and not model.lexical.bigrams
    assert best_cv_mse(fit, False) < best_cv_mse(fit, True)
    inputs = tokenizer(["river thunder"], return_tensors="pt")
    features = model.lexical.token_features(inputs["input_ids"], inputs["attention_mask"])
    assert bool((features < tokenizer.vocab_size).all())  # the fitted channel counts unigrams only


def test_saved_lexical_model_loads_anywhere_with_identical_scores(fitted, tokenizer, songs, tmp_path, capsys):
    model, _ = fitted
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lyrics = songs["test"][0][:8]
    expected = model.score_songs(lyrics, tokenizer)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.lexical is not None and loaded.config.lexical_buckets == BUCKETS
    assert loaded.score_songs(lyrics, AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)) == pytest.approx(
        expected, abs=1e-6
    )
    table = tmp_path / "songs.csv"
    pd.DataFrame({"seq": lyrics}).to_csv(table, index=False)
    code, out, err = predict_in_process(capsys, table, "--model", tmp_path, "--format", "jsonl")
    assert code == 0, err
    scores = [json.loads(line)["valence"] for line in out.splitlines()]
    assert scores == pytest.approx(expected, abs=1e-5)


def test_train_py_songs_recipe_fits_in_closed_form(tmp_path, tiny_encoder_dir, monkeypatch, songs, capsys):
    lyrics, labels = songs["train"]
    data = tmp_path / "songs.csv"
    pd.DataFrame({"seq": lyrics, "label": labels, "artist": artists(len(lyrics))}).to_csv(data)
    output = tmp_path / "out"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train.py",
            "--recipe",
            "songs",
            "--model_name_or_path",
            str(tiny_encoder_dir),
            "--data_file",
            str(data),
            "--output_dir",
            str(output),
            "--lexical_buckets",
            str(BUCKETS),
            "--max_length",
            "32",
            "--stride",
            "8",
            "--per_device_eval_batch_size",
            "8",
            "--report_to",
            "none",
            "--disable_tqdm",
            "True",
        ],
    )
    train.main()
    assert "/s]" not in capsys.readouterr().err  # --disable_tqdm: no bar reading, chunking or encoding the songs
    train_results = json.loads((output / "train_results.json").read_text())
    assert train_results["ridge_alpha"] in (0.3, 1.0, 3.0, 10.0, 30.0)
    # --lexical_bigrams auto: words in any order, so the training songs' cross-validation drops the bigrams
    assert train_results["lexical_bigrams"] is False and train_results["lexical_min_df"] in (1, 2)
    assert 0 < train_results["ridge_cv_mse"] < np.var(labels)
    test = json.loads((output / "test_results.json").read_text())
    predictions = pd.read_csv(output / "test_predictions.csv")
    assert test["test_mse"] == pytest.approx(mse(predictions.predicted_valence, predictions.true_valence), rel=1e-4)
    assert test["test_mse"] < mse([np.mean(labels)] * len(predictions), predictions.true_valence)
    loaded = AutoModel.from_pretrained(output, trust_remote_code=True)
    assert loaded.lexical is not None and loaded.config.lexical_bigrams is False
    card = (output / "README.md").read_text()
    assert "picked by grouped 5-fold cross-validation on the training songs" in card and "bigrams off, min_df" in card


def test_lexical_bigrams_flag_reaches_the_model_arguments(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "--recipe", "songs", "--lexical_bigrams", "off"])
    assert train.parse_arguments()[0].lexical_bigrams == "off"
    monkeypatch.setattr(sys, "argv", ["train.py", "--recipe", "songs"])
    assert train.parse_arguments()[0].lexical_bigrams == "auto"
    monkeypatch.setattr(sys, "argv", ["train.py", "--recipe", "songs", "--lexical_bigrams", "no"])
    with pytest.raises(SystemExit) as exit:
        train.parse_arguments()
    assert_one_line_error(exit.value.code, capsys.readouterr().err, "--lexical-bigrams: invalid choice: 'no'")


def test_a_lexical_channel_outside_ridge_mode_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "--lexical_buckets", "65536"])
    with pytest.raises(SystemExit) as exit:
        train.parse_arguments()
    assert_one_line_error(exit.value.code, capsys.readouterr().err, "--lexical_buckets needs --finetuning_mode ridge")
