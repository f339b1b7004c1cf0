"""
Ray Data catalogue scoring (`lyric-valence predict --engine ray`) and multi-process predict against `predict` in one
process: Ray's scores against predict's; songs/s with 1 and 2 Ray CPU workers; Ray's wall time against predict's;
the rows each of two torchrun predict processes takes and reads, and whether their output is byte-identical to one
process's; peak RSS of predict and of the Ray driver and actors at two catalogue sizes. Every run is a fresh process,
one after the other. Writes bench/ray_scoring.json and its section of bench/RAY_RESULTS.md, whose text outside the
section says how it measures (`--memory_songs 2000 20000`: quicker).

`--storage`: instead, the cost of object storage: a 2-node local Ray cluster scores the same catalogue from a local S3
server (tests/s3_server.py: moto) into it, and from local disk into a local folder, alternately, `--rounds` times
each; rows/s of each and their ratio, the driver's peak memory, and the bucket's scores against one process's.
Writes bench/ray_storage.json and its own section of bench/RAY_RESULTS.md.
"""

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench import harness
from bench.models import build_model, load_tokenizer, save_model
from bench.report import table, write_json, write_section
from lyric_valence import ray_scoring, storage

WORDS = (
    "light morning river paper window silver engine garden thunder candle harbor velvet orbit lantern meadow "
    "compass whisper marble ember willow cobalt ladder echo violet canyon feather signal copper tide"
).split()
FILE_ROWS = 10_000
BLOCK_SIZE = 100  # songs per batch: 10 batches of the 1,000 songs to share between processes or actors
PREDICT_FLAGS = ["--id_column", "song", "--keep_columns", "artist", "--block_size", str(BLOCK_SIZE), "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}

# One CLI run recording its own peak RSS and, with `--engine ray`, per actor its peak RSS and when it scored (first
# batch started, last one ended). VmHWM, not getrusage's ru_maxrss, which a process inherits from the (large)
# benchmark process that started it.
MEASURED_RUN = """
import json, os, sys, time
from lyric_valence import cli, ray_scoring

def peak_kib():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])

class MeasuredScorer(ray_scoring.ValenceScorer):
    first = None
    peaks_dir = os.environ["PEAKS_DIR"]  # travels with the class (pickled by value): nodes started apart lack it
    def __call__(self, batch):
        self.first = self.first or time.time()
        scored = super().__call__(batch)
        with open(os.path.join(self.peaks_dir, f"worker-{os.getpid()}"), "w") as handle:
            json.dump({"peak_kib": peak_kib(), "first": self.first, "last": time.time()}, handle)
        return scored

ray_scoring.ValenceScorer = MeasuredScorer
code = cli.main(sys.argv[1:])
with open(os.path.join(os.environ["PEAKS_DIR"], "driver"), "w") as handle:
    handle.write(str(peak_kib()))
sys.exit(code)
"""

# One predict process of a torchrun group, recording the rows it takes (`process_share`) and the rows it reads
# (every table row that reaches a block, every song file opened); tests/test_predict_scale.py runs it too.
COUNTED_RUN = """
import json, os, sys
from lyric_valence import local_scoring, predict_io
counts = {"taken": 0, "read": 0}
share, song_frames, read_text_file = local_scoring.process_share, predict_io.song_frames, predict_io.read_text_file
def counted_share(shards, index, count):
    for shard in share(shards, index, count):
        counts["taken"] += 0 if shard is None else shard.rows
        yield shard
    with open(os.path.join(os.environ["ROWS_DIR"], f"rows-{index}.json"), "w") as handle:
        json.dump(counts, handle)
def counted_frames(*args):
    for block in song_frames(*args):
        counts["read"] += len(block)
        yield block
def counted_text_file(path):
    counts["read"] += 1
    return read_text_file(path)
local_scoring.process_share = counted_share
predict_io.song_frames, predict_io.read_text_file = counted_frames, counted_text_file
from lyric_valence.cli import main
sys.exit(main(sys.argv[1:]))
"""
log = harness.logger("ray-scoring")
POOL_SONGS = 1000


def write_catalogue(folder: Path, songs: int) -> list[str]:
    """`songs` rows (song, artist, seq) in Parquet files of at most FILE_ROWS rows, in row groups of BLOCK_SIZE rows
    (so that each predict process reads only its own); every 50th song empty. Returns the files."""
    folder.mkdir(parents=True)
    rng = random.Random(songs)
    for part, start in enumerate(range(0, songs, FILE_ROWS)):
        rows = range(start, min(start + FILE_ROWS, songs))
        texts = [
            "" if row % 50 == 7 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) for row in rows
        ]
        harness.write_songs(folder / f"part-{part:04d}.parquet", texts, start, row_group_size=BLOCK_SIZE)
    return sorted(str(path) for path in folder.iterdir())


