"""
How a model is fitted: the one home of the fine-tuning modes. Preparing a model for a mode, fitting it (the HF
`Trainer`, on chunk or song labels, or the closed-form ridge fit of `lyric_valence.ridge`, or the one then the other),
recording on its config how it was fitted, and scoring the fitted model's songs.

    fitted = fit(model, tokenizer, splits, "lora", training_args, lora=LoraArguments())
    evaluation = fitted.evaluate(splits["test"], "test")

Imports neither `datasets` nor the Trainer at module level, so the benchmarks use `prepare_for_finetuning` where
`datasets` is missing.
"""

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model

FINETUNING_MODES = ("lora", "head_only", "full", "ridge")
# What `--lexical_bigrams` lets the ridge fit's cross-validation choose from.
LEXICAL_BIGRAM_CHOICES = {"auto": (True, False), "on": (True,), "off": (False,)}


@dataclass
class LoraArguments:
    """The LoRA adapters of `lora` mode (train.py's LoRA flags)."""

    lora_r: int = field(default=4, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "value"],
        metadata={"help": "Names of the attention projections that get adapters (BERT/RoBERTa: query value)."},
    )
    lora_num_layers: int = field(default=4, metadata={"help": "How many of the last encoder layers get adapters."})

    def describe(self) -> str:
        return (
            f"r={self.lora_r}, alpha={self.lora_alpha}, dropout={self.lora_dropout} on "
            f"{'/'.join(self.lora_target_modules)} of the last {self.lora_num_layers} layers"
        )


def prepare_for_finetuning(
    model,
    mode: str,
    lora_r: int = 4,
    lora_alpha: int = 8,
    lora_dropout: float = 0.1,
    lora_target_modules: list[str] | tuple[str, ...] = ("query", "value"),
    lora_num_layers: int = 4,
):
    """
    Set what trains: `lora` wraps the model with peft LoRA on `lora_target_modules` of the last `lora_num_layers`
    encoder layers and trains the head fully (`modules_to_save`); `head_only` freezes the encoder; `full` trains all;
    `ridge` freezes every weight (the head and the lexical channel are then fitted by `lyric_valence.ridge.fit_ridge`).
    Returns the model to train (a `PeftModel` for `lora`).
    """
    if mode not in FINETUNING_MODES:
        raise ValueError(f"unknown finetuning mode {mode!r}: expected one of {FINETUNING_MODES}")
    if mode == "lora":
        num_layers = model.config.encoder.num_hidden_layers
        if not 1 <= lora_num_layers <= num_layers:
            raise ValueError(f"lora_num_layers must be between 1 and {num_layers}, got {lora_num_layers}")
        lora_config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=list(lora_target_modules),
            layers_to_transform=list(range(num_layers - lora_num_layers, num_layers)),
            modules_to_save=["head"],
        )
        with warnings.catch_warnings():
            # peft reads the deprecated `is_gradient_checkpointing` property of every model it wraps (peft 0.21).
            warnings.filterwarnings(
                "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
            )
            return get_peft_model(model, lora_config)
    if mode == "head_only":
        model.encoder.requires_grad_(False)
    if mode == "ridge":
        model.requires_grad_(False)
    return model


def check_fit_settings(mode: str, lexical_buckets: int, ridge_warm_start: bool = False) -> None:
    """Raise a `ValueError` for settings `mode` cannot fit: a lexical channel is fitted in closed form only."""
    if mode not in FINETUNING_MODES:
        raise ValueError(f"unknown finetuning mode {mode!r}: expected one of {FINETUNING_MODES}")
    if ridge_warm_start and mode == "ridge":
        raise ValueError("--ridge_warm_start starts a Trainer fit (lora, head_only, full) from the ridge fit")
    if lexical_buckets and mode != "ridge" and not ridge_warm_start:
        raise ValueError(
            "--lexical_buckets needs --finetuning_mode ridge or --ridge_warm_start (the channel is fitted in closed "
            "form)"
        )


