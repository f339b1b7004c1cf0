"""
Closed-form training (`train.py --finetuning_mode ridge`, the songs recipe, and the shipped songs models): the encoder
stays frozen, and one ridge regression fits the songs' labels from two kinds of song features side by side: the
encoder's pooled chunk vectors (standardised) and, when the model has one, the lexical channel's TF-IDF vectors. The
solution is written into the model's own weights, so the fitted model scores, saves and loads like any other:

- the lexical channel's `idf` (smoothed document frequencies of the fitting chunks; 0 for buckets in fewer than
  `min_df` chunks, and for bigram buckets when bigrams are off, so that they count neither in the score nor in the
  L2 norm, as scikit-learn's `TfidfVectorizer(min_df=...)` drops such terms) and `weight` (its ridge coefficients);
- the head, as the linear map of the encoder coefficients (`LyricValenceHead.set_linear`: two hidden units carry it
  exactly, the others are zero).

A song's score is the mean of its chunk scores (`aggregation` mean or length_weighted), and a linear score's mean is
the score of the mean features, so the regression runs on one row per song. The songs are encoded once
(`encode_songs`: pooled vectors and term counts with bigrams); every setting is then sparse algebra on them.

The settings (bigrams on or off, `min_df`, the ridge penalty and the encoder block's weight against the lexical one)
are picked by grouped 5-fold cross-validation on the fitting songs (groups: artists and near-duplicates, so no artist
spans a fold's two sides), then the model is fitted on all of them. The regression is solved in its dual (kernel)
form: a few thousand songs against a million hashed features, so each fold's kernel matrix is small and every
penalty and block weight reuses it; the solution equals scikit-learn's `Ridge(alpha)` with an intercept.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch
from sklearn.model_selection import GroupKFold

from lyric_valence.fitting import record_fit
from modeling_lyric_valence import LyricValenceModel

logger = logging.getLogger(__name__)

RIDGE_ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)
# The encoder block's weight against the lexical block (each of its rows has about unit norm once standardised and
# scaled by 1/sqrt(hidden), as a TF-IDF row has): ridge then penalises the two blocks by this ratio.
ENCODER_SCALES = (0.35, 0.5, 0.7)
# Bigrams carry word order, which full lyrics have and word counts rendered as text do not.
LEXICAL_BIGRAMS = (True, False)
# 2: a bucket seen in a single training chunk is dropped, as TF-IDF + ridge baselines drop such terms; it also keeps a
# shipped model's lexical channel to the buckets that carry weight.
LEXICAL_MIN_DFS = (1, 2)
LINEAR_AGGREGATIONS = ("mean", "length_weighted")
CV_FOLDS = 5


@dataclass
class EncodedSongs:
    """
    What the ridge fit reads of songs, from one pass of the model over them: the (aggregation-weighted) mean pooled
    encoder vector of each song, and the lexical channel's term counts of every chunk (bigrams included), with each
    chunk's song and aggregation weight.
    """

    pooled: np.ndarray
    counts: sp.csr_matrix | None
    song_index: np.ndarray
    chunk_weights: np.ndarray

    @property
    def songs(self) -> int:
        return len(self.pooled)

    def subset(self, songs: np.ndarray) -> "EncodedSongs":
        """These songs (positions, in this order) and their chunks."""
        songs = np.asarray(songs)
        position = np.full(self.songs, -1)
        position[songs] = np.arange(len(songs))
        chunks = np.flatnonzero(position[self.song_index] >= 0)
        counts = self.counts[chunks] if self.counts is not None else None
        return EncodedSongs(self.pooled[songs], counts, position[self.song_index[chunks]], self.chunk_weights[chunks])

    def to_songs(self) -> sp.csr_matrix:
        return song_rows(self.song_index, self.chunk_weights, self.songs)


def song_rows(song_index: np.ndarray, weights: np.ndarray, songs: int) -> sp.csr_matrix:
    """The (songs x chunks) matrix that averages chunk rows into song rows with `weights`."""
    song_index, weights = np.asarray(song_index), np.asarray(weights, dtype=np.float64)
    matrix = sp.csr_matrix((weights, (song_index, np.arange(len(song_index)))), shape=(songs, len(song_index)))
    return (sp.diags(1.0 / np.asarray(matrix.sum(axis=1)).ravel()) @ matrix).tocsr()


@dataclass(frozen=True)
class LexicalSettings:
    """Which of the lexical channel's buckets count: bigrams or unigrams only, and the least chunks a bucket needs."""

    bigrams: bool
    min_df: int


