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

Whether the lexical channel counts token bigrams can be picked first (`choose_lexical_bigrams`): by grouped
cross-validation of the channel alone on the training songs. Bigrams carry word order, which full lyrics have and word
counts rendered as text do not; a validation split of a few hundred songs is too small to tell the two apart
(experiments/LYRICS_FEATURES.md), five folds of the training songs are not, and without the encoder they cost seconds.
"""

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from tqdm.auto import tqdm

from modeling_lyric_valence import DEFAULT_BATCH_TOKENS, LyricValenceModel, chunk_batches

logger = logging.getLogger(__name__)

RIDGE_ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)
# The encoder block's weight against the lexical block (each of its rows has about unit norm once standardised and
# scaled by 1/sqrt(hidden), as a TF-IDF row has): ridge then penalises the two blocks by this ratio.
ENCODER_SCALES = (0.35, 0.5, 0.7)
LINEAR_AGGREGATIONS = ("mean", "length_weighted")
BIGRAM_CHOICE_FOLDS = 5


@dataclass
class SongFeatures:
    """One row per song: the mean of its chunks' pooled encoder vectors, and of their lexical TF-IDF vectors."""

    pooled: np.ndarray
    lexical: sp.csr_matrix | None


@dataclass
class ChunkCounts:
    """The lexical channel's term counts of every chunk (chunks x buckets), each chunk's song, and chunks -> songs."""

    counts: sp.csr_matrix
    song_index: np.ndarray
    to_songs: sp.csr_matrix


@dataclass
class BigramChoice:
    """Whether the lexical channel counts bigrams, and the grouped cross-validated song MSE with and without them."""

    bigrams: bool
    cv_mse_bigrams: float
    cv_mse_unigrams: float

    def metrics(self) -> dict[str, float]:
        return {
            "lexical_bigrams": self.bigrams,
            "lexical_cv_mse_bigrams": self.cv_mse_bigrams,
            "lexical_cv_mse_unigrams": self.cv_mse_unigrams,
        }


@dataclass
class RidgeFit:
    """The chosen ridge penalty and encoder scale, their validation song MSE, every setting tried, and the bigram
    choice if one was made."""

    alpha: float
    encoder_scale: float
    validation_mse: float
    trials: list[dict]
    bigram_choice: BigramChoice | None = None

    def metrics(self) -> dict[str, float]:
        metrics = {"ridge_alpha": self.alpha, "ridge_encoder_scale": self.encoder_scale, "ridge_validation_mse": self.validation_mse}
        return metrics | (self.bigram_choice.metrics() if self.bigram_choice else {})


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


def chunk_term_counts(model: LyricValenceModel, tokenizer, lyrics: list[str]) -> ChunkCounts:
    """The lexical channel's term counts of every chunk of `lyrics`."""
    block = chunk_batches(tokenizer, lyrics, model.config, DEFAULT_BATCH_TOKENS["cpu"])
    triples = []  # (chunk, feature, count)
    for indices, inputs in block.batches:
        chunk, feature, count = model.lexical.term_counts(inputs["input_ids"], inputs["attention_mask"])
        triples.append((torch.tensor(indices)[chunk], feature, count))
    chunk, feature, count = (torch.cat(parts).numpy() for parts in zip(*triples))
    chunks = len(block.song_index)
    counts = sp.csr_matrix((count.astype(np.float64), (chunk, feature)), shape=(chunks, model.lexical.buckets))
    weights = block.chunk_lengths if model.config.aggregation == "length_weighted" else torch.ones(chunks)
    return ChunkCounts(counts, block.song_index.numpy(), song_rows(block.song_index, weights, len(lyrics)))


def smoothed_idf(counts: sp.csr_matrix) -> np.ndarray:
    """`ln((1 + chunks) / (1 + chunks with the feature)) + 1` of count rows (scikit-learn's `smooth_idf`)."""
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.log((1 + counts.shape[0]) / (1 + document_frequency)) + 1


