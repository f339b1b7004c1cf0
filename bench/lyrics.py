"""Quality on real song lyrics with Spotify valence: train.py recipes against the mean predictor, a sentiment lexicon
(VADER) and TF-IDF + ridge, on the artist-grouped splits train.py makes, over several split seeds (mean ± standard
deviation: single splits differ by more than most recipe changes).

The data files are research sets that never enter this repository (the team's billboard-lyrics and billboard-bow):

    python -m bench.lyrics --data_file billboard_lyrics.csv --text_column lyrics --label_column valence \\
        --group_column artist --trials songs songs_no_lexical
    python -m bench.lyrics --data_file billboard_lyrics.csv ... --trials songs --tag mpnet -- --model_name_or_path DIR

Flags after `--` go to every train.py run. Rows accumulate in OUT/lyrics.json, one record per data file (a run adds or
replaces its own rows); OUT/lyrics.md and OUT/lyrics.png are rendered from it."""

import argparse
import json
import shlex
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench import harness
from bench.report import paragraphs, write_json, write_section
from lyric_valence.data import DataOptions, load_splits
from lyric_valence.evaluation import song_metrics

TRIALS = {
    "songs": "--recipe songs",
    "songs_no_lexical": "--recipe songs --lexical_buckets 0",
    "lora_default": "",
    "lora_128_tokens": "--max_length 128 --stride 32 --num_train_epochs 6 --aggregation length_weighted",
    # issue 38: fine-tuning from the songs fit, on whole songs
    "songs_lora_warm": "--recipe songs --finetuning_mode lora --ridge_warm_start True --song_loss True "
    "--lora_num_layers 2 --learning_rate 5e-4 --head_learning_rate 1e-4 --num_train_epochs 2 "
    "--per_device_train_batch_size 16 --early_stopping_patience 1",
}
RIDGE_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
SPLITS = ("validation", "test")
log = harness.logger("lyrics")


def baselines(frames: dict[str, pd.DataFrame]) -> dict[str, dict]:
    """Validation and test predictions of the mean predictor, VADER + linear regression, and ridge on word and on
    character 2-5-gram TF-IDF."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LinearRegression, Ridge
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    train = frames["train"]
    rows = {"mean predictor": {split: np.full(len(frames[split]), train["label"].mean()) for split in SPLITS}}

    vader = SentimentIntensityAnalyzer()

    def lexicon_score(texts: pd.Series) -> np.ndarray:
        """Mean VADER compound score of each song's non-blank lines (VADER scores sentences, not whole songs)."""
        lines = [[line for line in text.splitlines() if line.strip()] for text in texts]
        return np.array(
            [[np.mean([vader.polarity_scores(line)["compound"] for line in song] or [0.0])] for song in lines]
        )

    lexicon = LinearRegression().fit(lexicon_score(train["text"]), train["label"])
    rows["VADER lexicon + linear"] = {split: lexicon.predict(lexicon_score(frames[split]["text"])) for split in SPLITS}

    # sublinear tf: the tenth "love" of a song says less than the first; characters: experiments/CHAR_NGRAMS.md
    vectorizers = {
        "TF-IDF + ridge": TfidfVectorizer(sublinear_tf=True, min_df=2),
        "char TF-IDF + ridge": TfidfVectorizer(sublinear_tf=True, min_df=2, analyzer="char_wb", ngram_range=(2, 5)),
    }
    for name, vectorizer in vectorizers.items():
        features = {"train": vectorizer.fit_transform(train["text"])}
        features.update({split: vectorizer.transform(frames[split]["text"]) for split in SPLITS})
        fits = {alpha: Ridge(alpha=alpha).fit(features["train"], train["label"]) for alpha in RIDGE_ALPHAS}
        alpha = min(
            fits, key=lambda a: np.mean((fits[a].predict(features["validation"]) - frames["validation"]["label"]) ** 2)
        )
        rows[name] = {split: fits[alpha].predict(features[split]) for split in SPLITS}
    return rows


