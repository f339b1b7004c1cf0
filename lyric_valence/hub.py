"""
Publish a folder written by train.py to the Hugging Face Hub as a complete, working model repository.

Repository layout (`stage_repository` builds it, `publish` uploads it with `HfApi.create_repo` + `upload_folder`):

    config.json, model.safetensors        the merged model (left out with adapter_only=True; config.json stays: it
                                          holds the fields that rebuild the LoRA base)
    configuration_lyric_valence.py, modeling_lyric_valence.py, pipeline_lyric_valence.py   the custom code
    tokenizer files, handler.py (Inference Endpoints), README.md (the model card rendered for this repo id)
    test_results.json, eval_results.json, train_results.json, all_results.json, training_args.json,
    test_scatter.png, loss_curve.png
    adapter/adapter_config.json, adapter/adapter_model.safetensors   the peft LoRA adapter with the head
                                          (modules_to_save); its base_model_name_or_path names the encoder

The adapter sits in a subfolder because transformers' `AutoModel.from_pretrained` loads an adapter it finds at the
root instead of the merged model. Checkpoints, optimizer and scheduler state, logs and per-song predictions stay
local. The token comes from huggingface_hub's own lookup (`HF_TOKEN`, `hf auth login`); it is never printed, logged
or written.

A push that fails (token, permissions, network) raises `UserError`: one line naming the repository, the reason,
and the `lyric-valence publish` command that pushes the output folder, which a push never modifies. Re-running sends
only what the Hub lacks: `upload_folder` skips files whose blob id the Hub already holds at that revision.
"""

import importlib
import json
import logging
import math
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import filter_repo_objects

from lyric_valence import TEMPLATES
from lyric_valence.card import DEFAULT_BASE_MODEL, load_card_inputs, render_model_card
from lyric_valence.errors import UserError
from lyric_valence.model_files import ADAPTER_DIR, ADAPTER_FILES, CODE_FILES, MERGED_WEIGHTS, TOKENIZER_FILES

logger = logging.getLogger("lyric_valence")

HANDLER = TEMPLATES / "handler.py"
RESULT_FILES = (
    "test_results.json",
    "eval_results.json",
    "train_results.json",
    "all_results.json",
    "training_args.json",
    "test_scatter.png",
    "loss_curve.png",
)
# What a push may upload, and what it never does even if it shows up in the staged folder. The same patterns go to
# `upload_folder`; `delete_patterns` removes stale files of the same kinds (a merged model from an earlier push, say)
# and leaves files added on the Hub by hand alone.
ALLOW_PATTERNS = [
    "README.md",
    "handler.py",
    "config.json",
    *CODE_FILES,
    *MERGED_WEIGHTS,
    *TOKENIZER_FILES,
    *RESULT_FILES,
    *(f"{ADAPTER_DIR}/{name}" for name in ADAPTER_FILES),
]
IGNORE_PATTERNS = [
    "checkpoint-*",
    "runs/*",
    "*.pt",
    "*.pth",
    "*.bin",
    "*.ckpt",
    "optimizer*",
    "scheduler*",
    "rng_state*",
    "trainer_state.json",
    "training_args.bin",
    "test_predictions.csv",
    "split_song_ids.json",
]


@dataclass
class PublishResult:
    repo_id: str
    revision: str | None
    files: list[str]  # paths in the repository, sorted
    commit_url: str | None = None  # None for a dry run
    staged_folder: Path | None = None  # kept only when the caller asked for a stage_dir


def network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of whichever HTTP client huggingface_hub uses (httpx2 in hub 2.x, httpx in 1.x)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        errors.append(getattr(module, "HTTPError", None) or module.RequestException)
    return tuple(error for error in errors if isinstance(error, type))


def push_errors() -> tuple[type[BaseException], ...]:
    """What a failed push raises: the Hub's refusal (`HfHubHTTPError`) or a transport error (`network_errors`)."""
    return (HfHubHTTPError, *network_errors())


def push_failure(error: BaseException, endpoint: str) -> str:
    """
    One line saying why a push to the Hub at `endpoint` failed (one of `push_errors`): the Hub's refusal, with its
    status, message and what to do, or the transport error that kept it from being reached.
    """
    if isinstance(error, HfHubHTTPError):
        return f"the Hub refused the push: {refusal(error)}"
    return f"could not reach the Hub at {endpoint} ({first_line(error)})"


def first_line(message: BaseException | str) -> str:
    """The first line of an error's text (its type's name when it has none)."""
    text = str(message).strip() or type(message).__name__
    return text.splitlines()[0]


def refusal(error: HfHubHTTPError) -> str:
    """The Hub's answer in one line: status, its own message (`X-Error-Message`), and what to do about it."""
    status = error.response.status_code if error.response is not None else None
    if status is None:
        return first_line(error)
    reason = error.response.headers.get("X-Error-Message") or error.server_message or first_line(error)
    hint = {
        401: "check HF_TOKEN or run `hf auth login`",
        403: "the token's user may not write to this repository",
        404: "no such repository or branch visible to this token",
    }.get(status)
    return f"HTTP {status}: {first_line(reason)}" + (f" ({hint})" if hint else "")


