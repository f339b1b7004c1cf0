"""
Catalogue scoring on a Ray cluster with Ray Data, from and to a local disk, object storage or the Hub: tasks read the
files in blocks of `batch_size` songs, a pool of actors (one per GPU, or per CPU slice) each load the model once, score
blocks and write each block's scores themselves, as one Parquet part file; the driver only lists the inputs and
commits each finished block in the output's manifest. Nothing of the songs or their scores passes through it.

    from lyric_valence.loading import ScoringOptions
    from lyric_valence.ray_scoring import score_catalogue, read_scores

    options = ScoringOptions("me/lyric-valence-minilm", dtype="bfloat16")
    score_catalogue("s3://bucket/lyrics/", "s3://bucket/scores/", options, num_workers=8, gpus_per_worker=1)
    scores = read_scores("s3://bucket/scores/")   # the committed parts, in input order

or `lyric-valence predict --engine ray s3://bucket/lyrics/ --output s3://bucket/scores/`. Paths are local, or URLs of
any fsspec filesystem installed (`lyric_valence.storage`: s3://, gs://, az://, hf://datasets/... for input).

The output folder: part files `{input stem}-{first row:010d}-{8 hex}.parquet`, each holding one block's scored songs,
and the manifest `_lyric_valence_manifest.json` (`MANIFEST`): the run's settings, the inputs (size and version), each
finished block (input, first row, rows, its part, counts) and each input's row count once read to its end. A part
counts only once the manifest names it: object stores have no atomic rename, so a part is written under a name no other
attempt uses and committed by rewriting the manifest, which is one object written whole. A killed actor or node leaves
at most a part that nothing names; its block is scored again by another actor (Ray retries it) and committed once; the
unnamed parts are deleted when the run completes. With `resume=True` a killed driver's run is continued: the blocks the
manifest names are kept, the others scored. `ValenceScorer` scores songs in a Ray Data pipeline of your own.

Ray is an optional extra (`pip install "lyric-valence[ray]"`); importing this module does not import it.
"""

import json
import logging
import os
import pickle
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lyric_valence import storage
from lyric_valence.errors import UserError
from lyric_valence.loading import DEFAULT_MODEL, ScoringOptions, check_model_folder, model_folder
from lyric_valence.predict_io import blank_rows, check_columns, check_input, raw_table_blocks, read_error, song_columns

CATALOGUE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
MANIFEST = "_lyric_valence_manifest.json"  # "_": Parquet dataset readers (pandas, pyarrow, Ray) skip it
MANIFEST_FORMAT = "lyric-valence-scores/1"
EARLIER_RUN_FILE = "lyric-valence-run.json"  # the folder layout before the manifest: one file per input
CAPPED = "lyric_valence_capped"  # the column marking capped songs on their way back from the scorer
PART = re.compile(r"^\.?(?P<stem>.+)-(?P<row>\d{10})-(?P<token>[0-9a-f]{8})\.parquet(?:\.partial)?$")
# The manifest is rewritten at most this often while blocks finish (and always at the end): a killed driver loses at
# most this long of scoring, which the resumed run redoes. Every block rewrites a manifest of all blocks, so a rewrite
# per block would cost the square of their number.
COMMIT_SECONDS = 10.0
logger = logging.getLogger("lyric_valence")


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError('--engine ray needs Ray Data: pip install "lyric-valence[ray]"') from None
    return ray


