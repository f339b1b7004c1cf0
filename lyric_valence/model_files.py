"""
The files of a lyric-valence model folder or Hub repository, by role: what scoring downloads, what a push uploads.

    config.json, model.safetensors (or its shards and index)     the merged model
    tokenizer files                                               the encoder's tokenizer
    configuration_/modeling_/pipeline_lyric_valence.py            the custom code (trust_remote_code users only)
    adapter/adapter_config.json, adapter/adapter_model.safetensors   the LoRA adapter with the trained head
"""

CONFIG_FILE = "config.json"
CODE_FILES = ("configuration_lyric_valence.py", "modeling_lyric_valence.py", "pipeline_lyric_valence.py")
MERGED_WEIGHTS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
)
# In a subfolder: transformers' `AutoModel.from_pretrained` would load an adapter at the root instead of the merged
# model.
ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# What scoring a model needs (`snapshot_download(allow_patterns=...)`): weights, config, tokenizer; never Python code.
SCORING_FILES = (CONFIG_FILE, *MERGED_WEIGHTS, *TOKENIZER_FILES)
