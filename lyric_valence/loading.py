"""
Loading a trained model for scoring: one function, `load_scoring_model`, for `lyric-valence predict`, `explain`,
`demo` and the benchmarks.

    model, tokenizer = load_scoring_model("me/lyric-valence-minilm", device="cpu", backend="onnxruntime", quantize="int8")
    scores = model.score_songs(songs, tokenizer)

A model is a shipped songs model's name (`songs-minilm`, the default, or `songs-mpnet`: `lyric_valence.pretrained`), a
folder written by train.py or a Hub repository id; it is loaded with this package's own `LyricValenceModel`, never
`trust_remote_code`: naming a Hub repository cannot run its Python files (they are not even downloaded). Every problem
the user can fix is a one-line `UserError` naming the model or the option.
"""

import json
import logging
from pathlib import Path

from lyric_valence.errors import UserError
from lyric_valence.model_files import SCORING_FILES, TOKENIZER_FILES
from lyric_valence.pretrained import DEFAULT_SONGS_MODEL, SHIPPED_MODELS, pretrained_model_path

logger = logging.getLogger("lyric_valence")
DEFAULT_MODEL = DEFAULT_SONGS_MODEL
# Where train.py writes by default: named without its folder, the user most likely skipped training.
TRAINED_MODEL = "outputs/lyric-valence"


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
    """Raise a one-line `UserError` unless `folder` holds a lyric-valence config, safetensors weights and a tokenizer."""
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
        and its tokenizer.

        `device`: a torch device or its name (default: the one accelerate gives this process; the CPU for onnxruntime);
        `backend`: `"torch"` or `"onnxruntime"` (CPU; the export is kept and reused, `lyric_valence.backends.onnxruntime`);
        `dtype`: `"float32"`, `"bfloat16"` or `"float16"`; `quantize`: None or `"int8"` (CPU). Options are checked
        before any model is loaded. `encoder_path`: a local copy of a shipped model's encoder (songs-mpnet's, instead
    of the Hub's). Either backend scores with `score_songs(lyrics, tokenizer, batch_tokens=...)`; the torch one
        also explains with `explain_song`. Raises `UserError`.
    """
    from transformers import AutoTokenizer

    from configuration_lyric_valence import LyricValenceConfig
    from lyric_valence.backends import check_scoring_options
    from lyric_valence.backends.torch import prepare_for_scoring
    from modeling_lyric_valence import LyricValenceModel

    if device is None and backend == "onnxruntime":
        device = "cpu"  # the backend's only device, also on a machine whose process device is a GPU
    device = chosen_device(None if device is None else str(device))
    check_scoring_options(device, dtype, quantize, backend)
    name = str(model)
    folder = model_folder(name, encoder_path)
    check_model_folder(folder, name)
    try:
        # The config given: AutoTokenizer would otherwise read config.json as an unknown model type, with a warning.
        config = LyricValenceConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, config=config, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise UserError(
            f"--model {name}: the tokenizer cannot be loaded: {str(error).strip().splitlines()[0]}"
        ) from None
    if quantize and config.lexical_buckets:
        logger.warning(
            "--quantize %s: %s has a lexical channel, so it was fitted by ridge regression on standardised encoder "
            "features, which int8 moves by up to 0.13 per song (bench/SCORING_RESULTS.md); float32 keeps its scores",
            quantize,
            name,
        )
    if backend == "onnxruntime":
        from lyric_valence.backends.onnxruntime import load_onnxruntime_scorer

        # The export is kept beside the model in a folder of the user's; a Hub download's goes to the cache.
        return load_onnxruntime_scorer(folder, quantize, beside_model=Path(name).is_dir()), tokenizer
    loaded = LyricValenceModel.from_pretrained(folder, use_safetensors=True)
    return prepare_for_scoring(loaded, device, dtype, quantize), tokenizer


def score_songs(
    lyrics: list[str],
    model: str | Path = DEFAULT_MODEL,
    device=None,
    backend: str = "torch",
    dtype: str = "float32",
    quantize: str | None = None,
    batch_tokens: int | None = None,
) -> list[float]:
    """The valence of each whole song in `lyrics`: the model loaded by [`load_scoring_model`], then its `score_songs`."""
    scorer, tokenizer = load_scoring_model(model, device, backend, dtype, quantize)
    return scorer.score_songs(lyrics, tokenizer, batch_tokens=batch_tokens)
