"""Configuration of the lyric-valence model: a pretrained encoder plus a small regression head.

This file travels to the Hub next to the weights, so it imports torch and transformers only.
"""

from typing import Literal

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec


class LyricValenceConfig(PretrainedConfig):
    r"""
    Configuration of [`LyricValenceModel`]: an encoder (any model `AutoModel.from_config` builds: BERT, RoBERTa,
    DeBERTa, ModernBERT, ...) whose pooled chunk representation feeds Linear(hidden, head_hidden_size) -> ReLU ->
    Linear(head_hidden_size, 1). Whole songs are split into overlapping token chunks; a song's valence is the
    aggregate of its chunk scores.

    Args:
        encoder (`PretrainedConfig` or `dict`, *optional*):
            Configuration of the encoder. A dict needs a `model_type`; defaults to a BERT config.
        head_hidden_size (`int`, *optional*, defaults to 128):
            Width of the head's hidden layer.
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout applied to the pooled representation and to the head's hidden layer.
        pooling (`str`, *optional*, defaults to `"cls"`):
            How a chunk becomes one vector: `"cls"` (first token, the reference recipe) or `"mean"` (attention-masked
            mean over tokens, how sentence-transformers encoders such as all-MiniLM-L6-v2 were trained).
        max_length (`int`, *optional*, defaults to 512):
            Tokens per chunk, special tokens included.
        stride (`int`, *optional*, defaults to 128):
            Tokens shared by consecutive chunks of a song.
        aggregation (`str`, *optional*, defaults to `"mean"`):
            How chunk scores become a song score: `"mean"`, `"median"` or `"length_weighted"` (the mean weighted
            by each chunk's number of tokens).
        lexical_buckets (`int`, *optional*, defaults to 0):
            Size of the lexical channel ([`LyricValenceLexicalChannel`]): the chunk's token unigrams and bigrams,
            hashed into this many TF-IDF features, add a linear score to the head's. 0: no lexical channel.
        lexical_bigrams (`bool`, *optional*, defaults to `True`):
            Whether the lexical channel also counts token bigrams. `False`: unigrams only (one feature per vocabulary
            id; `lexical_buckets` may then equal the vocabulary size), for text whose word order carries nothing,
            such as word counts rendered as text.
        lexical_min_df (`int`, *optional*, defaults to 1):
            The least training chunks a lexical bucket was seen in to count (its idf is 0 below that); a record of
            the fit, which wrote it into the channel's idf.
        finetuning_mode (`str`, *optional*):
            How the weights were fitted: `"lora"`, `"head_only"`, `"full"` (the `Trainer`, on chunk labels) or
            `"ridge"` (frozen encoder; the head and the lexical channel in closed form, the head then a linear map
            carried by two of its hidden units). `None`: not recorded (a freshly built model, or one saved before
            this field).
        fit_settings (`dict`, *optional*):
            The fit's own settings, as `lyric_valence.fitting` records them: the LoRA rank, scaling, dropout, target
            modules and layers, learning rates and epochs for the `Trainer`; the penalty, encoder scale and
            cross-validation of a ridge fit.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from configuration_lyric_valence import LyricValenceConfig

    >>> config = LyricValenceConfig(encoder=BertConfig(hidden_size=768, num_hidden_layers=12))
    >>> config.id2label
    {0: 'valence'}
    ```"""

    model_type = "lyric-valence"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PretrainedConfig | dict | None = None
    head_hidden_size: int = 128
    head_dropout: float = 0.1
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = 512
    stride: int = 128
    aggregation: Literal["mean", "median", "length_weighted"] = "mean"
    lexical_buckets: int = 0
    lexical_bigrams: bool = True
    lexical_min_df: int = 1
    finetuning_mode: Literal["lora", "head_only", "full", "ridge"] | None = None
    fit_settings: dict | None = None
    id2label: dict[int, str] | dict[str, str] | None = None
    problem_type: Literal["regression", "single_label_classification", "multi_label_classification"] | None = (
        "regression"
    )
    custom_pipelines: dict | None = None
    auto_map: dict | None = None

    def __post_init__(self, **kwargs):
        if self.id2label is None:
            self.id2label = {0: "valence"}
            self.label2id = {"valence": 0}
        if self.auto_map is None:
            # `register_for_auto_class` records one auto class per model class; the model answers to both.
            self.auto_map = {
                "AutoConfig": "configuration_lyric_valence.LyricValenceConfig",
                "AutoModel": "modeling_lyric_valence.LyricValenceModel",
                "AutoModelForSequenceClassification": "modeling_lyric_valence.LyricValenceModel",
            }
        if self.custom_pipelines is None:
            # `pipeline(model=..., trust_remote_code=True)` picks this task and the whole-song pipeline class.
            self.custom_pipelines = {
                "lyric-valence": {
                    "impl": "pipeline_lyric_valence.LyricValencePipeline",
                    "pt": ["AutoModel"],
                    "type": "text",
                }
            }
        super().__post_init__(**kwargs)
        if self.stride >= self.max_length - 2:
            raise ValueError(f"stride ({self.stride}) must be smaller than max_length - 2 ({self.max_length - 2})")
        if self.lexical_buckets and not self.lexical_bigrams and self.lexical_buckets < self.encoder.vocab_size:
            raise ValueError(
                f"lexical_buckets ({self.lexical_buckets}) must be at least the encoder's vocabulary "
                f"({self.encoder.vocab_size}): every token has a bucket of its own"
            )
        if self.lexical_buckets and self.lexical_bigrams and self.lexical_buckets <= self.encoder.vocab_size:
            raise ValueError(
                f"lexical_buckets ({self.lexical_buckets}) must exceed the encoder's vocabulary "
                f"({self.encoder.vocab_size}):"
                " every token has a bucket of its own, bigrams share the rest"
            )

    @property
    def hidden_size(self) -> int:
        """Width of the encoder's output, the head's input."""
        return self.encoder.hidden_size
