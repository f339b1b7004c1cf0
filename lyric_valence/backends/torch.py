"""
The torch backend: a loaded [`LyricValenceModel`] made ready for fast catalogue scoring (device, precision, int8
quantization, and a last encoder layer that computes only what CLS pooling reads). The model's own `score_songs`
then scores it in token-budget batches.

    model = prepare_for_scoring(model, device="cpu", dtype="float32", quantize="int8")
    scores = model.score_songs(songs, tokenizer, batch_tokens=2048)

Which mode pays on which hardware, and what each costs in quality, is measured in bench/SCORING_RESULTS.md
(`python -m bench.scoring`).
"""

import warnings

import torch
from torch import nn

from lyric_valence.backends import DTYPES, check_scoring_options

TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}


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
        lyric_valence.errors.UserError: an unknown dtype or quantization, or one the device cannot run.
    """
    device = torch.device(device)
    check_scoring_options(device, dtype, quantize)
    model.eval()
    if can_compute_cls_only(model):
        layers = encoder_layers(model)
        layers[-1] = ClsOnlyLastLayer(layers[-1])
    model.to(device=device, dtype=TORCH_DTYPES[dtype])
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
