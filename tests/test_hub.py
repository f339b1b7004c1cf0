"""
Publishing to the Hub and loading back, over huggingface_hub's real HTTP client against `tests/hub_server.py` (a
local server speaking the Hub's API on 127.0.0.1; see its docstring and tests/README.md for what it reproduces).

Every Hub path of the package runs in a fresh process with `HF_ENDPOINT` pointing at the server and a cold `HF_HOME`:
`train.py --push_to_hub` (private, branch v1), `lyric-valence publish` (full; `--adapter_only --private --revision`;
a second push to the same repo), and loading: the card's own snippets (AutoModel, pipeline, PEFT), `handler.py`
fetched with `hf_hub_download`, `lyric_valence.hub.load_peft_model`, `revision=<first commit>`, and
`lyric-valence predict --model repo_id`, each compared with the local model. Failures: no token, a wrong token,
another user's repository, and the server dying in the middle of a commit.
"""

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, original_song, write_kaggle_csv
from hub_server import HubServer
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors.torch import load_file, save_file

from lyric_valence.card import REPORTED_METRICS
from lyric_valence.cli import main as cli_main
from lyric_valence.errors import UserError
from lyric_valence.hub import publish, take_over_hub_push

TOKEN = "hf_sentinelTOKENneverPRINTED0123456789"  # test-user's token: it must show up in no output and no file
OTHER_TOKEN = "hf_otherUSERtoken0123456789abcdefghij"
NAMESPACE = "test-user"
TRAIN_REPO = f"{NAMESPACE}/lyric-valence-tiny"  # train.py --push_to_hub: private, branch v1
PUBLIC_REPO = f"{NAMESPACE}/lyric-valence-public"  # lyric-valence publish: two models, one after the other
ADAPTER_REPO = f"{NAMESPACE}/lyric-valence-adapter"  # --adapter_only --private --revision v2, encoder on the Hub
ENCODER_REPO = f"{NAMESPACE}/tiny-bert"
TINY_RUN = [
    "--max_length",
    "64",
    "--stride",
    "16",
    "--num_train_epochs",
    "1",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
    "--logging_steps",
    "5",
    "--seed",
    "7",
    "--disable_tqdm",
    "True",
]
EXPECTED_FILES = {
    "README.md",
    "handler.py",
    "config.json",
    "model.safetensors",
    "configuration_lyric_valence.py",
    "modeling_lyric_valence.py",
    "pipeline_lyric_valence.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "test_results.json",
    "eval_results.json",
    "train_results.json",
    "all_results.json",
    "training_args.json",
    "test_scatter.png",
    "loss_curve.png",
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
}
# What huggingface_hub prints while it retries a request (http_backoff); anything else on stderr is an error.
RETRY_NOTICES = ("thrown while requesting", "Retrying in", "HTTP Error")


