"""The model: architecture, loading anywhere with trust_remote_code, whole-song scoring, pipelines, safetensors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_bert_config
from safetensors.torch import load_file
from torch import nn
from transformers import BertConfig, pipeline

from configuration_lyric_valence import LyricValenceConfig
from lyric_valence import default_encoder_path
from modeling_lyric_valence import LyricValenceModel, chunk_lyrics


def head_layers(model):
    return [module for module in model.head.children() if not isinstance(module, nn.Dropout)]


def assert_head(model, hidden):
    dense, activation, out = head_layers(model)
    assert isinstance(dense, nn.Linear) and (dense.in_features, dense.out_features) == (hidden, 128)
    assert isinstance(activation, nn.ReLU)
    assert isinstance(out, nn.Linear) and (out.in_features, out.out_features) == (128, 1)


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return LyricValenceModel(LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size))).eval()


def test_head_of_a_bert_base_shaped_encoder_is_768_128_1():
    model = LyricValenceModel(LyricValenceConfig(encoder=BertConfig(hidden_size=768, num_hidden_layers=12)))
    assert model.config.encoder.num_hidden_layers == 12
    assert_head(model, 768)


def test_packaged_minilm_encoder_weights_are_loaded_and_head_is_384_128_1():
    model = LyricValenceModel.from_encoder_pretrained(default_encoder_path())
    assert_head(model, 384)
    packaged = load_file(str(Path(default_encoder_path()) / "model.safetensors"))
    ours = model.encoder.state_dict()
    compared = 0
    for name, tensor in packaged.items():
        name = name.removeprefix("bert.")
        if name.startswith("pooler.") or name.endswith("position_ids"):
            continue  # the pooler is dropped (the head reads the last hidden state); position ids are a buffer
        assert torch.equal(ours[name], tensor.float()), name
        compared += 1
    assert compared == len([key for key in ours if not key.endswith("position_ids")])


def test_config_is_a_regression_with_one_valence_label(tiny_model):
    config = tiny_model.config
    assert config.id2label == {0: "valence"} and config.problem_type == "regression"
    assert (config.max_length, config.stride, config.aggregation, config.pooling) == (512, 128, "mean", "cls")


def test_forward_returns_typed_output_and_mse_loss(tiny_model, tokenizer):
    batch = tokenizer(["one small song", "another one"], padding=True, return_tensors="pt")
    labels = torch.tensor([0.2, 0.9])
    output = tiny_model(**batch, labels=labels)
    assert output.logits.shape == (2, 1)
    assert torch.allclose(output.loss, nn.functional.mse_loss(output.logits.squeeze(-1), labels))


def test_under_bf16_autocast_the_head_and_the_loss_stay_float32(tiny_model, tokenizer):
    batch = tokenizer(["one small song", "another one", "a third"], padding=True, return_tensors="pt")
    labels = torch.tensor([0.2001, 0.5003, 0.9007])  # not representable in bfloat16
    query_dtypes = []
    query = tiny_model.encoder.encoder.layer[0].attention.self.query
    hook = query.register_forward_hook(lambda module, inputs, output: query_dtypes.append(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = tiny_model(**batch, labels=labels)
        hidden = tiny_model.encoder(**batch).last_hidden_state
    hook.remove()
    assert query_dtypes == [torch.bfloat16] * 2 and output.logits.dtype == torch.float32
    assert torch.allclose(output.logits, tiny_model.head(hidden[:, 0].float()))
    assert torch.allclose(output.loss, nn.functional.mse_loss(output.logits.squeeze(-1), labels))


def slow_reference_chunks(model, tokenizer, text):
    """(score, tokens) of each chunk of a song, one forward pass per chunk, without the tokenizer's overflow logic."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    window = model.config.max_length - 2
    step = window - model.config.stride
    starts = [0]
    while starts[-1] + window < len(ids):
        starts.append(starts[-1] + step)
    chunks = []
    for start in starts:
        chunk = [tokenizer.cls_token_id, *ids[start : start + window], tokenizer.sep_token_id]
        with torch.no_grad():
            chunks.append((model(input_ids=torch.tensor([chunk])).logits.item(), len(chunk)))
    return chunks


def slow_reference_score(model, tokenizer, text):
    """A song's mean chunk score, and its number of chunks."""
    scores = [score for score, _ in slow_reference_chunks(model, tokenizer, text)]
    return sum(scores) / len(scores), len(scores)


