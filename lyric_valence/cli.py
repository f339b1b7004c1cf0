"""
The `lyric-valence` command: a dispatcher to the subcommands, one module each in `lyric_valence/commands/`.

    lyric-valence train --data_file lyrics.csv          # or: accelerate launch -m lyric_valence.cli train ...
    lyric-valence predict happy.txt                     # score songs
    lyric-valence prepare lyrics.csv --out prepared/
    lyric-valence publish --model outputs/lyric-valence --repo_id me/lyric-valence-minilm [--private] [--revision v1]
    lyric-valence explain song.txt --model outputs/lyric-valence
    lyric-valence demo --model outputs/lyric-valence
    lyric-valence evaluate outputs/lyric-valence/test_predictions.csv
    lyric-valence --help | --version

A command module has `main(argv)`, returning the exit status (None: 0); it is imported only when its command runs.
The top-level help lists each command with the first line of its module's docstring, read without importing it.
A `UserError` that reaches the dispatcher is one line on stderr and exit status 2.
"""

import ast
import difflib
import importlib
import importlib.util
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

# Each command's module, in the order of the help.
COMMANDS = {
    "train": "lyric_valence.commands.train",
    "predict": "lyric_valence.commands.predict",
    "publish": "lyric_valence.commands.publish",
    "prepare": "lyric_valence.commands.prepare",
    "explain": "lyric_valence.commands.explain",
    "demo": "lyric_valence.commands.demo",
    "evaluate": "lyric_valence.commands.evaluate",
}


def package_version() -> str:
    try:
        return version("lyric-valence")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def help_line(module: str) -> str:
    """The first line of `module`'s docstring, read from its source: listing the commands imports none of them."""
    source = importlib.util.find_spec(module).loader.get_source(module)
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def usage() -> str:
    """The top-level help: one line per subcommand."""
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name:<{width}}  {help_line(module)}" for name, module in COMMANDS.items())
    return (
        f"usage: lyric-valence [--help] [--version] {{{','.join(COMMANDS)}}} ...\n\n"
        "Fine-tune encoders to predict the valence of song lyrics, publish them, score catalogues.\n\n"
        f"commands:\n{commands}\n\n"
        "`lyric-valence COMMAND --help` lists a command's flags; every flag takes both spellings, --text_column and "
        "--text-column.\nTraining on several devices: `accelerate launch -m lyric_valence.cli train ...`.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lyric-valence` console command."""
    logging.basicConfig(format="lyric-valence: %(message)s", level=logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), file=sys.stderr, end="")
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    if argv[0] == "--version":
        print(f"lyric-valence {package_version()}")
        return 0
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; the commands are {', '.join(COMMANDS)}"
        print(f"lyric-valence: error: unknown command {argv[0]!r}{hint}", file=sys.stderr)
        return 2
    from lyric_valence.errors import UserError  # after --help and --version, which need no library

    command = importlib.import_module(COMMANDS[argv[0]])
    try:
        code = command.main(argv[1:])
    except UserError as error:
        print(f"lyric-valence {argv[0]}: error: {error}", file=sys.stderr)
        return 2
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
