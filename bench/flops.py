"""
Model FLOPs of the lyric-valence model's training and inference steps, and the machine's GEMM throughput (fp32 or
bf16 through torch, int8 through onnxruntime).

A matrix product of an (m x k) by a (k x n) matrix is 2mkn FLOPs. Per chunk of L tokens, with W the weight-matrix
entries of one encoder layer (LoRA matrices included) and h the hidden size:

- forward: 2·W·L per layer plus attention 4·L²·h per layer (QKᵀ and AV), plus the head on the pooled vector;
- training backward: gradients flow down to the lowest encoder layer that has trainable weights, and through every
  layer above it: the input gradient costs another 2·W·L per layer and 8·L²·h for attention; weight gradients add
  2·(trainable weight entries)·L. Full fine-tuning is thus 3x the forward (the usual 6·params·tokens); LoRA on the
  last 4 of 6 layers is about 1.7x, because the frozen weights get no weight gradients.

Embeddings (lookups), layer norms, activations, softmax and the optimizer are not counted: they are the overhead that
MFU measures against. The common convention "x3 wherever gradients flow" (weight gradients counted for frozen
weights too) is `convention_training_flops`, reported next to the count of the work actually done.
"""

import re
import time
from dataclasses import dataclass

import numpy as np
import torch

LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")


@dataclass(frozen=True)
class FlopModel:
    """What the FLOP count needs to know of a model: see `flop_model`."""

    hidden_size: int
    layer_weights: tuple[int, ...]  # weight-matrix entries per encoder layer, adapters included
    trainable_layer_weights: tuple[int, ...]  # the trainable ones among them
    head_weights: int  # weight entries of the head (it reads one pooled vector per chunk)

    @property
    def first_trained_layer(self) -> int:
        """Index of the lowest encoder layer with trainable weights (the number of layers if none)."""
        trained = [index for index, weights in enumerate(self.trainable_layer_weights) if weights]
        return trained[0] if trained else len(self.layer_weights)


def flop_model(model: torch.nn.Module) -> FlopModel:
    """
    Read `FlopModel` off a `LyricValenceModel`, plain or wrapped by peft: 2-D weights under `.layer.<i>.` are encoder
    layer weights; the head's weights are counted once (peft keeps a frozen copy next to the trained one).
    """
    config = model.config
    layers = config.encoder.num_hidden_layers
    weights, trainable = [0] * layers, [0] * layers
    for name, parameter in model.named_parameters():
        match = LAYER_INDEX.search(name)
        if parameter.dim() == 2 and match:
            index = int(match.group(1))
            weights[index] += parameter.numel()
            trainable[index] += parameter.numel() if parameter.requires_grad else 0
    head = config.hidden_size * config.head_hidden_size + config.head_hidden_size
    return FlopModel(config.hidden_size, tuple(weights), tuple(trainable), head)


def attention_flops(hidden_size: int, length: int) -> int:
    """Forward FLOPs of QKᵀ and AV in one layer for one chunk of `length` tokens."""
    return 4 * length * length * hidden_size


def forward_flops(model: FlopModel, length: int) -> int:
    """Forward FLOPs of one chunk of `length` tokens."""
    layers = sum(2 * weights * length + attention_flops(model.hidden_size, length) for weights in model.layer_weights)
    return layers + 2 * model.head_weights


def training_flops(model: FlopModel, length: int) -> int:
    """Forward + backward FLOPs actually done for one chunk of `length` tokens in a training step (head trained)."""
    flowing = range(model.first_trained_layer, len(model.layer_weights))
    input_gradients = sum(
        2 * model.layer_weights[index] * length + 2 * attention_flops(model.hidden_size, length) for index in flowing
    )
    weight_gradients = sum(2 * weights * length for weights in model.trainable_layer_weights)
    return forward_flops(model, length) + input_gradients + weight_gradients + 4 * model.head_weights


def convention_training_flops(model: FlopModel, length: int) -> int:
    """Training FLOPs by the convention 'forward x3 in every layer gradients flow through, x1 below' (head x3)."""
    first = model.first_trained_layer
    total = 0
    for index, weights in enumerate(model.layer_weights):
        layer = 2 * weights * length + attention_flops(model.hidden_size, length)
        total += 3 * layer if index >= first else layer
    return total + 6 * model.head_weights


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_flops_per_second(size: int, seconds: float, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """
    Sustained `torch.matmul` throughput in `dtype` on `size` x `size` matrices: back-to-back products (at least two)
    for at least `seconds`, after a warm-up product.
    """
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(left, right)  # warm-up: kernel selection, first touch of the output
    synchronize(device)
    start, products = time.perf_counter(), 0
    while products < 2 or time.perf_counter() - start < seconds:
        torch.matmul(left, right)
        products += 1
        synchronize(device)
    return products * 2 * size**3 / (time.perf_counter() - start)


def int8_gemm_ops_per_second(size: int, seconds: float, threads: int) -> float:
    """
    Sustained onnxruntime `MatMulInteger` throughput on `size` x `size` matrices (uint8 activations x int8 weights ->
    int32: the product inside its dynamically quantized Linear layers) on `threads` CPU threads: back-to-back
    products (at least two) for at least `seconds`, after a warm-up product. Needs onnx and onnxruntime.
    """
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (size, size), dtype=np.int8), "weight")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["activations", "weight"], ["product"])],
        "int8_gemm",
        [helper.make_tensor_value_info("activations", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("product", TensorProto.INT32, [size, size])],
        initializer=[weight],
    )
    # IR version 8: what every onnxruntime the extra allows reads, whatever onnx writes by default.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"activations": rng.integers(0, 256, (size, size), dtype=np.uint8)}
    session.run(None, feed)  # warm-up
    start, products = time.perf_counter(), 0
    while products < 2 or time.perf_counter() - start < seconds:
        session.run(None, feed)
        products += 1
    return products * 2 * size**3 / (time.perf_counter() - start)


# Dense (no sparsity) bf16 tensor-core peaks of NVIDIA's data sheets, in FLOP/s, by a part of the device name.
BF16_DENSE_PEAKS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12,
                    "L40S": 362e12, "L4": 121e12, "A10G": 70e12}


def bf16_dense_peak(device: torch.device) -> float | None:
    """The data-sheet dense bf16 peak of a CUDA device (None on CPU or an unlisted GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in BF16_DENSE_PEAKS.items() if part in name), None)
