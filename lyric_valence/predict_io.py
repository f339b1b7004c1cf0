"""
Songs in and scores out for `lyric-valence predict`, a block of rows at a time, so a catalogue of any length is
scored in flat memory.

Tables are read with pandas' and pyarrow's own chunked readers (`read_csv(chunksize=)`, `read_json(lines=True,
chunksize=)`, `ParquetFile.iter_batches`) rather than `datasets`: `load_dataset` converts the whole file to Arrow
before the first row comes back, and its streaming mode hides the row numbers and byte offsets that errors and
`--resume` need.

Inputs and the output may be URLs (s3://, gs://, az://, hf://datasets/... for input: `lyric_valence.storage`): a
remote glob pattern or folder is expanded on its filesystem, files are streamed from it (Parquet row groups read by
range), and a remote output is written as one stream that appears whole when the run ends.
"""

import codecs
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from lyric_valence import storage
from lyric_valence.data.columns import Columns, recognised_column, resolve_columns
from lyric_valence.data.read import check_utf8
from lyric_valence.errors import UserError

TEXT_SUFFIXES = (".txt", ".lyrics")
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
STDIN_FORMATS = ("text", "csv", "jsonl")
OUTPUT_FORMATS = ("csv", "tsv", "jsonl", "parquet")
STDIN = "<stdin>"
logger = logging.getLogger("lyric_valence")


def blank_rows(texts: pd.Series) -> pd.Series:
    """Rows without lyrics: missing, empty or whitespace-only."""
    return texts.isna() | (texts.astype(str).str.strip() == "")


def text_encoding(head: bytes) -> str:
    """The encoding a file's byte-order mark names: UTF-16 (either byte order), else UTF-8 with or without a BOM."""
    return "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"


def decode(data: bytes, source: str) -> str:
    try:
        return data.decode(text_encoding(data[:2]))
    except UnicodeDecodeError as error:
        raise UserError(f"{source}: not valid {error.encoding.upper()} (byte {error.start})") from None


def read_text_file(path: Path | str) -> str:
    if storage.is_remote(path):
        return decode(storage.read_bytes(path), path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return decode(path.read_bytes(), str(path))
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from None


def song_files(folder: Path) -> list[Path]:
    """The .txt songs of a folder, sorted by name."""
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in TEXT_SUFFIXES and path.is_file())


def folder_songs(folder: Path) -> list[Path]:
    """The .txt songs of a folder, sorted by name; a `UserError` when it has none."""
    songs = song_files(folder)
    if not songs:
        raise UserError(f"{folder}: a folder without .txt files; give song files, a folder of them, or a table")
    return songs


def stdin_looks_like_a_table(text: str, text_column: str | None) -> bool:
    """
    A header line naming the lyrics column (--text_column, else a recognised one), or a JSON object per line: the
    user probably wants --stdin_format.
    """
    first_line = text.lstrip().split("\n", 1)[0].strip()
    fields = {field.strip().strip('"') for separator in (",", "\t") for field in first_line.split(separator)}
    return (text_column or recognised_column("text", fields)) in fields or (
        first_line.startswith("{") and first_line.endswith("}")
    )


def stdin_binary():
    """Standard input as a binary stream that can be peeked at (for its byte-order mark)."""
    binary = sys.stdin.buffer
    return binary if hasattr(binary, "peek") else io.BufferedReader(binary)


@dataclass
class Shard:
    """
    Consecutive input rows whose count is known before any of them is read: the unit `predict` deals to its
    processes. `read()` yields the rows as song blocks of at most `block_size` rows; only the process that scores the
    shard calls it, so a shard of song files or of a Parquet row group is read by that process alone.
    """

    rows: int
    read: Callable[[], Iterator[pd.DataFrame]]


def read_shards(blocks: Iterator[pd.DataFrame]) -> Iterator[Shard]:
    """Blocks of a stream (CSV, JSON lines, standard input) as shards: a stream has no index, every process reads it."""
    for block in blocks:
        yield Shard(len(block), lambda block=block: iter([block]))


