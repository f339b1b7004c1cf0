"""The lyric-valence model: a pretrained encoder with a regression head, scoring whole songs chunk by chunk.

This file travels to the Hub next to the weights, so it imports torch, transformers and its sibling files only.
"""

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

try:
    from .configuration_lyric_valence import LyricValenceConfig
    from .pipeline_lyric_valence import LyricValencePipeline
except ImportError:  # imported as a top-level module from a source checkout rather than as a Hub package
    from configuration_lyric_valence import LyricValenceConfig
    from pipeline_lyric_valence import LyricValencePipeline

logger = logging.get_logger(__name__)


# Tokens per batch (chunks x longest chunk) by device type: each the best of a sweep on lyrics-length chunks
# (the CPU's small batches stay in its caches).
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}
# Songs chunked and sorted together by device type. A GPU scores a block while the host prepares the next, so smaller
# blocks leave it less idle; a CPU shares its cores between the two and gains nothing from overlap, while its
# batches are padded less when sorted among more chunks.
DEFAULT_SONGS_PER_BLOCK = {"cpu": 1024, "cuda": 256}
# Chunks scored per song at most. With 512-token chunks sharing 128 tokens, 64 chunks hold about 24,600 tokens (some
# 18,000 words), many times the longest real song; a pathological "song" (a book, a log file pasted whole) then costs
# a catalogue no more than that.
DEFAULT_MAX_CHUNKS_PER_SONG = 64
# Characters of a long song read to find its first chunks, per token of them: English lyrics run 4 to 5 characters
# per token. A song whose opening holds fewer tokens than that is tokenized whole.
CHARACTERS_PER_TOKEN_BOUND = 8
EXPLAIN_METHODS = ("line", "stanza", "occlusion")


@dataclass
class ChunkFeatures:
    """
    The chunks of songs as a closed-form fit reads them, from [`~LyricValenceModel.chunk_features`].

    Args:
        pooled (`torch.Tensor` of shape `(chunks, hidden_size)`, float64): each chunk's pooled encoder vector.
        term_counts (`tuple[torch.Tensor, torch.Tensor, torch.Tensor]`, *optional*): the lexical channel's term
            counts as (chunk, feature, count) triples; None without a lexical channel.
        song_index (`torch.Tensor` of shape `(chunks,)`): each chunk's song (its position in the lyrics given).
        chunk_lengths (`torch.Tensor` of shape `(chunks,)`): each chunk's tokens.
    """

    pooled: torch.Tensor
    term_counts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    song_index: torch.Tensor
    chunk_lengths: torch.Tensor


@dataclass
class SongExplanation:
    """
    Line-level valence of one song, from [`~LyricValenceModel.explain_song`].

    Args:
        song_valence (`float`): the song's valence, as `score_songs` gives it.
        lines (`list[str]`): the song's non-blank lines, in order.
        line_valence (`list[float]`): one valence per line (see `method`); not clipped to 0..1.
        stanza_index (`list[int]`): the stanza (0, 1, ...) of each line; stanzas are separated by blank lines.
        method (`str`): how line valences were computed: `"line"`, `"stanza"` or `"occlusion"`.
    """

    song_valence: float
    lines: list[str]
    line_valence: list[float]
    stanza_index: list[int]
    method: str


