"""
Closed-form training (`train.py --finetuning_mode ridge`): the encoder stays frozen, and one ridge regression
(scikit-learn) fits the training songs' labels from two kinds of song features side by side: the encoder's pooled chunk
vectors (standardised) and, when the model has one, the lexical channel's TF-IDF vectors. The solution is written
into the model's own weights, so the fitted model scores, saves and loads like any other:

- the lexical channel's `idf` (document frequencies of the training chunks) and `weight` (its ridge coefficients);
- the head, as the linear map of the encoder coefficients: `relu(u.x + c) - relu(-u.x - c) = u.x + c`, so two of the
  head's hidden units carry it exactly and the others are zero.

A song's score is the mean of its chunk scores (`aggregation` mean or length_weighted), and a linear score's mean is
the score of the mean features, so the regression runs on one row per song. The ridge penalty and the weight of the
encoder block against the lexical one are picked on the validation songs' MSE, as a TF-IDF + ridge baseline picks its
alpha; only training songs set any weight.
"""

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.linear_model import Ridge
from tqdm.auto import tqdm

from modeling_lyric_valence import DEFAULT_BATCH_TOKENS, LyricValenceModel, chunk_batches

logger = logging.getLogger(__name__)

RIDGE_ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)
# The encoder block's weight against the lexical block (each of its rows has about unit norm once standardised and
# scaled by 1/sqrt(hidden), as a TF-IDF row has): ridge then penalises the two blocks by this ratio.
ENCODER_SCALES = (0.35, 0.5, 0.7)
LINEAR_AGGREGATIONS = ("mean", "length_weighted")


@dataclass
class SongFeatures:
    """One row per song: the mean of its chunks' pooled encoder vectors, and of their lexical TF-IDF vectors."""

    pooled: np.ndarray
    lexical: sp.csr_matrix | None


@dataclass
class RidgeFit:
    """The chosen ridge penalty and encoder scale, their validation song MSE, and every setting tried."""

    alpha: float
    encoder_scale: float
    validation_mse: float
    trials: list[dict]

    def metrics(self) -> dict[str, float]:
        return {"ridge_alpha": self.alpha, "ridge_encoder_scale": self.encoder_scale, "ridge_validation_mse": self.validation_mse}


def song_rows(song_index: torch.Tensor, weights: torch.Tensor, songs: int) -> sp.csr_matrix:
    """The (songs x chunks) matrix that averages chunk rows into song rows with `weights`."""
    weights = weights.double().numpy()
    matrix = sp.csr_matrix((weights, (song_index.numpy(), np.arange(len(weights)))), shape=(songs, len(weights)))
    return sp.diags(1.0 / np.asarray(matrix.sum(axis=1)).ravel()) @ matrix


@torch.inference_mode()
def song_features(
    model: LyricValenceModel, tokenizer, lyrics: list[str], batch_tokens: int | None = None, desc: str = "songs"
) -> SongFeatures:
    """Pooled encoder vectors and lexical TF-IDF vectors of every chunk of `lyrics`, averaged per song."""
    batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS.get(model.device.type, DEFAULT_BATCH_TOKENS["cuda"])
    block = chunk_batches(tokenizer, lyrics, model.config, batch_tokens)
    pooled = torch.empty(len(block.song_index), model.config.hidden_size)
    triples = []  # (chunk, feature, value) of the lexical TF-IDF vectors
    for indices, inputs in tqdm(block.batches, desc=f"encoding {desc}", unit="batch"):
        inputs = {name: tensor.to(model.device) for name, tensor in inputs.items()}
        hidden = model.encoder(**inputs).last_hidden_state
        pooled[indices] = model.pool(hidden, inputs["attention_mask"]).float().cpu()
        if model.lexical is not None:
            chunk, feature, value = model.lexical.tfidf(inputs["input_ids"], inputs["attention_mask"])
            triples.append((torch.tensor(indices)[chunk.cpu()], feature.cpu(), value.cpu()))
    weights = block.chunk_lengths if model.config.aggregation == "length_weighted" else torch.ones(len(pooled))
    to_songs = song_rows(block.song_index, weights, len(lyrics))
    lexical = None
    if triples:
        chunk, feature, value = (torch.cat(parts).numpy() for parts in zip(*triples))
        lexical = (to_songs @ sp.csr_matrix((value, (chunk, feature)), shape=(len(pooled), model.lexical.buckets))).tocsr()
    return SongFeatures(to_songs @ pooled.double().numpy(), lexical)


