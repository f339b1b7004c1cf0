"""Training pieces for chunked songs: chunked datasets, a Trainer that keeps the song index, song-level metrics."""

from collections import defaultdict

import datasets
import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from transformers import EvalPrediction, PreTrainedTokenizerBase, Trainer

from modeling_lyric_valence import aggregate_chunk_scores, chunk_lyrics

# Carried next to `labels` through the Trainer (as label ids) so every chunk prediction keeps its song.
SONG_INDEX = "song_index"
CHUNK_ID = "chunk_id"
LABEL_NAMES = ["labels", SONG_INDEX, CHUNK_ID]
FINETUNING_MODES = ("lora", "head_only", "full")


def chunk_split(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int
) -> datasets.Dataset:
    """
    One row per chunk of each song of `split` (columns `text`, `label`): token ids (unpadded), `labels` (the song's
    label), `song_index` (the song's row in `split`), `chunk_id` (the chunk's row in the result) and `length`.
    """

    def tokenize(batch, indices):
        encoded = chunk_lyrics(tokenizer, batch["text"], max_length, stride)
        song_of_chunk = encoded.pop("overflow_to_sample_mapping")
        encoded["labels"] = [batch["label"][song] for song in song_of_chunk]
        encoded[SONG_INDEX] = [indices[song] for song in song_of_chunk]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    chunks = split.map(
        tokenize, batched=True, with_indices=True, remove_columns=split.column_names, desc="Chunking songs"
    )
    return chunks.add_column(CHUNK_ID, list(range(chunks.num_rows)))


def song_predictions(predictions: np.ndarray, label_ids: tuple, aggregation: str = "mean"):
    """
    Song-level (song_index, predicted, true) arrays from chunk predictions whose label ids are
    (labels, song_index, chunk_id). Chunks seen twice (distributed samplers pad their shards with repeats) count once;
    nothing is assumed about the order the predictions come in.
    """
    labels, song_index, chunk_id = (np.asarray(part).reshape(-1) for part in label_ids)
    _, first = np.unique(chunk_id, return_index=True)
    chunk_scores = np.asarray(predictions, dtype=np.float64).reshape(-1)[first]
    songs, song_of_chunk = np.unique(song_index[first].astype(np.int64), return_inverse=True)
    as_tensor = torch.from_numpy
    predicted = aggregate_chunk_scores(
        as_tensor(chunk_scores), as_tensor(song_of_chunk), len(songs), aggregation
    ).numpy()
    true = aggregate_chunk_scores(
        as_tensor(labels[first].astype(np.float64)), as_tensor(song_of_chunk), len(songs), "mean"
    ).numpy()
    return songs, predicted, true, chunk_scores, labels[first]


def regression_metrics(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """mse, rmse, mae, pearson, spearman and r2 of `predicted` against `true`."""
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


def make_compute_metrics(aggregation: str = "mean"):
    """`compute_metrics` for the Trainer: song-level metrics plus the chunk-level mse and the number of songs."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        songs, predicted, true, chunk_scores, chunk_labels = song_predictions(
            prediction.predictions, prediction.label_ids, aggregation
        )
        metrics = regression_metrics(predicted, true)
        metrics["chunk_mse"] = float(mean_squared_error(chunk_labels, chunk_scores))
        metrics["songs"] = len(songs)
        return metrics

    return compute_metrics


class ChunkedSongTrainer(Trainer):
    """
    A `Trainer` for datasets of song chunks: `song_index` and `chunk_id` travel with each chunk as label ids (set
    `label_names` to `LABEL_NAMES`) but never reach the model; an optional `head_learning_rate` gives the regression
    head its own learning rate.
    """

    def __init__(self, *args, head_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_learning_rate = head_learning_rate

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model_inputs = {key: value for key, value in inputs.items() if key not in (SONG_INDEX, CHUNK_ID)}
        return super().compute_loss(model, model_inputs, return_outputs, num_items_in_batch)

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.head_learning_rate is not None:
            opt_model = self.model if model is None else model
            decay_names = set(self.get_decay_parameter_names(opt_model))
            groups = defaultdict(list)
            for name, parameter in opt_model.named_parameters():
                if parameter.requires_grad:
                    groups["head" in name.split("."), name in decay_names].append(parameter)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(
                [
                    {
                        "params": parameters,
                        "lr": self.head_learning_rate if is_head else self.args.learning_rate,
                        "weight_decay": self.args.weight_decay if decays else 0.0,
                    }
                    for (is_head, decays), parameters in groups.items()
                ],
                **optimizer_kwargs,
            )
        return super().create_optimizer(model)


def prepare_for_finetuning(
    model,
    mode: str,
    lora_r: int = 4,
    lora_alpha: int = 8,
    lora_dropout: float = 0.1,
    lora_target_modules: list[str] | tuple[str, ...] = ("query", "value"),
    lora_num_layers: int = 4,
):
    """
    Set what trains: `lora` wraps the model with peft LoRA on `lora_target_modules` of the last `lora_num_layers`
    encoder layers and trains the head fully (`modules_to_save`); `head_only` freezes the encoder; `full` trains all.
    Returns the model to train (a `PeftModel` for `lora`).
    """
    if mode not in FINETUNING_MODES:
        raise ValueError(f"unknown finetuning mode {mode!r}: expected one of {FINETUNING_MODES}")
    if mode == "lora":
        num_layers = model.config.encoder.num_hidden_layers
        if not 1 <= lora_num_layers <= num_layers:
            raise ValueError(f"lora_num_layers must be between 1 and {num_layers}, got {lora_num_layers}")
        lora_config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=list(lora_target_modules),
            layers_to_transform=list(range(num_layers - lora_num_layers, num_layers)),
            modules_to_save=["head"],
        )
        return get_peft_model(model, lora_config)
    if mode == "head_only":
        model.encoder.requires_grad_(False)
    return model
