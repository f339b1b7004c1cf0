"""The repository stands alone: a copy of the committed tree, with nothing beside it, installs and runs the README's
quickstart; the wheel installs only the package and the three Hub files; a user's own `data/` and `train.py` don't
clash with it; mistyped flags are one-line errors."""

import io
import json
import os
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from lyric_valence import cli

# Budget flags only: the command is otherwise the README's `accelerate launch --cpu --num_processes 1 train.py`.
TINY_BUDGET = ["--max_train_songs", "64", "--max_eval_songs", "32", "--max_test_songs", "32", "--num_train_epochs", "1"]
WHEEL_TOP_LEVEL = {
    "lyric_valence",
    "configuration_lyric_valence.py",
    "modeling_lyric_valence.py",
    "pipeline_lyric_valence.py",
}


def committed_tree(destination: Path) -> Path:
    """The committed tree (`git archive HEAD`), as a user's clone holds it, unpacked into `destination`."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def virtual_environment_seeing_this_one(folder: Path) -> Path:
    """A new virtual environment whose path ends with this interpreter's site-packages (the installed dependencies);
    returns its python."""
    run([sys.executable, "-m", "venv", folder], cwd=folder.parent)
    python = folder / "bin" / "python"
    purelib = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=folder
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def run(command: list, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert process.returncode == 0, f"{command}\n{process.stdout[-2000:]}\n{process.stderr[-3000:]}"
    return process


@pytest.mark.slow
def test_readme_quickstart_runs_in_a_clone_with_nothing_beside_it(tmp_path):
    clone = committed_tree(tmp_path / "lyric-valence")
    assert not any((folder / "shared").exists() for folder in clone.parents)
    # The README's `pip install -e .`, into a fresh virtual environment that sees the dependencies already installed
    # (no network in tests: --no-build-isolation uses the installed setuptools).
    python = virtual_environment_seeing_this_one(tmp_path / "venv")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."], cwd=clone)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run(
        [python, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "train.py", *TINY_BUDGET],
        cwd=clone,
        env=env,
    )
    results = json.loads((clone / "outputs" / "lyric-valence" / "test_results.json").read_text())
    assert results["test_mse"] >= 0 and -1 <= results["test_pearson"] <= 1
    card = json.loads((clone / "outputs" / "lyric-valence" / "model_card.json").read_text())
    assert "emobank" in json.dumps(card)
    located = run([python, "-c", "import lyric_valence; print(lyric_valence.__file__)"], cwd=tmp_path).stdout
    assert Path(located.strip()).is_relative_to(clone)


@pytest.mark.slow
def test_wheel_holds_only_the_package_and_the_hub_files_and_leaves_a_users_data_package_alone(tmp_path):
    tree = committed_tree(tmp_path / "tree")
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", "."],
        cwd=tree,
    )
    (wheel,) = (tmp_path / "dist").glob("lyric_valence-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist() if ".dist-info/" not in name}
        archive.extractall(tmp_path / "site")
        metric_files = {name for name in archive.namelist() if name.startswith("lyric_valence/metrics/song_valence/")}
    assert top_level == WHEEL_TOP_LEVEL
    assert {Path(name).name for name in metric_files} == {"song_valence.py", "README.md"}  # the evaluate module

    project = tmp_path / "my-project"  # a user's project with its own `data` package and `train.py`
    (project / "data").mkdir(parents=True)
    (project / "data" / "__init__.py").write_text("OWNER = 'user'\n")
    (project / "train.py").write_text("OWNER = 'user'\n")
    check = (
        "import data, train, lyric_valence.cli, lyric_valence.data\n"
        "print(data.OWNER, train.OWNER, lyric_valence.cli.__file__, lyric_valence.data.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    owner, train_owner, cli_file, data_file = run([sys.executable, "-c", check], cwd=project, env=env).stdout.split()
    assert (owner, train_owner) == ("user", "user")
    assert Path(cli_file).is_relative_to(tmp_path / "site") and Path(data_file).is_relative_to(tmp_path / "site")


@pytest.mark.slow
def test_train_script_names_an_unknown_flag_and_the_closest_one():
    process = subprocess.run(
        [sys.executable, "train.py", "--train_file", "x.csv", "--output_dir", "unused"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines() == [
        "train.py: error: unrecognized argument --train_file (did you mean --data_file?)"
    ]


@pytest.mark.slow
def test_train_script_names_an_unknown_key_of_a_yaml_arguments_file(tmp_path):
    config = tmp_path / "args.yaml"
    config.write_text("output_dir: unused\nlearnig_rate: 0.001\n")
    process = subprocess.run([sys.executable, "train.py", str(config)], cwd=REPO, capture_output=True, text=True)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines() == [
        "train.py: error: unrecognized key learnig_rate (did you mean learning_rate?)"
    ]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["predict", "song.txt", "--text_colum", "lyrics"],
            "unrecognized argument --text_colum (did you mean --text_column?)",
        ),
        (["publish", "--repo_id", "me/x", "--privat"], "unrecognized argument --privat (did you mean --private?)"),
        (
            ["prepare", "lyrics.csv", "--out", "x", "--seeed", "3"],
            "unrecognized argument --seeed (did you mean --seed?)",
        ),
        (["predict", "--zzz"], "unrecognized argument --zzz"),
    ],
)
def test_every_subcommand_names_an_unknown_flag_in_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"lyric-valence {argv[0]}: error: {expected}"]


def test_subcommand_flags_take_both_spellings(tmp_path, capsys):
    argv = ["predict", "--text-column", "lyrics", "--id_column", "name", str(tmp_path / "missing.csv")]
    assert cli.main(argv) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
