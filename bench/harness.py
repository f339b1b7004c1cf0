"""The harness every benchmark (bench/) and study (experiments/) runs on: the machine line written next to results, the
command line with no path of the machine in it, train.py and `lyric-valence` in subprocesses (wall time, peak RSS,
results), synthetic songs of original text and the song files a run reads, and methods timed side by side.

Synthetic songs: log-normal lengths in tokens (median 250, sigma 0.6, clipped to 24..3,000), the quantiles at
(i + 0.5) / n in shuffled order so that even a small catalogue spans the long tail; lines of whole vocabulary words
and commas, so a song's token count is exact."""

import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from scipy import stats
from torch.utils.benchmark import Compare, Timer

REPO = Path(__file__).resolve().parent.parent
# The CPU features that decide the speed of float32, bfloat16 and int8 matrix products.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
# What a recorded command names instead of an absolute path outside the repository, by the flag before the path: a
# model folder's placeholder, or (ending in "/") that of the folder holding the file: DATA/billboard_lyrics.csv.
PLACEHOLDERS = {"--model_name_or_path": "ENCODER_DIR", "--encoder": "ENCODER_DIR", "--vocab_file": "ASSETS/"}
PLACEHOLDERS |= {"--model": "MODEL_DIR", "--models": "MODEL_DIR", "--quality_model": "MODEL_DIR"}
PLACEHOLDERS |= {"--data_file": "DATA/", "--emobank": "DATA/", "--cache": "DATA/"}  # any other flag: OUT/
TRAIN_PY_FLAGS = ("--disable_tqdm", "True", "--report_to", "none")
MEDIAN_TOKENS, SIGMA, MIN_TOKENS, MAX_TOKENS = 250, 0.6, 24, 3000
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def machine_info(device: torch.device | None = None) -> dict:
    """Where and with what a benchmark ran (default device: the CPU)."""
    device = device or torch.device("cpu")
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu or platform.processor(),
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_line(machine: dict) -> str:
    """One sentence of `machine_info`: CPU model and features, cores, memory, GPU, load, versions, date."""
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    load = f", 1-minute load {machine['load_average']:.1f} at the start" if "load_average" in machine else ""
    flags = f" ({', '.join(machine['cpu_flags'])})" if machine.get("cpu_flags") else ""
    memory = f", {machine['memory_gib']:.0f} GiB RAM" if "memory_gib" in machine else ""
    return (
        f"{machine['cpu']}{flags}, {machine['cpu_cores']} cores ({machine['torch_threads']} torch threads){memory}{gpu}"
        f"{load}; Python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}; "
        f"{machine['date']}."
    )


def portable_path(path: str, flag: str = "") -> str:
    """`path` as results files name it: relative to the repository inside it; outside it, a placeholder for the model
    folder (ENCODER_DIR, MODEL_DIR) or for the folder holding the file (DATA/NAME, ASSETS/NAME, OUT/NAME)."""
    if not os.path.isabs(path):
        return path
    normal = Path(os.path.normpath(path))
    if normal.is_relative_to(REPO):
        return str(normal.relative_to(REPO)) if normal != REPO else "."
    placeholder = PLACEHOLDERS.get(flag, "OUT/")
    return placeholder + normal.name if placeholder.endswith("/") else placeholder