def text_block(paths: list[Path], keep_columns: list[str]) -> pd.DataFrame:
    """Song files as one block; `id` is the file name without suffix."""
    return pd.DataFrame(
        {
            "source": [str(path) for path in paths],
            "id": [Path(str(path)).stem for path in paths],
            **{column: None for column in keep_columns},
            "text": [read_text_file(path) for path in paths],
        }
    )


def text_shards(paths: list[Path], keep_columns: list[str], block_size: int) -> Iterator[Shard]:
    """Each .txt file one song, `block_size` files to a shard."""
    for start in range(0, len(paths), block_size):
        batch = paths[start : start + block_size]
        yield Shard(len(batch), lambda batch=batch: iter([text_block(batch, keep_columns)]))


def raw_table_blocks(source, table_format: str, block_size: int) -> Iterator[pd.DataFrame]:
    """
    The rows of a table (`source`: a path, a URL or a binary stream) as frames of at most `block_size` rows.
    """
    if storage.is_remote(source):
        source = storage.open_input(source)
    if table_format == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(source).iter_batches(batch_size=block_size):
            yield batch.to_pandas()
        return
    if table_format == "json":  # a JSON array cannot be read in pieces; catalogues belong in .jsonl
        table = pd.read_json(source, dtype=False)
        for start in range(0, len(table), block_size):
            yield table.iloc[start : start + block_size]
        return
    binary = source if hasattr(source, "read") else open(source, "rb")
    with binary:
        binary = binary if hasattr(binary, "peek") else io.BufferedReader(binary)
        text = io.TextIOWrapper(binary, encoding=text_encoding(binary.peek(2)[:2]), newline="")
        if table_format == "jsonl":
            yield from pd.read_json(text, lines=True, chunksize=block_size, dtype=False)
        else:  # csv, tsv: every cell a string, so ids such as 007 and kept columns travel unchanged
            yield from pd.read_csv(
                text, sep="\t" if table_format == "tsv" else ",", chunksize=block_size, dtype=str, keep_default_na=False
            )


def song_columns(
    name: str, columns, text_column: str | None, id_column: str | None, keep_columns: list[str]
) -> tuple[str, str | None]:
    """
    The lyrics and id columns of a table with `columns`: those the flags name (each must exist), else the recognised
    ones (`lyric_valence.data.columns`, as train reads tables); the table must hold every kept column too.
    """
    resolved, _ = resolve_columns(name, list(columns), Columns(text=text_column, song_id=id_column), needed=("text",))
    check_columns(name, columns, resolved.text, resolved.song_id, keep_columns)
    return resolved.text, resolved.song_id


def check_columns(name: str, columns, text_column: str, id_column: str | None, keep_columns: list[str]) -> None:
    missing = [column for column in (text_column, id_column, *keep_columns) if column and column not in columns]
    if missing:
        flag = "--text_column" if missing[0] == text_column else "--id_column / --keep_columns"
        raise UserError(f"{name}: no column {missing[0]!r}; the columns are {list(columns)} (see {flag})")


