"""The scoring engine: token-budget batches, the CLS-only last layer, precisions, int8, the onnxruntime backend, and
their refusals."""

import copy
import hashlib
import importlib.util
import json
import os
import random
import threading
from pathlib import Path

import onnx
import onnxruntime
import pandas as pd
import pytest
import torch
from conftest import assert_one_line_error, original_song, predict_in_process, tiny_bert_config

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence.backends import check_scoring_options
from lyric_valence.backends import onnxruntime as onnx_backend
from lyric_valence.backends.onnxruntime import export_to_onnx, load_onnxruntime_scorer, optimize_and_quantize
from lyric_valence.backends.torch import ClsOnlyLastLayer, prepare_for_scoring
from lyric_valence.errors import UserError
from lyric_valence.loading import ScoringOptions
from modeling_lyric_valence import (
    DEFAULT_MAX_CHUNKS_PER_SONG,
    LyricValenceModel,
    chunk_lyrics,
    score_songs_in_batches,
    token_budget_batches,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MAX_LENGTH = 40
SHORT_SONGS = ["rain on the window", "a small song\nof two lines", "light\n\nriver paper window " * 12]  # 1-2 chunks


def tiny_model(tokenizer, pooling: str = "cls") -> LyricValenceModel:
    torch.manual_seed(0)
    config = LyricValenceConfig(
        encoder=tiny_bert_config(tokenizer.vocab_size, layers=3), max_length=MAX_LENGTH, stride=10, pooling=pooling
    )
    return LyricValenceModel(config).eval()


@pytest.fixture(scope="module")
def songs():
    """Songs from a few words to several chunks long, in mixed order."""
    rng = random.Random(3)
    return [original_song(rng, rng.choice([1, 2, 5, 14])) for _ in range(24)]


def chunk_by_chunk(model, tokenizer, songs: list[str]) -> list[float]:
    """The reference: every chunk scored alone (no padding, no batching, full last layer), averaged per song."""
    scores = []
    for song in songs:
        chunks = chunk_lyrics(tokenizer, [song], model.config.max_length, model.config.stride)["input_ids"]
        with torch.no_grad():
            chunk_scores = [model(input_ids=torch.tensor([ids])).logits.item() for ids in chunks]
        scores.append(sum(chunk_scores) / len(chunk_scores))
    return scores


def test_token_budget_batches_hold_every_chunk_once_longest_first_within_the_budget():
    lengths = [random.Random(seed).randint(3, 40) for seed in range(200)]
    batches = token_budget_batches(lengths, batch_tokens=120)
    assert sorted(index for batch in batches for index in batch) == list(range(200))
    in_order = [lengths[index] for batch in batches for index in batch]
    assert in_order == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) * lengths[batch[0]] <= 120
    # greedy: the next chunk would not have fitted in the batch before it
    for previous in batches[:-1]:
        assert (len(previous) + 1) * lengths[previous[0]] > 120
    # short chunks go in large batches, long ones in small batches
    assert len(batches[-1]) > len(batches[0])


def test_a_chunk_longer_than_the_budget_is_a_batch_of_its_own():
    assert token_budget_batches([50, 10, 60], batch_tokens=40) == [[2], [0], [1]]


@pytest.mark.parametrize("batch_tokens", [MAX_LENGTH, 100, 400, 100_000])
def test_token_budget_batches_give_the_chunk_by_chunk_reference_scores(tokenizer, songs, batch_tokens):
    model = tiny_model(tokenizer)
    expected = chunk_by_chunk(model, tokenizer, songs)
    assert model.score_songs(songs, tokenizer, batch_tokens=batch_tokens) == pytest.approx(expected, abs=1e-5)