def test_a_2000_token_song_is_the_mean_of_its_overlapping_chunks(tiny_model, tokenizer):
    text = " ".join(f"word{i % 97} river" for i in range(700))
    assert 1900 <= len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 2300
    expected, chunks = slow_reference_score(tiny_model, tokenizer, text)
    assert chunks >= 5
    encoded = chunk_lyrics(tokenizer, [text], tiny_model.config.max_length, tiny_model.config.stride)
    assert len(encoded["input_ids"]) == chunks
    short = "a short happy song"
    scores = tiny_model.score_songs([short, text, short], tokenizer, batch_tokens=3 * 512)
    assert scores[1] == pytest.approx(expected, abs=1e-5)
    assert scores[0] == pytest.approx(slow_reference_score(tiny_model, tokenizer, short)[0], abs=1e-5)
    assert scores[0] == pytest.approx(scores[2], abs=1e-6)


def test_length_weighted_aggregation_weighs_each_chunk_by_its_tokens(tokenizer):
    torch.manual_seed(0)
    config = LyricValenceConfig(
        encoder=tiny_bert_config(tokenizer.vocab_size), max_length=64, stride=16, aggregation="length_weighted"
    )
    model = LyricValenceModel(config).eval()
    text = " ".join(f"word{i % 31} lantern" for i in range(70))  # chunks of 64, 64 and a short last one
    chunks = slow_reference_chunks(model, tokenizer, text)
    lengths = [tokens for _, tokens in chunks]
    assert len(chunks) >= 3 and lengths[-1] < lengths[0]
    weighted = sum(score * tokens for score, tokens in chunks) / sum(lengths)
    mean = sum(score for score, _ in chunks) / len(chunks)
    assert abs(weighted - mean) > 1e-6  # the short chunk counts for less
    assert model.score_songs([text], tokenizer)[0] == pytest.approx(weighted, abs=1e-5)


@pytest.mark.parametrize("lyrics", [["fine", ""], ["fine", "  \n\t "]])
def test_an_empty_song_is_an_error_naming_its_position(tiny_model, tokenizer, lyrics):
    with pytest.raises(ValueError, match="song 1 "):
        tiny_model.score_songs(lyrics, tokenizer)


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory, tiny_model, tokenizer):
    folder = tmp_path_factory.mktemp("saved")
    tiny_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_save_writes_safetensors_auto_map_and_code_files(saved_model_dir):
    files = {path.name for path in saved_model_dir.iterdir()}
    assert "model.safetensors" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert {"configuration_lyric_valence.py", "modeling_lyric_valence.py", "pipeline_lyric_valence.py"} <= files
    config = json.loads((saved_model_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert config["custom_pipelines"]["lyric-valence"]["impl"] == "pipeline_lyric_valence.LyricValencePipeline"


FRESH_PROCESS = """
import sys, torch
from transformers import AutoModel, AutoModelForSequenceClassification
torch.load = None  # loading must never unpickle
folder, out = sys.argv[1], sys.argv[2]
ids = torch.tensor([[101, 2023, 2003, 1037, 2299, 102], [101, 3407, 3153, 102, 0, 0]])
mask = (ids != 0).long()
results = {}
for auto in (AutoModel, AutoModelForSequenceClassification):
    model = auto.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    with torch.no_grad():
        results[auto.__name__] = model(input_ids=ids, attention_mask=mask).logits
assert "modeling_lyric_valence" not in sys.modules and "configuration_lyric_valence" not in sys.modules
from safetensors.torch import save_file
save_file(results, out)
"""


@pytest.mark.slow
def test_a_fresh_process_outside_the_repo_loads_the_saved_model_with_equal_outputs(
    saved_model_dir, tiny_model, tmp_path
):
    out = tmp_path / "logits.safetensors"
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    completed = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS, str(saved_model_dir), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    assert str(REPO) not in completed.stderr
    ids = torch.tensor([[101, 2023, 2003, 1037, 2299, 102], [101, 3407, 3153, 102, 0, 0]])
    with torch.no_grad():
        expected = tiny_model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    for name, logits in load_file(str(out)).items():
        assert torch.allclose(logits, expected, atol=1e-6), name


def test_whole_song_pipeline_and_stock_text_classification_pipeline(saved_model_dir, tiny_model, tokenizer):
    song = "\n".join(["walking in the bright morning light"] * 150)
    whole_song = pipeline(model=str(saved_model_dir), trust_remote_code=True)
    assert whole_song(song) == [
        {"label": "valence", "score": pytest.approx(tiny_model.score_songs([song], tokenizer)[0], abs=1e-6)}
    ]
    stock = pipeline("text-classification", model=str(saved_model_dir), trust_remote_code=True)
    chunk = "walking in the bright morning light"
    with torch.no_grad():
        expected = tiny_model(**tokenizer(chunk, return_tensors="pt")).logits.item()
    assert stock(chunk) == [{"label": "valence", "score": pytest.approx(expected, abs=1e-6)}]