def read_error(error: Exception, source, name: str, table_format: str, row: int) -> UserError:
    """A reader's exception as one line naming the file and the rows read before it."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, UnicodeDecodeError):
        if isinstance(source, Path):
            check_utf8(source)  # raises, naming the line
        return UserError(f"{name}: not valid {error.encoding.upper()} after row {row}")
    # pandas' and pyarrow's parser errors: name the file, keep the cause in one line
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"{name}: cannot be read as {table_format} after row {row}: {message}")


def song_frames(
    tables: Iterator[pd.DataFrame],
    source,
    name: str,
    table_format: str,
    first_row: int,
    text_column: str | None,
    id_column: str | None,
    keep_columns: list[str],
) -> Iterator[pd.DataFrame]:
    """
    Blocks of `tables`: `id` (the id column or the 0-based row number), the kept columns and `text`; the lyrics and
    id columns are decided on the first table ([`song_columns`]).
    """
    row = first_row
    try:
        for table in tables:
            if row == first_row:
                text_column, id_column = song_columns(name, table.columns, text_column, id_column, keep_columns)
            check_columns(name, table.columns, text_column, id_column, keep_columns)
            ids = (
                table[id_column].astype(str).to_numpy() if id_column else [str(i) for i in range(row, row + len(table))]
            )
            block = pd.DataFrame({"source": name, "id": ids}, index=table.index)
            for column in keep_columns:
                block[column] = table[column].to_numpy()
            block["text"] = table[text_column].to_numpy()
            row += len(table)
            yield block.reset_index(drop=True)
    except Exception as error:
        raise read_error(error, source, name, table_format, row) from None


def table_blocks(
    source,
    name: str,
    table_format: str,
    text_column: str | None,
    id_column: str | None,
    keep_columns: list[str],
    block_size: int,
) -> Iterator[pd.DataFrame]:
    """Blocks of a table file or stream, read from its start."""
    tables = raw_table_blocks(source, table_format, block_size)
    yield from song_frames(tables, source, name, table_format, 0, text_column, id_column, keep_columns)


def row_group_blocks(
    path: Path,
    group: int,
    first_row: int,
    text_column: str,
    id_column: str | None,
    keep_columns: list[str],
    block_size: int,
) -> Iterator[pd.DataFrame]:
    """One row group of a Parquet file, only the columns used, as blocks."""

    columns = list(dict.fromkeys(column for column in (id_column, *keep_columns, text_column) if column))
    batches = parquet_file(path).iter_batches(batch_size=block_size, row_groups=[group], columns=columns)
    tables = (batch.to_pandas() for batch in batches)
    yield from song_frames(tables, path, str(path), "parquet", first_row, text_column, id_column, keep_columns)


def parquet_shards(
    path: Path, text_column: str | None, id_column: str | None, keep_columns: list[str], block_size: int
) -> Iterator[Shard]:
    """
    A row group of at most `block_size` rows is one shard, read by the process that scores it: row groups are
    Parquet's unit of random access, located from the file's footer. A file with larger row groups is read as a
    stream, by every process (as pandas and pyarrow write it by default: one row group of up to a million rows).
    """
    try:
        parquet = parquet_file(path)
    except Exception as error:
        raise read_error(error, path, str(path), "parquet", 0) from None
    text_column, id_column = song_columns(str(path), parquet.schema_arrow.names, text_column, id_column, keep_columns)
    metadata = parquet.metadata
    sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    if max(sizes, default=0) > block_size:
        blocks = table_blocks(path, str(path), "parquet", text_column, id_column, keep_columns, block_size)
        yield from read_shards(blocks)
        return
    first_row = 0
    for group, rows in enumerate(sizes):
        if rows:
            yield Shard(
                rows,
                partial(row_group_blocks, path, group, first_row, text_column, id_column, keep_columns, block_size),
            )
        first_row += rows


def parquet_file(path: Path | str):
    """A Parquet file to read by row group: a local one by its path, a remote one through its filesystem (by range)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(storage.open_input(path) if storage.is_remote(path) else path)


def table_format_of(path: Path | str) -> str:
    suffix = os.path.splitext(str(path))[1]
    table_format = TABLE_FORMATS.get(suffix.lower())
    if table_format is None:
        known = ", ".join(sorted({*TEXT_SUFFIXES, *TABLE_FORMATS}))
        raise UserError(f"{path}: unknown format {suffix!r}; expected one of {known}, or a folder")
    return table_format


def remote_sources(name: str) -> list[tuple[str, object]]:
    """
    What a URL names, as `song_shards`' sources: a glob pattern's matches (expanded on its filesystem), a folder's
    .txt songs, or one song file or table; each checked to exist.
    """
    if any(character in name for character in "*?["):
        matches = storage.glob(name)
        if not matches:
            raise UserError(f"{name}: no file matches")
    else:
        found = storage.info(name)
        if found is None:
            raise UserError(f"{name}: no such file or folder")
        if found["type"] == "directory":
            songs = [url for url in storage.list_folder(name) if os.path.splitext(url)[1].lower() in TEXT_SUFFIXES]
            if not songs:
                raise UserError(f"{name}: a folder without .txt files; give song files, a folder of them, or a table")
            return [("text", songs)]
        matches = [name]
    return [
        ("text", [match]) if os.path.splitext(match)[1].lower() in TEXT_SUFFIXES else (table_format_of(match), match)
        for match in matches
    ]


