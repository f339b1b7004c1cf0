"""
Line-level valence of songs: an HTML page and a PNG curve per song.

    lyric-valence explain song.txt --model outputs/lyric-valence --output_dir explanations

writes, per song, `<name>.html` (the song valence, each line coloured on a diverging scale around it, and the
valence-along-the-song curve) and `<name>.png` (the curve alone), drawn by `lyric_valence.explanation_rendering`.
"""

import argparse
import logging
from pathlib import Path

from lyric_valence.arguments import ArgumentParser
from lyric_valence.errors import UserError
from lyric_valence.loading import MODEL_FIELDS, ScoringOptions
from lyric_valence.predict_io import read_text_file
from modeling_lyric_valence import EXPLAIN_METHODS

logger = logging.getLogger("lyric_valence")


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        ScoringOptions,
        only_fields=MODEL_FIELDS,
        formatter_class=argparse.HelpFormatter,
        prog="lyric-valence explain",
        description="Line-level valence of songs: an HTML page with coloured lines and the valence curve, plus a PNG "
        "of the curve, per song.",
    )
    parser.add_argument(
        "songs",
        nargs="+",
        help="Text files, each one song (UTF-8, or UTF-16 with its BOM; blank lines separate stanzas).",
    )
    parser.add_argument(
        "--method",
        choices=EXPLAIN_METHODS,
        default="stanza",
        help="What a line's valence is: its leave-one-out pseudo-value within its stanza (stanza, default: it "
        "recomposes the song score best, experiments/EXPLAIN.md), within the whole song (occlusion), or the line "
        "scored alone (line).",
    )
    parser.add_argument(
        "--output_dir", default="explanations", help="Folder for the HTML pages and PNGs (default: %(default)s)."
    )
    return parser


def read_song(path: Path) -> str:
    text = read_text_file(path)
    if not text.strip():
        raise UserError(f"{path}: no lyrics (empty or whitespace-only)")
    return text


def main(argv: list[str]) -> int:
    """Line-level valence of songs: an HTML page and a PNG curve per song."""
    from lyric_valence.explanation_rendering import curve_png, explanation_page

    options, args = parser().parse_args_into_dataclasses(argv)
    songs = {Path(name): read_song(Path(name)) for name in args.songs}
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer = options.load()
    for path, lyrics in songs.items():
        explanation = model.explain_song(lyrics, tokenizer, method=args.method)
        page, curve = output_dir / f"{path.stem}.html", output_dir / f"{path.stem}.png"
        page.write_text(explanation_page(explanation, title=path.stem), encoding="utf-8")
        curve.write_bytes(curve_png(explanation, title=path.stem))
        print(f"{path}\t{explanation.song_valence:.4f}\t{page}\t{curve}")
    logger.warning("explained %d songs into %s", len(songs), output_dir)
    return 0
