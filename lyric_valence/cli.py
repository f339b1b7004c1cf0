"""
The `lyric-valence` command.

    lyric-valence predict --model outputs/lyric-valence songs.csv --text_column lyrics --output scores.csv
    lyric-valence predict --model outputs/lyric-valence song1.txt song2.txt
    cat song.txt | lyric-valence predict --model outputs/lyric-valence
    lyric-valence publish --model outputs/lyric-valence --repo_id me/lyric-valence-minilm [--private] [--revision v1]
    lyric-valence prepare lyrics.csv --out prepared/
    lyric-valence publish --space me/lyric-valence-demo --repo_id me/lyric-valence-minilm [--dry_run]
    lyric-valence explain song.txt --model outputs/lyric-valence
    lyric-valence demo --model outputs/lyric-valence
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from lyric_valence.arguments import ArgumentParser
from lyric_valence.data import DataError, read_table
from lyric_valence.demo import demo
from lyric_valence.explain import explain

TEXT_SUFFIXES = (".txt", ".lyrics")
logger = logging.getLogger("lyric_valence")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def predict_parser() -> ArgumentParser:
    parser = ArgumentParser(
        formatter_class=argparse.HelpFormatter,
        prog="lyric-valence predict",
        description="Score whole songs: one valence (0 sad/negative .. 1 happy/positive) per song.",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="Songs to score: .txt files (each file one song), CSV/TSV/JSON/JSONL/Parquet tables (one song per row, "
        "see --text_column), or '-' / nothing for one song read from standard input.",
    )
    parser.add_argument(
        "--model",
        default="outputs/lyric-valence",
        help="Trained model: a folder written by train.py or a Hub repo id (loaded with trust_remote_code). "
        "Default: %(default)s.",
    )
    parser.add_argument("--text_column", default="seq", help="Column of a table holding the lyrics (default: seq).")
    parser.add_argument(
        "--id_column", default=None, help="Column of a table copied to the output as the song id (default: row number)."
    )
    parser.add_argument(
        "--output", default=None, help="Where to write the scores: .csv or .jsonl (default: CSV on standard output)."
    )
    parser.add_argument(
        "--batch_size", type=positive_int, default=32, help="Chunks scored per forward pass (default: 32)."
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available).")
    return parser


def read_songs(args: argparse.Namespace) -> pd.DataFrame:
    """All input songs as a frame of `source`, `id` and `text`, in input order."""
    if not args.inputs or args.inputs == ["-"]:
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"<stdin>: not valid UTF-8 (byte {error.start})") from None
        return pd.DataFrame({"source": ["<stdin>"], "id": ["0"], "text": [text]})
    frames = []
    for name in args.inputs:
        path = Path(name)
        if path.suffix.lower() in TEXT_SUFFIXES:
            if not path.is_file():
                raise DataError(f"{path}: no such file")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}: not valid UTF-8 (byte {error.start})") from None
            except OSError as error:
                raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
            frames.append(pd.DataFrame({"source": [name], "id": [path.stem], "text": [text]}))
            continue
        try:
            table = read_table(path)
        except OSError as error:  # unreadable (permissions, I/O error): one line, like any bad input
            raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
        for column in filter(None, (args.text_column, args.id_column)):
            if column not in table.columns:
                raise DataError(f"{path}: no column {column!r}; the columns are {list(table.columns)} (see --text_column)")
        ids = table[args.id_column] if args.id_column else pd.Series(range(len(table)))
        frames.append(pd.DataFrame({"source": name, "id": ids.astype(str).to_numpy(), "text": table[args.text_column]}))
    return pd.concat(frames, ignore_index=True)


def blank_rows(texts: pd.Series) -> pd.Series:
    return texts.isna() | (texts.astype(str).str.strip() == "")


def write_scores(scores: pd.DataFrame, output: str | None) -> None:
    if output is None:
        scores.to_csv(sys.stdout, index=False)
    elif output.endswith(".jsonl"):
        with open(output, "w", encoding="utf-8") as handle:
            for record in scores.to_dict(orient="records"):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        scores.to_csv(output, index=False)


def load_model(name: str, device: str | None):
    """The model and tokenizer of a trained folder or Hub repo, on `device`."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    if Path(name).exists() and not (Path(name) / "config.json").is_file():
        raise DataError(f"{name}: not a trained model folder (no config.json)")
    if not Path(name).exists() and (name.startswith((".", "/")) or name.count("/") != 1):
        raise DataError(f"{name}: no such model folder")
    if Path(name).exists() and not any(Path(name).glob("*.safetensors")):
        raise DataError(f"{name}: no safetensors weights; pickled weights (pytorch_model.bin) are never loaded")
    model = AutoModel.from_pretrained(name, trust_remote_code=True, use_safetensors=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), AutoTokenizer.from_pretrained(name, trust_remote_code=True)


