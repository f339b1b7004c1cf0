"""
Check (issue 25): what `train.py --lexical_bigrams auto` picks on a data file, per split seed. Runs the product's
`choose_lexical_bigrams` on the training songs of train.py's split (no encoder pass: only the tokenizer matters) and
prints the choice with both cross-validated MSEs. Results: LYRICS_FEATURES.md.

    python -m experiments.bigram_choice --data_file billboard_bow.csv --text_column seq --label_column label \\
        --group_column artist [--encoder DIR]
"""

import argparse
import time

from transformers import AutoTokenizer

from lyric_valence import default_encoder_path
from lyric_valence.data import Columns, load_splits
from lyric_valence.ridge import choose_lexical_bigrams
from lyric_valence.train import RECIPES
from modeling_lyric_valence import LyricValenceModel


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_file", required=True)
    parser.add_argument("--text_column", default="lyrics")
    parser.add_argument("--label_column", default="valence")
    parser.add_argument("--group_column", default="artist")
    parser.add_argument("--encoder", default=None, help="Its tokenizer is the channel's (default: the packaged MiniLM).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args()
    encoder = args.encoder or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    columns = Columns(args.text_column, args.label_column, None, args.group_column, None)
    # One model for every seed: the choice counts with bigrams on whatever the last seed picked.
    model = LyricValenceModel.from_encoder_pretrained(encoder, pooling="mean", lexical_buckets=RECIPES["songs"]["lexical_buckets"])
    for seed in args.seeds:
        train = load_splits(args.data_file, columns=columns, seed=seed)[0]["train"]
        start = time.perf_counter()
        choice = choose_lexical_bigrams(model, tokenizer, list(train["text"]), list(train["label"]), list(train["group"]))
        print(f"seed {seed}: {train.num_rows} training songs, {choice} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
