"""
`lyric-valence predict --engine ray` and `lyric_valence.ray_scoring` on a local Ray cluster of 2 CPUs (one actor, one
CPU for reading), from and to local folders: the scores of `predict`, an actor that dies mid-batch retried without a
lost or doubled row, a killed driver resumed from the manifest without rescoring, bad files as one line and exit 2.
(tests/test_ray_storage.py: the same from and to object storage and the Hub, on a cluster of several nodes.)
"""

import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
import ray
from conftest import REPO, WORDS, assert_one_line_error, predict_in_process
from ray import cloudpickle

from lyric_valence import cli, ray_scoring
from lyric_valence.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FLAGS = ["--id_column", "song", "--keep_columns", "artist", "--decimals", "9", "--block_size", "4", "-q"]

# A driver that commits every finished block at once and SIGKILLs itself once its manifest names two blocks.
KILLED_DRIVER = """
import os, signal, sys
from lyric_valence import ray_scoring
ray_scoring.COMMIT_SECONDS = 0
save = ray_scoring.Manifest.save
def save_then_die(self):
    save(self)
    if len(self.blocks) >= 2:
        os.kill(os.getpid(), signal.SIGKILL)
ray_scoring.Manifest.save = save_then_die
from lyric_valence.cli import main
sys.exit(main(sys.argv[1:]))
"""


class DyingOnceScorer(ray_scoring.ValenceScorer):
    """A scorer whose process exits in its first batch unless `marker` exists (it creates it): one lost actor."""

    marker = None

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(batch)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def songs_table(rng: random.Random, name: str, rows: int) -> pd.DataFrame:
    """Songs of a few lines of random words, every seventh one empty, ids with leading zeros."""
    texts = [
        ""
        if i % 7 == 3
        else "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25))) for _ in range(rng.randint(1, 4)))
        for i in range(rows)
    ]
    return pd.DataFrame(
        {
            "song": [f"{name}{i:03d}" for i in range(rows)],
            "artist": [f"artist {i % 3}" for i in range(rows)],
            "seq": texts,
        }
    )


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, tiny_model_dir):
    """A folder of a CSV, a Parquet and a JSONL file, and `predict`'s scores of them (local engine) as reference."""
    folder = tmp_path_factory.mktemp("catalogue")
    rng = random.Random(7)
    songs_table(rng, "a", 13).to_csv(folder / "a.csv", index=False)
    songs_table(rng, "b", 9).to_parquet(folder / "b.parquet")
    songs_table(rng, "c", 11).to_json(folder / "c.jsonl", orient="records", lines=True)
    reference = folder.parent / f"{folder.name}-reference.csv"
    files = [folder / name for name in ("a.csv", "b.parquet", "c.jsonl")]
    args = [*files, "--model", tiny_model_dir, "--output", reference, *FLAGS]
    assert cli.main(["predict", *map(str, args)]) == 0
    return folder, pd.read_csv(reference, dtype={"id": str})


def ray_output(folder) -> pd.DataFrame:
    return ray_scoring.read_scores(folder)


def manifest(folder) -> dict:
    return json.loads((folder / ray_scoring.MANIFEST).read_text(encoding="utf-8"))


def parts(folder) -> dict[str, int]:
    """The part files of an output folder and when each was written."""
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir() if path.name != ray_scoring.MANIFEST}


