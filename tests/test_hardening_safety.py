"""The files that travel to the Hub and run under `trust_remote_code=True` do nothing but model code: no network, no
eval/exec, no subprocess, no file writes, no unpickling. Checked statically, by walking their syntax trees."""

import ast

import pytest
from conftest import REPO

HUB_FILES = ("configuration_lyric_valence.py", "modeling_lyric_valence.py", "pipeline_lyric_valence.py")
SIBLINGS = {name.removesuffix(".py") for name in HUB_FILES}
# concurrent: score_songs tokenizes the next block in one worker thread (ProcessPoolExecutor stays forbidden below).
ALLOWED_MODULES = {
    "torch",
    "transformers",
    "tqdm",
    "typing",
    "math",
    "dataclasses",
    "collections",
    "functools",
    "concurrent",
    *SIBLINGS,
}
# Built-ins that run code or read input: flagged wherever the bare name appears, called or passed around.
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint", "input"}
# Functions and methods that reach the network, spawn processes, write or delete files, or unpickle: flagged when
# called by that name, whatever object they hang on (`torch.load`, `os.system`, `path.write_text`, ...).
FORBIDDEN_CALLS = {
    "system",
    "popen",
    "spawnv",
    "spawnl",
    "execv",
    "execve",
    "execvp",
    "fork",
    "startfile",
    "remove",
    "unlink",
    "rmtree",
    "rename",
    "makedirs",
    "mkdir",
    "write_text",
    "write_bytes",
    "save",
    "save_file",
    "load",
    "loads",
    "Unpickler",
    "urlopen",
    "hf_hub_download",
    "snapshot_download",
    "cached_file",
    "cached_files",
    "HfApi",
    "upload_file",
    "upload_folder",
    "create_repo",
    "push_to_hub",
    "get_token",
    "login",
    "from_pretrained",
    "ProcessPoolExecutor",
}
FORBIDDEN_MODULES = {
    "os",
    "sys",
    "subprocess",
    "socket",
    "ssl",
    "http",
    "urllib",
    "urllib3",
    "requests",
    "httpx",
    "aiohttp",
    "huggingface_hub",
    "pickle",
    "dill",
    "marshal",
    "shelve",
    "shutil",
    "importlib",
    "ctypes",
    "builtins",
    "pathlib",
    "tempfile",
    "io",
    "multiprocessing",
    "threading",
    "asyncio",
    "ftplib",
    "smtplib",
    "webbrowser",
}
# Deliberate exceptions, each a (file, function, name) triple with the reason it is safe.
ALLOWED_CALLS = {
    # Builds a fresh model for training around a named encoder (train.py calls it); loading a saved model with
    # trust_remote_code never runs it: `from_pretrained` builds the encoder with `AutoModel.from_config`.
    ("modeling_lyric_valence.py", "from_encoder_pretrained", "from_pretrained"),
}


def imported_modules(tree: ast.AST) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    return modules


class CallFinder(ast.NodeVisitor):
    """(innermost enclosing function, called name, node) of every call: `f(...)` and `anything.f(...)` both give f."""

    def __init__(self):
        self.functions, self.calls = ["<module>"], []

    def visit_FunctionDef(self, node):
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if called is not None:
            self.calls.append((self.functions[-1], called, node))
        self.generic_visit(node)


def called_names(tree: ast.AST):
    finder = CallFinder()
    finder.visit(tree)
    return finder.calls


def open_write_modes(tree: ast.AST):
    """Line numbers of `open(...)` / `x.open(...)` calls whose mode can write, or whose mode is not a literal."""
    for _, called, node in called_names(tree):
        if called == "open":
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if mode is not None and not (isinstance(mode, ast.Constant) and not set(str(mode.value)) & set("wax+")):
                yield node.lineno


def bare_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


@pytest.mark.parametrize("file_name", HUB_FILES)
def test_hub_code_imports_only_model_libraries(file_name):
    tree = ast.parse((REPO / file_name).read_text(encoding="utf-8"), file_name)
    modules = imported_modules(tree)
    assert not modules & FORBIDDEN_MODULES, modules & FORBIDDEN_MODULES
    assert modules <= ALLOWED_MODULES, modules - ALLOWED_MODULES


@pytest.mark.parametrize("file_name", HUB_FILES)
def test_hub_code_never_runs_code_writes_files_unpickles_or_downloads(file_name):
    tree = ast.parse((REPO / file_name).read_text(encoding="utf-8"), file_name)
    assert not bare_names(tree) & FORBIDDEN_BUILTINS, bare_names(tree) & FORBIDDEN_BUILTINS
    offending = [
        f"line {node.lineno}: {called}() in {function}"
        for function, called, node in called_names(tree)
        if called in FORBIDDEN_CALLS and (file_name, function, called) not in ALLOWED_CALLS
    ]
    assert not offending, offending
    assert not list(open_write_modes(tree)), "open() in a writing (or unknown) mode"


def test_the_scan_catches_what_it_looks_for():
    bad = """
import requests
from subprocess import run
import torch
def f(path, model):
    torch.load(path)
    open(path, "wb").write(b"")
    path.write_text("x")
    model.eval()  # a module method, not the built-in
    __import__("socket")
    x = exec
"""
    tree = ast.parse(bad)
    assert {"requests", "subprocess"} <= imported_modules(tree) & FORBIDDEN_MODULES
    assert {called for _, called, _ in called_names(tree)} & FORBIDDEN_CALLS == {"load", "write_text"}
    assert list(open_write_modes(tree)) == [7]
    assert bare_names(tree) & FORBIDDEN_BUILTINS == {"exec", "__import__"}
    assert {function for function, called, _ in called_names(tree) if called == "load"} == {"f"}
