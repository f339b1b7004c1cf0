"""Training pieces for chunked songs: chunked datasets, a Trainer that keeps the song index, song-level metrics."""

import json
import re
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
import torch
from sklearn.metrics import mean_squared_error
from transformers import EvalPrediction, PreTrainedTokenizerBase, Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from lyric_valence.errors import UserError
from lyric_valence.evaluation import song_metrics
from modeling_lyric_valence import DEFAULT_BATCH_TOKENS, aggregate_chunk_scores, chunk_lyrics, token_budget_batches

# Carried next to `labels` through the Trainer (as label ids) so every chunk prediction keeps its song and its
# length (for the length-weighted aggregation).
SONG_INDEX = "song_index"
CHUNK_ID = "chunk_id"
CHUNK_LENGTH = "length"  # also the column the length-grouped sampler reads (TrainingArguments.length_column_name)
LABEL_NAMES = ["labels", SONG_INDEX, CHUNK_ID, CHUNK_LENGTH]


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
        encoded[CHUNK_LENGTH] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    chunks = split.map(
        tokenize, batched=True, with_indices=True, remove_columns=split.column_names, desc="Chunking songs"
    )
    return chunks.add_column(CHUNK_ID, list(range(chunks.num_rows)))


def song_predictions(predictions: np.ndarray, label_ids: tuple, aggregation: str = "mean"):
    """
    Song-level (song_index, predicted, true) arrays, then the chunk scores and labels, from chunk predictions whose
    label ids are (labels, song_index, chunk_id, length). Chunks seen twice (distributed samplers pad their shards
    with repeats) count once; nothing is assumed about the order the predictions come in.
    """
    labels, song_index, chunk_id, chunk_length = (np.asarray(part).reshape(-1) for part in label_ids)
    _, first = np.unique(chunk_id, return_index=True)
    chunk_scores = np.asarray(predictions, dtype=np.float64).reshape(-1)[first]
    songs, song_of_chunk = np.unique(song_index[first].astype(np.int64), return_inverse=True)
    as_tensor = torch.from_numpy
    predicted = aggregate_chunk_scores(
        as_tensor(chunk_scores), as_tensor(song_of_chunk), len(songs), aggregation, as_tensor(chunk_length[first])
    ).numpy()
    true = aggregate_chunk_scores(
        as_tensor(labels[first].astype(np.float64)), as_tensor(song_of_chunk), len(songs), "mean"
    ).numpy()
    return songs, predicted, true, chunk_scores, labels[first]


def make_compute_metrics(aggregation: str = "mean"):
    """
    `compute_metrics` for the Trainer: the song-level metrics of the `song_valence` evaluate module, plus the
    chunk-level mse and the number of songs.
    """

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        songs, predicted, true, chunk_scores, chunk_labels = song_predictions(
            prediction.predictions, prediction.label_ids, aggregation
        )
        metrics = song_metrics(predicted, true)
        metrics["chunk_mse"] = float(mean_squared_error(chunk_labels, chunk_scores))
        metrics["songs"] = len(songs)
        return metrics

    return compute_metrics


