"""
Publishing to the Hub: `train.py --push_to_hub` and `lyric-valence publish`, the pushed repository (merged model at
the root, peft adapter in adapter/, card, handler.py), its model card, and loading it back in a fresh process.

No server on PyPI implements the Hub's upload API (see README, "Publish to the Hub"), so uploads are recorded by a
subclass of `HfApi` that checks each call against the installed huggingface_hub's signatures and copies what
`upload_folder` would select (huggingface_hub's own `filter_repo_objects` with the same patterns) into a folder per
repo and revision: the repository as the Hub would hold it. That folder is then loaded the way users load the repo
(`from_pretrained` takes the same code path for a local folder) in a fresh process with a cold HF_HOME, offline.
Unreachable-Hub errors go through the real HTTP client against a closed port on 127.0.0.1.
"""

import inspect
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi, ModelCard, RepoUrl, constants
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

import lyric_valence.hub
import train
from conftest import REPO, original_song, write_kaggle_csv
from lyric_valence.card import REPORTED_METRICS
from lyric_valence.cli import main as cli_main
from lyric_valence.hub import PublishError, publish, take_over_hub_push

TOKEN = "hf_sentinelTOKENneverPRINTED0123456789"  # a fake token: it must show up in no output and no file
NAMESPACE = "test-user"  # what the recorded Hub answers for a bare repo name
TINY_RUN = [
    "--max_length", "64", "--stride", "16", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "8", "--logging_steps", "5", "--seed", "7", "--disable_tqdm", "True",
]
EXPECTED_FILES = {
    "README.md", "handler.py", "config.json", "model.safetensors", "configuration_lyric_valence.py",
    "modeling_lyric_valence.py", "pipeline_lyric_valence.py", "tokenizer.json", "tokenizer_config.json",
    "test_results.json", "eval_results.json", "train_results.json", "all_results.json", "training_args.json",
    "test_scatter.png", "loss_curve.png", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RecordingHub(HfApi):
    """An `HfApi` whose repository calls are recorded and whose uploads land in `remote/<repo_id>/<revision>`."""

    calls: list = []
    remote: Path = Path()

    def _record(self, method: str, *args, **kwargs) -> None:
        inspect.signature(getattr(HfApi, method)).bind(self, *args, **kwargs)  # valid for this huggingface_hub
        self.calls.append((method, args, kwargs))

    def create_repo(self, repo_id, **kwargs):
        self._record("create_repo", repo_id, **kwargs)
        full_id = repo_id if "/" in repo_id else f"{NAMESPACE}/{repo_id}"
        return RepoUrl(f"{self.endpoint}/{full_id}", endpoint=self.endpoint)

    def create_branch(self, repo_id, **kwargs):
        self._record("create_branch", repo_id, **kwargs)

    def upload_folder(self, **kwargs):
        self._record("upload_folder", **kwargs)
        folder = Path(kwargs["folder_path"])
        paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        ignore = list(kwargs.get("ignore_patterns") or []) + DEFAULT_IGNORE_PATTERNS
        target = self.remote / kwargs["repo_id"] / (kwargs.get("revision") or "main")
        shutil.rmtree(target, ignore_errors=True)
        for path in filter_repo_objects(paths, allow_patterns=kwargs.get("allow_patterns"), ignore_patterns=ignore):
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / path, target / path)
        return SimpleNamespace(commit_url=f"{self.endpoint}/{kwargs['repo_id']}/commit/0000000")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Token in the environment, huggingface_hub pointed at a closed local port, uploads recorded."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        monkeypatch.setattr(RecordingHub, "calls", [])
        monkeypatch.setattr(RecordingHub, "remote", tmp_path_factory.mktemp("remote"))
        monkeypatch.setattr(lyric_valence.hub, "HfApi", RecordingHub)
        yield RecordingHub


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory, tiny_encoder_dir):
    """A tiny LoRA run with --push_to_hub to a bare repo name, private, on branch v1: (output folder, pushed repo)."""
    folder = tmp_path_factory.mktemp("push-run")
    data = write_kaggle_csv(folder / "lyrics.csv", songs=30)
    output = folder / "lyric-valence-tiny"
    argv = [
        "train.py", "--model_name_or_path", str(tiny_encoder_dir), "--data_file", str(data), "--output_dir",
        str(output), "--lora_num_layers", "2", *TINY_RUN, "--push_to_hub", "--hub_model_id", "lyric-valence-tiny",
        "--hub_private_repo", "True", "--hub_revision", "v1",
    ]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(sys, "argv", argv)
        train.main()
    return output, hub.remote / NAMESPACE / "lyric-valence-tiny" / "v1"