@torch.no_grad()
def fit_idf(model: LyricValenceModel, tokenizer, lyrics: list[str]) -> None:
    """Set the lexical channel's smoothed idf, `ln((1 + chunks) / (1 + chunks with the feature)) + 1`, from `lyrics`."""
    block = chunk_batches(tokenizer, lyrics, model.config, DEFAULT_BATCH_TOKENS["cpu"])
    document_frequency = torch.zeros(model.lexical.buckets, dtype=torch.float64)
    for _, inputs in block.batches:
        _, feature, _ = model.lexical.term_counts(inputs["input_ids"], inputs["attention_mask"])
        document_frequency.index_add_(0, feature, torch.ones(len(feature), dtype=torch.float64))
    chunks = len(block.song_index)
    model.lexical.idf.copy_(((1 + chunks) / (1 + document_frequency)).log() + 1)


def design_matrix(features: SongFeatures, mean: np.ndarray, std: np.ndarray, encoder_scale: float) -> sp.csr_matrix:
    encoder = (features.pooled - mean) / std * (encoder_scale / np.sqrt(mean.size))
    blocks = [features.lexical] if features.lexical is not None else []
    return sp.hstack([*blocks, sp.csr_matrix(encoder)]).tocsr()


def write_solution(model: LyricValenceModel, ridge: Ridge, mean: np.ndarray, std: np.ndarray, encoder_scale: float) -> None:
    """Put the ridge solution into the lexical channel's weights and the head (see the module docstring)."""
    coefficients = torch.from_numpy(np.asarray(ridge.coef_, dtype=np.float64))
    buckets = model.lexical.buckets if model.lexical is not None else 0
    if model.lexical is not None:
        model.lexical.weight.copy_(coefficients[:buckets])
    slope = coefficients[buckets:] * encoder_scale / (torch.from_numpy(std) * np.sqrt(mean.size))
    offset = float(ridge.intercept_) - float(slope @ torch.from_numpy(mean))
    head = model.head
    for layer in (head.dense, head.out_proj):
        layer.weight.zero_()
        layer.bias.zero_()
    head.dense.weight[0], head.dense.bias[0] = slope, offset
    head.dense.weight[1], head.dense.bias[1] = -slope, -offset
    head.out_proj.weight[0, 0], head.out_proj.weight[0, 1] = 1.0, -1.0


def fit_ridge(
    model: LyricValenceModel,
    tokenizer,
    train_lyrics: list[str],
    train_labels: list[float],
    validation_lyrics: list[str],
    validation_labels: list[float],
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
    encoder_scales: tuple[float, ...] = ENCODER_SCALES,
) -> RidgeFit:
    """
    Fit the head (and the lexical channel, if any) of `model` in closed form on the training songs, the ridge penalty
    and encoder scale picked on the validation songs (see the module docstring). The encoder is not changed.

    Raises:
        ValueError: the model's aggregation is not linear (median), or its head has fewer than 2 hidden units.
    """
    if model.config.aggregation not in LINEAR_AGGREGATIONS:
        raise ValueError(
            f"ridge fitting needs a linear aggregation of chunk scores ({' or '.join(LINEAR_AGGREGATIONS)}), "
            f"not {model.config.aggregation!r}"
        )
    if model.config.head_hidden_size < 2:
        raise ValueError("ridge fitting writes the linear solution into two hidden units: head_hidden_size >= 2")
    model.eval()
    if model.lexical is not None:
        fit_idf(model, tokenizer, train_lyrics)
    train = song_features(model, tokenizer, train_lyrics, desc="training songs")
    validation = song_features(model, tokenizer, validation_lyrics, desc="validation songs")
    mean, std = train.pooled.mean(axis=0), train.pooled.std(axis=0)
    std[std == 0] = 1.0
    if model.lexical is None:
        encoder_scales = encoder_scales[:1]  # alone, the encoder block's scale only rescales alpha
    trials, best = [], None
    for scale in encoder_scales:
        x_train, x_validation = (design_matrix(features, mean, std, scale) for features in (train, validation))
        for alpha in alphas:
            ridge = Ridge(alpha=alpha).fit(x_train, train_labels)
            mse = float(np.mean((ridge.predict(x_validation) - np.asarray(validation_labels)) ** 2))
            trials.append({"alpha": alpha, "encoder_scale": scale, "validation_mse": mse})
            if best is None or mse < best[0]:
                best = (mse, alpha, scale, ridge)
    mse, alpha, scale, ridge = best
    logger.info("ridge: alpha %s, encoder scale %s, validation song MSE %.5f", alpha, scale, mse)
    with torch.no_grad():
        write_solution(model, ridge, mean, std, scale)
    return RidgeFit(alpha, scale, mse, trials)
