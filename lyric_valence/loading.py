"""
Loading a trained model for scoring: `ScoringOptions` (the model, device, backend, precision, batches and cap of a
scoring run: the flags of `lyric-valence predict`, passed whole to the loader, predict and the Ray workers) and its
`load`, the one loader of `lyric-valence predict`, `explain`, `demo`, the Gradio app and the benchmarks.

    options = ScoringOptions("me/lyric-valence-minilm", device="cpu", backend="onnxruntime", quantize="int8")
    model, tokenizer = options.load()
    scores = options.score(model, tokenizer, songs)
    model, tokenizer = load_scoring_model("me/lyric-valence-minilm", device="cpu")   # the same loader, by keywords

A model is a shipped songs model's name (`songs-minilm`, the default, or `songs-mpnet`: `lyric_valence.pretrained`), a
folder written by train.py or a Hub repository id; it is loaded with this package's own `LyricValenceModel`, never
`trust_remote_code`: naming a Hub repository cannot run its Python files (they are not even downloaded). Every problem
the user can fix is a one-line `UserError` naming the model or the option.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lyric_valence.backends import BACKENDS, DTYPES, QUANTIZATIONS, check_scoring_options
from lyric_valence.errors import UserError
from lyric_valence.model_files import SCORING_FILES, TOKENIZER_FILES
from lyric_valence.pretrained import DEFAULT_SONGS_MODEL, SHIPPED_MODELS, pretrained_model_path
from modeling_lyric_valence import DEFAULT_MAX_CHUNKS_PER_SONG

logger = logging.getLogger("lyric_valence")
DEFAULT_MODEL = DEFAULT_SONGS_MODEL
# Where train.py writes by default: named without its folder, the user most likely skipped training.
TRAINED_MODEL = "outputs/lyric-valence"
# The fields of `ScoringOptions` that choose the model and where it runs: the flags of every command that loads one.
MODEL_FIELDS = ("model", "encoder_path", "device")


@dataclass
class ScoringOptions:
    """
    How songs are scored: the model, where it runs, its backend and precision, the token budget of a forward pass and
    the cap on a very long song. The fields are the flags of `lyric-valence predict` (`explain` and `demo` take the
    `MODEL_FIELDS`), with their help; `load` gives the model ready for scoring and its tokenizer, `score` scores with
    it. `model` and `encoder_path` may be given as paths and `device` as a `torch.device`; `max_chunks_per_song=None`
    (from Python only) scores every chunk. A bad count is a `UserError`; the other options are checked by `load`,
    before any model is loaded.
    """

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "A shipped model: songs-minilm (the default, offline) or songs-mpnet (bert-base-sized; its encoder "
            "comes from the Hub on first use), both predicting the Spotify (audio) valence of whole songs from their "
            "lyrics; or a folder written by train.py (outputs/lyric-valence: the EmoBank quickstart predicts text "
            "valence) or a Hub repo id holding one, loaded with this package's classes, never with remote code. "
            "Default: %(default)s."
        },
    )
    encoder_path: str | None = field(
        default=None,
        metadata={
            "help": "For songs-mpnet: a local copy of its encoder, sentence-transformers/all-mpnet-base-v2 (default: "
            "the Hub's, downloaded once into its cache)."
        },
    )
    device: str | None = field(
        default=None,
        metadata={"help": "torch device, e.g. cpu, cuda, cuda:1 (default: the process's accelerator)."},
    )
    backend: str = field(
        default="torch",
        metadata={
            "choices": BACKENDS,
            "help": "torch (default), or onnxruntime on CPU: the model exported to ONNX and fused by onnxruntime on "
            "the first run, the export kept in the model folder's onnx/ (or ~/.cache/lyric-valence) for later runs "
            "(needs pip install onnxruntime onnx); with --quantize int8 the fastest CPU mode at float32's quality "
            "(bench/SCORING_RESULTS.md).",
        },
    )
    dtype: str = field(
        default="float32",
        metadata={
            "choices": DTYPES,
            "help": "Precision of the model. On a GPU, bfloat16 or float16: faster than float32 at float32's quality "
            "(bench/SCORING_RESULTS.md); float16 needs a GPU. Default: float32.",
        },
    )
    quantize: str | None = field(
        default=None,
        metadata={
            "choices": QUANTIZATIONS,
            "help": "int8: dynamic int8 quantization, weights per channel, CPU only, with --dtype float32. Recommended "
            "with --backend onnxruntime (float32's quality); not with torch (torch.ao loses Pearson). Speed and "
            "quality of each mode: bench/SCORING_RESULTS.md.",
        },
    )
    batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per forward pass: length-sorted chunks are batched so that chunks x longest chunk stays "
            "within it; at least the model's max_length (default: 2048 on CPU, 65536 on GPU; "
            "bench/SCORING_RESULTS.md)."
        },
    )
    max_chunks_per_song: int | None = field(
        default=DEFAULT_MAX_CHUNKS_PER_SONG,
        metadata={
            "metavar": "N",
            "help": "Chunks scored per song at most: a longer song is scored on its first N chunks (as if its text "
            "ended there), named on stderr and counted in the summary. The default, %(default)s, is about 24,600 "
            "tokens with 512-token chunks and stride 128, many times the longest real song, so only a pathological "
            "one (a book or a log pasted whole) is cut, and it costs a catalogue no more than that.",
        },
    )

    def __post_init__(self):
        self.model = str(self.model)
        self.encoder_path = None if self.encoder_path is None else str(self.encoder_path)
        self.device = None if self.device is None else str(self.device)
        for name in ("batch_tokens", "max_chunks_per_song"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserError(f"--{name} {value}: must be a positive integer")

    def score_settings(self) -> dict:
        """The options that decide the scores (not only how fast they come): a resumed run must keep them."""
        return {
            "model": self.model,
            "backend": self.backend,
            "dtype": self.dtype,
            "quantize": self.quantize,
            "max_chunks_per_song": self.max_chunks_per_song,
        }

    def load(self):
        """
        The model `self.model` (a shipped model's name, a folder written by train.py or a Hub repository id) ready for
        scoring, and its tokenizer.

        On `device` (default: the one accelerate gives this process; the CPU for onnxruntime), with `backend` (the
        onnxruntime export is kept and reused, `lyric_valence.backends.onnxruntime`), `dtype` and `quantize`, all
        checked before any model is loaded; `encoder_path`: a local copy of a shipped model's encoder (songs-mpnet's,
        instead of the Hub's). Either backend scores with `score` (or the model's `score_songs`); the torch one also
        explains with `explain_song`. Raises `UserError`, also when `batch_tokens` is below the model's max_length.
        """
        from transformers import AutoTokenizer

        from configuration_lyric_valence import LyricValenceConfig
        from lyric_valence.backends.torch import prepare_for_scoring
        from modeling_lyric_valence import LyricValenceModel

        device = self.device
        if device is None and self.backend == "onnxruntime":
            device = "cpu"  # the backend's only device, also on a machine whose process device is a GPU
        device = chosen_device(device)
        check_scoring_options(device, self.dtype, self.quantize, self.backend)
        name = self.model
        folder = model_folder(name, self.encoder_path)
        check_model_folder(folder, name)
        try:
            # The config given: AutoTokenizer would otherwise read config.json as an unknown model type, with a warning.
            config = LyricValenceConfig.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder, config=config, trust_remote_code=False)
        except (OSError, ValueError) as error:
            raise UserError(
                f"--model {name}: the tokenizer cannot be loaded: {str(error).strip().splitlines()[0]}"
            ) from None
        if self.batch_tokens is not None and self.batch_tokens < config.max_length:
            raise UserError(
                f"--batch_tokens {self.batch_tokens}: must be at least the model's max_length ({config.max_length}), "
                "so that a full chunk fits in a batch"
            )
        if self.quantize and config.lexical_buckets:
            logger.warning(
                "--quantize %s: %s has a lexical channel, so it was fitted by ridge regression on standardised encoder "
                "features, which int8 moves by up to 0.13 per song (bench/SCORING_RESULTS.md); float32 keeps its "
                "scores",
                self.quantize,
                name,
            )
        if self.backend == "onnxruntime":
            from lyric_valence.backends.onnxruntime import load_onnxruntime_scorer

            # The export is kept beside the model in a folder of the user's; a Hub download's goes to the cache.
            return load_onnxruntime_scorer(folder, self.quantize, beside_model=Path(name).is_dir()), tokenizer
        loaded = LyricValenceModel.from_pretrained(folder, use_safetensors=True)
        return prepare_for_scoring(loaded, device, self.dtype, self.quantize), tokenizer

    def score(self, scorer, tokenizer, lyrics: list[str], capped_songs: list[int] | None = None) -> list[float]:
        """
        The valence of each whole song in `lyrics` by `scorer` (from `load`), in `batch_tokens` budgets, each song
        cut to its first `max_chunks_per_song` chunks; the positions of the cut songs are appended to `capped_songs`.
        """
        return scorer.score_songs(
            lyrics,
            tokenizer,
            batch_tokens=self.batch_tokens,
            max_chunks_per_song=self.max_chunks_per_song,
            capped_songs=capped_songs,
        )

    def score_songs(self, lyrics: list[str]) -> list[float]:
        """Load the model (`load`) and score `lyrics` with it (`score`)."""
        scorer, tokenizer = self.load()
        return self.score(scorer, tokenizer, lyrics)


def check_device(name: str):
    """The torch device `name`, checked to exist on this machine before any model is loaded."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cpu":
        return device
    backend = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)
    if backend is None or not backend.is_available():
        raise UserError(f"--device {name}: no {device.type} device on this machine; use --device cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise UserError(f"--device {name}: this machine has {count} {device.type} device(s), numbered from 0")
    return device


def chosen_device(name: str | None):
    """The device `--device name` names, checked, or else the one accelerate gives this process."""
    from accelerate import PartialState

    return check_device(name) if name else PartialState().device


def model_folder(name: str, encoder_path: str | Path | None = None) -> Path:
    """
    The local folder of model `name`: the folder itself, a shipped model's (assembled on first use, its encoder from
    `encoder_path` if given), or a Hub repository's weights, config and tokenizer.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    path = Path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"--model {name}: a file, not a model folder")
    if name in SHIPPED_MODELS:
        return pretrained_model_path(name, encoder_path)
    if name == TRAINED_MODEL:
        raise UserError(
            f"--model {name}: no such folder; train a model first (`accelerate launch train.py` writes it) "
            "or pass --model FOLDER or a Hub repo id"
        )
    try:
        validate_repo_id(name)
        is_repo_id = name.count("/") == 1
    except HFValidationError:
        is_repo_id = False
    if not is_repo_id:
        raise UserError(
            f"--model {name}: no such model folder (nor a shipped model: {', '.join(SHIPPED_MODELS)}; nor a Hub repo "
            "id such as user/name)"
        )
    try:
        return Path(snapshot_download(name, allow_patterns=list(SCORING_FILES)))
    except RepositoryNotFoundError:
        raise UserError(
            f"--model {name}: no such folder, and no such Hub repository (or it is private or gated: `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise UserError(f"--model {name}: the Hub repository has no such revision") from None
    except LocalEntryNotFoundError:
        raise UserError(
            f"--model {name}: no such folder, and the Hub cannot be reached to download it "
            "(offline, and not in the local cache)"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise UserError(f"--model {name}: Hub download failed: {str(error).strip().splitlines()[0]}") from None


def check_model_folder(folder: Path, name: str) -> None:
    """
    Raise a one-line `UserError` unless `folder` holds a lyric-valence config, safetensors weights and a tokenizer.
    """
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"--model {name}: not a trained model folder (no config.json)")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        raise UserError(f"--model {name}: config.json is not a JSON object") from None
    if model_type != "lyric-valence":
        raise UserError(
            f"--model {name}: a {model_type or 'untyped'} model, not a lyric-valence one (config.json model_type); "
            "train one with train.py"
        )
    if not any(folder.glob("*.safetensors")):
        raise UserError(f"--model {name}: no safetensors weights; pickled weights (pytorch_model.bin) are never loaded")
    if not any((folder / file).is_file() for file in TOKENIZER_FILES):
        raise UserError(f"--model {name}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); train.py saves them")


def load_scoring_model(
    model: str | Path = DEFAULT_MODEL,
    device=None,
    backend: str = "torch",
    dtype: str = "float32",
    quantize: str | None = None,
    encoder_path: str | Path | None = None,
):
    """
    The model `model` (a shipped model's name, a folder written by train.py or a Hub repository id) ready for scoring,
    and its tokenizer: `ScoringOptions(model, ...).load()`, whose fields the arguments are.

    `device`: a torch device or its name (default: the one accelerate gives this process; the CPU for onnxruntime);
    `backend`: `"torch"` or `"onnxruntime"` (CPU); `dtype`: `"float32"`, `"bfloat16"` or `"float16"`; `quantize`: None
    or `"int8"` (CPU); `encoder_path`: a local copy of a shipped model's encoder. Raises `UserError`.
    """
    options = ScoringOptions(
        model, encoder_path=encoder_path, device=device, backend=backend, dtype=dtype, quantize=quantize
    )
    return options.load()


def score_songs(
    lyrics: list[str],
    model: str | Path = DEFAULT_MODEL,
    device=None,
    backend: str = "torch",
    dtype: str = "float32",
    quantize: str | None = None,
    batch_tokens: int | None = None,
    max_chunks_per_song: int | None = DEFAULT_MAX_CHUNKS_PER_SONG,
    encoder_path: str | Path | None = None,
) -> list[float]:
    """
    The valence of each whole song in `lyrics`: `ScoringOptions(model, ...).score_songs(lyrics)`, the model loaded as
    by [`load_scoring_model`], then scored in `batch_tokens` budgets, each song cut to `max_chunks_per_song` chunks.
    """
    options = ScoringOptions(
        model,
        encoder_path=encoder_path,
        device=device,
        backend=backend,
        dtype=dtype,
        quantize=quantize,
        batch_tokens=batch_tokens,
        max_chunks_per_song=max_chunks_per_song,
    )
    return options.score_songs(lyrics)
