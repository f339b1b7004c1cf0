"""How a model was fitted: recorded on its config by lyric_valence.fitting, kept when saved, told by its card."""

import datasets
import pytest
import torch
from conftest import tiny_bert_config
from test_ridge import artists, lexical_model, worded_songs
from transformers import AutoModel, TrainingArguments

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.card import label_description, render_model_card
from lyric_valence.data.columns import resolve_columns
from lyric_valence.fitting import describe_fit, fit, record_fit
from lyric_valence.ridge import fit_ridge
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
