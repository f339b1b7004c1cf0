"""Model FLOPs, counted by `FlopCounterMode` on the model itself (matrix products and attention; the rest is the
overhead MFU measures against), and the machine's GEMM throughput (fp32 or bf16 through torch, int8 through
onnxruntime). A chunk's count is a quadratic in its length (weights·L, attention L²), so three counts give every
length's exactly."""

import numpy as np
import torch
from torch.utils import flop_counter
from torch.utils.benchmark import Timer

# FlopCounterMode has formulas for the CUDA attention kernels only; the CPU flash kernel takes the same shapes.
flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)(
    lambda query, key, value, *_, **__: flop_counter.sdpa_flop_count(query, key, value)
)
flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)(
    lambda grad, query, key, value, *_, **__: flop_counter.sdpa_backward_flop_count(grad, query, key, value)
)

COUNTED_LENGTHS = (16, 32, 64)


def count_flops(model: torch.nn.Module, length: int, training: bool) -> int:
    """FLOPs of one chunk of `length` tokens: the forward pass, or the forward and backward of a training step."""
    device = next(model.parameters()).device
    ones = torch.ones(1, length, dtype=torch.long, device=device)
    inputs = {"input_ids": ones, "attention_mask": ones}
    with flop_counter.FlopCounterMode(display=False) as counter, torch.set_grad_enabled(training):
        output = model(**inputs, labels=torch.full((1,), 0.5, device=device) if training else None)
        if training:
            output.loss.backward()
            model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def flops_per_length(model: torch.nn.Module, training: bool = False):
    """A function of chunk length giving `count_flops(model, length, training)`, from three counts."""
    was_training = model.training
    model.train(training)
    counts = [count_flops(model, length, training) for length in COUNTED_LENGTHS]
    model.train(was_training)
    quadratic = np.polyfit(COUNTED_LENGTHS, counts, 2)
    return lambda length: int(round(np.polyval(quadratic, length)))


def gemm_flops_per_second(size: int, seconds: float, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Sustained `torch.mm` throughput in `dtype` on `size` x `size` matrices (median block of `seconds`)."""
    left, right = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    # Timer's default is one thread; torch is in its globals.
    timer = Timer("torch.mm(left, right)", globals={"left": left, "right": right}, num_threads=torch.get_num_threads())
    return 2 * size**3 / timer.blocked_autorange(min_run_time=seconds).median


def int8_gemm_ops_per_second(size: int, seconds: float, threads: int) -> float:
    """Sustained onnxruntime `MatMulInteger` throughput on `size` x `size` matrices (uint8 activations x int8 weights:
    the product inside its dynamically quantized Linear layers) on `threads` CPU threads."""
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
    timer = Timer("session.run(None, feed)", globals={"session": session, "feed": feed})  # onnxruntime's own threads
    return 2 * size**3 / timer.blocked_autorange(min_run_time=seconds).median


# Dense (no sparsity) bf16 tensor-core peaks of NVIDIA's data sheets, in FLOP/s, by a part of the device name.
BF16_DENSE_PEAKS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
}


def bf16_dense_peak(device: torch.device) -> float | None:
    """The data-sheet dense bf16 peak of a CUDA device (None on CPU or an unlisted GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in BF16_DENSE_PEAKS.items() if part in name), None)
