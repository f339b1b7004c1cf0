"""The `lyric-valence` command as a newcomer meets it: top-level help and version, both flag spellings, and
`predict`'s inputs, outputs and one-line errors.

Most cases run `cli.main` in this process (a subprocess spends ~10 s importing torch); the top-level help runs as a
real command, since its point is to answer before any library is imported.
"""

import io
import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import REPO, assert_one_line_error, predict_in_process

from lyric_valence import cli
from modeling_lyric_valence import LyricValenceModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SONGS = ['first "quoted" line\nsecond line', "   ", "dancing " * 200, "rain on the window, ünïcödé ✓"]


def run_command(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "lyric_valence.cli", *map(str, args)],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def expected(tiny_model_dir, tokenizer):
    """The package model's own scores of SONGS 0, 2 and 3 (1 is blank)."""
    model = LyricValenceModel.from_pretrained(tiny_model_dir)
    return model.score_songs([SONGS[0], SONGS[2], SONGS[3]], tokenizer)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "songs.csv"
    pd.DataFrame({"artist": ["ann", "bo", "cy", "di"], "song": ["a", "b", "c", "d"], "seq": SONGS}).to_csv(
        path, index=False
    )
    return path


# ------------------------------------------------------------------------------------------------------ top level


def test_help_lists_every_command_on_stdout_and_version_prints():
    for flag in ("--help", "-h"):
        completed = run_command(flag)
        assert completed.returncode == 0 and completed.stderr == ""
        for name in cli.COMMANDS:
            assert re.search(rf"^  {name} +\S", completed.stdout, re.M), completed.stdout
    version = run_command("--version")
    assert version.returncode == 0 and re.fullmatch(r"lyric-valence \d+\.\d+\.\d+\n", version.stdout)
    bare = run_command()
    assert bare.returncode == 2 and "predict" in bare.stderr and bare.stdout == ""
    typo = run_command("predcit")
    assert typo.returncode == 2 and typo.stderr.splitlines() == [
        "lyric-valence: error: unknown command 'predcit' (did you mean predict?)"
    ]


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_flag_of_every_subcommand_takes_both_spellings(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([command, "--help"])
    assert exit.value.code == 0
    help_text = capsys.readouterr().out
    multiword = set(re.findall(r"--[a-z0-9]+(?:[-_][a-z0-9]+)+", help_text))  # demo has none
    for flag in multiword:
        assert flag.replace("-", "_").replace("__", "--", 1) in help_text, flag
        assert flag.replace("_", "-") in help_text, flag


def test_predict_help_documents_the_output_columns_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    help_text = capsys.readouterr().out
    for text in (
        "source",
        "id",
        "valence",
        "--keep_columns",
        "--format",
        "--decimals",
        "--resume",
        "--quiet",
        "Exit codes",
        "accelerate launch",
    ):
        assert text in help_text


# ----------------------------------------------------------------------------------------------------- predict errors


def test_predict_user_errors_are_one_line_with_exit_code_2(tiny_model_dir, table, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((tiny_model_dir / name).read_bytes())
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}))
    song = tmp_path / "song.txt"
    song.write_text("a song", encoding="utf-8")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cases = {
        "no trained model yet": (
            [song, "--model", "outputs/lyric-valence"],
            ["outputs/lyric-valence", "train", "--model"],
        ),
        "Hub id offline": ([song, "--model", "someone/some-repo"], ["someone/some-repo", "cannot be reached"]),
        "not a folder nor a repo id": ([song, "--model", tmp_path / "nope"], ["nope", "no such model folder"]),
        "no tokenizer": ([song, "--model", no_tokenizer], ["no-tokenizer", "no tokenizer files"]),
        "another model type": ([song, "--model", bert], ["a bert model, not a lyric-valence one"]),
        "unknown device": (
            [song, "--model", tiny_model_dir, "--device", "gpu0"],
            ["--device gpu0", "not a torch device"],
        ),
        "missing column": (
            [table, "--model", tiny_model_dir, "--text_column", "lyrics"],
            ["no column 'lyrics'", "seq"],
        ),
        "missing kept column": ([table, "--model", tiny_model_dir, "--keep_columns", "year"], ["no column 'year'"]),
        "kept column named as the scores": (
            [table, "--model", tiny_model_dir, "--keep_columns", "valence"],
            ["--keep_columns valence", "--score_column valence"],
        ),
        "kept column named as the ids": (
            [table, "--model", tiny_model_dir, "--keep_columns", "id"],
            ["--keep_columns id", "'id'"],
        ),
        "output format": ([table, "--model", tiny_model_dir, "--output", tmp_path / "x.xlsx"], ["x.xlsx", "--format"]),
        "resume from stdin": (["--model", tiny_model_dir, "--resume", "--output", tmp_path / "o.csv"], ["--resume"]),
        "folder without songs": ([tmp_path / "cache", "--model", tiny_model_dir], ["cache", "without .txt files"]),
    }
    (tmp_path / "cache").mkdir()
    monkeypatch.chdir(tmp_path)
    if not torch.cuda.is_available():
        cases["no CUDA"] = ([song, "--model", tiny_model_dir, "--device", "cuda"], ["--device cuda", "no cuda device"])
    for case, (args, expected_texts) in cases.items():
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a song"), encoding="utf-8"))
        try:
            assert_one_line_error(*predict_in_process(capsys, *args)[::2], *expected_texts)
        except AssertionError as failure:
            raise AssertionError(f"{case}: {failure}") from None