def trained_model_predictions(model_dir: str, frames: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Validation and test predictions of a model trained elsewhere (e.g. the EmoBank quickstart), not refitted."""
    from lyric_valence.loading import load_scoring_model

    model, tokenizer = load_scoring_model(model_dir, "cpu")
    return {split: np.array(model.score_songs(frames[split]["text"].tolist(), tokenizer)) for split in SPLITS}


def train_flags(args: argparse.Namespace, trial: str, seed: int) -> list[str]:
    flags = ["--data_file", args.data_file, "--seed", str(seed)]
    for flag in ("text_column", "label_column", "group_column"):
        flags += [f"--{flag}", getattr(args, flag)] if getattr(args, flag) else []
    return [*flags, *shlex.split(TRIALS[trial]), *args.extra, "--save_total_limit", "1"]


def split_metrics(results: dict, prefix: str) -> dict:
    return {key.removeprefix(prefix): value for key, value in results.items() if key.startswith(prefix)}


def run_trial(flags: list[str], output_dir: Path) -> dict:
    """Run train.py; its song-level validation and test metrics, its training and wall seconds, and a warm start's
    metrics before fine-tuning (`ridge_start`)."""
    results = harness.run_train_py(flags, output_dir)
    trial = {
        "validation": split_metrics(results, "eval_"),
        "test": split_metrics(results, "test_"),
        "train_s": results.get("train_runtime"),
        "wall_s": results["wall_s"],
    }
    if "ridge_start_test_mse" in results:
        trial["ridge_start"] = {
            "validation": split_metrics(results, "ridge_start_eval_"),
            "test": split_metrics(results, "ridge_start_test_"),
        }
    return trial


def summary(record: dict) -> pd.DataFrame:
    """One line per row: mean ± standard deviation over its seeds of validation and test MSE and Pearson r."""
    baselines = {"ridge": "TF-IDF + ridge", "char ridge": "char TF-IDF + ridge"}  # the second in newer records only
    baseline_mse = {
        column: np.mean([seed["test"]["mse"] for seed in record["rows"][name]["seeds"].values()])
        for column, name in baselines.items()
        if name in record["rows"]
    }
    lines = []
    for name, row in record["rows"].items():
        seeds = row["seeds"].values()
        line = {"method": name, "flags": f"`{row['flags']}`" if row["flags"] else "", "seeds": len(seeds)}
        for split in SPLITS:
            for metric in ("mse", "pearson"):
                values = [seed[split][metric] for seed in seeds]
                line[f"{split} {metric}"] = f"{np.mean(values):.4f} ± {np.std(values):.4f}"
        test_mse = np.mean([seed["test"]["mse"] for seed in seeds])
        for column, mse in baseline_mse.items():
            line[f"test MSE vs {column}"] = f"{100 * (test_mse / mse - 1):+.1f}%"
        for column, key in (("train s", "train_s"), ("train.py run s", "wall_s")):
            seconds = [seed[key] for seed in seeds if seed.get(key) is not None]
            line[column] = f"{np.mean(seconds):.0f}" if seconds else ""
        lines.append(line)
    return pd.DataFrame(lines)


def render(records: dict) -> str:
    parts = []
    for data_file, record in records.items():
        counts = ", ".join(f"{record['counts'][f'{split}_songs']} {split}" for split in ("train", "validation", "test"))
        parts += [
            f"### `{data_file}`, seeds {', '.join(map(str, record['seeds']))}",
            "Split by train.py (`--seed` per split, artists and near-duplicates never span two splits): "
            f"{counts} songs (seed {record['seeds'][0]}). Metrics are song-level, mean ± standard deviation over the "
            f"seeds. Machine: {harness.machine_line(record['machine'])}",
            summary(record).to_markdown(index=False),
            "Commands: " + "; ".join(f"`{command}`" for command in record["commands"]),
        ]
    return paragraphs(*parts) + "\n"


def plot(records: dict, path: Path) -> None:
    """Test MSE (mean ± standard deviation over seeds) of every row, one panel per data file."""
    from lyric_valence.plots import plt

    figure, axes = plt.subplots(1, len(records), figsize=(6 * len(records), 4), squeeze=False)
    for axis, (data_file, record) in zip(axes[0], records.items(), strict=True):
        names = list(record["rows"])
        values = [[seed["test"]["mse"] for seed in record["rows"][name]["seeds"].values()] for name in names]
        means = [np.mean(v) for v in values]
        axis.barh(names, means, xerr=[np.std(v) for v in values], color="tab:blue")
        axis.axvline(means[names.index("TF-IDF + ridge")], color="tab:red", linestyle="--", label="TF-IDF + ridge")
        axis.set(xlabel="song-level test MSE (lower is better)", title=data_file, xlim=(0.8 * min(means), None))
        axis.invert_yaxis()
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_file", required=True, help="A labelled lyrics file (not in this repository).")
    parser.add_argument("--text_column", help="Its lyrics column, passed to train.py (default: train.py's detection).")
    parser.add_argument("--label_column", help="Its valence column.")
    parser.add_argument("--group_column", help="Its artist column: no artist spans two splits.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="Split seeds (train.py --seed).")
    parser.add_argument("--trials", nargs="*", default=[], choices=list(TRIALS), help="train.py trials to run.")
    help_ = "Saved models to score as they are, without training on this set (e.g. the EmoBank quickstart's output)."
    parser.add_argument("--models", nargs="*", default=[], help=help_)
    parser.add_argument("--tag", default=None, help="Added to the trials' row names (e.g. the encoder given after --).")
    parser.add_argument("--out", type=Path, default=Path("lyrics-bench"), help="Folder of lyrics.json, .md and .png.")
    parser.add_argument("--work_dir", type=Path, default=None, help="Where train.py runs write (default: temporary).")
    help_ = "Also write the tables into this file's lyrics section (between its bench/lyrics.py markers)."
    parser.add_argument("--results_markdown", type=Path, default=None, help=help_)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="After --: flags added to every train.py run.")
    args = parser.parse_args(argv)
    args.extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    return args


def main(argv=None) -> None:
    args = parse_arguments(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="lyrics-bench-"))
    records_path = args.out / "lyrics.json"
    records = json.loads(records_path.read_text()) if records_path.exists() else {}
    record = records.setdefault(Path(args.data_file).name, {"rows": {}, "commands": []})
    record.update(seeds=args.seeds, machine=harness.machine_info())
    command = harness.command_line("bench.lyrics", argv)
    record["commands"] = [c for c in record["commands"] if c != command] + [command]
    options = DataOptions(text_column=args.text_column, label_column=args.label_column, group_column=args.group_column)
    for seed in args.seeds:
        splits, counts = load_splits(args.data_file, options, seed=seed)
        record.setdefault("counts", counts)
        frames = {name: splits[name].to_pandas() for name in splits}
        untrained = baselines(frames)
        for model_dir in args.models:
            untrained[f"trained elsewhere: {Path(model_dir).name}"] = trained_model_predictions(model_dir, frames)
        for name, predicted in untrained.items():
            row = record["rows"].setdefault(name, {"flags": "", "seeds": {}})
            row["seeds"][str(seed)] = {
                split: song_metrics(predicted[split].tolist(), frames[split]["label"].tolist()) for split in SPLITS
            }
        log(f"seed {seed}: baselines done")
        for trial in args.trials:
            name = f"{trial} ({args.tag})" if args.tag else trial
            run_name = "-".join(part for part in (trial, args.tag, str(seed)) if part)
            flags = shlex.join(harness.portable_command([*shlex.split(TRIALS[trial]), *args.extra]))
            row = record["rows"].setdefault(name, {"flags": flags, "seeds": {}})
            row["seeds"][str(seed)] = run_trial(train_flags(args, trial, seed), work_dir / run_name)
            start = row["seeds"][str(seed)].pop("ridge_start", None)
            if start is not None:  # a warm start's frozen ridge fit, before fine-tuning, on the same split
                record["rows"].setdefault(f"{name}: its ridge start", {"flags": flags, "seeds": {}})
                record["rows"][f"{name}: its ridge start"]["seeds"][str(seed)] = start
            log(f"seed {seed}: {name}: test {row['seeds'][str(seed)]['test']}")
            write_json(records_path, records)
        write_json(records_path, records)
    text = render(records)
    (args.out / "lyrics.md").write_text(text + "\n")
    plot(records, args.out / "lyrics.png")
    if args.results_markdown is not None:
        write_section(args.results_markdown, "bench/lyrics.py", text)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