def record_fit(config, mode: str, settings: dict) -> None:
    """Record on the model's config how it was fitted (`finetuning_mode`) and with which settings (`fit_settings`)."""
    if mode not in FINETUNING_MODES:
        raise ValueError(f"unknown finetuning mode {mode!r}: expected one of {FINETUNING_MODES}")
    config.finetuning_mode = mode
    config.fit_settings = settings


def describe_fit(config) -> dict[str, str]:
    """
    How a model was fitted, in words, from its config: the method, its parts, and the fit's settings. What the
    model card shows; a config that recorded nothing says so.
    """
    mode, settings = config.finetuning_mode, dict(config.fit_settings or {})
    lexical = "none"
    if config.lexical_buckets:
        lexical = f"{config.lexical_buckets:,} hashed TF-IDF features of token unigrams"
        lexical += " and bigrams" if config.lexical_bigrams else ""
        if config.lexical_min_df > 1:
            lexical += f" (buckets seen in fewer than {config.lexical_min_df} training chunks do not count)"
    head = f"Linear({config.hidden_size}, {config.head_hidden_size}) -> ReLU -> Linear({config.head_hidden_size}, 1)"
    methods = {
        "lora": "LoRA adapters on the encoder's last layers and the full head, trained by the HF Trainer; the "
        "adapters are merged into the encoder",
        "head_only": "the head trained by the HF Trainer; the encoder frozen",
        "full": "every weight trained by the HF Trainer",
        "ridge": "closed form: the encoder frozen; one ridge regression on song features (mean pooled encoder vectors "
        "and the lexical channel's TF-IDF) fitted the head, which holds the linear solution in two hidden units, and "
        "the lexical channel",
    }
    description = {
        "fit method": f"`{mode}`: {methods[mode]}" if mode in methods else "not recorded in the model's config",
        "pooling": config.pooling,
        "head": head + (" (a linear map: the ridge solution)" if mode == "ridge" else ""),
        "lexical channel": lexical,
    }
    if mode == "ridge" and "ridge_alpha" in settings:
        picked = f"alpha {settings['ridge_alpha']}, encoder scale {settings['ridge_encoder_scale']}"
        if "lexical_bigrams" in settings:
            picked += f", bigrams {'on' if settings['lexical_bigrams'] else 'off'}, min_df {settings['lexical_min_df']}"
        folds = settings["ridge_cv_folds"]
        key = f"ridge settings (picked by grouped {folds}-fold cross-validation on the training songs)"
        description[key] = f"{picked}; cross-validated song MSE {settings['ridge_cv_mse']:.4f}"
    else:
        warm_start = settings.pop("warm_start", None)
        if warm_start is not None:
            description["warm start"] = (
                f"the ridge fit first (alpha {warm_start['ridge_alpha']}, encoder scale "
                f"{warm_start['ridge_encoder_scale']}); the lexical channel then stays as fitted"
            )
            if "kept_start" in warm_start:
                description["warm start"] += (
                    f"; validation song MSE {warm_start['validation_mse']:.4f} at the start, "
                    f"{warm_start['fine_tuned_validation_mse']:.4f} fine-tuned: "
                    + (
                        "fine-tuning did not lower it, so the model is the ridge start"
                        if warm_start["kept_start"]
                        else "the fine-tuned weights are kept"
                    )
                )
        description.update({name.replace("_", " "): str(value) for name, value in settings.items()})
    return description


@dataclass
class SongEvaluation:
    """One split's song-level results: each song's id, predicted and true valence, and the metrics (prefixed)."""

    song_ids: list[str]
    predicted: np.ndarray
    true: np.ndarray
    metrics: dict[str, float]


