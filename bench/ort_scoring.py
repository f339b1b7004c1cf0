#!/usr/bin/env python
"""
ONNX Runtime as a CPU scoring backend, measured against `lyric-valence predict`'s torch path and the naive per-chunk
pipeline, side by side in one process (bench/SCORING_RESULTS.md, "ONNX Runtime"). optimum's ONNX Runtime backend
(`optimum-onnx`) requires transformers<4.58, so the model is exported with `torch.onnx.export` and run by
`onnxruntime` directly, in float32 and with onnxruntime's dynamic int8 quantization (weights per channel); batches are
the same token-budget batches `score_songs` runs.

    pip install onnxruntime onnx
    python bench/ort_scoring.py outputs/lyric-valence --songs 300 --rounds 2     # about 10 minutes on 2 CPU cores

Prints a markdown table: EmoBank test Pearson of each backend against torch float32 of the same model, and songs/s on
synthetic songs (bench/songs.py mix) with the ratio to the naive pipeline per round.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scoring import NaivePipeline, OurScorer, emobank_test, summary  # noqa: E402
from bench.songs import make_catalogue  # noqa: E402
from modeling_lyric_valence import (  # noqa: E402
    DEFAULT_BATCH_TOKENS,
    LyricValenceModel,
    aggregate_chunk_scores,
    chunk_lyrics,
    token_budget_batches,
)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Logits(torch.nn.Module):
    """The model's chunk valences as a plain tensor, the one output the exported graph needs."""

    def __init__(self, model: LyricValenceModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def export(folder: str, path: Path) -> None:
    model = LyricValenceModel.from_pretrained(folder, attn_implementation="eager").eval()
    example = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "chunks", 1: "tokens"}
    torch.onnx.export(Logits(model), (example, example, torch.zeros_like(example)), str(path), dynamo=False,
                      input_names=list(INPUTS), output_names=["logits"], opset_version=17,
                      dynamic_axes={**dict.fromkeys(INPUTS, axes), "logits": {0: "chunks"}})


class OrtScorer:
    """Songs scored by an onnxruntime session of the exported model, in `score_songs`' token-budget batches."""

    def __init__(self, onnx_path: Path, folder: str):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.config = LyricValenceModel.config_class.from_pretrained(folder)

    def __call__(self, songs: list[str]) -> list[float]:
        encoded = chunk_lyrics(self.tokenizer, songs, self.config.max_length, self.config.stride)
        song_index = torch.tensor(encoded["overflow_to_sample_mapping"])
        ids = encoded["input_ids"]
        scores = torch.empty(len(ids))
        for batch in token_budget_batches([len(chunk) for chunk in ids], DEFAULT_BATCH_TOKENS["cpu"]):
            width = len(ids[batch[0]])  # longest first
            input_ids = np.full((len(batch), width), self.tokenizer.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                input_ids[row, : len(ids[index])] = ids[index]
                mask[row, : len(ids[index])] = 1
            feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
            scores[batch] = torch.from_numpy(self.session.run(None, feed)[0][:, 0].astype(np.float32))
        return aggregate_chunk_scores(scores, song_index, len(songs), self.config.aggregation).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="A folder written by train.py.")
    parser.add_argument("--songs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--emobank", default=str(REPO / "data" / "emobank.csv"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ort-"))
    export(args.model, work / "model.onnx")
    quantize_dynamic(str(work / "model.onnx"), str(work / "model-int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8)
    scorers = {
        "naive: `pipeline(\"text-classification\")` per chunk, float32": NaivePipeline(args.model, "cpu", None),
        "ours: torch, float32 (`lyric-valence predict`)": OurScorer(args.model, "cpu"),
        "onnxruntime, float32": OrtScorer(work / "model.onnx", args.model),
        "onnxruntime, dynamic int8 (weights per channel)": OrtScorer(work / "model-int8.onnx", args.model),
    }
    texts, labels = emobank_test(args.emobank)
    pearson = {name: float(np.corrcoef(scorer(texts), labels)[0, 1]) for name, scorer in scorers.items()
               if not name.startswith("naive")}
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=False)
    songs = make_catalogue(tokenizer.get_vocab(), args.songs, seed=0).texts
    seconds = {name: [] for name in scorers}
    for scorer in scorers.values():
        scorer(songs[:8])  # warm-up
    for round_index in range(args.rounds):
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scorer(songs)
            seconds[name].append(time.perf_counter() - start)
            print(f"round {round_index + 1}: {name} {seconds[name][-1]:.1f} s", file=sys.stderr, flush=True)
    naive = seconds[next(iter(scorers))]
    reference = pearson["ours: torch, float32 (`lyric-valence predict`)"]
    print("| backend | EmoBank test Pearson | change vs torch float32 | songs/s | × naive (per round) |")
    print("|---|---|---|---|---|")
    for name, runs in seconds.items():
        ratio = summary([n / s for n, s in zip(naive, runs)])
        rate = summary([len(songs) / s for s in runs])
        quality = f"{pearson[name]:.4f} | {pearson[name] - reference:+.4f}" if name in pearson else "– | –"
        print(f"| {name} | {quality} | {rate['median']:.1f} ({rate['min']:.1f}–{rate['max']:.1f}) | "
              f"{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})× |")


if __name__ == "__main__":
    main()