def check_remote_output(output: str, what: str, inputs: list[str]) -> None:
    """
    A `UserError` naming `what` when writing the URL `output` would harm an input: it is an input, or lies in (or
    under a glob pattern's folder of) a remote input folder. The Hub is not written to.
    """
    if storage.scheme(output) == "hf":
        raise UserError(f"{what}: the Hub is not written to; write to object storage or a local file, then upload it")
    target = output.rstrip("/")
    remote = [name for name in inputs if storage.is_remote(name)]
    for name in remote:
        if target == name.rstrip("/"):
            raise UserError(f"{what} is the input {name}: writing it would destroy it; choose another file")
    for name in remote:
        magic = min((name.index(character) for character in "*?[" if character in name), default=None)
        folder = (name if magic is None else name[:magic].rsplit("/", 1)[0]).rstrip("/")
        if target.startswith(folder + "/"):
            raise UserError(f"{what} lies in the input {name}: a later run would read it; choose a file outside it")


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file or folder: through symbolic or hard links where both exist, else resolved."""
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def check_not_an_input(path: Path, what: str, inputs: list[str]) -> None:
    """
    A `UserError` naming `what` when writing `path` would harm an input: it is an input file or folder, or a song
    file that an input folder reads (also one not there yet: a resumed or later run would read it), directly or
    through a link either way.
    """
    for name in inputs:
        if name == "-" or storage.is_remote(name):
            continue
        source = Path(name)
        if same_file(path, source):
            raise UserError(f"{what} is the input {name}: writing it would destroy it; choose another file")
        if source.is_dir():
            resolved = path.resolve()
            in_folder = resolved.suffix.lower() in TEXT_SUFFIXES and same_file(resolved.parent, source)
            if in_folder or path.exists() and any(os.path.samefile(path, song) for song in song_files(source)):
                raise UserError(
                    f"{what} is a song file of the input folder {name}: writing it would destroy or add a "
                    "song; choose a file outside it"
                )


def check_input(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        open(path, "rb").close()
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from None


def song_shards(
    inputs: list[str],
    text_column: str | None,
    id_column: str | None,
    keep_columns: list[str],
    stdin_format: str,
    block_size: int,
) -> Iterator[Shard]:
    """
    Every input song, in input order, as shards of rows with columns `source`, `id`, the kept columns and `text`.
    A table's lyrics and id columns are `text_column` and `id_column`, or where None recognised ([`song_columns`]).
    Each file's problems (missing, unknown format, unreadable) are found before any shard is yielded, so a bad last
    argument fails the run before the model is loaded.
    """
    if not inputs or inputs == ["-"]:
        yield from read_shards(stdin_blocks(text_column, id_column, keep_columns, stdin_format, block_size))
        return
    sources = []
    for name in inputs:
        if storage.is_remote(name):
            sources += remote_sources(name)
            continue
        path = Path(name)
        if path.is_dir():
            sources.append(("text", folder_songs(path)))
        elif path.suffix.lower() in TEXT_SUFFIXES:
            sources.append(("text", [path]))
        else:
            table_format = table_format_of(path)
            check_input(path)
            sources.append((table_format, path))
    # Consecutive .txt songs share shards, as one table's rows do.
    pending: list[Path | str] = []
    for kind, source in sources:
        if kind == "text":
            pending += source
            continue
        yield from text_shards(pending, keep_columns, block_size)
        pending = []
        if kind == "parquet":
            yield from parquet_shards(source, text_column, id_column, keep_columns, block_size)
        else:
            blocks = table_blocks(source, str(source), kind, text_column, id_column, keep_columns, block_size)
            yield from read_shards(blocks)
    yield from text_shards(pending, keep_columns, block_size)


def stdin_blocks(
    text_column: str | None, id_column: str | None, keep_columns: list[str], stdin_format: str, block_size: int
) -> Iterator[pd.DataFrame]:
    if stdin_format != "text":
        yield from table_blocks(stdin_binary(), STDIN, stdin_format, text_column, id_column, keep_columns, block_size)
        return
    text = decode(sys.stdin.buffer.read(), STDIN)
    if stdin_looks_like_a_table(text, text_column):
        logger.warning(
            "standard input looks like a table but is scored as one song; for one song per row pass "
            "--stdin_format csv or jsonl"
        )
    yield pd.DataFrame({"source": [STDIN], "id": ["0"], **{column: None for column in keep_columns}, "text": [text]})


class ScoreWriter:
    """
    Appends blocks of scores to a file or standard output as CSV, TSV, JSONL or Parquet (one row group per block).
    `write` returns the file's size after the block, which `--resume` cuts a killed run's output back to.
    """

    def __init__(self, output: str | None, output_format: str | None, decimals: int, score_column: str = "valence"):
        self.output = output
        self.score_column = score_column
        self.format = output_format or self.format_of(output)
        self.decimals = decimals
        self.handle = None
        self.parquet_writer = None
        self.header_written = False
        self.remote = output is not None and storage.is_remote(output)
        if self.remote:
            # A missing bucket or denied credentials fail now, not when the stream closes after the whole run.
            storage.list_folder(output.rsplit("/", 1)[0], missing_ok=True, what="--output ")
        elif output is not None and not Path(output).absolute().parent.is_dir():
            raise UserError(f"--output {output}: the folder {Path(output).absolute().parent} does not exist")

    @staticmethod
    def format_of(output: str | None) -> str:
        if output is None:
            return "csv"
        suffix = Path(output).suffix.lower().lstrip(".")
        if suffix not in OUTPUT_FORMATS:
            raise UserError(
                f"--output {output}: unknown format; end it in .{', .'.join(OUTPUT_FORMATS)} or pass --format"
            )
        return suffix

    def open(self, resume_at: int = 0) -> None:
        """Open the output; `resume_at` > 0 keeps that many bytes of a killed run's output and appends after them."""
        if self.output is None:
            self.handle = sys.stdout.buffer if self.format == "parquet" else sys.stdout
            return
        if self.remote:  # one stream: an object store's upload appears whole when it is closed, or not at all
            self.handle = storage.open_output(self.output)
            return
        try:
            self.handle = open(self.output, "r+b" if resume_at else "wb")
        except OSError as error:
            raise UserError(f"--output {self.output}: cannot be written ({error.strerror or error})") from None
        if resume_at:
            self.handle.truncate(resume_at)
            self.handle.seek(resume_at)
            self.header_written = True

    def write(self, scores: pd.DataFrame) -> int:
        """Append one block: `source`, `id`, kept columns, the scores (rounded). Returns the output's size after it."""
        scores = scores.assign(**{self.score_column: scores[self.score_column].astype(float).round(self.decimals)})
        if self.format == "parquet":
            self.write_parquet(scores)
        else:
            self.write_text(self.render(scores))
        return self.handle.tell() if self.output is not None else 0

    def render(self, scores: pd.DataFrame) -> str:
        if self.format == "jsonl":
            records = scores.astype(object).where(scores.notna(), None).to_dict(orient="records")
            return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        text = scores.to_csv(
            index=False, header=not self.header_written, sep="\t" if self.format == "tsv" else ",", lineterminator="\n"
        )
        self.header_written = True
        return text

    def write_text(self, text: str) -> None:
        if self.output is None:
            self.handle.write(text)
            self.handle.flush()
            return
        self.handle.write(text.encode("utf-8"))
        if self.remote:
            return  # sent as the stream fills; nothing is resumed from a remote output
        self.handle.flush()
        os.fsync(self.handle.fileno())  # on disk before the progress file records the block

    def write_parquet(self, scores: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parquet_writer is None:
            table = pa.Table.from_pandas(scores, preserve_index=False)
            self.parquet_writer = pq.ParquetWriter(self.handle, table.schema)
        else:
            table = pa.Table.from_pandas(scores, schema=self.parquet_writer.schema, preserve_index=False)
        self.parquet_writer.write_table(table)

    def close(self) -> None:
        if self.format == "parquet":
            if self.parquet_writer is None:  # nothing scored: still a valid, empty file
                empty = pd.DataFrame({"source": [], "id": [], self.score_column: []})
                self.write_parquet(empty.astype({self.score_column: float}))
            self.parquet_writer.close()
        if self.remote and self.handle is not None:
            try:
                self.handle.close()
            except Exception as error:
                raise storage.storage_error(error, self.output, "--output ") from None
        elif self.output is not None and self.handle is not None:
            self.handle.close()
        elif self.handle is not None:
            self.handle.flush()
