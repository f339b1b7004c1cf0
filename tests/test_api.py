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
    from lyric_valence.loading import ScoringOptions, load_scoring_model, score_songs
    from lyric_valence.pretrained import SHIPPED_MODELS, pretrained_model_path

    expected = {
        "LyricValenceConfig": LyricValenceConfig,
        "LyricValenceModel": LyricValenceModel,
        "load_scoring_model": load_scoring_model,
        "ScoringOptions": ScoringOptions,
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


def test_scoring_options_load_and_score_as_the_keyword_api_does(tiny_model_dir, tokenizer):
    import torch

    songs = ["the sun is out\nand we dance", "rain on the window\nall alone tonight"]
    options = lyric_valence.ScoringOptions(tiny_model_dir, device=torch.device("cpu"), batch_tokens=64)
    assert (options.model, options.device) == (str(tiny_model_dir), "cpu")  # paths and devices kept as their names
    model, loaded_tokenizer = options.load()
    capped = []
    scores = options.score(model, loaded_tokenizer, songs, capped_songs=capped)
    assert capped == [] and scores == pytest.approx(options.score_songs(songs), abs=1e-6)
    keyword = lyric_valence.score_songs(songs, model=tiny_model_dir, device="cpu", batch_tokens=64)
    assert scores == pytest.approx(keyword, abs=1e-6)


@pytest.mark.parametrize("field", ["batch_tokens", "max_chunks_per_song"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_scoring_options_refuse_a_count_that_is_not_positive(field, value):
    with pytest.raises(UserError, match=f"--{field} {value}: must be a positive integer"):
        lyric_valence.ScoringOptions(**{field: value})


def test_scoring_options_are_the_flags_of_predict_and_the_model_flags_of_explain_and_demo(capsys):
    from lyric_valence.commands import demo, explain, predict

    options, args = predict.parser().parse_args_into_dataclasses(
        ["song.txt", "--encoder-path", "enc", "--batch_tokens", "512", "--max-chunks-per-song", "3", "-q"]
    )
    assert options == lyric_valence.ScoringOptions(encoder_path="enc", batch_tokens=512, max_chunks_per_song=3)
    assert args.inputs == ["song.txt"] and args.quiet
    options, args = explain.parser().parse_args_into_dataclasses(["song.txt", "--model", "m", "--device", "cpu"])
    assert options == lyric_valence.ScoringOptions("m", device="cpu") and args.songs == ["song.txt"]
    assert demo.parser().parse_args_into_dataclasses([])[0] == lyric_valence.ScoringOptions()
    with pytest.raises(SystemExit) as exit:
        explain.parser().parse_args_into_dataclasses(["song.txt", "--dtype", "bfloat16"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "lyric-valence explain: error: unrecognized argument --dtype"
    ]
