"""
Peak memory of `lyric-valence predict` as the catalogue grows: the same command scores a small and a 10x larger CSV
catalogue (cycling through one pool of bench/songs.py songs, a distinct id per row), each in its own process, with
the tiny random model (its own memory is the same at any size, so the catalogue's share shows); peak RSS from
`os.wait4`. Results go to predict_memory.json and a section of RESULTS.md in $OUT when that is set, else in bench/.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.models import build_model, load_tokenizer, save_model
from bench.report import (OUT, command_line, logger, machine_info, machine_line, pick_device, table, timed_process,
                          write_json, write_section)
from bench.songs import make_catalogue

POOL_SONGS = 1000
log = logger("predict-memory")


def write_catalogue(path: Path, pool: list[str], songs: int) -> int:
    """A CSV of `songs` rows (artist, song, seq) cycling through `pool`; returns its size in bytes."""
    pd.DataFrame({"artist": [f"artist {row % 997}" for row in range(songs)],
                  "song": [f"song {row}" for row in range(songs)],
                  "seq": [pool[row % len(pool)] for row in range(songs)]}).to_csv(path, index=False)
    return path.stat().st_size


def score(catalogue: Path, model: str, output: Path) -> dict:
    """Run the command in its own process: peak RSS, wall time, rows written."""
    command = [sys.executable, "-m", "lyric_valence.cli", "predict", str(catalogue), "--model", model,
               "--id_column", "song", "--keep_columns", "artist", "--output", str(output), "-q"]
    run = timed_process(command)
    del run["stderr"]
    with output.open(encoding="utf-8") as handle:
        rows = sum(1 for _ in handle) - 1
    return {**run, "songs_per_s": rows / run["wall_s"], "rows_written": rows,
            "command": " ".join(["lyric-valence", *command[3:]])}


def render(results: dict) -> str:
    small, large = results["runs"]
    return "\n".join([
        "## Scoring memory: peak RSS of `lyric-valence predict` as the catalogue grows", "",
        f"Command: `{results['command']}`. Machine: {machine_line(results['machine'])} {results['note']}", "",
        f"Each catalogue is a CSV cycling through the same {POOL_SONGS:,} songs of bench/songs.py's length mix, scored "
        "by a tiny random lyric-valence model (1 layer, 32 wide, 512-token chunks) in its own process with "
        "`--block_size 1024` (the default); peak RSS is the process's `ru_maxrss`.", "",
        table([{"songs": f"{run['songs']:,}", "CSV size (MiB)": f"{run['csv_mib']:.0f}",
                "peak RSS (MiB)": f"{run['peak_rss_mib']:.0f}", "wall (s)": f"{run['wall_s']:.0f}",
                "songs/s": f"{run['songs_per_s']:.0f}"} for run in results["runs"]]), "",
        f"Ratio of peak RSS, {large['songs']:,} / {small['songs']:,} songs: **{results['rss_ratio']:.3f}**."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, nargs=2, default=[10_000, 100_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--results", type=Path, default=OUT / "predict_memory.json")
    parser.add_argument("--markdown", type=Path, default=OUT / "RESULTS.md")
    parser.add_argument("--note", default="", help="A sentence on the machine's state, e.g. that it was shared.")
    args = parser.parse_args()
    tokenizer = load_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_model(tmp / "model", build_model("tiny", tokenizer.vocab_size), tokenizer)
        log(f"writing a pool of {POOL_SONGS} songs")
        pool = make_catalogue(tokenizer.get_vocab(), min(POOL_SONGS, max(args.songs)), seed=0).texts
        runs = []
        for songs in args.songs:
            catalogue = tmp / f"catalogue-{songs}.csv"
            size = write_catalogue(catalogue, pool, songs)
            log(f"scoring {songs:,} songs ({size / 2**20:.0f} MiB)")
            run = {"songs": songs, "csv_mib": size / 2**20, **score(catalogue, model, tmp / "scores.csv")}
            log(f"{songs:,} songs: peak RSS {run['peak_rss_mib']:.0f} MiB, {run['wall_s']:.0f} s")
            runs.append(run)
    results = {"command": command_line("bench.predict_memory"), "machine": machine_info(pick_device(None)),
               "note": args.note, "runs": runs, "rss_ratio": runs[1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]}
    write_json(args.results, results)
    write_section(args.markdown, "bench.predict_memory", render(results))
    log(f"ratio {results['rss_ratio']:.3f}; wrote {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