def predict(argv: list[str]) -> int:
    args = predict_parser().parse_args(argv)
    if args.output is not None and not args.output.endswith((".csv", ".jsonl")):
        raise DataError(f"{args.output}: the output must end in .csv or .jsonl")
    if args.output is not None and not Path(args.output).absolute().parent.is_dir():
        raise DataError(f"{args.output}: the folder {Path(args.output).parent} does not exist")
    songs = read_songs(args)
    blank = blank_rows(songs["text"])
    for source, song_id in songs.loc[blank, ["source", "id"]].itertuples(index=False):
        logger.warning("skipped song %s of %s: no lyrics (empty or whitespace-only)", song_id, source)
    scored = songs[~blank]
    model, tokenizer = load_model(args.model, args.device)
    valence = model.score_songs(
        scored["text"].astype(str).tolist(), tokenizer, batch_size=args.batch_size, show_progress=len(scored) > 1
    )
    write_scores(pd.DataFrame({"source": scored["source"], "id": scored["id"], "valence": valence}), args.output)
    logger.warning("scored %d songs, skipped %d empty", len(scored), int(blank.sum()))
    return 0


def publish_parser() -> ArgumentParser:
    parser = ArgumentParser(
        formatter_class=argparse.HelpFormatter,
        prog="lyric-valence publish",
        description="Push a folder written by train.py to the Hugging Face Hub: the merged model with its custom code, "
        "the LoRA adapter (adapter/), the model card, figures and handler.py for Inference Endpoints. The token comes "
        "from HF_TOKEN or `hf auth login`; it is never printed.",
    )
    parser.add_argument(
        "--model", default="outputs/lyric-valence", help="Folder written by train.py (default: %(default)s)."
    )
    parser.add_argument(
        "--repo_id",
        required=True,
        help="Hub repository, e.g. me/lyric-valence-minilm (a bare name goes to the token owner's namespace); "
        "created if it does not exist.",
    )
    parser.add_argument(
        "--adapter_only",
        action="store_true",
        help="Push the LoRA adapter and head without the merged model weights (loads with peft only).",
    )
    parser.add_argument(
        "--private", action="store_true", help="Create the repository private (no effect on an existing repository)."
    )
    parser.add_argument(
        "--revision", default=None, help="Branch to push to, created from main if needed (default: main)."
    )
    parser.add_argument(
        "--base_model",
        default=None,
        help="Hub id of the pretrained encoder, for the card and the adapter config, when training used a local "
        "copy (default: the encoder train.py recorded).",
    )
    parser.add_argument("--commit_message", default=None, help="Commit message (default: names the test metrics).")
    parser.add_argument(
        "--dry_run",
        action="store_true",
        help="Build the repository and list its files without contacting the Hub (keep it with --stage_dir).",
    )
    parser.add_argument(
        "--stage_dir", default=None, help="Empty folder to build the repository in and keep (default: a temporary one)."
    )
    parser.add_argument(
        "--space",
        default=None,
        metavar="SPACE_ID",
        help="Push a Gradio Space that demos the Hub model --repo_id (app.py, examples, requirements.txt, README.md "
        "with the Space metadata) instead of a model folder; --dry_run only writes the folder.",
    )
    return parser


def publish(argv: list[str]) -> int:
    from huggingface_hub.utils import logging as hub_logging

    from lyric_valence.hub import publish as publish_folder
    from lyric_valence.space import publish_space

    hub_logging.disable_propagation()  # huggingface_hub prints its notices (retries) itself; root would repeat them

    args = publish_parser().parse_args(argv)
    if args.space:
        result = publish_space(
            args.space, args.repo_id, private=True if args.private else None, dry_run=args.dry_run, stage_dir=args.stage_dir
        )
    else:
        result = publish_folder(
            args.model,
            args.repo_id,
            adapter_only=args.adapter_only,
            private=True if args.private else None,
            revision=args.revision,
            base_model=args.base_model,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
            stage_dir=args.stage_dir,
        )
    if args.dry_run:
        print("\n".join(result.files))
        logger.warning("dry run: %d files would go to %s; nothing was uploaded", len(result.files), result.repo_id)
    else:
        print(result.commit_url)
    return 0


def prepare(argv: list[str]) -> int:
    from lyric_valence.data.prepare import main as prepare_main

    return prepare_main(argv)


COMMANDS = {"predict": predict, "publish": publish, "prepare": prepare, "explain": explain, "demo": demo}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lyric-valence` console command."""
    logging.basicConfig(format="lyric-valence: %(message)s", level=logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: lyric-valence {{{','.join(COMMANDS)}}} [--help] ...", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except DataError as error:
        print(f"lyric-valence {argv[0]}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
