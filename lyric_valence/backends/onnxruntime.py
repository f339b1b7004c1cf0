"""
The ONNX Runtime scoring backend (`lyric-valence predict --backend onnxruntime`, CPU): a loaded
[`LyricValenceModel`] exported to ONNX with its CLS-only last layer, fused by onnxruntime's transformer optimizer
(attention, layer norms, GELU) and, with `quantize="int8"`, its weights quantized to int8 per output channel; then
scored in the same token-budget batches as the torch path.

    scorer = OnnxRuntimeScorer(model, quantize="int8")
    scores = scorer.score_songs(songs, tokenizer)

optimum is the library users would expect for this, but its ONNX Runtime backend (`optimum-onnx` 0.1.0) requires
transformers<4.58 while this package needs transformers 5; hence the export, fusion and quantization calls of torch
and onnxruntime below. Speed and quality of each mode: bench/SCORING_RESULTS.md.
"""

import logging
import tempfile
import warnings
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from lyric_valence.backends.torch import prepare_for_scoring
from modeling_lyric_valence import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_SONGS_PER_BLOCK,
    LyricValenceModel,
    score_songs_in_batches,
)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class ChunkValences(torch.nn.Module):
    """The model's chunk valences as one plain tensor, shape `(chunks,)`: the one output the exported graph needs."""

    def __init__(self, model: LyricValenceModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits[:, 0]


def export_to_onnx(model: LyricValenceModel, path: Path) -> None:
    """Export `model` prepared for scoring (CLS-only last layer) with eager attention, the pattern onnxruntime fuses."""
    model.set_attn_implementation("eager")
    model = prepare_for_scoring(model, "cpu")
    example = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "chunks", 1: "tokens"}
    with warnings.catch_warnings():  # the tracer's notes on Python conditions it freezes, and the exporter's deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ChunkValences(model),
            (example, example, torch.zeros_like(example)),
            str(path),
            dynamo=False,  # the TorchScript exporter's graph is the one onnxruntime's BERT fusions recognise
            input_names=list(INPUT_NAMES),
            output_names=["valence"],
            opset_version=17,
            dynamic_axes={**dict.fromkeys(INPUT_NAMES, axes), "valence": {0: "chunks"}},
        )


def optimize_and_quantize(path: Path, encoder_config, quantize: str | None) -> Path:
    """onnxruntime's BERT fusions on the exported graph, then (`quantize="int8"`) dynamic int8, weights per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = path.with_name("fused.onnx")
    optimize_model(
        str(path),
        model_type="bert",
        num_heads=getattr(encoder_config, "num_attention_heads", 0),  # 0: read from the graph
        hidden_size=getattr(encoder_config, "hidden_size", 0),
    ).save_model_to_file(str(fused))
    if quantize is None:
        return fused
    quantized = path.with_name("int8.onnx")
    # Per-channel weight scales: per tensor lost more EmoBank Pearson at the same speed (bench/SCORING_RESULTS.md).
    # The fused operators have no ONNX type inference, hence the default tensor type.
    quantize_dynamic(
        str(fused),
        str(quantized),
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return quantized


class OnnxRuntimeScorer:
    """
    Scores songs like [`~LyricValenceModel.score_songs`] with an onnxruntime CPU session of `model`, exported,
    fused and (with `quantize="int8"`) quantized on construction, in a temporary folder (on 2 CPU cores: 11 s and
    1.5 GB peak for MiniLM, 43 s and 3.6 GB for bert-base).
    `model` is changed in place (eager attention, CLS-only last layer): do not train or save it afterwards.
    """

    def __init__(self, model: LyricValenceModel, quantize: str | None = None, threads: int | None = None):
        import onnxruntime

        self.config = model.config
        with tempfile.TemporaryDirectory(prefix="lyric-valence-onnx-") as folder:
            path = Path(folder) / "model.onnx"
            export_to_onnx(model, path)
            logging.disable(logging.WARNING)  # the quantizer's and optimizer's advice, printed on the root logger
            try:
                path = optimize_and_quantize(path, model.config.encoder, quantize)
            finally:
                logging.disable(logging.NOTSET)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or torch.get_num_threads()
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def score_songs(
        self,
        lyrics: list[str],
        tokenizer: PreTrainedTokenizerBase,
        batch_tokens: int | None = None,
        songs_per_block: int | None = None,
        show_progress: bool = False,
    ) -> list[float]:
        """Valence of each whole song in `lyrics`, as [`~LyricValenceModel.score_songs`] (defaults: the CPU's)."""
        return score_songs_in_batches(
            self._score_batch,
            lyrics,
            tokenizer,
            self.config,
            batch_tokens or DEFAULT_BATCH_TOKENS["cpu"],
            songs_per_block or DEFAULT_SONGS_PER_BLOCK["cpu"],
            show_progress,
        )

    def _score_batch(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # A tokenizer without token type ids leaves them to the encoder, which reads zeros; the graph takes them.
        inputs.setdefault("token_type_ids", torch.zeros_like(inputs["attention_mask"]))
        feed = {name: inputs[name].numpy() for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feed)[0])
