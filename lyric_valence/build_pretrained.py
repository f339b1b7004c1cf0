"""
Rebuild a shipped songs model (`lyric_valence.pretrained`) from the labelled lyrics file it was fitted on, and measure
it first:

    python -m lyric_valence.build_pretrained songs-minilm --data_file DATA/billboard_lyrics.csv
    python -m lyric_valence.build_pretrained songs-mpnet --data_file DATA/billboard_lyrics.csv --encoder_path DIR

1. The file is read and cleaned as train.py reads it (its sha256 recorded), and every song is encoded once
   (`lyric_valence.ridge.encode_songs`: MiniLM about 10 minutes on 2 CPU cores, all-mpnet-base-v2 about 40).
2. Held-out figures, for each `--holdout_seeds` seed: train.py's artist-grouped split of that seed; the songs recipe's
   fit (settings by grouped cross-validation) on its train and validation songs, scored on its test songs, beside the
   mean predictor and TF-IDF + ridge (word unigrams, sublinear tf, min_df 2, alpha by the same grouped
   cross-validation) fitted on the same songs.
3. The fit on all songs, written to `--output_dir` (default: the package's own folder of that model) as the package
   ships it, with the build record (`build.json`: the file's sha256, the settings, the figures, the scores of the
   package's example songs) and the model card. Against the record it replaces, the example scores' largest change is
   logged: a rebuild from the same file gives the same scores.

No text of the file is written anywhere: only numeric weights over hashed token features, and counts.
"""

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from lyric_valence.errors import UserError

logger = logging.getLogger("lyric_valence.build_pretrained")
COLUMNS = {"text_column": "lyrics", "label_column": "valence", "group_column": "artist", "title_column": "song"}
HOLDOUT_SEEDS = (42, 43, 44)
BASELINE_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
METHODS = ("songs recipe", "TF-IDF + ridge", "mean predictor")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    from lyric_valence.pretrained import SHIPPED_MODELS

    parser = argparse.ArgumentParser(
        prog="python -m lyric_valence.build_pretrained",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", choices=list(SHIPPED_MODELS), help="The shipped model to rebuild.")
    parser.add_argument(
        "--data_file",
        required=True,
        help="The labelled lyrics (the team's billboard_lyrics.csv: lyrics, valence, artist).",
    )
    parser.add_argument(
        "--encoder_path", default=None, help="A local copy of the model's encoder (default: as shipped)."
    )
    parser.add_argument("--output_dir", type=Path, default=None, help="Default: the package's folder of the model.")
    parser.add_argument("--holdout_seeds", type=int, nargs="*", default=list(HOLDOUT_SEEDS), help="Split seeds.")
    parser.add_argument(
        "--features_cache",
        type=Path,
        default=None,
        help="An .npz keeping the encoded songs between runs (derived from the lyrics: keep it outside the "
        "repository).",
    )
    return parser.parse_args(argv)


def read_songs(data_file: Path, seed: int):
    """The file's kept rows (cleaned text, label, split group) with train.py's split of `seed`."""
    from lyric_valence.data import DataOptions, prepare

    return prepare(data_file, DataOptions(**COLUMNS), seed).rows.reset_index(drop=True)


def encoded_songs(model, tokenizer, texts: list[str], cache: Path | None, key: dict):
    """`encode_songs` of `texts`, kept in (and read back from) `cache` under `key`."""
    import scipy.sparse as sp

    from lyric_valence.ridge import EncodedSongs, encode_songs

    if cache is not None and cache.is_file():
        stored = np.load(cache)
        if json.loads(str(stored["key"])) == key:
            logger.info("encoded songs read from %s", cache)
            counts = sp.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=tuple(stored["shape"]))
            return EncodedSongs(stored["pooled"], counts, stored["song_index"], stored["chunk_weights"])
    start = time.perf_counter()
    encoded = encode_songs(model, tokenizer, texts)
    logger.info(
        "encoded %d songs (%d chunks) in %.0f s", len(texts), len(encoded.song_index), time.perf_counter() - start
    )
    if cache is not None:
        counts = encoded.counts
        np.savez(
            cache,
            key=json.dumps(key),
            pooled=encoded.pooled,
            data=counts.data,
            indices=counts.indices,
            indptr=counts.indptr,
            shape=np.array(counts.shape),
            song_index=encoded.song_index,
            chunk_weights=encoded.chunk_weights,
        )
    return encoded


