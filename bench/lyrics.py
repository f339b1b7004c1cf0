"""
Quality on song-length lyrics: train.py's recipes against TF-IDF + ridge and the mean predictor on the Billboard
bag-of-words set (3,240 Billboard Hot-100 songs with Spotify valence, lyrics as word counts; a research data set
that is not in this repository and is never copied into it: pass its CSV with --data_file), one artist-grouped split, song-level metrics overall and by chunks per song (1, 2, 3+).

    python bench/lyrics.py --data_file billboard_bow.csv          # baselines only, CPU
    python bench/lyrics.py --data_file FILE --trials default head_only full -- --model_name_or_path DIR
    bash bench/lyrics_gpu.sh                     # every trial on one GPU within 240 s (OUT=folder for the results)
    python bench/lyrics.py --render OUT/lyrics.json --out bench --results bench/results.json   # into RESULTS.md

Each trial is one `train.py` run (flags after `--` go to every run); its merged model then scores the validation and
test songs once per aggregation (mean, median, length-weighted), since aggregation changes no weight. Writes
lyrics.json, lyrics.md, lyrics.png (test MSE by chunks per song), songs.csv (every song score, to re-analyse) and
one train.py log per trial to --out.
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lyric_valence import default_encoder_path  # noqa: E402
from lyric_valence.data import load_splits  # noqa: E402
from lyric_valence.evaluation import song_metrics  # noqa: E402

# Trials in the order they start (the GPU run stops starting new ones when its budget runs low).
TRIALS = {
    "default": "",
    "head_only": "--finetuning_mode head_only --learning_rate 1e-3 --pooling mean",
    "full": "--finetuning_mode full --learning_rate 1e-4",
    "mean_pooling": "--pooling mean",
    "max_length_256": "--max_length 256 --stride 64",
    "max_length_128": "--max_length 128 --stride 32",
    "epochs_6": "--num_train_epochs 6",
    "lr_1e-3": "--learning_rate 1e-3",
    "lr_5e-3": "--learning_rate 5e-3",
    "default_data_seed_1": "--data_seed 1",  # another batch order, same split and initialisation: the noise
    "full_lr_5e-5": "--finetuning_mode full --learning_rate 5e-5",
    "stride_32": "--stride 32",
    "r16_6layers_mean": "--lora_r 16 --lora_alpha 32 --lora_num_layers 6 --pooling mean",
    "head_lr_3e-3": "--head_learning_rate 3e-3",
    "max_length_256_stride_128": "--max_length 256 --stride 128",
    "full_epochs_6": "--finetuning_mode full --learning_rate 1e-4 --num_train_epochs 6",
    "epochs_10": "--num_train_epochs 10",
    "max_length_128_mean_pooling": "--max_length 128 --stride 32 --pooling mean",
    "max_length_128_epochs_6": "--max_length 128 --stride 32 --num_train_epochs 6",
    "recipe_songs": "--recipe songs",
}
PLOTTED = ("mean predictor", "TF-IDF + ridge", "default", "head_only", "full", "max_length_128_epochs_6", "recipe_songs")
AGGREGATIONS = ("mean", "median", "length_weighted")
EVAL_SPLITS = ("validation", "test")
# Chunks per song under the default chunking (512 tokens, stride 128): the buckets every method's error is split by.
CHUNK_BUCKETS = {"1": (1, 1), "2": (2, 2), "3+": (3, None)}
RIDGE_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def log(message: str) -> None:
    print(f"[lyrics {time.strftime('%H:%M:%S')}] {message}", flush=True)


def check_chunking(tokenizer, max_length: int = 128, stride: int = 32) -> None:
    """
    Stop if the installed tokenizers drops overflowing chunks, as 0.23.1 and 0.23.2 do (huggingface/tokenizers#2091:
    every text then ends after its second chunk), rather than spend a GPU run on truncated songs.
    """
    from modeling_lyric_valence import chunk_lyrics

    text = " ".join(f"word{i % 97} river" for i in range(300))
    tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    window = max_length - 2
    expected = 1 + -(-max(tokens - window, 0) // (window - stride))
    found = len(chunk_lyrics(tokenizer, [text], max_length, stride)["input_ids"])
    if found != expected:
        import tokenizers

        sys.exit(f"bench/lyrics.py: error: tokenizers {tokenizers.__version__} cut a {tokens}-token text into {found} "
                 f"chunks instead of {expected} (huggingface/tokenizers#2091); install tokenizers>=0.23.3")


def chunks_per_song(tokenizer, texts: list[str], max_length: int = 512, stride: int = 128) -> np.ndarray:
    from modeling_lyric_valence import chunk_lyrics

    song_of_chunk = chunk_lyrics(tokenizer, texts, max_length, stride)["overflow_to_sample_mapping"]
    return np.bincount(song_of_chunk, minlength=len(texts))


def metrics_by_chunks(predicted: np.ndarray, true: np.ndarray, chunks: np.ndarray) -> dict:
    """Song-level metrics, plus the mse and the number of songs of each chunks-per-song bucket."""
    metrics = song_metrics(predicted.tolist(), true.tolist())
    for bucket, (low, high) in CHUNK_BUCKETS.items():
        inside = (chunks >= low) & (chunks <= (high or chunks.max()))
        metrics[f"mse_{bucket}_chunks"] = float(np.mean((predicted[inside] - true[inside]) ** 2)) if inside.any() else None
        metrics[f"songs_{bucket}_chunks"] = int(inside.sum())
    return metrics


def baselines(frames: dict[str, pd.DataFrame]) -> dict:
    """The mean predictor and TF-IDF + ridge (alpha picked on validation mse), trained on the training songs."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    train = frames["train"]
    results = {
        "mean predictor": {
            "flags": "the mean training label for every song",
            **{split: {"predicted": np.full(len(frames[split]), train["label"].mean())} for split in EVAL_SPLITS},
        }
    }
    # sublinear tf: the rendering repeats a word once per use, and the 10th "love" says less than the 1st
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2)
    features = {"train": vectorizer.fit_transform(train["text"])}
    features.update({split: vectorizer.transform(frames[split]["text"]) for split in EVAL_SPLITS})

    def fit(alpha: float) -> Ridge:
        return Ridge(alpha=alpha).fit(features["train"], train["label"])

    validation_mse = {
        alpha: float(np.mean((fit(alpha).predict(features["validation"]) - frames["validation"]["label"]) ** 2))
        for alpha in RIDGE_ALPHAS
    }
    alpha = min(validation_mse, key=validation_mse.get)
    ridge = fit(alpha)
    results["TF-IDF + ridge"] = {
        "flags": f"TfidfVectorizer(sublinear_tf=True, min_df=2), Ridge(alpha={alpha}) (alpha picked on validation "
        f"from {list(RIDGE_ALPHAS)})",
        **{split: {"predicted": ridge.predict(features[split])} for split in EVAL_SPLITS},
    }
    return results


