"""
One-off study (issue 25): which lexical features, beside the cached MiniLM encoder block, match TF-IDF + ridge on the
word-count set without losing on full lyrics. Reuses `experiments.lyrics_features` (its encoder cache, the same chunks,
splits and ridge grid as the product); features are built here in Python (whole words, song-level counts, pruning, a
separately weighted bigram block), so most rows are not the product's channel: row V0 is (checked against
`LyricValenceLexicalChannel` on the first seed), and V1 is `lexical_bigrams=False`. `--cv` adds a grouped 5-fold
cross-validation on the training songs of V0 against V1 (both beside the encoder). Results: LYRICS_FEATURES.md.

    python -m experiments.lexical_variants --data_file billboard_bow.csv --text_column seq --label_column label \\
        --group_column artist --cache minilm_bow512.pt --out variants_bow.json --cv
"""

import argparse
import copy
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from transformers import AutoTokenizer

from bench import harness
from experiments.lyrics_features import chunk_inputs, fit, lexical_rows
from lyric_valence import default_encoder_path
from lyric_valence.data import DataOptions, load_splits
from lyric_valence.evaluation import song_metrics
from lyric_valence.ridge import ENCODER_SCALES, RIDGE_ALPHAS, song_rows
from modeling_lyric_valence import LyricValenceLexicalChannel, LyricValenceModel

MULT = LyricValenceLexicalChannel.BIGRAM_HASH_MULTIPLIER


def unit_features(ids: list[int], kind: str, vocab: int, cont: np.ndarray, special: set, buckets: int) -> list:
    """Feature keys of one unit (chunk or song) of token ids."""
    feats = []
    if kind.startswith("piece"):
        feats += list(ids)
        if kind == "bi_only":
            feats = []
        if kind in ("piece_bi", "bi_only"):  # the product: hashed piece bigrams
            feats += [vocab + ((a * vocab + b) * MULT) % (buckets - vocab) for a, b in itertools.pairwise(ids)]
        return feats
    # whole words: continuation pieces merged into the word before them; specials dropped
    words, cur = [], None
    for t in ids:
        if t in special:
            if cur:
                words.append(tuple(cur))
            cur = None
            continue
        if cont[t] and cur is not None:
            cur.append(t)
        else:
            if cur:
                words.append(tuple(cur))
            cur = [t]
    if cur:
        words.append(tuple(cur))
    feats += [("w",) + w for w in words]
    if kind == "word_piece":  # whole words plus piece unigrams
        feats += [("p", t) for t in ids if t not in special]
    if kind == "word_bi":  # whole words plus word bigrams
        feats += [("b",) + a + (-1,) + b for a, b in itertools.pairwise(words)]
    if kind == "word_pbi":  # words + piece unigrams + hashed piece bigrams
        feats += [("p", t) for t in ids]
        feats += [("q", a, b) for a, b in itertools.pairwise(ids)]
    return feats


def count_matrix(units: list[list[int]], kind, vocab, cont, special, buckets, index=None):
    index = {} if index is None else index
    rows, cols, vals = [], [], []
    for u, ids in enumerate(units):
        feats = unit_features(ids, kind, vocab, cont, special, buckets)
        keys, counts = (
            np.unique(np.array([index.setdefault(f, len(index)) for f in feats], dtype=np.int64), return_counts=True)
            if feats
            else (np.array([], np.int64), np.array([], np.int64))
        )
        rows.append(np.full(len(keys), u))
        cols.append(keys)
        vals.append(counts)
    rows, cols, vals = (np.concatenate(x) for x in (rows, cols, vals))
    return sp.csr_matrix((vals.astype(np.float64), (rows, cols)), shape=(len(units), len(index)))


def tfidf_rows(counts: sp.csr_matrix, train_units: np.ndarray, min_df=1, sublinear=True, norm=True, use_idf=True):
    tf = counts.copy()
    if sublinear:
        tf.data = 1 + np.log(tf.data)
    df = np.asarray((counts[train_units] > 0).sum(0)).ravel()
    n = int(train_units.sum())
    idf = np.log((1 + n) / (1 + df)) + 1 if use_idf else np.ones_like(df, dtype=float)
    idf = idf * (df >= min_df)
    x = (tf @ sp.diags(idf)).tocsr()
    if norm:
        norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
        x = sp.diags(1 / np.maximum(norms, 1e-12)) @ x
    return x.tocsr()


