"""FLOP counting of the benchmark (bench/flops.py, torch's FlopCounterMode) on small random models vs hand counts."""

import pytest
import torch

from bench.flops import count_flops, flops_per_length, gemm_flops_per_second, int8_gemm_ops_per_second
from configuration_lyric_valence import LyricValenceConfig
from lyric_valence import FINETUNING_ATTENTION_DROPOUT
from lyric_valence.fitting import prepare_for_finetuning
from modeling_lyric_valence import LyricValenceModel
from tests.conftest import tiny_bert_config

# Tiny matrices: one torch thread (a second one only spins on a busy 2-core machine).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

HIDDEN, INTERMEDIATE, LAYERS, HEAD = 32, 48, 6, 128
LAYER_WEIGHTS = 4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE  # Q, K, V, attention output; FFN in and out
HEAD_WEIGHTS = HIDDEN * HEAD + HEAD


def tiny_model(mode: str):
    """A tiny model as train.py fine-tunes it: no dropout on attention probabilities, so SDPA's fused kernel runs."""
    torch.manual_seed(0)
    encoder = tiny_bert_config(100, layers=LAYERS)
    encoder.attention_probs_dropout_prob = FINETUNING_ATTENTION_DROPOUT
    model = LyricValenceModel(LyricValenceConfig(encoder=encoder))
    return prepare_for_finetuning(model, mode)


def forward_by_hand(length: int) -> int:
    """2·weights·L per layer, attention QKᵀ and AV 4·L²·h per layer, the head on one pooled vector."""
    return LAYERS * (2 * LAYER_WEIGHTS * length + 4 * length * length * HIDDEN) + 2 * HEAD_WEIGHTS


@pytest.mark.parametrize("length", [1, 10, 64, 200])
def test_forward_count_is_the_hand_count(length):
    model = tiny_model("full").eval()
    assert count_flops(model, length, training=False) == forward_by_hand(length)
    assert flops_per_length(model)(length) == forward_by_hand(length)


@pytest.mark.parametrize("length", [5, 100, 300])
def test_training_counts_by_mode(length):
    full, frozen = tiny_model("full").train(), tiny_model("head_only").train()
    # full: backward twice the forward, and the fused attention's backward recomputes QKᵀ (2·L²·h per layer)
    recompute = LAYERS * 2 * length * length * HIDDEN
    assert count_flops(full, length, training=True) == 3 * forward_by_hand(length) + recompute
    # head only: the head's weight gradients, and the input gradient of its second layer only (nothing below trains)
    assert count_flops(frozen, length, training=True) == forward_by_hand(length) + 2 * HEAD_WEIGHTS + 2 * HEAD
    lora = tiny_model("lora").train()
    assert forward_by_hand(length) < count_flops(lora, length, training=True) < count_flops(full, length, True)
    assert flops_per_length(lora, training=True)(length) == count_flops(lora, length, training=True)
    assert lora.training and all(parameter.grad is None for parameter in lora.parameters())


def test_gemm_throughput_is_a_positive_rate():
    assert gemm_flops_per_second(64, 0.01, torch.device("cpu")) > 0


def test_int8_gemm_throughput_runs_onnxruntime_matmulinteger():
    assert int8_gemm_ops_per_second(64, 0.01, threads=1) > 0
