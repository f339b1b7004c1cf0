"""
Start-up of `lyric-valence predict --backend onnxruntime` with and without a kept export: the first run on a model
exports, fuses (and quantizes) it and keeps the result in the model folder's `onnx/`; a second run loads that file.

    python -m bench.onnx_cache [--rounds 3] [--note "shared machine, busy"]

Each run is the real command in its own process, scoring one short song, so its wall time is the start-up (imports,
model and tokenizer, export or kept file, onnxruntime session); its peak RSS comes from `os.wait4`. A round runs the
first (the `onnx/` folder removed) and then the second run of each precision, so a busy machine's slow spells fall
on both. The model is the packaged all-MiniLM-L6-v2 under a fresh lyric-valence head. Figures go to
bench/onnx_cache.json and the ONNX export section of bench/SCORING_RESULTS.md.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

from bench.models import build_model, load_tokenizer

REPO = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- onnx-cache: written by bench/onnx_cache.py -->"
SECTION_END = "<!-- /onnx-cache -->"
PRECISIONS = {"float32": [], "int8": ["--quantize", "int8"]}


# What a predict process imports before it reads a model: the floor under any start-up.
IMPORTS = "import onnxruntime, lyric_valence.predict, lyric_valence.loading, lyric_valence.backends.onnxruntime"


def timed_predict(model: Path, song: Path, flags: list[str]) -> dict:
    """One `lyric-valence predict --backend onnxruntime` process: wall seconds, peak RSS, whether it exported."""
    command = [sys.executable, "-m", "lyric_valence.cli", "predict", str(song), "--model", str(model), "--device", "cpu",
               "--backend", "onnxruntime", *flags]
    return timed_process(command)


def timed_process(command: list[str]) -> dict:
    """Run `command` in its own process: wall seconds, peak RSS (`os.wait4`), whether it exported a model."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this process's own rusage, peak RSS included
        wall = time.perf_counter() - start
        log.seek(0)
        stderr = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "exported": "exporting the model to ONNX" in stderr}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def measure(rounds: int) -> dict:
    tokenizer = load_tokenizer("minilm", None)
    runs = {precision: {"first": [], "second": []} for precision in PRECISIONS}
    runs["imports only"] = {"-": []}
    with tempfile.TemporaryDirectory() as folder:
        model, song = Path(folder) / "model", Path(folder) / "song.txt"
        build_model("minilm", tokenizer.vocab_size).save_pretrained(model)
        tokenizer.save_pretrained(model)
        song.write_text("the sun is out and we are dancing\nall night long\n", encoding="utf-8")
        for round_number in range(rounds):
            for precision, flags in PRECISIONS.items():
                shutil.rmtree(model / "onnx", ignore_errors=True)
                for run in ("first", "second"):
                    result = timed_predict(model, song, flags)
                    if result["exported"] != (run == "first"):
                        raise RuntimeError(f"{precision} {run} run: exported={result['exported']}")
                    runs[precision][run].append(result)
                    print(f"round {round_number + 1} {precision} {run}: {result['wall_s']:.1f} s, "
                          f"{result['peak_rss_mib']:.0f} MiB", file=sys.stderr)
            runs["imports only"]["-"].append(timed_process([sys.executable, "-c", IMPORTS]))
    return runs


def summary(results: list[dict], key: str) -> dict:
    values = [result[key] for result in results]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def render(record: dict) -> str:
    machine = record["machine"]
    lines = [
        SECTION_START,
        "## The kept ONNX export: first and second `predict --backend onnxruntime` run",
        "",
        f"Command: `{record['command']}`, {record['date']}. Machine: {machine['cpu']}, {machine['cores']} cores, "
        f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}; {machine['note']}.",
        "",
        "Each run is `lyric-valence predict song.txt --backend onnxruntime --device cpu [--quantize int8]` in its own "
        "process on one short song (all-MiniLM-L6-v2 under a lyric-valence head), so its wall time is the start-up. "
        "The first run exports the model into the folder's `onnx/` (its `onnx/` removed before); the second loads "
        f"that file. {record['rounds']} rounds, first and second run side by side in each; median (min-max).",
        "",
        "| precision | run | start-up wall (s) | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for precision, runs in record["runs"].items():
        for run in runs:
            wall, rss = record["summary"][precision][run]["wall_s"], record["summary"][precision][run]["peak_rss_mib"]
            lines.append(f"| {precision} | {run} | {wall['median']:.1f} ({wall['min']:.1f}-{wall['max']:.1f}) | "
                         f"{rss['median']:.0f} ({rss['min']:.0f}-{rss['max']:.0f}) |")
    ratios = ", ".join(f"{precision} **{ratio:.2f}**" for precision, ratio in record["speedup"].items())
    lines += [
        "",
        f"Start-up of the first run / the second (median wall): {ratios}. \"imports only\" is a process that imports "
        f"what predict imports and nothing else (`{IMPORTS}`): the part of the second run's start-up that no export "
        "cache can remove.",
        SECTION_END,
    ]
    return "\n".join(lines)


def save_section(markdown: Path, section: str) -> None:
    """Replace this benchmark's section of the results file, or append it; the rest of the file is left as it is."""
    text = markdown.read_text(encoding="utf-8")
    if SECTION_START in text:
        before, rest = text.split(SECTION_START, 1)
        text = before + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    markdown.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="", help="A sentence on the machine's state, e.g. that it was shared.")
    folder = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench"
    parser.add_argument("--results", type=Path, default=folder / "onnx_cache.json")
    parser.add_argument("--markdown", type=Path, default=REPO / "bench" / "SCORING_RESULTS.md")
    args = parser.parse_args()
    runs = measure(args.rounds)
    stats = {precision: {run: {key: summary(results, key) for key in ("wall_s", "peak_rss_mib")}
                         for run, results in by_run.items()} for precision, by_run in runs.items()}
    record = {
        "command": "python -m bench.onnx_cache" + (f" --rounds {args.rounds}" if args.rounds != 3 else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "note": args.note or "no note on the machine's load"},
        "rounds": args.rounds,
        "runs": runs,
        "summary": stats,
        "speedup": {precision: stats[precision]["first"]["wall_s"]["median"] / stats[precision]["second"]["wall_s"]["median"]
                    for precision in PRECISIONS},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    save_section(args.markdown, render(record))
    print(f"wrote {args.results} and {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
