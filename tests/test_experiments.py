"""Every study in experiments/ still imports and answers --help (in this process: its main(argv) with ["--help"])."""

import importlib

import pytest

from tests.conftest import REPO

STUDIES = sorted(path.stem for path in (REPO / "experiments").glob("*.py") if path.stem != "__init__")


def test_the_studies_are_found():
    assert {"explain", "prepare", "recipe"} <= set(STUDIES)


@pytest.mark.parametrize("study", STUDIES)
def test_a_study_imports_and_prints_its_help(study, capsys):
    module = importlib.import_module(f"experiments.{study}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_the_onnx_cache_study_times_the_imports_of_predict_as_they_are():
    from experiments.onnx_cache import IMPORTS

    for name in IMPORTS.removeprefix("import ").split(", "):
        importlib.import_module(name)
