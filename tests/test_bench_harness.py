"""The benchmarks' shared pieces: the side-by-side timing of bench/harness.py and the markdown of bench/report.py."""

import time

import torch

from bench.harness import time_side_by_side
from bench.report import machine_info, machine_line, spread, summary, table, write_section


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
    seconds, _ = time_side_by_side(
        {"only": lambda songs: songs}, ["x"], 5, "test", log=lambda message: None, stop=lambda: True
    )
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
