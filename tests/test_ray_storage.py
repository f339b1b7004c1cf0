"""
Catalogues where they live: `lyric-valence predict --engine ray` on a cluster of several Ray nodes
(`ray.cluster_utils.Cluster`: a head holding no CPU, where only the driver runs, and three worker nodes of 2 CPUs),
reading and writing a bucket of a local S3 server (tests/s3_server.py: moto, IAM authentication on) and reading a
dataset of the local Hub (tests/hub_server.py). The catalogue exists only in the bucket and the Hub, never on a disk a
worker could read; every process finds the servers and credentials where a user's would (AWS_ENDPOINT_URL and the
AWS_* variables, HF_ENDPOINT and HF_TOKEN), set before the nodes start.

Proven: the bucket's scores equal the one-process scores of the same songs to the last written decimal; the driver
writes nothing but the manifest and reads only each file's footer, header or first record; a worker node killed
mid-run loses and doubles no row; a killed driver resumes from the manifest in the bucket without rescoring its
committed blocks; hf:// input (a glob on the Hub); the one-process engine's remote paths; bad and missing credentials,
missing buckets and an output inside the input are one line and exit 2, and no secret is printed.
"""

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import fsspec
import huggingface_hub
import pandas as pd
import pytest
import ray
from conftest import REPO, assert_one_line_error, predict_in_process
from hub_server import HubServer
from ray import cloudpickle
from ray.cluster_utils import Cluster
from s3_server import S3Server
from test_ray_scoring import FLAGS, KILLED_DRIVER, songs_table

from lyric_valence import cli, ray_scoring, storage

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread", "fresh_filesystems")]
TOKEN = "hf_storageTESTtoken0123456789abcdefgh"  # the Hub token: it must show up in no output
CATALOGUE = "s3://lyrics/catalogue/"
DATASET = "test-user/lyrics"
NAMES = ("a.csv", "b.parquet", "c.jsonl")
NODE = {"num_cpus": 2, "object_store_memory": 100 << 20}


class SlowScorer(ray_scoring.ValenceScorer):
    """Half a second a block, so that a node dies in the middle of the run; each actor writes the id of its node into
    `folder` (all nodes share this machine's disk), so the test knows which node scores."""

    folder = None

    def __call__(self, batch):
        node = ray.get_runtime_context().get_node_id()
        with open(os.path.join(self.folder, f"{node}-{os.getpid()}"), "w"):
            pass
        time.sleep(0.5)
        return super().__call__(batch)


@pytest.fixture
def fresh_filesystems():
    """fsspec keeps one filesystem per configuration, with the credentials it was made with: tests change them."""
    for implementation in {*fsspec.registry.values(), huggingface_hub.HfFileSystem}:
        implementation.clear_instance_cache()  # each class keeps its own
    yield
    for implementation in {*fsspec.registry.values(), huggingface_hub.HfFileSystem}:
        implementation.clear_instance_cache()


def catalogue_bytes() -> dict[str, bytes]:
    """The catalogue of tests/test_ray_scoring.py (13 CSV, 9 Parquet, 11 JSONL rows; every seventh song empty)."""
    rng = random.Random(7)
    files = {}
    for name, rows in zip(NAMES, (13, 9, 11), strict=True):
        table, buffer = songs_table(rng, name[0], rows), io.BytesIO()
        if name.endswith(".csv"):
            table.to_csv(buffer, index=False)
        elif name.endswith(".parquet"):
            table.to_parquet(buffer)
        else:
            table.to_json(buffer, orient="records", lines=True)
        files[name] = buffer.getvalue()
    return files


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_model_dir):
    """
    The S3 server (buckets `lyrics`, holding the catalogue, and `scores`) and the Hub (the private dataset
    test-user/lyrics, the catalogue in data/), their variables in this process's environment (so in every Ray node
    started after), and the one-process scores of the same songs from local copies: the reference.
    """
    s3 = S3Server().start(buckets=("lyrics", "scores"))
    hub = HubServer({TOKEN: "test-user"}).start()
    try:
        files = catalogue_bytes()
        hub.create_repo(DATASET, "test-user", private=True, repo_type="dataset")
        hub.add_files(DATASET, {f"data/{name}": content for name, content in files.items()}, repo_type="dataset")
        with pytest.MonkeyPatch.context() as patch:
            for key, value in {**s3.env(), "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}.items():
                patch.setenv(key, value)
            # What huggingface_hub derives from HF_ENDPOINT at import, before this fixture (the nodes import it after).
            patch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
            template = f"{hub.endpoint}/{{repo_id}}/resolve/{{revision}}/{{filename}}"
            patch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
            for name, content in files.items():
                storage.write_bytes(CATALOGUE + name, content)
            local = tmp_path_factory.mktemp("local-copies")
            for name, content in files.items():
                (local / name).write_bytes(content)
            reference = local.parent / "reference.csv"
            args = [*(local / name for name in NAMES), "--model", tiny_model_dir, "--output", reference, *FLAGS]
            assert cli.main(["predict", *map(str, args)]) == 0
            yield {"s3": s3, "hub": hub, "reference": pd.read_csv(reference, dtype={"id": str})}
    finally:
        hub.stop()
        s3.stop()
    assert hub.unhandled == [], f"requests tests/hub_server.py does not model: {hub.unhandled}"


@pytest.fixture(scope="module")
def cluster(stores):
    """A head node without CPUs (the driver's only) and three worker nodes of 2 CPUs, all started with the servers'
    variables: one is killed, two are left."""
    head = {"num_cpus": 0, "object_store_memory": 100 << 20, "include_dashboard": False}
    nodes = Cluster(initialize_head=True, head_node_args=head)
    workers = [nodes.add_node(**NODE) for _ in range(3)]
    ray.init(address=nodes.address, logging_level="ERROR", log_to_driver=False)
    nodes.wait_for_nodes()
    yield nodes, workers
    ray.shutdown()
    nodes.shutdown()


def assert_same_scores(scores: pd.DataFrame, reference: pd.DataFrame, prefix: str | tuple[str, ...]) -> None:
    """The reference's songs, ids, kept column and scores as written (FLAGS: 9 decimals), exactly, from `prefix`."""
    assert scores[["id", "artist"]].values.tolist() == reference[["id", "artist"]].values.tolist()
    assert scores["valence"].tolist() == reference["valence"].tolist()
    assert scores["source"].str.startswith(prefix).all()
    assert not scores["id"].duplicated().any()


def output_names(output: str) -> list[str]:
    return sorted(url.rsplit("/", 1)[-1] for url in storage.list_folder(output, missing_ok=True))


def manifest(output: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(output, ray_scoring.MANIFEST)))


