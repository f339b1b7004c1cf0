"""The model card (README.md) of a trained model, rendered from `model_card.md` with the measured metrics."""

import json
import math
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lyric_valence import TEMPLATES
from lyric_valence.fitting import describe_fit

TEMPLATE = TEMPLATES / "model_card.md"
REPORTED_METRICS = ("mse", "rmse", "mae", "pearson", "spearman", "r2")
# The inputs of the card, saved next to README.md so `lyric-valence publish` can render it again for a Hub repo id.
CARD_INPUTS = "model_card.json"
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def is_hub_id(name: str | None) -> bool:
    """Whether `name` looks like a Hub repo id (`org/name` or `name`) rather than a local path."""
    return bool(name) and HUB_ID.match(name) is not None and not Path(name).exists() and ".." not in name


def render_model_card(
    *,
    repo_id: str,
    base_model: str,
    config,
    test_metrics: dict[str, float],
    dataset_name: str,
    dataset_description: str,
    recipe: dict[str, object] | None = None,
    labels: dict[str, str] | None = None,
    language: str = "en",
    license: str = "apache-2.0",
    revision: str | None = None,
    has_merged_model: bool = True,
    has_adapter: bool = True,
) -> ModelCard:
    """
    A `ModelCard` whose YAML carries a `model-index` with the song-level test metrics (`test_metrics`, keys without
    the `test_` prefix) and whose prose comes from `model_card.md`. `has_merged_model` / `has_adapter` say what the
    repository holds (the merged model at its root, the peft adapter in `adapter/`); the how-to-use section follows.
    `base_model` goes to the YAML only when it is a Hub id (a local encoder folder means nothing on the Hub).
    The model's parts and how it was fitted come from its config (`lyric_valence.fitting.describe_fit`); `recipe`
    adds rows to the training table; `labels` ([`label_description`]) says what the labels measured.
    """
    reported = {
        name: float(test_metrics[name])
        for name in REPORTED_METRICS
        if name in test_metrics and test_metrics[name] is not None and math.isfinite(test_metrics[name])
    }
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Lyrics valence regression (song level)",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=name,
            metric_name=f"song-level {name}",
            metric_value=value,
        )
        for name, value in reported.items()
    ]
    on_hub = is_hub_id(base_model)
    tags = ["lyrics", "valence", "regression", "music", "custom_code"]
    if has_adapter:
        tags += ["peft", "lora"]
    card_data = ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=base_model if on_hub else None,
        tags=tags,
        datasets=[dataset_name],
        model_name=repo_id,
        eval_results=eval_results or None,
        widget=[
            {"text": "Sunshine on my face, I'm dancing down the street, nothing's gonna bring me down"},
            {"text": "Empty rooms and letters that you never sent, I keep on waiting in the rain"},
        ],
    )
    base_model_url = f"https://huggingface.co/{base_model}" if on_hub else None
    fit = describe_fit(config)
    parts = {name: fit.pop(name) for name in ("fit method", "pooling", "head", "lexical channel")}
    revision = None if revision in (None, "", "main") else revision
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        revision=revision,
        revision_arg=f', revision="{revision}"' if revision else "",
        has_merged_model=has_merged_model,
        has_adapter=has_adapter,
        base_model=base_model,
        base_model_url=base_model_url,
        pooling=parts["pooling"],
        head=parts["head"],
        lexical=parts["lexical channel"] if config.lexical_buckets else None,
        fit_method=parts["fit method"],
        labels=labels or {"description": "the label column of its training file", "scale": "file"},
        max_length=config.max_length,
        stride=config.stride,
        aggregation={"length_weighted": "length-weighted mean"}.get(config.aggregation, config.aggregation),
        dataset_description=dataset_description,
        recipe={**fit, **(recipe or {})},
        test_metrics={
            name: f"{test_metrics[name]:.4f}" if name in reported else "n/a"
            for name in REPORTED_METRICS
            if name in test_metrics
        },
        test_songs=int(test_metrics.get("songs", 0)),
        language=language,
    )


def label_description(data_file: str | Path, columns, label_range=None) -> dict[str, str]:
    """
    What a model's labels measured, for its card: EmoBank's valence (the layout recognised by its `V` column on 1-5)
    is text valence; any other label is the user's file's label column, named.
    """
    name = Path(data_file).name
    if columns is None:
        return {"description": f"the `label` column of the prepared splits in `{name}`", "scale": "file"}
    if columns.label == "V" and label_range in (None, [1, 5], [1.0, 5.0], (1.0, 5.0)):
        return {
            "description": f"EmoBank's valence (`V` of `{name}`, on 1-5, rescaled to 0-1): how positive the words "
            "read to annotators (text valence)",
            "scale": "text",
        }
    rescaled = f", rescaled from {label_range[0]:g}-{label_range[1]:g}" if label_range else ""
    return {"description": f"the `{columns.label}` column of `{name}`{rescaled}", "scale": "file"}


def write_model_card(output_dir: str | Path, *, config, **inputs) -> ModelCard:
    """
    Render the card (`render_model_card(config=config, **inputs)`), save it as `README.md` in `output_dir`, and save
    its inputs as `model_card.json` so that it can be rendered again for another repo id (`load_card_inputs`).
    """
    output_dir = Path(output_dir)
    card = render_model_card(config=config, **inputs)
    card.save(output_dir / "README.md")
    (output_dir / CARD_INPUTS).write_text(json.dumps(inputs, indent=2, default=str))
    return card


def load_card_inputs(output_dir: str | Path) -> dict:
    """
    The inputs of `render_model_card` (without `config`) for a folder written by train.py: `model_card.json`, or for
    older folders a reconstruction from `test_results.json` and `training_args.json`.
    """
    output_dir = Path(output_dir)
    if (output_dir / CARD_INPUTS).is_file():
        return json.loads((output_dir / CARD_INPUTS).read_text())
    results = output_dir / "test_results.json"
    metrics = json.loads(results.read_text()) if results.is_file() else {}
    args_file = output_dir / "training_args.json"
    args = json.loads(args_file.read_text()) if args_file.is_file() else {}
    model_args, lora_args, data_args = args.get("model", {}), args.get("lora", {}), args.get("data", {})
    recipe = {key: model_args[key] for key in ("finetuning_mode", "pooling", "head_learning_rate") if key in model_args}
    recipe.update({f"LoRA {key.removeprefix('lora_')}": value for key, value in lora_args.items()})
    data_file = data_args.get("data_file", "unknown")
    return {
        "repo_id": output_dir.name,
        "base_model": model_args.get("model_name_or_path") or DEFAULT_BASE_MODEL,
        "test_metrics": {key.removeprefix("test_"): value for key, value in metrics.items()},
        "dataset_name": Path(data_file).stem,
        "dataset_description": f"`{Path(data_file).name}`",
        "recipe": recipe,
    }
