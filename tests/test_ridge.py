"""The lexical channel and closed-form (ridge) fitting: on original text whose valence is set by its words."""

import json
import random
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from lyric_valence import train
from configuration_lyric_valence import LyricValenceConfig
from conftest import WORDS, assert_one_line_error, predict_in_process, tiny_bert_config
from lyric_valence.ridge import choose_lexical_bigrams, fit_ridge, song_features
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
    return {name: worded_songs(count, seed) for name, count, seed in (("train", 120, 0), ("validation", 40, 1), ("test", 40, 2))}


@pytest.fixture(scope="module")
def fitted(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer)
    fit = fit_ridge(model, tokenizer, *songs["train"], *songs["validation"])
    return model, fit


def mse(predicted, true) -> float:
    return float(np.mean((np.asarray(predicted) - np.asarray(true)) ** 2))


def test_the_fitted_model_scores_what_the_regression_predicts(fitted, tokenizer, songs):
    model, fit = fitted
    lyrics, labels = songs["validation"]
    assert mse(model.score_songs(lyrics, tokenizer), labels) == pytest.approx(fit.validation_mse, rel=1e-5)
    assert fit.validation_mse == min(trial["validation_mse"] for trial in fit.trials)
    assert {trial["encoder_scale"] for trial in fit.trials} == {0.35, 0.5, 0.7}


def test_the_lexical_channel_learns_what_words_say(fitted, tokenizer, songs):
    model, _ = fitted
    lyrics, labels = songs["test"]
    mean_predictor = mse([np.mean(songs["train"][1])] * len(labels), labels)
    assert mse(model.score_songs(lyrics, tokenizer), labels) < 0.5 * mean_predictor
    bright, dark = (tokenizer.convert_tokens_to_ids(words) for words in (BRIGHT, DARK))
    assert model.lexical.weight[bright].mean() > 0 > model.lexical.weight[dark].mean()


def test_idf_and_weights_come_from_training_songs_only(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer)
    lyrics, labels = songs["train"]
    unseen = "zeppelin"  # a word of validation songs alone
    validation = [f"{song}\n{unseen} {unseen}" for song in songs["validation"][0]]
    fit_ridge(model, tokenizer, lyrics, labels, validation, songs["validation"][1])
    chunks = len(tokenizer(lyrics, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)["input_ids"])
    unseen_id = tokenizer.convert_tokens_to_ids(unseen)
    assert model.lexical.idf[unseen_id].item() == pytest.approx(np.log(1 + chunks) + 1)
    assert model.lexical.idf[tokenizer.convert_tokens_to_ids(NEUTRAL[0])] < model.lexical.idf[unseen_id]
    assert model.lexical.weight[unseen_id].item() == 0.0


def test_the_encoder_is_unchanged_and_the_head_is_the_linear_solution(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer, lexical_buckets=0)
    encoder_before = {name: weight.clone() for name, weight in model.encoder.state_dict().items()}
    fit_ridge(model, tokenizer, *songs["train"], *songs["validation"])
    assert all(torch.equal(weight, encoder_before[name]) for name, weight in model.encoder.state_dict().items())
    features = song_features(model, tokenizer, songs["test"][0])
    slope, offset = model.head.dense.weight[0].double(), model.head.dense.bias[0].double()
    linear = torch.from_numpy(features.pooled) @ slope + offset
    assert torch.allclose(torch.tensor(model.score_songs(songs["test"][0], tokenizer), dtype=torch.float64), linear, atol=1e-5)


def test_median_aggregation_cannot_be_fitted(tokenizer, songs):
    with pytest.raises(ValueError, match="linear aggregation"):
        fit_ridge(lexical_model(tokenizer, aggregation="median"), tokenizer, *songs["train"], *songs["validation"])


def test_too_few_buckets_for_the_vocabulary_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="must exceed the encoder's vocabulary"):
        LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), lexical_buckets=1000)


def test_a_unigram_channel_counts_each_token_once_and_learns_what_words_say(tokenizer, songs, tmp_path, one_torch_thread):
    model = lexical_model(tokenizer, lexical_buckets=tokenizer.vocab_size, lexical_bigrams=False)
    inputs = tokenizer(["river river thunder", "candle"], padding=True, return_tensors="pt")
    chunk, feature, count = model.lexical.term_counts(inputs["input_ids"], inputs["attention_mask"])
    assert int(count.sum()) == int(inputs["attention_mask"].sum())  # one feature per token: no bigrams
    assert bool((feature < tokenizer.vocab_size).all())
    river = tokenizer.convert_tokens_to_ids("river")
    assert int(count[(chunk == 0) & (feature == river)]) == 2
    fit = fit_ridge(model, tokenizer, *songs["train"], *songs["validation"])
    lyrics, labels = songs["validation"]
    assert mse(model.score_songs(lyrics, tokenizer), labels) == pytest.approx(fit.validation_mse, rel=1e-5)
    bright, dark = (tokenizer.convert_tokens_to_ids(words) for words in (BRIGHT, DARK))
    assert model.lexical.weight[bright].mean() > 0 > model.lexical.weight[dark].mean()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.config.lexical_bigrams is False
    assert loaded.score_songs(lyrics[:8], tokenizer) == pytest.approx(model.score_songs(lyrics[:8], tokenizer), abs=1e-6)


