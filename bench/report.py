"""The numbers and markdown of results files: spreads of repeated runs, rates, tables, JSON, marked sections."""

import json
import statistics
from pathlib import Path

import pandas as pd


def summary(values: list[float]) -> dict:
    """min/median/max of repeated measurements, with the runs themselves."""
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1], "runs": list(values)}


def rates(seconds: list[float], **amounts: float) -> dict:
    """The rounds' seconds and, per amount done in each round, its rate (key `NAME_per_s`), as `summary`s."""
    per_s = {f"{name}_per_s": summary([amount / s for s in seconds]) for name, amount in amounts.items()}
    return {"seconds": summary(seconds), **per_s}


def spread(stats: dict, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    """'median (min–max)' of a `summary`."""
    low, mid, high = (stats[key] * scale for key in ("min", "median", "max"))
    return f"{mid:{spec}}{suffix} ({low:{spec}}–{high:{spec}})"


def percent(stats: dict, scale: float = 1.0) -> str:
    """'median% (min–max)' of a `summary` of shares (times `scale`)."""
    return spread(stats, ".1f", 100 * scale, "%")


def table(rows: list[dict]) -> str:
    """A markdown table of `rows` (one dict per row, keys as columns)."""
    return pd.DataFrame(rows).fillna("").to_markdown(index=False, disable_numparse=True)


def paragraphs(*parts: str) -> str:
    """Markdown of `parts` (headings, paragraphs, tables; empty ones left out), a blank line between two."""
    return "\n\n".join(part for part in parts if part)


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