def train_command(name: str, extra: list[str], output_dir: Path, data_file: str) -> list[str]:
    return [
        sys.executable, "train.py", "--data_file", data_file, *shlex.split(TRIALS[name]), *extra,
        "--output_dir", str(output_dir), "--report_to", "none", "--disable_tqdm", "True", "--save_total_limit", "1",
    ]


def run_trial(name: str, command: list[str], log_file: Path, deadline: float, min_trial_s: float) -> dict:
    """Run train.py; stop it at `deadline` (time.monotonic()). Never starts with less than `min_trial_s` left."""
    remaining = deadline - time.monotonic()
    if remaining < min_trial_s:
        return {"status": f"not started: {remaining:.0f} s of the budget left"}
    log(f"{name}: started")
    start = time.perf_counter()
    with log_file.open("w") as output:
        try:
            completed = subprocess.run(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, timeout=remaining)
        except subprocess.TimeoutExpired:
            return {"status": f"stopped at the budget after {time.perf_counter() - start:.0f} s"}
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        last = log_file.read_text().strip().splitlines()[-1:] or [""]
        return {"status": f"failed (exit {completed.returncode}): {last[0]}", "wall_s": wall}
    return {"status": "done", "wall_s": wall}


def score_trial(output_dir: Path, frames: dict[str, pd.DataFrame], device: str) -> dict:
    """Validation and test song scores of a finished run's merged model, once per aggregation."""
    import torch
    from transformers import AutoTokenizer

    from modeling_lyric_valence import LyricValenceModel

    model = LyricValenceModel.from_pretrained(output_dir, dtype=torch.float32).to(device)
    tokenizer = AutoTokenizer.from_pretrained(output_dir, trust_remote_code=True)  # our own run's folder
    split_ids = json.loads((output_dir / "split_song_ids.json").read_text())
    scores = {}
    for split in EVAL_SPLITS:
        songs = frames[split].set_index("song_id").loc[split_ids[split]]
        for aggregation in AGGREGATIONS:
            model.config.aggregation = aggregation
            scores[split, aggregation] = pd.Series(
                model.score_songs(songs["text"].tolist(), tokenizer), index=songs.index
            )
    return {"scores": scores, "train": json.loads((output_dir / "all_results.json").read_text())}


