"""
Why the songs recipe trails TF-IDF + ridge on long songs (issue 38), measured on the held-out protocol of
`lyric_valence.build_pretrained`: per seed, train.py's artist-grouped split; fitted on train + validation with the
settings grouped 5-fold CV picks; scored on test, by song length.

The lexical channel scores each chunk's TF-IDF vector and a song is the mean of its chunks; TF-IDF + ridge reads one
vector per song. The variants differ only in that:

- `chunk TF-IDF` (the product): song rows are the mean of the chunks' L2-normalised TF-IDF rows;
- `song TF-IDF`: one TF-IDF row per song, from the term counts of all its chunks (idf over songs), as the baseline.

Reads the encoded songs a build kept (`python -m lyric_valence.build_pretrained ... --features_cache FILE`), so no
song is encoded again.

    python -m experiments.long_songs --data_file DATA/billboard_lyrics.csv --features_cache minilm.npz \\
        --out experiments/long_songs.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bench import harness
from bench.report import write_json
from lyric_valence import default_encoder_path
from lyric_valence.build_pretrained import holdout_split, read_songs, tfidf_ridge
from lyric_valence.commands.train import RECIPES
from lyric_valence.evaluation import song_metrics
from lyric_valence.pretrained import SHIPPED_MODELS
from lyric_valence.ridge import EncodedSongs, fit_encoded
from modeling_lyric_valence import LyricValenceModel

# Songs longer than this are "long": the songs model led ridge below it and trailed above it (issue 38).
LONG_SONG_CHARACTERS = 2000


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--data_file", required=True, help="The Billboard lyrics CSV (artist, song, lyrics, valence).")
    parser.add_argument("--features_cache", required=True, help="The .npz of encoded songs a build kept.")
    parser.add_argument("--model", default="songs-minilm", choices=list(SHIPPED_MODELS), help="The build it was.")
    parser.add_argument("--encoder_path", default=None, help="The encoder's folder (default: the packaged MiniLM).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="Split seeds.")
    parser.add_argument("--out", required=True, help="JSON file for the figures.")
    return parser.parse_args(argv)


def read_cache(path: Path) -> EncodedSongs:
    stored = np.load(path)
    counts = sp.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=tuple(stored["shape"]))
    return EncodedSongs(stored["pooled"], counts, stored["song_index"], stored["chunk_weights"])


def song_level(encoded: EncodedSongs) -> EncodedSongs:
    """The same songs with one 'chunk' each: the sum of their chunks' term counts."""
    counts = (sp.csr_matrix(encoded.to_songs() > 0, dtype=np.float64) @ encoded.counts).tocsr()
    songs = np.arange(encoded.songs)
    return EncodedSongs(encoded.pooled, counts, songs, np.ones(encoded.songs))


def by_length(predicted: np.ndarray, true: np.ndarray, long: np.ndarray) -> dict:
    return {
        name: {**song_metrics(predicted[mask].tolist(), true[mask].tolist()), "songs": int(mask.sum())}
        for name, mask in (("all", np.ones_like(long)), ("short", ~long), ("long", long))
    }


def main(argv=None) -> int:
    args = parse_arguments(argv)
    rows = read_songs(Path(args.data_file), args.seeds[0])
    texts, labels = rows["text"].tolist(), rows["label"].to_numpy()
    chunk_tfidf = read_cache(Path(args.features_cache))
    if chunk_tfidf.songs != len(rows):
        raise SystemExit(f"{args.features_cache}: {chunk_tfidf.songs} songs, the data file {len(rows)}")
    variants = {"chunk TF-IDF": chunk_tfidf, "song TF-IDF": song_level(chunk_tfidf)}
    long = np.array([len(text) > LONG_SONG_CHARACTERS for text in texts])
    chunks_per_song = np.bincount(chunk_tfidf.song_index, minlength=chunk_tfidf.songs)
    recipe = {key: value for key, value in RECIPES["songs"].items() if key != "finetuning_mode"}
    model = LyricValenceModel.from_encoder_pretrained(args.encoder_path or default_encoder_path(), **recipe)
    figures = {}
    for seed in args.seeds:
        fit, test, all_groups = holdout_split(Path(args.data_file), seed, list(rows["song_id"]))
        predictions = {"TF-IDF + ridge": tfidf_ridge(texts, labels, all_groups, fit, test)}
        for name, encoded in variants.items():
            ridge = fit_encoded(model, encoded.subset(fit), labels[fit], [all_groups[i] for i in fit])
            predictions[name] = ridge.solution.predict(encoded.subset(test))
        figures[str(seed)] = {name: by_length(p, labels[test], long[test]) for name, p in predictions.items()}
        print(seed, {name: round(f["long"]["mse"], 5) for name, f in figures[str(seed)].items()}, flush=True)
    summary = {
        name: {
            part: float(np.mean([figures[seed][name][part]["mse"] for seed in figures]))
            for part in ("all", "short", "long")
        }
        for name in figures[str(args.seeds[0])]
    }
    result = {
        "command": harness.command_line("experiments.long_songs", argv),
        "machine": harness.machine_line(harness.machine_info()),
        "long_song_characters": LONG_SONG_CHARACTERS,
        "long_songs": int(long.sum()),
        "songs_with_several_chunks": int((chunks_per_song > 1).sum()),
        "mean_test_mse": summary,
        "seeds": figures,
    }
    write_json(Path(args.out), result)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