class ValenceScorer:
    """
    Scores a batch of songs for `ray.data.Dataset.map_batches` (with `batch_format="pandas"`): the model is loaded once
    per actor by `ScoringOptions.load` with `options` (or a model name: `ScoringOptions(model)`), any backend and
    precision it offers. Returns the batch with a `score_column`; songs whose `text_column` (None: the batch's first of
    lyrics, text, seq) is empty or whitespace-only get NaN (the caller skips and counts them). `drop_text` leaves the
    lyrics out of the returned batch, so they do not travel back from the actor. A song of more than the options'
    `max_chunks_per_song` chunks is scored on its first that many; `capped_column` names a boolean column that marks
    such songs (None: none, they are logged).
    """

    def __init__(
        self,
        options: ScoringOptions | str | Path = DEFAULT_MODEL,
        text_column: str | None = None,
        score_column: str = "valence",
        drop_text: bool = False,
        capped_column: str | None = None,
    ):
        import transformers

        transformers.utils.logging.set_verbosity_error()  # each actor would repeat the loading notices
        transformers.utils.logging.disable_progress_bar()
        self.options = as_scoring_options(options)
        self.scorer, self.tokenizer = self.options.load()
        self.text_column = text_column
        self.score_column = score_column
        self.drop_text = drop_text
        self.capped_column = capped_column

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        text_column = self.text_column or song_columns("a batch", batch.columns, None, None, [])[0]
        blank = blank_rows(batch[text_column]).to_numpy()
        scores = np.full(len(batch), np.nan)
        songs = batch[text_column][~blank].astype(str).tolist()
        capped = [] if self.capped_column else None
        if songs:
            scores[~blank] = self.options.score(self.scorer, self.tokenizer, songs, capped_songs=capped)
        batch = batch.assign(**{self.score_column: scores})
        if self.capped_column:
            marks = np.zeros(len(batch), dtype=bool)
            marks[np.flatnonzero(~blank)[capped]] = True
            batch = batch.assign(**{self.capped_column: marks})
        return batch.drop(columns=text_column) if self.drop_text else batch


def as_scoring_options(options: ScoringOptions | str | Path) -> ScoringOptions:
    """`options` themselves, or for a model name (a folder, a Hub id) the default options of that model."""
    return options if isinstance(options, ScoringOptions) else ScoringOptions(str(options))


def suffix_of(name: str) -> str:
    return os.path.splitext(name.rstrip("/"))[1].lower()


def stem_of(name: str) -> str:
    return os.path.splitext(os.path.basename(name.rstrip("/")))[0]


def matching_files(name: str) -> list[str]:
    """The files an input names: itself, a folder's catalogue files, or a glob pattern's matches (local or remote)."""
    has_magic = any(character in name for character in "*?[")
    if storage.is_remote(name):
        if has_magic:
            matches = storage.glob(name)
            if not matches:
                raise UserError(f"{name}: no file matches")
            return matches
        found = storage.info(name)
        if found is None:
            raise UserError(f"{name}: no such file or folder")
        if found["type"] != "directory":
            return [name]
        matches = [url for url in storage.list_folder(name) if suffix_of(url) in CATALOGUE_FORMATS]
    elif Path(name).is_dir():
        matches = sorted(str(child) for child in Path(name).iterdir() if child.suffix.lower() in CATALOGUE_FORMATS)
    elif has_magic:
        import glob

        matches = sorted(glob.glob(name, recursive=True))
        if not matches:
            raise UserError(f"{name}: no file matches")
        return matches
    else:
        return [name]
    if not matches:
        raise UserError(f"{name}: a folder without .parquet, .csv or .jsonl files")
    return matches


def catalogue_files(inputs: list[str]) -> list[str]:
    """
    The Parquet, CSV and JSONL files that `inputs` (files, folders, glob patterns; paths or URLs) name, in order,
    each checked.
    """
    files = []
    for name in inputs:
        for match in matching_files(str(name)):
            if suffix_of(match) not in CATALOGUE_FORMATS:
                suffix = os.path.splitext(match)[1]
                raise UserError(f"{match}: unknown format {suffix!r}; --engine ray reads .parquet, .csv, .jsonl")
            if not storage.is_remote(match):
                check_input(Path(match))
            files.append(match)
    if not files:
        raise UserError("--engine ray needs input files, folders or glob patterns (standard input is not read)")
    return files


def input_versions(files: list[str]) -> list[dict]:
    """Each file's path, size and version (an object's ETag or revision, a local file's modification time): a resumed
    run refuses inputs changed since the killed one. Remote files come from the listing's cache (no request) or one
    metadata request each, in parallel."""

    def version(name: str) -> dict:
        if not storage.is_remote(name):
            status = os.stat(name)
            return {"path": name, "size": status.st_size, "version": str(status.st_mtime_ns)}
        found = storage.info(name)
        if found is None:
            raise UserError(f"{name}: no such file")
        tag = next(
            (found[key] for key in ("ETag", "etag", "blob_id", "md5Hash", "mtime", "LastModified") if key in found), ""
        )
        return {"path": name, "size": found.get("size"), "version": str(tag).strip('"')}

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(version, files))


