#!/usr/bin/env python
"""
Peak memory of `lyric-valence predict` as the catalogue grows: the same command scores a small and a 10x larger CSV
catalogue, each in its own process, and the peak RSS of each process (`os.wait4`) is compared. Streaming keeps it
flat: tables are read, scored and written `--block_size` songs at a time.

    python -m bench.predict_memory                    # 10,000 and 100,000 songs (~1 h on 2 shared CPU cores)
    python -m bench.predict_memory --songs 500 5000   # quick

Writes predict_memory.json and a RESULTS.md section into $OUT when that is set (a device run), else into bench/.

Songs come from bench/songs.py (the speed benchmarks' length mix: log-normal, median 250 tokens). Writing 100,000
original songs takes half an hour there, so each catalogue cycles through one pool of 1,000 generated songs with a
distinct id per row; both catalogues have the same mix. A tiny random lyric-valence model (1 layer, 32 wide, the
packaged tokenizer, 512-token chunks) is scored: the model's own memory is the same at any catalogue size, so a small
one makes the catalogue's share visible. Results go to bench/predict_memory.json and a section of bench/RESULTS.md.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig

from bench.report import logger, machine_info, machine_line, table, write_section
from bench.songs import make_catalogue
from configuration_lyric_valence import LyricValenceConfig
from lyric_valence import default_encoder_path
from modeling_lyric_valence import LyricValenceModel

REPO = Path(__file__).resolve().parent.parent
POOL_SONGS = 1000
log = logger("predict-memory")


def write_model(folder: Path, tokenizer) -> None:
    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=48, max_position_embeddings=512)
    LyricValenceModel(LyricValenceConfig(encoder=encoder)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_catalogue(path: Path, pool: list[str], songs: int) -> int:
    """A CSV of `songs` rows (artist, song, seq) cycling through `pool`; returns its size in bytes."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["artist", "song", "seq"])
        for row in range(songs):
            writer.writerow([f"artist {row % 997}", f"song {row}", pool[row % len(pool)]])
    return path.stat().st_size


def score(catalogue: Path, model: Path, output: Path) -> dict:
    """Run the command in its own process: peak RSS (wait4's ru_maxrss, KiB on Linux), wall time, rows written."""
    command = [sys.executable, "-m", "lyric_valence.cli", "predict", str(catalogue), "--model", str(model),
               "--id_column", "song", "--keep_columns", "artist", "--output", str(output), "-q"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed on {catalogue} (exit {os.waitstatus_to_exitcode(status)})")
    with output.open(encoding="utf-8") as handle:
        rows = sum(1 for _ in handle) - 1
    return {"peak_rss_mib": usage.ru_maxrss / 1024, "wall_s": wall, "songs_per_s": rows / wall, "rows_written": rows,
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
    folder = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench"
    parser.add_argument("--results", type=Path, default=folder / "predict_memory.json")
    parser.add_argument("--markdown", type=Path, default=folder / "RESULTS.md")
    parser.add_argument("--note", default=None, help="A sentence on the machine's state, e.g. that it was shared.")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_model(tmp / "model", tokenizer)
        log(f"writing a pool of {POOL_SONGS} songs")
        pool = make_catalogue(tokenizer.get_vocab(), min(POOL_SONGS, max(args.songs)), seed=0).texts
        runs = []
        for songs in args.songs:
            catalogue = tmp / f"catalogue-{songs}.csv"
            size = write_catalogue(catalogue, pool, songs)
            log(f"scoring {songs:,} songs ({size / 2**20:.0f} MiB)")
            run = {"songs": songs, "csv_mib": size / 2**20, **score(catalogue, tmp / "model", tmp / "scores.csv")}
            log(f"{songs:,} songs: peak RSS {run['peak_rss_mib']:.0f} MiB, {run['wall_s']:.0f} s")
            runs.append(run)
    results = {"command": "python -m bench.predict_memory" + ("" if args.songs == [10_000, 100_000] else
                                                              f" --songs {args.songs[0]} {args.songs[1]}"),
               "machine": machine_info(torch.device("cuda" if torch.cuda.is_available() else "cpu")), "note": args.note or "", "runs": runs,
               "rss_ratio": runs[1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    write_section(args.markdown, "bench.predict_memory", render(results))
    log(f"ratio {results['rss_ratio']:.3f}; wrote {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
