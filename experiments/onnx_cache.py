"""
One-off study behind keeping the ONNX export: start-up of `lyric-valence predict --backend onnxruntime` with and
without it. The first run on a model exports (and quantizes) it into the model folder's `onnx/`, a second run loads
that file. Each run is the real command in its own process on one short song, so its wall time is the start-up; peak
RSS from `os.wait4`. Writes experiments/onnx_cache.json and the ONNX export section of bench/SCORING_RESULTS.md.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import onnxruntime

from bench import harness
from bench.models import build_model, load_tokenizer, save_model
from bench.report import spread, summary, table, write_json, write_section

PRECISIONS = {"float32": [], "int8": ["--quantize", "int8"]}
# What a predict process imports before it reads a model: the floor under any start-up.
IMPORTS = (
    "import onnxruntime, lyric_valence.commands.predict, lyric_valence.local_scoring, lyric_valence.loading, "
    "lyric_valence.backends.onnxruntime"
)
log = harness.logger("onnx-cache")


def measure(rounds: int) -> dict:
    """Wall seconds and peak RSS of each precision's first and second run, and of the imports alone, per round."""
    tokenizer = load_tokenizer()
    runs = {(precision, run): [] for precision in PRECISIONS for run in ("first", "second")}
    runs["imports only", ""] = []
    with tempfile.TemporaryDirectory() as folder:
        model, song = Path(folder) / "model", Path(folder) / "song.txt"
        save_model(model, build_model("minilm", tokenizer.vocab_size), tokenizer)
        song.write_text("the sun is out and we are dancing\nall night long\n", encoding="utf-8")
        for round_number in range(rounds):
            for precision, flags in PRECISIONS.items():
                shutil.rmtree(model / "onnx", ignore_errors=True)
                for run in ("first", "second"):
                    command = harness.cli_command("predict", song, "--model", model, "--device", "cpu")
                    result = harness.timed_process([*command, "--backend", "onnxruntime", *flags])
                    if ("exporting the model to ONNX" in result.pop("stderr")) != (run == "first"):
                        raise RuntimeError(f"{precision} {run} run: exported on the wrong run")
                    runs[precision, run].append(result)
                    log(
                        f"round {round_number + 1} {precision} {run}: {result['wall_s']:.1f} s, "
                        f"{result['peak_rss_mib']:.0f} MiB"
                    )
            runs["imports only", ""].append(harness.timed_process([sys.executable, "-c", IMPORTS]))
    return {
        f"{precision} {run}".strip(): {
            key: summary([result[key] for result in results]) for key in ("wall_s", "peak_rss_mib")
        }
        for (precision, run), results in runs.items()
    }


def render(record: dict) -> str:
    ratios = ", ".join(f"{precision} **{ratio:.2f}**" for precision, ratio in record["speedup"].items())
    return "\n".join(
        [
            "## The kept ONNX export: first and second `predict --backend onnxruntime` run",
            "",
            f"Command: `{record['command']}`. Machine: {harness.machine_line(record['machine'])} onnxruntime "
            f"{record['onnxruntime']}. {record['note']}",
            "",
            "Each run is `lyric-valence predict song.txt --backend onnxruntime --device cpu [--quantize int8]` in its "
            "own process on one short song (all-MiniLM-L6-v2 under a lyric-valence head), so its wall time is the "
            "start-up. The first run exports the model into the folder's `onnx/` (its `onnx/` removed before); the "
            f"second loads that file. {record['rounds']} rounds, first and second run side by side in each; median "
            "(min–max).",
            "",
            table(
                [
                    {
                        "run": name,
                        "start-up wall (s)": spread(run["wall_s"], ".1f"),
                        "peak RSS (MiB)": spread(run["peak_rss_mib"], ".0f"),
                    }
                    for name, run in record["runs"].items()
                ]
            ),
            "",
            f'Start-up of the first run / the second (median wall): {ratios}. "imports only" is a process that imports '
            f"what predict imports and nothing else (`{IMPORTS}`): the part of the second run's start-up that no "
            "export cache can remove.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="", help="A sentence on the machine's state, e.g. that it was shared.")
    parser.add_argument("--results", type=Path, default=harness.REPO / "experiments" / "onnx_cache.json")
    parser.add_argument("--markdown", type=Path, default=harness.REPO / "bench" / "SCORING_RESULTS.md")
    args = parser.parse_args(argv)
    record = {
        "command": harness.command_line("experiments.onnx_cache", argv),
        "machine": harness.machine_info(),
        "onnxruntime": onnxruntime.__version__,
        "note": args.note,
        "rounds": args.rounds,
    }
    record["runs"] = runs = measure(args.rounds)
    record["speedup"] = {
        precision: runs[f"{precision} first"]["wall_s"]["median"] / runs[f"{precision} second"]["wall_s"]["median"]
        for precision in PRECISIONS
    }
    write_json(args.results, record)
    write_section(args.markdown, "bench.onnx_cache", render(record))
    log(f"wrote {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