def output_stems(files: list[str]) -> list[str]:
    """Each input file's stem, which names its parts; unique within the run."""
    owners = {}
    for name in files:
        stem = stem_of(name)
        if stem in owners:
            raise UserError(f"{name}: its scores would be named {stem}-* as {owners[stem]}'s; rename one of them")
        owners[stem] = name
    return [stem_of(name) for name in files]


def canonical(url: str) -> str:
    """A URL with the scheme its filesystem gives and no trailing slash, for comparing prefixes."""
    fs, path = storage.filesystem(url)
    return f"{storage.scheme(url)}://{path.strip('/')}"


def static_prefix(name: str) -> str:
    """A glob pattern's folder before its first wildcard; any other name itself."""
    magic = min((name.index(character) for character in "*?[" if character in name), default=None)
    return name if magic is None else name[:magic].rsplit("/", 1)[0]


def check_output_folder(output: str, inputs: list[str], files: list[str]) -> None:
    """
    A `UserError` when the output folder is or holds an input file, or lies in an input folder (or under a remote
    glob pattern's folder), directly or through a link either way: its files would replace the inputs, or join them
    in a later run.
    """
    if storage.is_remote(output):
        folder = canonical(output)
        for name in files:
            if storage.is_remote(name) and (canonical(name) + "/").startswith(folder + "/"):
                what = "is" if canonical(name) == folder else "holds"
                raise UserError(
                    f"--output {output} {what} the input {name}: write the scores to a folder outside the inputs"
                )
        for name in inputs:
            if storage.is_remote(name) and (folder + "/").startswith(canonical(static_prefix(name)) + "/"):
                raise UserError(
                    f"--output {output} is inside the input folder {name}: write the scores to a folder outside the "
                    "inputs"
                )
        return
    folder = Path(output).resolve()
    for name in files:
        if not storage.is_remote(name) and Path(name).resolve().is_relative_to(folder):
            raise UserError(
                f"--output {output} {'is' if Path(name).resolve() == folder else 'holds'} the input {name}: "
                "write the scores to a folder outside the inputs"
            )
    for name in inputs:
        if not storage.is_remote(name) and Path(name).is_dir() and folder.is_relative_to(Path(name).resolve()):
            raise UserError(
                f"--output {output} is inside the input folder {name}: write the scores to a folder outside the inputs"
            )


def check_table(
    name: str, text_column: str | None, id_column: str | None, keep_columns: list[str]
) -> tuple[str, str | None] | None:
    """
    The file's lyrics and id columns (`song_columns`: the flags', else recognised), from its schema (a Parquet
    footer), header or first record: one `UserError` naming the file before Ray starts. None for a file without a row
    or a schema (an empty JSONL).
    """
    table_format = CATALOGUE_FORMATS[suffix_of(name)]
    remote = storage.is_remote(name)
    try:
        # Small reads for a remote file: the footer or the first line, not the file.
        source = storage.open_input(name, block_size=1 << 16) if remote else Path(name)
        if table_format == "parquet":
            import pyarrow.parquet as pq

            columns = pq.ParquetFile(source).schema_arrow.names
        else:
            first = next(raw_table_blocks(source, table_format, block_size=1), None)
            if first is None:
                return None
            columns = first.columns
    except Exception as error:
        if remote and not isinstance(error, (UserError, UnicodeDecodeError, ValueError)):
            raise storage.storage_error(error, name) from None
        raise read_error(error, Path(name) if not remote else name, name, table_format, 0) from None
    return song_columns(name, columns, text_column, id_column, keep_columns)


def check_tables(files: list[str], text_column, id_column, keep_columns) -> list:
    """`check_table` of each file, remote ones in parallel (a metadata read each)."""
    with ThreadPoolExecutor(max_workers=16 if any(map(storage.is_remote, files)) else 1) as pool:
        return list(pool.map(lambda name: check_table(name, text_column, id_column, keep_columns), files))


def check_worker_options(options: ScoringOptions, gpus_per_worker: float) -> None:
    """The options the actors load the model with, where the driver can check them: for CPU workers."""
    import torch

    from lyric_valence.backends import check_scoring_options

    if gpus_per_worker:
        return  # the GPUs are the workers', not the driver's
    if options.device is not None and options.device.split(":")[0] != "cpu":
        raise UserError(
            f"--device {options.device}: the workers hold no GPU; pass --gpus_per_worker 1 (or leave --device out)"
        )
    check_scoring_options(torch.device("cpu"), options.dtype, options.quantize, options.backend)


