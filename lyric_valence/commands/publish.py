"""
Push a folder written by train.py to the Hugging Face Hub (model, adapter, card, handler).

    lyric-valence publish --model outputs/lyric-valence --repo_id me/lyric-valence-minilm [--private] [--revision v1]
    lyric-valence publish --space me/lyric-valence-demo --repo_id me/lyric-valence-minilm [--dry_run]

The repository is built and pushed by `lyric_valence.hub.publish`; a Gradio Space by `lyric_valence.space`.
"""

import argparse
import logging

from lyric_valence.arguments import ArgumentParser

logger = logging.getLogger("lyric_valence")


def parser() -> ArgumentParser:
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


def main(argv: list[str]) -> int:
    """Push a folder written by train.py to the Hugging Face Hub (model, adapter, card, handler)."""
    from huggingface_hub.utils import logging as hub_logging

    from lyric_valence.hub import publish
    from lyric_valence.space import publish_space

    hub_logging.disable_propagation()  # huggingface_hub prints its notices (retries) itself; root would repeat them

    args = parser().parse_args(argv)
    if args.space:
        result = publish_space(
            args.space,
            args.repo_id,
            private=True if args.private else None,
            dry_run=args.dry_run,
            stage_dir=args.stage_dir,
        )
    else:
        result = publish(
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
