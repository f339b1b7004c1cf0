"""
Catalogue scoring on a Ray cluster with Ray Data: files are read in parallel, a pool of actors (one per GPU, or per CPU
slice) each load the model once and score batches, Ray retries the batches of an actor that dies.

    import ray
    from lyric_valence.loading import ScoringOptions
    from lyric_valence.ray_scoring import ValenceScorer

    songs = ray.data.read_parquet("s3://bucket/lyrics/")
    options = ScoringOptions("me/lyric-valence-minilm", dtype="bfloat16")
    scored = songs.map_batches(ValenceScorer, fn_constructor_kwargs={"options": options},
                               concurrency=8, num_gpus=1, batch_size=1024, batch_format="pandas")

    from lyric_valence.ray_scoring import score_catalogue
    score_catalogue("lyrics/*.parquet", "scores/", options, num_workers=8, gpus_per_worker=1)

or `lyric-valence predict --engine ray lyrics/ --output scores/`. `score_catalogue` writes one Parquet file per input
file, named after it, and only once the file is complete (a temporary name renamed into place): a killed driver run
again with `resume=True` skips the finished files and rescores only the unfinished ones, so no row is written twice.

Ray is an optional extra (`pip install "lyric-valence[ray]"`); importing this module does not import it.
"""

import glob
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lyric_valence.errors import UserError
from lyric_valence.loading import DEFAULT_MODEL, ScoringOptions, check_model_folder, model_folder
from lyric_valence.predict_io import blank_rows, check_input, raw_table_blocks, read_error, song_columns

CATALOGUE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
RUN_FILE = "lyric-valence-run.json"
CAPPED = "lyric_valence_capped"  # the column marking capped songs on their way back from the actors
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


def catalogue_files(inputs: list[str]) -> list[Path]:
    """The Parquet, CSV and JSONL files that `inputs` (files, folders, glob patterns) name, in order, each checked."""
    files = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            matches = sorted(child for child in path.iterdir() if child.suffix.lower() in CATALOGUE_FORMATS)
            if not matches:
                raise UserError(f"{name}: a folder without .parquet, .csv or .jsonl files")
        elif glob.has_magic(name):
            matches = sorted(Path(match) for match in glob.glob(name, recursive=True))
            if not matches:
                raise UserError(f"{name}: no file matches")
        else:
            matches = [path]
        for match in matches:
            if match.suffix.lower() not in CATALOGUE_FORMATS:
                raise UserError(f"{match}: unknown format {match.suffix!r}; --engine ray reads .parquet, .csv, .jsonl")
            check_input(match)
            files.append(match)
    if not files:
        raise UserError("--engine ray needs input files, folders or glob patterns (standard input is not read)")
    return files


def output_names(files: list[Path]) -> dict[Path, str]:
    """Each input file's output file name: its own name with a .parquet suffix, unique within the run."""
    owners = {}
    for path in files:
        name = f"{path.stem}.parquet"
        if name in owners:
            raise UserError(f"{path}: its scores would go to the same {name} as {owners[name]}'s; rename one of them")
        owners[name] = path
    return {path: name for name, path in owners.items()}


def check_output_folder(output: Path, inputs: list[str], files: list[Path]) -> None:
    """
    A `UserError` when the output folder is or holds an input file, or lies in an input folder, directly or through
    a link either way: its files would replace the inputs, or join them in a later run.
    """
    folder = output.resolve()
    for path in files:
        if path.resolve().is_relative_to(folder):
            raise UserError(
                f"--output {output} {'is' if path.resolve() == folder else 'holds'} the input {path}: "
                "write the scores to a folder outside the inputs"
            )
    for name in inputs:
        if Path(name).is_dir() and folder.is_relative_to(Path(name).resolve()):
            raise UserError(
                f"--output {output} is inside the input folder {name}: write the scores to a folder outside the inputs"
            )


def check_table(
    path: Path, text_column: str | None, id_column: str | None, keep_columns: list[str]
) -> tuple[str, str | None] | None:
    """
    The file's lyrics and id columns (`song_columns`: the flags', else recognised), from its schema or first row:
    one `UserError` naming the file before Ray starts. None for a file without a row or a schema (an empty JSONL).
    """
    table_format = CATALOGUE_FORMATS[path.suffix.lower()]
    try:
        if table_format == "parquet":
            import pyarrow.parquet as pq

            columns = pq.ParquetFile(path).schema_arrow.names
        else:
            first = next(raw_table_blocks(path, table_format, block_size=1), None)
            if first is None:
                return None
            columns = first.columns
    except Exception as error:
        raise read_error(error, path, str(path), table_format, 0) from None
    return song_columns(str(path), columns, text_column, id_column, keep_columns)


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