class Manifest:
    """
    What an output folder holds and how far its run got: the run's `settings`, its `inputs` (path, size, version and,
    once read to the end, `rows`), every finished block (input, first row, rows, its part file or None when it had
    no song to score, and its counts), and `complete`. Saved whole (`storage.write_bytes`: one object, or a local
    file renamed into place), at most every `COMMIT_SECONDS` while blocks finish.
    """

    def __init__(self, output: str, settings: dict, inputs: list[dict], block_size: int):
        self.output = output
        self.url = storage.join(output, MANIFEST)
        self.settings = settings
        self.inputs = [{**entry, "rows": entry.get("rows")} for entry in inputs]
        self.block_size = block_size
        self.blocks: dict[tuple[int, int], dict] = {}
        self.complete = False
        self.saved_at = 0.0

    @classmethod
    def load(cls, output: str, block_size: int) -> "Manifest":
        url = storage.join(output, MANIFEST)
        try:
            data = json.loads(storage.read_bytes(url).decode("utf-8"))
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            manifest = cls(output, data["settings"], data["inputs"], block_size)
            for block in data["blocks"]:
                manifest.blocks[block["input"], block["first_row"]] = block
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"--output {output}: its {MANIFEST} cannot be read ({storage.first_line(error)})") from None
        manifest.complete = bool(data.get("complete"))
        return manifest

    def save(self) -> None:
        data = {
            "format": MANIFEST_FORMAT,
            "complete": self.complete,
            "settings": self.settings,
            "inputs": self.inputs,
            "blocks": [self.blocks[key] for key in sorted(self.blocks)],
        }
        storage.write_bytes(self.url, json.dumps(data, indent=1).encode("utf-8"))
        self.saved_at = time.monotonic()

    def commit(self, result: dict) -> bool:
        """Record a block a worker finished (or an input's end); False for one already recorded (a retried block
        whose first attempt got through: its part is left to the final clean-up)."""
        index = result["input"]
        if result["end"]:
            self.inputs[index]["rows"] = result["first_row"]
        elif (index, result["first_row"]) in self.blocks:
            return False
        else:
            self.blocks[index, result["first_row"]] = {
                key: result[key] for key in ("input", "first_row", "rows", "part", "scored", "skipped", "capped")
            }
        if time.monotonic() - self.saved_at >= COMMIT_SECONDS:
            self.save()
        return not result["end"]

    def done_rows(self, index: int) -> list[int]:
        return sorted(first_row for input_index, first_row in self.blocks if input_index == index)

    def input_done(self, index: int) -> bool:
        rows = self.inputs[index]["rows"]
        starts = set(self.done_rows(index))
        return rows is not None and all(start in starts for start in range(0, rows, self.block_size))

    def parts(self) -> list[str]:
        return [self.blocks[key]["part"] for key in sorted(self.blocks) if self.blocks[key]["part"]]


def folder_names(output: str) -> list[str]:
    """The names of the files in the output folder; none when it does not exist yet."""
    if storage.is_remote(output):
        return [url.rsplit("/", 1)[-1] for url in storage.list_folder(output, missing_ok=True)]
    folder = Path(output)
    return sorted(child.name for child in folder.iterdir() if child.is_file()) if folder.is_dir() else []


