"""How a model was fitted: recorded on its config by lyric_valence.fitting, kept when saved, told by its card."""

import io

import datasets
import pandas as pd
import pytest
import torch
from conftest import predict_in_process, tiny_bert_config
from test_ridge import artists, lexical_model, worded_songs
from transformers import AutoModel, TrainingArguments

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.card import label_description, render_model_card
from lyric_valence.data.columns import resolve_columns
from lyric_valence.fitting import LoraArguments, describe_fit, fit, record_fit
from lyric_valence.ridge import fit_ridge
from lyric_valence.trainer import SongBatchSampler, song_loss
from modeling_lyric_valence import LyricValenceModel


def test_a_ridge_fit_is_recorded_on_the_config_and_survives_save_and_load(tokenizer, tmp_path, one_torch_thread):
    lyrics, labels = worded_songs(90, seed=3)
    model = lexical_model(tokenizer)
    assert model.config.finetuning_mode is None
    ridge = fit_ridge(model, tokenizer, lyrics, labels, artists(len(lyrics)), show_progress=False)
    model.save_pretrained(tmp_path)

    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    config = loaded.config
    assert config.finetuning_mode == "ridge"
    assert config.fit_settings == ridge.metrics()
    assert (config.lexical_bigrams, config.lexical_min_df) == (
        ridge.solution.settings.bigrams,
        ridge.solution.settings.min_df,
    )
    assert config.lexical_buckets == model.config.lexical_buckets
    assert loaded.score_songs(lyrics[:5], tokenizer) == pytest.approx(model.score_songs(lyrics[:5], tokenizer))
    fit_row = describe_fit(config)
    assert fit_row["fit method"].startswith("`ridge`: closed form")
    assert "65,536 hashed TF-IDF features" in fit_row["lexical channel"]


def test_a_trainer_fit_records_its_mode_and_settings(tokenizer, tmp_path, one_torch_thread):
    torch.manual_seed(0)
    config = LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), max_length=32, stride=8)
    lyrics, labels = worded_songs(24, seed=4)
    split = {"song_id": [str(i) for i in range(24)], "text": lyrics, "label": labels}
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({name: values[:16] for name, values in split.items()}),
        validation=datasets.Dataset.from_dict({name: values[16:] for name, values in split.items()}),
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=8, report_to="none",
        eval_strategy="no", save_strategy="no", label_names=["labels", "song_index", "chunk_id", "length"],
        disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    fitted = fit(LyricValenceModel(config), tokenizer, splits, "head_only", args, head_learning_rate=1e-3)

    recorded = fitted.model.config
    assert recorded.finetuning_mode == "head_only"
    assert recorded.fit_settings["head_learning_rate"] == 1e-3 and recorded.fit_settings["epochs"] == 1
    evaluation = fitted.evaluate(splits["validation"], "eval")
    assert sorted(evaluation.song_ids) == sorted(split["song_id"][16:])
    assert evaluation.metrics["eval_songs"] == 8 and "eval_mse" in evaluation.metrics
    saved = fitted.save(tmp_path / "model")
    assert LyricValenceConfig.from_pretrained(tmp_path / "model").finetuning_mode == "head_only"
    assert not (tmp_path / "model" / "adapter").exists() and saved is fitted.model


def card_text(config, labels) -> str:
    return render_model_card(
        repo_id="me/lyric-valence",
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        config=config,
        test_metrics={"mse": 0.03, "pearson": 0.6, "songs": 12},
        dataset_name="data",
        dataset_description="data",
        labels=labels,
    ).content


def test_the_card_of_an_emobank_model_says_it_predicts_text_valence(tokenizer):
    columns, layout_range = resolve_columns("emobank.csv", ["id", "split", "V", "A", "D", "text"])
    config = LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2))
    record_fit(config, "lora", {"learning_rate": 2e-3, "lora": "r=4, alpha=8"})
    card = card_text(config, label_description("emobank.csv", columns, layout_range))

    assert "EmoBank's valence (`V` of `emobank.csv`" in card and "(text valence)" in card
    assert "not how a recording sounds" in card and "Spotify" not in card.split("## Intended use")[0]
    assert "`lora`: LoRA adapters" in card and "| lora | r=4, alpha=8 |" in card
    assert "lexical channel" not in card.split("## How to use")[0]