def _publish_command(output_dir, repo_id, adapter_only, private, revision, base_model) -> str:
    """The `lyric-valence publish` command line that pushes `output_dir` as this push would have."""
    argv = ["lyric-valence", "publish", "--model", str(output_dir), "--repo_id", repo_id]
    argv += ["--adapter_only"] * adapter_only + ["--private"] * bool(private)
    argv += ["--revision", revision] * bool(revision) + ["--base_model", base_model] * bool(base_model)
    return shlex.join(argv)


def check_token(repo_id: str) -> None:
    """Fail early, before any training or upload, when huggingface_hub finds no token; never reveal the token."""
    if get_token() is None:
        raise UserError(
            f"{repo_id}: no Hugging Face token found: set HF_TOKEN or run `hf auth login` (never pass it as a flag)"
        )


def check_output_folder(output_dir: Path, adapter_only: bool) -> None:
    if not output_dir.is_dir():
        raise UserError(f"{output_dir}: no such folder")
    if not (output_dir / "config.json").is_file():
        raise UserError(f"{output_dir}: not a folder written by train.py (no config.json)")
    missing = [name for name in CODE_FILES if not (output_dir / name).is_file()]
    if missing:
        raise UserError(f"{output_dir}: the custom code files {missing} are missing")
    has_adapter = all((output_dir / ADAPTER_DIR / name).is_file() for name in ADAPTER_FILES)
    if adapter_only and not has_adapter:
        raise UserError(f"{output_dir}: --adapter_only needs a LoRA run, and there is no {ADAPTER_DIR}/ adapter")
    if not adapter_only and not any(output_dir.glob("model*.safetensors")):
        raise UserError(f"{output_dir}: no merged weights (model.safetensors)")


