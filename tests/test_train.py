"""train.py end to end on tiny random encoders and original lyrics-like text."""

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file
from transformers import EvalPrediction

from lyric_valence.commands import train
from lyric_valence.trainer import cpu_has_native_bf16, make_compute_metrics, song_predictions

TINY_RUN = [
    "--max_length",
    "64",
    "--stride",
    "16",
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
    "--logging_steps",
    "5",
    "--seed",
    "7",
    "--disable_tqdm",
    "True",
]


def run_train(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["train.py", *map(str, args)])
    train.main()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoder_dir):
    """One short LoRA run (last 2 of 4 layers) on a Kaggle-layout file whose long songs make several chunks."""
    from conftest import write_kaggle_csv

    folder = tmp_path_factory.mktemp("run")
    data = write_kaggle_csv(folder / "lyrics.csv", songs=40)
    output = folder / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_train(
            monkeypatch,
            "--model_name_or_path",
            tiny_encoder_dir,
            "--data_file",
            data,
            "--output_dir",
            output,
            "--lora_num_layers",
            "2",
            *TINY_RUN,
        )
    return output


@pytest.mark.slow
def test_output_folder_holds_everything_a_user_needs(trained):
    names = {path.name for path in trained.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "modeling_lyric_valence.py",
        "tokenizer.json",
        "adapter",
        "README.md",
        "test_results.json",
        "test_predictions.csv",
        "test_scatter.png",
        "loss_curve.png",
        "split_song_ids.json",
    } <= names
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        path.name for path in (trained / "adapter").iterdir()
    }
    split_ids = json.loads((trained / "split_song_ids.json").read_text())
    assert not set(split_ids["train"]) & set(split_ids["test"])
    assert len(split_ids["train"]) + len(split_ids["validation"]) + len(split_ids["test"]) == 40


@pytest.mark.slow
def test_song_level_test_metrics_equal_a_hand_computation_from_the_predictions(trained):
    metrics = json.loads((trained / "test_results.json").read_text())
    predictions = pd.read_csv(trained / "test_predictions.csv")
    error = predictions["predicted_valence"] - predictions["true_valence"]
    assert (
        metrics["test_songs"]
        == len(predictions)
        == len(json.loads((trained / "split_song_ids.json").read_text())["test"])
    )
    assert metrics["test_mse"] == pytest.approx(float((error**2).mean()), rel=1e-5)
    assert metrics["test_mae"] == pytest.approx(float(error.abs().mean()), rel=1e-5)
    assert metrics["test_pearson"] == pytest.approx(
        float(np.corrcoef(predictions["predicted_valence"], predictions["true_valence"])[0, 1]), abs=1e-5
    )
    card = (trained / "README.md").read_text()
    assert f"value: {metrics['test_mse']}" in card


@pytest.mark.slow
def test_lora_sits_on_query_and_value_of_the_last_layers_only_and_other_weights_are_unchanged(
    trained, tiny_encoder_dir
):
    adapter = load_file(str(trained / "adapter" / "adapter_model.safetensors"))
    lora_modules = {name.split(".lora_")[0] for name in adapter if ".lora_" in name}
    assert lora_modules == {
        f"base_model.model.encoder.encoder.layer.{layer}.attention.self.{projection}"
        for layer in (2, 3)
        for projection in ("query", "value")
    }
    pretrained = load_file(str(tiny_encoder_dir / "model.safetensors"))
    merged = load_file(str(trained / "model.safetensors"))
    changed = set()
    for name, tensor in merged.items():
        if name.startswith("encoder."):
            source = name.removeprefix("encoder.")
            if not torch.equal(tensor, pretrained[source]):
                changed.add(source)
    assert changed == {
        f"encoder.layer.{layer}.attention.self.{projection}.weight"
        for layer in (2, 3)
        for projection in ("query", "value")
    }
    head = {name.removeprefix("base_model.model."): tensor for name, tensor in adapter.items() if ".head." in name}
    assert set(head) == {"head.dense.weight", "head.dense.bias", "head.out_proj.weight", "head.out_proj.bias"}
    for name, tensor in head.items():  # the trained head travels with the adapter and is the merged model's head
        assert torch.equal(merged[name], tensor), name


