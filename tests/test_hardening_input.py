"""Bad input to train.py and `lyric-valence predict`: one clear line and exit code 2, or skipped and counted.

Everything runs in this process (train.py through runpy as `__main__`, the CLI through `cli.main`): a subprocess
would spend ~10 s importing torch per case.
"""

import builtins
import errno
import gzip
import io
import json
import math
import runpy
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, assert_one_line_error, predict_in_process, write_kaggle_csv
from transformers import AutoTokenizer

import lyric_valence.commands.train
import lyric_valence.data
from lyric_valence.trainer import chunk_split
from modeling_lyric_valence import LyricValenceModel

datasets.disable_progress_bars()

# Lyrics the way the Kaggle file holds them: quoted fields with line breaks (LF and CRLF), doubled quotes, commas.
AWKWARD = [
    'She said "run",\nand I ran\r\nall the way home',
    '"Quoted from the first character"\n\n  second verse, after a blank line',
    "comma, comma,, comma\ttab\nünïcödé ✓ 歌 🎵",
]


class StopAfterSplits(Exception):
    """Raised where train.py loads the tokenizer: the data stage is over and split_song_ids.json is written."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_train_script(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run train.py as `python train.py ARGS` would, in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *map(str, args)])
    try:
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def unreadable(monkeypatch, path: Path):
    """Make `path` fail to open with EACCES, as a chmod 000 file does for a user who is not root."""
    target = str(path)

    def guard(opener):
        def open_(file, *args, **kwargs):
            if str(file) == target:
                raise PermissionError(errno.EACCES, "Permission denied", target)
            return opener(file, *args, **kwargs)

        return open_

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(io, "open", guard(io.open))


# ---------------------------------------------------------------------------------------------------------- train.py


def bad_training_files(tmp_path) -> dict:
    good = write_kaggle_csv(tmp_path / "good.csv", songs=12)
    frame = pd.read_csv(good, index_col=0)

    def variant(name, row, label):
        changed = frame.copy()
        changed["label"] = changed["label"].astype(object)
        changed.loc[row, "label"] = label
        changed.to_csv(tmp_path / name)
        return tmp_path / name

    (tmp_path / "songs.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    (tmp_path / "gzipped.csv").write_bytes(gzip.compress(good.read_bytes()))
    (tmp_path / "broken.json").write_text('{"text": "a song", "label": 0.3}\n{"text": unquoted\n', encoding="utf-8")
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "ragged.csv").write_text('seq,label\n"one",0.5\n"two",0.2,surplus,fields\n', encoding="utf-8")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "not_saved.csv").mkdir()
    no_labels = frame.assign(label=np.nan)
    no_labels.to_csv(tmp_path / "no_labels.csv")
    duplicate_ids = pd.DataFrame({"id": [1, 2, 2], "text": ["a", "b", "c"], "label": [0.1, 0.2, 0.3]})
    duplicate_ids.to_csv(tmp_path / "duplicate_ids.csv", index=False)
    return {
        "wrong format": (tmp_path / "songs.xlsx", ["songs.xlsx", "unknown format"]),
        "compressed bytes": (tmp_path / "gzipped.csv", ["gzipped.csv", "line 1", "UTF-8"]),
        "broken JSON": (tmp_path / "broken.json", ["broken.json", "json"]),
        "garbage parquet": (tmp_path / "garbage.parquet", ["garbage.parquet", "parquet"]),
        "ragged CSV": (tmp_path / "ragged.csv", ["ragged.csv", "line 3"]),
        "empty file": (tmp_path / "empty.csv", ["empty.csv"]),
        "folder": (tmp_path / "not_saved.csv", ["not_saved.csv"]),
        "inf label": (variant("inf.csv", 4, math.inf), ["inf.csv", "row 5", "'label'"]),
        "-inf label": (variant("minus_inf.csv", 2, -math.inf), ["minus_inf.csv", "row 3", "'label'"]),
        "text label": (variant("text_label.csv", 6, "happy"), ["text_label.csv", "row 7", "'happy'"]),
        "no labels at all": (tmp_path / "no_labels.csv", ["no_labels.csv", "no usable rows"]),
        "repeated song id": (tmp_path / "duplicate_ids.csv", ["duplicate_ids.csv", "row 2", "'id'", "not unique"]),
    }


def test_bad_training_files_give_one_line_naming_file_row_and_column(tmp_path, monkeypatch, capsys):
    for case, (path, expected) in bad_training_files(tmp_path).items():
        code, stderr = run_train_script(monkeypatch, capsys, "--data_file", path, "--output_dir", tmp_path / "out")
        try:
            assert_one_line_error(code, stderr, *expected)
        except AssertionError as failure:
            raise AssertionError(f"{case}: {failure}") from None


def test_an_unreadable_training_file_gives_one_line(tmp_path, monkeypatch, capsys):
    path = write_kaggle_csv(tmp_path / "locked.csv", songs=12)
    unreadable(monkeypatch, path)
    code, stderr = run_train_script(monkeypatch, capsys, "--data_file", path, "--output_dir", tmp_path / "out")
    assert_one_line_error(code, stderr, "locked.csv")


def data_stage(monkeypatch, capsys, tmp_path, data_file, *args):
    """Run train.py up to its tokenizer: (exit code, splits and counts as load_data returned them, split ids)."""
    seen = {}
    load_data = lyric_valence.data.load_data

    def spy(*a, **k):
        loaded = load_data(*a, **k)
        seen["splits"], seen["counts"] = loaded.splits, loaded.counts
        return loaded

    def stop(*a, **k):
        raise StopAfterSplits

    monkeypatch.setattr(lyric_valence.commands.train, "load_data", spy)  # train.py runs commands.train's main
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", stop)
    with pytest.raises(StopAfterSplits):
        run_train_script(monkeypatch, capsys, "--data_file", data_file, "--output_dir", tmp_path / "out", *args)
    split_ids = json.loads((tmp_path / "out" / "split_song_ids.json").read_text())
    return seen["splits"], seen["counts"], split_ids


def test_blank_lyrics_and_missing_labels_are_skipped_and_counted_and_nothing_valid_is_dropped(
    tmp_path, monkeypatch, capsys
):
    frame = pd.read_csv(write_kaggle_csv(tmp_path / "base.csv", songs=30), index_col=0)
    frame["label"] = frame["label"].astype(object)
    frame.loc[[2, 3, 4], "seq"] = ["", "   \n\t  ", None]
    frame.loc[[5, 6], "label"] = [np.nan, ""]
    frame.loc[[7, 8, 9], "seq"] = AWKWARD
    frame.to_csv(tmp_path / "messy.csv")
    splits, counts, split_ids = data_stage(monkeypatch, capsys, tmp_path, tmp_path / "messy.csv")
    assert counts["rows_read"] == 30
    assert counts["dropped_empty_text"] == 3 and counts["dropped_missing_label"] == 2
    kept = sorted(sum(split_ids.values(), []), key=int)
    assert kept == [str(i) for i in range(30) if i not in (2, 3, 4, 5, 6)]
    texts = {
        song_id: text
        for split in splits.values()
        for song_id, text in zip(split["song_id"], split["text"], strict=True)
    }
    # Quoted multi-line fields arrive whole: quotes, commas and every line are kept.
    assert texts["7"].startswith('She said "run",') and texts["7"].endswith("all the way home")
    assert texts["7"].count("\n") == 2
    assert (
        texts["8"].startswith('"Quoted from the first character"') and "second verse, after a blank line" in texts["8"]
    )
    assert "ünïcödé ✓ 歌 🎵" in texts["9"]


def test_duplicate_songs_never_span_a_random_split_and_a_files_own_split_is_reported(tmp_path, monkeypatch, capsys):
    from lyric_valence.commands import train

    frame = pd.read_csv(write_kaggle_csv(tmp_path / "base.csv", songs=30), index_col=0)
    frame.loc[[28, 29], "seq"] = frame.loc[3, "seq"]  # one song three times, under three artists
    frame.loc[29, "seq"] = frame.loc[29, "seq"].upper()  # and once shouted
    frame.to_csv(tmp_path / "duplicates.csv")
    _, counts, split_ids = data_stage(monkeypatch, capsys, tmp_path, tmp_path / "duplicates.csv")
    homes = {name for name, ids in split_ids.items() if {"3", "28", "29"} & set(ids)}
    assert len(homes) == 1 and counts["duplicates_merged"] >= 2

    own_split = pd.DataFrame(
        {
            "id": range(30),
            "text": frame["seq"],
            "label": frame["label"],
            "split": ["train"] * 24 + ["dev"] * 2 + ["test"] * 4,
        }
    )
    own_split.to_csv(tmp_path / "own_split.csv", index=False)
    _, counts, split_ids = data_stage(monkeypatch, capsys, tmp_path, tmp_path / "own_split.csv")
    assert "3" in split_ids["train"] and {"28", "29"} <= set(split_ids["test"])  # the user's split is kept ...
    assert counts["test_leak_rate"] == 0.5  # ... and the leak counted
    assert "50.0% of test songs" in train.data_summary("own_split.csv", counts)  # in the final summary line


def test_a_200000_character_song_chunks_like_its_tokens(tokenizer):
    song = "\n".join(f"line {i} of a very long song, with words that repeat" for i in range(4000))[:200_000]
    assert len(song) == 200_000
    split = datasets.Dataset.from_dict({"text": [song, "a short one"], "label": [0.25, 0.75]})
    start = time.perf_counter()
    chunks = chunk_split(split, tokenizer, max_length=64, stride=16)
    tokens = len(tokenizer(song, add_special_tokens=False)["input_ids"])
    assert chunks["song_index"].count(0) == 1 + math.ceil((tokens - 62) / 46)
    assert chunks["song_index"].count(1) == 1 and max(chunks["length"]) == 64
    assert time.perf_counter() - start < 30


# ------------------------------------------------------------------------------------------------ lyric-valence predict


def test_predict_bad_input_gives_one_line_and_exit_code_2(tiny_model_dir, tmp_path, monkeypatch, capsys):
    songs = tmp_path / "songs.csv"
    pd.DataFrame({"seq": ["a song"]}).to_csv(songs, index=False)
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "gzipped.csv").write_bytes(gzip.compress(songs.read_bytes()))
    (tmp_path / "songs.xlsx").write_bytes(b"PK\x03\x04")
    cases = {
        "wrong format": ([tmp_path / "songs.xlsx"], ["songs.xlsx", "unknown format"]),
        "non-UTF-8 text file": ([tmp_path / "latin1.txt"], ["latin1.txt", "UTF-8", "byte 3"]),
        "non-UTF-8 table": ([tmp_path / "gzipped.csv"], ["gzipped.csv", "line 1", "UTF-8"]),
        "missing text file": ([tmp_path / "nope.txt"], ["nope.txt", "no such file"]),
        "zero token budget": ([songs, "--batch_tokens", "0"], ["--batch_tokens", "positive"]),
        "negative token budget": ([songs, "--batch_tokens", "-1"], ["--batch_tokens", "positive"]),
        "output folder missing": (
            [songs, "--output", tmp_path / "nowhere" / "scores.csv"],
            ["nowhere", "does not exist"],
        ),
    }
    for case, (args, expected) in cases.items():
        code, _, stderr = predict_in_process(capsys, *args, "--model", tiny_model_dir)
        try:
            assert_one_line_error(code, stderr, *expected)
        except AssertionError as failure:
            raise AssertionError(f"{case}: {failure}") from None

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 song\n"), encoding="utf-8"))
    assert_one_line_error(*predict_in_process(capsys, "--model", tiny_model_dir)[::2], "<stdin>", "UTF-8", "byte 3")


@pytest.mark.parametrize("name", ["locked.txt", "locked.csv"])
def test_predict_on_an_unreadable_file_gives_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys, name):
    path = tmp_path / name
    pd.DataFrame({"seq": ["a song"]}).to_csv(path, index=False)
    unreadable(monkeypatch, path)
    code, _, stderr = predict_in_process(capsys, path, "--model", tiny_model_dir)
    assert_one_line_error(code, stderr, name, "Permission denied")


def test_predict_refuses_pickled_weights_without_unpickling(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled-model"
    pickled.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.name != "model.safetensors":
            (pickled / path.name).write_bytes(path.read_bytes())
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), pickled / "pytorch_model.bin")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    (tmp_path / "song.txt").write_text("a song", encoding="utf-8")
    code, _, stderr = predict_in_process(capsys, tmp_path / "song.txt", "--model", pickled)
    assert_one_line_error(code, stderr, "pickled-model", "safetensors")


def test_predict_scores_every_valid_song_once_skips_blank_ones_and_counts_them(
    tiny_model_dir, tokenizer, tmp_path, caplog, capsys
):
    long_song = ("la la land of the very long song\n" * 6100)[:200_000]
    texts = [AWKWARD[0], "", AWKWARD[1], "  \r\n ", None, long_song, AWKWARD[2], "12345"]
    table = tmp_path / "songs.csv"
    pd.DataFrame({"song": [f"s{i}" for i in range(len(texts))], "seq": texts}).to_csv(table, index=False)
    output = tmp_path / "scores.jsonl"
    code, _, stderr = predict_in_process(
        capsys, table, "--model", tiny_model_dir, "--id_column", "song", "--output", output
    )
    assert code == 0, stderr
    scores = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    valid = [0, 2, 5, 6, 7]
    assert [row["id"] for row in scores] == [f"s{i}" for i in valid]
    model = LyricValenceModel.from_pretrained(tiny_model_dir)
    expected = model.score_songs([texts[i] for i in valid], tokenizer)
    assert [row["valence"] for row in scores] == pytest.approx(expected, abs=1e-6)
    assert all(math.isfinite(row["valence"]) for row in scores)
    assert "scored 5 songs (1 capped at 64 chunks), skipped 3 empty" in caplog.text  # 64 tiny chunks: 1,400 tokens
    for song_id in ("s1", "s3", "s4"):
        assert f"skipped song {song_id} of" in caplog.text
