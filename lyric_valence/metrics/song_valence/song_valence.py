"""Song-level valence metrics: mse, rmse, mae, Pearson r, Spearman rho and R² of predicted against true valence."""

import datasets
import evaluate
import numpy as np
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

_DESCRIPTION = """
Regression metrics for one valence (0 sad/negative .. 1 happy/positive) per song, as lyric-valence reports them:
mean squared error, its root, mean absolute error, Pearson's r, Spearman's rho and the coefficient of determination
R². Pearson and Spearman are NaN when the predictions or the references are constant (undefined correlation).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted valence, one per song.
    references (`list` of `float`): true valence, one per song, in the same order.

Returns:
    mse (`float`): mean squared error.
    rmse (`float`): square root of the mse.
    mae (`float`): mean absolute error.
    pearson (`float`): Pearson correlation coefficient (NaN if either input is constant).
    spearman (`float`): Spearman rank correlation coefficient (NaN if either input is constant).
    r2 (`float`): coefficient of determination (1 - residual sum of squares / total sum of squares).

Examples:
    >>> song_valence = evaluate.load("lyric_valence/metrics/song_valence")
    >>> results = song_valence.compute(predictions=[0.2, 0.5, 0.9], references=[0.1, 0.6, 0.8])
    >>> round(results["mse"], 4), round(results["pearson"], 4)
    (0.01, 0.9477)
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
@article{2020SciPy-NMeth,
  title={{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python},
  author={Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and others},
  journal={Nature Methods},
  volume={17},
  pages={261--272},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SongValence(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64: the scores are compared with numpy's own to the last bit
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/model_evaluation.html#regression-metrics",
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html",
            ],
        )

    def _compute(self, predictions, references):
        predicted = np.asarray(predictions, dtype=np.float64)
        true = np.asarray(references, dtype=np.float64)
        mse = mean_squared_error(true, predicted)
        constant = np.ptp(predicted) == 0 or np.ptp(true) == 0
        return {
            "mse": float(mse),
            "rmse": float(np.sqrt(mse)),
            "mae": float(mean_absolute_error(true, predicted)),
            "pearson": float("nan") if constant else float(stats.pearsonr(predicted, true).statistic),
            "spearman": float("nan") if constant else float(stats.spearmanr(predicted, true).statistic),
            "r2": float(r2_score(true, predicted)),
        }