def _place(source: Path, target: Path) -> None:
    """Hard-link `source` at `target` (no copy of large weights), or copy where links are impossible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# `LyricValenceConfig`'s defaults of the fields the model card reads that a config.json of an older version lacks.
CARD_CONFIG_DEFAULTS = {
    "pooling": "cls",
    "lexical_buckets": 0,
    "lexical_bigrams": True,
    "lexical_min_df": 1,
    "finetuning_mode": None,
    "fit_settings": None,
}


def _card_config(output_dir: Path) -> SimpleNamespace:
    """
    The config.json fields the model card shows (`render_model_card`, `lyric_valence.fitting.describe_fit`), and the
    encoder's `hidden_size`. Read as JSON rather than through `LyricValenceConfig`, whose import pulls in transformers
    and torch: seconds of start-up, on every push, for a command that only uploads files.
    """
    config = json.loads((output_dir / "config.json").read_text())
    fields = {name: value for name, value in config.items() if name != "encoder"}
    return SimpleNamespace(**{**CARD_CONFIG_DEFAULTS, **fields, "hidden_size": config["encoder"]["hidden_size"]})


def stage_repository(
    output_dir: str | Path,
    stage_dir: str | Path,
    repo_id: str,
    *,
    adapter_only: bool = False,
    revision: str | None = None,
    base_model: str | None = None,
) -> list[str]:
    """
    Write into the empty folder `stage_dir` exactly the files a push of `output_dir` uploads, with the model card
    rendered for `repo_id` (and `revision`) and the adapter config naming `base_model` (default: the encoder recorded
    by train.py). Returns the repository paths, sorted, as `upload_folder` will select them.
    """
    output_dir, stage_dir = Path(output_dir), Path(stage_dir)
    check_output_folder(output_dir, adapter_only)
    if stage_dir.exists() and any(stage_dir.iterdir()):
        raise UserError(f"{stage_dir}: the staging folder must be empty")
    stage_dir.mkdir(parents=True, exist_ok=True)

    has_adapter = all((output_dir / ADAPTER_DIR / name).is_file() for name in ADAPTER_FILES)
    top_level = ["config.json", *CODE_FILES, *TOKENIZER_FILES, *RESULT_FILES]
    if not adapter_only:
        top_level += [path.name for pattern in MERGED_WEIGHTS for path in sorted(output_dir.glob(pattern))]
    for name in top_level:
        if (output_dir / name).is_file():
            _place(output_dir / name, stage_dir / name)
    (stage_dir / "handler.py").write_bytes(HANDLER.read_bytes())

    inputs = load_card_inputs(output_dir)
    base_model = base_model or inputs.get("base_model") or DEFAULT_BASE_MODEL
    if has_adapter:
        _place(
            output_dir / ADAPTER_DIR / "adapter_model.safetensors",
            stage_dir / ADAPTER_DIR / "adapter_model.safetensors",
        )
        adapter_config = json.loads((output_dir / ADAPTER_DIR / "adapter_config.json").read_text())
        # PeftConfig.from_pretrained(repo, subfolder="adapter").base_model_name_or_path tells users which encoder
        # to wrap; train.py leaves it empty because the base is built in memory.
        adapter_config["base_model_name_or_path"] = base_model
        (stage_dir / ADAPTER_DIR / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")

    inputs.update(
        repo_id=repo_id,
        base_model=base_model,
        revision=revision,
        has_merged_model=not adapter_only,
        has_adapter=has_adapter,
    )
    card = render_model_card(config=_card_config(output_dir), **inputs)
    card.save(stage_dir / "README.md")
    return planned_upload(stage_dir)


def planned_upload(folder: str | Path) -> list[str]:
    """The repository paths `upload_folder(folder, allow_patterns=ALLOW_PATTERNS, ignore_patterns=...)` uploads."""
    folder = Path(folder)
    paths = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return list(filter_repo_objects(paths, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))


def _commit_message(output_dir: Path, adapter_only: bool) -> str:
    what = "LoRA adapter" if adapter_only else "merged model and LoRA adapter"
    results = output_dir / "test_results.json"
    metrics = json.loads(results.read_text()) if results.is_file() else {}
    scores = [
        f"{label} {metrics[key]:.4f}"
        for key, label in (("test_mse", "MSE"), ("test_pearson", "r"))
        if isinstance(metrics.get(key), (int, float)) and math.isfinite(metrics[key])
    ]
    return f"lyric-valence: {what}" + (f" (song-level test {', '.join(scores)})" if scores else "")


def publish(
    output_dir: str | Path,
    repo_id: str,
    *,
    adapter_only: bool = False,
    private: bool | None = None,
    revision: str | None = None,
    base_model: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    stage_dir: str | Path | None = None,
    api: HfApi | None = None,
) -> PublishResult:
    """
    Push the output folder of a training run to the Hub repository `repo_id` (created if needed; `private` applies
    on creation) on branch `revision` (created from main if needed). `adapter_only` leaves out the merged weights.
    `dry_run` stages the repository (in `stage_dir` when given) and contacts nothing. Raises `UserError`.
    """
    output_dir = Path(output_dir)
    revision = revision or None
    check_output_folder(output_dir, adapter_only)
    if not dry_run:
        check_token(repo_id)
    api = api or HfApi()
    try:
        if not dry_run:
            # create_repo answers with the full id (a bare name lands in the token owner's namespace).
            repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory(prefix="lyric-valence-push-") as scratch:
            folder = Path(stage_dir) if stage_dir is not None else Path(scratch) / "repo"
            files = stage_repository(
                output_dir, folder, repo_id, adapter_only=adapter_only, revision=revision, base_model=base_model
            )
            if dry_run:
                return PublishResult(repo_id, revision, files, staged_folder=Path(stage_dir) if stage_dir else None)
            logger.warning("uploading %d files to %s%s", len(files), repo_id, f" ({revision})" if revision else "")
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="model",
                revision=revision,
                commit_message=commit_message or _commit_message(output_dir, adapter_only),
                allow_patterns=ALLOW_PATTERNS,
                ignore_patterns=list(IGNORE_PATTERNS),
                delete_patterns=ALLOW_PATTERNS,
            )
    except push_errors() as error:
        problem = push_failure(error, api.endpoint)
        retry = _publish_command(output_dir, repo_id, adapter_only, private, revision, base_model)
        raise UserError(f"{repo_id}: {problem}; {output_dir} is complete and unchanged, to push it: {retry}") from None
    url = getattr(info, "commit_url", None) or str(info)
    logger.warning("pushed %s", url)
    return PublishResult(repo_id, revision, files, commit_url=url, staged_folder=Path(stage_dir) if stage_dir else None)


@dataclass
class HubPush:
    """A train.py `--push_to_hub` request, carried out once after the output folder is complete."""

    repo_id: str
    private: bool | None = None
    revision: str | None = None
    base_model: str | None = None

    def publish(self, output_dir: str | Path) -> PublishResult:
        return publish(
            output_dir, self.repo_id, private=self.private, revision=self.revision, base_model=self.base_model
        )


def take_over_hub_push(training_args, base_model: str | None = None) -> HubPush | None:
    """
    Turn the `--push_to_hub`, `--hub_model_id`, `--hub_private_repo` and `--hub_revision` training arguments into
    a `HubPush` and switch the Trainer's own pushing off: it would upload every checkpoint folder as it is saved,
    training state included, before the merged model, adapter and card exist. Checks for a token before training.
    """
    if not training_args.push_to_hub:
        return None
    if getattr(training_args, "hub_token", None):
        raise UserError("--hub_token is not accepted: set HF_TOKEN or run `hf auth login` instead")
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).resolve().name
    check_token(repo_id)
    training_args.push_to_hub = False
    return HubPush(
        repo_id=repo_id,
        private=training_args.hub_private_repo,
        revision=training_args.hub_revision,
        base_model=base_model,
    )


def load_peft_model(repo_id_or_folder: str | Path, revision: str | None = None, **hub_kwargs):
    """
    The published LoRA model as a `PeftModel`, built by the repository's own `handler.load_adapter_model` (its code,
    as the model card's PEFT snippet runs it).
    """
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    name = str(repo_id_or_folder)
    kwargs = {"revision": revision, **hub_kwargs}
    load_adapter_model = get_class_from_dynamic_module("handler.load_adapter_model", name, **kwargs)
    return load_adapter_model(name, subfolder=ADAPTER_DIR, **kwargs)
