"""The shared harness (bench/harness.py: timing side by side, machine, commands, processes, song files) and the
markdown of bench/report.py."""

import shlex
import sys
import time

import pandas as pd
import pytest
import torch

from bench.harness import (
    REPO,
    command_line,
    machine_info,
    machine_line,
    portable_command,
    portable_path,
    time_side_by_side,
    timed_process,
    vocabulary_words,
    write_songs,
)
from bench.report import spread, summary, table, write_section


def test_side_by_side_rotates_the_order_warms_up_and_keeps_the_scores():
    calls = []

    def scorer(name, seconds):
        def score(songs):
            calls.append((name, len(songs)))
            time.sleep(seconds)
            return [float(len(song)) for song in songs]

        return score

    songs = ["a", "bb", "ccc"]
    rounds = []
    seconds, scores = time_side_by_side(
        {"slow": scorer("slow", 0.02), "fast": scorer("fast", 0.0)},
        songs,
        2,
        "test",
        log=lambda message: None,
        before_round=rounds.append,
    )
    assert rounds == [0, 1] and scores == {"slow": [1.0, 2.0, 3.0], "fast": [1.0, 2.0, 3.0]}
    assert len(seconds["slow"]) == len(seconds["fast"]) == 2
    assert all(slow > fast for slow, fast in zip(seconds["slow"], seconds["fast"], strict=True))
    # each turn: an untimed call, then the timed one; round 2 starts with the other scorer
    assert [name for name, _ in calls] == ["slow", "slow", "fast", "fast", "fast", "fast", "slow", "slow"]
    assert torch.get_num_threads() >= 1


def test_time_side_by_side_stops_when_told():
    seconds, _ = time_side_by_side({"only": lambda songs: songs}, ["x"], 5, "test", log=lambda message: None, end=0)
    assert len(seconds["only"]) == 1


def test_tables_spreads_and_sections(tmp_path):
    assert spread(summary([3.0, 1.0, 2.0]), ".1f", suffix="×") == "2.0× (1.0–3.0)"
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in table([{"a": "1", "b": "x"}, {"a": "22"}]).splitlines()
    ]
    assert rows[0] == ["a", "b"] and rows[2:] == [["1", "x"], ["22", ""]]
    path = tmp_path / "RESULTS.md"
    path.write_text("# Title\n\n<!-- other: start -->\nkept\n<!-- other: end -->\n")
    write_section(path, "mine", "first")
    write_section(path, "mine", "second")
    text = path.read_text()
    assert text.count("<!-- mine: start -->") == 1 and "second" in text and "first" not in text and "kept" in text
    assert "cores" in machine_line(machine_info(torch.device("cpu")))


def test_recorded_commands_name_no_path_of_the_machine():
    words = shlex.split(
        f"--data_file /data/billboard-lyrics/billboard_lyrics.csv --emobank {REPO / 'data' / 'emobank.csv'} "
        "--models /home/someone/models/quickstart /tmp/other --out=/tmp/out/12/speed --rounds 3 "
        "--quality_flags '--model_name_or_path /tmp/assets/minilm --data_file /work/x/emobank.csv' "
        "-- --vocab_file /tmp/assets/vocab.txt relative/file.csv"
    )
    assert command_line("bench.x", words) == (
        "python -m bench.x --data_file DATA/billboard_lyrics.csv --emobank data/emobank.csv --models MODEL_DIR "
        "MODEL_DIR --out=OUT/speed --rounds 3 --quality_flags '--model_name_or_path ENCODER_DIR --data_file "
        "DATA/emobank.csv' -- --vocab_file ASSETS/vocab.txt relative/file.csv"
    )
    assert portable_path(str(REPO)) == "." and portable_path("/srv/x/out.json") == "OUT/out.json"
    note = ["--note", "the quickstart's model, (shared) 2 cores"]
    assert portable_command(note) == note


def test_timed_process_reads_both_outputs_and_fails_loudly():
    result = timed_process([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert result["stdout"] == "out\n" and result["stderr"] == "err\n" and result["wall_s"] > 0
    assert result["peak_rss_mib"] > 1
    with pytest.raises(RuntimeError, match="exit 3"):
        timed_process([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_song_files_and_vocabulary_words(tmp_path):
    write_songs(tmp_path / "songs.csv", ["a b", "c"], first=5, artists=2)
    songs = pd.read_csv(tmp_path / "songs.csv")
    assert songs.to_dict("list") == {
        "song": ["song 5", "song 6"],
        "artist": ["artist 1", "artist 0"],
        "seq": ["a b", "c"],
    }
    write_songs(tmp_path / "songs.parquet", ["x"])
    assert pd.read_parquet(tmp_path / "songs.parquet")["seq"].tolist() == ["x"]
    vocabulary = {"hello": 2001, "##lo": 2002, "ab": 2003, "zebra": 12000, "world": 2000}
    assert vocabulary_words(vocabulary) == ["world", "hello"]
