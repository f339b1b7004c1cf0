"""
How a model is fitted: the fine-tuning modes, preparing a model for each, and recording the method on its config.

Imports neither `datasets` nor the Trainer at module level, so the benchmarks use it where `datasets` is missing.
"""

import warnings

from peft import LoraConfig, get_peft_model

FINETUNING_MODES = ("lora", "head_only", "full", "ridge")


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
