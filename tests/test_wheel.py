"""The built wheel, installed in a fresh venv outside the repository, does every job of the `lyric-valence` command."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow  # a wheel build and a fresh venv

SONG = "Sunshine on my face, I'm dancing down the street\nnothing's gonna bring me down\n\nEmpty rooms and letters\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A new venv (dependencies from this interpreter's site-packages) holding only the wheel built from REPO."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            ".",
        ],
        cwd=REPO,
        check=True,
    )
    (wheel,) = (root / "dist").glob("lyric_valence-*.whl")
    venv.create(root / "venv", system_site_packages=True, with_pip=False)
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], check=True
    )
    work = root / "work"
    work.mkdir()
    return python, work


def run(installed, *args) -> subprocess.CompletedProcess:
    python, work = installed
    command = Path(python).parent / "lyric-valence"
    result = subprocess.run([str(command), *map(str, args)], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_package_comes_from_the_venv_not_the_repository(installed):
    python, work = installed
    location = subprocess.run(
        [str(python), "-c", "import lyric_valence, modeling_lyric_valence; print(lyric_valence.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(location).is_relative_to(Path(python).parent.parent)
    assert not Path(location).is_relative_to(REPO)


def test_every_command_runs_from_the_installed_wheel(installed, tiny_encoder_dir, lyrics_csv):
    _, work = installed
    model = work / "model"
    run(
        installed,
        "train",
        "--model_name_or_path",
        tiny_encoder_dir,
        "--data_file",
        lyrics_csv,
        "--output_dir",
        model,
        "--max_length",
        "64",
        "--stride",
        "16",
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--disable_tqdm",
        "True",
        "--report_to",
        "none",
    )
    assert {"test_results.json", "test_predictions.csv", "README.md", "config.json"} <= {
        p.name for p in model.iterdir()
    }

    song = work / "song.txt"
    song.write_text(SONG)
    scores = run(installed, "predict", song, "--model", model, "--device", "cpu", "--output", work / "scores.csv")
    assert (work / "scores.csv").read_text().count("\n") == 2, scores.stderr

    run(installed, "explain", song, "--model", model, "--device", "cpu", "--output_dir", work / "explained")
    assert sorted(p.suffix for p in (work / "explained").iterdir()) == [".html", ".png"]

    run(installed, "evaluate", model / "test_predictions.csv", "--output", work / "metrics.json")
    assert "mse" in json.loads((work / "metrics.json").read_text())

    run(installed, "prepare", lyrics_csv, "--out", work / "prepared")
    assert (work / "prepared" / "data_card.json").is_file()

    run(
        installed, "publish", "--model", model, "--repo_id", "me/tiny-valence", "--dry_run", "--stage_dir", work / "hub"
    )
    assert (work / "hub" / "handler.py").read_bytes() == (REPO / "handler.py").read_bytes()
    assert "me/tiny-valence" in (work / "hub" / "README.md").read_text()

    run(
        installed,
        "publish",
        "--space",
        "me/tiny-space",
        "--repo_id",
        "me/tiny-valence",
        "--dry_run",
        "--stage_dir",
        work / "space",
    )
    assert (work / "space" / "app.py").read_bytes() == (REPO / "app.py").read_bytes()
    assert {p.name for p in (work / "space" / "examples").iterdir()} == {p.name for p in (REPO / "examples").iterdir()}


def test_the_demo_app_loads_from_the_installed_wheel(installed):
    pytest.importorskip("gradio")
    python, work = installed
    built = subprocess.run(
        [str(python), "-c", "from lyric_valence.commands.demo import load_app; print(callable(load_app().build_demo))"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert built.stdout.strip() == "True", built.stderr[-3000:]


def test_the_shipped_songs_model_scores_by_default_offline_from_the_wheel(installed, tmp_path):
    python, work = installed
    examples = REPO / "examples"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), LYRIC_VALENCE_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [str(Path(python).parent / "lyric-valence"), "predict", *sorted(examples.iterdir()), "--format", "jsonl"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((REPO / "lyric_valence" / "pretrained_models" / "songs-minilm" / "build.json").read_text())
    scores = {Path(json.loads(line)["source"]).name: json.loads(line)["valence"] for line in result.stdout.splitlines()}
    assert scores == pytest.approx(recorded["example_scores"], abs=1e-6)
