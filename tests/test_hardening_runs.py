"""Whole runs: a training run killed (SIGKILL) in the middle of writing a checkpoint resumes to the same results as an
uninterrupted one; two runs with one seed agree exactly; no Hub token reaches any output file or log.

One module fixture starts the subprocess runs together and trains the reference run in this process meanwhile: each
subprocess spends most of its ~10 s importing torch and transformers, and the machine has 2 cores.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, original_song, tiny_bert_config
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.commands import train
from lyric_valence.errors import UserError
from lyric_valence.trainer import checkpoint_is_complete, last_complete_checkpoint, resolve_checkpoint
from modeling_lyric_valence import LyricValenceModel

FAKE_TOKEN = "hf_fakeTOKENdoNOTleak0123456789abcdEFGH"
SAVE_STEPS = 10  # 8 optimizer steps per epoch: the first checkpoint falls in the middle of the second epoch
# Keys of the results that measure the machine, not the model.
TIMINGS = ("runtime", "samples_per_second", "steps_per_second")

KILLED_RUN = """
import runpy, sys, time
from pathlib import Path
from lyric_valence.trainer import ChunkedSongTrainer

marker = Path(sys.argv.pop(1))
save_rng_state, saves = ChunkedSongTrainer._save_rng_state, []

def stall_while_writing_the_second_checkpoint(self, output_dir):
    saves.append(output_dir)
    if len(saves) == 2:  # weights, optimizer and scheduler are written; RNG and trainer state are not
        marker.write_text(output_dir)
        time.sleep(600)
    save_rng_state(self, output_dir)

ChunkedSongTrainer._save_rng_state = stall_while_writing_the_second_checkpoint
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""

PREDICT_WITH_PEAK_MEMORY = """
import resource, sys
from lyric_valence.cli import main
code = main(sys.argv[1:])
print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB", file=sys.stderr)
sys.exit(code)
"""


def write_lyrics(path: Path) -> Path:
    """40 rows in the Kaggle layout (quoted multi-line lyrics, quotes, commas); one lacks lyrics, one its label."""
    rng = random.Random(5)
    rows = [
        {
            "artist": f"artist {i % 20}",
            "seq": original_song(rng, rng.choice([3, 8, 16])),
            "song": f"song {i}",
            "label": round(rng.random(), 3),
        }
        for i in range(40)
    ]
    rows[1]["seq"] = 'She said "run",\nand I ran\r\nall the way home, "twice"'
    rows[2]["seq"] = "   \n "
    rows[3]["label"] = None
    pd.DataFrame(rows).to_csv(path)
    return path


def subprocess_env(tmp: Path, **extra) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp / "hf-home"),
        **extra,
    )
    return env


def start(command, log: Path, env: dict) -> subprocess.Popen:
    with log.open("wb") as handle:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_encoder_dir, tokenizer):
    tmp = tmp_path_factory.mktemp("runs")
    data = write_lyrics(tmp / "lyrics.csv")
    arguments = [
        "--model_name_or_path",
        tiny_encoder_dir,
        "--data_file",
        data,
        "--lora_num_layers",
        "2",
        "--max_length",
        "64",
        "--stride",
        "16",
        "--num_train_epochs",
        "3",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "8",
        "--logging_steps",
        "4",
        "--seed",
        "11",
        "--disable_tqdm",
        "True",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        SAVE_STEPS,
        "--save_strategy",
        "steps",
        "--save_steps",
        SAVE_STEPS,
    ]
    arguments = list(map(str, arguments))
    torch.manual_seed(1)
    model_dir = tmp / "tiny-model"
    LyricValenceModel(
        LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), max_length=32, stride=8)
    ).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    songs = pd.DataFrame(
        {"seq": ["a happy song\nwith two lines", "", ("la la land of the very long song\n" * 6100)[:200_000], None]}
    )
    songs.to_csv(tmp / "songs.csv", index=False)

    (tmp / "predict").mkdir()
    token_env = subprocess_env(tmp, HF_TOKEN=FAKE_TOKEN, HUGGING_FACE_HUB_TOKEN=FAKE_TOKEN)
    marker = tmp / "stalled-in"
    processes = {
        "killed": start(
            [sys.executable, "-c", KILLED_RUN, str(marker), *arguments, "--output_dir", str(tmp / "killed")],
            tmp / "killed.log",
            subprocess_env(tmp),
        ),
        "token": start(
            [sys.executable, "train.py", *arguments, "--output_dir", str(tmp / "token"), "--hub_token", FAKE_TOKEN],
            tmp / "token.log",
            token_env,
        ),
        "predict": start(
            [
                sys.executable,
                "-c",
                PREDICT_WITH_PEAK_MEMORY,
                "predict",
                str(tmp / "songs.csv"),
                "--model",
                str(model_dir),
                "--output",
                str(tmp / "predict" / "scores.csv"),
            ],
            tmp / "predict.log",
            token_env,
        ),
    }
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(sys, "argv", ["train.py", *arguments, "--output_dir", str(tmp / "reference")])
            train.main()
        yield {"tmp": tmp, "arguments": arguments, "marker": marker, "processes": processes}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def results(folder: Path) -> dict:
    metrics = json.loads((folder / "test_results.json").read_text())
    metrics.update(json.loads((folder / "eval_results.json").read_text()))
    return {key: value for key, value in metrics.items() if not key.endswith(TIMINGS)}


def assert_same_results(folder: Path, reference: Path, tolerance: float) -> None:
    ours, theirs = results(folder), results(reference)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], abs=tolerance), key
    predictions, expected = (
        pd.read_csv(folder / "test_predictions.csv"),
        pd.read_csv(reference / "test_predictions.csv"),
    )
    assert predictions["song_id"].tolist() == expected["song_id"].tolist()
    assert np.allclose(predictions["predicted_valence"], expected["predicted_valence"], rtol=0, atol=tolerance)


