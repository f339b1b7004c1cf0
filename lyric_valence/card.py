"""The model card (README.md) of a trained model, rendered from `model_card.md` with the measured metrics."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lyric_valence import REPO_ROOT

TEMPLATE = REPO_ROOT / "model_card.md"
REPORTED_METRICS = ("mse", "rmse", "mae", "pearson", "spearman", "r2")


def render_model_card(
    *,
    repo_id: str,
    base_model: str,
    config,
    test_metrics: dict[str, float],
    dataset_name: str,
    dataset_description: str,
    recipe: dict[str, object],
    language: str = "en",
    license: str = "apache-2.0",
) -> ModelCard:
    """
    A `ModelCard` whose YAML carries a `model-index` with the song-level test metrics (`test_metrics`, keys without
    the `test_` prefix) and whose prose comes from `model_card.md`.
    """
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Lyrics valence regression (song level)",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=name,
            metric_name=f"song-level {name}",
            metric_value=test_metrics[name],
        )
        for name in REPORTED_METRICS
        if name in test_metrics
    ]
    card_data = ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=base_model,
        tags=["lyrics", "valence", "regression", "music", "peft", "lora", "custom_code"],
        datasets=[dataset_name],
        model_name=repo_id,
        eval_results=eval_results,
        widget=[
            {"text": "Sunshine on my face, I'm dancing down the street, nothing's gonna bring me down"},
            {"text": "Empty rooms and letters that you never sent, I keep on waiting in the rain"},
        ],
    )
    base_model_url = base_model if base_model.startswith(("http", "/")) else f"https://huggingface.co/{base_model}"
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        base_model_url=base_model_url,
        hidden_size=config.hidden_size,
        head_hidden_size=config.head_hidden_size,
        max_length=config.max_length,
        stride=config.stride,
        aggregation=config.aggregation,
        dataset_description=dataset_description,
        recipe=recipe,
        test_metrics={name: f"{value:.4f}" for name, value in test_metrics.items() if name in REPORTED_METRICS},
        test_songs=int(test_metrics.get("songs", 0)),
        language=language,
    )
