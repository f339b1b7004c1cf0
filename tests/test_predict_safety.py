"""
`lyric-valence predict` never harms the user's files: an --output that is an input (a table, a song of an input
folder, the folder itself, through a symbolic or hard link either way), or whose progress file is one, is a one-line
error with exit code 2 before any input is read or the model loaded, and the inputs stay byte for byte; `--engine
ray` refuses an output folder that is, holds or lies in an input the same way, before Ray starts.
"""

import os

import pandas as pd
import pytest
from conftest import assert_one_line_error, predict_in_process

from lyric_valence import local_scoring
from lyric_valence.loading import ScoringOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def nothing_is_read(monkeypatch):
    """Reading an input or loading the model fails the test loudly (a traceback, not exit 2)."""

    def fail(*args, **kwargs):
        raise AssertionError("read before the output was checked")

    monkeypatch.setattr(local_scoring, "song_shards", fail)
    monkeypatch.setattr(ScoringOptions, "load", fail)


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A table, a folder of two songs, and their bytes; the working directory is their folder."""
    table = tmp_path / "songs.csv"
    pd.DataFrame({"lyrics": ["a sunny song", "a rainy song"]}).to_csv(table, index=False)
    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "one.txt").write_text("the first song\n", encoding="utf-8")
    (folder / "two.TXT").write_text("the second song\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return table, folder


def contents(*paths) -> dict:
    return {path: path.read_bytes() for root in paths for path in ([root] if root.is_file() else root.iterdir())}


def assert_refused(capsys, inputs, args, *expected):
    before = contents(*inputs)
    code, stdout, stderr = predict_in_process(capsys, *args)
    assert_one_line_error(code, stderr, *expected)
    assert stdout == "" and contents(*inputs) == before


@pytest.mark.parametrize("output", ["songs.csv", "./songs.csv", "ABSOLUTE", "songs/../songs.csv"])
def test_an_output_that_is_the_input_table_is_refused(inputs, tiny_model_dir, capsys, nothing_is_read, output):
    table, _ = inputs
    output = str(table) if output == "ABSOLUTE" else output
    assert_refused(
        capsys,
        inputs,
        ["songs.csv", "--model", tiny_model_dir, "--output", output],
        f"--output {output} is the input songs.csv",
    )


@pytest.mark.parametrize("output", ["songs/one.txt", "songs/two.TXT", "songs/new.txt", "songs"])
def test_an_output_among_an_input_folders_songs_is_refused(inputs, tiny_model_dir, capsys, nothing_is_read, output):
    """Also a song the folder does not hold yet: a resumed or later run would read the scores as a song."""
    assert_refused(
        capsys,
        inputs,
        ["songs", "--model", tiny_model_dir, "--output", output, "--format", "csv"],
        f"--output {output}",
        "input folder songs" if output != "songs" else "is the input songs",
    )


@pytest.mark.parametrize("link", ["output", "input", "folder", "hard"])
def test_a_link_either_way_is_seen_through(inputs, tiny_model_dir, capsys, nothing_is_read, tmp_path, link):
    table, folder = inputs
    if link == "output":  # the output names a link to the input table
        (tmp_path / "scores.csv").symlink_to(table)
        args, expected = ["songs.csv", "--output", "scores.csv"], "--output scores.csv is the input songs.csv"
    elif link == "input":  # the input is a link to the output
        (tmp_path / "link.csv").symlink_to(table)
        args, expected = ["link.csv", "--output", "songs.csv"], "--output songs.csv is the input link.csv"
    elif link == "folder":  # the output goes into a link to the input folder
        (tmp_path / "elsewhere").symlink_to(folder)
        args, expected = ["songs", "--output", "elsewhere/one.txt", "--format", "csv"], "input folder songs"
    else:  # a hard link of a song outside the folder
        os.link(folder / "one.txt", tmp_path / "scores.csv")
        args, expected = ["songs", "--output", "scores.csv"], "--output scores.csv is a song file of the input folder"
    assert_refused(capsys, inputs, [*args, "--model", tiny_model_dir], expected)


def test_an_input_that_is_the_outputs_progress_file_is_refused(
    inputs, tiny_model_dir, capsys, nothing_is_read, tmp_path
):
    progress = tmp_path / "scores.csv.progress.json"
    progress.write_text('[{"lyrics": "a song in a JSON table"}]', encoding="utf-8")
    assert_refused(
        capsys,
        [*inputs, progress],
        [progress.name, "--model", tiny_model_dir, "--output", "scores.csv"],
        "--output scores.csv (its progress file scores.csv.progress.json) is the input",
    )


def test_an_output_beside_the_inputs_is_written(inputs, tiny_model_dir, capsys):
    """Not every output near an input is refused: a table in the song folder is no song of it."""
    before = contents(*inputs)
    code, _, stderr = predict_in_process(
        capsys, "songs.csv", "songs", "--model", tiny_model_dir, "--output", "songs/scores.csv", "-q"
    )
    assert code == 0, stderr
    assert len(pd.read_csv("songs/scores.csv")) == 4
    (inputs[1] / "scores.csv").unlink()
    assert contents(*inputs) == before


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    pd.DataFrame({"lyrics": ["a sunny song"]}).to_csv(folder / "a.csv", index=False)
    pd.DataFrame({"lyrics": ["a rainy song"]}).to_parquet(folder / "b.parquet")
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.mark.parametrize(
    "inputs, output, expected",
    [
        (["catalogue"], "catalogue", "--output catalogue holds the input catalogue/a.csv"),
        (["catalogue/b.parquet"], "catalogue", "--output catalogue holds the input catalogue/b.parquet"),
        (["catalogue/*.csv"], ".", "--output . holds the input catalogue/a.csv"),
        (["catalogue"], "catalogue/scores", "--output catalogue/scores is inside the input folder catalogue"),
        (["catalogue/a.csv"], "catalogue/a.csv", "--output catalogue/a.csv is the input catalogue/a.csv"),
        (["link"], "catalogue", "--output catalogue holds the input link/a.csv"),
    ],
)
def test_ray_refuses_an_output_folder_that_is_holds_or_lies_in_an_input(
    catalogue, tiny_model_dir, capsys, inputs, output, expected
):
    """Checked before Ray starts (no cluster in this test) and before the output folder is created or written."""
    os.symlink(catalogue, "link")
    before = contents(catalogue)
    code, _, stderr = predict_in_process(
        capsys, "--engine", "ray", *inputs, "--model", tiny_model_dir, "--output", output, "-q"
    )
    assert_one_line_error(code, stderr, expected)
    assert contents(catalogue) == before and not os.path.exists("catalogue/scores")