def start_run(output: Path, settings: dict, resume: bool) -> None:
    """Create the output folder and record the run's settings; with `resume`, check they are the killed run's."""
    run_file = output / RUN_FILE
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: a file; --engine ray writes a folder of Parquet files")
    if run_file.is_file():
        if not resume:
            raise UserError(
                f"--output {output}: holds an earlier run's scores; pass --resume to continue it, or "
                "choose another folder"
            )
        earlier = json.loads(run_file.read_text(encoding="utf-8"))
        changed = sorted(key for key in settings if settings[key] != earlier.get(key))
        if changed:
            raise UserError(f"--output {output}: --resume with other flags than the earlier run ({', '.join(changed)})")
        return
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output {output}: cannot be created ({error.strerror or error})") from None
    run_file.write_text(json.dumps(settings), encoding="utf-8")


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


def read_files(ray, table_format: str, paths: list[str], columns: list[str]):
    """A Ray dataset of the files' rows (`columns`, all strings in CSV as in predict), each with its file's `path`."""
    import pyarrow as pa
    import pyarrow.csv

    if table_format == "parquet":
        return ray.data.read_parquet(paths, include_paths=True).select_columns([*columns, "path"])
    if table_format == "csv":  # lyrics span lines; ids such as 007 stay strings
        return ray.data.read_csv(
            paths,
            include_paths=True,
            parse_options=pa.csv.ParseOptions(newlines_in_values=True),
            convert_options=pa.csv.ConvertOptions(
                include_columns=columns, column_types={column: pa.string() for column in columns}
            ),
        )
    return ray.data.read_json(paths, lines=True, include_paths=True).select_columns([*columns, "path"])