def run(command: list[str], **env: str) -> float:
    return harness.timed_process(command, {**ENV, **env})["wall_s"]


def measured_predict(source: str, model: str, output: Path, *flags: str) -> dict:
    """One `predict` process (Ray's driver with `--engine ray`): wall time and peak RSS (MiB), and the Ray actors'."""
    peaks = output.with_name(f"peaks-{output.name}")
    peaks.mkdir()
    command = [sys.executable, "-c", MEASURED_RUN, "predict", source, "--model", model, "--output", str(output)]
    wall = run([*command, *flags, *PREDICT_FLAGS], PEAKS_DIR=str(peaks))
    result = {"wall_s": round(wall, 1), "peak_mib": round(int((peaks / "driver").read_text()) / 1024)}
    actors = [json.loads(path.read_text()) for path in peaks.glob("worker-*")]
    if actors:
        result.update(
            scoring_s=round(max(actor["last"] for actor in actors) - min(actor["first"] for actor in actors), 1),
            worker_peak_mib=round(max(actor["peak_kib"] for actor in actors) / 1024),
            actors_seen=len(actors),
        )
    return result


def ray_run(source: str, model: str, output: Path, workers: int) -> dict:
    """One driver process starting its own local Ray with `workers` CPU workers."""
    return measured_predict(source, model, output, "--engine", "ray", "--num_workers", str(workers))


def torchrun_predict(files: list[str], model: str, output: Path, processes: int, work: Path) -> dict:
    rows = work / f"rows-{processes}"
    rows.mkdir()
    script = work / "counted_run.py"
    script.write_text(COUNTED_RUN, encoding="utf-8")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), str(script)]
    wall = run(
        [*torchrun, "predict", *files, "--model", model, "--output", str(output), *PREDICT_FLAGS], ROWS_DIR=str(rows)
    )
    counts = [json.loads((rows / f"rows-{index}.json").read_text()) for index in range(processes)]
    return {
        "wall_s": round(wall, 1),
        "rows_taken": [count["taken"] for count in counts],
        "rows_read": [count["read"] for count in counts],
    }


def storage_run(source: str, model: str, output: str, peaks: Path, env: dict) -> dict:
    """One driver process on the running cluster (`env`'s RAY_ADDRESS): wall time, its peak RSS, the actors' span."""
    peaks.mkdir()
    command = [sys.executable, "-c", MEASURED_RUN, "predict", "--engine", "ray", source, "--model", model]
    command += ["--output", output, "--num_workers", "2", *PREDICT_FLAGS]
    wall = harness.timed_process(command, {**env, "PEAKS_DIR": str(peaks)})["wall_s"]
    actors = [json.loads(path.read_text()) for path in peaks.glob("worker-*")]
    scoring = max(actor["last"] for actor in actors) - min(actor["first"] for actor in actors)
    return {
        "wall_s": round(wall, 1),
        "scoring_s": round(scoring, 1),
        "driver_peak_mib": round(int((peaks / "driver").read_text()) / 1024),
        "actors_seen": len(actors),
    }


