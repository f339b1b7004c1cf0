"""The song_valence evaluate module (offline, equal to scipy/sklearn) and `lyric-valence evaluate FILE`."""

import json
import math
import socket

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from transformers import EvalPrediction

from lyric_valence import evaluation
from lyric_valence.cli import main
from lyric_valence.trainer import make_compute_metrics


def reference_metrics(predicted, true) -> dict[str, float]:
    """What lyric-valence computed before the evaluate module, straight from scipy and scikit-learn."""
    mse = mean_squared_error(true, predicted)
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": mean_absolute_error(true, predicted),
        "pearson": stats.pearsonr(predicted, true).statistic,
        "spearman": stats.spearmanr(predicted, true).statistic,
        "r2": r2_score(true, predicted),
    }


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 1, 300)
    return np.clip(true + rng.normal(0, 0.2, 300), 0, 1), true


def test_module_equals_scipy_and_sklearn(scores):
    predicted, true = scores
    metrics = evaluation.song_metrics(predicted.tolist(), true.tolist())
    expected = reference_metrics(predicted, true)
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(float(value), rel=1e-12, abs=1e-15), name


def test_constant_predictions_have_no_correlation_but_an_mse():
    metrics = evaluation.song_metrics([0.5, 0.5, 0.5], [0.2, 0.8, 0.5])
    assert math.isnan(metrics["pearson"]) and math.isnan(metrics["spearman"])
    assert metrics["mse"] == pytest.approx(0.06) and metrics["r2"] == pytest.approx(0.0)


def test_module_loads_by_path_without_the_network(monkeypatch, scores):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    evaluation.load_song_metric.cache_clear()
    metric = evaluation.load_song_metric()
    assert metric.name == "song_valence"
    predicted, true = scores
    assert metric.compute(predictions=predicted, references=true)["mse"] == pytest.approx(
        mean_squared_error(true, predicted)
    )


def test_compute_metrics_reports_the_module_on_song_scores():
    # two songs: song 0 has chunks 0.2 and 0.6 (mean 0.4), song 1 one chunk 0.9; a third song for correlations
    chunk_scores = np.array([[0.2], [0.6], [0.9], [0.1]])
    label_ids = (np.array([0.3, 0.3, 0.8, 0.2]), np.array([0, 0, 1, 2]), np.arange(4), np.array([10, 10, 10, 10]))
    metrics = make_compute_metrics()(EvalPrediction(chunk_scores, label_ids))
    expected = reference_metrics(np.array([0.4, 0.9, 0.1]), np.array([0.3, 0.8, 0.2]))
    assert {name: metrics[name] for name in expected} == pytest.approx({k: float(v) for k, v in expected.items()})
    assert metrics["songs"] == 3


def test_evaluate_command_scores_a_train_py_predictions_file(tmp_path, scores, capsys):
    predicted, true = scores
    table = pd.DataFrame({"song_id": range(len(true)), "true_valence": true, "predicted_valence": predicted})
    table.loc[5, "predicted_valence"] = None  # a song without a prediction is skipped and counted
    path = tmp_path / "test_predictions.csv"
    table.to_csv(path, index=False)
    output = tmp_path / "metrics.json"
    assert main(["evaluate", str(path), "--output", str(output)]) == 0
    printed = json.loads(capsys.readouterr().out)
    keep = np.arange(len(true)) != 5
    expected = reference_metrics(predicted[keep], true[keep])
    assert {name: printed[name] for name in expected} == pytest.approx({k: float(v) for k, v in expected.items()})
    assert printed["songs"] == len(true) - 1 and printed["skipped"] == 1
    assert json.loads(output.read_text()) == printed


def test_evaluate_command_reads_other_columns_and_formats(tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    pd.DataFrame({"valence": [0.2, 0.5, 0.9], "label": [0.1, 0.6, 0.8]}).to_json(path, orient="records", lines=True)
    assert main(["evaluate", str(path), "--prediction-column", "valence", "--reference_column", "label"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mse"] == pytest.approx(0.01) and printed["songs"] == 3 and printed["skipped"] == 0


@pytest.mark.parametrize(
    ("rows", "args", "message"),
    [
        ({"predicted_valence": [0.1, 0.2]}, [], "no column 'true_valence'"),
        ({"predicted_valence": [0.1, "high"], "true_valence": [0.3, 0.4]}, [], "row 2, column 'predicted_valence'"),
        ({"predicted_valence": [0.1, None], "true_valence": [0.3, 0.4]}, [], "1 rows with both"),
        ({"p": [0.1, 0.2], "t": [0.3, 0.4]}, ["--output", "missing/metrics.json"], "does not exist"),
    ],
)
def test_bad_predictions_files_are_one_line_naming_the_problem(tmp_path, capsys, rows, args, message):
    path = tmp_path / "predictions.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert main(["evaluate", str(path), *[str(tmp_path / a) if "/" in a else a for a in args]]) == 2
    stderr = capsys.readouterr().err
    error = stderr.strip().splitlines()[-1]  # the lines before it are datasets' progress bar reading the file
    assert "Traceback" not in stderr and message in error and error.startswith("lyric-valence evaluate: error:")


def test_a_missing_file_and_an_unknown_flag_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "nope.csv"), "--prediction_colum", "x"])
    assert exit_info.value.code == 2
    assert "did you mean --prediction_column" in capsys.readouterr().err