def start_run(output: str, settings: dict, inputs: list[dict], block_size: int, resume: bool) -> Manifest:
    """
    The run's manifest: a new one saved in an empty or new output folder, or with `resume` the killed run's, whose
    flags and inputs must be this run's (its blocks whose parts are gone are dropped, to be scored again).
    """
    if not storage.is_remote(output) and Path(output).exists() and not Path(output).is_dir():
        raise UserError(f"--output {output}: a file; --engine ray writes a folder of Parquet files")
    try:
        names = folder_names(output)
    except UserError as error:  # storage's message names the URL
        raise UserError(f"--output {error}") from None
    if MANIFEST in names:
        if not resume:
            raise UserError(
                f"--output {output}: holds an earlier run's scores; pass --resume to continue it, or choose another "
                "folder"
            )
        manifest = Manifest.load(output, block_size)
        changed = sorted(key for key in settings if settings[key] != manifest.settings.get(key))
        if changed:
            raise UserError(f"--output {output}: --resume with other flags than the earlier run ({', '.join(changed)})")
        if [entry["path"] for entry in inputs] != [entry["path"] for entry in manifest.inputs]:
            raise UserError(f"--output {output}: --resume with other inputs than the earlier run")
        for entry, earlier in zip(inputs, manifest.inputs, strict=True):
            if (entry["size"], entry["version"]) != (earlier["size"], earlier["version"]):
                raise UserError(
                    f"{entry['path']}: changed since the earlier run into --output {output}; score into a new folder"
                )
        present = set(names)
        for key, block in list(manifest.blocks.items()):
            if block["part"] and block["part"] not in present:
                logger.warning("%s: missing from %s; its block is scored again", block["part"], output)
                del manifest.blocks[key]
        return manifest
    if EARLIER_RUN_FILE in names:
        raise UserError(
            f"--output {output}: written by an earlier version of lyric-valence (one file per input); score into a new "
            "folder"
        )
    if names:
        raise UserError(f"--output {output}: not empty and no earlier run's {MANIFEST}; choose a new or empty folder")
    if not storage.is_remote(output):
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"--output {output}: cannot be created ({error.strerror or error})") from None
    manifest = Manifest(output, settings, inputs, block_size)
    try:
        manifest.save()  # before anything is scored: a folder that cannot be written fails here, in one line
    except UserError as error:
        raise UserError(f"--output {error}") from None
    return manifest


def start_ray(ray, num_workers: int, quiet: bool) -> None:
    """
    Connect to the running Ray (`ray.init` done, or `RAY_ADDRESS`), else start a local one, and check that it has a
    CPU for each worker and one more for reading: with fewer, Ray Data would wait forever for a free one.
    """
    # Its log repeats the progress bars (INFO) and the tracebacks of failed tasks (ERROR), which reach the driver as
    # the exception that `score_catalogue` raises (one line for bad input).
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    if os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        ray.init(logging_level=logging.ERROR, log_to_driver=not quiet)
    elif not ray.is_initialized():
        # A local cluster gets that many CPU slots even on a smaller machine: the workers then share its cores.
        ray.init(
            num_cpus=max(os.cpu_count() or 1, num_workers + 1),
            logging_level=logging.ERROR,
            log_to_driver=not quiet,
            include_dashboard=False,
        )
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < num_workers + 1:
        raise UserError(
            f"--num_workers {num_workers}: the Ray cluster has {cpus} CPUs; each worker takes one and "
            "reading the files one more"
        )


def file_frames(name: str, table_format: str, columns: list[str], block_size: int, done: set[int]):
    """
    (first row, frame of the `columns`) of a file, in order, then (row count, None). Parquet row groups whose rows
    all lie in `done` blocks are skipped unread (the only gaps); CSV and JSONL files are read from their start.
    """
    source = storage.open_input(name) if storage.is_remote(name) else Path(name)
    if table_format == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source)
        first = 0
        for group in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            starts = range(first - first % block_size, first + rows, block_size)
            if rows and not all(start in done for start in starts):
                offset = first
                for batch in parquet.iter_batches(batch_size=block_size, row_groups=[group], columns=columns):
                    yield offset, batch.to_pandas()
                    offset += batch.num_rows
            first += rows
        yield first, None
        return
    offset = 0
    for frame in raw_table_blocks(source, table_format, block_size):
        yield offset, frame
        offset += len(frame)
    yield offset, None


