"""The package's public API: what `lyric_valence` exports, and that importing it loads no heavy library."""

import subprocess
import sys

import pytest

import lyric_valence
from lyric_valence.errors import UserError
from modeling_lyric_valence import LyricValenceModel


def test_importing_the_package_loads_neither_torch_nor_transformers():
    code = "import sys, lyric_valence; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_every_public_name_resolves_to_its_defining_module():
    from configuration_lyric_valence import LyricValenceConfig
    from lyric_valence.hub import publish
    from lyric_valence.loading import load_scoring_model, score_songs
    from lyric_valence.pretrained import SHIPPED_MODELS, pretrained_model_path

    expected = {
        "LyricValenceConfig": LyricValenceConfig,
        "LyricValenceModel": LyricValenceModel,
        "load_scoring_model": load_scoring_model,
        "score_songs": score_songs,
        "publish": publish,
        "UserError": UserError,
        "pretrained_model_path": pretrained_model_path,
        "SHIPPED_MODELS": SHIPPED_MODELS,
    }
    assert sorted(lyric_valence.__all__) == sorted(expected)
    assert {name: getattr(lyric_valence, name) for name in lyric_valence.__all__} == expected
    with pytest.raises(AttributeError, match="no attribute 'REPO'"):
        lyric_valence.REPO  # noqa: B018


def test_score_songs_loads_the_model_and_gives_its_own_scores(tiny_model_dir, tokenizer):
    songs = ["the sun is out\nand we dance", "rain on the window\nall alone tonight"]
    expected = LyricValenceModel.from_pretrained(tiny_model_dir).score_songs(songs, tokenizer)
    assert lyric_valence.score_songs(songs, model=tiny_model_dir, device="cpu") == pytest.approx(expected, abs=1e-5)


def test_the_loader_refuses_a_missing_model_with_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such model folder"):
        lyric_valence.load_scoring_model(tmp_path / "nope", device="cpu")
