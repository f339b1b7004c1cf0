"""Shared fixtures: the packaged tokenizer, tiny random BERT encoders, and lyrics-like files of original text."""

import random
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lyric_valence import default_encoder_path  # noqa: E402

WORDS = (
    "light morning river paper window silver engine garden thunder candle harbor velvet orbit lantern meadow "
    "compass whisper marble ember willow cobalt ladder echo violet canyon feather signal copper tide"
).split()


def tiny_bert_config(vocab_size: int, layers: int = 4) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=512,
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: on a shared 2-core machine a second torch thread only spins (up to 100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(default_encoder_path())


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tokenizer):
    """A folder holding a random 4-layer, 32-wide BERT and the packaged tokenizer, like a Hub encoder repo."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(tiny_bert_config(tokenizer.vocab_size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def original_song(rng: random.Random, lines: int) -> str:
    """Made-up lyrics: lines of random words, with a repeated chorus, so nothing copyrighted is used."""
    chorus = " ".join(rng.choice(WORDS) for _ in range(7))
    verses = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) for _ in range(lines)]
    return "\n".join(line if i % 4 else f"{line}\n{chorus}" for i, line in enumerate(verses))


def write_kaggle_csv(path: Path, songs: int = 40, seed: int = 0) -> Path:
    """A file in the Kaggle '150K Lyrics Labeled with Spotify Valence' layout with short and long songs."""
    rng = random.Random(seed)
    rows = [
        {
            "artist": f"artist {i % 9}",
            "seq": original_song(rng, rng.choice([6, 30, 120])),
            "song": f"song {i}",
            "label": round(rng.random(), 3),
        }
        for i in range(songs)
    ]
    pd.DataFrame(rows).to_csv(path)  # index written unnamed, as in the Kaggle file
    return path


@pytest.fixture
def lyrics_csv(tmp_path):
    return write_kaggle_csv(tmp_path / "lyrics.csv")


def predict_in_process(capsys, *args) -> tuple[int, str, str]:
    """`lyric-valence predict ARGS` in this process: (exit code, stdout, stderr)."""
    from lyric_valence import cli

    try:
        code = cli.main(["predict", *map(str, args)])
    except SystemExit as exit:  # argparse
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, stderr, *expected):
    """Exit code 2, no traceback, and one `error:` line (progress bars aside) holding every `expected` text."""
    assert code == 2 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in errors[0], errors[0]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A folder holding a tiny random lyric-valence model (2 layers, 32-token chunks, stride 8) and the tokenizer."""
    from configuration_lyric_valence import LyricValenceConfig
    from modeling_lyric_valence import LyricValenceModel

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(1)
    model = LyricValenceModel(
        LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), max_length=32, stride=8)
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