def fresh_env(tmp_path: Path, endpoint: str, token: str | None = TOKEN) -> dict:
    """The environment of a new process: this Hub, a cold HF_HOME, the token or none, one torch thread."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=tempfile.mkdtemp(prefix="cold-hf-home-", dir=tmp_path),
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",  # tiny matrices: on a shared 2-core machine a second thread only spins
    )
    if token:
        env["HF_TOKEN"] = token
    return env


def run_fresh(tmp_path, argv, *, endpoint, token=TOKEN, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=tmp_path,
        env=fresh_env(tmp_path, endpoint, token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(tmp_path, *args, endpoint: str, token: str | None = TOKEN):
    return run_fresh(tmp_path, ["-m", "lyric_valence.cli", "publish", *args], endpoint=endpoint, token=token)


def assert_one_line_error(completed, *expected: str) -> str:
    """Exit 2, no traceback, the token nowhere, and stderr ending in one `error:` line that holds `expected`.
    Lines before it may only be progress: the package's own `lyric-valence:` notes and huggingface_hub's retries."""
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert TOKEN not in completed.stdout + completed.stderr
    *before, last = completed.stderr.strip().splitlines()
    assert last.startswith("lyric-valence publish: error:"), completed.stderr
    for text in expected:
        assert text in last, last
    for line in before:
        assert "error" not in line.lower() or any(notice in line for notice in RETRY_NOTICES), completed.stderr
    return last


def file_digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def commits_of(hub: HubServer, repo_id: str, branch: str = "main") -> list[str]:
    """The commit shas of `branch`, oldest first."""
    repo = hub.repos[repo_id]
    shas, sha = [], repo.branches[branch]
    while sha is not None:
        shas.append(sha)
        sha = repo.commits[sha].parent
    return shas[::-1]


@pytest.fixture(scope="module")
def hub():
    """The local Hub: test-user (TOKEN) and other-user (OTHER_TOKEN)."""
    server = HubServer({TOKEN: NAMESPACE, OTHER_TOKEN: "other-user"}).start()
    yield server
    server.stop()
    assert server.unhandled == [], "requests this server does not model"


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory, tiny_encoder_dir):
    """A tiny LoRA run of train.py --push_to_hub to a bare repo name, private, on branch v1: its output folder."""
    folder = tmp_path_factory.mktemp("push-run")
    data = write_kaggle_csv(folder / "lyrics.csv", songs=30)
    output = folder / "lyric-valence-tiny"
    argv = [
        str(REPO / "train.py"),
        "--model_name_or_path",
        str(tiny_encoder_dir),
        "--data_file",
        str(data),
        "--output_dir",
        str(output),
        "--lora_num_layers",
        "2",
        *TINY_RUN,
        "--push_to_hub",
        "--hub_model_id",
        "lyric-valence-tiny",
        "--hub_private_repo",
        "True",
        "--hub_revision",
        "v1",
    ]
    completed = run_fresh(folder, argv, endpoint=hub.endpoint)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert TOKEN not in completed.stdout + completed.stderr
    return output


def second_model(output: Path, folder: Path) -> Path:
    """A copy of a run's output whose head answers 0.05 higher, in the merged model and in the adapter alike: a
    second model to push to the same repository."""
    shutil.copytree(output, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    for weights in (folder / "model.safetensors", folder / "adapter" / "adapter_model.safetensors"):
        tensors = load_file(weights)
        (key,) = [name for name in tensors if name.endswith("head.out_proj.bias")]
        tensors[key] += 0.05
        save_file(tensors, weights, metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def public_pushes(hub, pushed, tmp_path_factory):
    """
    `lyric-valence publish` of the run to PUBLIC_REPO (main), then of a second model to the same repo, during whose
    commit the server dies; after a restart the same command finishes the push. Returns the second model's folder,
    the first commit's sha, the failed run, what it left behind (output folder unchanged? main's sha) and the re-run.
    """
    tmp_path = tmp_path_factory.mktemp("publish")
    first = run_cli(tmp_path, "--model", str(pushed), "--repo_id", PUBLIC_REPO, endpoint=hub.endpoint)
    assert first.returncode == 0, first.stderr[-3000:]
    first_sha = hub.repos[PUBLIC_REPO].branches["main"]

    model_b = second_model(pushed, tmp_path / "model-b")
    before = file_digests(model_b)
    hub.die_during_next_commit()
    died = run_cli(tmp_path, "--model", str(model_b), "--repo_id", PUBLIC_REPO, endpoint=hub.endpoint)
    assert not hub.alive
    left_behind = {"files": file_digests(model_b) == before, "main": hub.repos[PUBLIC_REPO].branches["main"]}
    hub.restart()
    again = run_cli(tmp_path, "--model", str(model_b), "--repo_id", PUBLIC_REPO, endpoint=hub.endpoint)
    assert again.returncode == 0, again.stderr[-3000:]
    return {"model_b": model_b, "first_sha": first_sha, "died": died, "left_behind": left_behind, "again": again}


@pytest.fixture(scope="module")
def adapter_push(hub, pushed, tmp_path_factory, tiny_encoder_dir):
    """The encoder uploaded as ENCODER_REPO, and the run's adapter published to ADAPTER_REPO naming it."""
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo(ENCODER_REPO)
    api.upload_folder(repo_id=ENCODER_REPO, folder_path=tiny_encoder_dir)
    args = [
        "--model",
        str(pushed),
        "--repo_id",
        ADAPTER_REPO,
        "--adapter_only",
        "--private",
        "--revision",
        "v2",
        "--base_model",
        ENCODER_REPO,
    ]
    completed = run_cli(tmp_path_factory.mktemp("adapter"), *args, endpoint=hub.endpoint)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.mark.slow
