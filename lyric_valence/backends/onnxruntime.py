"""
The onnxruntime scoring backend (`lyric-valence predict --backend onnxruntime`, CPU): a [`LyricValenceModel`] exported
to ONNX with its CLS-only last layer, fused by onnxruntime's transformer optimizer (attention, layer norms, GELU) and,
with `quantize="int8"`, its weights quantized to int8 per output channel; then scored in the same token-budget
batches as the torch backend.

The export is paid once, as sentence-transformers keeps `onnx/model_qint8_*.onnx` next to a model: it is written to
`onnx/model.onnx` (or `onnx/model_qint8.onnx`) inside the model folder, or, for a Hub repository or a folder this
user cannot write, to `~/.cache/lyric-valence/onnx/<weights hash>/` (`$LYRIC_VALENCE_CACHE` moves it). Beside it, a
JSON key records what it was built from: the weights' and config's SHA-256, the precision and the exporter's
versions (torch, transformers, onnx, onnxruntime, `EXPORT_FORMAT`). A later run whose key matches loads the file
(and not even the torch weights); any difference rebuilds it.

    scorer = load_onnxruntime_scorer(folder, quantize="int8")
    scores = scorer.score_songs(songs, tokenizer)

optimum is the library users would expect for this, but its ONNX Runtime backend (`optimum-onnx` 0.1.0) requires
transformers<4.58 while this package needs transformers 5; hence the export, fusion and quantization calls of torch
and onnxruntime below. Speed and quality of each mode: bench/SCORING_RESULTS.md.
"""

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from lyric_valence import cache_home
from lyric_valence.backends.torch import prepare_for_scoring
from modeling_lyric_valence import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_MAX_CHUNKS_PER_SONG,
    DEFAULT_SONGS_PER_BLOCK,
    LyricValenceLexicalChannel,
    LyricValenceModel,
    score_songs_in_batches,
)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Bump when export_to_onnx or optimize_and_quantize change the graph they write: every kept export is then rebuilt.
EXPORT_FORMAT = 1
logger = logging.getLogger("lyric_valence")


class HeadValences(torch.nn.Module):
    """
    The head's chunk valences (the model's forward without its lexical channel) as one plain tensor, shape
    `(chunks,)`: the one output the exported graph needs.
    """

    def __init__(self, model: LyricValenceModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        pooled = self.model.encode_chunks(input_ids, attention_mask, token_type_ids).pooler_output
        return self.model.head(pooled)[:, 0]


def export_to_onnx(model: LyricValenceModel, path: Path) -> None:
    """
    Export `model` prepared for scoring (CLS-only last layer) with eager attention, the pattern onnxruntime fuses.
    The graph holds the encoder and head only ([`HeadValences`]): a lexical channel is computed in torch beside it
    ([`OnnxRuntimeScorer`]), its hashing and sparse counts having no faithful ONNX trace.
    """
    model.set_attn_implementation("eager")
    model = prepare_for_scoring(model, "cpu")
    example = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "chunks", 1: "tokens"}
    with (
        warnings.catch_warnings()
    ):  # the tracer's notes on Python conditions it freezes, and the exporter's deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            HeadValences(model),
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


def file_sha256(paths: list[Path]) -> str:
    """One SHA-256 over the SHA-256 of each file, in order."""
    digest = hashlib.sha256()
    for path in paths:
        file_digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                file_digest.update(block)
        digest.update(file_digest.digest())
    return digest.hexdigest()


def export_key(folder: Path, quantize: str | None) -> dict:
    """What an export of the model in `folder` is built from; a kept export whose key differs is stale."""
    return {
        "weights_sha256": file_sha256(sorted(folder.glob("model*.safetensors"))),
        "config_sha256": file_sha256([folder / "config.json"]),
        "precision": quantize or "float32",
        "versions": {name: version(name) for name in ("torch", "transformers", "onnx", "onnxruntime")},
        "export_format": EXPORT_FORMAT,
    }


def cache_root() -> Path:
    return cache_home() / "onnx"


