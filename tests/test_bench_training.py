"""The benchmark's training set-up (bench/training.py) matches train.py and the reference recipe."""

import subprocess
import sys

import datasets
import pytest

from bench.models import build_model
from bench.run import DEFAULT_VARIANTS, VARIANT_FLAGS
from bench.training import (
    BATCH_SIZE,
    MAX_LENGTH,
    MEGABATCH_BATCHES,
    OUR_HEAD_LEARNING_RATE,
    OUR_TRAINING_ARGUMENTS,
    batch_shapes,
    chunk_features,
    epoch_sample,
    flag_values,
    is_matrix_product,
    middle_batch,
    reference_loader,
)
from lyric_valence import FINETUNING_ATTENTION_DROPOUT
from lyric_valence.commands.train import LyricValenceTrainingArguments, ModelArguments
from lyric_valence.trainer import chunk_split
from tests.conftest import REPO

SONGS = ["light morning river " * 300, "paper window silver engine", "garden thunder candle " * 200]
LABELS = [0.2, 0.5, 0.8]


def test_our_training_arguments_are_train_py_defaults(tmp_path):
    defaults = LyricValenceTrainingArguments(output_dir=str(tmp_path))
    for name, value in OUR_TRAINING_ARGUMENTS.items():
        assert getattr(defaults, name) == value, name
    assert ModelArguments().head_learning_rate == OUR_HEAD_LEARNING_RATE
    assert ModelArguments().max_length == MAX_LENGTH


def test_chunk_features_are_the_rows_of_chunk_split(tokenizer):
    features = chunk_features(tokenizer, SONGS, LABELS)
    split = datasets.Dataset.from_dict({"text": SONGS, "label": LABELS})
    rows = chunk_split(split, tokenizer, MAX_LENGTH, 128).remove_columns("length").to_list()
    assert len(features) == len(rows) > len(SONGS)
    for feature, row in zip(features, rows, strict=True):
        assert feature.keys() == row.keys()
        assert all(feature[key] == row[key] for key in ("input_ids", "attention_mask", "song_index", "chunk_id"))
        assert abs(feature["labels"] - row["labels"]) < 1e-6


def test_reference_loader_pads_every_chunk_to_512(tokenizer):
    features = chunk_features(tokenizer, SONGS, LABELS)
    batches = list(reference_loader(features, tokenizer))
    assert sum(len(batch[0]) for batch in batches) == len(features)
    assert all(tensor.shape[1] == MAX_LENGTH for batch in batches for tensor in batch[:3])


@pytest.mark.slow
def test_training_module_imports_without_datasets():
    code = (
        "import sys; sys.modules['datasets'] = None\n"
        "from bench.models import import_training_module\n"
        "training = import_training_module()\n"
        "assert training.ChunkedSongTrainer and 'datasets' not in sys.modules\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_matrix_product_events():
    assert is_matrix_product("aten::addmm") and is_matrix_product("aten::_scaled_dot_product_flash_attention_for_cpu")
    assert is_matrix_product("sm90_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x32")
    assert is_matrix_product("nvjet_sm90_tst_192x128_64x5_1x2_h_bz_coopB_bias_TNT")
    assert not is_matrix_product("aten::native_layer_norm") and not is_matrix_product("aten::mul")


def fake_features(count: int) -> list[dict]:
    return [{"input_ids": [1] * (10 + (index * 37) % 500), "chunk_id": index} for index in range(count)]


def test_epoch_sample_takes_length_grouped_batches_from_longest_to_shortest():
    features = fake_features(MEGABATCH_BATCHES * BATCH_SIZE + 40)
    sample = epoch_sample(features, 5)
    assert len(sample) == 5 * BATCH_SIZE and len({f["chunk_id"] for f in sample}) == len(sample)
    batches = [sample[i : i + BATCH_SIZE] for i in range(0, len(sample), BATCH_SIZE)]
    longest = [max(len(f["input_ids"]) for f in batch) for batch in batches]
    shortest = [min(len(f["input_ids"]) for f in batch) for batch in batches]
    assert longest == sorted(longest, reverse=True)
    # grouped: batches do not overlap
    assert all(low >= high_next for low, high_next in zip(shortest[:-1], longest[1:], strict=True))
    assert middle_batch(sample) == batches[2]
    assert epoch_sample(features, 5) == sample
    with pytest.raises(ValueError):
        epoch_sample(features[:100], 5)


def test_batch_shapes_pad_each_batch_of_32_to_its_longest_chunk():
    features = fake_features(70)
    shapes = batch_shapes(features)
    assert [count for count, _ in shapes] == [32, 32, 6]
    assert shapes[2][1] == max(len(f["input_ids"]) for f in features[64:])


def test_every_training_variant_is_train_py_flags_of_training_arguments(tmp_path):
    assert flag_values("--bf16 True --dataloader_num_workers 4 --optim adamw_torch_fused") == {
        "bf16": True,
        "dataloader_num_workers": 4,
        "optim": "adamw_torch_fused",
    }
    fields = set(LyricValenceTrainingArguments.__dataclass_fields__)
    for name, flags in VARIANT_FLAGS.items():
        assert set(flag_values(flags)) <= fields, name
    for device, names in DEFAULT_VARIANTS.items():
        assert set(names) <= set(VARIANT_FLAGS), device
    assert LyricValenceTrainingArguments(output_dir=str(tmp_path), **flag_values(VARIANT_FLAGS["bf16"])).bf16


def test_the_reference_model_keeps_the_encoders_dropouts_and_ours_drops_attention_dropout():
    ours, reference = build_model("minilm", 0), build_model("minilm", 0, reference=True)
    assert ours.config.encoder.attention_probs_dropout_prob == FINETUNING_ATTENTION_DROPOUT == 0
    assert reference.config.encoder.attention_probs_dropout_prob == 0.1
    assert ours.config.encoder.hidden_dropout_prob == reference.config.encoder.hidden_dropout_prob == 0.1


def test_trainer_evaluation_scoring_methods_give_the_engines_song_scores(tmp_path):
    import torch

    from bench.models import load_tokenizer, save_model
    from bench.scoring import OurScorer, build_scorer

    tokenizer = load_tokenizer("minilm")
    folder = save_model(tmp_path, build_model("tiny", tokenizer.vocab_size), tokenizer)
    expected = OurScorer(folder, "cpu", prepared=False)(SONGS)
    for name in ("trainer-eval", "trainer-eval-fixed-batches"):
        assert build_scorer(name, folder, torch.device("cpu"))(SONGS) == pytest.approx(expected, abs=1e-5), name