def test_a_unigram_channel_needs_a_bucket_per_token(tokenizer):
    with pytest.raises(ValueError, match="must be at least the encoder's vocabulary"):
        LyricValenceConfig(
            encoder=tiny_bert_config(tokenizer.vocab_size, 2), lexical_buckets=1000, lexical_bigrams=False
        )


def test_bigrams_are_kept_where_word_order_tells_valence(tokenizer, one_torch_thread):
    model = lexical_model(tokenizer, lexical_bigrams=False)
    lyrics, labels = worded_songs(150, 3, song=ordered_song)
    choice = choose_lexical_bigrams(model, tokenizer, lyrics, labels, artists(len(lyrics)))
    assert choice.bigrams and model.config.lexical_bigrams and model.lexical.bigrams
    assert choice.cv_mse_bigrams < 0.5 * choice.cv_mse_unigrams  # one of each word per line: unigrams see nothing
    assert choice.cv_mse_unigrams > 0.9 * float(np.var(labels))


def test_bigrams_are_dropped_where_words_come_in_any_order(tokenizer, songs, one_torch_thread):
    model = lexical_model(tokenizer)
    choice = choose_lexical_bigrams(model, tokenizer, *songs["train"], artists(len(songs["train"][0])))
    assert not choice.bigrams and not model.config.lexical_bigrams and not model.lexical.bigrams
    assert choice.cv_mse_unigrams < choice.cv_mse_bigrams


def test_bigrams_are_left_as_they_are_without_two_groups(tokenizer, songs):
    model = lexical_model(tokenizer)
    assert choose_lexical_bigrams(model, tokenizer, *songs["train"], ["one artist"] * len(songs["train"][0])) is None
    assert model.config.lexical_bigrams and model.lexical.bigrams


def test_ridge_fit_with_training_groups_chooses_bigrams_first(tokenizer, songs, tmp_path, one_torch_thread):
    model = lexical_model(tokenizer)
    fit = fit_ridge(model, tokenizer, *songs["train"], *songs["validation"], train_groups=artists(len(songs["train"][0])))
    assert fit.metrics()["lexical_bigrams"] is False and fit.bigram_choice.cv_mse_unigrams > 0
    inputs = tokenizer(["river thunder"], return_tensors="pt")
    features = model.lexical.token_features(inputs["input_ids"], inputs["attention_mask"])
    assert bool((features < tokenizer.vocab_size).all())  # the fitted channel counts unigrams only
    lyrics = songs["validation"][0]
    assert mse(model.score_songs(lyrics, tokenizer), songs["validation"][1]) == pytest.approx(fit.validation_mse, rel=1e-5)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.config.lexical_bigrams is False
    assert loaded.score_songs(lyrics[:8], tokenizer) == pytest.approx(model.score_songs(lyrics[:8], tokenizer), abs=1e-6)


def test_saved_lexical_model_loads_anywhere_with_identical_scores(fitted, tokenizer, songs, tmp_path, capsys):
    model, _ = fitted
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lyrics = songs["test"][0][:8]
    expected = model.score_songs(lyrics, tokenizer)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.lexical is not None and loaded.config.lexical_buckets == BUCKETS
    assert loaded.score_songs(lyrics, AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)) == pytest.approx(expected, abs=1e-6)
    table = tmp_path / "songs.csv"
    pd.DataFrame({"seq": lyrics}).to_csv(table, index=False)
    code, out, err = predict_in_process(capsys, table, "--model", tmp_path, "--format", "jsonl")
    assert code == 0, err
    scores = [json.loads(line)["valence"] for line in out.splitlines()]
    assert scores == pytest.approx(expected, abs=1e-5)


def test_train_py_songs_recipe_fits_in_closed_form(tmp_path, tiny_encoder_dir, monkeypatch, songs):
    lyrics, labels = songs["train"]
    data = tmp_path / "songs.csv"
    pd.DataFrame({"seq": lyrics, "label": labels, "artist": artists(len(lyrics))}).to_csv(data)
    output = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [
        "train.py", "--recipe", "songs", "--model_name_or_path", str(tiny_encoder_dir), "--data_file", str(data),
        "--output_dir", str(output), "--lexical_buckets", str(BUCKETS), "--max_length", "32", "--stride", "8",
        "--per_device_eval_batch_size", "8", "--report_to", "none", "--disable_tqdm", "True",
    ])
    train.main()
    train_results = json.loads((output / "train_results.json").read_text())
    assert train_results["ridge_alpha"] in (0.3, 1.0, 3.0, 10.0, 30.0)
    # --lexical_bigrams auto: words in any order, so the training songs' cross-validation drops the bigrams
    assert train_results["lexical_bigrams"] is False
    assert train_results["lexical_cv_mse_unigrams"] < train_results["lexical_cv_mse_bigrams"]
    test = json.loads((output / "test_results.json").read_text())
    predictions = pd.read_csv(output / "test_predictions.csv")
    assert test["test_mse"] == pytest.approx(mse(predictions.predicted_valence, predictions.true_valence), rel=1e-4)
    assert test["test_mse"] < mse([np.mean(labels)] * len(predictions), predictions.true_valence)
    loaded = AutoModel.from_pretrained(output, trust_remote_code=True)
    assert loaded.lexical is not None and loaded.config.lexical_bigrams is False
    assert "bigrams off (picked by grouped 5-fold cross-validation" in (output / "README.md").read_text()


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
