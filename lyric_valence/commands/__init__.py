"""
The `lyric-valence` subcommands, one module each, apart from the library they drive. Every module has a `parser()`
building its `ArgumentParser` and a `main(argv) -> int` returning the exit status (2 for a user error, with one line
on stderr); `lyric_valence.cli` dispatches to them and `train.py` at the repository root runs `commands.train`.
"""
