"""The documentation: every relative link and image resolves, and no --help text quotes a measured figure."""

import re
import subprocess
import sys
from urllib.parse import unquote

import pytest

from lyric_valence.cli import COMMANDS, main
from tests.conftest import REPO

PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "bench" / "README.md",
    REPO / "experiments" / "README.md",
]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Measured figures go stale with the next run: they live in bench/ results and the docs pages citing them.
MEASURED_FIGURE = re.compile(r"×|GFLOP|songs/s|Pearson within|\d(\.\d+)?x faster")


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {heading_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def relative_links(page) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page):
    assert page.exists()
    for target in relative_links(page):
        path, _, anchor = unquote(target).partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(resolved), f"{page.name}: {target}: no heading #{anchor}"


def test_the_link_check_sees_a_broken_link_and_a_broken_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n[ok](a.md#title) [gone](b.md) ![img](c.png) [x](a.md#nowhere)\n")
    links = relative_links(tmp_path / "a.md")
    assert links == ["a.md#title", "b.md", "c.png", "a.md#nowhere"]
    assert anchors(tmp_path / "a.md") == {"title"}
    assert heading_anchor("Speed and precision: `--dtype`, ×2") == "speed-and-precision---dtype-2"


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 180


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_measured_figure_in_command_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = capsys.readouterr().out
    assert "usage:" in help_text
    assert not MEASURED_FIGURE.search(help_text), MEASURED_FIGURE.search(help_text).group()


@pytest.mark.slow
def test_no_measured_figure_in_train_help():
    completed = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0 and "--data_file" in completed.stdout
    assert not MEASURED_FIGURE.search(completed.stdout), MEASURED_FIGURE.search(completed.stdout).group()