def test_push_to_hub_makes_one_commit_of_the_complete_repository_after_training(pushed, hub):
    output, repo = pushed
    # The Trainer pushed nothing itself (its repo creation would have hit the closed port and failed the run).
    assert [call[0] for call in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    (_, (name,), create), (_, (full_id,), branch), (_, _, upload) = hub.calls
    assert name == "lyric-valence-tiny" and create["private"] is True and create["exist_ok"] is True
    assert full_id == f"{NAMESPACE}/lyric-valence-tiny" and branch == {"branch": "v1", "exist_ok": True, "repo_type": "model"}
    assert upload["repo_id"] == full_id and upload["revision"] == "v1"
    assert "MSE" in upload["commit_message"]
    assert {path.relative_to(repo).as_posix() for path in repo.rglob("*") if path.is_file()} == EXPECTED_FILES
    assert any(output.glob("checkpoint-*/optimizer.pt")), "the run kept its checkpoints locally"
    adapter_config = json.loads((repo / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == json.loads((output / "training_args.json").read_text())["model"]["model_name_or_path"]
    assert adapter_config["modules_to_save"] == ["head"]
    assert (repo / "handler.py").read_bytes() == (REPO / "handler.py").read_bytes()


def test_the_token_is_written_nowhere(pushed):
    for folder in pushed:
        for path in folder.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def test_card_metadata_loads_back_with_the_run_metrics(pushed):
    output, repo = pushed
    card = ModelCard.load(repo / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.language == "en" and data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification" and {"lyrics", "valence", "peft"} <= set(data.tags)
    assert data.datasets == ["lyrics"] and len(data.widget) == 2
    assert data.base_model is None, "a local encoder folder is no Hub id: left out of the metadata"
    assert data.model_name == f"{NAMESPACE}/lyric-valence-tiny"
    metrics = json.loads((output / "test_results.json").read_text())
    expected = {name: metrics[f"test_{name}"] for name in REPORTED_METRICS if math.isfinite(metrics[f"test_{name}"])}
    assert {result.metric_type: result.metric_value for result in data.eval_results} == expected
    assert {result.dataset_split for result in data.eval_results} == {"test"}
    for heading in ("## Intended use", "## How to use", "## Training data", "## Training procedure", "## Evaluation", "## Limitations"):
        assert heading in card.text
    assert "![Predicted against true valence on the test split](test_scatter.png)" in card.text
    assert (repo / "test_scatter.png").is_file()
    assert "audio" in card.text.split("## Limitations")[1]
    assert f'AutoModel.from_pretrained("{NAMESPACE}/lyric-valence-tiny", trust_remote_code=True, revision="v1")' in card.text
    assert 'subfolder="adapter"' in card.text and "lyric-valence predict" in card.text


LOADER = r"""
import importlib.util, json, re, sys
from pathlib import Path

jobs = json.loads(sys.argv[1])
results = {}
for job in jobs:
    folder, songs = job["folder"], job["songs"]
    out = results.setdefault(job["name"], {})
    readme = Path(folder, "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    for block in blocks:  # the card's own snippets, with the repo id pointing at the downloaded folder
        code = block.replace(f'"{job["repo_id"]}"', repr(folder)).replace('"full lyrics of song one ..."', "*songs")
        namespace = {"songs": songs}
        exec(code, namespace)
        key = "peft_snippet" if "PeftModel" in code else "automodel_snippet"
        out[key] = namespace["model"].score_songs(songs, namespace["tokenizer"])
        if "scorer" in namespace:
            out["pipeline"] = [namespace["scorer"](song)[0]["score"] for song in songs]
    spec = importlib.util.spec_from_file_location("handler", Path(folder, "handler.py"))
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    endpoint = handler.EndpointHandler(folder)
    out["handler"] = [item["score"] for item in endpoint({"inputs": songs})]
    out["handler_one"] = endpoint({"inputs": songs[0]})
print("RESULTS " + json.dumps(results))
"""


def fresh_process_scores(tmp_path, jobs) -> dict:
    """Run LOADER in a new interpreter: cold HF_HOME, offline, no token, outside the source tree."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(tmp_path / "cold-hf-home"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    completed = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(jobs)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


def songs_for_scoring() -> list[str]:
    rng = random.Random(11)
    return [original_song(rng, 3), original_song(rng, 40), original_song(rng, 12)]  # the long one makes many chunks


def local_scores(output: Path, songs: list[str]) -> list[float]:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(output, trust_remote_code=True)
    return model.score_songs(songs, AutoTokenizer.from_pretrained(output, trust_remote_code=True))


def test_pushed_repositories_load_in_a_fresh_process_and_predict_like_the_local_model(pushed, hub, tmp_path):
    output, repo = pushed
    # The same run again, as an adapter-only repository (no merged weights), through the publish command.
    assert cli_main(["publish", "--model", str(output), "--repo_id", "test-org/lyric-valence-adapter", "--adapter_only"]) == 0
    adapter_repo = hub.remote / "test-org" / "lyric-valence-adapter" / "main"
    assert not (adapter_repo / "model.safetensors").exists() and (adapter_repo / "adapter" / "adapter_model.safetensors").is_file()
    songs = songs_for_scoring()
    jobs = [
        {"name": "full", "folder": str(repo), "repo_id": f"{NAMESPACE}/lyric-valence-tiny", "songs": songs},
        {"name": "adapter", "folder": str(adapter_repo), "repo_id": "test-org/lyric-valence-adapter", "songs": songs},
    ]
    results = fresh_process_scores(tmp_path, jobs)
    expected = local_scores(output, songs)
    assert set(results["full"]) == {"automodel_snippet", "pipeline", "peft_snippet", "handler", "handler_one"}
    assert set(results["adapter"]) == {"peft_snippet", "handler", "handler_one"}  # its card shows PEFT only
    for name, scores in results.items():
        for way in ("automodel_snippet", "pipeline", "peft_snippet", "handler"):
            if way in scores:
                assert scores[way] == pytest.approx(expected, abs=1e-5), (name, way)
        assert scores["handler_one"] == [{"label": "valence", "score": pytest.approx(expected[0], abs=1e-5)}]
    assert len(set(round(score, 6) for score in expected)) == len(songs), "songs score differently"


def test_dry_run_with_a_hub_encoder_names_it_in_the_card_and_the_adapter(pushed, tmp_path, capsys):
    output, _ = pushed
    stage = tmp_path / "stage"
    argv = ["publish", "--model", str(output), "--repo_id", "me/tiny", "--base_model", "test-org/tiny-bert", "--dry_run",
            "--stage_dir", str(stage)]
    assert cli_main(argv) == 0
    listed = capsys.readouterr().out.split()
    assert set(listed) == EXPECTED_FILES
    assert json.loads((stage / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "test-org/tiny-bert"
    card = ModelCard.load(stage / "README.md")
    assert card.data.base_model == "test-org/tiny-bert"
    assert "revision=" not in card.text and "lyric-valence predict --model me/tiny" in card.text


def run_cli(tmp_path, *args, token: str | None = TOKEN, endpoint: str | None = None):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    env["HF_ENDPOINT"] = endpoint or f"http://127.0.0.1:{closed_port()}"
    return subprocess.run(
        [sys.executable, "-m", "lyric_valence.cli", "publish", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )


def assert_one_line_error(completed, expected: str) -> None:
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "lyric-valence publish: error:" in lines[0] and expected in lines[0], completed.stderr
    assert TOKEN not in completed.stdout + completed.stderr


def test_unreachable_hub_is_a_one_line_error_without_the_token(pushed, tmp_path):
    completed = run_cli(tmp_path, "--model", str(pushed[0]), "--repo_id", "me/tiny", "--private", "--revision", "v2")
    assert_one_line_error(completed, "could not reach the Hub at http://127.0.0.1:")


def test_user_errors_are_one_line_errors(pushed, tmp_path):
    output = pushed[0]
    assert_one_line_error(run_cli(tmp_path, "--model", str(output), "--repo_id", "me/tiny", token=None), "HF_TOKEN")
    assert_one_line_error(run_cli(tmp_path, "--model", str(tmp_path / "nope"), "--repo_id", "me/tiny"), "no such folder")
    no_adapter = tmp_path / "head-only"
    shutil.copytree(output, no_adapter, ignore=shutil.ignore_patterns("adapter", "checkpoint-*"))
    assert_one_line_error(
        run_cli(tmp_path, "--model", str(no_adapter), "--repo_id", "me/tiny", "--adapter_only", "--dry_run"), "adapter"
    )


def test_train_refuses_a_token_flag_and_needs_a_token_before_training(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "run"), push_to_hub=True, hub_token="hf_flag")
    with pytest.raises(PublishError, match="HF_TOKEN"):
        take_over_hub_push(args)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), push_to_hub=True)
    with pytest.raises(PublishError, match="hf auth login"):
        take_over_hub_push(args)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push = take_over_hub_push(args)
    assert push.repo_id == "run" and args.push_to_hub is False  # the Trainer will not push checkpoints itself


def test_publish_refuses_a_folder_that_is_not_a_training_output(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PublishError, match="config.json"):
        publish(tmp_path / "empty", "me/tiny", dry_run=True)
