"""Read a raw table (CSV/TSV, JSON/JSONL, Parquet) into a frame, with one-line errors naming the file."""

from pathlib import Path

import datasets
import pandas as pd

from lyric_valence.errors import UserError

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def check_utf8(path: Path) -> None:
    """Raise a `UserError` naming the first line of a text file that is not valid UTF-8."""
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UserError(
                    f"{path}: line {line_number} is not valid UTF-8 "
                    f"(byte {error.start}: {line[error.start : error.start + 4]!r})"
                ) from None


def read_table(path: Path) -> pd.DataFrame:
    """Load a CSV/TSV (quoted multi-line fields allowed), JSON/JSONL or Parquet file as one frame."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a raw file (a prepared folder is read by `load_splits` as it is)")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UserError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}")
    try:
        open(path, "rb").close()
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None
    if file_format != "parquet":
        check_utf8(path)
    kwargs = {"sep": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        table = datasets.load_dataset(file_format, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # datasets wraps parser errors in its own types; name the file, keep the cause
        cause = error.__cause__ or error
        raise UserError(
            f"{path}: cannot be read as {file_format}: {type(cause).__name__}: {str(cause).strip()}"
        ) from None
    return table.to_pandas()