@dataclass
class RidgeSolution:
    """A fitted ridge: the lexical idf and weights (None without a channel), encoder coefficients and intercept."""

    settings: LexicalSettings | None
    alpha: float
    encoder_scale: float
    idf: np.ndarray | None
    lexical_weight: np.ndarray | None
    encoder_coefficients: np.ndarray
    intercept: float
    mean: np.ndarray
    std: np.ndarray

    def predict(self, encoded: EncodedSongs) -> np.ndarray:
        """The song scores of the model this solution is written into."""
        scores = (encoded.pooled - self.mean) / self.std * (self.encoder_scale / np.sqrt(self.mean.size))
        scores = scores @ self.encoder_coefficients + self.intercept
        if self.idf is not None:
            scores = scores + lexical_rows(encoded, self.idf) @ self.lexical_weight
        return scores


@dataclass
class RidgeFit:
    """The chosen settings, their cross-validated song MSE, every setting tried, and the solution on all songs."""

    solution: RidgeSolution
    cv_mse: float
    folds: int
    trials: list[dict] = field(default_factory=list)

    def metrics(self) -> dict:
        metrics = {
            "ridge_alpha": self.solution.alpha,
            "ridge_encoder_scale": self.solution.encoder_scale,
            "ridge_cv_mse": self.cv_mse,
            "ridge_cv_folds": self.folds,
        }
        if self.solution.settings is not None:
            metrics |= {
                "lexical_bigrams": self.solution.settings.bigrams,
                "lexical_min_df": self.solution.settings.min_df,
            }
        return metrics


def encode_songs(
    model: LyricValenceModel, tokenizer, lyrics: list[str], batch_tokens: int | None = None, show_progress: bool = True
) -> EncodedSongs:
    """
    Pooled encoder vectors (averaged per song) and lexical term counts (per chunk, bigrams included) of `lyrics`,
    from the model's own [`~LyricValenceModel.chunk_features`].
    """
    features = model.chunk_features(lyrics, tokenizer, batch_tokens, show_progress)
    chunks = len(features.song_index)
    weights = features.chunk_lengths if model.config.aggregation == "length_weighted" else torch.ones(chunks)
    counts = None
    if features.term_counts is not None:
        chunk, feature, count = (part.numpy() for part in features.term_counts)
        counts = sp.csr_matrix((count.astype(np.float64), (chunk, feature)), shape=(chunks, model.lexical.buckets))
    song_index, weights = features.song_index.numpy(), weights.double().numpy()
    pooled = song_rows(song_index, weights, len(lyrics)) @ features.pooled.numpy()
    return EncodedSongs(pooled, counts, song_index, weights)


def lexical_idf(counts: sp.csr_matrix, settings: LexicalSettings, vocab_size: int) -> np.ndarray:
    """
    `ln((1 + chunks) / (1 + chunks with the bucket)) + 1` of count rows (scikit-learn's `smooth_idf`), 0 for buckets in
    fewer than `min_df` chunks (so always for unseen ones) and, without bigrams, for the bigram buckets.
    """
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1 + counts.shape[0]) / (1 + document_frequency)) + 1
    idf[document_frequency < settings.min_df] = 0.0
    if not settings.bigrams:
        idf[vocab_size:] = 0.0
    return idf


def lexical_rows(encoded: EncodedSongs, idf: np.ndarray) -> sp.csr_matrix:
    """
    Song rows of the channel's sublinear, L2-normalised chunk TF-IDF (`LyricValenceLexicalChannel.tfidf`, on scipy
    matrices: cross-validation needs it for many idf vectors over the same counts).
    """
    values = encoded.counts.copy()
    values.data = 1 + np.log(values.data)
    values = values @ sp.diags(idf)
    norms = np.sqrt(np.asarray(values.multiply(values).sum(axis=1)).ravel())
    return (encoded.to_songs() @ (sp.diags(1 / np.maximum(norms, 1e-12)) @ values)).tocsr()