def test_a_model_is_loaded_with_the_packages_classes_and_its_own_code_never_runs(
    tiny_model_dir, expected, tmp_path, capsys
):
    """A model folder whose Python files write a marker when imported: scored, and the marker never written."""
    hostile = tmp_path / "hostile-model"
    hostile.mkdir()
    marker = tmp_path / "marker"
    for path in tiny_model_dir.iterdir():
        (hostile / path.name).write_bytes(path.read_bytes())
    payload = f"open({str(marker)!r}, 'w').write('imported')\n"
    for name in ("configuration_lyric_valence.py", "modeling_lyric_valence.py", "pipeline_lyric_valence.py"):
        (hostile / name).write_text(payload + (hostile / name).read_text())
    config = json.loads((hostile / "config.json").read_text())
    config["auto_map"] = {key: f"evil.{value}" for key, value in config["auto_map"].items()}
    (hostile / "config.json").write_text(json.dumps(config))
    song = tmp_path / "song.txt"
    song.write_text(SONGS[0], encoding="utf-8")
    code, out, err = predict_in_process(capsys, song, "--model", hostile)
    assert code == 0, err
    assert float(out.splitlines()[1].split(",")[-1]) == pytest.approx(expected[0], abs=1e-6)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------- predict outputs


@pytest.mark.parametrize("output_format", ["csv", "tsv", "jsonl", "parquet"])
def test_each_output_format_reads_back_with_kept_columns_and_rounded_scores(
    output_format, tiny_model_dir, expected, table, tmp_path, capsys, caplog
):
    output = tmp_path / f"scores.{output_format}"
    code, _, err = predict_in_process(
        capsys,
        table,
        "--model",
        tiny_model_dir,
        "--id_column",
        "song",
        "--keep_columns",
        "artist",
        "--output",
        output,
        "--decimals",
        "4",
    )
    assert code == 0, err
    read = {
        "csv": pd.read_csv,
        "tsv": lambda path: pd.read_csv(path, sep="\t"),
        "jsonl": lambda path: pd.read_json(path, lines=True),
        "parquet": pd.read_parquet,
    }[output_format]
    scores = read(output)
    assert scores.columns.tolist() == ["source", "id", "artist", "valence"]
    assert scores["id"].tolist() == ["a", "c", "d"] and scores["artist"].tolist() == ["ann", "cy", "di"]
    assert scores["valence"].tolist() == pytest.approx([round(value, 4) for value in expected], abs=1e-9)
    assert f"scored 3 songs, skipped 1 empty; scores written to {output}" in caplog.text


