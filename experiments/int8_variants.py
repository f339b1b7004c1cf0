#!/usr/bin/env python
"""
Which Linear layers `--quantize int8` should quantize: EmoBank test Pearson and CPU speed of torch.ao dynamic int8
variants of one trained model, each against float32 of the same model (bench/SCORING_RESULTS.md, "int8 variants").

    python -m experiments.int8_variants outputs/lyric-valence            # about 4 minutes on 2 CPU cores

Prints the command and the machine line, then a markdown table: variant, Pearson, change against float32, songs/s on
120 synthetic songs (best of 2).
"""

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer

from bench import harness
from bench.scoring import emobank_test
from lyric_valence.backends.torch import prepare_for_scoring
from modeling_lyric_valence import LyricValenceModel

PER_CHANNEL = torch.ao.quantization.per_channel_dynamic_qconfig
PER_TENSOR = torch.ao.quantization.default_dynamic_qconfig


def quantized(model: nn.Module, qconfig, keep_float=lambda name: False) -> nn.Module:
    """The model prepared for scoring with the encoder's Linear layers int8, except those `keep_float` names."""
    model = prepare_for_scoring(copy.deepcopy(model), "cpu")
    names = [
        name for name, module in model.encoder.named_modules() if isinstance(module, nn.Linear) and not keep_float(name)
    ]
    torch.ao.quantization.quantize_dynamic(model.encoder, dict.fromkeys(names, qconfig), inplace=True)
    return model


def variants(model: nn.Module) -> dict:
    last = f"encoder.layer.{model.config.encoder.num_hidden_layers - 1}."
    return {
        "float32": lambda: prepare_for_scoring(copy.deepcopy(model), "cpu"),
        "int8 per tensor": lambda: quantized(model, PER_TENSOR),
        "int8 per channel (`--quantize int8`)": lambda: quantized(model, PER_CHANNEL),
        "int8 per channel, FFN output in float32": lambda: quantized(
            model, PER_CHANNEL, lambda name: name.endswith("output.dense") and "attention" not in name
        ),
        "int8 per channel, last layer in float32": lambda: quantized(
            model, PER_CHANNEL, lambda name: name.startswith(last)
        ),
        "int8 per channel, first and last layers in float32": lambda: quantized(
            model, PER_CHANNEL, lambda name: name.startswith((last, "encoder.layer.0."))
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="A folder written by train.py.")
    parser.add_argument("--emobank", default=str(harness.REPO / "data" / "emobank.csv"))
    args = parser.parse_args(argv)
    texts, labels = emobank_test(args.emobank)
    model = LyricValenceModel.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model, config=model.config, trust_remote_code=False)
    songs = harness.make_catalogue(tokenizer.get_vocab(), 120, seed=3).texts
    print(f"Command: `{harness.command_line('experiments.int8_variants', argv)}`.")
    print(f"Machine: {harness.machine_line(harness.machine_info())}\n")
    print("| variant | Pearson | change vs float32 | songs/s |\n|---|---|---|---|")
    reference = None
    for name, build in variants(model).items():
        scorer = build()
        pearson = float(np.corrcoef(scorer.score_songs(texts, tokenizer), labels)[0, 1])
        reference = pearson if reference is None else reference
        scorer.score_songs(songs[:4], tokenizer)  # warm-up
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            scorer.score_songs(songs, tokenizer)
            seconds.append(time.perf_counter() - start)
        print(f"| {name} | {pearson:.4f} | {pearson - reference:+.4f} | {len(songs) / min(seconds):.1f} |", flush=True)


if __name__ == "__main__":
    main()
