"""What every benchmark shares: the machine description, spreads of repeated runs, markdown tables and sections."""

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import transformers

REPO = Path(__file__).resolve().parent.parent
# The CPU features that decide the speed of float32, bfloat16 and int8 matrix products.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def machine_info(device: torch.device) -> dict:
    """Where and with what a benchmark ran."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor()
    )
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
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
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    load = f", 1-minute load {machine['load_average']:.1f} at the start" if "load_average" in machine else ""
    flags = f" ({', '.join(machine['cpu_flags'])})" if machine.get("cpu_flags") else ""
    return (
        f"{machine['cpu']}{flags}, {machine['cpu_cores']} cores ({machine['torch_threads']} torch threads){gpu}{load}; "
        f"Python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}; "
        f"{machine['date']}."
    )


def pick_device(name: str | None) -> torch.device:
    """The device asked for, else cuda when there is one; quiets transformers' logs and progress bars."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command that ran `module` with `argv` (default: this process's arguments)."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def timed_process(command: list[str], env: dict | None = None) -> dict:
    """Run `command` in its own process: wall seconds, peak RSS (`os.wait4`'s ru_maxrss), its stderr."""
    with tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        stderr.seek(0)
        errors = stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"{shlex.join(command)} failed (exit {os.waitstatus_to_exitcode(status)}):\n{errors[-3000:]}"
        )
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "stderr": errors}


def start_train_py(flags: list[str], output_dir: Path) -> subprocess.Popen:
    """train.py with `flags`, writing to `output_dir`; its output goes to `output_dir`.log (a file, not a pipe: parallel
    runs never block on it)."""
    command = [
        sys.executable,
        "train.py",
        *flags,
        "--output_dir",
        str(output_dir),
        "--disable_tqdm",
        "True",
        "--report_to",
        "none",
    ]
    Path(output_dir).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{output_dir}.log", "w") as log_file:
        return subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)


def train_py_results(process: subprocess.Popen, output_dir: Path) -> dict:
    """Wait for a `start_train_py` run; its all_results.json (an error with the log's tail if it failed)."""
    if process.wait() != 0:
        log_tail = Path(f"{output_dir}.log").read_text()[-3000:]
        raise RuntimeError(f"train.py {shlex.join(process.args[2:])} failed (exit {process.returncode}):\n{log_tail}")
    return json.loads((output_dir / "all_results.json").read_text())


def logger(name: str):
    def log(message: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log


def summary(values: list[float]) -> dict:
    """min/median/max of repeated measurements, with the runs themselves."""
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1], "runs": list(values)}


def rates(seconds: list[float], **amounts: float) -> dict:
    """The rounds' seconds and, per amount done in each round, its rate (key `NAME_per_s`), as `summary`s."""
    return {
        "seconds": summary(seconds),
        **{f"{name}_per_s": summary([amount / s for s in seconds]) for name, amount in amounts.items()},
    }


def spread(stats: dict, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    """'median (min–max)' of a `summary`."""
    low, mid, high = (stats[key] * scale for key in ("min", "median", "max"))
    return f"{mid:{spec}}{suffix} ({low:{spec}}–{high:{spec}})"


def table(rows: list[dict]) -> str:
    """A markdown table of `rows` (one dict per row, keys as columns)."""
    return pd.DataFrame(rows).fillna("").to_markdown(index=False, disable_numparse=True)


def write_json(path: Path, record) -> None:
    """`record` as indented JSON in `path`, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the text between `name`'s start and end markers in `path` (appended when missing); the rest stays."""
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    content = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in content:
        content = content[: content.index(start)] + start + "\n" + text + "\n" + content[content.index(end) :]
    else:
        content = content.rstrip("\n") + f"\n\n{start}\n{text}\n{end}\n"
    path.write_text(content, encoding="utf-8")