def test_score_column_keeps_a_label_column_named_valence_beside_the_scores(tiny_model_dir, expected, tmp_path, capsys):
    labelled = tmp_path / "labelled.csv"
    pd.DataFrame({"seq": [SONGS[0], SONGS[2]], "valence": ["0.25", "0.75"]}).to_csv(labelled, index=False)
    code, out, err = predict_in_process(
        capsys, labelled, "--model", tiny_model_dir, "--keep_columns", "valence", "--score_column", "predicted_valence"
    )
    assert code == 0, err
    scores = pd.read_csv(io.StringIO(out))
    assert scores.columns.tolist() == ["source", "id", "valence", "predicted_valence"]
    assert scores["valence"].tolist() == [0.25, 0.75]
    assert scores["predicted_valence"].tolist() == pytest.approx(expected[:2], abs=1e-6)


def test_stdout_takes_every_format_too(tiny_model_dir, expected, table, capsysbinary):
    assert cli.main(["predict", str(table), "--model", str(tiny_model_dir), "--format", "parquet", "-q"]) == 0
    scores = pd.read_parquet(io.BytesIO(capsysbinary.readouterr().out))
    assert scores["valence"].tolist() == pytest.approx(expected, abs=1e-6)


def test_stdin_tables_utf16_songs_and_folders_of_txt_files(
    tiny_model_dir, expected, tmp_path, monkeypatch, capsys, caplog
):
    jsonl = "".join(json.dumps({"seq": text, "artist": f"a{i}"}) + "\n" for i, text in enumerate(SONGS))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl.encode()), encoding="utf-8"))
    code, out, err = predict_in_process(
        capsys, "--model", tiny_model_dir, "--stdin_format", "jsonl", "--keep_columns", "artist"
    )
    assert code == 0, err
    scores = pd.read_csv(io.StringIO(out))
    assert scores["id"].tolist() == [0, 2, 3] and scores["artist"].tolist() == ["a0", "a2", "a3"]
    assert scores["valence"].tolist() == pytest.approx(expected, abs=1e-6)

    csv_text = pd.DataFrame({"seq": SONGS}).to_csv(index=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(csv_text.encode()), encoding="utf-8"))
    code, out, err = predict_in_process(capsys, "--model", tiny_model_dir, "--stdin-format", "csv")
    assert code == 0 and pd.read_csv(io.StringIO(out))["valence"].tolist() == pytest.approx(expected, abs=1e-6)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(csv_text.encode()), encoding="utf-8"))
    caplog.clear()
    code, out, _ = predict_in_process(capsys, "--model", tiny_model_dir)
    assert code == 0 and len(out.splitlines()) == 2  # the whole table as one song, as asked, but with a warning
    assert "looks like a table" in caplog.text and "--stdin_format csv" in caplog.text

    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "1-quoted.txt").write_text(SONGS[0], encoding="utf-16")  # with its byte-order mark
    (folder / "2-blank.txt").write_text(SONGS[1], encoding="utf-8")
    (folder / "3-long.txt").write_bytes(SONGS[2].encode("utf-8-sig"))
    (folder / "notes.md").write_text("not a song", encoding="utf-8")
    (tmp_path / "4-rain.txt").write_text(SONGS[3], encoding="utf-16-be")
    (tmp_path / "4-rain.txt").write_bytes(b"\xfe\xff" + SONGS[3].encode("utf-16-be"))
    code, out, err = predict_in_process(capsys, folder, tmp_path / "4-rain.txt", "--model", tiny_model_dir)
    assert code == 0, err
    scores = pd.read_csv(io.StringIO(out))
    assert scores["id"].tolist() == ["1-quoted", "3-long", "4-rain"]
    assert scores["valence"].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_predict_recognises_a_tables_lyrics_and_id_columns_as_train_does(
    tiny_model_dir, expected, tmp_path, capsys, suffix
):
    """No flag for a `lyrics` and a `song_id` column; a flag given wins, and must name a column of the table."""
    table = tmp_path / f"songs.{suffix}"
    frame = pd.DataFrame({"song_id": ["s0", "s1", "s2", "s3"], "title": list("abcd"), "lyrics": SONGS})
    frame.to_parquet(table) if suffix == "parquet" else frame.to_json(table, orient="records", lines=True)
    code, out, err = predict_in_process(capsys, table, "--model", tiny_model_dir)
    assert code == 0, err
    scores = pd.read_csv(io.StringIO(out))
    assert scores["id"].tolist() == ["s0", "s2", "s3"]
    assert scores["valence"].tolist() == pytest.approx(expected, abs=1e-6)
    code, out, err = predict_in_process(capsys, table, "--model", tiny_model_dir, "--id_column", "title")
    assert code == 0 and pd.read_csv(io.StringIO(out))["id"].tolist() == ["a", "c", "d"], err
    assert_one_line_error(
        *predict_in_process(capsys, table, "--model", tiny_model_dir, "--id_column", "song")[::2],
        f"{table}: no column 'song'",
        "--id_column",
        "'lyrics'",
    )


