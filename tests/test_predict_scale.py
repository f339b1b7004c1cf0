"""`lyric-valence predict` on catalogues: two accelerate processes write what one does, and a run killed with
SIGKILL (while scoring a block, or halfway through writing one) continues with `--resume` to the very file an
uninterrupted run writes."""

import os
import random
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from configuration_lyric_valence import LyricValenceConfig
from conftest import REPO, WORDS, tiny_bert_config
from lyric_valence import cli
from modeling_lyric_valence import LyricValenceModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BLOCK = ["--block_size", "4", "--decimals", "9", "-q"]

# Runs the CLI with SIGKILL sent to itself once `after` calls of the patched function have gone through: in
# `scoring`, before a block's scores exist; in `writing`, after half of a block's bytes reached the output.
KILLED_RUN = """
import os, signal, sys
from lyric_valence import predict, predict_io
mode, after, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = []
if mode == "scoring":
    score = predict.score_texts
    def patched(*args):
        calls.append(1)
        if len(calls) > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return score(*args)
    predict.score_texts = patched
else:
    write = predict_io.ScoreWriter.write_text
    def patched(self, text):
        calls.append(1)
        if len(calls) > after:
            self.handle.write(text[: len(text) // 2].encode())
            self.handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return write(self, text)
    predict_io.ScoreWriter.write_text = patched
from lyric_valence.cli import main
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("catalogue")
    torch.manual_seed(3)
    model = LyricValenceModel(LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size, 2), max_length=32, stride=8))
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rng = random.Random(5)
    texts = ["" if i % 9 == 4 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 90))) for i in range(30)]
    pd.DataFrame({"song": [f"s{i}" for i in range(30)], "seq": texts}).to_csv(folder / "songs.csv", index=False)
    reference = folder / "reference.csv"
    args = [folder / "songs.csv", "--model", folder / "model", "--id_column", "song", "--output", reference, *BLOCK]
    assert cli.main(["predict", *map(str, args)]) == 0
    return folder, reference


def subprocess_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_two_accelerate_processes_write_the_scores_of_one(catalogue, tmp_path):
    folder, reference = catalogue
    output = tmp_path / "two.csv"
    completed = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lyric_valence.cli", "predict",
         str(folder / "songs.csv"), "--model", str(folder / "model"), "--id_column", "song", "--output", str(output),
         *BLOCK],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    one, two = pd.read_csv(reference), pd.read_csv(output)
    assert two["id"].tolist() == one["id"].tolist() and len(one) == 27
    assert two["valence"].tolist() == pytest.approx(one["valence"].tolist(), abs=1e-6)


@pytest.mark.parametrize("mode, after", [("scoring", 3), ("writing", 4)])
def test_a_killed_run_resumes_to_the_output_of_an_uninterrupted_one(catalogue, tmp_path, mode, after):
    folder, reference = catalogue
    output = tmp_path / "scores.csv"
    args = [str(folder / "songs.csv"), "--model", str(folder / "model"), "--id_column", "song", "--output",
            str(output), *BLOCK]
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, mode, str(after), "predict", *args], cwd=REPO,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert output.exists() and output.with_name("scores.csv.progress.json").exists()
    assert output.read_bytes() != reference.read_bytes()  # cut short (and, when writing, in the middle of a row)
    cut = output.read_bytes()
    # another scoring engine would mix two engines' scores in one file: refused, the file left as it is
    assert cli.main(["predict", *args, "--resume", "--backend", "onnxruntime"]) == 2
    assert output.read_bytes() == cut

    assert cli.main(["predict", *args, "--resume"]) == 0
    assert output.read_bytes() == reference.read_bytes()
    assert not output.with_name("scores.csv.progress.json").exists()
    assert cli.main(["predict", *args, "--resume"]) == 2  # finished: nothing to resume, and the output is left alone
    assert output.read_bytes() == reference.read_bytes()
