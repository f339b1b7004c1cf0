"""`lyric-valence predict`: whole songs from files, tables and stdin; clear errors."""

import subprocess
import sys

import pandas as pd
import pytest
import torch

from configuration_lyric_valence import LyricValenceConfig
from conftest import REPO, tiny_bert_config
from modeling_lyric_valence import LyricValenceModel

FLAGS = ("--model", "--text_column", "--id_column", "--output", "--batch_tokens", "--device", "--dtype", "--quantize")


def run_cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "lyric_valence.cli", *map(str, args)],
        cwd=REPO, input=stdin, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(1)
    model = LyricValenceModel(LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size), max_length=32, stride=8))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_help_documents_every_flag():
    completed = run_cli("predict", "--help")
    assert completed.returncode == 0
    for flag in FLAGS:
        assert flag in completed.stdout


def test_scores_tables_text_files_and_stdin_one_row_per_song_skipping_empty_ones(model_dir, tokenizer, tmp_path):
    songs = pd.DataFrame(
        {"song": ["a", "b", "c"], "seq": ['first "quoted" line\nsecond line', "   ", "dancing " * 200]}
    )
    table = tmp_path / "songs.csv"
    songs.to_csv(table, index=False)
    text_file = tmp_path / "verse.txt"
    text_file.write_text("one whole song\nover two lines\n", encoding="utf-8")
    output = tmp_path / "scores.csv"
    completed = run_cli("predict", table, text_file, "--model", model_dir, "--id_column", "song", "--output", output)
    assert completed.returncode == 0, completed.stderr
    scores = pd.read_csv(output)
    assert scores["id"].tolist() == ["a", "c", "verse"]
    model = LyricValenceModel.from_pretrained(model_dir)
    expected = model.score_songs([songs.seq[0], songs.seq[2], text_file.read_text()], tokenizer)
    assert scores["valence"].tolist() == pytest.approx(expected, abs=1e-6)
    assert "skipped song b" in completed.stderr and "scored 3 songs, skipped 1 empty" in completed.stderr

    from_stdin = run_cli("predict", "--model", model_dir, stdin="one whole song\nover two lines\n")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert float(from_stdin.stdout.splitlines()[1].split(",")[-1]) == pytest.approx(expected[2], abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing.csv"], "missing.csv: no such file"),
        (["{tmp}/songs.csv", "--text_column", "lyrics"], "no column 'lyrics'"),
        (["{tmp}/songs.csv", "--model", "{tmp}/no-model"], "no-model"),
        (["{tmp}/songs.csv", "--output", "{tmp}/scores.xlsx"], "scores.xlsx"),
    ],
)
def test_bad_paths_and_columns_give_one_line_and_exit_code_2(model_dir, tmp_path, args, message):
    pd.DataFrame({"seq": ["a song"]}).to_csv(tmp_path / "songs.csv", index=False)
    args = [arg.format(tmp=tmp_path) for arg in args]
    if "--model" not in args:
        args += ["--model", str(model_dir)]
    completed = run_cli("predict", *args)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message.format(tmp=tmp_path) in errors[0], completed.stderr
