"""
Serve the Gradio demo app on a trained model, on this machine.

    lyric-valence demo --model outputs/lyric-valence [--host 127.0.0.1] [--port 7860]

Needs the `demo` extra (`pip install "lyric-valence[demo]"`). The app is `app.py`, package data: the file a Space
runs (`lyric_valence.space`).
"""

import argparse
import importlib.util

from lyric_valence import TEMPLATES
from lyric_valence.arguments import ArgumentParser
from lyric_valence.errors import UserError
from lyric_valence.loading import MODEL_FIELDS, ScoringOptions

APP = TEMPLATES / "app.py"


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        ScoringOptions,
        only_fields=MODEL_FIELDS,
        formatter_class=argparse.HelpFormatter,
        prog="lyric-valence demo",
        description="Start the Gradio demo: paste or upload lyrics, see the song valence, coloured lines and the "
        "valence curve.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (default: %(default)s).")
    parser.add_argument("--port", type=int, default=7860, help="Port to serve on (default: %(default)s).")
    return parser


def load_app():
    """app.py as a module (the Space's entry file, shipped as package data rather than as a module)."""
    if importlib.util.find_spec("gradio") is None:
        raise UserError('gradio is not installed: pip install -e ".[demo]"')
    spec = importlib.util.spec_from_file_location("lyric_valence_app", str(APP))
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def main(argv: list[str]) -> int:
    """Serve the Gradio demo app on a trained model."""
    options, args = parser().parse_args_into_dataclasses(argv)
    app = load_app()
    model, tokenizer = options.load()
    app.build_demo(model, tokenizer, model_label=options.model).launch(server_name=args.host, server_port=args.port)
    return 0