def writable_folder(folder: Path) -> Path | None:
    """`folder`, created if needed, when this process can write into it; else None."""
    nearest = next(path for path in (folder, *folder.parents) if path.exists())
    if not os.access(nearest, os.W_OK):
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def kept_export(
    folder: Path, quantize: str | None, load_model: Callable[[], LyricValenceModel], beside_model: bool = True
) -> Path:
    """
    The ONNX file of the model in `folder` at precision `quantize`: the kept export when its key matches, else
    exported now from `load_model()` and kept (in `folder/onnx/` when `beside_model` and writable, else the cache).
    """
    key = export_key(folder, quantize)
    target = (beside_model and writable_folder(folder / "onnx")) or writable_folder(
        cache_root() / key["weights_sha256"][:16]
    )
    if target is None:
        raise OSError(f"no writable folder for the ONNX export of {folder} (set LYRIC_VALENCE_CACHE)")
    name = "model_qint8" if quantize else "model"
    onnx_file, key_file = target / f"{name}.onnx", target / f"{name}.json"
    if onnx_file.is_file() and key_file.is_file() and json.loads(key_file.read_text(encoding="utf-8")) == key:
        return onnx_file
    logger.warning(
        "exporting the model to ONNX for onnxruntime%s, once: kept in %s", " (int8)" if quantize else "", target
    )
    model = load_model()
    with tempfile.TemporaryDirectory(prefix="export-", dir=target) as scratch:
        path = Path(scratch) / "model.onnx"
        export_to_onnx(model, path)
        logging.disable(logging.WARNING)  # the quantizer's and optimizer's advice, printed on the root logger
        try:
            path = optimize_and_quantize(path, model.config.encoder, quantize)
        finally:
            logging.disable(logging.NOTSET)
        # The key last, each file replaced whole: a run killed half-way leaves a stale key, never a wrong file.
        key_file.unlink(missing_ok=True)
        os.replace(path, onnx_file)
        (Path(scratch) / "key.json").write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")
        os.replace(Path(scratch) / "key.json", key_file)
    return onnx_file


def load_onnxruntime_scorer(folder: str | Path, quantize: str | None = None, beside_model: bool = True):
    """The [`OnnxRuntimeScorer`] of the model in `folder` (written by train.py), from its kept or a new export."""
    from configuration_lyric_valence import LyricValenceConfig

    folder = Path(folder)
    onnx_file = kept_export(
        folder, quantize, lambda: LyricValenceModel.from_pretrained(folder, use_safetensors=True), beside_model
    )
    config = LyricValenceConfig.from_pretrained(folder)
    return OnnxRuntimeScorer(onnx_file, config, lexical_channel(folder, config) if config.lexical_buckets else None)


def lexical_channel(folder: Path, config) -> LyricValenceLexicalChannel:
    """The model's lexical channel alone, its `idf` and `weight` read from the safetensors files."""
    from safetensors import safe_open

    channel = LyricValenceLexicalChannel(config)
    state = {}
    for path in sorted(folder.glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            state.update(
                {
                    key.removeprefix("lexical."): weights.get_tensor(key)
                    for key in weights.keys()
                    if key.startswith("lexical.")
                }
            )
    channel.load_state_dict(state)
    return channel.eval()


class OnnxRuntimeScorer:
    """
    Scores songs like [`~LyricValenceModel.score_songs`] with an onnxruntime CPU session of an exported model
    (`onnx_file`, see [`kept_export`]); `config` is the model's, for chunking and aggregation; `lexical` its lexical
    channel, if it has one, whose chunk scores are added to the graph's.
    """

    def __init__(
        self,
        onnx_file: str | Path,
        config,
        lexical: LyricValenceLexicalChannel | None = None,
        threads: int | None = None,
    ):
        import onnxruntime

        self.config = config
        self.lexical = lexical
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def score_songs(
        self,
        lyrics: list[str],
        tokenizer: PreTrainedTokenizerBase,
        batch_tokens: int | None = None,
        songs_per_block: int | None = None,
        show_progress: bool = False,
        *,
        max_chunks_per_song: int | None = DEFAULT_MAX_CHUNKS_PER_SONG,
        capped_songs: list[int] | None = None,
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
            max_chunks_per_song=max_chunks_per_song,
            capped_songs=capped_songs,
        )

    def _score_batch(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # A tokenizer without token type ids leaves them to the encoder, which reads zeros; the graph takes them.
        inputs.setdefault("token_type_ids", torch.zeros_like(inputs["attention_mask"]))
        feed = {name: inputs[name].numpy() for name in self.input_names}
        scores = torch.from_numpy(self.session.run(None, feed)[0])
        if self.lexical is not None:
            with torch.inference_mode():
                scores = scores + self.lexical(inputs["input_ids"], inputs["attention_mask"])
        return scores