class FileWriter:
    """
    Writes one input file's scores, a batch at a time, to a hidden temporary file in the output folder, renamed to
    its final name once the file's last row is in: a finished file is complete, and a killed run leaves no partial one.
    """

    def __init__(self, folder: Path, name: str, source: str):
        self.final = folder / name
        self.partial = folder / f".{name}.partial"
        self.source = source
        self.rows_read = 0  # rows of the input file, scored or skipped: the next row's number
        self.writer = None

    def write(self, scores: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(scores, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.partial, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def finish(self, empty: pd.DataFrame) -> None:
        if self.writer is None:  # every song of the file was empty: still a valid, empty file
            self.write(empty)
        self.writer.close()
        os.replace(self.partial, self.final)


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
    Score every song of `inputs` (Parquet, CSV or JSONL files, folders of them, glob patterns) with `num_workers`
    Ray actors, each loading the model with `options` (`ScoringOptions`, or a model name for its default options),
    and write one Parquet file per input file into the folder `output`: columns `source`, `id` (the `id_column`
    value, else the row number in its file), the `keep_columns`, and `score_column`, rows in input order. A file's
    lyrics and ids are in `text_column` and `id_column`, or where None in its recognised columns (as `predict` and
    `train` recognise them). Songs with empty lyrics are skipped and counted; a song of more than the options'
    `max_chunks_per_song` chunks is scored on its first that many, logged and counted. An output folder that is,
    holds or lies in an input is refused. Uses the running Ray (`ray.init` or `RAY_ADDRESS`), else starts a local one.
    With `resume`, a folder left by a killed run is continued: its finished files are kept, the others scored.
    `quiet`: no progress bars. Returns counts: `files`, `files_already_done`, `scored`, `skipped`, `capped`. Raises
    `UserError`.
    """
    ray = import_ray()
    options = as_scoring_options(options)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    keep_columns = list(keep_columns)
    files = catalogue_files([str(name) for name in inputs])
    names = output_names(files)
    output = Path(output)
    check_output_folder(output, [str(name) for name in inputs], files)
    settings = {
        **options.score_settings(),
        "text_column": text_column,
        "id_column": id_column,
        "keep_columns": keep_columns,
        "score_column": score_column,
        "decimals": decimals,
    }
    start_run(output, settings, resume)
    pending = [path for path in files if not (output / names[path]).is_file()]
    counts = {
        "files": len(files),
        "files_already_done": len(files) - len(pending),
        "scored": 0,
        "skipped": 0,
        "capped": 0,
    }
    if not pending:
        return counts
    # Checked here, not once per actor after Ray has started (where a failed actor is retried, noisily).
    check_worker_options(options, gpus_per_worker)
    check_model_folder(model_folder(options.model, options.encoder_path), options.model)
    # One dataset per format and pair of lyrics and id columns: Ray Data reads JSON into pandas blocks and the others
    # into Arrow blocks, and a union of them neither batches nor keeps the files' order.
    layouts = {}
    for path in pending:
        columns = check_table(path, text_column, id_column, keep_columns)
        if columns is None:  # nothing to read or score
            FileWriter(output, names[path], str(path)).finish(no_scores(keep_columns, score_column))
        else:
            layouts.setdefault((CATALOGUE_FORMATS[path.suffix.lower()], *columns), []).append(path)

    start_ray(ray, num_workers, quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    context.execution_options.preserve_order = True  # each file's rows arrive in order: row numbers are its ids
    for (table_format, file_text_column, file_id_column), paths in layouts.items():
        columns = list(dict.fromkeys(column for column in (file_id_column, *keep_columns, file_text_column) if column))
        scorer_options = {
            "options": options,
            "text_column": file_text_column,
            "score_column": score_column,
            "drop_text": True,
            "capped_column": CAPPED,
        }
        # Blocks of at most one batch: a file is read as one block, which would go to a single actor.
        songs = read_files(ray, table_format, [str(path) for path in paths], columns).repartition(
            target_num_rows_per_block=batch_size
        )
        scored = songs.map_batches(
            ValenceScorer,
            fn_constructor_kwargs=scorer_options,
            batch_format="pandas",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=1,
            num_gpus=gpus_per_worker or None,
        )
        try:
            write_scores(scored, paths, output, names, file_id_column, keep_columns, score_column, decimals, counts)
        except ray.exceptions.RayTaskError as error:
            if not isinstance(error.cause, (ValueError, OSError)):  # Arrow's and the model's input errors among them
                raise
            raise UserError(f"--engine ray: {str(error.cause).strip().splitlines()[0]}") from None
        except ray.exceptions.ActorDiedError as error:  # keeps only the text of an actor's failed __init__
            marker = f"{UserError.__module__}.{UserError.__name__}: "
            message = next((line for line in str(error).splitlines() if line.startswith(marker)), None)
            if message is None:
                raise
            raise UserError(message[len(marker) :]) from None
    return counts


def write_scores(
    scored,
    paths: list[Path],
    output: Path,
    names: dict[Path, str],
    id_column: str | None,
    keep_columns: list[str],
    score_column: str,
    decimals: int,
    counts: dict,
) -> None:
    """
    Stream the scored rows into one file per input file, finished as the next file's rows begin; count them, and log
    the capped songs.
    """
    sources = {os.path.abspath(path): path for path in paths}
    empty = no_scores(keep_columns, score_column)
    writer = None
    for batch in scored.iter_batches(batch_size=None, batch_format="pandas"):
        for ray_path, rows in batch.groupby("path", sort=False):
            path = sources[os.path.abspath(ray_path)]
            if writer is None or writer.source != str(path):
                if writer is not None:
                    writer.finish(empty)
                if (output / names[path]).exists():
                    raise RuntimeError(f"{path}: rows arrived after its file was finished")  # preserve_order broken
                writer = FileWriter(output, names[path], str(path))
            frame = scores_frame(rows, path, writer.rows_read, id_column, keep_columns, score_column, decimals)
            writer.rows_read += len(rows)
            blank = frame[score_column].isna().to_numpy()
            counts["skipped"] += int(blank.sum())
            counts["scored"] += int((~blank).sum())
            capped = rows[CAPPED].to_numpy()
            counts["capped"] += int(capped.sum())
            for song_id in frame["id"][capped]:
                logger.warning("song %s of %s: scored on its first chunks only (--max_chunks_per_song)", song_id, path)
            writer.write(frame[~blank])
    if writer is not None:
        writer.finish(empty)
    for path in paths:  # files without rows
        if not (output / names[path]).exists():
            FileWriter(output, names[path], str(path)).finish(empty)


def no_scores(keep_columns: list[str], score_column: str) -> pd.DataFrame:
    """The columns of an output file, without rows: what a file without songs gets."""
    return pd.DataFrame({"source": [], "id": [], **{column: [] for column in keep_columns}, score_column: []})


def scores_frame(
    rows: pd.DataFrame,
    path: Path,
    first_row: int,
    id_column: str | None,
    keep_columns: list[str],
    score_column: str,
    decimals: int,
) -> pd.DataFrame:
    """`source`, `id` (the id column, else the row number in the file), the kept columns and the rounded scores."""
    ids = (
        rows[id_column].astype(str).to_numpy()
        if id_column
        else [str(row) for row in range(first_row, first_row + len(rows))]
    )
    frame = pd.DataFrame({"source": str(path), "id": ids})
    for column in keep_columns:
        frame[column] = rows[column].to_numpy()
    frame[score_column] = rows[score_column].astype(float).round(decimals).to_numpy()
    return frame