def read_blocks(item: dict):
    """
    Ray Data `flat_map` over the input files (`item["spec"]`: JSON of the file and how to read it): one row per block
    of `block_size` rows not yet done (`input`, `first_row`, `rows`, and `songs`: a pickled frame of `id`, the kept
    columns and `text`), then an `end` row whose `first_row` is the file's row count. Runs in a Ray task, which reads
    the file from where it lives; nothing of it reaches the driver.
    """
    spec = json.loads(item["spec"])
    name, table_format, block_size = spec["path"], spec["format"], spec["block_size"]
    text_column, id_column, keep_columns = spec["text_column"], spec["id_column"], spec["keep_columns"]
    columns = list(dict.fromkeys(column for column in (id_column, *keep_columns, text_column) if column))
    done = set(spec["done"])

    def block(start: int, rows: pd.DataFrame) -> dict:
        ids = (
            rows[id_column].astype(str).to_numpy()
            if id_column
            else [str(row) for row in range(start, start + len(rows))]
        )
        songs = pd.DataFrame({"id": ids})
        for column in keep_columns:
            songs[column] = rows[column].to_numpy()
        songs["text"] = rows[text_column].to_numpy()
        payload = pickle.dumps(songs, protocol=pickle.HIGHEST_PROTOCOL)
        return {"input": spec["input"], "first_row": start, "rows": len(rows), "end": False, "songs": payload}

    row, current, pieces = 0, None, []
    try:
        for first_row, frame in file_frames(name, table_format, columns, block_size, done):
            if frame is None:
                row = first_row
                break
            check_columns(name, frame.columns, text_column, id_column, keep_columns)
            row, position = first_row, 0
            while position < len(frame):
                start = row - row % block_size
                take = min(len(frame) - position, start + block_size - row)
                if start not in done:
                    if current != start:
                        if pieces:  # a block is only ever cut by skipped rows of done blocks
                            raise RuntimeError(f"{name}: the block at row {current} was interrupted")
                        current = start
                    pieces.append(frame.iloc[position : position + take])
                    if row + take == start + block_size:
                        yield block(start, pd.concat(pieces, ignore_index=True))
                        current, pieces = None, []
                row += take
                position += take
        if pieces:
            yield block(current, pd.concat(pieces, ignore_index=True))
    except RuntimeError:  # this module's own bug, not the file's
        raise
    except Exception as error:
        if storage.is_remote(name) and not isinstance(error, (UserError, UnicodeDecodeError, ValueError)):
            raise storage.storage_error(error, name) from None
        raise read_error(error, name if storage.is_remote(name) else Path(name), name, table_format, row) from None
    yield {"input": spec["input"], "first_row": row, "rows": 0, "end": True, "songs": b""}


RESULT_COLUMNS = ("input", "first_row", "rows", "end", "part", "scored", "skipped", "capped", "capped_ids")


class BlockScorer:
    """
    The scoring actor of `score_catalogue`: scores each block it is given with a `scorer_class` (`ValenceScorer`)
    built from `scorer_kwargs`, and writes the block's scored songs into the output folder as one Parquet part under
    a name no other attempt uses. Returns per block what the manifest records, and the ids of capped songs.
    """

    def __init__(
        self,
        scorer_class,
        scorer_kwargs: dict,
        output: str,
        sources: list[str],
        stems: list[str],
        keep_columns: list[str],
        score_column: str,
        decimals: int,
    ):
        self.scorer = scorer_class(**scorer_kwargs)
        self.output, self.sources, self.stems = output, sources, stems
        self.keep_columns, self.score_column, self.decimals = keep_columns, score_column, decimals

    def __call__(self, batch: dict) -> dict:
        results = [
            self.score_block(int(index), int(first_row), int(rows), bool(end), songs)
            for index, first_row, rows, end, songs in zip(
                batch["input"], batch["first_row"], batch["rows"], batch["end"], batch["songs"], strict=True
            )
        ]
        return {column: [result[column] for result in results] for column in RESULT_COLUMNS}

    def score_block(self, index: int, first_row: int, rows: int, end: bool, payload: bytes) -> dict:
        result = dict(input=index, first_row=first_row, rows=rows, end=end, part="", scored=0, skipped=0, capped=0)
        result["capped_ids"] = "[]"
        if end or not rows:
            return result
        scored = self.scorer(pickle.loads(payload))
        frame = pd.DataFrame({"source": self.sources[index], "id": scored["id"].to_numpy()})
        for column in self.keep_columns:
            frame[column] = scored[column].to_numpy()
        frame[self.score_column] = scored[self.score_column].astype(float).round(self.decimals).to_numpy()
        blank = frame[self.score_column].isna().to_numpy()
        capped = scored[CAPPED].to_numpy()
        frame = frame[~blank]
        if len(frame):
            result["part"] = f"{self.stems[index]}-{first_row:010d}-{uuid.uuid4().hex[:8]}.parquet"
            write_part(storage.join(self.output, result["part"]), frame)
        result.update(scored=len(frame), skipped=int(blank.sum()), capped=int(capped.sum()))
        result["capped_ids"] = json.dumps([str(song) for song in scored["id"][capped]])
        return result


