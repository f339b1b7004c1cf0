"""
The `lyric-valence` command: one subcommand per module, registered in `COMMANDS`.

    lyric-valence train --data_file lyrics.csv --output_dir outputs/lyric-valence  # or: accelerate launch -m lyric_valence.cli train
    lyric-valence predict happy.txt                              # score songs (lyric_valence.predict)
    lyric-valence publish --model outputs/lyric-valence --repo_id me/lyric-valence-minilm [--private] [--revision v1]
    lyric-valence prepare lyrics.csv --out prepared/
    lyric-valence publish --space me/lyric-valence-demo --repo_id me/lyric-valence-minilm [--dry_run]
    lyric-valence explain song.txt --model outputs/lyric-valence
    lyric-valence demo --model outputs/lyric-valence
    lyric-valence evaluate outputs/lyric-valence/test_predictions.csv
    lyric-valence --help | --version
"""

import argparse
import difflib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

logger = logging.getLogger("lyric_valence")


def predict(argv: list[str]) -> int:
    """Score whole songs: text files, folders, tables or standard input, one valence per song."""
    from lyric_valence.commands.predict import main as predict_main

    return predict_main(argv)


def publish_parser():
    from lyric_valence.arguments import ArgumentParser

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
    """Push a folder written by train.py to the Hugging Face Hub (model, adapter, card, handler)."""
    from huggingface_hub.utils import logging as hub_logging

    from lyric_valence.hub import publish as publish_folder
    from lyric_valence.space import publish_space

    hub_logging.disable_propagation()  # huggingface_hub prints its notices (retries) itself; root would repeat them

    args = publish_parser().parse_args(argv)
    if args.space:
        result = publish_space(
            args.space,
            args.repo_id,
            private=True if args.private else None,
            dry_run=args.dry_run,
            stage_dir=args.stage_dir,
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


def train(argv: list[str]) -> int:
    """Fine-tune an encoder on lyrics: the flags of train.py (`accelerate launch -m lyric_valence.cli train ...`)."""
    from lyric_valence.commands.train import run

    run(argv)
    return 0


def prepare(argv: list[str]) -> int:
    """Clean, deduplicate and split a raw lyrics file into a folder train.py reads."""
    from lyric_valence.commands.prepare import main as prepare_main

    return prepare_main(argv)


def explain(argv: list[str]) -> int:
    """Line-level valence of songs: an HTML page and a PNG curve per song."""
    from lyric_valence.commands.explain import main as explain_main

    return explain_main(argv)


def demo(argv: list[str]) -> int:
    """Serve the Gradio demo app on a trained model."""
    from lyric_valence.commands.demo import main as demo_main

    return demo_main(argv)


def evaluate(argv: list[str]) -> int:
    """Song-level metrics (MSE, Pearson, Spearman, R2) of a predictions file."""
    from lyric_valence.commands.evaluate import main as evaluate_main

    return evaluate_main(argv)


COMMANDS = {
    "train": train,
    "predict": predict,
    "publish": publish,
    "prepare": prepare,
    "explain": explain,
    "demo": demo,
    "evaluate": evaluate,
}


def package_version() -> str:
    try:
        return version("lyric-valence")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def usage() -> str:
    """The top-level help: one line per subcommand, from the first line of its function's docstring."""
    width = max(map(len, COMMANDS))
    commands = "\n".join(
        f"  {name:<{width}}  {function.__doc__.strip().splitlines()[0]}" for name, function in COMMANDS.items()
    )
    return (
        f"usage: lyric-valence [--help] [--version] {{{','.join(COMMANDS)}}} ...\n\n"
        "Fine-tune encoders to predict the valence of song lyrics, publish them, score catalogues.\n\n"
        f"commands:\n{commands}\n\n"
        "`lyric-valence COMMAND --help` lists a command's flags; every flag takes both spellings, --text_column and "
        "--text-column.\nTraining on several devices: `accelerate launch -m lyric_valence.cli train ...`.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lyric-valence` console command."""
    logging.basicConfig(format="lyric-valence: %(message)s", level=logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), file=sys.stderr, end="")
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    if argv[0] == "--version":
        print(f"lyric-valence {package_version()}")
        return 0
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; the commands are {', '.join(COMMANDS)}"
        print(f"lyric-valence: error: unknown command {argv[0]!r}{hint}", file=sys.stderr)
        return 2
    from lyric_valence.errors import UserError  # after --help and --version, which need no library

    try:
        return COMMANDS[argv[0]](argv[1:])
    except UserError as error:
        print(f"lyric-valence {argv[0]}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
