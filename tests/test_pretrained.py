"""The shipped songs models: songs-minilm from the package, offline; songs-mpnet's loading path with a stand-in encoder;
the build command, reproducible and free of the data's text."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest
import torch
from conftest import REPO, WORDS, assert_one_line_error, predict_in_process
from hub_server import HubServer
from huggingface_hub import HfApi
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from lyric_valence import TEMPLATES, build_pretrained, pretrained
from lyric_valence.pretrained import SHIPPED_WEIGHTS, build_record, pretrained_model_path, shipped_folder

EXAMPLES = sorted((TEMPLATES / "examples").iterdir(), key=lambda path: path.name)
SHIPPED_FILES = {"config.json", "tokenizer.json", "tokenizer_config.json", SHIPPED_WEIGHTS, "build.json", "README.md"}
STAND_IN = "songs-mpnet"  # its encoder comes from the Hub or a local folder: a tiny random BERT stands in for it


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cold lyric-valence cache and an offline, empty Hub cache for every test."""
    monkeypatch.setenv("LYRIC_VALENCE_CACHE", str(tmp_path / "lyric-valence-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def recorded_scores(name: str) -> list[float]:
    scores = build_record(name)["example_scores"]
    return [scores[path.name] for path in EXAMPLES]


def test_songs_minilm_loads_through_automodel_and_scores_the_examples_as_recorded():
    folder = pretrained_model_path("songs-minilm")
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    scores = model.score_songs([path.read_text(encoding="utf-8") for path in EXAMPLES], tokenizer)
    assert scores == pytest.approx(recorded_scores("songs-minilm"), abs=1e-6)
    assert model.config.encoder._name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert pretrained_model_path("songs-minilm") == folder  # assembled once, then read from the cache


def test_predict_scores_with_songs_minilm_by_default(capsys):
    code, out, err = predict_in_process(capsys, TEMPLATES / "examples", "--format", "jsonl")
    assert code == 0, err
    scores = [json.loads(line)["valence"] for line in out.splitlines()]
    assert scores == pytest.approx(recorded_scores("songs-minilm"), abs=1e-6)


def test_the_shipped_files_hold_weights_over_hashed_features_and_the_encoders_own_tokenizer():
    for name in pretrained.SHIPPED_MODELS:
        folder = shipped_folder(name)
        assert {path.name for path in folder.iterdir()} == SHIPPED_FILES
        tensors = load_file(folder / SHIPPED_WEIGHTS)
        assert {key.split(".")[0] for key in tensors} == {"head", "lexical"}
        assert tensors["lexical.index"].dtype == torch.int32 and bool((tensors["lexical.idf"] > 0).all())
        record = build_record(name)
        assert record["songs"] == 3277 and record["data_sha256"].startswith("677dd1d7")
        assert (
            record["holdout_summary"]["songs recipe"]["mse_mean"]
            < record["holdout_summary"]["mean predictor"]["mse_mean"]
        )
    minilm = json.loads((shipped_folder("songs-minilm") / "tokenizer.json").read_text())["model"]["vocab"]
    from lyric_valence import default_encoder_path

    packaged = json.loads((Path(default_encoder_path()) / "tokenizer.json").read_text())["model"]["vocab"]
    assert minilm == packaged  # no vocabulary of the training songs: the encoder's own


def test_unknown_shipped_names_are_one_line_errors(capsys):
    code, _, err = predict_in_process(capsys, EXAMPLES[0], "--model", "songs-large")
    assert_one_line_error(code, err, "--model songs-large", "songs-minilm", "songs-mpnet")


def synthetic_songs(path, count: int = 90, seed: int = 0):
    """Original text in the shared set's columns (lyrics, valence, artist, song): its words set its valence."""
    rng = random.Random(seed)
    bright, dark, neutral = WORDS[:5], WORDS[5:10], WORDS[10:]
    rows = []
    for i in range(count):
        valence = round(rng.random(), 3)
        lines = [
            " ".join(
                rng.choice(bright if rng.random() < valence * 0.5 else dark if rng.random() < 0.3 else neutral)
                for _ in range(rng.randint(4, 8))
            )
            for _ in range(rng.randint(3, 10))
        ]
        rows.append({"artist": f"artist {i % 25}", "song": f"song {i}", "lyrics": "\n".join(lines), "valence": valence})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory, tiny_encoder_dir):
    """songs-mpnet rebuilt twice by the build command on original text, with a tiny random BERT as its encoder."""
    root = tmp_path_factory.mktemp("shipped")
    data = synthetic_songs(root / "songs.csv")
    builds = []
    for build in ("first", "second"):
        output = root / build / STAND_IN
        argv = [
            STAND_IN,
            "--data_file",
            str(data),
            "--encoder_path",
            str(tiny_encoder_dir),
            "--output_dir",
            str(output),
            "--holdout_seeds",
            "42",
        ]
        assert build_pretrained.main(argv) == 0
        builds.append(output)
    return data, builds


@pytest.fixture
def shipped_stand_in(stand_in, monkeypatch):
    monkeypatch.setattr(pretrained, "SHIPPED", stand_in[1][0].parent)
    return stand_in[1][0]


def test_a_rebuild_gives_the_same_weights_and_writes_no_text_of_the_data(stand_in):
    data, (first, second) = stand_in
    assert {path.name for path in first.iterdir()} == SHIPPED_FILES
    weights = [load_file(folder / SHIPPED_WEIGHTS) for folder in (first, second)]
    for name, tensor in weights[0].items():
        assert torch.allclose(tensor.double(), weights[1][name].double(), atol=1e-9), name
    records = [json.loads((folder / "build.json").read_text()) for folder in (first, second)]
    assert records[0]["example_scores"] == records[1]["example_scores"]
    assert records[0]["songs"] == 90 and set(records[0]["holdout"]) == {"42"}
    lines = {line for text in pd.read_csv(data)["lyrics"] for line in text.splitlines()}
    for path in first.iterdir():
        if path.suffix in (".json", ".md"):
            text = path.read_text()
            assert not any(line in text for line in lines), path.name
    card = (first / "README.md").read_text()
    assert "Spotify valence" in card and "not distributed" in card and "refitted on all 90 songs" in card


def test_songs_mpnet_offline_without_a_cached_encoder_is_one_line(shipped_stand_in, capsys):
    code, _, err = predict_in_process(capsys, EXAMPLES[0], "--model", STAND_IN)
    assert_one_line_error(code, err, "sentence-transformers/all-mpnet-base-v2", "hf download", "--encoder_path")


def test_songs_mpnet_from_a_local_encoder_folder_scores_as_recorded(shipped_stand_in, tiny_encoder_dir, capsys):
    code, out, err = predict_in_process(
        capsys, TEMPLATES / "examples", "--model", STAND_IN, "--encoder_path", tiny_encoder_dir, "--format", "jsonl"
    )
    assert code == 0, err
    assert [json.loads(line)["valence"] for line in out.splitlines()] == pytest.approx(
        recorded_scores(STAND_IN), abs=1e-6
    )
    code, out, err = predict_in_process(capsys, EXAMPLES[0], "--model", STAND_IN)  # assembled: no encoder needed now
    assert code == 0, err


def test_songs_mpnet_refuses_other_encoder_weights(shipped_stand_in, tmp_path, tiny_encoder_dir, capsys):
    other = tmp_path / "other"
    AutoModel.from_pretrained(tiny_encoder_dir).save_pretrained(other)  # same shapes, different bytes
    with torch.no_grad():
        model = AutoModel.from_pretrained(other)
        model.embeddings.word_embeddings.weight.add_(0.01)
        model.save_pretrained(other)
    code, _, err = predict_in_process(capsys, EXAMPLES[0], "--model", STAND_IN, "--encoder_path", other)
    assert_one_line_error(code, err, "--model songs-mpnet", "not those the model was fitted on")


@pytest.mark.slow
def test_songs_mpnet_takes_its_encoder_from_the_hub_and_its_cache(
    shipped_stand_in, tiny_encoder_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # to upload the stand-in encoder
    server = HubServer({"owner-token": "sentence-transformers"}).start()
    try:
        api = HfApi(endpoint=server.endpoint, token="owner-token")
        api.create_repo("sentence-transformers/all-mpnet-base-v2")
        for name in ("config.json", "model.safetensors"):
            api.upload_file(
                path_or_fileobj=tiny_encoder_dir / name,
                path_in_repo=name,
                repo_id="sentence-transformers/all-mpnet-base-v2",
            )
        # A fresh process, as a user's: the Hub's address and a cold Hub cache from the environment.
        code = (
            "import sys; from pathlib import Path; from lyric_valence import pretrained; "
            "pretrained.SHIPPED = Path(sys.argv[1]); print(pretrained.pretrained_model_path('songs-mpnet'))"
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
        env.update(HF_ENDPOINT=server.endpoint, HF_HOME=str(tmp_path / "hf-home"))
        fetched = subprocess.run(
            [sys.executable, "-c", code, str(shipped_stand_in.parent)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    folder = Path(fetched.stdout.strip().splitlines()[-1])
    assert any(
        (tmp_path / "hf-home" / "hub").glob(
            "models--sentence-transformers--all-mpnet-base-v2/snapshots/*/model.safetensors"
        )
    )
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    scores = model.score_songs([path.read_text(encoding="utf-8") for path in EXAMPLES], tokenizer)
    assert scores == pytest.approx(recorded_scores(STAND_IN), abs=1e-6)
    assert str(REPO) not in (folder / "config.json").read_text()


def test_int8_on_a_songs_model_warns_that_it_moves_the_scores(caplog):
    from lyric_valence.loading import load_scoring_model

    with caplog.at_level("WARNING", logger="lyric_valence"):
        load_scoring_model("songs-minilm", "cpu", quantize="int8")
    assert "int8 moves by up to 0.13" in caplog.text