def test_the_card_of_a_model_on_the_users_labels_names_their_column_and_the_ridge_fit(tokenizer, one_torch_thread):
    columns, _ = resolve_columns("moods.csv", ["lyrics", "mood", "artist"], None, needed=("text",))
    columns.label = "mood"
    lyrics, labels = worded_songs(60, seed=5)
    model = lexical_model(tokenizer)
    fit_ridge(model, tokenizer, lyrics, labels, artists(len(lyrics)), show_progress=False)
    card = card_text(model.config, label_description("moods.csv", columns, [0, 10]))

    assert "the `mood` column of `moods.csv`, rescaled from 0-10" in card
    assert "text valence" not in card and "EmoBank" not in card
    assert "`ridge`: closed form" in card and "a lexical channel: 65,536 hashed TF-IDF features" in card
    assert "ridge settings (picked by grouped 5-fold cross-validation on the training songs)" in card


def test_song_batches_hold_whole_songs_in_a_seeded_order_per_epoch():
    song_index = [0, 0, 1, 2, 2, 2, 3, 4, 4, 5]
    batches = SongBatchSampler(song_index, chunks_per_batch=3, seed=7)
    first = list(batches)
    assert sorted(chunk for batch in first for chunk in batch) == list(range(len(song_index)))
    for batch in first:
        songs = {song_index[chunk] for chunk in batch}
        assert sorted(batch) == [chunk for chunk, song in enumerate(song_index) if song in songs]  # whole songs
        assert len(batch) <= 3
    assert list(batches) == first
    batches.sampler.set_epoch(1)
    assert list(batches) != first and len(batches) == len(list(batches))


def test_the_song_loss_is_the_error_of_each_songs_mean_chunk_score():
    scores = torch.tensor([0.2, 0.6, 0.9, 0.1, 0.3])
    labels = torch.tensor([0.5, 0.5, 1.0, 0.0, 0.0])
    song_index = torch.tensor([4, 4, 9, 2, 2])
    expected = ((0.4 - 0.5) ** 2 + (0.9 - 1.0) ** 2 + (0.2 - 0.0) ** 2) / 3
    assert song_loss(scores, labels, song_index, torch.ones(5)).item() == pytest.approx(expected)
    weighted = ((0.2 * 1 + 0.6 * 3) / 4 - 0.5) ** 2
    assert song_loss(scores[:2], labels[:2], song_index[:2], torch.tensor([1, 3])).item() == pytest.approx(weighted)


def worded_splits(tokenizer) -> datasets.DatasetDict:
    splits = {}
    for name, count, seed in (("train", 60, 6), ("validation", 16, 7), ("test", 16, 8)):
        lyrics, labels = worded_songs(count, seed)
        ids = [f"{name}{i}" for i in range(count)]
        if name == "validation":  # a word no training song has: the warm start must not see it
            lyrics = [f"{text}\nzebra" for text in lyrics]
        splits[name] = datasets.Dataset.from_dict(
            {"song_id": ids, "text": lyrics, "label": labels, "group": artists(count)}
        )
    return datasets.DatasetDict(splits)


def test_lora_from_the_ridge_fit_on_the_song_loss_saves_loads_and_predicts_the_same(
    tokenizer, tmp_path, capsys, one_torch_thread
):
    splits = worded_splits(tokenizer)
    model = lexical_model(tokenizer, head_hidden_size=8)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), num_train_epochs=1, per_device_train_batch_size=8, learning_rate=1e-3,
        report_to="none", eval_strategy="no", save_strategy="no", disable_tqdm=True, use_cpu=True,
        label_names=["labels", "song_index", "chunk_id", "length"],
    )  # fmt: skip
    fitted = fit(
        model, tokenizer, splits, "lora", args, lora=LoraArguments(lora_num_layers=1), ridge_warm_start=True,
        song_loss=True, head_learning_rate=1e-3,
    )  # fmt: skip
    settings = model.config.fit_settings
    assert model.config.finetuning_mode == "lora" and settings["loss"] == "song-level"
    assert settings["warm_start"]["ridge_alpha"] > 0
    assert settings["warm_start"]["kept_start"] == fitted.metrics["kept_ridge_start"]
    assert {"ridge_start_eval_mse", "ridge_start_test_mse"} <= fitted.metrics.keys()
    zebra = tokenizer.convert_tokens_to_ids("zebra")
    assert model.lexical.idf[zebra].item() == 0.0  # fitted on the training songs only
    lexical_weight = model.lexical.weight.detach().clone()
    assert fitted.trainer.state.global_step > 0

    saved = fitted.save(tmp_path / "model")
    assert torch.equal(saved.lexical.weight, lexical_weight)  # frozen while the encoder trained
    assert (tmp_path / "model" / "adapter" / "adapter_config.json").is_file()
    loaded = AutoModel.from_pretrained(tmp_path / "model", trust_remote_code=True)
    assert loaded.config.fit_settings["loss"] == "song-level"
    lyrics = list(splits["test"]["text"])
    scores = saved.score_songs(lyrics, tokenizer)
    assert loaded.score_songs(lyrics, tokenizer) == pytest.approx(scores, abs=1e-6)
    (tmp_path / "songs.csv").write_text(pd.DataFrame({"lyrics": lyrics}).to_csv(index=False))
    capsys.readouterr()  # the Trainer's own prints
    code, out, _ = predict_in_process(capsys, str(tmp_path / "songs.csv"), "--model", str(tmp_path / "model"))
    assert code == 0
    predicted = pd.read_csv(io.StringIO(out))["valence"].tolist()
    assert predicted == pytest.approx(scores, abs=1e-5)