def assert_same_scores(output: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert output[["source", "id", "artist"]].values.tolist() == reference[["source", "id", "artist"]].values.tolist()
    assert output["valence"].tolist() == pytest.approx(reference["valence"].tolist(), abs=1e-6)


@pytest.mark.slow
def test_ray_engine_writes_the_scores_of_predict(local_ray, catalogue, tiny_model_dir, tmp_path, capsys):
    folder, reference = catalogue
    code, _, err = predict_in_process(
        capsys, "--engine", "ray", folder, "--model", tiny_model_dir, "--output", tmp_path / "scores", *FLAGS
    )
    assert code == 0, err
    written = manifest(tmp_path / "scores")
    assert written["complete"] and [entry["rows"] for entry in written["inputs"]] == [13, 9, 11]
    # Blocks of 4 rows: 4 + 3 + 3, each scored and written by the actor into a part the manifest names.
    assert [(block["input"], block["first_row"]) for block in written["blocks"]] == [
        *[(0, row) for row in (0, 4, 8, 12)],
        *[(1, row) for row in (0, 4, 8)],
        *[(2, row) for row in (0, 4, 8)],
    ]
    assert sorted(parts(tmp_path / "scores")) == sorted(block["part"] for block in written["blocks"])
    assert all(ray_scoring.PART.match(name) for name in parts(tmp_path / "scores"))
    assert len(reference) == 33 - 5  # the empty songs skipped
    assert_same_scores(ray_output(tmp_path / "scores"), reference)


@pytest.mark.slow
def test_ray_caps_long_songs_and_counts_them_as_predict_does(
    local_ray, catalogue, tiny_model_dir, tmp_path, capsys, caplog
):
    """One 32-token chunk per song: the songs of several are capped, by both engines alike."""
    folder, _ = catalogue
    files = [folder / name for name in ("a.csv", "b.parquet", "c.jsonl")]
    reference = tmp_path / "reference.csv"
    code, _, err = predict_in_process(
        capsys, *files, "--model", tiny_model_dir, "--output", reference, "--max_chunks_per_song", 1, *FLAGS[:-1]
    )
    assert code == 0, err
    summary = re.search(r"scored 28 songs \((\d+) capped at 1 chunk\), skipped 5 empty", caplog.text)
    assert summary and int(summary.group(1)) > 3
    caplog.clear()
    code, _, err = predict_in_process(
        capsys,
        "--engine",
        "ray",
        folder,
        "--model",
        tiny_model_dir,
        "--output",
        tmp_path / "scores",
        "--max_chunks_per_song",
        1,
        *FLAGS[:-1],
    )
    assert code == 0, err
    assert f"scored 28 songs ({summary.group(1)} capped at 1 chunk), skipped 5 empty" in caplog.text
    assert caplog.text.count("scored on its first chunks only") == int(summary.group(1))
    assert_same_scores(ray_output(tmp_path / "scores"), pd.read_csv(reference, dtype={"id": str}))


@pytest.mark.slow
def test_an_actor_that_dies_mid_batch_loses_and_doubles_no_row(
    local_ray, catalogue, tiny_model_dir, tmp_path, monkeypatch
):
    folder, reference = catalogue
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    monkeypatch.setattr(DyingOnceScorer, "marker", str(tmp_path / "died"))
    monkeypatch.setattr(ray_scoring, "ValenceScorer", DyingOnceScorer)
    counts = ray_scoring.score_catalogue(
        str(folder),
        tmp_path / "scores",
        tiny_model_dir,
        id_column="song",
        keep_columns=["artist"],
        decimals=9,
        batch_size=4,
        quiet=True,
    )
    assert (tmp_path / "died").exists()  # an actor did exit in its first batch
    assert counts == {
        "files": 3,
        "files_already_done": 0,
        "blocks": 10,
        "blocks_already_done": 0,
        "scored": 28,
        "skipped": 5,
        "capped": 0,
    }
    assert_same_scores(ray_output(tmp_path / "scores"), reference)


@pytest.mark.slow
def test_a_killed_driver_resumes_without_rescoring_or_doubling(local_ray, catalogue, tiny_model_dir, tmp_path, capsys):
    folder, reference = catalogue
    output = tmp_path / "scores"
    args = ["predict", "--engine", "ray", str(folder), "--model", str(tiny_model_dir), "--output", str(output), *FLAGS]
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_DRIVER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    earlier = manifest(output)
    assert not earlier["complete"] and len(earlier["blocks"]) == 2
    committed = {block["part"]: parts(output)[block["part"]] for block in earlier["blocks"]}

    code, _, err = predict_in_process(capsys, *args[1:])  # without --resume the folder is left alone
    assert_one_line_error(code, err, "--resume")
    code, _, err = predict_in_process(capsys, *args[1:], "--resume", "--decimals", "3")
    assert_one_line_error(code, err, "--resume with other flags", "decimals")

    code, _, err = predict_in_process(capsys, *args[1:], "--resume")
    assert code == 0, err
    resumed = manifest(output)
    assert resumed["complete"] and len(resumed["blocks"]) == 10
    assert {name: parts(output)[name] for name in committed} == committed  # kept, not scored again
    assert sorted(parts(output)) == sorted(block["part"] for block in resumed["blocks"])  # no orphan left
    assert_same_scores(ray_output(output), reference)


@pytest.mark.parametrize(
    "flags, expected", [(["--device", "cuda"], "--gpus_per_worker"), (["--dtype", "float16"], "--dtype float16")]
)
def test_options_the_cpu_workers_cannot_run_are_one_line_before_ray_starts(
    catalogue, tiny_model_dir, tmp_path, capsys, flags, expected
):
    folder, _ = catalogue
    code, _, err = predict_in_process(
        capsys, "--engine", "ray", folder, "--model", tiny_model_dir, *flags, "--output", tmp_path / "scores", "-q"
    )
    assert_one_line_error(code, err, expected)


@pytest.mark.parametrize("problem", ["missing", "corrupt", "no text column"])
def test_a_bad_file_is_one_line_naming_it_and_exit_2(catalogue, tiny_model_dir, tmp_path, capsys, problem):
    folder, _ = catalogue
    bad = tmp_path / ("songs.csv" if problem == "no text column" else "songs.parquet")
    if problem == "corrupt":
        bad.write_bytes(b"PAR1 this is not a parquet file")
    elif problem == "no text column":
        bad.write_text("song,words\ns1,la la\n", encoding="utf-8")
    code, _, err = predict_in_process(
        capsys,
        "--engine",
        "ray",
        folder / "a.csv",
        bad,
        "--model",
        tiny_model_dir,
        "--output",
        tmp_path / "scores",
        "-q",
    )
    assert_one_line_error(code, err, str(bad))


@pytest.mark.slow
def test_a_file_that_breaks_midway_is_one_line_and_exit_2(local_ray, catalogue, tiny_model_dir, tmp_path, capsys):
    folder, _ = catalogue
    bad = tmp_path / "songs.csv"  # its first rows read well: the break is found while Ray reads it
    bad.write_text("song,artist,seq\ns1,a,la la\ns2,b,do re\ns3,c,mi fa,sol\n", encoding="utf-8")
    code, _, err = predict_in_process(
        capsys, "--engine", "ray", bad, "--model", tiny_model_dir, "--output", tmp_path / "scores", "-q"
    )
    assert_one_line_error(code, err, str(bad))
    assert not list((tmp_path / "scores").glob("songs-*"))  # no part of it


def test_without_ray_installed_the_command_says_how_to_install_it(
    catalogue, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    folder, _ = catalogue
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, _, err = predict_in_process(
        capsys, "--engine", "ray", folder, "--model", tiny_model_dir, "--output", tmp_path / "scores", "-q"
    )
    assert_one_line_error(code, err, 'pip install "lyric-valence[ray]"')


def test_read_blocks_cuts_files_into_aligned_blocks_and_skips_the_done_ones(tmp_path, monkeypatch):
    """Blocks are rows [k*4, k*4+4) of each file whatever its row groups; a resumed run's done blocks are not read
    again, and a row group whose blocks are all done is skipped unread."""
    rows = 11
    table = pd.DataFrame(
        {"song": [f"s{i:02d}" for i in range(rows)], "artist": "x", "seq": [f"la {i}" for i in range(rows)]}
    )
    table.to_parquet(tmp_path / "songs.parquet", row_group_size=3)  # groups [0,3) [3,6) [6,9) [9,11)
    table.to_csv(tmp_path / "songs.csv", index=False)

    def blocks(name, table_format, done, id_column=None):
        spec = {"input": 0, "path": str(tmp_path / name), "format": table_format, "text_column": "seq"}
        spec |= {"id_column": id_column, "keep_columns": ["artist"], "block_size": 4, "done": done}
        return list(ray_scoring.read_blocks({"spec": json.dumps(spec)}))

    for name, table_format in (("songs.parquet", "parquet"), ("songs.csv", "csv")):
        emitted = blocks(name, table_format, [])
        assert [(block["first_row"], block["rows"], block["end"]) for block in emitted] == [
            (0, 4, False),
            (4, 4, False),
            (8, 3, False),
            (11, 0, True),  # the end: the file's row count
        ]
        songs = pickle.loads(emitted[1]["songs"])
        assert songs.columns.tolist() == ["id", "artist", "text"]
        assert songs["id"].tolist() == ["4", "5", "6", "7"] and songs["text"].tolist() == [
            "la 4",
            "la 5",
            "la 6",
            "la 7",
        ]
        resumed = blocks(name, table_format, [0, 8], id_column="song")
        assert [(block["first_row"], block["rows"]) for block in resumed] == [(4, 4), (11, 0)]
        assert pickle.loads(resumed[0]["songs"])["id"].tolist() == ["s04", "s05", "s06", "s07"]

    read = []
    original = ray_scoring.file_frames

    def counted(*args):
        for first_row, frame in original(*args):
            read.append((first_row, None if frame is None else len(frame)))
            yield first_row, frame

    monkeypatch.setattr(ray_scoring, "file_frames", counted)
    blocks("songs.parquet", "parquet", [0, 4])
    # Groups [0,3) and [3,6) lie in done blocks only; [6,9) is read, as block 4 is done but block 8 is not.
    assert read == [(6, 3), (9, 2), (11, None)]


def test_an_output_under_a_remote_input_is_refused_before_anything_is_read():
    """Prefix rules on URLs, without a server: s3fs is only asked to parse them."""
    files = ["s3://bucket/lyrics/a.parquet"]
    for output, inputs, expected in [
        ("s3://bucket/lyrics/a.parquet", files, "is the input"),
        ("s3://bucket/lyrics", files, "holds the input"),
        ("s3://bucket/lyrics/scores/", ["s3://bucket/lyrics/"], "inside the input folder"),
        ("s3://bucket/lyrics/2026/scores", ["s3://bucket/lyrics/*/*.parquet"], "inside the input folder"),
    ]:
        with pytest.raises(UserError, match=expected):
            ray_scoring.check_output_folder(output, inputs, files)
    ray_scoring.check_output_folder("s3://bucket/scores/", ["s3://bucket/lyrics/"], files)  # beside it: fine
    ray_scoring.check_output_folder("s3://bucket/lyrics-scores/", ["s3://bucket/lyrics/"], files)


def test_a_scheme_whose_filesystem_is_not_installed_is_one_line_naming_the_package(
    catalogue, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    import fsspec  # noqa: F401 (fsspec.registry, the module, is shadowed by its mapping of the same name)

    registry = sys.modules["fsspec.registry"]._registry
    monkeypatch.delitem(registry, "s3", raising=False)  # as if s3fs had never been imported
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs raises ImportError
    code, _, err = predict_in_process(
        capsys, "--engine", "ray", "s3://bucket/lyrics/", "--model", tiny_model_dir, "--output", tmp_path / "scores"
    )
    assert_one_line_error(code, err, "s3://bucket/lyrics/", "pip install s3fs")
