"""
What caching the frozen layers' outputs would save (issue 38's cost lever): when LoRA trains only the last layers,
the layers below them compute the same outputs every epoch (dropout aside). This times train.py's LoRA training step
(forward and backward over the whole encoder, batches of 32 chunks of train.py's epoch order) against the same step
started from cached hidden states (only the LoRA layers and the head run), side by side in rotated order
(`bench.harness.time_side_by_side`), for LoRA on the last 2 layers (the warm start's) and the last 4 (the default).

    python -m experiments.frozen_prefix --out experiments/frozen_prefix.json
"""

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from bench import harness
from bench.models import build_model, load_tokenizer
from bench.report import summary, write_json
from bench.run import POOL_SONGS
from bench.training import BATCH_SIZE, MODEL_INPUTS, chunk_features, epoch_sample
from lyric_valence.fitting import prepare_for_finetuning

log = harness.logger("frozen_prefix")


class CachedPrefix(nn.Module):
    """Stands in for the encoder's embeddings: hands on the cached hidden states given as `inputs_embeds`."""

    def forward(self, inputs_embeds=None, **_):
        return inputs_embeds


def batches(features: list[dict], tokenizer) -> list[dict]:
    """`features` padded into batches of train.py's 32 chunks, in order."""
    return [
        tokenizer.pad(
            [{key: feature[key] for key in (*MODEL_INPUTS, "labels")} for feature in group], return_tensors="pt"
        )
        for group in (features[start : start + BATCH_SIZE] for start in range(0, len(features), BATCH_SIZE))
    ]


def lora_model(tokenizer, trained_layers: int, cached: bool):
    """train.py's LoRA model on the last `trained_layers`; `cached`: its frozen layers and embeddings removed."""
    model = prepare_for_finetuning(build_model("minilm", tokenizer.vocab_size), "lora", lora_num_layers=trained_layers)
    if cached:
        encoder = model.base_model.model.encoder
        encoder.embeddings = CachedPrefix()
        encoder.encoder.layer = nn.ModuleList(list(encoder.encoder.layer)[-trained_layers:])
    return model.train()


def cache_prefix(model, batch: dict, trained_layers: int) -> torch.Tensor:
    """The hidden states entering the first trained layer, as an evaluation pass computes them (no dropout)."""
    model.eval()
    with torch.no_grad():
        inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}
        hidden = model.base_model.model.encoder(**inputs, output_hidden_states=True).hidden_states
    model.train()
    return hidden[-trained_layers - 1]


def training_steps(model, inputs: list[dict]):
    """One forward and backward per batch, as the Trainer's step (the optimizer's update is the same in both)."""

    def run(_songs) -> float:
        total = 0.0
        for batch in inputs:
            loss = model(**batch).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
            total += loss.item()
        return total

    return run


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--batches", type=int, default=3, help="Batches of 32 chunks per round (longest to shortest).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trained_layers", type=int, nargs="+", default=[2, 4], help="LoRA's last layers.")
    parser.add_argument("--out", required=True, help="JSON file for the figures.")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_arguments(argv)
    torch.manual_seed(0)
    tokenizer = load_tokenizer("minilm")
    pool = harness.make_catalogue(tokenizer.get_vocab(), POOL_SONGS, seed=0)
    features = epoch_sample(chunk_features(tokenizer, pool.texts, pool.labels), args.batches)
    full_inputs = batches(features, tokenizer)
    record = {
        "command": harness.command_line("experiments.frozen_prefix", argv),
        "machine": harness.machine_info(torch.device("cpu")),
        "chunks": len(features),
        "tokens": int(sum(batch["attention_mask"].sum() for batch in full_inputs)),
        "layers": {},
    }
    for trained in args.trained_layers:
        full, cached = lora_model(tokenizer, trained, False), lora_model(tokenizer, trained, True)
        started = time.perf_counter()
        prefixes = [cache_prefix(full, batch, trained) for batch in full_inputs]
        caching_s = time.perf_counter() - started
        cached_inputs = [
            {"inputs_embeds": prefix, "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
            for prefix, batch in zip(prefixes, full_inputs, strict=True)
        ]
        full.eval(), cached.eval()
        with torch.no_grad():  # the cache reproduces the forward pass: the same chunk scores without dropout
            difference = (full(**full_inputs[0]).logits - cached(**cached_inputs[0]).logits).abs().max().item()
        full.train(), cached.train()
        steps = {
            "whole encoder": training_steps(full, full_inputs),
            "from cache": training_steps(cached, cached_inputs),
        }
        seconds, _ = harness.time_side_by_side(steps, full_inputs, args.rounds, f"last {trained} layers", log)
        ratios = [whole / cache for whole, cache in zip(seconds["whole encoder"], seconds["from cache"], strict=True)]
        record["layers"][trained] = {
            "step_s": {name: summary(values) for name, values in seconds.items()},
            "speedup": summary(ratios),
            "caching_s": caching_s,
            "max_score_difference_without_dropout": difference,
            "cache_mb_per_million_tokens": full.config.encoder.hidden_size * 4,
        }
        log(f"last {trained} layers: the cached step is {summary(ratios)['median']:.2f}x as fast")
    write_json(Path(args.out), record)
    return record


if __name__ == "__main__":
    main()