@pytest.mark.slow
def test_the_head_trained(trained):
    """The output bias starts at the mean training label; training moves it."""
    merged = load_file(str(trained / "model.safetensors"))
    data = pd.read_csv(trained.parent / "lyrics.csv", index_col=0)
    train_ids = json.loads((trained / "split_song_ids.json").read_text())["train"]
    start_bias = data.loc[[int(song_id) for song_id in train_ids], "label"].mean()
    assert abs(merged["head.out_proj.bias"].item() - start_bias) > 1e-4


def test_song_metrics_ignore_order_and_duplicated_chunks():
    # 3 songs; song 1 has 3 chunks; the last two rows repeat chunks 0 and 3 as a distributed sampler would.
    chunk_scores = np.array([0.2, 0.5, 0.7, 0.9, 0.4, 0.2, 0.9])
    labels = np.array([0.1, 0.6, 0.6, 0.6, 0.3, 0.1, 0.6])
    song_index = np.array([0, 1, 1, 1, 2, 0, 1])
    chunk_id = np.array([0, 1, 2, 3, 4, 0, 3])
    length = np.array([20, 512, 512, 100, 40, 20, 100])
    order = np.array([4, 2, 6, 0, 3, 5, 1])
    label_ids = (labels[order], song_index[order], chunk_id[order], length[order])
    prediction = EvalPrediction(chunk_scores[order, None], label_ids)
    metrics = make_compute_metrics()(prediction)
    song_scores = np.array([0.2, (0.5 + 0.7 + 0.9) / 3, 0.4])
    song_labels = np.array([0.1, 0.6, 0.3])
    assert metrics["songs"] == 3
    assert metrics["mse"] == pytest.approx(float(((song_scores - song_labels) ** 2).mean()))
    assert metrics["chunk_mse"] == pytest.approx(float(((chunk_scores[:5] - labels[:5]) ** 2).mean()))
    songs, predicted, *_ = song_predictions(prediction.predictions, prediction.label_ids)
    assert songs.tolist() == [0, 1, 2] and predicted == pytest.approx(song_scores)
    _, weighted, *_ = song_predictions(prediction.predictions, prediction.label_ids, "length_weighted")
    assert weighted[1] == pytest.approx((0.5 * 512 + 0.7 * 512 + 0.9 * 100) / 1124)
    assert weighted[[0, 2]] == pytest.approx(song_scores[[0, 2]])