class LyricValenceHead(nn.Module):
    """Linear(hidden, head_hidden_size) -> ReLU -> Linear(head_hidden_size, 1), with dropout before each Linear."""

    def __init__(self, config: LyricValenceConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.head_dropout)
        self.dense = nn.Linear(config.hidden_size, config.head_hidden_size)
        self.activation = nn.ReLU()
        self.out_proj = nn.Linear(config.head_hidden_size, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        # In the head's own dtype (float32 in training) also under bf16/fp16 autocast: valences rounded to bfloat16
        # move in steps of 0.004 near 0.5, and the MSE would compare labels rounded the same way.
        with torch.autocast(pooled.device.type, enabled=False):
            hidden = self.activation(self.dense(self.dropout(pooled.to(self.dense.weight.dtype))))
            return self.out_proj(self.dropout(hidden))

    @torch.no_grad()
    def set_linear(self, slope: torch.Tensor, offset: float) -> None:
        """
        Make the head the linear map `slope . pooled + offset` exactly (dropout aside): `relu(z) - relu(-z) = z`, so
        two hidden units carry it and the others are zero. A closed-form fit (ridge) writes its solution this way.
        """
        if self.dense.out_features < 2:
            raise ValueError("a linear head needs two hidden units: head_hidden_size >= 2")
        for layer in (self.dense, self.out_proj):
            layer.weight.zero_()
            layer.bias.zero_()
        self.dense.weight[0], self.dense.bias[0] = slope, offset
        self.dense.weight[1], self.dense.bias[1] = -slope, -offset
        self.out_proj.weight[0, 0], self.out_proj.weight[0, 1] = 1.0, -1.0


class LyricValenceLexicalChannel(nn.Module):
    """
    A bag of tokens beside the encoder: each chunk's token unigrams (one feature per vocabulary id) and bigrams (hashed
    into the remaining `config.lexical_buckets - vocab_size` features; none if `config.lexical_bigrams` is off) as
    sublinear TF-IDF, L2-normalised, weighted into one score per chunk. This is TF-IDF + ridge regression computed
    from the model's own input ids, so it saves, loads, exports and scores with the model. `idf` and `weight` are
    fitted on training songs (`lyric_valence.ridge.fit_ridge`, through [`~LyricValenceModel.set_lexical_channel`]);
    freshly initialised, the channel scores every chunk 0. Its settings are the model config's.
    """

    # Knuth's multiplicative hash: spreads the bigram ids (a * vocab_size + b) over the bigram buckets.
    BIGRAM_HASH_MULTIPLIER = 2654435761

    def __init__(self, config: LyricValenceConfig):
        super().__init__()
        self.config = config
        self.buckets = config.lexical_buckets
        self.vocab_size = config.encoder.vocab_size
        self.register_buffer("idf", torch.ones(self.buckets))
        self.weight = nn.Parameter(torch.zeros(self.buckets))

    @property
    def bigrams(self) -> bool:
        """Whether bigrams count (`config.lexical_bigrams`)."""
        return self.config.lexical_bigrams

    @property
    def has_bigram_buckets(self) -> bool:
        """Whether there are buckets beyond the vocabulary, where bigrams are hashed."""
        return self.buckets > self.vocab_size

    def token_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bigrams: bool | None = None
    ) -> torch.Tensor:
        """
        The feature index of every unigram and bigram of each chunk, shape `(batch, 2 * length - 1)` (`(batch,
        length)` without bigrams); -1: padding. `bigrams`: whether to count them (default: `config.lexical_bigrams`).
        """
        ids = input_ids.long()
        if not (self.bigrams if bigrams is None else bigrams):
            return ids.masked_fill(~attention_mask.bool(), -1)
        bigrams = self.vocab_size + (ids[:, :-1] * self.vocab_size + ids[:, 1:]) * self.BIGRAM_HASH_MULTIPLIER % (
            self.buckets - self.vocab_size
        )
        features = torch.cat([ids, bigrams], dim=1)
        present = torch.cat([attention_mask.bool(), attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()], 1)
        return features.masked_fill(~present, -1)

    def term_counts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bigrams: bool | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Sparse counts of each chunk's features: (chunk, feature, count) triples, one per feature present."""
        features = self.token_features(input_ids, attention_mask, bigrams)
        chunk = torch.arange(features.shape[0], device=features.device).unsqueeze(1).expand_as(features)
        keys = (chunk * self.buckets + features)[features >= 0]
        keys, counts = torch.unique(keys, return_counts=True)
        return keys // self.buckets, keys % self.buckets, counts

    def tfidf(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each chunk's L2-normalised sublinear TF-IDF vector as (chunk, feature, value) triples."""
        chunk, feature, counts = self.term_counts(input_ids, attention_mask)
        values = (1 + counts.double().log()) * self.idf[feature].double()
        norms = torch.zeros(input_ids.shape[0], dtype=values.dtype, device=values.device).index_add_(
            0, chunk, values**2
        )
        return chunk, feature, values / norms.sqrt().clamp(min=1e-12)[chunk]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        chunk, feature, values = self.tfidf(input_ids, attention_mask)
        scores = torch.zeros(input_ids.shape[0], dtype=values.dtype, device=values.device)
        return scores.index_add_(0, chunk, values * self.weight[feature].double()).float()


class LyricValencePreTrainedModel(PreTrainedModel):
    config_class = LyricValenceConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, LyricValenceLexicalChannel):
            nn.init.ones_(module.idf)
            nn.init.zeros_(module.weight)


