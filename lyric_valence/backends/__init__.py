"""
Scoring backends, named as the libraries that run them: `torch` (`prepare_for_scoring`: CLS-only last layer,
precision, int8) and `onnxruntime` (CPU: the model exported once, fused and quantized, the export kept beside the
model). Both score with the model's own engine, `score_songs_in_batches` of modeling_lyric_valence.py; a model is
loaded for either by `lyric_valence.loading.ScoringOptions.load` (`load_scoring_model`).
"""

import torch

from lyric_valence.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("int8",)
BACKENDS = ("torch", "onnxruntime")


def check_scoring_options(
    device: torch.device, dtype: str = "float32", quantize: str | None = None, backend: str = "torch"
) -> None:
    """
    Raise [`UserError`] when `dtype` / `quantize` / `backend` are unknown, `device` cannot run them
    together, or the onnxruntime backend is not installed.
    """
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        check_onnxruntime_options(device, dtype)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize {quantize}: expected {' or '.join(QUANTIZATIONS)}")
    if quantize is not None and device.type != "cpu":
        raise UserError(f"--quantize {quantize} runs on CPU only (device {device}); use --dtype on a GPU")
    if quantize is not None and dtype != "float32":
        raise UserError(f"--quantize {quantize} quantizes a float32 model; it cannot be combined with --dtype {dtype}")
    if dtype == "float16" and device.type == "cpu":
        raise UserError(
            "--dtype float16 needs a GPU (CPUs have no fast float16 matrix products); keep float32 on a CPU"
        )
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bfloat16: {torch.cuda.get_device_name(device)} has no bfloat16; use float16")


def check_onnxruntime_options(device: torch.device, dtype: str) -> None:
    import importlib.util

    if device.type != "cpu":
        raise UserError(
            f"--backend onnxruntime runs on CPU only (device {device}): add --device cpu, "
            "or use --backend torch on a GPU"
        )
    if dtype != "float32":
        raise UserError(f"--backend onnxruntime scores in float32 or, with --quantize int8, int8; not {dtype}")
    if not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx")):
        raise UserError(
            "--backend onnxruntime needs onnxruntime and onnx: pip install onnxruntime onnx (the onnxruntime extra)"
        )