def assert_complete_without_orphans(output: str) -> dict:
    written = manifest(output)
    assert written["complete"] and len(written["blocks"]) == 10  # 4 + 3 + 3 blocks of 4 rows
    parts = sorted(block["part"] for block in written["blocks"] if block["part"])
    assert output_names(output) == sorted([ray_scoring.MANIFEST, *parts])
    return written


def test_a_cluster_scores_a_bucket_and_a_hub_dataset_into_a_bucket(
    cluster, stores, tiny_model_dir, capsys, monkeypatch
):
    """
    Two files from the bucket and one from the private dataset (a glob on the Hub, HF_ENDPOINT and HF_TOKEN on every
    node), scored on two nodes into the bucket. The driver lists the inputs, reads a footer, a header and a first
    record, writes the manifest: nothing else.
    """
    driver_writes, driver_reads = [], []
    write_bytes, open_input = storage.write_bytes, storage.open_input

    def recorded_open(url, block_size=None):
        driver_reads.append((url, block_size))
        return open_input(url, block_size)

    monkeypatch.setattr(storage, "write_bytes", lambda url, data: (driver_writes.append(url), write_bytes(url, data)))
    monkeypatch.setattr(storage, "open_input", recorded_open)
    output, dataset = "s3://scores/cli/", f"hf://datasets/{DATASET}/data/"
    inputs = [CATALOGUE + "a.csv", CATALOGUE + "b.parquet", dataset + "*.jsonl"]
    code, _, err = predict_in_process(
        capsys, "--engine", "ray", *inputs, "--model", tiny_model_dir, "--output", output, "--num_workers", 2, *FLAGS
    )
    assert code == 0, err
    assert TOKEN not in err
    assert set(driver_writes) == {storage.join(output, ray_scoring.MANIFEST)}
    # Each file opened once, for its Parquet footer or its header and first record, in reads of 64 KiB.
    assert sorted(driver_reads) == sorted((name, 1 << 16) for name in (*inputs[:2], dataset + "c.jsonl"))
    assert_complete_without_orphans(output)
    assert_same_scores(ray_scoring.read_scores(output), stores["reference"], (CATALOGUE, dataset))


