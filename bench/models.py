"""The encoders the benchmarks run, under the lyric-valence head: the packaged all-MiniLM-L6-v2 (pretrained), the
shipped songs-minilm model as it ships (its encoder with the fitted head and lexical channel), a bert-base-shaped
encoder with random weights (speed only; needs only a WordPiece vocab.txt), or a tiny random one (1 layer, 32 wide: the
memory runs, where the model's own memory should not hide the engine's)."""

import argparse
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertTokenizer, PreTrainedTokenizerBase

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence import FINETUNING_ATTENTION_DROPOUT, default_encoder_path
from lyric_valence.pretrained import pretrained_model_path
from modeling_lyric_valence import LyricValenceModel

# The encoders of `--encoder`, as results files describe them.
ENCODERS = {
    "minilm": "all-MiniLM-L6-v2 (packaged, 6 layers, 384 wide)",
    "songs-minilm": "the shipped songs-minilm model (all-MiniLM-L6-v2 fine-tuned, lexical channel)",
    "bert-base": "bert-base-shaped encoder (random weights, 12 layers, 768 wide)",
}
RANDOM_SHAPES = {
    "bert-base": {},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48},
}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --encoder and --vocab_file, as every speed benchmark takes them."""
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available).")
    help_ = "; ".join(f"{name}: {description}" for name, description in ENCODERS.items())
    parser.add_argument("--encoder", default="minilm", choices=ENCODERS, help=help_ + ".")
    help_ = "WordPiece vocab.txt for --encoder bert-base (default: the packaged MiniLM's, "
    parser.add_argument("--vocab_file", default=None, help=help_ + "which is bert-base-uncased's).")


def load_tokenizer(encoder: str = "minilm", vocab_file: str | None = None) -> PreTrainedTokenizerBase:
    """The packaged MiniLM tokenizer, or an uncased WordPiece tokenizer built from `vocab_file` for bert-base."""
    if encoder == "minilm":
        return AutoTokenizer.from_pretrained(default_encoder_path())
    if encoder == "songs-minilm":
        return AutoTokenizer.from_pretrained(pretrained_model_path(encoder), trust_remote_code=True)
    path = Path(vocab_file or Path(default_encoder_path()) / "vocab.txt")
    vocabulary = {token: index for index, token in enumerate(path.read_text(encoding="utf-8").splitlines())}
    return BertTokenizer(vocab=vocabulary, do_lower_case=True, model_max_length=512)


def build_model(encoder: str, vocab_size: int, reference: bool = False, seed: int = 0) -> LyricValenceModel:
    """A fresh lyric-valence model: MiniLM weights loaded, or a random encoder of RANDOM_SHAPES (512 positions). Ours
    has train.py's default of no dropout on attention probabilities; the `reference` keeps the encoder's own dropouts
    (0.1 everywhere in both encoders), as the reference notebook trained bert-base."""
    torch.manual_seed(seed)
    overrides = {} if reference else {"attention_probs_dropout_prob": FINETUNING_ATTENTION_DROPOUT}
    if encoder == "minilm":
        return LyricValenceModel.from_encoder_pretrained(default_encoder_path(), encoder_config_overrides=overrides)
    if encoder == "songs-minilm":
        return LyricValenceModel.from_pretrained(pretrained_model_path(encoder))
    encoder_config = BertConfig(vocab_size=vocab_size, **RANDOM_SHAPES[encoder], **overrides)
    return LyricValenceModel(LyricValenceConfig(encoder=encoder_config))


def save_model(folder, model, tokenizer) -> str:
    """`model` and `tokenizer` saved in `folder`, as `lyric-valence predict --model` reads them."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def import_training_module() -> types.ModuleType:
    """`lyric_valence.trainer`, also without the `datasets` package (the GPU machine): it names `datasets.Dataset` only
    in `chunk_split`, which the benchmarks never call, so a placeholder stands in while it is imported (after peft and
    transformers' Trainer, which probe for `datasets` and must see it missing)."""
    if importlib.util.find_spec("datasets"):
        return importlib.import_module("lyric_valence.trainer")
    import peft  # noqa: F401
    import transformers.trainer  # noqa: F401

    sys.modules["datasets"] = types.SimpleNamespace(Dataset=None)
    try:
        return importlib.import_module("lyric_valence.trainer")
    finally:
        del sys.modules["datasets"]