def tfidf_ridge(
    texts: list[str], labels: np.ndarray, groups: list[str], fit: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """TF-IDF + ridge's test predictions: word unigrams, sublinear tf, min_df 2, alpha by grouped CV on `fit`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from lyric_valence.ridge import cv_folds

    fit_texts = [texts[i] for i in fit]
    errors = np.zeros(len(BASELINE_ALPHAS))
    folds = cv_folds([groups[i] for i in fit])
    for inner, held in folds:
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2)
        x_inner = vectorizer.fit_transform([fit_texts[i] for i in inner])
        x_held = vectorizer.transform([fit_texts[i] for i in held])
        for a, alpha in enumerate(BASELINE_ALPHAS):
            predicted = Ridge(alpha=alpha).fit(x_inner, labels[fit][inner]).predict(x_held)
            errors[a] += np.mean((predicted - labels[fit][held]) ** 2) / len(folds)
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2)
    ridge = Ridge(alpha=BASELINE_ALPHAS[int(errors.argmin())]).fit(vectorizer.fit_transform(fit_texts), labels[fit])
    return ridge.predict(vectorizer.transform([texts[i] for i in test]))


def holdout_split(data_file: Path, seed: int, song_ids: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """For split seed `seed`: the positions in `song_ids` of train.py's train + validation songs and of its test songs,
    and the split group of every song."""
    rows = read_songs(data_file, seed)
    position = {song_id: i for i, song_id in enumerate(song_ids)}
    fit = np.array([position[s] for s in rows.loc[rows["split"] != "test", "song_id"]])
    test = np.array([position[s] for s in rows.loc[rows["split"] == "test", "song_id"]])
    groups = rows.set_index("song_id")["group"]
    return fit, test, [groups[s] for s in song_ids]


def holdout_figures(model, encoded, data_file: Path, texts, labels, song_ids, seeds) -> dict:
    """Per seed and method: test-song metrics of the songs recipe fitted on train + validation, and the baselines."""
    from lyric_valence.evaluation import song_metrics
    from lyric_valence.ridge import fit_encoded

    figures = {}
    for seed in seeds:
        fit, test, all_groups = holdout_split(data_file, seed, song_ids)
        ridge_fit = fit_encoded(model, encoded.subset(fit), labels[fit], [all_groups[i] for i in fit])
        predictions = {
            "songs recipe": ridge_fit.solution.predict(encoded.subset(test)),
            "TF-IDF + ridge": tfidf_ridge(texts, labels, all_groups, fit, test),
            "mean predictor": np.full(len(test), labels[fit].mean()),
        }
        figures[str(seed)] = {
            "fit_songs": len(fit),
            "test_songs": len(test),
            "settings": ridge_fit.metrics(),
            **{name: song_metrics(p.tolist(), labels[test].tolist()) for name, p in predictions.items()},
        }
        logger.info("seed %d: %s", seed, {name: figures[str(seed)][name]["mse"] for name in predictions})
    return figures


def summarise(figures: dict) -> dict:
    """Mean and standard deviation over seeds of each method's test MSE and Pearson r."""
    return {
        name: {
            f"{metric}_{stat}": float(getattr(np, stat)([seed[name][metric] for seed in figures.values()]))
            for metric in ("mse", "pearson")
            for stat in ("mean", "std")
        }
        for name in METHODS
    }


def machine() -> str:
    """The CPU's model name and core count (the build's figures are CPU times)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if cpuinfo.is_file()
        else []
    )
    return f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def finite(value):
    """`value` with NaN (e.g. the mean predictor's undefined Pearson r) as None, so the record is strict JSON."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def example_scores(model, tokenizer) -> dict[str, float]:
    from lyric_valence import TEMPLATES

    examples = sorted((TEMPLATES / "examples").iterdir(), key=lambda path: path.name)
    scores = model.score_songs([path.read_text(encoding="utf-8") for path in examples], tokenizer)
    return {path.name: round(score, 8) for path, score in zip(examples, scores, strict=True)}


def write_card(output_dir: Path, name: str, record: dict) -> None:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from lyric_valence import TEMPLATES
    from lyric_valence.pretrained import SHIPPED_MODELS

    held_out = record["holdout_summary"]["songs recipe"]
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=SHIPPED_MODELS[name].encoder,
        tags=["lyrics", "valence", "regression", "music", "custom_code"],
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="text-classification",
                task_name="Spotify valence from lyrics (song level)",
                dataset_type="billboard-hot-100-lyrics",
                dataset_name="Billboard Hot-100 lyrics, artist-grouped test splits (3 seeds)",
                dataset_split="test",
                metric_type=metric,
                metric_name=f"song-level {metric} (mean of 3 seeds)",
                metric_value=round(held_out[f"{metric}_mean"], 4),
            )
            for metric in ("mse", "pearson")
        ],
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "songs_model_card.md"),
        name=name,
        shipped=SHIPPED_MODELS[name],
        record=record,
    )
    card.save(output_dir / "README.md")


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoTokenizer

    from lyric_valence.commands.train import RECIPES
    from lyric_valence.pretrained import (
        BUILD_RECORD,
        SHIPPED_MODELS,
        encoder_folder,
        file_sha256,
        save_shipped_weights,
        shipped_folder,
    )
    from lyric_valence.ridge import fit_encoded
    from modeling_lyric_valence import LyricValenceModel

    args = parse_arguments(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    data_file = Path(args.data_file)
    if not data_file.is_file():
        raise UserError(f"--data_file {data_file}: no such file")
    output_dir = args.output_dir or shipped_folder(args.model)
    started = time.perf_counter()
    torch.manual_seed(0)

    encoder = encoder_folder(args.model, args.encoder_path)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    recipe = {key: value for key, value in RECIPES["songs"].items() if key != "finetuning_mode"}
    model = LyricValenceModel.from_encoder_pretrained(encoder, **recipe).eval()
    model.config.encoder._name_or_path = SHIPPED_MODELS[args.model].encoder  # not this machine's path
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = read_songs(data_file, HOLDOUT_SEEDS[0])
    texts, labels, song_ids = rows["text"].tolist(), rows["label"].to_numpy(np.float64), rows["song_id"].tolist()
    record = {
        "model": args.model,
        "predicts": "Spotify valence (audio) of whole songs from their lyrics",
        "data_file": data_file.name,
        "data_sha256": file_sha256(data_file),
        "songs": len(texts),
        "encoder": SHIPPED_MODELS[args.model].encoder,
        "encoder_sha256": file_sha256(encoder / "model.safetensors"),
        "recipe": recipe,
    }
    key = {k: record[k] for k in ("data_sha256", "encoder_sha256", "recipe")}
    encoded = encoded_songs(model, tokenizer, texts, args.features_cache, key)

    if args.holdout_seeds:
        record["holdout"] = holdout_figures(model, encoded, data_file, texts, labels, song_ids, args.holdout_seeds)
        record["holdout_summary"] = summarise(record["holdout"])
    fit = fit_encoded(model, encoded, labels, rows["group"].tolist())
    record["fit"] = fit.metrics()
    record["fit"]["lexical_buckets_kept"] = int(torch.count_nonzero(model.lexical.idf))
    check = np.asarray(model.score_songs(texts[:64], tokenizer)) - fit.solution.predict(encoded.subset(np.arange(64)))
    record["fit"]["model_vs_regression_max_abs_diff"] = float(np.abs(check).max())
    if np.abs(check).max() > 1e-4:
        raise RuntimeError(
            f"the fitted model does not score as the regression predicts (max diff {np.abs(check).max()})"
        )
    record["example_scores"] = example_scores(model, tokenizer)
    record["command"] = f"python -m lyric_valence.build_pretrained {args.model} --data_file DATA/{data_file.name}" + (
        " --encoder_path ENCODER_DIR" if args.encoder_path else ""
    )
    record["machine"] = f"{machine()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    record["build_seconds"] = round(time.perf_counter() - started)

    previous = output_dir / BUILD_RECORD
    if previous.is_file():
        before = json.loads(previous.read_text())["example_scores"]
        change = max(abs(before[name] - score) for name, score in record["example_scores"].items())
        logger.info("example scores against the record replaced: largest change %.2e", change)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(output_dir)
    (output_dir / "configuration_lyric_valence.py").unlink(missing_ok=True)  # the package has it; assembling copies it
    tokenizer.save_pretrained(output_dir)
    save_shipped_weights(model, output_dir)
    record = finite(record)
    (output_dir / BUILD_RECORD).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    write_card(output_dir, args.model, record)
    logger.info(
        "wrote %s (%s)", output_dir, ", ".join(f"{p.name} {p.stat().st_size:,} B" for p in output_dir.iterdir())
    )
    return 0


def run(argv: list[str] | None = None) -> None:
    try:
        sys.exit(main(argv))
    except UserError as error:
        print(f"build_pretrained: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