def test_push_to_hub_makes_one_private_commit_of_the_complete_repository_after_training(hub, pushed):
    repo = hub.repos[TRAIN_REPO]  # the bare name landed in the token owner's namespace
    assert repo.private and repo.owner == NAMESPACE
    # One commit on v1 after the initial one; main untouched; the Trainer pushed no checkpoint of its own.
    initial, commit = commits_of(hub, TRAIN_REPO, "v1")
    assert commits_of(hub, TRAIN_REPO) == [initial]
    assert [line for line in hub.requests if "/commit/" in line and TRAIN_REPO in line] == [
        f"POST /api/models/{TRAIN_REPO}/commit/v1"
    ]
    files = repo.commits[commit].files
    assert set(files) == EXPECTED_FILES | {".gitattributes"}
    assert "MSE" in repo.commits[commit].message
    assert any(pushed.glob("checkpoint-*/optimizer.pt")), "the run kept its checkpoints locally"
    adapter_config = json.loads(files["adapter/adapter_config.json"])
    assert (
        adapter_config["base_model_name_or_path"]
        == json.loads((pushed / "training_args.json").read_text())["model"]["model_name_or_path"]
    )
    assert adapter_config["modules_to_save"] == ["head"]
    assert files["handler.py"] == (REPO / "handler.py").read_bytes()
    assert files["model.safetensors"] == (pushed / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_private_repositories_are_invisible_without_their_owners_token(hub, pushed, adapter_push):
    for repo_id, revision in ((TRAIN_REPO, "v1"), (ADAPTER_REPO, "v2")):
        assert HfApi(endpoint=hub.endpoint, token=TOKEN).model_info(repo_id, revision=revision).private
        for token in (False, OTHER_TOKEN):
            with pytest.raises(RepositoryNotFoundError):
                HfApi(endpoint=hub.endpoint, token=token).model_info(repo_id, revision=revision)


@pytest.mark.slow
def test_the_token_is_written_nowhere(hub, pushed, public_pushes, adapter_push):
    for folder in (pushed, public_pushes["model_b"]):
        for path in folder.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        for commit in repo.commits.values():
            for path, content in commit.files.items():
                assert TOKEN.encode() not in content, (repo.repo_id, path)


@pytest.mark.slow
def test_card_metadata_loads_back_with_the_run_metrics(hub, pushed):
    readme = hub.repos[TRAIN_REPO].resolve("v1").files["README.md"].decode()
    card = ModelCard(readme)
    data = card.data
    assert data.license == "apache-2.0" and data.language == "en" and data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification" and {"lyrics", "valence", "peft"} <= set(data.tags)
    assert data.datasets == ["lyrics"] and len(data.widget) == 2
    assert data.base_model is None, "a local encoder folder is no Hub id: left out of the metadata"
    assert data.model_name == TRAIN_REPO
    metrics = json.loads((pushed / "test_results.json").read_text())
    expected = {name: metrics[f"test_{name}"] for name in REPORTED_METRICS if math.isfinite(metrics[f"test_{name}"])}
    assert {result.metric_type: result.metric_value for result in data.eval_results} == expected
    assert {result.dataset_split for result in data.eval_results} == {"test"}
    for heading in (
        "## Intended use",
        "## How to use",
        "## Training data",
        "## Training procedure",
        "## Evaluation",
        "## Limitations",
    ):
        assert heading in card.text
    assert "![Predicted against true valence on the test split](test_scatter.png)" in card.text
    assert "audio" in card.text.split("## Limitations")[1]
    assert f'AutoModel.from_pretrained("{TRAIN_REPO}", trust_remote_code=True, revision="v1")' in card.text
    assert 'subfolder="adapter"' in card.text and "lyric-valence predict" in card.text


@pytest.mark.slow
def test_a_server_dying_mid_commit_is_one_line_and_the_same_command_finishes_the_push(hub, public_pushes):
    last = assert_one_line_error(
        public_pushes["died"], PUBLIC_REPO, "could not reach the Hub", "to push it: lyric-valence publish"
    )
    assert f"--model {public_pushes['model_b']}" in last
    assert public_pushes["left_behind"] == {"files": True, "main": public_pushes["first_sha"]}, "nothing half-done"
    # The second push is a second commit: initial, first model, second model. Unchanged files were not sent again.
    initial, first, second = commits_of(hub, PUBLIC_REPO)
    assert first == public_pushes["first_sha"]
    repo = hub.repos[PUBLIC_REPO]
    changed = {
        path for path, content in repo.commits[second].files.items() if repo.commits[first].files.get(path) != content
    }
    assert changed == {"model.safetensors", "adapter/adapter_model.safetensors"}
    assert public_pushes["again"].stdout.strip() == f"{hub.endpoint}/{PUBLIC_REPO}/commit/{second}"


@pytest.mark.slow
def test_the_adapter_only_push_is_private_on_its_branch_without_merged_weights(hub, adapter_push):
    repo = hub.repos[ADAPTER_REPO]
    initial, pushed_commit = commits_of(hub, ADAPTER_REPO, "v2")
    assert repo.private and commits_of(hub, ADAPTER_REPO) == [initial]
    files = repo.commits[pushed_commit].files
    assert "model.safetensors" not in files and "adapter/adapter_model.safetensors" in files
    assert json.loads(files["adapter/adapter_config.json"])["base_model_name_or_path"] == ENCODER_REPO


@pytest.mark.slow
def test_wrong_tokens_and_other_users_repositories_are_one_line_errors(hub, pushed, tmp_path):
    HfApi(endpoint=hub.endpoint, token=OTHER_TOKEN).create_repo("other-user/their-model")
    before = {repo_id: dict(repo.branches) for repo_id, repo in hub.repos.items()}
    output_before = file_digests(pushed)
    wrong = run_cli(tmp_path, "--model", str(pushed), "--repo_id", PUBLIC_REPO, token="hf_wrong", endpoint=hub.endpoint)
    assert_one_line_error(wrong, PUBLIC_REPO, "HTTP 401", "Invalid credentials", "HF_TOKEN")
    theirs = run_cli(tmp_path, "--model", str(pushed), "--repo_id", "other-user/their-model", endpoint=hub.endpoint)
    assert_one_line_error(theirs, "other-user/their-model", "HTTP 403", "may not write")
    assert {repo_id: dict(repo.branches) for repo_id, repo in hub.repos.items()} == before, "nothing was committed"
    assert file_digests(pushed) == output_before


LOADER = r"""
import importlib.util, json, re, sys
from pathlib import Path

from huggingface_hub import hf_hub_download, snapshot_download
from transformers import AutoModel, AutoTokenizer

from lyric_valence.hub import load_peft_model

jobs, songs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
for job in jobs:
    repo_id, revision = job["repo_id"], job.get("revision")
    out = results.setdefault(job["name"], {})
    if job.get("card"):  # the card's own snippets, run exactly as the card writes them
        readme = Path(hf_hub_download(repo_id, "README.md", revision=revision)).read_text()
        for block in re.findall(r"```python\n(.*?)```", readme, re.S):
            namespace = {}
            exec(block, namespace)
            key = "peft_snippet" if "load_adapter_model" in block else "automodel_snippet"
            out[key] = namespace["model"].score_songs(songs, namespace["tokenizer"])
            if "scorer" in namespace:
                out["pipeline"] = [namespace["scorer"](song)[0]["score"] for song in songs]
    if job.get("handler"):  # Inference Endpoints: the repository downloaded, handler.py run from it
        handler_file = Path(hf_hub_download(repo_id, "handler.py", revision=revision))
        folder = snapshot_download(repo_id, revision=revision)
        assert handler_file.parent == Path(folder), (handler_file, folder)
        spec = importlib.util.spec_from_file_location("handler", handler_file)
        handler = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(handler)
        endpoint = handler.EndpointHandler(folder)
        out["handler"] = [item["score"] for item in endpoint({"inputs": songs})]
    if job.get("automodel"):
        model = AutoModel.from_pretrained(repo_id, trust_remote_code=True, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True, revision=revision)
        out["automodel"] = model.score_songs(songs, tokenizer)
    if job.get("load_peft_model"):
        model = load_peft_model(repo_id, revision=revision)
        out["load_peft_model"] = model.score_songs(songs, AutoTokenizer.from_pretrained(repo_id, revision=revision))
print("RESULTS " + json.dumps(results))
"""


def songs_for_scoring() -> list[str]:
    rng = random.Random(11)
    return [original_song(rng, 3), original_song(rng, 40), original_song(rng, 12)]  # the long one makes many chunks


def local_scores(output: Path, songs: list[str]) -> list[float]:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(output, trust_remote_code=True)
    return model.score_songs(songs, AutoTokenizer.from_pretrained(output, trust_remote_code=True))


@pytest.mark.slow
def test_published_repositories_load_in_fresh_processes_and_predict_like_the_local_models(
    hub, pushed, public_pushes, adapter_push, tmp_path
):
    songs = songs_for_scoring()
    jobs = [
        {"name": "train", "repo_id": TRAIN_REPO, "revision": "v1", "card": True, "handler": True},
        {"name": "public", "repo_id": PUBLIC_REPO, "card": True},
        {"name": "first_commit", "repo_id": PUBLIC_REPO, "revision": public_pushes["first_sha"], "automodel": True},
        {
            "name": "adapter",
            "repo_id": ADAPTER_REPO,
            "revision": "v2",
            "card": True,
            "handler": True,
            "load_peft_model": True,
        },
    ]
    loaded = run_fresh(tmp_path, ["-c", LOADER, json.dumps(jobs), json.dumps(songs)], endpoint=hub.endpoint)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    assert "RESULTS " in loaded.stdout, loaded.stdout[-3000:]
    results = json.loads(loaded.stdout.split("RESULTS ")[-1])

    song_files = []
    for number, song in enumerate(songs):
        song_files.append(tmp_path / f"song{number}.txt")
        song_files[-1].write_text(song)
    predicted = run_fresh(  # a public repository: no token needed
        tmp_path,
        ["-m", "lyric_valence.cli", "predict", "--model", PUBLIC_REPO, *map(str, song_files)],
        endpoint=hub.endpoint,
        token=None,
    )
    assert predicted.returncode == 0, predicted.stderr[-4000:]
    results["public"]["predict_cli"] = [float(line.split(",")[-1]) for line in predicted.stdout.splitlines()[1:]]

    first, second = local_scores(pushed, songs), local_scores(public_pushes["model_b"], songs)
    expected = {"train": first, "first_commit": first, "adapter": first, "public": second}
    assert {name: set(scores) for name, scores in results.items()} == {
        "train": {"automodel_snippet", "pipeline", "peft_snippet", "handler"},
        "public": {"automodel_snippet", "pipeline", "peft_snippet", "predict_cli"},
        "first_commit": {"automodel"},
        "adapter": {"peft_snippet", "handler", "load_peft_model"},  # its card shows PEFT only
    }
    for name, scores in results.items():
        for way, values in scores.items():
            assert values == pytest.approx(expected[name], abs=1e-5), (name, way)
    assert second == pytest.approx([score + 0.05 for score in first], abs=1e-5), "the two pushes hold different models"
    assert len(set(round(score, 6) for score in first)) == len(songs), "songs score differently"


@pytest.mark.slow
def test_dry_run_with_a_hub_encoder_names_it_in_the_card_and_the_adapter(pushed, tmp_path, capsys):
    output = pushed
    stage = tmp_path / "stage"
    argv = [
        "publish",
        "--model",
        str(output),
        "--repo_id",
        "me/tiny",
        "--base_model",
        "test-org/tiny-bert",
        "--dry_run",
        "--stage_dir",
        str(stage),
    ]
    assert cli_main(argv) == 0
    listed = capsys.readouterr().out.split()
    assert set(listed) == EXPECTED_FILES
    assert (
        json.loads((stage / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "test-org/tiny-bert"
    )
    card = ModelCard.load(stage / "README.md")
    assert card.data.base_model == "test-org/tiny-bert"
    assert "revision=" not in card.text and "lyric-valence predict --model me/tiny" in card.text


def without_a_token(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


@pytest.mark.slow
def test_user_errors_are_one_line_errors_before_contacting_the_hub(pushed, tmp_path, monkeypatch, capsys):
    without_a_token(monkeypatch, tmp_path)
    no_adapter = tmp_path / "head-only"
    shutil.copytree(pushed, no_adapter, ignore=shutil.ignore_patterns("adapter", "checkpoint-*"))
    cases = {
        "HF_TOKEN": ["--model", str(pushed), "--repo_id", "me/tiny"],
        "no such folder": ["--model", str(tmp_path / "nope"), "--repo_id", "me/tiny"],
        "adapter": ["--model", str(no_adapter), "--repo_id", "me/tiny", "--adapter_only", "--dry_run"],
    }
    for expected, argv in cases.items():
        assert cli_main(["publish", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lyric-valence publish: error:"), lines
        assert expected in lines[0] and ("me/tiny" in lines[0] or "nope" in lines[0] or "head-only" in lines[0]), lines


def test_train_refuses_a_token_flag_and_needs_a_token_before_training(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "run"), push_to_hub=True, hub_token="hf_flag")
    with pytest.raises(UserError, match="HF_TOKEN"):
        take_over_hub_push(args)
    without_a_token(monkeypatch, tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), push_to_hub=True)
    with pytest.raises(UserError, match="hf auth login"):
        take_over_hub_push(args)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push = take_over_hub_push(args)
    assert push.repo_id == "run" and args.push_to_hub is False  # the Trainer will not push checkpoints itself


def test_publish_refuses_a_folder_that_is_not_a_training_output(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        publish(tmp_path / "empty", "me/tiny", dry_run=True)


@pytest.mark.slow
def test_predict_on_a_hub_repository_never_downloads_or_runs_its_code(hub, tokenizer, tmp_path):
    """A public repository whose Python files write a marker when imported: `lyric-valence predict --model repo`
    scores it with the package's own classes, and the marker is never written."""
    import torch
    from conftest import tiny_bert_config

    from configuration_lyric_valence import LyricValenceConfig
    from modeling_lyric_valence import LyricValenceModel

    folder, marker = tmp_path / "hostile", tmp_path / "marker"
    torch.manual_seed(2)
    model = LyricValenceModel(
        LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), max_length=32, stride=8)
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for path in folder.glob("*_lyric_valence.py"):
        path.write_text(f"open({str(marker)!r}, 'w').write('imported')\n" + path.read_text())
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo(f"{NAMESPACE}/hostile")
    api.upload_folder(repo_id=f"{NAMESPACE}/hostile", folder_path=folder)
    song = tmp_path / "song.txt"
    song.write_text("a song about the morning river\nand the silver engine", encoding="utf-8")
    completed = run_fresh(
        tmp_path,
        ["-m", "lyric_valence.cli", "predict", "--model", f"{NAMESPACE}/hostile", str(song)],
        endpoint=hub.endpoint,
        token=None,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = model.score_songs([song.read_text(encoding="utf-8")], tokenizer)[0]
    assert float(completed.stdout.splitlines()[1].split(",")[-1]) == pytest.approx(expected, abs=1e-6)
    assert not marker.exists()
    unknown = run_fresh(
        tmp_path,
        ["-m", "lyric_valence.cli", "predict", "--model", f"{NAMESPACE}/missing", str(song)],
        endpoint=hub.endpoint,
        token=None,
    )
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip().splitlines()[-1].startswith("lyric-valence predict: error: --model test-user/missing")