def test_the_next_block_is_tokenized_while_the_model_scores_this_one(tokenizer, songs):
    model = tiny_model(tokenizer)
    second_block_tokenized = threading.Event()

    class WatchedTokenizer:
        def __call__(self, lyrics, **kwargs):
            if lyrics == songs[1:2]:
                second_block_tokenized.set()
            return tokenizer(lyrics, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    overlapped = []

    def score_batch(inputs):
        overlapped.append(second_block_tokenized.wait(timeout=10))
        return model._score_batch(inputs)

    scores = score_songs_in_batches(score_batch, songs, WatchedTokenizer(), model.config, 400, songs_per_block=1)
    assert overlapped[0], "the model scored the first block before the second was tokenized"
    assert scores == pytest.approx(chunk_by_chunk(model, tokenizer, songs), abs=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_model_prepared_for_scoring_gives_the_chunk_by_chunk_reference_scores(tokenizer, songs, pooling):
    model = tiny_model(tokenizer, pooling)
    expected = chunk_by_chunk(model, tokenizer, songs)
    prepared = prepare_for_scoring(copy.deepcopy(model))
    assert isinstance(prepared.encoder.encoder.layer[-1], ClsOnlyLastLayer) == (pooling == "cls")
    assert prepared.score_songs(songs, tokenizer, batch_tokens=200) == pytest.approx(expected, abs=1e-5)


def test_the_cls_only_last_layer_returns_one_position_per_chunk(tokenizer):
    model = prepare_for_scoring(tiny_model(tokenizer))
    ids = torch.randint(1000, 2000, (3, 17))
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 9:] = 0  # a padded chunk
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        alone = model.encoder(input_ids=ids[1:2, :9]).last_hidden_state
    assert hidden.shape == (3, 1, 32)
    assert torch.allclose(hidden[1], alone[0], atol=1e-5)


@pytest.mark.parametrize("dtype, quantize", [("bfloat16", None), ("float32", "int8")])
def test_lower_precisions_score_close_to_float32(tokenizer, songs, dtype, quantize):
    model = tiny_model(tokenizer)
    expected = torch.tensor(model.score_songs(songs, tokenizer))
    prepared = prepare_for_scoring(copy.deepcopy(model), dtype=dtype, quantize=quantize)
    if quantize:
        query = prepared.encoder.encoder.layer[0].attention.self.query
        assert isinstance(query, torch.ao.nn.quantized.dynamic.Linear)
        assert query.weight().qscheme() == torch.per_channel_affine
        assert type(prepared.head.dense) is torch.nn.Linear  # the head stays float32
    else:
        assert prepared.head.dense.weight.dtype == torch.bfloat16
    scores = torch.tensor(prepared.score_songs(songs, tokenizer))
    assert not torch.equal(scores, expected)  # a different precision really ran
    assert torch.allclose(scores, expected, atol=0.01)


def long_song(words: int, gap: str = " ") -> str:
    """A song of `words` one-token words, lines of eight, the words `gap` apart."""
    rng = random.Random(words)
    lines = [
        gap.join(rng.choice(["light", "river", "paper", "window", "silver"]) for _ in range(8))
        for _ in range(words // 8)
    ]
    return "\n".join(lines)


def opening_chunks(tokenizer, song: str, chunks: int) -> str:
    """The text of the song's first `chunks` chunks (40 tokens, stride 10): up to the last token of the last one."""
    encoded = tokenizer(
        song,
        truncation=True,
        max_length=MAX_LENGTH,
        stride=10,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    return song[: encoded["offset_mapping"][chunks - 1][-2][1]]  # [-1] is [SEP]'s (0, 0)


def test_a_song_longer_than_max_chunks_per_song_is_scored_on_its_first_chunks(tokenizer, caplog):
    """
    Dense: its opening alone fills the chunks, the rest is never tokenized. Sparse (words 40 spaces apart): its
    opening does not, so it is tokenized whole. Either way its score is that of the text of its first 3 chunks, and
    its position in the input (across blocks of 2 songs) is reported; the other songs score as without a limit.
    """
    model = tiny_model(tokenizer)
    dense, sparse = long_song(5000), long_song(600, gap=" " * 40)
    lyrics = [SHORT_SONGS[0], dense, SHORT_SONGS[1], SHORT_SONGS[2], sparse]
    tokenized = []

    class RecordingTokenizer:
        def __call__(self, texts, **kwargs):
            tokenized.extend(map(len, texts))
            return tokenizer(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    capped = []
    scores = score_songs_in_batches(
        model._score_batch,
        lyrics,
        RecordingTokenizer(),
        model.config,
        400,
        songs_per_block=2,
        max_chunks_per_song=3,
        capped_songs=capped,
    )
    assert capped == [1, 4]
    assert len(dense) not in tokenized and len(sparse) in tokenized
    openings = [opening_chunks(tokenizer, song, 3) for song in (dense, sparse)]
    expected = chunk_by_chunk(
        model, tokenizer, [SHORT_SONGS[0], openings[0], SHORT_SONGS[1], SHORT_SONGS[2], openings[1]]
    )
    assert scores == pytest.approx(expected, abs=1e-5)
    assert "max_chunks_per_song" not in caplog.text  # reported to the caller, who asked for the positions
    assert model.score_songs(lyrics, tokenizer, max_chunks_per_song=3) == pytest.approx(scores, abs=1e-6)
    assert "2 of 5 songs scored on their first 3 chunks only (max_chunks_per_song), at positions 1, 4" in caplog.text


def test_the_default_limit_leaves_real_songs_whole(tokenizer, songs):
    """64 chunks, as predict's default: the songs of several chunks score as without a limit, none reported."""
    model = tiny_model(tokenizer)
    capped = []
    assert model.score_songs(songs, tokenizer, capped_songs=capped) == model.score_songs(
        songs, tokenizer, max_chunks_per_song=None
    )
    assert capped == [] and DEFAULT_MAX_CHUNKS_PER_SONG == ScoringOptions().max_chunks_per_song == 64
    with pytest.raises(ValueError, match="max_chunks_per_song"):
        model.score_songs(songs, tokenizer, max_chunks_per_song=0)


def saved(model, folder):
    model.save_pretrained(folder)
    return folder


def test_onnxruntime_in_float32_gives_the_chunk_by_chunk_reference_scores(tokenizer, songs, tmp_path):
    model = tiny_model(tokenizer)
    expected = chunk_by_chunk(model, tokenizer, songs)
    scorer = load_onnxruntime_scorer(saved(model, tmp_path))
    assert scorer.score_songs(songs, tokenizer, batch_tokens=200) == pytest.approx(expected, abs=1e-5)


def test_the_onnx_export_is_kept_beside_the_model_and_reused(tokenizer, songs, tmp_path, monkeypatch):
    folder = saved(tiny_model(tokenizer), tmp_path)
    first = load_onnxruntime_scorer(folder).score_songs(songs, tokenizer)
    assert sorted(path.name for path in (folder / "onnx").iterdir()) == ["model.json", "model.onnx"]
    monkeypatch.setattr(onnx_backend, "export_to_onnx", lambda *args: pytest.fail("exported a second time"))
    monkeypatch.setattr(
        LyricValenceModel, "from_pretrained", lambda *args, **kwargs: pytest.fail("torch weights loaded")
    )
    assert load_onnxruntime_scorer(folder).score_songs(songs, tokenizer) == first


def test_a_stale_onnx_export_is_rebuilt(tokenizer, songs, tmp_path):
    folder = saved(tiny_model(tokenizer), tmp_path)
    load_onnxruntime_scorer(folder)
    retrained = tiny_model(tokenizer)
    with torch.no_grad():
        retrained.head.out_proj.bias += 0.25
    saved(retrained, folder)  # same folder, new weights: the kept export no longer matches
    expected = retrained.score_songs(songs, tokenizer)
    assert load_onnxruntime_scorer(folder).score_songs(songs, tokenizer) == pytest.approx(expected, abs=1e-5)
    key = json.loads((folder / "onnx" / "model.json").read_text())
    assert key["precision"] == "float32" and key["versions"]["onnxruntime"] == onnxruntime.__version__


@pytest.mark.parametrize("case", ["read-only folder", "Hub download"])
def test_an_export_that_cannot_sit_beside_the_model_is_kept_in_the_cache_keyed_by_the_weights(
    tokenizer, tmp_path, monkeypatch, case
):
    folder = saved(tiny_model(tokenizer), tmp_path / "model")
    monkeypatch.setenv("LYRIC_VALENCE_CACHE", str(tmp_path / "cache"))
    if case == "read-only folder":  # os.access, as chmod does not stop root
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != folder and access(path, mode))
    load_onnxruntime_scorer(folder, quantize="int8", beside_model=case == "read-only folder")
    assert not (folder / "onnx").exists()
    weights = hashlib.sha256(hashlib.sha256((folder / "model.safetensors").read_bytes()).digest()).hexdigest()
    assert sorted(path.name for path in (tmp_path / "cache" / "onnx" / weights[:16]).iterdir()) == [
        "model_qint8.json",
        "model_qint8.onnx",
    ]


def test_onnxruntime_scores_a_model_with_a_lexical_channel_as_torch_does(tokenizer, songs, tmp_path):
    torch.manual_seed(0)
    config = LyricValenceConfig(
        encoder=tiny_bert_config(tokenizer.vocab_size, layers=2),
        max_length=MAX_LENGTH,
        stride=10,
        lexical_buckets=2**16,
    )
    model = LyricValenceModel(config).eval()
    with torch.no_grad():
        model.lexical.weight.normal_()
        model.lexical.idf.uniform_(1, 3)
    expected = model.score_songs(songs, tokenizer)
    scores = load_onnxruntime_scorer(saved(model, tmp_path)).score_songs(songs, tokenizer, batch_tokens=200)
    assert scores == pytest.approx(expected, abs=1e-5)


def test_the_onnx_graph_is_fused_and_its_weights_quantized_to_int8(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    export_to_onnx(model, tmp_path / "model.onnx")
    graph = onnx.load(optimize_and_quantize(tmp_path / "model.onnx", model.config.encoder, "int8")).graph
    # onnxruntime's fused BERT operators, quantized: the attention of the two full layers, the dense layers
    assert [node.op_type for node in graph.node].count("QAttention") == 2
    assert {"MatMulInteger", "SkipLayerNormalization"} <= {node.op_type for node in graph.node}
    weights = {tensor.name for tensor in graph.initializer}
    assert [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and set(node.input) & weights] == []


def test_onnxruntime_int8_scores_close_to_float32(tokenizer, songs, tmp_path):
    model = tiny_model(tokenizer)
    expected = torch.tensor(model.score_songs(songs, tokenizer))
    scores = torch.tensor(
        load_onnxruntime_scorer(saved(model, tmp_path), quantize="int8").score_songs(songs, tokenizer)
    )
    assert not torch.equal(scores, expected)  # int8 really ran
    assert torch.allclose(scores, expected, atol=0.01)


@pytest.mark.parametrize(
    "device, dtype, quantize, backend, message",
    [
        ("cpu", "float64", None, "torch", "--dtype float64: expected one of float32, bfloat16, float16"),
        ("cpu", "float32", "int4", "torch", "--quantize int4: expected int8"),
        ("cpu", "float16", None, "torch", "--dtype float16 needs a GPU"),
        ("cpu", "bfloat16", "int8", "torch", "cannot be combined with --dtype bfloat16"),
        ("cuda", "float32", "int8", "torch", "--quantize int8 runs on CPU only"),
        ("cpu", "float32", None, "tvm", "--backend tvm: expected one of torch, onnxruntime"),
        ("cuda", "float32", None, "onnxruntime", "--backend onnxruntime runs on CPU only"),
        ("cpu", "bfloat16", None, "onnxruntime", "--backend onnxruntime scores in float32 or"),
    ],
)
def test_options_a_device_cannot_run_are_refused_in_one_line(device, dtype, quantize, backend, message):
    with pytest.raises(UserError, match=message) as error:
        check_scoring_options(torch.device(device), dtype, quantize, backend)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("scoring-model")
    tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_with_a_token_budget_writes_the_chunk_by_chunk_reference_scores(
    model_dir, tokenizer, songs, tmp_path, capsys, backend
):
    table = tmp_path / "songs.csv"
    pd.DataFrame({"seq": songs}).to_csv(table, index=False)
    output = tmp_path / "scores.csv"
    code, _, stderr = predict_in_process(
        capsys, table, "--model", model_dir, "--batch_tokens", 120, "--backend", backend, "--output", output
    )
    assert code == 0, stderr
    expected = chunk_by_chunk(tiny_model(tokenizer), tokenizer, songs)
    assert pd.read_csv(output)["valence"].tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_caps_a_long_song_names_it_and_counts_it_in_the_summary(
    model_dir, tokenizer, tmp_path, capsys, caplog, backend
):
    table = tmp_path / "songs.csv"
    lyrics = [SHORT_SONGS[0], long_song(5000), SHORT_SONGS[1]]
    pd.DataFrame({"song_id": ["a", "long", "b"], "lyrics": lyrics}).to_csv(table, index=False)
    output = tmp_path / "scores.csv"
    code, _, stderr = predict_in_process(
        capsys, table, "--model", model_dir, "--max_chunks_per_song", 3, "--backend", backend, "--output", output
    )
    assert code == 0, stderr
    lyrics[1] = opening_chunks(tokenizer, lyrics[1], 3)
    expected = chunk_by_chunk(tiny_model(tokenizer), tokenizer, lyrics)
    assert pd.read_csv(output)["valence"].tolist() == pytest.approx(expected, abs=1e-5)
    assert f"song long of {table}: scored on its first chunks only (--max_chunks_per_song)" in caplog.text
    assert f"scored 3 songs (1 capped at 3 chunks), skipped 0 empty; scores written to {output}" in caplog.text


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--max_chunks_per_song", "0"], ["--max_chunks_per_song", "must be a positive integer"]),
        (["--batch_tokens", "39"], ["--batch_tokens 39", "max_length (40)"]),
        (["--batch_tokens", "many"], ["--batch_tokens", "invalid"]),
        (["--dtype", "float64"], ["--dtype", "float64", "invalid choice"]),
        (["--quantize", "int4"], ["--quantize", "int4", "invalid choice"]),
        (["--dtype", "float16", "--device", "cpu"], ["--dtype float16 needs a GPU"]),
        (
            ["--quantize", "int8", "--dtype", "bfloat16", "--device", "cpu"],
            ["cannot be combined with --dtype bfloat16"],
        ),
        (["--backend", "tvm"], ["--backend", "tvm", "invalid choice"]),
        (["--backend", "onnxruntime", "--dtype", "bfloat16", "--device", "cpu"], ["--backend onnxruntime", "bfloat16"]),
    ],
)
def test_predict_refuses_bad_scoring_flags_in_one_line_with_exit_code_2(model_dir, tmp_path, capsys, flags, expected):
    song = tmp_path / "song.txt"
    song.write_text("a small song\nof two lines\n", encoding="utf-8")
    code, stdout, stderr = predict_in_process(capsys, song, "--model", model_dir, *flags)
    assert stdout == ""
    assert_one_line_error(code, stderr, *expected)


def test_predict_names_the_extra_to_install_when_onnxruntime_is_missing(model_dir, tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "onnxruntime" else find_spec(name, *args)
    )
    song = tmp_path / "song.txt"
    song.write_text("a small song\nof two lines\n", encoding="utf-8")
    code, stdout, stderr = predict_in_process(capsys, song, "--model", model_dir, "--backend", "onnxruntime")
    assert stdout == ""
    assert_one_line_error(code, stderr, "--backend onnxruntime needs onnxruntime", "pip install onnxruntime onnx")
