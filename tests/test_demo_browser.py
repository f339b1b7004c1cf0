"""
The Gradio demo in a real browser: the Space folder that `lyric-valence publish --space --dry_run` writes is run as
a Space runs it (`python app.py` inside the folder, host and port from GRADIO_SERVER_NAME/PORT) with a tiny model,
on 127.0.0.1, offline, and driven by headless Chromium through selenium: type lyrics, press Explain, read the shown
song valence and compare it with `score_songs`, check the coloured lines and the curve, upload a file, and save a
screenshot (outputs/browser-test/app.png). Also: `lyric-valence demo` serves the same app.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and the `demo` extra; skipped without them
outside CI, failed without them in CI.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_bert_config

from configuration_lyric_valence import LyricValenceConfig
from modeling_lyric_valence import LyricValenceModel

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
# Found, not imported: importing gradio at collection would cost every test run seconds (the servers import it).
MISSING += [name for name in ("gradio", "selenium") if importlib.util.find_spec(name) is None]
if MISSING and os.environ.get("CI"):
    pytest.fail(f"the browser test needs {MISSING} (.ci/run installs them)", pytrace=False)
# Slow: Gradio servers in subprocesses and a browser.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING}")]

SCREENSHOT = REPO / "outputs" / "browser-test" / "app.png"
LYRICS = "Sunlight on the water and a song inside my chest\nWe are dancing in the kitchen\n\nThe rain is cold tonight"
TIMEOUT = 300  # a cold start imports torch, transformers and gradio: slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: list[str], cwd: Path, port: int, env: dict) -> subprocess.Popen:
    """Start a Gradio server and wait until it answers on 127.0.0.1:port."""
    log = open(cwd / f"server-{port}.log", "w")
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}: {(cwd / f'server-{port}.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError(f"no answer on port {port} after {TIMEOUT} s: {(cwd / f'server-{port}.log').read_text()}")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def offline_env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("demo-model")
    torch.manual_seed(11)
    config = LyricValenceConfig(encoder=tiny_bert_config(tokenizer.vocab_size), max_length=32, stride=8)
    model = LyricValenceModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def space_app(model_dir, tmp_path_factory):
    """The staged Space, served by its own app.py (its own lyric_valence/ copy first on sys.path)."""
    stage = tmp_path_factory.mktemp("space") / "space"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "lyric_valence.cli",
            "publish",
            "--space",
            "me/demo",
            "--repo_id",
            "me/lyric-valence",
            "--dry_run",
            "--stage_dir",
            str(stage),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    port = free_port()
    env = offline_env(LYRIC_VALENCE_MODEL=str(model_dir), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    server = start_server([sys.executable, "app.py"], stage, port, env)
    yield f"http://127.0.0.1:{port}/"
    stop(server)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))  # no selenium-manager download
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_typed_lyrics_show_the_score_of_score_songs_and_coloured_lines(space_app, browser, model_dir, tokenizer):
    from selenium.webdriver.common.by import By

    browser.get(space_app)
    textarea = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#lyrics textarea"))
    textarea.send_keys(LYRICS)
    browser.find_element(By.CSS_SELECTOR, "#explain").click()
    shown = wait_for(browser, lambda d: d.find_elements(By.ID, "song-valence"))[0].text

    model = LyricValenceModel.from_pretrained(model_dir)
    assert shown == f"{model.score_songs([LYRICS], tokenizer)[0]:.3f}"
    lines = browser.find_elements(By.CSS_SELECTOR, "#explanation .lv-line")
    assert [line.find_element(By.CSS_SELECTOR, ".lv-text").text for line in lines] == [
        line for line in LYRICS.splitlines() if line
    ]
    backgrounds = {line.value_of_css_property("background-color") for line in lines}
    assert len(backgrounds) > 1 and not any(color in ("rgba(0, 0, 0, 0)", "transparent") for color in backgrounds)
    curve = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#curve img"))[0]
    wait_for(browser, lambda d: curve.get_property("naturalWidth") > 0)

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_uploaded_song_file_fills_the_lyrics_box(space_app, browser, tmp_path):
    from selenium.webdriver.common.by import By

    song = REPO / "examples" / "last-train-home.txt"
    browser.get(space_app)
    upload = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
    upload.send_keys(str(song))
    textarea = browser.find_element(By.CSS_SELECTOR, "#lyrics textarea")
    wait_for(browser, lambda d: textarea.get_property("value").strip() == song.read_text(encoding="utf-8").strip())


def test_lyric_valence_demo_serves_the_app(model_dir, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "lyric_valence.cli", "demo", "--model", str(model_dir), "--port", str(port)]
    server = start_server(command, tmp_path, port, offline_env())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10) as response:
            config = response.read().decode()
        assert '"Explain"' in config and str(model_dir) in config
    finally:
        stop(server)
