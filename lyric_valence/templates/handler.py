"""
Custom handler for Hugging Face Inference Endpoints: scores whole songs with chunk averaging.

This file travels to the Hub at the root of a published lyric-valence repository, next to the model and its custom
code, so it imports torch and transformers only (peft too, for a repository that holds the adapter alone).

Request:  {"inputs": "full lyrics ..."}
      or  {"inputs": ["song one ...", "song two ..."], "parameters": {"batch_tokens": 16384}}
Response: [{"label": "valence", "score": 0.42}]  one entry per song, in input order.
"""

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.dynamic_module_utils import get_class_from_dynamic_module

# The config fields that, with the pretrained encoder, rebuild the model a LoRA adapter was trained on.
BASE_CONFIG_FIELDS = ("head_hidden_size", "head_dropout", "pooling", "max_length", "stride", "aggregation")


def load_adapter_model(repo_id_or_path: str, subfolder: str = "adapter", **hub_kwargs):
    """
    A published LoRA model as a peft `PeftModel`: the encoder named by the adapter config (`subfolder`), wrapped by
    the repository's `LyricValenceModel.from_encoder_pretrained` with the head and chunking fields of its
    `config.json`, plus the adapter and trained head. `merge_and_unload()` makes it a plain `LyricValenceModel`.
    `hub_kwargs` (e.g. `revision`) go to every download. The one home of these steps: `lyric_valence.hub` and the
    model card's PEFT snippet load this function from the repository.
    """
    from peft import PeftConfig, PeftModel

    config = AutoConfig.from_pretrained(repo_id_or_path, trust_remote_code=True, **hub_kwargs)
    model_class = get_class_from_dynamic_module(
        "modeling_lyric_valence.LyricValenceModel", repo_id_or_path, **hub_kwargs
    )
    encoder = PeftConfig.from_pretrained(repo_id_or_path, subfolder=subfolder, **hub_kwargs).base_model_name_or_path
    base = model_class.from_encoder_pretrained(encoder, **{name: getattr(config, name) for name in BASE_CONFIG_FIELDS})
    return PeftModel.from_pretrained(base, repo_id_or_path, subfolder=subfolder, **hub_kwargs)


def _has_merged_weights(path: Path) -> bool:
    return (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()


class EndpointHandler:
    """Loads the repository once; each call scores one song (a string) or many (a list of strings)."""

    def __init__(self, path: str = ""):
        folder = Path(path or ".")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        if _has_merged_weights(folder):
            self.model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        else:
            # An adapter-only repository: the encoder, the LoRA adapter and the trained head, merged.
            self.model = load_adapter_model(str(folder)).merge_and_unload()
        self.model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        self.label = self.model.config.id2label[0]

    def __call__(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = data.get("inputs", data) if isinstance(data, dict) else data
        parameters = (data.get("parameters") if isinstance(data, dict) else None) or {}
        songs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(songs, list) or not songs:
            raise ValueError('"inputs" must be a song\'s lyrics (a string) or a non-empty list of them')
        batch_tokens = parameters.get("batch_tokens")  # default: the model's own, by device type
        batch_tokens = None if batch_tokens is None else int(batch_tokens)
        scores = self.model.score_songs(songs, self.tokenizer, batch_tokens=batch_tokens)
        return [{"label": self.label, "score": float(score)} for score in scores]
