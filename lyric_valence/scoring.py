"""
The scoring engine: a loaded [`LyricValenceModel`] made ready for fast catalogue scoring (device, precision, int8
quantization, and a last encoder layer that computes only what CLS pooling reads). `model.score_songs(...,
batch_tokens=...)` then scores it in token-budget batches.

    model = prepare_for_scoring(model, device="cpu", dtype="float32", quantize="int8")
    scores = model.score_songs(songs, tokenizer, batch_tokens=2048)

The onnxruntime backend (CPU) is `lyric_valence.onnx_scoring`; `check_scoring_options` checks both. Which mode pays on
which hardware, and what each costs in quality, is measured in bench/SCORING_RESULTS.md (`python -m bench.scoring`).
"""

import warnings

import torch
from torch import nn

from lyric_valence.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
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
        raise UserError(
            f"--quantize {quantize} quantizes a float32 model; it cannot be combined with --dtype {dtype}"
        )
    if dtype == "float16" and device.type == "cpu":
        raise UserError("--dtype float16 needs a GPU (CPUs have no fast float16 matrix products); keep float32 on a CPU")
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bfloat16: {torch.cuda.get_device_name(device)} has no bfloat16; use float16")


def check_onnxruntime_options(device: torch.device, dtype: str) -> None:
    import importlib.util

    if device.type != "cpu":
        raise UserError(
            f"--backend onnxruntime runs on CPU only (device {device}): add --device cpu, or use --backend torch on a GPU"
        )
    if dtype != "float32":
        raise UserError(f"--backend onnxruntime scores in float32 or, with --quantize int8, int8; not {dtype}")
    if not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx")):
        raise UserError(
            "--backend onnxruntime needs onnxruntime and onnx: pip install onnxruntime onnx (the onnxruntime extra)"
        )


class ClsOnlyLastLayer(nn.Module):
    """
    A BERT-style encoder's last layer computed for the first ([CLS]) position only: keys and values still come from
    every token, but the query, attention output and feed-forward run on one row per chunk instead of all of them.
    With CLS pooling the head reads nothing else of the last layer, so scores are unchanged, and those rows are about
    five sixths of the layer's matrix products. transformers has no switch for this (its layers always return every
    position), hence this wrapper around the layer's own modules; its output has sequence length 1.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        attention = self.layer.attention.self
        batch, length = hidden_states.shape[:2]
        cls = hidden_states[:, :1]

        def heads(states: torch.Tensor) -> torch.Tensor:
            return states.view(batch, states.shape[1], -1, attention.attention_head_size).transpose(1, 2)

        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1]  # the [CLS] query's row of the (batch, 1, query, key) mask
        # The mask transformers builds for SDPA is boolean (True: attend) and for eager attention additive;
        # scaled_dot_product_attention takes either.
        context = nn.functional.scaled_dot_product_attention(
            heads(attention.query(cls)),
            heads(attention.key(hidden_states)),
            heads(attention.value(hidden_states)),
            attn_mask=attention_mask,
            scale=attention.scaling,
        )
        attention_output = self.layer.attention.output(context.transpose(1, 2).reshape(batch, 1, -1), cls)
        return self.layer.feed_forward_chunk(attention_output)


def encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The encoder's list of layers when it is BERT-style (`encoder.encoder.layer`), else None."""
    layers = getattr(getattr(model.encoder, "encoder", None), "layer", None)
    return layers if isinstance(layers, nn.ModuleList) and len(layers) else None


def can_compute_cls_only(model: nn.Module) -> bool:
    """Whether [`ClsOnlyLastLayer`] applies: CLS pooling, a BERT-style last layer, SDPA or eager attention."""
    layers = encoder_layers(model)
    if model.config.pooling != "cls" or layers is None or isinstance(layers[-1], ClsOnlyLastLayer):
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    return (
        all(hasattr(attention, name) for name in ("query", "key", "value", "attention_head_size", "scaling"))
        and hasattr(last.attention, "output")
        and hasattr(last, "feed_forward_chunk")
        and not getattr(last, "add_cross_attention", False)
        and model.encoder.config._attn_implementation in ("sdpa", "eager")
    )


def prepare_for_scoring(
    model: nn.Module, device: str | torch.device = "cpu", dtype: str = "float32", quantize: str | None = None
) -> nn.Module:
    """
    Make a loaded [`LyricValenceModel`] ready for scoring, in place, and return it: evaluation mode, the last layer
    computing [CLS] only where it applies ([`ClsOnlyLastLayer`]), moved to `device` in `dtype` ("float32",
    "bfloat16", "float16"), and with `quantize="int8"` its Linear layers dynamically quantized to int8 (CPU only).
    The result is for `score_songs` and `forward` only: do not train or save it.

    Raises:
        UserError: an unknown dtype or quantization, or one the device cannot run.
    """
    device = torch.device(device)
    check_scoring_options(device, dtype, quantize)
    model.eval()
    if can_compute_cls_only(model):
        layers = encoder_layers(model)
        layers[-1] = ClsOnlyLastLayer(layers[-1])
    model.to(device=device, dtype=DTYPES[dtype])
    if quantize == "int8":
        # torch.ao's dynamic quantization, weights int8 per output channel (per tensor lost 2.5x more EmoBank Pearson
        # at the same speed, bench/SCORING_RESULTS.md), activations quantized per batch. The encoder only: the head
        # is 0.2% of the FLOPs, and it keeps float32 weights, which its forward reads for the input's dtype.
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        with warnings.catch_warnings():  # torch's deprecation notice of its quantized tensors, on every weight
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.ao.quantization.quantize_dynamic(model.encoder, {nn.Linear: qconfig}, inplace=True)
    return model