def test_a_table_without_a_recognised_lyrics_column_is_one_line_naming_its_columns_and_the_flag(
    tiny_model_dir, tmp_path, monkeypatch, capsys, caplog
):
    table = tmp_path / "words.csv"
    pd.DataFrame({"words": SONGS}).to_csv(table, index=False)
    assert_one_line_error(
        *predict_in_process(capsys, table, "--model", tiny_model_dir)[::2],
        f"{table}: cannot tell the text column among ['words']",
        "lyrics, text, seq",
        "--text_column",
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"id,lyrics\n1,la la\n"), encoding="utf-8"))
    code, _, _ = predict_in_process(capsys, "--model", tiny_model_dir)
    assert code == 0 and "looks like a table" in caplog.text  # the header names a recognised lyrics column


def test_nothing_to_score_exits_1_with_a_message_and_quiet_prints_errors_only(
    tiny_model_dir, tmp_path, monkeypatch, capsys, caplog
):
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"seq": ["", "  "]}).to_csv(blank, index=False)
    code, _, err = predict_in_process(capsys, blank, "--model", tiny_model_dir, "--quiet")
    assert code == 1 and err.splitlines() == ["lyric-valence predict: error: nothing to score: every song was empty"]
    assert caplog.text == ""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"seq\n"), encoding="utf-8"))
    code, out, err = predict_in_process(capsys, "--model", tiny_model_dir, "--stdin_format", "csv")
    assert code == 1 and "the input holds no songs" in err and out == "source,id,valence\n"


# ------------------------------------------------------------------------------------------------------ train.py --help


def run_train_script(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    import runpy

    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")
    captured = capsys.readouterr()
    return exit.value.code, captured.out, captured.err


def test_train_help_says_what_no_flags_switch_off_and_label_range_takes_two_numbers(monkeypatch, capsys):
    code, help_text, _ = run_train_script(monkeypatch, capsys, "--help")
    assert code == 0 and help_text.startswith("usage: accelerate launch train.py")
    entries = re.findall(r"^  (--no_\w+), --no-[\w-]+\n\s+(\S+ \S+ \S+)", help_text, re.M)
    assert len(entries) >= 5  # ours (--no_group_split, ...) and TrainingArguments' (--no_dataloader_pin_memory, ...)
    for flag, opening in entries:
        assert opening == f"Switch off --{flag.removeprefix('--no_')}", (flag, opening)
    assert "--label_range LOW HIGH, --label-range LOW HIGH" in help_text
    code, _, stderr = run_train_script(monkeypatch, capsys, "--label_range", "1", "--output_dir", "unused")
    assert code == 2 and stderr.splitlines() == [
        "train.py: error: argument --label_range/--label-range: expected 2 arguments"
    ]