@pytest.mark.slow
def test_two_processes_score_every_test_song_once_with_the_same_metrics(tmp_path, tiny_encoder_dir):
    from conftest import write_kaggle_csv

    data = write_kaggle_csv(tmp_path / "lyrics.csv", songs=23, seed=3)
    # Learning rate 0: the two runs end with the same weights, so any difference comes from distributed evaluation.
    common = [
        "train.py",
        "--model_name_or_path",
        str(tiny_encoder_dir),
        "--data_file",
        str(data),
        *TINY_RUN,
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "0",
        "--head_learning_rate",
        "0",
        "--per_device_eval_batch_size",
        "3",
    ]
    results = {}
    for processes in (1, 2):
        output = tmp_path / f"out{processes}"
        launcher = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(processes),
            "--cpu",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
        completed = subprocess.run(
            [*launcher, *common, "--output_dir", str(output)], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results[processes] = json.loads((output / "test_results.json").read_text())
    assert (
        results[1]["test_songs"]
        == results[2]["test_songs"]
        == len(json.loads((tmp_path / "out1" / "split_song_ids.json").read_text())["test"])
    )
    for metric in ("test_mse", "test_mae", "test_pearson", "test_chunk_mse"):
        assert results[2][metric] == pytest.approx(results[1][metric], abs=1e-5), metric
    song_ids = {n: pd.read_csv(tmp_path / f"out{n}" / "test_predictions.csv", dtype=str)["song_id"] for n in (1, 2)}
    assert song_ids[2].is_unique and sorted(song_ids[2]) == sorted(song_ids[1])
    assert set(song_ids[1]) == set(json.loads((tmp_path / "out1" / "split_song_ids.json").read_text())["test"])


def bad_inputs(tmp_path):
    from conftest import write_kaggle_csv

    good = write_kaggle_csv(tmp_path / "good.csv", songs=12)
    frame = pd.read_csv(good, index_col=0)
    empty = tmp_path / "empty_text.csv"
    frame.assign(seq="   ").to_csv(empty)
    out_of_range = tmp_path / "out_of_range.csv"
    frame.assign(label=frame["label"] * 100 + 2).to_csv(out_of_range)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(good.read_bytes().replace(b"artist 1", "artíst".encode("latin-1")))
    return {
        "missing file": (["--data_file", str(tmp_path / "nope.csv")], "nope.csv"),
        "unknown column": (["--data_file", str(good), "--text_column", "lyrics", "--label_column", "label"], "lyrics"),
        "unknown column, the other recognised": (["--data_file", str(good), "--label_column", "mood"], "mood"),
        "all-empty text": (["--data_file", str(empty)], "empty"),
        "labels out of range": (["--data_file", str(out_of_range)], "label"),
        "non-UTF-8 file": (["--data_file", str(latin1)], "UTF-8"),
    }


@pytest.mark.slow
def test_bad_input_gives_one_line_error_and_exit_code_2(tmp_path):
    for case, (args, expected) in bad_inputs(tmp_path).items():
        completed = subprocess.run(
            [sys.executable, "train.py", *args, "--output_dir", str(tmp_path / "out")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 2, (case, completed.stderr[-2000:])
        assert "Traceback" not in completed.stderr, case
        error_lines = [line for line in completed.stderr.splitlines() if "error" in line]
        assert len(error_lines) == 1 and expected in error_lines[0], (case, completed.stderr[-2000:])


def test_naming_only_the_text_column_trains_when_the_label_column_is_recognised(
    tmp_path, tiny_encoder_dir, monkeypatch, one_torch_thread
):
    """`--text_column words` alone: `valence` is the label and `artist` the group, recognised as without flags."""
    from conftest import write_kaggle_csv

    frame = pd.read_csv(write_kaggle_csv(tmp_path / "kaggle.csv", songs=20, seed=3), index_col=0)
    data = tmp_path / "songs.csv"
    frame.rename(columns={"seq": "words", "label": "valence"}).to_csv(data, index=False)
    output = tmp_path / "out"
    run_train(
        monkeypatch,
        "--model_name_or_path",
        tiny_encoder_dir,
        "--data_file",
        data,
        "--text_column",
        "words",
        "--output_dir",
        output,
        "--finetuning_mode",
        "head_only",
        *TINY_RUN,
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "False",
        "--test_fraction",
        "0.3",
    )
    predictions = pd.read_csv(output / "test_predictions.csv", dtype={"song_id": str})
    labels = frame.set_axis(frame.index.astype(str))["label"]
    assert predictions["true_valence"].tolist() == pytest.approx(labels[predictions["song_id"]].tolist(), abs=1e-6)
    split_ids = json.loads((output / "split_song_ids.json").read_text())
    artists = {split: set(frame["artist"].iloc[[int(i) for i in ids]]) for split, ids in split_ids.items()}
    assert not artists["train"] & artists["test"]


def test_naming_only_the_label_column_reads_a_recognised_lyrics_column(tmp_path, monkeypatch):
    from lyric_valence.data import load_splits

    data = tmp_path / "songs.jsonl"
    pd.DataFrame({"lyrics": [f"song number {i}" for i in range(10)], "mood": [i / 10 for i in range(10)]}).to_json(
        data, orient="records", lines=True
    )
    monkeypatch.setattr(sys, "argv", ["train.py", "--data_file", str(data), "--label_column", "mood"])
    _, _, data_args, _ = train.parse_arguments()
    splits, counts = load_splits(data_args.data_file, data_args)
    rows = pd.concat([split.to_pandas() for split in splits.values()])
    assert sorted(zip(rows["text"], rows["label"], strict=True)) == [(f"song number {i}", i / 10) for i in range(10)]


def test_arguments_come_from_a_yaml_file_as_the_only_argument(tmp_path, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text("finetuning_mode: head_only\nlora_num_layers: 2\nlabel_range: [1, 5]\nlearning_rate: 0.01\n")
    monkeypatch.setattr(sys, "argv", ["train.py", str(config)])
    model_args, lora_args, data_args, training_args = train.parse_arguments()
    assert model_args.finetuning_mode == "head_only" and lora_args.lora_num_layers == 2
    assert data_args.label_range == [1, 5] and training_args.learning_rate == 0.01
    assert training_args.label_names == ["labels", "song_index", "chunk_id", "length"]


def test_the_songs_recipe_sets_its_flags_and_flags_given_with_it_win(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "--recipe", "songs", "--max-length", "256"])
    model_args, _, _, _ = train.parse_arguments()
    assert (model_args.finetuning_mode, model_args.pooling, model_args.lexical_buckets) == ("ridge", "mean", 2**20)
    assert model_args.max_length == 256
    config = tmp_path / "run.yaml"
    config.write_text("recipe: songs\nlexical_buckets: 65536\nstride: 16\n")
    monkeypatch.setattr(sys, "argv", ["train.py", str(config)])
    model_args, _, _, _ = train.parse_arguments()
    assert (model_args.finetuning_mode, model_args.lexical_buckets, model_args.stride) == ("ridge", 65536, 16)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    model_args = train.parse_arguments()[0]
    assert (model_args.finetuning_mode, model_args.lexical_buckets, model_args.max_length) == ("lora", 0, 512)


@pytest.mark.slow
def test_bf16_trains_on_the_cpu_and_writes_song_metrics(
    tmp_path, tiny_encoder_dir, monkeypatch, one_torch_thread, caplog
):
    """
    `--bf16` alone on a machine without a GPU: bfloat16 autocast in the encoder, a float32 head, song metrics, and a
    warning where the CPU has no native bf16 matrix products.
    """
    from conftest import write_kaggle_csv

    from modeling_lyric_valence import LyricValenceHead

    data = write_kaggle_csv(tmp_path / "lyrics.csv", songs=20, seed=5)
    seen = set()
    head_forward = LyricValenceHead.forward

    def recording_forward(self, pooled):
        logits = head_forward(self, pooled)
        seen.add((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), logits.dtype))
        return logits

    monkeypatch.setattr(LyricValenceHead, "forward", recording_forward)
    output = tmp_path / "out"
    run_train(
        monkeypatch,
        "--model_name_or_path",
        tiny_encoder_dir,
        "--data_file",
        data,
        "--output_dir",
        output,
        "--bf16",
        "True",
        *TINY_RUN,
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "False",
        "--test_fraction",
        "0.3",
    )
    assert seen == {(True, torch.bfloat16, torch.float32)}
    assert ("no native bfloat16" in caplog.text) == (not cpu_has_native_bf16())
    metrics = json.loads((output / "test_results.json").read_text())
    predictions = pd.read_csv(output / "test_predictions.csv")
    assert metrics["test_songs"] == len(predictions) > 1
    assert np.isfinite([metrics[f"test_{name}"] for name in ("mse", "mae", "pearson", "r2")]).all()
    assert predictions["predicted_valence"].nunique() == len(predictions)  # not collapsed onto bfloat16 steps


def flags(help_text: str) -> set[str]:
    return set(re.findall(r"--[a-z][a-z0-9_-]*", help_text))


@pytest.mark.slow
def test_lyric_valence_train_and_train_py_take_the_same_flags():
    by_script = subprocess.run(
        [sys.executable, "train.py", "--help"], capture_output=True, text=True, check=True, cwd=REPO
    )
    by_command = subprocess.run(
        [sys.executable, "-m", "lyric_valence.cli", "train", "--help"], capture_output=True, text=True, check=True
    )
    assert len(flags(by_script.stdout)) > 50  # the transformers TrainingArguments are there too
    assert flags(by_command.stdout) == flags(by_script.stdout)


def test_eval_batch_tokens_takes_a_positive_budget_or_is_a_one_line_usage_error(tmp_path, capsys):
    *_, training_args = train.parse_arguments(["--eval_batch_tokens", "4096", "--output_dir", str(tmp_path)])
    assert training_args.eval_batch_tokens == 4096
    with pytest.raises(SystemExit) as exit:
        train.parse_arguments(["--eval_batch_tokens", "0", "--output_dir", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and len(error) == 1 and "--eval_batch_tokens must be a positive" in error[0]
