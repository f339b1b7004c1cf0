"""
Song-level metrics (MSE, Pearson, Spearman, R2) of a predictions file.

    lyric-valence evaluate outputs/lyric-valence/test_predictions.csv
    lyric-valence evaluate scores.csv --prediction_column valence --reference_column label --output metrics.json

The metrics are those of the song_valence evaluate module (`lyric_valence.evaluation.song_metrics`).
"""

import json
import logging
import sys
from pathlib import Path

from lyric_valence.arguments import ArgumentParser
from lyric_valence.errors import UserError
from lyric_valence.evaluation import song_metrics

logger = logging.getLogger("lyric_valence")


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="lyric-valence evaluate",
        description="Song-level metrics (mse, rmse, mae, Pearson, Spearman, R²) of a predictions file, one song a row, "
        "computed by the song_valence evaluate module. Prints them as JSON.",
    )
    parser.add_argument(
        "predictions",
        help="CSV/TSV/JSON/JSONL/Parquet table with a predicted and a true valence column, e.g. the "
        "test_predictions.csv that train.py writes.",
    )
    parser.add_argument(
        "--prediction_column", default="predicted_valence", help="Column of predicted valence (default: %(default)s)."
    )
    parser.add_argument(
        "--reference_column", default="true_valence", help="Column of true valence (default: %(default)s)."
    )
    parser.add_argument("--output", default=None, help="Also write the metrics to this JSON file.")
    return parser


def main(argv: list[str]) -> int:
    """Song-level metrics (MSE, Pearson, Spearman, R2) of a predictions file."""
    import datasets

    from lyric_valence.data import read_table
    from lyric_valence.data.clean import read_labels

    args = parser().parse_args(argv)
    datasets.disable_progress_bars()  # datasets' "Generating train split" bar, for a file read in a blink
    path = Path(args.predictions)
    if args.output is not None and not Path(args.output).absolute().parent.is_dir():
        raise UserError(f"{args.output}: the folder {Path(args.output).parent} does not exist")
    table = read_table(path)
    for column in (args.prediction_column, args.reference_column):
        if column not in table.columns:
            raise UserError(
                f"{path}: no column {column!r}; the columns are {list(table.columns)} "
                "(see --prediction_column and --reference_column)"
            )
    predicted = read_labels(path, table, args.prediction_column, None)
    true = read_labels(path, table, args.reference_column, None)
    complete = predicted.notna() & true.notna()
    if complete.sum() < 2:
        raise UserError(f"{path}: {int(complete.sum())} rows with both a prediction and a true value; 2 are needed")
    metrics = song_metrics(predicted[complete].tolist(), true[complete].tolist())
    metrics.update(songs=int(complete.sum()), skipped=int((~complete).sum()))
    if metrics["skipped"]:
        logger.warning("skipped %d of %d rows without a prediction or true value", metrics["skipped"], len(table))
    text = json.dumps(metrics, indent=2)
    if args.output is not None:
        Path(args.output).write_text(text + "\n")
    print(text, file=sys.stdout)
    return 0