def cpu_has_native_bf16() -> bool:
    """
    Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX, through oneDNN). Without it, bf16
    matrix products run tens of times slower than float32 (bench/RESULTS.md). torch has no
    public query for this; the private one below is what its own autocast tests use.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def checkpoint_is_complete(folder: str | Path) -> bool:
    """
    Whether a `checkpoint-N` folder was written to the end. The Trainer writes a checkpoint in place (no temporary
    folder) and `trainer_state.json` last, after the weights, optimizer, scheduler and RNG states: a folder whose state
    file is missing or cut short is what a run killed while saving leaves behind.
    """
    try:
        json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The complete `checkpoint-N` folder of `output_dir` with the highest N, or None."""
    folder = Path(output_dir)
    steps = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            steps[int(match.group(1))] = path
    return next((str(steps[step]) for step in sorted(steps, reverse=True) if checkpoint_is_complete(steps[step])), None)


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str | Path) -> str | None:
    """
    The checkpoint folder `--resume_from_checkpoint` means: None for None, False or "false"; the last complete
    checkpoint of `output_dir` for True or "true" (skipping folders half-written by a killed run); else the path,
    which must be a complete checkpoint. Raises `UserError` otherwise.
    """
    if resume_from_checkpoint is None or str(resume_from_checkpoint).lower() == "false":
        return None
    if str(resume_from_checkpoint).lower() == "true":
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            raise UserError(f"{output_dir}: no complete checkpoint-* folder to resume from")
        return checkpoint
    if not checkpoint_is_complete(resume_from_checkpoint):
        raise UserError(
            f"{resume_from_checkpoint}: not a complete checkpoint (no readable trainer_state.json); "
            "pass --resume_from_checkpoint True to resume from the last complete one"
        )
    return str(resume_from_checkpoint)


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """
    A `LengthGroupedSampler` whose order depends on `seed` and the epoch (`set_epoch`) only. The stock one draws from
    the global torch RNG when an epoch starts, which breaks two things: a run resumed in the middle of an epoch after
    the first draws another order than the interrupted run did (the RNG is restored only after the skipped batches),
    and the processes of a distributed run, whose RNGs drift apart with their dropout draws, shard different orders.
    """

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class SongOrder(torch.utils.data.Sampler):
    """Songs `0..songs-1` in a random order that depends on `seed` and the epoch (`set_epoch`) only."""

    def __init__(self, songs: int, seed: int = 0):
        self.songs = songs
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.songs

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.songs, generator=generator).tolist())


class SongBatchSampler(torch.utils.data.Sampler):
    """
    Batches of whole songs: the chunks (row indices) of songs taken in `SongOrder`, a song added while the batch
    stays within `chunks_per_batch` chunks (a longer song is a batch of its own). For the song-level loss, which
    needs every chunk of a song in the step that scores it. `sampler` is the song order: accelerate sets its epoch.
    """

    def __init__(self, song_index: list[int], chunks_per_batch: int, seed: int = 0):
        songs, song_of_chunk = np.unique(np.asarray(song_index), return_inverse=True)
        self.chunks = [[] for _ in songs]
        for chunk, song in enumerate(song_of_chunk):
            self.chunks[song].append(chunk)
        self.chunks_per_batch = chunks_per_batch
        self.sampler = SongOrder(len(songs), seed)

    def batches(self) -> list[list[int]]:
        batches, current = [], []
        for song in self.sampler:
            if current and len(current) + len(self.chunks[song]) > self.chunks_per_batch:
                batches.append(current)
                current = []
            current = current + self.chunks[song]
        return batches + [current] if current else batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def song_loss(chunk_scores: torch.Tensor, labels: torch.Tensor, song_index: torch.Tensor, weights: torch.Tensor):
    """
    The mean squared error of the songs of a batch: each song's score the `weights`-weighted mean of its chunks'
    scores, against its label (every chunk of a song carries it).
    """
    _, song_of_chunk = torch.unique(song_index, return_inverse=True)
    songs = int(song_of_chunk.max()) + 1
    weights = weights.to(chunk_scores.dtype)
    totals = chunk_scores.new_zeros(songs).index_add_(0, song_of_chunk, chunk_scores * weights)
    mass = chunk_scores.new_zeros(songs).index_add_(0, song_of_chunk, weights)
    song_labels = chunk_scores.new_zeros(songs).index_add_(0, song_of_chunk, labels.to(chunk_scores.dtype) * weights)
    return torch.nn.functional.mse_loss(totals / mass, song_labels / mass)