def encoder_beside(lexical: sp.csr_matrix, pooled: np.ndarray, fit_songs: np.ndarray, scale: float) -> sp.csr_matrix:
    """The lexical rows with the encoder block standardised on `fit_songs` and scaled, as the product's ridge does."""
    mean, std = pooled[fit_songs].mean(0), pooled[fit_songs].std(0)
    std[std == 0] = 1.0
    return sp.hstack([lexical, sp.csr_matrix((pooled - mean) / std * scale / np.sqrt(mean.size))]).tocsr()


def cross_validated_pick(counts: dict, to_songs, pooled, chunk_song, train, labels, groups, test, test_labels, grid):
    """
    Grouped 5-fold CV on the training songs over (features, alpha, encoder scale), lexical idf from each fold's
    training chunks; the pick refitted on all training songs and scored on the test songs.
    """
    songs = to_songs.shape[0]
    scores = {}
    for kind, c in counts.items():
        for fit_part, held_out in GroupKFold(5).split(train, groups=groups):
            fit_songs = np.zeros(songs, bool)
            fit_songs[train[fit_part]] = True
            lexical = (to_songs @ tfidf_rows(c, fit_songs[chunk_song])).tocsr()
            for scale in grid[1]:
                x = encoder_beside(lexical, pooled, train[fit_part], scale)
                for alpha in grid[0]:
                    predicted = Ridge(alpha=alpha).fit(x[train[fit_part]], labels[fit_part]).predict(x[train[held_out]])
                    scores.setdefault((kind, alpha, scale), []).append(
                        float(np.mean((predicted - labels[held_out]) ** 2))
                    )
    mean = {key: float(np.mean(value)) for key, value in scores.items()}
    best = {kind: min((value, key) for key, value in mean.items() if key[0] == kind) for kind in counts}
    kind, alpha, scale = min(best.values())[1]
    train_songs = np.zeros(songs, bool)
    train_songs[train] = True
    x = encoder_beside((to_songs @ tfidf_rows(counts[kind], train_songs[chunk_song])).tocsr(), pooled, train, scale)
    predicted = Ridge(alpha=alpha).fit(x[train], labels).predict(x[test])
    return {
        "cv_mse": {k: v for k, (v, _) in best.items()},
        "pick": kind,
        "alpha": alpha,
        "encoder_scale": scale,
        "test": song_metrics(predicted.tolist(), test_labels.tolist()),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_file", required=True)
    p.add_argument("--text_column", default="lyrics")
    p.add_argument("--label_column", default="valence")
    p.add_argument("--group_column", default="artist")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--variants", nargs="+", default=None)
    p.add_argument("--scales", type=float, nargs="+", default=list(ENCODER_SCALES))
    p.add_argument("--cv", action="store_true", help="Also pick bigrams on/off by grouped 5-fold CV on training songs.")
    args = p.parse_args(argv)

    options = DataOptions(text_column=args.text_column, label_column=args.label_column, group_column=args.group_column)
    encoder = default_encoder_path()
    tok = AutoTokenizer.from_pretrained(encoder)
    model = LyricValenceModel.from_encoder_pretrained(encoder, pooling="mean", max_length=512, stride=128).eval()
    first, _ = load_splits(args.data_file, options, seed=args.seeds[0])
    songs = pd.concat([first[n].to_pandas() for n in ("train", "validation", "test")])
    texts = songs["text"].tolist()
    chunks = chunk_inputs(model, tok, texts)
    nchunks = len(chunks.song_index)
    chunk_ids = [None] * nchunks
    for indices, inputs in chunks.batches:
        for row, c in enumerate(indices):
            m = inputs["attention_mask"][row].bool()
            chunk_ids[c] = inputs["input_ids"][row][m].tolist()
    song_ids = tok(texts, truncation=False)["input_ids"]  # whole song, one unit (no chunk overlap)
    vocab = tok.vocab_size
    cont = np.zeros(vocab, bool)
    for t, i in tok.get_vocab().items():
        if t.startswith("##"):
            cont[i] = True
    special = set(tok.all_special_ids)
    to_songs = song_rows(chunks.song_index, torch.ones(nchunks), len(songs))
    pooled_all = to_songs @ torch.load(args.cache).double()[:, -1].numpy()
    position = {s: i for i, s in enumerate(songs["song_id"])}
    chunk_song = chunks.song_index.numpy()
    print(f"{len(songs)} songs, {nchunks} chunks, {sum(len(c) for c in chunk_ids)} chunk tokens", flush=True)

    B = 2**20
    # variant name -> (feature kind, unit, min_df, extra)
    all_variants = {
        "V0 product: piece uni+hashed bi, chunk": ("piece_bi", "chunk", 1),
        "V1 piece uni, chunk": ("piece", "chunk", 1),
        "V2 piece uni+bi, song": ("piece_bi", "song", 1),
        "V3 piece uni, song": ("piece", "song", 1),
        "V4 piece uni+bi, chunk, min_df2": ("piece_bi", "chunk", 2),
        "V5 word uni, chunk": ("word", "chunk", 1),
        "V6 word uni, song": ("word", "song", 1),
        "V7 word uni, chunk, min_df2": ("word", "chunk", 2),
        "V8 word uni, song, min_df2": ("word", "song", 2),
        "V9 word+piece uni, chunk": ("word_piece", "chunk", 1),
        "V10 word uni+word bi, chunk": ("word_bi", "chunk", 1),
        "V11 word+piece uni+piece bi, chunk": ("word_pbi", "chunk", 1),
        "V12 piece uni, chunk, min_df2": ("piece", "chunk", 2),
        "V13 word+piece uni, song": ("word_piece", "song", 1),
        "V14 piece uni | bigram block x0.35 (sep. L2), chunk": ("blocks", "chunk", 0.35),
        "V15 piece uni | bigram block x0.5 (sep. L2), chunk": ("blocks", "chunk", 0.5),
        "V16 piece uni | bigram block x0.7 (sep. L2), chunk": ("blocks", "chunk", 0.7),
        "V17 piece uni | bigram block x1 (sep. L2), chunk": ("blocks", "chunk", 1.0),
    }
    variants = {k: v for k, v in all_variants.items() if args.variants is None or k.split()[0] in args.variants}
    counts = {}
    needed = {("piece_bi", "chunk"), ("piece", "chunk")} if args.cv else set()
    for kind, unit, _ in variants.values():
        needed |= {("piece", unit), ("bi_only", unit)} if kind == "blocks" else {(kind, unit)}
    for kind, unit in sorted(needed):
        if (kind, unit) not in counts:
            t = time.time()
            counts[(kind, unit)] = count_matrix(
                chunk_ids if unit == "chunk" else song_ids, kind, vocab, cont, special, B
            )
            print(f"counts {kind}/{unit}: {counts[(kind, unit)].shape} {time.time() - t:.0f}s", flush=True)

    grid = (list(RIDGE_ALPHAS), args.scales)
    results, cross_validated = {}, {}
    for seed in args.seeds:
        splits, _ = load_splits(args.data_file, options, seed=seed)
        index = {n: np.array([position[s] for s in splits[n]["song_id"]]) for n in splits}
        labels = {n: np.asarray(splits[n]["label"]) for n in splits}
        pooled = {n: pooled_all[i] for n, i in index.items()}
        train_song = np.zeros(len(songs), bool)
        train_song[index["train"]] = True
        train_chunk = train_song[chunk_song]
        r = results[seed] = {}
        r["encoder"] = fit(None, pooled, labels, *grid)
        # sklearn baseline (bench/lyrics.py) on the same split, and as the lexical block beside the encoder
        vec = TfidfVectorizer(sublinear_tf=True, min_df=2)
        frames = {n: songs.iloc[i] for n, i in index.items()}
        sk = {"train": vec.fit_transform(frames["train"]["text"])}
        sk.update({n: vec.transform(frames[n]["text"]) for n in ("validation", "test")})
        r["sklearn TF-IDF + ridge (baseline)"] = fit(sk, None, labels, *grid)
        r["sklearn TF-IDF + encoder"] = fit(sk, pooled, labels, *grid)
        for name, (kind, unit, min_df) in variants.items():
            if kind == "blocks":
                w = min_df
                rows = (
                    to_songs
                    @ sp.hstack(
                        [
                            tfidf_rows(counts[("piece", unit)], train_chunk),
                            w * tfidf_rows(counts[("bi_only", unit)], train_chunk),
                        ]
                    ).tocsr()
                )
                lex = {n: rows[i] for n, i in index.items()}
                r[name + " | alone"] = fit(lex, None, labels, *grid)
                r[name + " + encoder"] = fit(lex, pooled, labels, *grid)
                continue
            c = counts[(kind, unit)]
            if unit == "chunk":
                rows = (to_songs @ tfidf_rows(c, train_chunk, min_df)).tocsr()
            else:
                rows = tfidf_rows(c, train_song, min_df)
            lex = {n: rows[i] for n, i in index.items()}
            r[name + " | alone"] = fit(lex, None, labels, *grid)
            r[name + " + encoder"] = fit(lex, pooled, labels, *grid)
        if seed == args.seeds[0] and "V0 product: piece uni+hashed bi, chunk" in variants:
            # check V0 equals the product's own channel
            config = copy.deepcopy(model.config)
            config.lexical_buckets = B
            prod = (
                to_songs @ lexical_rows(LyricValenceLexicalChannel(config), chunks, torch.from_numpy(train_chunk))
            ).tocsr()
            lex = {n: prod[i] for n, i in index.items()}
            r["product channel (check) + encoder"] = fit(lex, pooled, labels, *grid)
        print(seed, {k: round(v["test"]["mse"], 5) for k, v in r.items()}, flush=True)
        if args.cv:
            picked = cross_validated_pick(
                {kind: counts[(kind, "chunk")] for kind in ("piece_bi", "piece")},
                to_songs,
                pooled_all,
                chunk_song,
                index["train"],
                labels["train"],
                np.asarray(splits["train"]["group"]),
                index["test"],
                labels["test"],
                grid,
            )
            cross_validated[seed] = picked
            print(seed, "CV:", json.dumps(picked), flush=True)

    base = "sklearn TF-IDF + ridge (baseline)"
    lines = []
    for name in results[args.seeds[0]]:
        if name not in results[args.seeds[-1]]:
            continue
        t = [results[s][name]["test"] for s in args.seeds]
        v = [results[s][name]["validation"]["mse"] for s in args.seeds]
        mse, rr = [x["mse"] for x in t], [x["pearson"] for x in t]
        rel = np.mean([results[s][name]["test"]["mse"] / results[s][base]["test"]["mse"] - 1 for s in args.seeds])
        ratio = np.mean(mse) / np.mean([results[s][base]["test"]["mse"] for s in args.seeds]) - 1
        lines.append(
            f"{name:52s} val {np.mean(v):.5f}  test mse {np.mean(mse):.5f} ± {np.std(mse):.5f}  "
            f"r {np.mean(rr):.3f} ± {np.std(rr):.3f}  vs ridge {100 * rel:+.1f}% (of means {100 * ratio:+.1f}%)  "
            f"alpha/scale {[(results[s][name]['alpha'], results[s][name]['encoder_scale']) for s in args.seeds]}"
        )
    if args.cv:
        t = [cross_validated[s]["test"] for s in args.seeds]
        lines.append(
            f"{'V0 or V1 + encoder, picked by grouped 5-fold CV':52s} test mse "
            f"{np.mean([x['mse'] for x in t]):.5f} ± {np.std([x['mse'] for x in t]):.5f}  "
            f"r {np.mean([x['pearson'] for x in t]):.3f} ± {np.std([x['pearson'] for x in t]):.3f}  "
            f"picks {[cross_validated[s]['pick'] for s in args.seeds]}"
        )
    print("\n".join(lines))
    record = {"command": harness.command_line("experiments.lexical_variants", argv), "machine": harness.machine_info()}
    record.update(seeds=results, cv=cross_validated, table=lines)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