@dataclass
class FittedModel:
    """
    A fitted model (a `PeftModel` after a LoRA fit, until `save` merges it), its tokenizer, the fit's `metrics`,
    and the `trainer` of a Trainer fit (None for ridge).
    """

    model: object
    tokenizer: object
    metrics: dict[str, float]
    trainer: object | None = None

    @property
    def log_history(self) -> list[dict]:
        return self.trainer.state.log_history if self.trainer is not None else []

    def save(self, output_dir: str | Path):
        """
        Save the model and its tokenizer in `output_dir` (a LoRA fit: its adapter and head in `adapter/` first, then
        merged into the encoder) and return the saved model, a plain `LyricValenceModel` that loads with
        `AutoModel.from_pretrained(output_dir, trust_remote_code=True)`.
        """
        model = self.model
        if isinstance(model, PeftModel):
            model.save_pretrained(Path(output_dir) / "adapter")
            model = model.merge_and_unload()
        model.save_pretrained(output_dir)
        self.tokenizer.save_pretrained(output_dir)
        return model

    def evaluate(self, split, prefix: str) -> SongEvaluation:
        """
        Song-level metrics of `split` (`song_id`, `text`, `label`), keys prefixed with `prefix`: a Trainer fit
        predicts through its Trainer (every process its share); a ridge fit scores the songs as `predict` does.
        """
        from lyric_valence.evaluation import song_metrics
        from lyric_valence.trainer import chunk_split, song_predictions

        song_ids = np.asarray(list(split["song_id"]))
        if self.trainer is not None:
            config = self.model.config
            chunks = chunk_split(split, self.tokenizer, config.max_length, config.stride)
            output = self.trainer.predict(chunks, metric_key_prefix=prefix)
            songs, predicted, true, _, _ = song_predictions(output.predictions, output.label_ids, config.aggregation)
            return SongEvaluation(list(song_ids[songs]), predicted, true, output.metrics)
        start = time.perf_counter()
        predicted = np.asarray(self.model.score_songs(list(split["text"]), self.tokenizer))
        true = np.asarray(list(split["label"]), dtype=np.float64)
        metrics = {**song_metrics(predicted, true), "songs": len(true)}
        metrics["runtime"] = round(time.perf_counter() - start, 2)
        metrics = {f"{prefix}_{name}": value for name, value in metrics.items()}
        return SongEvaluation(list(song_ids), predicted, true, metrics)


def fit_closed_form(model, tokenizer, train, lexical_bigrams: str = "auto", show_progress: bool = True) -> dict:
    """
    The ridge fit of `model`'s head and lexical channel on the songs of `train` (the encoder frozen; settings by
    grouped cross-validation on them, `lexical_bigrams` among them), written into the model; returns its metrics.
    """
    from lyric_valence.ridge import fit_ridge

    start = time.perf_counter()
    prepare_for_finetuning(model, "ridge")
    groups = list(train["group" if "group" in train.column_names else "song_id"])
    ridge = fit_ridge(
        model,
        tokenizer,
        list(train["text"]),
        list(train["label"]),
        groups,
        bigrams=LEXICAL_BIGRAM_CHOICES[lexical_bigrams],
        show_progress=show_progress,
    )
    return {**ridge.metrics(), "train_runtime": round(time.perf_counter() - start, 2)}


def best_validation_mse(trainer) -> float:
    """The validation song MSE of the model `trainer` ends with: its best evaluation's when it loads the best model at
    the end by MSE, else a new evaluation."""
    args = trainer.args
    if args.load_best_model_at_end and args.metric_for_best_model in ("mse", "eval_mse"):
        if trainer.state.best_metric is not None:
            return float(trainer.state.best_metric)
    return float(trainer.evaluate()["eval_mse"])