def storage_comparison(songs: int, rounds: int, work: Path) -> dict:
    """The 2-node cluster scoring the same Parquet files from the S3 server into it and from local disk into a local
    folder, alternately (which goes first alternates too); the bucket's scores against one process's."""
    import ray
    from ray.cluster_utils import Cluster

    sys.path.insert(0, str(harness.REPO / "tests"))
    from s3_server import S3Server

    tokenizer = load_tokenizer()
    minilm = save_model(work / "minilm", build_model("minilm", tokenizer.vocab_size), tokenizer)
    files = write_catalogue(work / "songs", songs)
    log("predict, one process: the reference scores")
    run([*harness.cli_command("predict", *files, "--model", minilm, "--output", work / "predict.csv"), *PREDICT_FLAGS])
    s3 = S3Server().start(buckets=("bench",))
    cluster = None
    try:
        os.environ.update(s3.env())  # before the nodes start: they read the bucket with the same variables
        for path in files:
            storage.write_bytes(f"s3://bench/songs/{Path(path).name}", Path(path).read_bytes())
        head = {"num_cpus": 0, "object_store_memory": 200 << 20, "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(2):
            cluster.add_node(num_cpus=2, object_store_memory=200 << 20)
        cluster.wait_for_nodes()
        env = {**ENV, **s3.env(), "RAY_ADDRESS": cluster.address}
        runs = {"local": [], "s3": []}
        for index in range(rounds):
            for kind in ("local", "s3") if index % 2 == 0 else ("s3", "local"):
                log(f"round {index + 1}/{rounds}: 2 nodes, {kind}")
                source = str(work / "songs") if kind == "local" else "s3://bench/songs/"
                output = str(work / f"scores-{index}") if kind == "local" else f"s3://bench/scores-{index}/"
                runs[kind].append(storage_run(source, minilm, output, work / f"peaks-{kind}-{index}", env))
        reference = pd.read_csv(work / "predict.csv", dtype={"id": str})
        bucket = ray_scoring.read_scores(f"s3://bench/scores-{rounds - 1}/")
        local = ray_scoring.read_scores(str(work / f"scores-{rounds - 1}"))
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        s3.stop()
    results = {"songs": songs, "rounds": rounds, "runs": runs}
    for kind in ("local", "s3"):
        walls, spans = [run["wall_s"] for run in runs[kind]], [run["scoring_s"] for run in runs[kind]]
        results[kind] = {
            "median_wall_s": float(pd.Series(walls).median()),
            "median_scoring_s": float(pd.Series(spans).median()),
            "rows_per_s": round(songs / pd.Series(walls).median(), 1),
            "scoring_rows_per_s": round(songs / pd.Series(spans).median(), 1),
            "driver_peak_mib": max(run["driver_peak_mib"] for run in runs[kind]),
        }
    results["ratio_s3_vs_local"] = round(results["s3"]["rows_per_s"] / results["local"]["rows_per_s"], 2)
    results["scoring_ratio_s3_vs_local"] = round(
        results["s3"]["scoring_rows_per_s"] / results["local"]["scoring_rows_per_s"], 2
    )
    results["same_scores"] = {
        "rows": len(bucket),
        "same_ids": bucket["id"].tolist() == reference["id"].tolist(),
        "equal_as_written": bool((bucket["valence"].to_numpy() == reference["valence"].to_numpy()).all())
        if len(bucket) == len(reference)
        else False,
        "max_abs_difference": float((bucket["valence"] - reference["valence"]).abs().max()),
        "local_disk_equal_bucket": bucket.drop(columns="source").equals(local.drop(columns="source")),
    }
    return results


def storage_markdown(results: dict) -> str:
    storage_results, same = results["storage"], results["storage"]["same_scores"]
    rows = {}
    for kind, name in (("local", "local disk -> local folder"), ("s3", "S3 server -> S3 bucket")):
        run = storage_results[kind]
        rows[f"2 nodes, 2 workers, {name}"] = (
            f"{run['rows_per_s']} rows/s in all (median {run['median_wall_s']} s of {storage_results['rounds']} runs); "
            f"{run['scoring_rows_per_s']} rows/s while scoring (median {run['median_scoring_s']} s); driver peak "
            f"{run['driver_peak_mib']} MiB"
        )
    rows["S3 vs local disk"] = (
        f"rows/s x{storage_results['ratio_s3_vs_local']} in all, x{storage_results['scoring_ratio_s3_vs_local']} "
        "while scoring"
    )
    rows[f"scores from the bucket vs predict's, {storage_results['songs']} songs"] = (
        f"equal as written: {same['equal_as_written']} (max abs difference {same['max_abs_difference']:.1e}, "
        f"{same['rows']} rows, same ids in order: {same['same_ids']}); equal to the local-disk run's: "
        f"{same['local_disk_equal_bucket']}"
    )
    rows = [{"measure": measure, "result": result} for measure, result in rows.items()]
    return f"Command: `{results['command']}`. Machine: {results['machine']}\n\n{table(rows)}"


def markdown(results: dict) -> str:
    same, speed, memory, two = (results[key] for key in ("same_scores", "workers_1000", "memory", "torchrun_1000"))
    rows = {
        f"Ray scores vs predict's, {same['songs']} songs": f"max abs difference {same['max_abs_difference']:.1e} "
        f"({same['rows']} rows each, same ids in the same order: {same['same_ids']})"
    }
    for workers in ("1", "2"):
        ray = speed[workers]
        rows[f"{workers} Ray CPU worker(s), 1,000 songs"] = (
            f"{ray['wall_s']} s in all ({ray['songs_per_s']} songs/s); scoring, first batch to last: "
            f"{ray['scoring_s']} s ({ray['scoring_songs_per_s']} songs/s, {ray['actors_seen']} actor(s) scored)"
        )
    rows["2 vs 1 Ray workers"] = (
        f"throughput x{speed['ratio_2_vs_1']} in all, x{speed['scoring_ratio_2_vs_1']} while scoring"
    )
    rows["predict, one process, 1,000 songs"] = (
        f"{results['predict_1000_s']} s; Ray with 1 worker takes x{results['ray_overhead_ratio']} its time "
        f"(+{results['ray_overhead_s']} s)"
    )
    rows["predict, 2 processes (torchrun), 1,000 songs"] = (
        f"rows taken per process {two['2']['rows_taken']}, rows read per process {two['2']['rows_read']}; output "
        f"byte-identical to 1 process: {two['byte_identical']}; {two['2']['wall_s']} s vs {two['1']['wall_s']} s for 1 "
        "process"
    )
    for size, run in memory.items():
        rows[f"{size} songs (CSV, tiny model)"] = (
            f"predict, one process: {run['predict']['wall_s']} s, peak {run['predict']['peak_mib']} MiB; Ray, 1 "
            f"worker: {run['ray']['wall_s']} s, driver peak {run['ray']['peak_mib']} MiB, worker peak "
            f"{run['ray']['worker_peak_mib']} MiB"
        )
    ratio = results["memory_ratio"]
    rows[f"peak memory {list(memory)[1]} vs {list(memory)[0]} songs"] = (
        f"predict x{ratio['predict']}, Ray driver x{ratio['driver']}, Ray worker x{ratio['worker']}"
    )
    rows = [{"measure": measure, "result": result} for measure, result in rows.items()]
    return f"Command: `{results['command']}`. Machine: {results['machine']}\n\n{table(rows)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=1000, help="Songs of the speed comparisons (default: 1000).")
    help_ = "The two catalogue sizes of the memory comparison (default: 10000 100000)."
    parser.add_argument("--memory_songs", type=int, nargs=2, default=[10_000, 100_000], help=help_)
    parser.add_argument(
        "--storage", action="store_true", help="Only the object-storage comparison (2-node cluster, S3 vs local disk)."
    )
    parser.add_argument("--storage_songs", type=int, default=2000, help="Songs of --storage (default: 2000).")
    parser.add_argument("--rounds", type=int, default=2, help="--storage runs of each kind (default: 2).")
    args = parser.parse_args()
    machine = harness.machine_info()
    results = {"command": harness.command_line("bench.ray_scoring"), "date": machine["date"]}
    results["machine"] = harness.machine_line(machine)
    if args.storage:
        with tempfile.TemporaryDirectory(prefix="ray-storage-") as tmp:
            results["storage"] = storage_comparison(args.storage_songs, args.rounds, Path(tmp))
        write_json(harness.REPO / "bench" / "ray_storage.json", results)
        write_section(
            harness.REPO / "bench" / "RAY_RESULTS.md", "bench.ray_scoring --storage", storage_markdown(results)
        )
        log(json.dumps(results))
        return
    results["songs"] = args.songs
    with tempfile.TemporaryDirectory(prefix="ray-scoring-") as tmp:
        work = Path(tmp)
        tokenizer = load_tokenizer()
        tiny = save_model(work / "tiny", build_model("tiny", tokenizer.vocab_size), tokenizer)
        minilm = save_model(work / "minilm", build_model("minilm", tokenizer.vocab_size), tokenizer)
        files = write_catalogue(work / "songs", args.songs)

        log("predict, one process")
        command = harness.cli_command("predict", *files, "--model", minilm, "--output", work / "predict.csv")
        results["predict_1000_s"] = round(run([*command, *PREDICT_FLAGS]), 1)
        speed = {}
        for workers in ("1", "2"):
            log(f"ray, {workers} worker(s)")
            speed[workers] = ray_run(str(work / "songs"), minilm, work / f"ray-{workers}", int(workers))
            speed[workers]["songs_per_s"] = round(args.songs / speed[workers]["wall_s"], 1)
            speed[workers]["scoring_songs_per_s"] = round(args.songs / speed[workers]["scoring_s"], 1)
        speed["ratio_2_vs_1"] = round(speed["2"]["songs_per_s"] / speed["1"]["songs_per_s"], 2)
        speed["scoring_ratio_2_vs_1"] = round(speed["2"]["scoring_songs_per_s"] / speed["1"]["scoring_songs_per_s"], 2)
        results["workers_1000"] = speed
        results["ray_overhead_ratio"] = round(speed["1"]["wall_s"] / results["predict_1000_s"], 2)
        results["ray_overhead_s"] = round(speed["1"]["wall_s"] - results["predict_1000_s"], 1)

        reference = pd.read_csv(work / "predict.csv", dtype={"id": str})
        ray = ray_scoring.read_scores(work / "ray-1")  # the parts its manifest commits, in input order
        results["same_scores"] = {
            "songs": args.songs,
            "rows": len(ray),
            "same_ids": ray["id"].tolist() == reference["id"].tolist() and len(ray) == len(reference),
            "max_abs_difference": float((ray["valence"] - reference["valence"]).abs().max()),
        }

        two = {}
        for processes in (1, 2):
            log(f"predict, {processes} torchrun process(es)")
            two[str(processes)] = torchrun_predict(files, minilm, work / f"torchrun-{processes}.csv", processes, work)
        two["byte_identical"] = (work / "torchrun-1.csv").read_bytes() == (work / "torchrun-2.csv").read_bytes()
        results["torchrun_1000"] = two

        pool = harness.make_catalogue(tokenizer.get_vocab(), POOL_SONGS, seed=0).texts
        memory = {}
        for size in args.memory_songs:
            log(f"memory, {size} songs: predict, then ray")
            texts = [pool[row % len(pool)] for row in range(size)]
            table_file = harness.write_songs(work / f"songs-{size}.csv", texts, artists=997)
            memory[str(size)] = {
                "predict": measured_predict(table_file, tiny, work / f"predict-{size}.csv"),
                "ray": ray_run(table_file, tiny, work / f"ray-memory-{size}", 1),
            }
        results["memory"] = memory
        small, large = (memory[str(size)] for size in args.memory_songs)
        results["memory_ratio"] = {
            "predict": round(large["predict"]["peak_mib"] / small["predict"]["peak_mib"], 2),
            "driver": round(large["ray"]["peak_mib"] / small["ray"]["peak_mib"], 2),
            "worker": round(large["ray"]["worker_peak_mib"] / small["ray"]["worker_peak_mib"], 2),
        }

    write_json(harness.REPO / "bench" / "ray_scoring.json", results)
    write_section(harness.REPO / "bench" / "RAY_RESULTS.md", "bench.ray_scoring", markdown(results))
    log(json.dumps(results))


if __name__ == "__main__":
    main()
