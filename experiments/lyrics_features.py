"""
One-off study (issue 25): which song features beat TF-IDF + ridge on real lyrics with Spotify valence, measured
cheaply over several split seeds by encoding every song ONCE per encoder.

`train.py --finetuning_mode ridge` re-encodes the songs of each run; three seeds of a bert-base-sized encoder on
2 CPU cores would take hours that way. The encoder's pooled chunk vectors do not depend on the split, so this study
caches them per encoder (`--cache`), then fits, for each seed's split (`load_splits`, as train.py makes it), the same
regression as `lyric_valence.ridge`: song rows = mean of chunk rows; the lexical block computed by the model's own
`LyricValenceLexicalChannel` (idf from the seed's training chunks); the encoder block standardised and scaled;
scikit-learn's Ridge, alpha and scale picked on validation MSE. `bench/lyrics.py --trials songs` measures the product
path itself; experiments/LYRICS_FEATURES.md compares the two on MiniLM.

    python -m experiments.lyrics_features --data_file billboard_lyrics.csv --text_column lyrics \\
        --label_column valence --group_column artist --encoder DIR --cache mpnet.pt --out mpnet.json
"""

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.linear_model import Ridge
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from bench import harness
from lyric_valence import default_encoder_path
from lyric_valence.data import DataOptions, load_splits
from lyric_valence.evaluation import song_metrics
from lyric_valence.ridge import ENCODER_SCALES, RIDGE_ALPHAS, song_rows
from modeling_lyric_valence import DEFAULT_BATCH_TOKENS, LyricValenceLexicalChannel, LyricValenceModel, chunk_batches


def chunk_inputs(model: LyricValenceModel, tokenizer, texts: list[str]):
    """The chunks of `texts` in token-budget batches, as the model scores them (cheap: tokenizing only)."""
    return chunk_batches(tokenizer, texts, model.config, DEFAULT_BATCH_TOKENS["cpu"])


@torch.inference_mode()
def encode(model: LyricValenceModel, chunks) -> torch.Tensor:
    """The pooled vector of every chunk at every hidden layer, [chunks, layers, hidden] (the expensive part, cached)."""
    pooled = torch.empty(len(chunks.song_index), model.encoder.config.num_hidden_layers + 1, model.config.hidden_size)
    for indices, inputs in tqdm(chunks.batches, desc="encoding", unit="batch"):
        hidden_states = model.encoder(**inputs, output_hidden_states=True).hidden_states
        pooled[indices] = torch.stack([model.pool(h, inputs["attention_mask"]) for h in hidden_states], dim=1)
    return pooled


@torch.no_grad()
def lexical_rows(lexical: LyricValenceLexicalChannel, chunks, training_chunks: torch.Tensor) -> sp.csr_matrix:
    """The lexical channel's TF-IDF rows of every chunk, with idf from the training chunks (as `fit_idf` sets it)."""
    frequency = torch.zeros(lexical.buckets, dtype=torch.float64)
    for indices, inputs in chunks.batches:
        chunk, feature, _ = lexical.term_counts(inputs["input_ids"], inputs["attention_mask"])
        training = training_chunks[torch.tensor(indices)[chunk]]
        frequency.index_add_(0, feature[training], torch.ones(int(training.sum()), dtype=torch.float64))
    lexical.idf.copy_(((1 + training_chunks.sum()) / (1 + frequency)).log() + 1)
    triples = []
    for indices, inputs in chunks.batches:
        chunk, feature, value = lexical.tfidf(inputs["input_ids"], inputs["attention_mask"])
        triples.append((torch.tensor(indices)[chunk], feature, value))
    chunk, feature, value = (torch.cat(parts).numpy() for parts in zip(*triples, strict=True))
    return sp.csr_matrix((value, (chunk, feature)), shape=(len(chunks.song_index), lexical.buckets))