class LyricValenceModel(LyricValencePreTrainedModel):
    """
    Predicts the valence (0 sad/negative .. 1 happy/positive) of a lyrics chunk: the encoder's pooled chunk
    representation goes through [`LyricValenceHead`]. [`~LyricValenceModel.score_songs`] scores whole songs by
    averaging their overlapping chunks.
    """

    def __init__(self, config: LyricValenceConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder)
        # The head reads the last hidden state; an unused pooler would waste compute and break DDP's
        # unused-parameter check.
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None
        self.head = LyricValenceHead(config)
        self.lexical = LyricValenceLexicalChannel(config) if config.lexical_buckets else None
        self.post_init()

    @classmethod
    def from_encoder_pretrained(
        cls, encoder_name_or_path: str, encoder_config_overrides: dict | None = None, **config_kwargs
    ) -> "LyricValenceModel":
        """
        Build a model around a pretrained encoder (a local folder or a Hub id): encoder weights loaded, head freshly
        initialised. `encoder_config_overrides` change the encoder's config (e.g. `{"attention_probs_dropout_prob":
        0.0}`); `config_kwargs` set [`LyricValenceConfig`] fields such as `pooling` or `max_length`.
        """
        # float32 master weights whatever the checkpoint's dtype; mixed precision is the Trainer's job (--bf16).
        encoder = AutoModel.from_pretrained(
            encoder_name_or_path, dtype=torch.float32, **(encoder_config_overrides or {})
        )
        model = cls(LyricValenceConfig(encoder=encoder.config, **config_kwargs))
        model.load_encoder_weights(encoder, encoder_name_or_path)
        model.config.encoder._name_or_path = str(encoder_name_or_path)
        return model

    def load_encoder_weights(self, encoder: PreTrainedModel, source: str) -> None:
        """
        Copy the weights of a pretrained `encoder` (from `source`, a folder or Hub id) into this model's encoder.

        Raises:
            ValueError: `encoder` lacks some of this encoder's weights (the message names `source` and them).
        """
        # strict=False only for the encoder's pooler weights, which this model drops
        missing = self.encoder.load_state_dict(encoder.state_dict(), strict=False).missing_keys
        if missing:
            raise ValueError(f"{source}: encoder weights missing for {missing}")

    def pool(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per chunk, as `config.pooling` says."""
        if self.config.pooling == "cls":
            return last_hidden_state[:, 0]
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
        return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def encode_chunks(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """
        The encoder's output for a batch of chunks, with `pooler_output` the pooled chunk vectors
        ([`~LyricValenceModel.pool`]): what the head reads.
        """
        if attention_mask is None:
            shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
            attention_mask = torch.ones(shape, dtype=torch.long, device=self.device)
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        outputs = self.encoder(**encoder_inputs, **kwargs)
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=self.pool(outputs.last_hidden_state, attention_mask),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.Tensor` of shape `(batch_size,)`, *optional*):
            Valence targets; when given, the output carries the mean squared error.

        Returns a [`SequenceClassifierOutput`] whose `logits` of shape `(batch_size, 1)` are the chunk valences: the
        head's score of the pooled chunk vector, plus the lexical channel's score when the model has one.
        """
        outputs = self.encode_chunks(input_ids, attention_mask, token_type_ids, inputs_embeds, **kwargs)
        logits = self.head(outputs.pooler_output)
        if self.lexical is not None:
            if input_ids is None:
                raise ValueError("the lexical channel reads input_ids: pass input_ids rather than inputs_embeds")
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            logits = logits + self.lexical(input_ids, mask).unsqueeze(-1).to(logits.dtype)
        loss = None
        if labels is not None:
            loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    @torch.inference_mode()
    def score_songs(
        self,
        lyrics: list[str],
        tokenizer: PreTrainedTokenizerBase,
        batch_tokens: int | None = None,
        songs_per_block: int | None = None,
        show_progress: bool = False,
        *,
        max_chunks_per_song: int | None = DEFAULT_MAX_CHUNKS_PER_SONG,
        capped_songs: list[int] | None = None,
    ) -> list[float]:
        """
        Valence of each whole song in `lyrics`, one float per song in input order.

        Songs are tokenized into overlapping chunks (`config.max_length`, `config.stride`); the chunks of up to
        `songs_per_block` songs (default: `DEFAULT_SONGS_PER_BLOCK` of the model's device type) are sorted by length
        and grouped by [`token_budget_batches`] so that each batch, padded to its longest chunk, holds at most
        `batch_tokens` tokens (default: `DEFAULT_BATCH_TOKENS` of the model's device type); chunk scores are combined
        per song with `config.aggregation`. The next block is tokenized and padded in a background thread while the
        model scores this one.

        A song of more than `max_chunks_per_song` chunks (default `DEFAULT_MAX_CHUNKS_PER_SONG`, 64: about 24,600
        tokens with 512-token chunks and stride 128; None: no limit) is scored on its first that many chunks, as if
        its text ended there, so that a pathological "song" cannot stall a catalogue. Pass a list as `capped_songs`
        to have the positions in `lyrics` of such songs appended to it; without one, they are logged as a warning.

        Raises:
            ValueError: a song is empty or whitespace-only (the message names its position), `batch_tokens` is
                smaller than `config.max_length` (a full chunk would not fit), or `songs_per_block` or
                `max_chunks_per_song` is not positive.
        """
        if batch_tokens is None:
            batch_tokens = DEFAULT_BATCH_TOKENS.get(self.device.type, DEFAULT_BATCH_TOKENS["cuda"])
        if songs_per_block is None:
            songs_per_block = DEFAULT_SONGS_PER_BLOCK.get(self.device.type, DEFAULT_SONGS_PER_BLOCK["cuda"])
        was_training = self.training
        self.eval()
        try:
            return score_songs_in_batches(
                self._score_batch,
                lyrics,
                tokenizer,
                self.config,
                batch_tokens,
                songs_per_block,
                show_progress,
                max_chunks_per_song=max_chunks_per_song,
                capped_songs=capped_songs,
            )
        finally:
            self.train(was_training)

    def explain_song(
        self, lyrics: str, tokenizer: PreTrainedTokenizerBase, method: str = "stanza", batch_tokens: int | None = None
    ) -> SongExplanation:
        """
        Valence of each line of one song, plus the song's valence.

        `method` says what a line's valence is:

        - `"stanza"` (default): the line's leave-one-out pseudo-value within its stanza, `n * stanza - (n - 1) *
          stanza_without_line` for a stanza of n lines: the valence the line would need for the stanza to be the mean
          of its lines. The line is read with the rest of its stanza as context; a one-line stanza is scored alone.
        - `"occlusion"`: the same pseudo-value on the whole song (n + 1 songs scored).
        - `"line"`: the line scored alone, without context. The cheapest: one short chunk per line.

        The default recomposes the song valence best (the mean of its line valences is closest to the song's),
        measured on songs whose lines carry human valence labels.

        Raises:
            ValueError: the song is empty or whitespace-only, or `method` is unknown.
        """
        if method not in EXPLAIN_METHODS:
            raise ValueError(f"unknown method {method!r}: expected one of {', '.join(EXPLAIN_METHODS)}")
        check_lyrics([lyrics])
        stanzas = split_stanzas(lyrics)
        song_valence = self.score_songs([lyrics], tokenizer, batch_tokens=batch_tokens)[0]
        lines = [line for stanza in stanzas for line in stanza]
        if method == "line":
            line_valence = self.score_songs(lines, tokenizer, batch_tokens=batch_tokens)
        elif method == "stanza":
            line_valence = [
                value for stanza in stanzas for value in self._leave_one_out([stanza], tokenizer, batch_tokens)
            ]
        else:
            line_valence = self._leave_one_out(stanzas, tokenizer, batch_tokens)
        stanza_index = [number for number, stanza in enumerate(stanzas) for _ in stanza]
        return SongExplanation(song_valence, lines, line_valence, stanza_index, method)

    def _leave_one_out(
        self, stanzas: list[list[str]], tokenizer: PreTrainedTokenizerBase, batch_tokens: int | None
    ) -> list[float]:
        """Jackknife pseudo-values of the lines of `stanzas` (one text, stanzas separated by blank lines)."""
        lines = [(number, line) for number, stanza in enumerate(stanzas) for line in stanza]
        if len(lines) == 1:
            return self.score_songs([lines[0][1]], tokenizer, batch_tokens=batch_tokens)

        def text(skip: int | None) -> str:
            kept = [[] for _ in stanzas]
            for position, (number, line) in enumerate(lines):
                if position != skip:
                    kept[number].append(line)
            return "\n\n".join("\n".join(stanza) for stanza in kept if stanza)

        scores = self.score_songs([text(None)] + [text(skip) for skip in range(len(lines))], tokenizer, batch_tokens)
        whole, without = scores[0], scores[1:]
        return [len(lines) * whole - (len(lines) - 1) * score for score in without]

    @torch.inference_mode()
    def chunk_features(
        self,
        lyrics: list[str],
        tokenizer: PreTrainedTokenizerBase,
        batch_tokens: int | None = None,
        show_progress: bool = False,
    ) -> ChunkFeatures:
        """
        What a closed-form fit reads of songs, in one pass over their chunks (batched as [`score_songs`] batches
        them): each chunk's pooled vector and, with a lexical channel, its term counts with bigrams counted whenever
        the channel has buckets for them (unigram counts are the first `vocab_size` features of these).
        """
        batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS.get(self.device.type, DEFAULT_BATCH_TOKENS["cuda"])
        block = chunk_batches(tokenizer, lyrics, self.config, batch_tokens)
        was_training = self.training
        self.eval()
        pooled = torch.empty(len(block.song_index), self.config.hidden_size, dtype=torch.float64)
        counts = []
        for indices, inputs in tqdm(block.batches, desc="encoding songs", unit="batch", disable=not show_progress):
            inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
            pooled[indices] = self.encode_chunks(**inputs).pooler_output.double().cpu()
            if self.lexical is not None:
                chunk, feature, count = self.lexical.term_counts(
                    inputs["input_ids"], inputs["attention_mask"], bigrams=self.lexical.has_bigram_buckets
                )
                counts.append((torch.tensor(indices)[chunk.cpu()], feature.cpu(), count.cpu()))
        self.train(was_training)
        term_counts = tuple(torch.cat(parts) for parts in zip(*counts, strict=True)) if counts else None
        return ChunkFeatures(pooled, term_counts, block.song_index, block.chunk_lengths)

    @torch.no_grad()
    def set_lexical_channel(self, idf: torch.Tensor, weight: torch.Tensor, bigrams: bool, min_df: int) -> None:
        """
        Put a fitted lexical channel into the model: its `idf` (0 for buckets that do not count) and `weight`, and
        on the config whether bigrams count and the least chunks a bucket was seen in (`lexical_min_df`).
        """
        if self.lexical is None:
            raise ValueError("the model has no lexical channel (config.lexical_buckets is 0)")
        self.config.lexical_bigrams = bigrams
        self.config.lexical_min_df = min_df
        self.lexical.idf.copy_(idf)
        self.lexical.weight.copy_(weight)

    def _score_batch(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        return self(**inputs).logits.squeeze(-1).cpu()


# The scoring engine: chunking, token-budget batching and aggregation, shared by the model and the other backends.


def check_lyrics(lyrics: list[str]) -> None:
    """Raise a `ValueError` naming the position of the first song that is not a non-blank string."""
    for position, text in enumerate(lyrics):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"song {position} has no lyrics (empty or whitespace-only text)")


def chunk_lyrics(tokenizer: PreTrainedTokenizerBase, lyrics: list[str], max_length: int, stride: int):
    """
    Tokenize whole songs into overlapping chunks of at most `max_length` tokens, consecutive chunks sharing `stride`
    tokens. Returns the tokenizer's `BatchEncoding` (no padding) whose `overflow_to_sample_mapping` gives each chunk's
    song position in `lyrics`.
    """
    return tokenizer(
        lyrics,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        padding=False,
    )


def aggregate_chunk_scores(
    chunk_scores: torch.Tensor,
    song_index: torch.Tensor,
    num_songs: int,
    aggregation: str = "mean",
    chunk_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Combine chunk scores into one score per song; `song_index[i]` is the song (0..num_songs-1) of chunk i.
    `aggregation` is `"mean"`, `"median"` or `"length_weighted"` (the mean weighted by `chunk_lengths`, the tokens
    of each chunk: a song's short last chunk counts for less).
    """
    if aggregation in ("mean", "length_weighted"):
        if aggregation == "mean":
            weights = torch.ones_like(chunk_scores, dtype=torch.float64)
        elif chunk_lengths is None:
            raise ValueError("aggregation 'length_weighted' needs the chunk lengths")
        else:
            weights = chunk_lengths.to(torch.float64)
        totals = torch.zeros(num_songs, dtype=torch.float64).index_add_(0, song_index, chunk_scores.double() * weights)
        counts = torch.zeros(num_songs, dtype=torch.float64).index_add_(0, song_index, weights)
        return (totals / counts).to(chunk_scores.dtype)
    if aggregation == "median":
        return torch.stack([chunk_scores[song_index == song].median() for song in range(num_songs)])
    raise ValueError(f"unknown aggregation {aggregation!r}: expected 'mean', 'median' or 'length_weighted'")


def token_budget_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """
    Group chunks of `lengths` tokens into batches, longest first, so that each batch padded to its longest chunk
    holds at most `batch_tokens` tokens (a chunk longer than the budget is a batch of its own). Returns the chunk
    indices of each batch. Sorting keeps padding near zero; a token budget rather than a fixed number of chunks keeps
    every batch the same amount of work, so short chunks go in large batches and long ones in small batches.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


@dataclass
class ChunkBatches:
    """A block of songs ready for a model: its chunks padded into token-budget batches (CPU tensors by name)."""

    songs: int
    song_index: torch.Tensor
    chunk_lengths: torch.Tensor
    batches: list[tuple[list[int], dict[str, torch.Tensor]]]
    capped: list[int]  # the songs (positions in the block) kept to their first `max_chunks_per_song` chunks


def song_opening(tokenizer: PreTrainedTokenizerBase, text: str, config: PreTrainedConfig, max_chunks: int) -> str:
    """
    `text`, or its opening when that alone makes more than `max_chunks` chunks. The opening ends at a whitespace, so
    its tokens are the whole song's up to there, and so are its first `max_chunks` chunks; the rest of a song of
    hundreds of thousands of words is never tokenized.
    """
    limit = CHARACTERS_PER_TOKEN_BOUND * max_chunks * config.max_length
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    if len(text) <= limit or cut <= 0:
        return text
    opening = text[:cut]
    chunks = chunk_lyrics(tokenizer, [opening], config.max_length, config.stride)["input_ids"]
    return opening if len(chunks) > max_chunks else text


def chunk_batches(
    tokenizer: PreTrainedTokenizerBase,
    lyrics: list[str],
    config: PreTrainedConfig,
    batch_tokens: int,
    max_chunks_per_song: int | None = None,
) -> ChunkBatches:
    """
    `lyrics` chunked (`config.max_length`, `config.stride`) and batched by [`token_budget_batches`]. With
    `max_chunks_per_song`, a song of more chunks keeps its first that many ([`song_opening`]) and is listed in
    `capped`.
    """
    if max_chunks_per_song is not None:
        lyrics = [song_opening(tokenizer, text, config, max_chunks_per_song) for text in lyrics]
    encoded = chunk_lyrics(tokenizer, lyrics, config.max_length, config.stride)
    song_of_chunk = encoded.pop("overflow_to_sample_mapping")
    capped = []
    if max_chunks_per_song is not None:
        first_chunk = {}
        keep = [i - first_chunk.setdefault(song, i) < max_chunks_per_song for i, song in enumerate(song_of_chunk)]
        if not all(keep):
            capped = list(dict.fromkeys(song for song, kept in zip(song_of_chunk, keep, strict=True) if not kept))
            song_of_chunk = [song for song, kept in zip(song_of_chunk, keep, strict=True) if kept]
            encoded = {
                name: [value for value, kept in zip(values, keep, strict=True) if kept]
                for name, values in encoded.items()
            }
    song_index = torch.tensor(song_of_chunk)
    chunk_lengths = torch.tensor([len(ids) for ids in encoded["input_ids"]])
    features = [dict(zip(encoded.keys(), values, strict=True)) for values in zip(*encoded.values(), strict=True)]
    batches = []
    for batch in token_budget_batches(chunk_lengths.tolist(), batch_tokens):
        # Padded to numpy arrays: torch.tensor on the same nested lists takes 3-4 times as long, host work a GPU
        # waits for.
        inputs = tokenizer.pad([features[i] for i in batch], return_tensors="np")
        batches.append((batch, {name: torch.from_numpy(ids) for name, ids in inputs.items()}))
    return ChunkBatches(len(lyrics), song_index, chunk_lengths, batches, capped)


def prefetched(pool: Executor, prepare: Callable, items: Iterable) -> Iterator:
    """`prepare(item)` for each item, in order; the next one's runs in `pool` while the caller uses this one's."""
    pending = None
    for item in items:
        upcoming = pool.submit(prepare, item)
        if pending is not None:
            yield pending.result()
        pending = upcoming
    if pending is not None:
        yield pending.result()


def score_songs_in_batches(
    score_batch: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    lyrics: list[str],
    tokenizer: PreTrainedTokenizerBase,
    config: PreTrainedConfig,
    batch_tokens: int,
    songs_per_block: int,
    show_progress: bool = False,
    *,
    max_chunks_per_song: int | None = DEFAULT_MAX_CHUNKS_PER_SONG,
    capped_songs: list[int] | None = None,
) -> list[float]:
    """
    The scoring engine of [`~LyricValenceModel.score_songs`], for any backend that can score one batch:
    `score_batch` maps a batch padded by the tokenizer (CPU tensors by name) to its chunk valences, shape
    `(chunks,)`. Songs are chunked and batched `songs_per_block` at a time ([`chunk_batches`]), the next block in a
    background thread while `score_batch` runs on this one, and their chunk scores combined with `config.aggregation`.
    A song of more than `max_chunks_per_song` chunks (None: no limit) is scored on its first that many; the positions
    of such songs are appended to `capped_songs` when it is given, else logged as a warning.
    """
    if batch_tokens < config.max_length:
        raise ValueError(
            f"batch_tokens ({batch_tokens}) must be at least the model's max_length ({config.max_length}), "
            "so that a full chunk fits in a batch"
        )
    if songs_per_block < 1:
        raise ValueError(f"songs_per_block ({songs_per_block}) must be positive")
    if max_chunks_per_song is not None and max_chunks_per_song < 1:
        raise ValueError(f"max_chunks_per_song ({max_chunks_per_song}) must be positive, or None for no limit")
    check_lyrics(lyrics)
    starts = range(0, len(lyrics), songs_per_block)
    blocks = (lyrics[start : start + songs_per_block] for start in starts)
    prepare = partial(
        chunk_batches, tokenizer, config=config, batch_tokens=batch_tokens, max_chunks_per_song=max_chunks_per_song
    )
    scores, capped = [], []
    with (
        ThreadPoolExecutor(max_workers=1) as host,
        tqdm(total=len(lyrics), unit="song", disable=not show_progress) as progress,
    ):
        # Tokenizing and padding overlap with the forward passes, which release the GIL: a GPU need not wait for them.
        for start, block in zip(starts, prefetched(host, prepare, blocks), strict=True):
            capped += [start + song for song in block.capped]
            chunk_scores = torch.empty(len(block.song_index))
            for indices, inputs in block.batches:
                chunk_scores[indices] = score_batch(inputs).float()
            scores.append(
                aggregate_chunk_scores(
                    chunk_scores, block.song_index, block.songs, config.aggregation, block.chunk_lengths
                )
            )
            progress.update(block.songs)
    if capped_songs is not None:
        capped_songs.extend(capped)
    elif capped:
        logger.warning(
            "%d of %d songs scored on their first %d chunks only (max_chunks_per_song), at positions %s%s",
            len(capped),
            len(lyrics),
            max_chunks_per_song,
            ", ".join(map(str, capped[:10])),
            ", ..." if len(capped) > 10 else "",
        )
    return torch.cat(scores).tolist() if scores else []


def split_stanzas(lyrics: str) -> list[list[str]]:
    """The non-blank lines of a song (trailing whitespace removed), grouped into stanzas separated by blank lines."""
    stanzas, current = [], []
    for line in lyrics.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            stanzas.append(current)
            current = []
    return stanzas + [current] if current else stanzas


LyricValenceConfig.register_for_auto_class()
LyricValenceModel.register_for_auto_class("AutoModel")
PIPELINE_REGISTRY.register_pipeline("lyric-valence", pipeline_class=LyricValencePipeline, pt_model=AutoModel)
