"""
How a line-level explanation (`LyricValenceModel.explain_song`) is shown: lines coloured on a diverging scale
around the song's valence, and the valence-along-the-song curve. Used by `lyric-valence explain` (an HTML page and a
PNG) and by the Gradio demo (`app.py`), locally and in a Space, so it imports matplotlib and the standard library only.
"""

import base64
import html
import io
import itertools

import matplotlib

matplotlib.use("Agg")  # headless: files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import TwoSlopeNorm, to_hex  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# Red: the line pulls the song down (sadder than the song), blue: it pulls it up; white: the song's own valence.
COLORMAP = "RdBu"
STYLE = """
.lv-song { font-family: system-ui, sans-serif; max-width: 46rem; }
.lv-score { font-size: 1.4rem; margin: 0 0 .6rem 0; }
.lv-legend { font-size: .85rem; color: #555; margin-bottom: .6rem; }
.lv-stanza { margin-bottom: .9rem; }
.lv-line { display: flex; gap: .8rem; padding: .12rem .5rem; border-radius: 3px; color: #111; }
.lv-line .lv-value { font-variant-numeric: tabular-nums; color: #333; min-width: 3.2rem; text-align: right; }
"""


def color_norm(explanation) -> TwoSlopeNorm:
    """Diverging scale centred on the song's valence, symmetric, spanning the line furthest from it."""
    centre = explanation.song_valence
    spread = max((abs(value - centre) for value in explanation.line_valence), default=0.0) or 1e-6
    return TwoSlopeNorm(vcenter=centre, vmin=centre - spread, vmax=centre + spread)


def line_colors(explanation) -> list[str]:
    """One hex background colour per line, light enough for black text (the colormap's darkest fifths left out)."""
    norm, colormap = color_norm(explanation), plt.get_cmap(COLORMAP)
    return [to_hex(colormap(0.2 + 0.6 * float(norm(value)))) for value in explanation.line_valence]


def explanation_html(explanation) -> str:
    """An HTML fragment: the song valence (id `song-valence`) and the coloured lines, grouped in stanzas."""
    colors = line_colors(explanation)
    stanzas: dict[int, list[str]] = {}
    for line, value, color, stanza in zip(
        explanation.lines, explanation.line_valence, colors, explanation.stanza_index, strict=True
    ):
        stanzas.setdefault(stanza, []).append(
            f'<div class="lv-line" style="background:{color}" title="line valence {value:.3f}">'
            f'<span class="lv-value">{value:.3f}</span><span class="lv-text">{html.escape(line)}</span></div>'
        )
    body = "".join(f'<div class="lv-stanza">{"".join(lines)}</div>' for lines in stanzas.values())
    return (
        f"<style>{STYLE}</style>"
        f'<div class="lv-song"><p class="lv-score">Song valence: <b id="song-valence">'
        f"{explanation.song_valence:.3f}</b></p>"
        f'<p class="lv-legend">Each line\'s valence ({html.escape(explanation.method)} method): '
        f'<span style="color:#b2182b">red</span> lines pull the song down, '
        f'<span style="color:#2166ac">blue</span> lines pull it up; white is the song\'s own valence.</p>'
        f"{body}</div>"
    )


def curve_figure(explanation, title: str = "Valence along the song"):
    """Line valence against line number, the song's valence as a dashed line, stanza breaks dotted."""
    values = explanation.line_valence
    positions = list(range(1, len(values) + 1))
    figure, axes = plt.subplots(figsize=(8, 3.4))
    axes.plot(positions, values, color="#888", linewidth=1, zorder=1)
    axes.scatter(positions, values, c=values, cmap=COLORMAP, norm=color_norm(explanation), edgecolors="#333", zorder=2)
    axes.axhline(
        explanation.song_valence,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"song valence {explanation.song_valence:.3f}",
    )
    for position, (before, after) in enumerate(itertools.pairwise(explanation.stanza_index), start=1):
        if before != after:
            axes.axvline(position + 0.5, color="#bbb", linestyle=":", linewidth=1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="line", ylabel=f"line valence ({explanation.method})", title=title)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def curve_png(explanation, title: str = "Valence along the song") -> bytes:
    """The curve as PNG bytes; the figure is closed (a long-running demo keeps no figures open)."""
    buffer = io.BytesIO()
    figure = curve_figure(explanation, title)
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def explanation_page(explanation, title: str) -> str:
    """A standalone HTML page: the curve (embedded PNG) and the coloured lines."""
    curve = base64.b64encode(curve_png(explanation, title)).decode("ascii")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f'<body><h1 style="font-family: system-ui, sans-serif">{html.escape(title)}</h1>'
        f'<img alt="valence along the song" src="data:image/png;base64,{curve}" style="max-width: 100%">'
        f"{explanation_html(explanation)}</body></html>\n"
    )
