"""`lyric-valence predict` on catalogues: two processes (torchrun, joined by accelerate) each take half the shards,
read only their own Parquet row groups and song files, and write the very file one does; and a run killed with
SIGKILL (while scoring a block, or halfway through writing one) continues with `--resume` to the very file an
uninterrupted run writes."""

import json
import os
import random
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import REPO, WORDS, tiny_bert_config

from bench.ray_scoring import COUNTED_RUN
from configuration_lyric_valence import LyricValenceConfig
from lyric_valence import cli, local_scoring, predict_io
from lyric_valence.errors import UserError
from modeling_lyric_valence import LyricValenceModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BLOCK = ["--block_size", "4", "--decimals", "9", "-q"]

# Runs the CLI with SIGKILL sent to itself once `after` calls of the patched function have gone through: in
# `scoring`, before a block's scores exist; in `writing`, after half of a block's bytes reached the output.
KILLED_RUN = """
import os, signal, sys
from lyric_valence import local_scoring, predict_io
mode, after, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = []
if mode == "scoring":
    score = local_scoring.score_block
    def patched(*args):
        calls.append(1)
        if len(calls) > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return score(*args)
    local_scoring.score_block = patched
else:
    write = predict_io.ScoreWriter.write_text
    def patched(self, text):
        calls.append(1)
        if len(calls) > after:
            self.handle.write(text[: len(text) // 2].encode())
            self.handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return write(self, text)
    predict_io.ScoreWriter.write_text = patched
from lyric_valence.cli import main
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("catalogue")
    torch.manual_seed(3)
    model = LyricValenceModel(
        LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), max_length=32, stride=8)
    )
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rng = random.Random(5)
    texts = ["" if i % 9 == 4 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 90))) for i in range(30)]
    pd.DataFrame({"song": [f"s{i}" for i in range(30)], "seq": texts}).to_csv(folder / "songs.csv", index=False)
    reference = folder / "reference.csv"
    args = [folder / "songs.csv", "--model", folder / "model", "--id_column", "song", "--output", reference, *BLOCK]
    assert cli.main(["predict", *map(str, args)]) == 0
    return folder, reference


def subprocess_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_shards_are_dealt_round_robin_in_rounds_every_process_walks():
    shards = [predict_io.Shard(rows, lambda: iter([])) for rows in (4, 5, 6, 3)]
    first, second, third = (list(local_scoring.process_share(iter(shards), index, 3)) for index in range(3))
    assert [shard.rows for shard in first] == [4, 3]
    assert second[0].rows == 5 and second[1] is None  # the last round is short
    assert len(third) == 2 and third[1] is None
    assert all(got is shard for got, shard in zip(local_scoring.process_share(iter(shards), 0, 1), shards, strict=True))


def catalogue_as(kind: str, folder, tmp_path) -> tuple[list[str], list[str]]:
    """The catalogue's 30 songs as `kind` input: the predict arguments naming it, and its id flags."""
    songs = pd.read_csv(folder / "songs.csv", dtype=str, keep_default_na=False)
    if kind == "csv":
        return [str(folder / "songs.csv")], ["--id_column", "song"]
    if kind == "parquet":
        songs.to_parquet(tmp_path / "songs.parquet", row_group_size=4)  # the row groups hold a block each
        return [str(tmp_path / "songs.parquet")], ["--id_column", "song"]
    (tmp_path / "songs").mkdir()
    for song, text in songs.itertuples(index=False):
        (tmp_path / "songs" / f"{int(song[1:]):03}.txt").write_text(text, encoding="utf-8")
    return [str(tmp_path / "songs")], []