def tfidf_rows(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """The channel's sublinear, L2-normalised TF-IDF of count rows (`LyricValenceLexicalChannel.tfidf`, on scipy
    matrices: cross-validation needs it for many idf vectors over the same counts)."""
    values = counts.copy()
    values.data = 1 + np.log(values.data)
    values = values @ sp.diags(idf)
    norms = np.sqrt(np.asarray(values.multiply(values).sum(axis=1)).ravel())
    return (sp.diags(1 / np.maximum(norms, 1e-12)) @ values).tocsr()


@torch.no_grad()
def fit_idf(model: LyricValenceModel, tokenizer, lyrics: list[str]) -> None:
    """Set the lexical channel's idf (`smoothed_idf`) from the chunks of `lyrics`."""
    model.lexical.idf.copy_(torch.from_numpy(smoothed_idf(chunk_term_counts(model, tokenizer, lyrics).counts)))


def lexical_cv_mse(chunks: ChunkCounts, labels: np.ndarray, folds: list, alphas: tuple[float, ...]) -> float:
    """The lowest over `alphas` of TF-IDF + ridge's song MSE over `folds` (idf from each fold's training chunks)."""
    errors = np.zeros(len(alphas))
    for fit_songs, held_out in folds:
        idf = smoothed_idf(chunks.counts[np.isin(chunks.song_index, fit_songs)])
        x = (chunks.to_songs @ tfidf_rows(chunks.counts, idf)).tocsr()
        for i, alpha in enumerate(alphas):
            predicted = Ridge(alpha=alpha).fit(x[fit_songs], labels[fit_songs]).predict(x[held_out])
            errors[i] += np.mean((predicted - labels[held_out]) ** 2) / len(folds)
    return float(errors.min())


def choose_lexical_bigrams(
    model: LyricValenceModel,
    tokenizer,
    lyrics: list[str],
    labels: list[float],
    groups: list[str],
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
) -> BigramChoice | None:
    """
    Switch the lexical channel's bigrams on or off (`config.lexical_bigrams`), whichever gives the channel alone the
    lower song MSE in grouped 5-fold cross-validation on the training songs (`groups`: their split groups, so that no
    artist spans a fold's two sides). None, and the model left as it is, if the songs form fewer than 2 groups.
    """
    folds = min(BIGRAM_CHOICE_FOLDS, len(set(groups)))
    if folds < 2:
        logger.warning("lexical bigrams: kept %s, cross-validation needs songs of 2 groups or more", model.lexical.bigrams)
        return None
    labels = np.asarray(labels, dtype=np.float64)
    fold_songs = list(GroupKFold(folds).split(labels, groups=groups))
    model.config.lexical_bigrams = model.lexical.bigrams = True
    chunks = chunk_term_counts(model, tokenizer, lyrics)
    # Unigram features are the vocabulary ids, the first columns with or without bigrams.
    unigrams = ChunkCounts(chunks.counts[:, : model.lexical.vocab_size], chunks.song_index, chunks.to_songs)
    with_bigrams = lexical_cv_mse(chunks, labels, fold_songs, alphas)
    without_bigrams = lexical_cv_mse(unigrams, labels, fold_songs, alphas)
    choice = BigramChoice(with_bigrams <= without_bigrams, with_bigrams, without_bigrams)
    model.config.lexical_bigrams = model.lexical.bigrams = choice.bigrams
    logger.info(
        "lexical bigrams: %s (grouped %d-fold song MSE of the channel alone: bigrams %.5f, unigrams %.5f)",
        "on" if choice.bigrams else "off", folds, choice.cv_mse_bigrams, choice.cv_mse_unigrams,
    )
    return choice


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
    train_groups: list[str] | None = None,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
    encoder_scales: tuple[float, ...] = ENCODER_SCALES,
) -> RidgeFit:
    """
    Fit the head (and the lexical channel, if any) of `model` in closed form on the training songs, the ridge penalty
    and encoder scale picked on the validation songs (see the module docstring). The encoder is not changed. Given
    `train_groups` (the training songs' split groups) and a lexical channel, its bigrams are first switched on or off
    by `choose_lexical_bigrams`.

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
    bigram_choice = None
    if model.lexical is not None and train_groups is not None:
        bigram_choice = choose_lexical_bigrams(model, tokenizer, train_lyrics, train_labels, train_groups, alphas)
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
    return RidgeFit(alpha, scale, mse, trials, bigram_choice)
