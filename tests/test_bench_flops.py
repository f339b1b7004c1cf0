"""FLOP counting of the benchmark (bench/flops.py) on small random models, checked against hand counts."""

import pytest
import torch

from bench.flops import (
    FlopModel,
    attention_flops,
    convention_training_flops,
    flop_model,
    forward_flops,
    gemm_flops_per_second,
    int8_gemm_ops_per_second,
    training_flops,
)
from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.training import prepare_for_finetuning
from modeling_lyric_valence import LyricValenceModel
from tests.conftest import tiny_bert_config

HIDDEN, INTERMEDIATE, LAYERS, HEAD = 32, 48, 6, 128
LAYER_WEIGHTS = 4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE  # Q, K, V, attention output; FFN in and out
HEAD_WEIGHTS = HIDDEN * HEAD + HEAD


def tiny_model(mode: str):
    torch.manual_seed(0)
    model = LyricValenceModel(LyricValenceConfig(encoder=tiny_bert_config(100, layers=LAYERS)))
    return prepare_for_finetuning(model, mode)


def test_flop_model_reads_layer_weights_and_what_trains():
    plain = flop_model(tiny_model("full"))
    assert plain.layer_weights == (LAYER_WEIGHTS,) * LAYERS
    assert plain.trainable_layer_weights == plain.layer_weights
    assert plain.head_weights == HEAD_WEIGHTS and plain.first_trained_layer == 0

    lora = flop_model(tiny_model("lora"))  # r=4 on query and value of the last 4 layers
    adapters = 2 * 4 * (HIDDEN + HIDDEN)
    assert lora.layer_weights == (LAYER_WEIGHTS,) * 2 + (LAYER_WEIGHTS + adapters,) * 4
    assert lora.trainable_layer_weights == (0, 0) + (adapters,) * 4
    assert lora.first_trained_layer == 2

    frozen = flop_model(tiny_model("head_only"))
    assert frozen.trainable_layer_weights == (0,) * LAYERS and frozen.first_trained_layer == LAYERS


def test_forward_flops_by_hand():
    model = FlopModel(HIDDEN, (LAYER_WEIGHTS,) * LAYERS, (0,) * LAYERS, HEAD_WEIGHTS)
    length = 10
    assert attention_flops(HIDDEN, length) == 2 * (2 * length * HIDDEN * length)  # QKᵀ and AV
    expected = LAYERS * (2 * LAYER_WEIGHTS * length + 4 * length * length * HIDDEN) + 2 * HEAD_WEIGHTS
    assert forward_flops(model, length) == expected


@pytest.mark.parametrize("length", [1, 64, 512])
def test_training_flops_by_mode(length):
    full, lora, frozen = (flop_model(tiny_model(mode)) for mode in ("full", "lora", "head_only"))
    assert training_flops(full, length) == 3 * forward_flops(full, length)
    assert convention_training_flops(full, length) == training_flops(full, length)
    assert training_flops(frozen, length) == forward_flops(frozen, length) + 4 * HEAD_WEIGHTS
    # LoRA: input gradients through the top 4 layers, weight gradients for the adapters only
    attention = attention_flops(HIDDEN, length)
    lora_layer = lora.layer_weights[-1]
    expected = (forward_flops(lora, length) + 4 * (2 * lora_layer * length + 2 * attention)
                + 4 * 2 * lora.trainable_layer_weights[-1] * length + 4 * HEAD_WEIGHTS)
    assert training_flops(lora, length) == expected
    assert forward_flops(lora, length) < training_flops(lora, length) < convention_training_flops(lora, length)


def test_gemm_throughput_is_a_positive_rate():
    assert gemm_flops_per_second(64, 0.01, torch.device("cpu")) > 0


def test_int8_gemm_throughput_runs_onnxruntime_matmulinteger():
    assert int8_gemm_ops_per_second(64, 0.01, threads=1) > 0