def fit(lexical: dict | None, pooled: dict | None, labels: dict, alphas=RIDGE_ALPHAS, scales=ENCODER_SCALES) -> dict:
    """The ridge grid of `lyric_valence.ridge.fit_ridge` on precomputed song rows; metrics of the validation pick."""
    if pooled is not None:
        mean, std = pooled["train"].mean(0), pooled["train"].std(0)
        std[std == 0] = 1.0
    best = None
    for scale in scales if lexical and pooled else scales[:1]:
        rows = {}
        for split in labels:
            blocks = [lexical[split]] if lexical else []
            if pooled is not None:
                blocks.append(sp.csr_matrix((pooled[split] - mean) / std * scale / np.sqrt(mean.size)))
            rows[split] = sp.hstack(blocks).tocsr()
        for alpha in alphas:
            ridge = Ridge(alpha=alpha).fit(rows["train"], labels["train"])
            predicted = {split: ridge.predict(rows[split]) for split in ("validation", "test")}
            validation_mse = float(np.mean((predicted["validation"] - labels["validation"]) ** 2))
            if best is None or validation_mse < best[0]:
                best = (validation_mse, alpha, scale, predicted)
    _, alpha, scale, predicted = best
    return {
        "alpha": alpha,
        "encoder_scale": scale,
        **{split: song_metrics(predicted[split].tolist(), labels[split].tolist()) for split in predicted},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_file", required=True)
    parser.add_argument("--text_column", default="lyrics")
    parser.add_argument("--label_column", default="valence")
    parser.add_argument("--group_column", default="artist")
    parser.add_argument("--encoder", default=None, help="Encoder folder (default: the packaged MiniLM).")
    parser.add_argument("--max_length", type=int, default=512, help="Chunk length in tokens (train.py --max_length).")
    parser.add_argument("--stride", type=int, default=128, help="Tokens shared by consecutive chunks.")
    parser.add_argument("--cache", type=Path, required=True, help="Cached encoder pass (written if missing).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--out", type=Path, required=True, help="JSON of the results.")
    parser.add_argument("--buckets", type=int, nargs="+", default=[2**18, 2**20], help="Lexical channel sizes.")
    parser.add_argument(
        "--no_lexical_bigrams",
        action="store_true",
        help="Lexical channel of token unigrams only (config.lexical_bigrams False).",
    )
    parser.add_argument(
        "--last_layers",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="Encoder rows: the pooled mean of the last K layers, for each K.",
    )
    parser.add_argument("--alphas", type=float, nargs="+", default=list(RIDGE_ALPHAS), help="Ridge alphas tried.")
    parser.add_argument(
        "--encoder_scales",
        type=float,
        nargs="+",
        default=list(ENCODER_SCALES),
        help="Weights of the standardised encoder block beside the lexical one, tried.",
    )
    args = parser.parse_args(argv)

    options = DataOptions(text_column=args.text_column, label_column=args.label_column, group_column=args.group_column)
    encoder = args.encoder or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = LyricValenceModel.from_encoder_pretrained(
        encoder, pooling="mean", max_length=args.max_length, stride=args.stride
    ).eval()
    first, _ = load_splits(args.data_file, options, seed=args.seeds[0])
    songs = pd.concat([first[name].to_pandas() for name in ("train", "validation", "test")])
    chunks = chunk_inputs(model, tokenizer, songs["text"].tolist())
    if not args.cache.exists():
        torch.save(encode(model, chunks), args.cache)
    to_songs = song_rows(chunks.song_index, torch.ones(len(chunks.song_index)), len(songs))
    layers = torch.load(args.cache).double()
    # mean pooling is linear: the mean of the last k layers' pooled vectors is the pooled mean of those layers
    encoders = {f"last {k} layers": to_songs @ layers[:, -k:].mean(1).numpy() for k in args.last_layers}
    position = {song_id: i for i, song_id in enumerate(songs["song_id"])}

    grid = (args.alphas, args.encoder_scales)
    results = {}
    for seed in args.seeds:
        splits, _ = load_splits(args.data_file, options, seed=seed)
        index = {name: np.array([position[s] for s in splits[name]["song_id"]]) for name in splits}
        labels = {name: np.asarray(splits[name]["label"]) for name in splits}
        training_chunks = torch.from_numpy(np.isin(chunks.song_index.numpy(), index["train"]))
        results[seed] = {}
        for encoder_name, pooled in encoders.items():
            results[seed][f"encoder {encoder_name}"] = fit(
                None, {name: pooled[i] for name, i in index.items()}, labels, *grid
            )
        for buckets in args.buckets:
            config = copy.deepcopy(model.config)
            config.lexical_buckets = buckets
            config.lexical_bigrams = not args.no_lexical_bigrams
            rows = (to_songs @ lexical_rows(LyricValenceLexicalChannel(config), chunks, training_chunks)).tocsr()
            lexical = {name: rows[i] for name, i in index.items()}
            results[seed][f"lexical {buckets}"] = fit(lexical, None, labels, *grid)
            for encoder_name, pooled in encoders.items():
                by_split = {name: pooled[i] for name, i in index.items()}
                results[seed][f"lexical {buckets} + encoder {encoder_name}"] = fit(lexical, by_split, labels, *grid)
        print(seed, {name: round(row["test"]["mse"], 5) for name, row in results[seed].items()}, flush=True)
    for name in results[args.seeds[0]]:
        test = [results[seed][name]["test"] for seed in args.seeds]
        print(
            f"{name:48s} test mse {np.mean([t['mse'] for t in test]):.5f} ± {np.std([t['mse'] for t in test]):.5f}"
            f"  r {np.mean([t['pearson'] for t in test]):.3f} ± {np.std([t['pearson'] for t in test]):.3f}"
        )
    record = {"command": harness.command_line("experiments.lyrics_features", argv), "machine": harness.machine_info()}
    record.update(encoder=harness.portable_path(args.encoder, "--encoder") if args.encoder else "packaged MiniLM")
    args.out.write_text(json.dumps({**record, "seeds": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