def test_a_killed_driver_resumes_from_the_manifest_in_the_bucket(cluster, stores, tiny_model_dir, capsys):
    nodes, _ = cluster
    output = "s3://scores/resumed/"
    args = ["predict", "--engine", "ray", CATALOGUE, "--model", str(tiny_model_dir), "--output", output, *FLAGS]
    env = {**os.environ, "RAY_ADDRESS": nodes.address, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_DRIVER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    earlier = manifest(output)
    assert not earlier["complete"] and len(earlier["blocks"]) == 2
    fs, _ = storage.filesystem(output)
    committed = {block["part"]: fs.info(f"scores/resumed/{block['part']}")["ETag"] for block in earlier["blocks"]}

    code, _, err = predict_in_process(capsys, *args[1:], "--resume")
    assert code == 0, err
    assert {part: fs.info(f"scores/resumed/{part}")["ETag"] for part in committed} == committed  # not rewritten
    assert_complete_without_orphans(output)
    assert_same_scores(ray_scoring.read_scores(output), stores["reference"], CATALOGUE)


def test_a_worker_node_killed_mid_run_loses_and_doubles_nothing(cluster, stores, tiny_model_dir, monkeypatch, tmp_path):
    nodes, workers = cluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    monkeypatch.setattr(SlowScorer, "folder", str(tmp_path))
    monkeypatch.setattr(ray_scoring, "ValenceScorer", SlowScorer)
    monkeypatch.setattr(ray_scoring, "COMMIT_SECONDS", 0)
    output, outcome = "s3://scores/node-killed/", {}

    def run():
        try:
            outcome["counts"] = ray_scoring.score_catalogue(
                CATALOGUE, output, tiny_model_dir, num_workers=2, batch_size=4, id_column="song",
                keep_columns=["artist"], decimals=9, quiet=True,
            )  # fmt: skip
        except BaseException as error:  # noqa: BLE001 (reported by the assertion below)
            outcome["error"] = error

    driver = threading.Thread(target=run)
    driver.start()
    deadline = time.monotonic() + 240
    while not outcome and time.monotonic() < deadline:
        try:
            if len(manifest(output)["blocks"]) >= 1:
                break
        except Exception:  # not written yet
            pass
        time.sleep(0.2)
    assert not outcome, outcome  # still running: the kill lands mid-run
    # The node of a scoring actor: its block in flight is lost with it.
    busy = {path.name.split("-")[0] for path in tmp_path.iterdir()}
    victim = next(node for node in workers if node.node_id in busy)
    nodes.remove_node(victim, allow_graceful=False)
    workers.remove(victim)
    driver.join(timeout=400)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["counts"]["scored"] == 28 and outcome["counts"]["blocks"] == 10
    assert_complete_without_orphans(output)
    assert_same_scores(ray_scoring.read_scores(output), stores["reference"], CATALOGUE)


@pytest.mark.parametrize(
    "problem",
    ["wrong secret", "no credentials", "missing input bucket", "missing output bucket", "output in input", "hub token"],
)
def test_storage_problems_are_one_line_naming_the_path(stores, tiny_model_dir, capsys, monkeypatch, problem):
    """Before Ray starts or a model loads, and without printing a secret."""
    source, output = CATALOGUE, f"s3://scores/problems-{problem.replace(' ', '-')}/"
    secret = stores["s3"].secret
    if problem == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrongSECRETvalue0123456789")
        expected = [source, "access denied", "AWS_"]
    elif problem == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        expected = [source, "no credentials found"]
    elif problem == "missing input bucket":
        source = "s3://no-such-bucket/lyrics/"
        expected = [source, "no such bucket"]
    elif problem == "missing output bucket":
        output = "s3://no-such-bucket/scores/"
        expected = [f"--output {output}", "no such bucket"]
    elif problem == "output in input":
        output = CATALOGUE + "scores/"
        expected = [f"--output {output}", "inside the input folder"]
    else:
        monkeypatch.setenv("HF_TOKEN", "hf_wrongTOKEN0123456789abcdefghij")
        source = f"hf://datasets/{DATASET}/data/"
        expected = [source, "access denied", "HF_TOKEN"]
    code, out, err = predict_in_process(
        capsys, "--engine", "ray", source, "--model", tiny_model_dir, "--output", output, "-q"
    )
    assert_one_line_error(code, err, *expected)
    for value in (secret, "wrongSECRETvalue0123456789", TOKEN, "hf_wrongTOKEN0123456789abcdefghij"):
        assert value not in err + out


def test_one_process_predict_reads_a_bucket_and_the_hub_and_writes_a_bucket(stores, tiny_model_dir, capsys):
    """Without Ray: a remote glob, a remote Parquet file (by row group) and a Hub file in; one object out."""
    inputs = ["s3://lyrics/catalogue/*.csv", "s3://lyrics/catalogue/b.parquet", f"hf://datasets/{DATASET}/data/c.jsonl"]
    output = "s3://scores/one-process.csv"
    code, _, err = predict_in_process(capsys, *inputs, "--model", tiny_model_dir, "--output", output, *FLAGS)
    assert code == 0, err
    scores = pd.read_csv(io.BytesIO(storage.read_bytes(output)), dtype={"id": str})
    reference = stores["reference"]
    assert scores[["id", "artist", "valence"]].values.tolist() == reference[["id", "artist", "valence"]].values.tolist()
    assert scores["source"].str.startswith(("s3://lyrics/catalogue/", f"hf://datasets/{DATASET}/")).all()
    assert output_names("s3://scores/") == ["one-process.csv"]  # no progress file: a remote output is not resumed

    code, _, err = predict_in_process(capsys, *inputs, "--model", tiny_model_dir, "--output", output, "--resume")
    assert_one_line_error(code, err, f"--output {output}", "--resume needs a local --output")
    code, _, err = predict_in_process(capsys, *inputs, "--model", tiny_model_dir, "--output", inputs[1], "-q")
    assert_one_line_error(code, err, "is the input")