def row_metrics(frames: dict[str, pd.DataFrame], predicted: dict[str, pd.Series]) -> dict:
    """Metrics per evaluated split of song scores indexed by song id."""
    metrics = {}
    for split, scores in predicted.items():
        songs = frames[split].set_index("song_id").loc[scores.index]
        metrics[split] = metrics_by_chunks(scores.to_numpy(), songs["label"].to_numpy(), songs["chunks"].to_numpy())
    return metrics


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_file", default=None, help="The Billboard bag-of-words CSV (Kaggle layout: artist, seq, "
                        "song, label); needed unless --render.")
    parser.add_argument("--trials", nargs="*", default=[], choices=list(TRIALS), help="train.py trials to run.")
    parser.add_argument("--all_trials", action="store_true", help="Run every trial, in the order of TRIALS.")
    parser.add_argument("--out", type=Path, default=Path("lyrics-bench"), help="Folder for the results.")
    parser.add_argument("--work_dir", type=Path, default=None, help="Where train.py runs write (default: a temporary folder).")
    parser.add_argument("--parallel", type=int, default=1, help="train.py runs at once (they share the device).")
    parser.add_argument("--budget_s", type=float, default=float("inf"), help="Wall-clock budget of the whole run.")
    parser.add_argument("--reserve_s", type=float, default=30, help="Seconds of the budget kept for scoring and writing.")
    parser.add_argument("--min_trial_s", type=float, default=60, help="Start no trial with less than this left.")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer counting chunks per song (default: the "
                        "--model_name_or_path given after --, else the packaged MiniLM's).")
    parser.add_argument("--device", default=None, help="torch device scoring the trained models (default: cuda if available).")
    parser.add_argument("--render", type=Path, default=None, help="Skip running: plot this lyrics.json to --out "
                        "(lyrics.png) and merge it with --results.")
    parser.add_argument("--note", default=None, help="With --render: a paragraph shown under the section's title.")
    parser.add_argument("--results", type=Path, default=None, help="Merge the run into this results.json (bench/results.json) ...")
    parser.add_argument("--markdown", type=Path, default=None, help="... and re-render this RESULTS.md (bench/RESULTS.md).")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="After --: flags added to every train.py run.")
    args = parser.parse_args(argv)
    args.extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if args.data_file is None and args.render is None:
        parser.error("--data_file is required: the Billboard bag-of-words CSV (not in this repository)")
    if args.all_trials:
        args.trials = list(TRIALS)
    return args


