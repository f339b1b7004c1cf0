"""
A Gradio Space for a published model: `lyric-valence publish --space me/lyric-valence-demo --repo_id me/model`.

The Hub's serverless widget does not run custom-code models, so a Space is where people try one. The Space folder:

    app.py                                   the Gradio demo (the package's own app.py)
    lyric_valence/...                        what app.py imports from this package: the one scoring loader
                                             (loading, backends, errors, model_files, pretrained) and
                                             explanation_rendering (colours, curve)
    configuration_lyric_valence.py,          the model classes the loader builds the model with
    modeling_lyric_valence.py,
    pipeline_lyric_valence.py
    examples/*.txt                           the example songs, written for this project
    requirements.txt                         torch, transformers, accelerate, matplotlib (gradio: `sdk_version`)
    README.md                                Space metadata: sdk gradio, sdk_version, app_file, models: [the model]

app.py loads the model's weights, config and tokenizer from the Hub with `lyric_valence.loading.load_scoring_model`,
as `lyric-valence predict` and `demo` do: with these classes, never the model repository's own code.
"""

import importlib.util
import logging
import tempfile
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceCardData

from lyric_valence import TEMPLATES
from lyric_valence.card import is_hub_id
from lyric_valence.errors import UserError
from lyric_valence.hub import PublishResult, check_token, push_errors, push_failure

logger = logging.getLogger("lyric_valence")


def module_file(name: str) -> Path:
    """The installed file of top-level module `name` (the Hub files are modules, not package data)."""
    return Path(importlib.util.find_spec(name).origin)


PACKAGE = resources.files("lyric_valence")
# The Space runs app.py with its own copy of the modules app.py imports (the package is not on PyPI).
SPACE_CODE = {
    "app.py": TEMPLATES / "app.py",
    **{
        f"lyric_valence/{name}": PACKAGE / name
        for name in (
            "__init__.py",
            "explanation_rendering.py",
            "loading.py",
            "errors.py",
            "model_files.py",
            "pretrained.py",
            "backends/__init__.py",
            "backends/torch.py",
        )
    },
    **{
        f"{name}.py": module_file(name)
        for name in ("configuration_lyric_valence", "modeling_lyric_valence", "pipeline_lyric_valence")
    },
}
REQUIREMENTS = ("torch", "transformers>=5.24,<6", "accelerate>=1.0", "matplotlib")
FALLBACK_GRADIO_VERSION = "6.31.0"  # the version the demo was tested with, when gradio is not installed here


def space_card(space_id: str, model_id: str) -> SpaceCard:
    try:
        gradio_version = version("gradio")
    except PackageNotFoundError:
        gradio_version = FALLBACK_GRADIO_VERSION
    data = SpaceCardData(
        title="lyric-valence",
        sdk="gradio",
        sdk_version=gradio_version,
        app_file="app.py",
        models=[model_id],
        license="apache-2.0",
        tags=["lyric-valence", "valence", "lyrics"],
        emoji="🎵",
        colorFrom="red",
        colorTo="blue",
        short_description="Song lyrics valence, line by line",
    )
    return SpaceCard(
        f"---\n{data.to_yaml()}\n---\n\n# lyric-valence demo\n\n"
        f"Paste or upload a song's lyrics: the demo shows its emotional valence (0 sad/negative .. 1 happy/positive) "
        f"according to [{model_id}](https://huggingface.co/{model_id}), each line coloured by how it pulls the song "
        f"up or down, and the valence along the song. The example songs were written for this demo.\n\n"
        f"Run it locally: `LYRIC_VALENCE_MODEL={model_id} python app.py`.\n"
    )


def stage_space(stage_dir: str | Path, space_id: str, model_id: str) -> list[str]:
    """Write the Space for `model_id` (a Hub model id) into the empty folder `stage_dir`; return its files, sorted."""
    if not is_hub_id(model_id) or "/" not in model_id:
        raise UserError(f"{model_id}: a Space loads its model from the Hub: --repo_id must be a Hub id like me/model")
    stage_dir = Path(stage_dir)
    if stage_dir.exists() and any(stage_dir.iterdir()):
        raise UserError(f"{stage_dir}: the staging folder must be empty")
    examples = {
        f"examples/{song.name}": song for song in (TEMPLATES / "examples").iterdir() if song.name.endswith(".txt")
    }
    for name, source in {**SPACE_CODE, **examples}.items():
        (stage_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (stage_dir / name).write_bytes(source.read_bytes())
    (stage_dir / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
    space_card(space_id, model_id).save(stage_dir / "README.md")
    return sorted(path.relative_to(stage_dir).as_posix() for path in stage_dir.rglob("*") if path.is_file())


def publish_space(
    space_id: str,
    model_id: str,
    *,
    private: bool | None = None,
    dry_run: bool = False,
    stage_dir: str | Path | None = None,
    api: HfApi | None = None,
) -> PublishResult:
    """
    Create (if needed) the Gradio Space `space_id` and upload the demo for the Hub model `model_id`. `dry_run`
    builds the folder (kept in `stage_dir` when given) and contacts nothing. Raises `UserError`.
    """
    if not dry_run:
        check_token(space_id)
    api = api or HfApi()
    try:
        with tempfile.TemporaryDirectory(prefix="lyric-valence-space-") as scratch:
            folder = Path(stage_dir) if stage_dir is not None else Path(scratch) / "space"
            files = stage_space(folder, space_id, model_id)
            kept = Path(stage_dir) if stage_dir is not None else None
            if dry_run:
                return PublishResult(space_id, None, files, staged_folder=kept)
            space_id = api.create_repo(
                space_id, private=private, exist_ok=True, repo_type="space", space_sdk="gradio"
            ).repo_id
            logger.warning("uploading %d files to the Space %s", len(files), space_id)
            info = api.upload_folder(
                repo_id=space_id,
                folder_path=folder,
                repo_type="space",
                commit_message=f"lyric-valence demo for {model_id}",
            )
    except push_errors() as error:
        raise UserError(f"{space_id}: {push_failure(error, api.endpoint)}") from None
    url = getattr(info, "commit_url", None) or str(info)
    return PublishResult(space_id, None, files, commit_url=url, staged_folder=kept)
