"""Line-level valence (`explain_song`), its HTML/PNG rendering, `lyric-valence explain`, and the Space folder."""

import ast
import inspect
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, original_song, tiny_bert_config
from huggingface_hub import SpaceCard
from matplotlib.colors import to_rgb

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.cli import main as cli_main
from lyric_valence.explanation_rendering import explanation_html, explanation_page
from modeling_lyric_valence import LyricValenceModel, SongExplanation, split_stanzas

SONG = (REPO / "examples" / "paper-boats.txt").read_text(encoding="utf-8")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "lyric_valence.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """The command in this process (no second torch import): exit code, stdout and stderr."""
    code = cli_main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.fixture(scope="module")
def model(tokenizer, one_torch_thread):
    torch.manual_seed(3)
    config = LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size), max_length=48, stride=8)
    return LyricValenceModel(config)


@pytest.fixture(scope="module")
def model_dir(model, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_split_stanzas_drops_blank_lines_and_trailing_spaces():
    assert split_stanzas("\n a  \nb\n\n \n\nc\n") == [[" a", "b"], ["c"]]


@pytest.mark.parametrize("method", ["line", "stanza", "occlusion"])
def test_every_line_gets_a_value_and_the_song_score_is_score_songs(model, tokenizer, method):
    explanation = model.explain_song(SONG, tokenizer, method=method)
    lines = [line.rstrip() for line in SONG.splitlines() if line.strip()]
    assert explanation.lines == lines and len(explanation.line_valence) == len(lines)
    assert explanation.stanza_index == [0, 0, 0, 0, 1, 1, 2, 2]
    assert explanation.song_valence == pytest.approx(model.score_songs([SONG], tokenizer)[0], abs=1e-6)
    assert explanation.method == method


def test_line_method_scores_each_line_alone(model, tokenizer):
    explanation = model.explain_song(SONG, tokenizer, method="line")
    assert explanation.line_valence == pytest.approx(model.score_songs(explanation.lines, tokenizer), abs=1e-6)


def test_occlusion_is_the_leave_one_out_pseudo_value_on_a_song_longer_than_one_chunk(model, tokenizer):
    song = original_song(random.Random(5), 24)  # about 200 tokens: several 48-token chunks
    explanation = model.explain_song(song, tokenizer, method="occlusion")
    n = len(explanation.lines)
    position, numbered = 7, iter(range(n))
    kept = [[line for line in stanza if next(numbered) != position] for stanza in split_stanzas(song)]
    without = "\n\n".join("\n".join(stanza) for stanza in kept if stanza)
    song_without = model.score_songs([without], tokenizer)[0]
    expected = n * explanation.song_valence - (n - 1) * song_without
    assert explanation.line_valence[position] == pytest.approx(expected, abs=1e-4)
    assert len(set(round(value, 6) for value in explanation.line_valence)) > 1  # lines differ


def test_stanza_method_uses_the_stanza_only(model, tokenizer):
    song = "alpha river light\nbeta candle\n\ngamma thunder"
    explanation = model.explain_song(song, tokenizer, method="stanza")
    texts = ["beta candle", "alpha river light", "alpha river light\nbeta candle"]
    first, second, stanza = model.score_songs(texts, tokenizer)
    assert explanation.line_valence[0] == pytest.approx(2 * stanza - first, abs=1e-5)
    assert explanation.line_valence[1] == pytest.approx(2 * stanza - second, abs=1e-5)
    assert explanation.line_valence[2] == pytest.approx(model.score_songs(["gamma thunder"], tokenizer)[0], abs=1e-6)


def test_a_one_line_song_is_its_own_line(model, tokenizer):
    explanation = model.explain_song("only one line here", tokenizer)
    assert explanation.line_valence == pytest.approx([explanation.song_valence], abs=1e-6)


@pytest.mark.parametrize(
    "lyrics, method, message", [(" \n ", "occlusion", "no lyrics"), ("a song", "shap", "unknown method")]
)
def test_bad_input_raises_value_error(model, tokenizer, lyrics, method, message):
    with pytest.raises(ValueError, match=message):
        model.explain_song(lyrics, tokenizer, method=method)


def test_html_colours_lines_around_the_song_score_and_escapes_text():
    explanation = SongExplanation(0.5, ["<b>up</b>", "down", "even"], [0.8, 0.2, 0.5], [0, 0, 1], "occlusion")
    fragment = explanation_html(explanation)
    assert "<b>up</b>" not in fragment and "&lt;b&gt;up&lt;/b&gt;" in fragment
    assert re.search(r'id="song-valence">0\.500<', fragment)
    colors = [to_rgb(color) for color in re.findall(r"background:(#[0-9a-f]{6})", fragment)]
    assert len(colors) == 3
    (up_r, _, up_b), (down_r, _, down_b), even = colors
    assert up_b > up_r and down_r > down_b  # blue above the song's valence, red below
    assert min(even) > 0.9  # the song's own valence is near white
    assert fragment.count('class="lv-stanza"') == 2
    page = explanation_page(explanation, title="a <song>")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page and "a &lt;song&gt;" in page


def test_explain_command_writes_a_page_and_a_curve_per_song(model, model_dir, tokenizer, tmp_path, capsys):
    song = tmp_path / "my-song.txt"
    song.write_text(SONG, encoding="utf-8")
    completed = run_in_process(
        capsys, "explain", song, "--model", model_dir, "--output_dir", tmp_path / "out", "--method", "line"
    )
    assert completed.returncode == 0, completed.stderr
    page = (tmp_path / "out" / "my-song.html").read_text(encoding="utf-8")
    assert page.count('class="lv-line"') == 8
    expected = model.score_songs([SONG], tokenizer)[0]
    assert f'id="song-valence">{expected:.3f}<' in page
    assert (tmp_path / "out" / "my-song.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert completed.stdout.split("\t")[1] == f"{expected:.4f}"


@pytest.mark.parametrize(
    "content, message", [(None, "no such file"), (b"caf\xe9 bad", "not valid UTF-8"), (b" \n", "no lyrics")]
)
def test_explain_bad_song_file_is_one_line_exit_2(model_dir, tmp_path, content, message, capsys):
    song = tmp_path / "song.txt"
    if content is not None:
        song.write_bytes(content)
    completed = run_in_process(capsys, "explain", song, "--model", model_dir, "--output_dir", tmp_path / "out")
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0] and "song.txt" in errors[0], completed.stderr


@pytest.mark.slow
def test_publish_space_dry_run_writes_a_ready_to_push_gradio_space(tmp_path):
    stage = tmp_path / "space"
    completed = run_cli(
        "publish",
        "--space",
        "me/lyric-valence-demo",
        "--repo_id",
        "me/lyric-valence-minilm",
        "--dry_run",
        "--stage_dir",
        stage,
    )
    assert completed.returncode == 0, completed.stderr
    files = completed.stdout.split()
    space_code = {
        "app.py",
        "lyric_valence/explanation_rendering.py",
        "lyric_valence/loading.py",
        "modeling_lyric_valence.py",
    }
    assert space_code | {"requirements.txt", "README.md"} <= set(files)
    assert any(name.startswith("examples/") for name in files)
    assert sorted(path.relative_to(stage).as_posix() for path in stage.rglob("*") if path.is_file()) == sorted(files)
    card = SpaceCard.load(stage / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == ["me/lyric-valence-minilm"] and card.data.sdk_version
    requirements = (stage / "requirements.txt").read_text().split()
    assert "torch" in requirements and any(line.startswith("transformers") for line in requirements)
    assert "nothing was uploaded" in completed.stderr


@pytest.mark.slow
def test_the_staged_space_runs_on_its_own_files(tmp_path):
    """What app.py imports from the package, and the model code, load from the Space folder alone (an editable
    install of this repository, which would fill any gap, is switched off)."""
    from lyric_valence.space import stage_space

    stage = tmp_path / "space"
    stage_space(stage, "me/demo", "me/lyric-valence-minilm")
    imported = sorted(
        node.module
        for node in ast.walk(ast.parse((stage / "app.py").read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module.startswith("lyric_valence")
    )
    code = (
        "import importlib, sys\n"
        "sys.meta_path[:] = [finder for finder in sys.meta_path if 'editable' not in repr(finder)]\n"
        f"modules = [importlib.import_module(name) for name in {[*imported, 'modeling_lyric_valence']!r}]\n"
        "print('\\n'.join(module.__name__ + ' ' + module.__file__ for module in sys.modules.values()\n"
        "      if module.__name__.startswith(('lyric_valence', 'modeling_', 'configuration_', 'pipeline_'))))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=stage, capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    files = dict(line.split(" ", 1) for line in completed.stdout.splitlines())
    assert {"lyric_valence.loading", "lyric_valence.explanation_rendering", "pipeline_lyric_valence"} <= set(files)
    assert all(Path(file).is_relative_to(stage) for file in files.values()), files


def test_publish_space_needs_a_hub_model_id(model_dir, tmp_path, capsys):
    completed = run_in_process(
        capsys, "publish", "--space", "me/demo", "--repo_id", model_dir, "--dry_run", "--stage_dir", tmp_path / "s"
    )
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert "must be a Hub id" in completed.stderr


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["explain", "song.txt", "--metod", "line"], "unrecognized argument --metod (did you mean --method?)"),
        (["demo", "--prot", "7860"], "unrecognized argument --prot (did you mean --port?)"),
    ],
)
def test_explain_and_demo_name_an_unknown_flag_in_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit:
        cli_main(argv)
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"lyric-valence {argv[0]}: error: {expected}"]


def test_explain_flags_take_both_spellings(model_dir, tmp_path, capsys):
    song = tmp_path / "song.txt"
    song.write_text("one line\n", encoding="utf-8")
    completed = run_in_process(capsys, "explain", song, "--model", model_dir, "--output-dir", tmp_path / "hyphen")
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "hyphen" / "song.html").is_file()


def test_publish_space_creates_a_gradio_space_and_uploads_the_staged_folder(tmp_path, monkeypatch):
    """The local Hub server of test_hub.py models no Space repositories, so the two calls are recorded here, each
    checked against the installed huggingface_hub's signature, and the uploaded folder is checked as it is sent."""
    from huggingface_hub import HfApi, RepoUrl

    from lyric_valence.space import publish_space

    monkeypatch.setenv("HF_TOKEN", "hf_fakeTOKENforTHEtest0123456789")
    calls, uploaded = [], {}

    class RecordingHub(HfApi):
        def create_repo(self, repo_id, **kwargs):
            inspect.signature(HfApi.create_repo).bind(self, repo_id, **kwargs)
            calls.append(("create_repo", repo_id, kwargs))
            return RepoUrl(f"{self.endpoint}/spaces/{repo_id}", endpoint=self.endpoint)

        def upload_folder(self, **kwargs):
            inspect.signature(HfApi.upload_folder).bind(self, **kwargs)
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))
            folder = Path(kwargs["folder_path"])
            files = (path for path in folder.rglob("*") if path.is_file())
            uploaded.update({path.relative_to(folder).as_posix(): path.read_bytes() for path in files})
            return SimpleNamespace(commit_url="https://hub.example/commit/1")

    result = publish_space("me/demo", "me/lyric-valence-minilm", private=True, api=RecordingHub())
    (create, space_id, create_kwargs), (upload, _, upload_kwargs) = calls
    assert (create, upload, space_id) == ("create_repo", "upload_folder", "me/demo")
    assert create_kwargs["repo_type"] == "space" and create_kwargs["space_sdk"] == "gradio" and create_kwargs["private"]
    assert upload_kwargs["repo_type"] == "space" and "me/lyric-valence-minilm" in upload_kwargs["commit_message"]
    assert sorted(uploaded) == result.files and uploaded["app.py"] == (REPO / "app.py").read_bytes()
    assert result.commit_url == "https://hub.example/commit/1"