def write_part(url: str, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    storage.write_bytes(url, sink.getvalue().to_pybytes())


def score_catalogue(
    inputs: str | list[str],
    output: str | Path,
    options: ScoringOptions | str | Path = DEFAULT_MODEL,
    *,
    num_workers: int = 1,
    gpus_per_worker: float = 0,
    batch_size: int = 1024,
    text_column: str | None = None,
    id_column: str | None = None,
    keep_columns: list[str] = (),
    score_column: str = "valence",
    decimals: int = 6,
    resume: bool = False,
    quiet: bool = False,
) -> dict:
    """
    Score every song of `inputs` (Parquet, CSV or JSONL files, folders of them, glob patterns: local paths or URLs
    such as s3://bucket/lyrics/ or hf://datasets/me/lyrics/data/*.parquet) with `num_workers` Ray actors, each
    loading the model with `options` (`ScoringOptions`, or a model name for its default options), and write the scores
    into the folder `output` (a local folder every node shares, or a URL): one Parquet part per block of `batch_size`
    rows, written by the actor that scored it, with columns `source`, `id` (the `id_column` value, else the row number
    in its file), the `keep_columns`, and `score_column`; and the manifest (`MANIFEST`) that commits them. A file's
    lyrics and ids are in `text_column` and `id_column`, or where None in its recognised columns (as `predict` and
    `train` recognise them). Songs with empty lyrics are skipped and counted; a song of more than the options'
    `max_chunks_per_song` chunks is scored on its first that many, logged and counted. An output folder that is,
    holds or lies in an input is refused, and so is one holding other files. Uses the running Ray (`ray.init` or
    `RAY_ADDRESS`), else starts a local one. With `resume`, a folder left by a killed run is continued: the blocks
    its manifest names are kept, the others scored. `quiet`: no progress bars. Returns counts: `files`,
    `files_already_done`, `blocks`, `blocks_already_done`, `scored`, `skipped`, `capped` (this run's). `read_scores`
    reads the output back. Raises `UserError`.
    """
    ray = import_ray()
    options = as_scoring_options(options)
    inputs = [str(name) for name in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    keep_columns = list(keep_columns)
    output = str(output)
    if storage.scheme(output) == "hf":
        raise UserError(
            f"--output {output}: scores are not written to the Hub (a commit per block would meet its commit rate "
            "limits); write them to object storage or a local folder, then upload the folder (hf upload)"
        )
    files = catalogue_files(inputs)
    stems = output_stems(files)
    check_output_folder(output, inputs, files)
    settings = {
        **options.score_settings(),
        "text_column": text_column,
        "id_column": id_column,
        "keep_columns": keep_columns,
        "score_column": score_column,
        "decimals": decimals,
        "block_size": batch_size,
    }
    manifest = start_run(output, settings, input_versions(files), batch_size, resume)
    pending = [index for index in range(len(files)) if not manifest.input_done(index)]
    counts = {
        "files": len(files),
        "files_already_done": len(files) - len(pending),
        "blocks": 0,
        "blocks_already_done": len(manifest.blocks),
        "scored": 0,
        "skipped": 0,
        "capped": 0,
    }
    if pending:
        # Checked here, not once per actor after Ray has started (where a failed actor is retried, noisily).
        check_worker_options(options, gpus_per_worker)
        check_model_folder(model_folder(options.model, options.encoder_path), options.model)
        columns = check_tables([files[index] for index in pending], text_column, id_column, keep_columns)
        items = []
        for index, found in zip(pending, columns, strict=True):
            if found is None:  # nothing to read or score
                manifest.commit({"input": index, "first_row": 0, "end": True})
                continue
            spec = {
                "input": index,
                "path": files[index],
                "format": CATALOGUE_FORMATS[suffix_of(files[index])],
                "text_column": found[0],
                "id_column": found[1],
                "keep_columns": keep_columns,
                "block_size": batch_size,
                "done": manifest.done_rows(index),
            }
            items.append({"spec": json.dumps(spec)})
        if items:
            start_ray(ray, num_workers, quiet)
            score_blocks(
                ray,
                items,
                manifest,
                files,
                stems,
                options,
                num_workers,
                gpus_per_worker,
                score_column,
                decimals,
                counts,
                quiet,
            )
    finish_run(manifest, files)
    return counts


def score_blocks(
    ray, items, manifest, files, stems, options, num_workers, gpus_per_worker, score_column, decimals, counts, quiet
) -> None:
    """
    The pipeline: read tasks (`read_blocks`, one per file) -> one block a Ray Data row -> `BlockScorer` actors, which
    write the parts; the driver commits each block the actors return in the manifest, counts it and logs its capped
    songs.
    """
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    scorer_kwargs = {
        "options": options,
        "text_column": "text",
        "score_column": score_column,
        "drop_text": True,
        "capped_column": CAPPED,
    }
    actor_kwargs = {
        "scorer_class": ValenceScorer,  # looked up now: a subclass put in its place (tests, bench) reaches the actors
        "scorer_kwargs": scorer_kwargs,
        "output": manifest.output,
        "sources": files,
        "stems": stems,
        "keep_columns": manifest.settings["keep_columns"],
        "score_column": score_column,
        "decimals": decimals,
    }
    # One block a row, and one row a Ray block: a block is never split between two actors or two parts.
    blocks = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(read_blocks)
    blocks = blocks.repartition(target_num_rows_per_block=1)
    scored = blocks.map_batches(
        BlockScorer,
        fn_constructor_kwargs=actor_kwargs,
        batch_format="numpy",
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=1,
        num_gpus=gpus_per_worker or None,
    )
    try:
        for result in scored.iter_rows():
            result = {column: result[column] for column in RESULT_COLUMNS}
            result["input"], result["first_row"] = int(result["input"]), int(result["first_row"])
            result["end"] = bool(result["end"])
            result["part"] = result["part"] or None
            if not manifest.commit(result):
                continue
            counts["blocks"] += 1
            for key in ("scored", "skipped", "capped"):
                counts[key] += int(result[key])
            for song in json.loads(result["capped_ids"]):
                logger.warning(
                    "song %s of %s: scored on its first chunks only (--max_chunks_per_song)",
                    song,
                    files[result["input"]],
                )
    except ray.exceptions.RayTaskError as error:
        if not isinstance(error.cause, (ValueError, OSError)):  # Arrow's and the model's input errors among them
            raise
        raise UserError(f"--engine ray: {storage.first_line(error.cause)}") from None
    except ray.exceptions.ActorDiedError as error:  # keeps only the text of an actor's failed __init__
        marker = f"{UserError.__module__}.{UserError.__name__}: "
        message = next((line for line in str(error).splitlines() if line.startswith(marker)), None)
        if message is None:
            raise
        raise UserError(message[len(marker) :]) from None
    finally:
        manifest.save()  # what finished is kept for --resume, also when the run fails


def finish_run(manifest: Manifest, files: list[str]) -> None:
    """
    Mark the output complete once every input's blocks are committed, and delete the parts that no block names
    (attempts of killed actors or of a killed driver's run). A committed part that this machine cannot see means
    the workers wrote to their own disks: the output must be storage every node shares.
    """
    unfinished = [files[index] for index in range(len(files)) if not manifest.input_done(index)]
    if unfinished:  # every block was returned by the pipeline, so this is a bug
        raise RuntimeError(f"--engine ray: the run ended with blocks of {unfinished[0]} unscored")
    names = set(folder_names(manifest.output))
    missing = [part for part in manifest.parts() if part not in names]
    if missing:
        raise UserError(
            f"--output {manifest.output}: {len(missing)} parts the workers wrote are not there as this machine sees "
            "it; on a cluster of several machines write to object storage or a folder every node mounts"
        )
    manifest.complete = True
    manifest.save()
    stems = {stem_of(name) for name in files}
    committed = set(manifest.parts())
    for name in sorted(names - committed):
        match = PART.match(name)
        if match and match["stem"] in stems:
            storage.delete(storage.join(manifest.output, name))


def read_scores(output: str | Path) -> pd.DataFrame:
    """
    The scores of a complete `score_catalogue` output (a folder or URL): its committed parts in input order, rows in
    each file's order. A `UserError` for an incomplete run (resume it first).
    """
    import pyarrow.parquet as pq

    output = str(output)
    manifest = Manifest.load(output, 1)
    if not manifest.complete:
        raise UserError(f"{output}: an incomplete run; finish it with --resume before reading its scores")
    frames = [pq.read_table(storage.open_input(storage.join(output, part))).to_pandas() for part in manifest.parts()]
    if frames:
        return pd.concat(frames, ignore_index=True)
    settings = manifest.settings
    return pd.DataFrame(
        {"source": [], "id": [], **{column: [] for column in settings["keep_columns"]}, settings["score_column"]: []}
    )