@pytest.mark.slow
def test_a_run_killed_while_writing_a_checkpoint_resumes_to_the_uninterrupted_results(runs, monkeypatch, capsys):
    tmp, killed = runs["tmp"], runs["tmp"] / "killed"
    process = runs["processes"]["killed"]
    deadline = time.monotonic() + 300
    while not runs["marker"].exists():
        assert process.poll() is None, (tmp / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the run never reached its second checkpoint"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "test_results.json").exists()

    first, second = killed / f"checkpoint-{SAVE_STEPS}", killed / f"checkpoint-{2 * SAVE_STEPS}"
    assert checkpoint_is_complete(first)
    assert {"adapter_model.safetensors", "optimizer.pt"} <= {path.name for path in second.iterdir()}
    assert not checkpoint_is_complete(second)
    # Stock resolution would pick the half-written folder and fail on it; ours skips it.
    assert Path(get_last_checkpoint(killed)) == second
    assert Path(last_complete_checkpoint(killed)) == first
    epoch = json.loads((first / "trainer_state.json").read_text())["epoch"]
    assert 1 < epoch < 2, "the test means to resume in the middle of an epoch after the first"

    # Naming the half-written folder is one clear line, not a traceback.
    monkeypatch.setattr(
        sys,
        "argv",
        ["train.py", *runs["arguments"], "--output_dir", str(killed), "--resume_from_checkpoint", str(second)],
    )
    with pytest.raises(UserError, match=f"checkpoint-{2 * SAVE_STEPS}: not a complete checkpoint"):
        train.main()

    monkeypatch.setattr(
        sys, "argv", ["train.py", *runs["arguments"], "--output_dir", str(killed), "--resume_from_checkpoint", "True"]
    )
    train.main()
    assert_same_results(killed, tmp / "reference", tolerance=1e-6)


@pytest.mark.slow
def test_two_runs_with_one_seed_give_identical_metrics_predictions_and_weights(runs):
    tmp = runs["tmp"]
    assert finish(runs["processes"]["token"]) == 0, (tmp / "token.log").read_text()[-3000:]
    assert_same_results(tmp / "token", tmp / "reference", tolerance=0)
    ours, theirs = (
        load_file(str(tmp / "token" / "model.safetensors")),
        load_file(str(tmp / "reference" / "model.safetensors")),
    )
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in theirs)


@pytest.mark.slow
def test_the_final_summary_counts_the_skipped_rows(runs):
    tmp = runs["tmp"]
    assert finish(runs["processes"]["token"]) == 0
    summary = [line for line in (tmp / "token.log").read_text().splitlines() if "skipped 2 of 40 rows" in line]
    assert len(summary) == 1 and "(1 empty text, 1 missing label)" in summary[0], summary


@pytest.mark.slow
def test_no_hub_token_in_any_output_file_or_log(runs):
    tmp = runs["tmp"]
    assert finish(runs["processes"]["token"]) == 0, (tmp / "token.log").read_text()[-3000:]
    assert finish(runs["processes"]["predict"]) == 0, (tmp / "predict.log").read_text()[-3000:]
    files = [path for folder in ("token", "predict") for path in (tmp / folder).rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in files)  # pickled TrainingArguments, with hub_token
    assert len(files) > 20
    for path in [*files, tmp / "token.log", tmp / "predict.log"]:
        content = path.read_bytes()
        assert FAKE_TOKEN.encode() not in content and FAKE_TOKEN.encode("utf-16-le") not in content, path
    scores = pd.read_csv(tmp / "predict" / "scores.csv")
    assert scores["id"].tolist() == [0, 2] and scores["valence"].notna().all()  # the 200,000-character song scored
    log = (tmp / "predict.log").read_text()
    assert "scored 2 songs (1 capped at 64 chunks), skipped 2 empty" in log  # 64 tiny chunks: 1,400 tokens
    peak = int(log.split("peak memory ")[1].split()[0])
    assert peak < 1_500_000, f"peak memory {peak} KiB"


@pytest.mark.slow
def test_the_trained_folder_holds_safetensors_only_and_loads_without_unpickling(runs, monkeypatch, tokenizer):
    import pickle

    from transformers import AutoModel

    reference = runs["tmp"] / "reference"
    shipped = [*reference.iterdir(), *(reference / "adapter").iterdir()]
    assert not [path.name for path in shipped if path.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")]
    assert {"model.safetensors", "adapter_model.safetensors"} <= {path.name for path in shipped}

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    model = AutoModel.from_pretrained(reference, trust_remote_code=True)
    assert len(model.score_songs(["a song to load safely"], tokenizer)) == 1


def test_resolving_checkpoints(tmp_path):
    assert resolve_checkpoint(None, tmp_path) is None and resolve_checkpoint("false", tmp_path) is None
    with pytest.raises(UserError, match="no complete checkpoint"):
        resolve_checkpoint(True, tmp_path)
    for step, state in ((5, "{}"), (10, '{"global_step": 1'), (20, None), (30, "{}")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-40").write_text("a file, not a folder")
    (tmp_path / "tmp-checkpoint-50").mkdir()
    assert resolve_checkpoint("True", tmp_path) == str(tmp_path / "checkpoint-30")
    (tmp_path / "checkpoint-30" / "trainer_state.json").unlink()
    assert resolve_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint-5")
    for incomplete in ("checkpoint-10", "checkpoint-20", "checkpoint-99"):
        with pytest.raises(UserError, match="not a complete checkpoint"):
            resolve_checkpoint(str(tmp_path / incomplete), tmp_path)
