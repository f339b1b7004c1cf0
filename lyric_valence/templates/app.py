"""
lyric-valence demo (Gradio Blocks): paste or upload a song's lyrics, see its valence, each line coloured by how it
pulls the song up or down, and the valence along the song.

    lyric-valence demo --model outputs/lyric-valence          # this file, from the installed package
    LYRIC_VALENCE_MODEL=me/lyric-valence-minilm python app.py  # a Hub id or a local folder

In a Space (`lyric-valence publish --space`), the model is the first entry of `models:` in the Space's README.md.
The model is loaded by `lyric_valence.loading.load_scoring_model`, as `lyric-valence predict` loads it; line
valences come from its `explain_song`.
"""

import io
import os
from pathlib import Path

import gradio as gr
from huggingface_hub import metadata_load
from PIL import Image

from lyric_valence.explanation_rendering import curve_png, explanation_html
from lyric_valence.loading import load_scoring_model

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"  # songs written for this project: no copyrighted lyrics
DEFAULT_MODEL = "outputs/lyric-valence"


def model_name() -> str:
    """LYRIC_VALENCE_MODEL, else the Space card's first `models:` entry, else the local training output folder."""
    card = HERE / "README.md"
    models = (metadata_load(card) or {}).get("models") if card.is_file() else None
    return os.environ.get("LYRIC_VALENCE_MODEL") or (models[0] if models else DEFAULT_MODEL)


def example_songs() -> list[tuple[str, str]]:
    """(title, lyrics) of each example song."""
    return [(path.stem.replace("-", " "), path.read_text(encoding="utf-8")) for path in sorted(EXAMPLES.glob("*.txt"))]


def read_upload(path: str | None) -> str:
    if path is None:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise gr.Error(f"{Path(path).name}: not valid UTF-8 text (byte {error.start})") from None


def build_demo(model, tokenizer, model_label: str) -> gr.Blocks:
    """The Blocks app around a loaded model; `model_label` names it on the page."""

    def explain(lyrics: str):
        if not lyrics or not lyrics.strip():
            raise gr.Error("Paste or upload a song's lyrics first.")
        explanation = model.explain_song(lyrics, tokenizer)
        return explanation_html(explanation), Image.open(io.BytesIO(curve_png(explanation)))

    examples = example_songs()
    with gr.Blocks(title="lyric-valence", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# lyric-valence\nThe emotional valence of a song's lyrics, 0 (sad, negative) to 1 (happy, positive), "
            f"and which lines pull it up or down. Model: `{model_label}`."
        )
        with gr.Row():
            with gr.Column():
                lyrics = gr.Textbox(label="Lyrics (blank lines separate stanzas)", lines=14, elem_id="lyrics")
                upload = gr.File(label="or upload a .txt file", file_types=[".txt"], type="filepath")
                button = gr.Button("Explain", variant="primary", elem_id="explain")
                if examples:
                    gr.Examples(
                        [[text] for _, text in examples],
                        inputs=[lyrics],
                        example_labels=[title for title, _ in examples],
                    )
            with gr.Column():
                lines = gr.HTML(elem_id="explanation")
                curve = gr.Image(label="Valence along the song", type="pil", elem_id="curve", interactive=False)
        upload.upload(read_upload, inputs=upload, outputs=lyrics)
        button.click(explain, inputs=lyrics, outputs=[lines, curve])
    return demo


def main() -> None:
    name = model_name()
    # Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as Spaces set them.
    build_demo(*load_scoring_model(name), model_label=name).launch()


if __name__ == "__main__":
    main()