@pytest.mark.parametrize("kind, rows_read", [("csv", [30, 30]), ("parquet", [16, 14]), ("folder", [16, 14])])
@pytest.mark.slow
def test_two_processes_each_take_half_and_write_the_file_of_one(catalogue, tmp_path, kind, rows_read):
    folder, _ = catalogue
    inputs, ids = catalogue_as(kind, folder, tmp_path)
    arguments = [*inputs, "--model", str(folder / "model"), *ids, *BLOCK]
    script = tmp_path / "counted_run.py"
    script.write_text(COUNTED_RUN, encoding="utf-8")
    for processes in (1, 2):
        rows = tmp_path / f"rows-of-{processes}"
        rows.mkdir()
        completed = subprocess.run(
            # torchrun: `accelerate launch --cpu` starts one process unless MPI is set up
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                str(processes),
                str(script),
                "predict",
                *arguments,
                "--output",
                str(tmp_path / f"{processes}.csv"),
            ],
            cwd=REPO,
            env={**subprocess_env(), "ROWS_DIR": str(rows)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
    counts = [json.loads((tmp_path / "rows-of-2" / f"rows-{index}.json").read_text()) for index in (0, 1)]
    # 30 rows in shards of 4: shards 0, 2, 4, 6 to the first process, 1, 3, 5 and the last 2 rows to the second
    assert [count["taken"] for count in counts] == [16, 14]
    # a CSV has no index to seek in: both processes parse it; row groups and song files are read by their owner only
    assert [count["read"] for count in counts] == rows_read
    assert (tmp_path / "2.csv").read_bytes() == (tmp_path / "1.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "2.csv")) == 27


def test_parquet_row_groups_are_shards_that_read_only_their_rows(tmp_path):
    songs = pd.DataFrame(
        {"song": [f"s{i}" for i in range(10)], "seq": [f"words {i}" for i in range(10)], "unused": range(10)}
    )
    songs.to_parquet(tmp_path / "small.parquet", row_group_size=3)
    shards = list(predict_io.song_shards([str(tmp_path / "small.parquet")], "seq", None, [], "text", block_size=3))
    assert [shard.rows for shard in shards] == [3, 3, 3, 1]
    third = pd.concat(shards[2].read())
    assert third["id"].tolist() == ["6", "7", "8"] and third["text"].tolist() == ["words 6", "words 7", "words 8"]
    assert list(third.columns) == ["source", "id", "text"]
    # row groups larger than a block: the file is read as a stream, in blocks, as a CSV is
    shards = list(predict_io.song_shards([str(tmp_path / "small.parquet")], "seq", "song", [], "text", block_size=2))
    assert [shard.rows for shard in shards] == [2, 2, 2, 2, 2]
    assert pd.concat(shards[1].read())["id"].tolist() == ["s2", "s3"]


def test_a_missing_parquet_column_is_named_before_any_row_is_read(tmp_path):
    pd.DataFrame({"lyrics": ["a"]}).to_parquet(tmp_path / "songs.parquet")
    with pytest.raises(UserError, match=r"songs.parquet: no column 'seq'.*--text_column"):
        next(predict_io.song_shards([str(tmp_path / "songs.parquet")], "seq", None, [], "text", block_size=8))


def test_a_resumed_run_skips_unread_shards_without_reading_them():
    read = []
    shards = [predict_io.Shard(4, lambda start=start: read.append(start) or iter([])) for start in (0, 4, 8)]
    assert [shard.rows for shard in local_scoring.unread_shards(iter(shards), 8)] == [4]
    assert read == []


@pytest.mark.parametrize("mode, after", [("scoring", 3), ("writing", 4)])
@pytest.mark.slow
def test_a_killed_run_resumes_to_the_output_of_an_uninterrupted_one(catalogue, tmp_path, mode, after):
    folder, reference = catalogue
    output = tmp_path / "scores.csv"
    args = [
        str(folder / "songs.csv"),
        "--model",
        str(folder / "model"),
        "--id_column",
        "song",
        "--output",
        str(output),
        *BLOCK,
    ]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, mode, str(after), "predict", *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert output.exists() and output.with_name("scores.csv.progress.json").exists()
    assert output.read_bytes() != reference.read_bytes()  # cut short (and, when writing, in the middle of a row)
    cut = output.read_bytes()
    # another scoring engine would mix two engines' scores in one file: refused, the file left as it is
    assert cli.main(["predict", *args, "--resume", "--backend", "onnxruntime"]) == 2
    assert output.read_bytes() == cut

    assert cli.main(["predict", *args, "--resume"]) == 0
    assert output.read_bytes() == reference.read_bytes()
    assert not output.with_name("scores.csv.progress.json").exists()
    assert cli.main(["predict", *args, "--resume"]) == 2  # finished: nothing to resume, and the output is left alone
    assert output.read_bytes() == reference.read_bytes()