def model_path_in(extra: list[str]) -> str | None:
    return extra[extra.index("--model_name_or_path") + 1] if "--model_name_or_path" in extra else None


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoTokenizer

    from bench.report import machine_info

    start = time.monotonic()
    deadline = start + args.budget_s - args.reserve_s
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="lyrics-bench-"))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or model_path_in(args.extra) or default_encoder_path())
    check_chunking(tokenizer)
    record = {"data_file": Path(args.data_file).name, "command": shlex.join(["python", "bench/lyrics.py", *sys.argv[1:]]),
              "machine": machine_info(torch.device(device)), "rows": {}, "aggregations": {}}
    with ThreadPoolExecutor(max_workers=max(args.parallel, 1)) as pool:
        futures = {}
        for name in args.trials:  # started first: the baselines run meanwhile
            command = train_command(name, args.extra, work_dir / name, args.data_file)
            log_file = args.out / "logs" / f"{name}.log"
            futures[pool.submit(run_trial, name, command, log_file, deadline, args.min_trial_s)] = (name, command)
            record["rows"][name] = {"flags": TRIALS[name], "status": "running"}  # rows keep the order of TRIALS

        splits, record["counts"] = load_splits(args.data_file, seed=42)  # train.py's split of this file
        frames = {split: splits[split].to_pandas() for split in splits}
        for frame in frames.values():
            frame["chunks"] = chunks_per_song(tokenizer, frame["text"].tolist())
        log("split: " + ", ".join(f"{len(frames[s])} {s}" for s in frames) + " songs")
        baseline_rows = {}
        for name, baseline in baselines(frames).items():
            predicted = {s: pd.Series(baseline[s]["predicted"], index=frames[s]["song_id"]) for s in EVAL_SPLITS}
            baseline_rows[name] = {"flags": baseline["flags"], **row_metrics(frames, predicted)}
            log(f"{name}: test {baseline_rows[name]['test']}")
        record["rows"] = {**baseline_rows, **record["rows"]}
        write(record, [], args.out)

        song_scores = []
        for future in as_completed(futures):
            name, command = futures[future]
            outcome = future.result()
            row = {"flags": TRIALS[name], "command": shlex.join(["python", *command[1:]]), **outcome}
            if outcome["status"] == "done":
                scored = score_trial(work_dir / name, frames, device)
                own = next((a for a in AGGREGATIONS if f"--aggregation {a}" in TRIALS[name]), "mean")
                row.update(row_metrics(frames, {split: scored["scores"][split, own] for split in EVAL_SPLITS}))
                row["train_s"] = scored["train"].get("train_runtime")
                record["aggregations"][name] = {
                    aggregation: row_metrics(frames, {s: scored["scores"][s, aggregation] for s in EVAL_SPLITS})
                    for aggregation in AGGREGATIONS
                }
                for (split, aggregation), scores in scored["scores"].items():
                    song_scores.append(pd.DataFrame({"trial": name, "split": split, "aggregation": aggregation,
                                                     "song_id": scores.index, "predicted": scores.to_numpy()}))
            record["rows"][name] = row
            log(f"{name}: {outcome['status']}" + (f"; test {row['test']}" if "test" in row else ""))
            write(record, song_scores, args.out)
    record["wall_s"] = time.monotonic() - start
    write(record, song_scores, args.out)
    return record


def plot(record: dict, path: Path) -> None:
    """Test MSE by chunks per song (all songs, 1, 2, 3+) of the baselines and the fine-tuning modes (PLOTTED)."""
    from lyric_valence.plots import plt

    rows = {name: row["test"] for name, row in record["rows"].items() if "test" in row and name in PLOTTED}
    groups = ["mse", *(f"mse_{bucket}_chunks" for bucket in CHUNK_BUCKETS)]
    figure, axes = plt.subplots(figsize=(max(6, 0.55 * len(rows) * len(groups) / 2), 4))
    width = 0.8 / max(len(rows), 1)
    for offset, (name, test) in enumerate(rows.items()):
        values = [test.get(group) or 0 for group in groups]
        axes.bar(np.arange(len(groups)) + offset * width, values, width, label=name)
    first = next(iter(rows.values()), {})
    labels = ["all songs"] + [f"{bucket} chunks ({first.get(f'songs_{bucket}_chunks', 0)})" for bucket in CHUNK_BUCKETS]
    axes.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, labels)
    axes.set(ylabel="test MSE (lower is better)", title=f"{record['data_file']}: song-level test MSE")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(record: dict, song_scores: list[pd.DataFrame], out: Path) -> None:
    from bench.report import render_lyrics

    (out / "lyrics.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "lyrics.md").write_text("\n".join(render_lyrics(record)) + "\n")
    plot(record, out / "lyrics.png")
    if song_scores:
        pd.concat(song_scores).to_csv(out / "songs.csv", index=False)


def merge(record: dict, results_path: Path, markdown_path: Path) -> None:
    """Keep the lyrics run in results.json next to bench/run.py's runs, and re-render RESULTS.md from it."""
    from bench.report import write_markdown

    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    results["lyrics"] = record
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, markdown_path)


def main(argv=None) -> None:
    args = parse_arguments(argv)
    record = json.loads(args.render.read_text()) if args.render else run(args)
    if args.render:
        record["note"] = args.note or record.get("note")
        args.out.mkdir(parents=True, exist_ok=True)
        plot(record, args.out / "lyrics.png")
    if args.results is not None:
        merge(record, args.results, args.markdown or args.results.with_name("RESULTS.md"))
    log(f"wrote {args.out if not args.render else args.results}")


if __name__ == "__main__":
    main()