class ChunkedSongTrainer(Trainer):
    """
    A `Trainer` for datasets of song chunks: `song_index`, `chunk_id` and `length` travel with each chunk as label ids
    (set `label_names` to `LABEL_NAMES`) but never reach the model; an optional `head_learning_rate` gives the
    regression head its own learning rate. Resuming skips half-written checkpoints, and length-grouped batches come in
    a seeded order per epoch, so a resumed run ends exactly where an uninterrupted one does.

    On one process, evaluation and prediction batch as `predict` does ([`token_budget_batches`]): chunks longest
    first, each batch padded to its longest chunk holding at most `eval_batch_tokens` tokens (default: predict's for
    the device, `DEFAULT_BATCH_TOKENS`). Several processes keep the Trainer's sharded batches of
    `per_device_eval_batch_size` chunks.

    With `song_loss`, training batches hold whole songs ([`SongBatchSampler`], up to the batch size in chunks) and
    the loss is each song's error ([`song_loss`]: the mean of its chunk scores, length-weighted with
    `length_weighted` aggregation, against its label) rather than each chunk's: a long song counts as much as a short
    one, and no chunk is pushed to carry its song's label alone.
    """

    def __init__(
        self,
        *args,
        head_learning_rate: float | None = None,
        song_loss: bool = False,
        aggregation: str = "mean",
        eval_batch_tokens: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.head_learning_rate = head_learning_rate
        self.song_loss = song_loss
        self.aggregation = aggregation
        if eval_batch_tokens is None:
            eval_batch_tokens = DEFAULT_BATCH_TOKENS.get(self.args.device.type, DEFAULT_BATCH_TOKENS["cuda"])
        self.eval_batch_tokens = eval_batch_tokens

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """`Trainer.train`, resuming only from complete checkpoints (see `resolve_checkpoint`); "true" means True."""
        return super().train(resolve_checkpoint(resume_from_checkpoint, self.args.output_dir), *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model_inputs = {key: value for key, value in inputs.items() if key not in (SONG_INDEX, CHUNK_ID, CHUNK_LENGTH)}
        if not (self.song_loss and model.training):
            return super().compute_loss(model, model_inputs, return_outputs, num_items_in_batch)
        labels = model_inputs.pop("labels")
        outputs = model(**model_inputs)
        lengths = inputs[CHUNK_LENGTH]
        weights = lengths if self.aggregation == "length_weighted" else torch.ones_like(lengths)
        loss = song_loss(outputs.logits.squeeze(-1).float(), labels, inputs[SONG_INDEX], weights)
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self):
        if not self.song_loss:
            return super().get_train_dataloader()
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        songs = SongBatchSampler(self.train_dataset[SONG_INDEX], self._train_batch_size, seed)
        return self.batched_dataloader(self.train_dataset, songs, "Training")

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
            return SeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
        return sampler

    def get_eval_dataloader(self, eval_dataset=None):
        dataset = self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else eval_dataset
        dataset = self.eval_dataset if dataset is None else dataset
        if not self.batches_by_token_budget(dataset):
            return super().get_eval_dataloader(eval_dataset)
        return self.batched_dataloader(dataset, self.eval_batches(dataset), "Evaluation")

    def get_test_dataloader(self, test_dataset):
        if not self.batches_by_token_budget(test_dataset):
            return super().get_test_dataloader(test_dataset)
        return self.batched_dataloader(test_dataset, self.eval_batches(test_dataset), "test")

    def batches_by_token_budget(self, dataset) -> bool:
        return self.args.world_size == 1 and CHUNK_LENGTH in getattr(dataset, "column_names", ())

    def eval_batches(self, dataset) -> list[list[int]]:
        """`dataset`'s chunks in token-budget batches, longest first; the song metrics read ids, never the order."""
        return token_budget_batches(list(dataset[CHUNK_LENGTH]), self.eval_batch_tokens)

    def batched_dataloader(self, dataset, batch_sampler, description: str):
        """`dataset` in the batches of row indices `batch_sampler` gives, with the Trainer's collator and loader
        settings, its unused columns removed as the Trainer's own loaders do."""
        loader = torch.utils.data.DataLoader(
            self._remove_unused_columns(dataset, description=description),
            batch_sampler=batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

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
