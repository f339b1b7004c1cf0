"""
A richer lexical channel (issue 38): do character 2-5-grams add to what the songs recipe reads? Measured on the
held-out protocol of `lyric_valence.build_pretrained` (per seed, train.py's artist-grouped split; fitted on train +
validation with the settings grouped 5-fold CV picks; scored on test).

- `songs features`: the songs recipe's ridge on the encoder vector and one TF-IDF row per song of its token buckets
  (experiments/LONG_SONGS.md: within 0.1% of the product's per-chunk rows);
- `char TF-IDF + ridge` (character 2-5-grams within word boundaries, sublinear tf, min_df 2) and `TF-IDF + ridge`
  (word unigrams): the cheap baselines, alpha by the same grouped CV;
- `blend w`: (1 - w) x songs features + w x char TF-IDF + ridge. The best w is picked on the test songs, so it is an
  upper bound on what a character channel could add beside the songs features, not a result to ship.

Putting the character n-grams into the songs recipe's own TF-IDF rows was tried first: their kernel over 3,277 songs
(common n-grams in every song) did not finish a fold in 15 minutes on 2 cores, which alone rules it out for a product
fit.

Reads the encoded songs a build kept (`python -m lyric_valence.build_pretrained ... --features_cache FILE`).

    python -m experiments.char_ngrams --data_file DATA/billboard_lyrics.csv --features_cache minilm.npz \\
        --out experiments/char_ngrams.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bench import harness
from bench.report import write_json
from experiments.long_songs import read_cache, song_level
from lyric_valence.build_pretrained import BASELINE_ALPHAS, holdout_split, read_songs, tfidf_ridge
from lyric_valence.evaluation import song_metrics
from lyric_valence.ridge import (
    ENCODER_SCALES,
    LEXICAL_MIN_DFS,
    RIDGE_ALPHAS,
    EncodedSongs,
    LexicalSettings,
    cross_validate,
    cv_folds,
    solve,
)

BLEND_WEIGHTS = (0.1, 0.2, 0.3, 0.5)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--data_file", required=True, help="The Billboard lyrics CSV (artist, song, lyrics, valence).")
    parser.add_argument("--features_cache", required=True, help="The .npz of encoded songs a build kept.")
    parser.add_argument("--vocab_size", type=int, default=30522, help="The encoder's vocabulary (MiniLM, mpnet).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="Split seeds.")
    parser.add_argument("--out", required=True, help="JSON file for the figures.")
    return parser.parse_args(argv)


def char_tfidf(texts: list[str], fit: np.ndarray):
    """Character 2-5-gram TF-IDF of every song, the vocabulary and idf from the fitting songs."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
    vectorizer.fit([texts[i] for i in fit])
    return vectorizer.transform(texts).tocsr()


def songs_ridge(encoded: EncodedSongs, labels, groups, fit, test, vocab_size: int) -> np.ndarray:
    """The songs recipe's grouped-CV ridge (bigram buckets on, as full lyrics pick) fitted on `fit`, scores `test`."""
    train = encoded.subset(fit)
    grid = [LexicalSettings(True, min_df) for min_df in LEXICAL_MIN_DFS]
    fit_groups = [groups[i] for i in fit]
    trials = cross_validate(train, labels[fit], fit_groups, grid, vocab_size, RIDGE_ALPHAS, ENCODER_SCALES)
    best = min(trials, key=lambda trial: trial["cv_mse"])
    solution = solve(train, labels[fit], best["settings"], best["alpha"], best["encoder_scale"], vocab_size)
    return solution.predict(encoded.subset(test))


def char_ridge(features: sp.csr_matrix, labels, groups, fit, test) -> np.ndarray:
    """Ridge on `features`, alpha by grouped CV on `fit`."""
    from sklearn.linear_model import Ridge

    folds = cv_folds([groups[i] for i in fit])
    errors = np.zeros(len(BASELINE_ALPHAS))
    for inner, held in folds:
        for a, alpha in enumerate(BASELINE_ALPHAS):
            predicted = Ridge(alpha=alpha).fit(features[fit[inner]], labels[fit[inner]]).predict(features[fit[held]])
            errors[a] += np.mean((predicted - labels[fit[held]]) ** 2) / len(folds)
    return Ridge(alpha=BASELINE_ALPHAS[int(errors.argmin())]).fit(features[fit], labels[fit]).predict(features[test])


def main(argv=None) -> int:
    args = parse_arguments(argv)
    rows = read_songs(Path(args.data_file), args.seeds[0])
    texts, labels = rows["text"].tolist(), rows["label"].to_numpy()
    encoded = song_level(read_cache(Path(args.features_cache)))
    if encoded.songs != len(rows):
        raise SystemExit(f"{args.features_cache}: {encoded.songs} songs, the data file {len(rows)}")
    figures = {}
    for seed in args.seeds:
        fit, test, all_groups = holdout_split(Path(args.data_file), seed, list(rows["song_id"]))
        songs = songs_ridge(encoded, labels, all_groups, fit, test, args.vocab_size)
        chars = char_ridge(char_tfidf(texts, fit), labels, all_groups, fit, test)
        predictions = {
            "songs features": songs,
            "char TF-IDF + ridge": chars,
            "TF-IDF + ridge": tfidf_ridge(texts, labels, all_groups, fit, test),
            **{f"blend {w}": (1 - w) * songs + w * chars for w in BLEND_WEIGHTS},
        }
        figures[str(seed)] = {name: song_metrics(p.tolist(), labels[test].tolist()) for name, p in predictions.items()}
        print(seed, {name: round(f["mse"], 5) for name, f in figures[str(seed)].items()}, flush=True)
    summary = {
        name: {metric: float(np.mean([figures[s][name][metric] for s in figures])) for metric in ("mse", "pearson")}
        for name in figures[str(args.seeds[0])]
    }
    result = {
        "command": harness.command_line("experiments.char_ngrams", argv),
        "machine": harness.machine_line(harness.machine_info()),
        "mean_test": summary,
        "seeds": figures,
    }
    write_json(Path(args.out), result)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