def fit(
    model,
    tokenizer,
    splits,
    mode: str,
    training_args,
    *,
    lora: LoraArguments | None = None,
    head_learning_rate: float | None = None,
    lexical_bigrams: str = "auto",
    ridge_warm_start: bool = False,
    song_loss: bool = False,
    early_stopping_patience: int | None = None,
    eval_batch_tokens: int | None = None,
) -> FittedModel:
    """
    Fit `model` (a [`LyricValenceModel`]) on `splits["train"]` in `mode` and return it fitted, its config recording
    how. `lora`, `head_learning_rate` and the `TrainingArguments` `training_args` drive a Trainer fit (`lora`,
    `head_only`, `full`: epochs over the chunks, evaluated on `splits["validation"]`, resumable from checkpoints);
    `ridge` fits in closed form, its settings (`lexical_bigrams`: auto, on or off, among them) picked by grouped
    cross-validation on the training songs; the validation songs only report.

    A Trainer fit can start from the closed-form one (`ridge_warm_start`: the head and lexical channel fitted by
    ridge first, then the Trainer fine-tunes from there, the lexical channel frozen), train on the song-level loss
    (`song_loss`, see `ChunkedSongTrainer`) and stop after `early_stopping_patience` evaluations without a better
    validation song MSE. Its evaluations batch chunks in `eval_batch_tokens` budgets (default: predict's).
    """
    check_fit_settings(mode, model.config.lexical_buckets, ridge_warm_start)
    train = splits["train"]
    show_progress = not training_args.disable_tqdm
    if mode == "ridge":
        metrics = fit_closed_form(model, tokenizer, train, lexical_bigrams, show_progress)
        return FittedModel(model, tokenizer, metrics)

    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from lyric_valence.trainer import ChunkedSongTrainer, chunk_split, make_compute_metrics

    settings, start_metrics = {}, {}
    if ridge_warm_start:
        warm = fit_closed_form(model, tokenizer, train, lexical_bigrams, show_progress)
        settings["warm_start"] = {name: value for name, value in warm.items() if name != "train_runtime"}
        ridge_fit = FittedModel(model, tokenizer, warm)
        for name, prefix in (("validation", "ridge_start_eval"), ("test", "ridge_start_test")):
            if name in splits:  # the test songs only report, beside the final model's test metrics
                start_metrics |= ridge_fit.evaluate(splits[name], prefix).metrics
        model.requires_grad_(True)
    lora = lora or LoraArguments()
    trainable = prepare_for_finetuning(model, mode, **asdict(lora))
    start_weights = {}  # a warm start's trainable weights, to come back to: no copy of a whole encoder otherwise
    if ridge_warm_start:
        start_weights = {name: p.detach().clone() for name, p in trainable.named_parameters() if p.requires_grad}
    if model.lexical is not None:
        model.lexical.requires_grad_(False)  # fitted in closed form; the encoder and head learn what it leaves
    with training_args.main_process_first(desc="chunking songs"):
        chunks = {
            name: chunk_split(splits[name], tokenizer, model.config.max_length, model.config.stride)
            for name in ("train", "validation")
        }
    trainer = ChunkedSongTrainer(
        model=trainable,
        args=training_args,
        train_dataset=chunks["train"],
        eval_dataset=chunks["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(model.config.aggregation),
        callbacks=[EarlyStoppingCallback(early_stopping_patience)] if early_stopping_patience else None,
        head_learning_rate=head_learning_rate,
        song_loss=song_loss,
        aggregation=model.config.aggregation,
        eval_batch_tokens=eval_batch_tokens,
    )
    metrics = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics
    if ridge_warm_start:  # the start is a candidate too: fine-tuning must lower the validation song MSE to stay
        start_mse, tuned_mse = start_metrics["ridge_start_eval_mse"], best_validation_mse(trainer)
        kept_start = not tuned_mse < start_mse
        if kept_start:
            with torch.no_grad():
                for name, parameter in trainable.named_parameters():
                    if name in start_weights:
                        parameter.copy_(start_weights[name])
        settings["warm_start"] |= {
            "validation_mse": start_mse,
            "fine_tuned_validation_mse": tuned_mse,
            "kept_start": kept_start,
        }
        metrics |= start_metrics | {"kept_ridge_start": kept_start}
    settings |= {
        "learning_rate": training_args.learning_rate,
        "head_learning_rate": head_learning_rate,
        "epochs": training_args.num_train_epochs,
        "batch_size_chunks": training_args.per_device_train_batch_size * training_args.world_size,
        "loss": "song-level" if song_loss else "chunk-level",
        "scheduler": str(training_args.lr_scheduler_type),
        "seed": training_args.seed,
    }
    if mode == "lora":
        settings["lora"] = lora.describe()
    record_fit(model.config, mode, settings)  # a PeftModel's config is its base model's
    return FittedModel(trainer.model, tokenizer, metrics, trainer)