def standardised(pooled: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Encoder song rows standardised and scaled by 1/sqrt(hidden): about unit norm, as a TF-IDF row."""
    return (pooled - mean) / std / np.sqrt(mean.size)


def pooled_moments(pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = pooled.std(axis=0)
    std[std == 0] = 1.0
    return pooled.mean(axis=0), std


def centred_kernels(kernel: np.ndarray, fit: np.ndarray, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fit x fit and held-out x fit blocks of a kernel matrix, on features centred by the fit rows' mean."""
    fit_block, held_block = kernel[np.ix_(fit, fit)], kernel[np.ix_(held_out, fit)]
    column_mean = fit_block.mean(axis=0)
    total_mean = column_mean.mean()
    fit_block = fit_block - column_mean[None, :] - column_mean[:, None] + total_mean
    held_block = held_block - held_block.mean(axis=1, keepdims=True) - column_mean[None, :] + total_mean
    return fit_block, held_block


def dual_coefficients(centred_kernel: np.ndarray, centred_labels: np.ndarray, alpha: float) -> np.ndarray:
    """`(K + alpha I)^-1 y`: ridge in its dual form; the primal weights are `X_centred^T` of it."""
    system = centred_kernel + alpha * np.eye(len(centred_kernel))
    return scipy.linalg.solve(system, centred_labels, assume_a="pos")


def cv_folds(groups: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    folds = min(CV_FOLDS, len(set(groups)))
    if folds < 2:
        raise ValueError(
            "ridge fitting picks its settings by grouped cross-validation: the songs need 2 groups or more"
        )
    return list(GroupKFold(folds).split(np.zeros(len(groups)), groups=groups))


def cross_validate(
    encoded: EncodedSongs,
    labels: np.ndarray,
    groups: list[str],
    settings_grid: list[LexicalSettings | None],
    vocab_size: int,
    alphas: tuple[float, ...],
    encoder_scales: tuple[float, ...],
) -> list[dict]:
    """Grouped k-fold song MSE of every setting, penalty and encoder scale, each fold's idf from its fitting chunks."""
    folds = cv_folds(groups)
    errors = np.zeros((len(settings_grid), len(encoder_scales), len(alphas)))
    for fit, held_out in folds:
        mean, std = pooled_moments(encoded.pooled[fit])
        encoder = standardised(encoded.pooled, mean, std)
        encoder_kernel = encoder @ encoder.T
        fit_songs = encoded.subset(fit)
        centred_labels = labels[fit] - labels[fit].mean()
        for s, settings in enumerate(settings_grid):
            lexical_kernel = 0.0
            if settings is not None:
                rows = lexical_rows(encoded, lexical_idf(fit_songs.counts, settings, vocab_size))
                lexical_kernel = (rows @ rows.T).toarray()
            for e, scale in enumerate(encoder_scales):
                fit_kernel, held_kernel = centred_kernels(lexical_kernel + scale**2 * encoder_kernel, fit, held_out)
                for a, alpha in enumerate(alphas):
                    predicted = labels[fit].mean() + held_kernel @ dual_coefficients(fit_kernel, centred_labels, alpha)
                    errors[s, e, a] += np.mean((predicted - labels[held_out]) ** 2) / len(folds)
    return [
        {
            "lexical_bigrams": None if settings is None else settings.bigrams,
            "lexical_min_df": None if settings is None else settings.min_df,
            "encoder_scale": scale,
            "alpha": alpha,
            "cv_mse": float(errors[s, e, a]),
            "settings": settings,
        }
        for s, settings in enumerate(settings_grid)
        for e, scale in enumerate(encoder_scales)
        for a, alpha in enumerate(alphas)
    ]


def solve(
    encoded: EncodedSongs,
    labels: np.ndarray,
    settings: LexicalSettings | None,
    alpha: float,
    encoder_scale: float,
    vocab_size: int,
) -> RidgeSolution:
    """The ridge solution on all of `encoded`'s songs with these settings."""
    mean, std = pooled_moments(encoded.pooled)
    encoder = standardised(encoded.pooled, mean, std) * encoder_scale
    kernel = encoder @ encoder.T
    idf = rows = None
    if settings is not None:
        idf = lexical_idf(encoded.counts, settings, vocab_size)
        rows = lexical_rows(encoded, idf)
        kernel = kernel + (rows @ rows.T).toarray()
    everything = np.arange(encoded.songs)
    centred_kernel, _ = centred_kernels(kernel, everything, everything[:0])
    dual = dual_coefficients(centred_kernel, labels - labels.mean(), alpha)
    # The dual coefficients sum to 0 (the centred kernel maps the ones vector to 0), so X^T a is the centred X^T a.
    encoder_coefficients = encoder.T @ dual
    intercept = float(labels.mean())  # the encoder block's mean is 0 over the fitting songs
    lexical_weight = None
    if rows is not None:
        lexical_weight = np.asarray(rows.T @ dual).ravel()
        intercept -= float(np.asarray(rows.mean(axis=0)).ravel() @ lexical_weight)
    return RidgeSolution(
        settings, alpha, encoder_scale, idf, lexical_weight, encoder_coefficients, intercept, mean, std
    )


def write_solution(model: LyricValenceModel, solution: RidgeSolution) -> None:
    """Put the ridge solution into the model: its lexical channel, and its head as a linear map."""
    if solution.settings is not None:
        model.set_lexical_channel(
            torch.from_numpy(solution.idf),
            torch.from_numpy(solution.lexical_weight),
            solution.settings.bigrams,
            solution.settings.min_df,
        )
    slope = torch.from_numpy(
        solution.encoder_coefficients * solution.encoder_scale / (solution.std * np.sqrt(solution.mean.size))
    )
    model.head.set_linear(slope, solution.intercept - float(slope @ torch.from_numpy(solution.mean)))


def check_fittable(model: LyricValenceModel) -> None:
    if model.config.aggregation not in LINEAR_AGGREGATIONS:
        raise ValueError(
            f"ridge fitting needs a linear aggregation of chunk scores ({' or '.join(LINEAR_AGGREGATIONS)}), "
            f"not {model.config.aggregation!r}"
        )
    if model.config.head_hidden_size < 2:
        raise ValueError("ridge fitting writes the linear solution into two hidden units: head_hidden_size >= 2")


def fit_encoded(
    model: LyricValenceModel,
    encoded: EncodedSongs,
    labels: list[float],
    groups: list[str],
    bigrams: tuple[bool, ...] = LEXICAL_BIGRAMS,
    min_dfs: tuple[int, ...] = LEXICAL_MIN_DFS,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
    encoder_scales: tuple[float, ...] = ENCODER_SCALES,
) -> RidgeFit:
    """`fit_ridge` on songs already encoded by `encode_songs` with this model."""
    check_fittable(model)
    labels = np.asarray(labels, dtype=np.float64)
    if model.lexical is None:
        grid = [None]
        encoder_scales = encoder_scales[:1]  # alone, the encoder block's scale only rescales alpha
    else:
        bigrams = bigrams if model.lexical.has_bigram_buckets else (False,)
        grid = [LexicalSettings(bigram, min_df) for bigram in bigrams for min_df in min_dfs]
    vocab_size = model.config.encoder.vocab_size
    trials = cross_validate(encoded, labels, groups, grid, vocab_size, alphas, encoder_scales)
    best = min(trials, key=lambda trial: trial["cv_mse"])
    solution = solve(encoded, labels, best["settings"], best["alpha"], best["encoder_scale"], vocab_size)
    write_solution(model, solution)
    trials = [{key: value for key, value in trial.items() if key != "settings"} for trial in trials]
    fit = RidgeFit(solution, best["cv_mse"], len(cv_folds(groups)), trials)
    record_fit(model.config, "ridge", fit.metrics())
    logger.info("ridge: %s (grouped %d-fold song MSE %.5f)", fit.metrics(), fit.folds, fit.cv_mse)
    return fit


def fit_ridge(
    model: LyricValenceModel,
    tokenizer,
    lyrics: list[str],
    labels: list[float],
    groups: list[str],
    bigrams: tuple[bool, ...] = LEXICAL_BIGRAMS,
    show_progress: bool = True,
) -> RidgeFit:
    """
    Fit the head (and the lexical channel, if any) of `model` in closed form on these songs, its settings (bigrams,
    min_df, ridge penalty, encoder scale) picked by grouped 5-fold cross-validation on them (`groups`: each song's
    split group, e.g. its artist), then solved on all of them (see the module docstring). The encoder is not changed.

    Raises:
        ValueError: the model's aggregation is not linear (median), its head has fewer than 2 hidden units, or the
            songs form fewer than 2 groups.
    """
    check_fittable(model)
    cv_folds(groups)
    encoded = encode_songs(model, tokenizer, lyrics, show_progress=show_progress)
    return fit_encoded(model, encoded, labels, groups, bigrams=bigrams)
