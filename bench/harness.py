"""The scoring methods every benchmark times (the naive per-chunk `pipeline` loop, our engine in each precision and
backend), loaded from one saved model folder and timed side by side with `torch.utils.benchmark`."""

import numpy as np
import torch
import transformers
from torch.utils.benchmark import Compare, Timer

from lyric_valence.loading import load_scoring_model
from modeling_lyric_valence import LyricValenceModel, chunk_lyrics

NAIVE_BATCH = 32


class NaivePipeline:
    """The stock path: the same chunks as text, a `pipeline("text-classification")` called once per chunk, or over all
    chunks with `batch_size=32` (what its docs suggest), float32; chunk scores averaged per song."""

    def __init__(self, folder: str, device: str, batch_size: int | None = None):
        self.pipe = transformers.pipeline("text-classification", model=folder, trust_remote_code=True, device=device)
        self.batch_size = batch_size

    def __call__(self, songs: list[str]) -> list[float]:
        config, tokenizer = self.pipe.model.config, self.pipe.tokenizer
        encoded = chunk_lyrics(tokenizer, songs, config.max_length, config.stride)
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in encoded["input_ids"]]
        if self.batch_size is None:
            outputs = [self.pipe(text, truncation=True)[0] for text in texts]
        else:
            outputs = [output[0] for output in self.pipe(texts, truncation=True, batch_size=self.batch_size, top_k=1)]
        totals, counts = np.zeros(len(songs)), np.zeros(len(songs))
        np.add.at(totals, encoded["overflow_to_sample_mapping"], [output["score"] for output in outputs])
        np.add.at(counts, encoded["overflow_to_sample_mapping"], 1)
        return (totals / counts).tolist()


class OurScorer:
    """`lyric-valence predict`'s engine: the model as `load_scoring_model` gives it (unless `prepared=False`: the model
    as `from_pretrained` gives it, token-budget batches alone), `score_songs` in `batch_tokens` budgets,
    `songs_per_block` songs at a time."""

    def __init__(
        self,
        folder: str,
        device: str,
        dtype: str = "float32",
        quantize: str | None = None,
        batch_tokens: int | None = None,
        prepared: bool = True,
        backend: str = "torch",
        songs_per_block: int | None = None,
    ):
        if prepared:
            model, self.tokenizer = load_scoring_model(folder, device, backend, dtype, quantize)
        else:
            model = LyricValenceModel.from_pretrained(folder, dtype=torch.float32).to(device).eval()
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        self.model, self.batch_tokens, self.songs_per_block = model, batch_tokens, songs_per_block

    def __call__(self, songs: list[str]) -> list[float]:
        return self.model.score_songs(songs, self.tokenizer, self.batch_tokens, self.songs_per_block)


# name: (description, OurScorer options; None for the naive loops)
METHODS = {
    "naive": ('naive: `pipeline("text-classification")` per chunk, float32', None),
    "naive-batch32": ("naive pipeline with `batch_size=32`, float32", None),
    "ours-float32": ("ours: token-budget batches + CLS-only last layer, float32", {}),
    "ours-float32-budget-only": ("ours: token-budget batches only (full last layer), float32", {"prepared": False}),
    "ours-bfloat16": ("ours, bfloat16", {"dtype": "bfloat16"}),
    "ours-bfloat16-one-block": (
        "ours, bfloat16, 1,024-song blocks (host work not overlapped within 1,024 songs)",
        {"dtype": "bfloat16", "songs_per_block": 1024},
    ),
    "ours-float16": ("ours, float16", {"dtype": "float16"}),
    "ours-int8": ("ours, dynamic int8 Linear layers (torch.ao)", {"quantize": "int8"}),
    "ours-onnxruntime-float32": ("ours, onnxruntime (fused graph), float32", {"backend": "onnxruntime"}),
    "ours-onnxruntime-int8": (
        "ours, onnxruntime (fused graph), dynamic int8, weights per channel",
        {"backend": "onnxruntime", "quantize": "int8"},
    ),
}


def build_scorer(name: str, folder: str, device: torch.device, **options):
    """The method `name` of METHODS on the model saved in `folder` (`options` added to ours)."""
    if METHODS[name][1] is None:
        return NaivePipeline(folder, str(device), NAIVE_BATCH if name == "naive-batch32" else None)
    return OurScorer(folder, str(device), **{**METHODS[name][1], **options})


def time_side_by_side(
    scorers: dict, songs: list[str], rounds: int, label: str, log=print, before_round=None, stop=lambda: False
) -> tuple[dict, dict]:
    """
    Score `songs` with every scorer in each round, in rotated order, each turn one `Timer.blocked_autorange` (its
    untimed first call is the warm-up). `before_round(index)` runs first in each round; `stop()` ends the rounds early.
    Returns each scorer's seconds per round and its scores; logs torch's Compare table.
    """
    seconds, scores, measurements = {name: [] for name in scorers}, {}, []
    for index in range(rounds):
        if before_round:
            before_round(index)
        names = list(scorers)[index % len(scorers) :] + list(scorers)[: index % len(scorers)]
        for name in names:
            timer = Timer(
                "scores[name] = scorer(songs)",
                globals={"scorer": scorers[name], "songs": songs, "scores": scores, "name": name},
                label=label,
                sub_label=f"{len(songs)} songs",
                description=name,
                num_threads=torch.get_num_threads(),
            )
            measurement = timer.blocked_autorange(min_run_time=0)
            seconds[name].append(measurement.median)
            measurements.append(measurement)
            log(
                f"round {index + 1}/{rounds}: {name} {measurement.median:.2f} s "
                f"({len(songs) / measurement.median:.1f} songs/s)"
            )
        if stop() and index + 1 < rounds:
            log(f"stopping after round {index + 1}: time budget used")
            break
    compare = Compare(measurements)
    compare.trim_significant_figures()
    log(f"\n{compare}")
    return seconds, scores