def test_a_warm_start_that_fine_tuning_makes_worse_keeps_the_ridge_start(tokenizer, tmp_path, one_torch_thread):
    splits = worded_splits(tokenizer)
    model = lexical_model(tokenizer, head_hidden_size=8)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), num_train_epochs=1, per_device_train_batch_size=8, learning_rate=5.0,
        report_to="none", eval_strategy="epoch", save_strategy="no", disable_tqdm=True, use_cpu=True,
        label_names=["labels", "song_index", "chunk_id", "length"],
    )  # fmt: skip
    fitted = fit(
        model, tokenizer, splits, "lora", args, lora=LoraArguments(lora_num_layers=1), ridge_warm_start=True,
        head_learning_rate=5.0,
    )  # fmt: skip
    warm_start = model.config.fit_settings["warm_start"]
    assert fitted.metrics["kept_ridge_start"] and warm_start["kept_start"]
    assert warm_start["fine_tuned_validation_mse"] > warm_start["validation_mse"]
    assert "so the model is the ridge start" in describe_fit(model.config)["warm start"]
    start_mse = fitted.metrics["ridge_start_eval_mse"]
    assert fitted.metrics["ridge_start_test_mse"] > 0
    assert fitted.evaluate(splits["validation"], "eval").metrics["eval_mse"] == pytest.approx(start_mse, rel=1e-4)
    saved = fitted.save(tmp_path / "model")
    lyrics = list(splits["validation"]["text"])
    ridge_only = lexical_model(tokenizer, head_hidden_size=8)
    fit(ridge_only, tokenizer, splits, "ridge", args)
    assert saved.score_songs(lyrics, tokenizer) == pytest.approx(ridge_only.score_songs(lyrics, tokenizer), abs=1e-5)


def test_evaluation_batches_by_token_budget_longest_first_and_scores_every_song_as_predict_does(tokenizer, tmp_path):
    from transformers import DataCollatorWithPadding

    from lyric_valence.trainer import ChunkedSongTrainer, chunk_split, make_compute_metrics

    splits = worded_splits(tokenizer)
    model = lexical_model(tokenizer, head_hidden_size=8, lexical_buckets=0)
    chunks = chunk_split(splits["validation"], tokenizer, model.config.max_length, model.config.stride)
    budget = 3 * max(chunks["length"])
    shapes, collate = [], DataCollatorWithPadding(tokenizer)

    def recording_collator(features):
        batch = collate(features)
        shapes.append(tuple(batch["input_ids"].shape))
        return batch

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to="none", use_cpu=True,
        label_names=["labels", "song_index", "chunk_id", "length"],
    )  # fmt: skip
    trainer = ChunkedSongTrainer(
        model=model, args=args, eval_dataset=chunks, data_collator=recording_collator,
        compute_metrics=make_compute_metrics(), eval_batch_tokens=budget,
    )  # fmt: skip
    metrics = trainer.evaluate()
    widths = [width for _, width in shapes]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    assert all(rows * width <= budget for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == chunks.num_rows and len({rows for rows, _ in shapes}) > 1
    predicted = model.score_songs(list(splits["validation"]["text"]), tokenizer)
    labels = list(splits["validation"]["label"])
    expected = sum((p - y) ** 2 for p, y in zip(predicted, labels, strict=True)) / len(labels)
    assert metrics["eval_songs"] == len(labels) and metrics["eval_mse"] == pytest.approx(expected, rel=1e-4)