def portable_command(words: list[str]) -> list[str]:
    """`words` with every absolute path made a `portable_path`, also in an argument that holds flags and paths (as
    bench.run's --quality_flags does)."""
    portable, flag = [], ""
    for word in words:
        if " " in word and re.search(r"(^| )/", word):
            portable.append(shlex.join(portable_command(shlex.split(word))))
        elif word.startswith("--"):
            flag, _, value = word.partition("=")
            portable.append(f"{flag}={portable_path(value, flag)}" if value else word)
        else:
            portable.append(portable_path(word, flag))
    return portable


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command that ran `module` with `argv` (default: this process's arguments), as `portable_command`."""
    return shlex.join(["python", "-m", module, *portable_command(sys.argv[1:] if argv is None else argv)])


def logger(name: str):
    def log(message: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log


def pick_device(name: str | None) -> torch.device:
    """The device asked for, else cuda when there is one; quiets transformers' logs and progress bars."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def cli_command(*arguments: str) -> list[str]:
    """`lyric-valence ARGUMENTS` as this Python runs it."""
    return [sys.executable, "-m", "lyric_valence.cli", *map(str, arguments)]


def timed_process(command: list[str], env: dict | None = None) -> dict:
    """Run `command` in its own process from the repository root: wall seconds, peak RSS (`os.wait4`'s ru_maxrss), the
    1-minute load average before it started, its stdout and stderr (an error with the stderr's tail if it failed)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        load, start = os.getloadavg()[0], time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{shlex.join(command)} failed (exit {code}):\n{errors[-3000:]}")
    return dict(wall_s=wall, peak_rss_mib=usage.ru_maxrss / 1024, load_before=load, stdout=output, stderr=errors)


def start_train_py(flags: list[str], output_dir: Path) -> subprocess.Popen:
    """train.py with `flags`, writing to `output_dir`; its output goes to `output_dir`.log (a file, not a pipe: parallel
    runs never block on it)."""
    Path(output_dir).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{output_dir}.log", "w") as log_file:
        command = [sys.executable, "train.py", *flags, "--output_dir", str(output_dir), *TRAIN_PY_FLAGS]
        process = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    process.started = time.perf_counter()
    return process


def train_py_results(process: subprocess.Popen, output_dir: Path) -> dict:
    """Wait for a `start_train_py` run: its all_results.json and `wall_s` (an error with the log tail if it failed)."""
    if process.wait() != 0:
        log_tail = Path(f"{output_dir}.log").read_text()[-3000:]
        raise RuntimeError(f"train.py {shlex.join(process.args[2:])} failed (exit {process.returncode}):\n{log_tail}")
    results = json.loads((Path(output_dir) / "all_results.json").read_text())
    return {**results, "wall_s": time.perf_counter() - process.started}


def run_train_py(flags: list[str], output_dir: Path) -> dict:
    """train.py with `flags` to the end: its all_results.json and `wall_s`."""
    return train_py_results(start_train_py(flags, output_dir), output_dir)


@dataclass
class Catalogue:
    """Songs (`texts`), their made-up valence labels in [0.1, 0.9] and their token counts (special tokens included)."""

    texts: list[str]
    labels: list[float]
    tokens: list[int]


def vocabulary_words(vocabulary: dict[str, int]) -> list[str]:
    """The common words of a WordPiece vocabulary, by id: ids 2000-12000, ASCII letters only, 3+ characters."""
    words = sorted((token_id, token) for token, token_id in vocabulary.items() if 2000 <= token_id < 12000)
    return [token for _, token in words if token.isascii() and token.isalpha() and len(token) >= 3]


def length_mix(count: int, seed: int) -> np.ndarray:
    """`count` song lengths in tokens: log-normal quantiles (median 250, sigma 0.6) in shuffled order."""
    lengths = MEDIAN_TOKENS * np.exp(SIGMA * stats.norm.ppf((np.arange(count) + 0.5) / count))
    lengths = np.clip(np.rint(lengths), MIN_TOKENS, MAX_TOKENS).astype(int)
    return np.random.default_rng(seed).permutation(lengths)


class SongWriter:
    """Songs of Zipf-weighted `vocabulary_words`: verses of 4-9 words a line, a two-line chorus after every fourth."""

    def __init__(self, vocabulary: dict[str, int], rng: np.random.Generator):
        self.words = np.array(vocabulary_words(vocabulary))
        weights = 1.0 / np.arange(1, len(self.words) + 1)
        self.weights, self.rng = weights / weights.sum(), rng

    def line(self) -> list[str]:
        """One line of 4-9 words, sometimes ending with a comma (a token of its own)."""
        words = list(self.rng.choice(self.words, size=self.rng.integers(4, 10), p=self.weights))
        return words + [","] if self.rng.random() < 0.3 else words

    def song(self, tokens: int) -> str:
        """A song of exactly `tokens` tokens, special tokens included."""
        chorus = [self.line(), self.line()]
        lines, budget, verse_lines = [], tokens - SPECIAL_TOKENS, 0
        while budget > 0:
            verse_lines += 1
            for line in [self.line()] + (chorus if verse_lines % 4 == 0 else []):
                lines.append(line[:budget])
                budget -= len(lines[-1])
        return "\n".join(" ".join(line).replace(" ,", ",") for line in lines if line)


def make_catalogue(vocabulary: dict[str, int], count: int, seed: int = 0) -> Catalogue:
    """`count` original songs with the benchmark's length mix and uniform random labels in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    writer, lengths = SongWriter(vocabulary, rng), length_mix(count, seed)
    texts = [writer.song(int(length)) for length in lengths]
    return Catalogue(texts, rng.uniform(0.1, 0.9, size=count).round(4).tolist(), lengths.tolist())


def length_summary(tokens: list[int]) -> dict[str, float]:
    """Mean, median, p90, p99 and max of song lengths in tokens, and the share of songs past 512 and 1,000 tokens."""
    lengths = np.asarray(tokens)
    summary = {"songs": int(lengths.size), "mean": float(lengths.mean()), "median": float(np.median(lengths))}
    summary |= {f"p{percent}": float(np.percentile(lengths, percent)) for percent in (90, 99)}
    summary["max"] = int(lengths.max())
    return summary | {f"share_over_{length}": float((lengths > length).mean()) for length in (512, 1000)}


def write_songs(path: Path, texts: list[str], first: int = 0, artists: int = 97, **parquet_options) -> str:
    """A song table for `lyric-valence predict` (song, artist, seq; named by row number from `first`, `artists`
    artists in turn): Parquet (`parquet_options`: to_parquet's) when `path` ends in .parquet, else CSV."""
    rows = range(first, first + len(texts))
    frame = pd.DataFrame(
        {"song": [f"song {row}" for row in rows], "artist": [f"artist {row % artists}" for row in rows], "seq": texts}
    )
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, **parquet_options)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def time_side_by_side(
    scorers: dict, songs: list[str], rounds: int, label: str, log=print, before_round=None, end: float = float("inf")
) -> tuple[dict, dict]:
    """Score `songs` with every scorer in each round, in rotated order, each turn one `Timer.blocked_autorange` (its
    untimed first call is the warm-up). `before_round(index)` runs first in each round; no round starts after `end` (a
    `time.perf_counter()` time). Returns each scorer's seconds per round and its scores; logs torch's Compare table."""
    seconds, scores, measurements = {name: [] for name in scorers}, {}, []
    describe = {"label": label, "sub_label": f"{len(songs)} songs", "num_threads": torch.get_num_threads()}
    for index in range(rounds):
        if before_round:
            before_round(index)
        for name in list(scorers)[index % len(scorers) :] + list(scorers)[: index % len(scorers)]:
            context = {"scorer": scorers[name], "songs": songs, "scores": scores, "name": name}
            timer = Timer("scores[name] = scorer(songs)", globals=context, description=name, **describe)
            measurement = timer.blocked_autorange(min_run_time=0)
            seconds[name].append(measurement.median)
            measurements.append(measurement)
            rate = len(songs) / measurement.median
            log(f"round {index + 1}/{rounds}: {name} {measurement.median:.2f} s ({rate:.1f} songs/s)")
        if time.perf_counter() > end and index + 1 < rounds:
            log(f"stopping after round {index + 1}: time budget used")
            break
    compare = Compare(measurements)
    compare.trim_significant_figures()
    log(f"\n{compare}")
    return seconds, scores
