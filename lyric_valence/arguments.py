"""
The command-line parser of `train.py` and of every `lyric-valence` subcommand, and the argument types they share.
The option groups several commands share are dataclasses (`lyric_valence.loading.ScoringOptions`: predict, explain,
demo), whose fields become flags as in transformers' examples.
"""

import argparse
import dataclasses
import difflib
from collections.abc import Iterable

from transformers import HfArgumentParser


class ArgumentParser(HfArgumentParser):
    """
    `HfArgumentParser` (dataclass arguments, as in transformers' examples) whose usage errors are all one line on
    stderr with exit code 2, as argparse's are.

    On top of `HfArgumentParser`:
    - an unknown flag, on the command line or as a key of a YAML/JSON arguments file, names itself and the closest
      valid flag (`HfArgumentParser` raises a `ValueError` with a traceback);
    - a value that a dataclass's `__post_init__` rejects (a `ValueError`) is a usage error too;
    - flags added with `add_argument` get both spellings, `--text_column` and `--text-column`, as dataclass fields do;
    - no abbreviated flags: `--privat` is a typo named as such, not `--private`, and stays so when flags are added;
    - `only_fields`: only these fields of the dataclasses become flags; the others keep their defaults (a command
      that takes part of a shared group, e.g. explain the model fields of `ScoringOptions`).
    """

    def __init__(self, dataclass_types=None, *, only_fields: Iterable[str] | None = None, **kwargs):
        self.only_fields = None if only_fields is None else frozenset(only_fields)
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)
        if self.only_fields is not None:
            names = {field.name for dtype in self.dataclass_types for field in dataclasses.fields(dtype)}
            if not self.only_fields <= names:
                raise ValueError(f"only_fields names no field: {sorted(self.only_fields - names)}")

    def _parse_dataclass_field(self, parser, field: dataclasses.Field):
        """A field's flag, as `HfArgumentParser` makes it; a field left out by `only_fields` gets its default alone."""
        if self.only_fields is None or field.name in self.only_fields:
            return HfArgumentParser._parse_dataclass_field(parser, field)
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        parser.set_defaults(**{field.name: default})

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def add_argument(self, *names, **kwargs):
        if kwargs.get("action") == "store_false" and names[0].startswith("--no_"):
            # HfArgumentParser gives `--no_x` the help of `--x`, which then reads as the opposite of what it does.
            kwargs["help"] = f"Switch off --{kwargs['dest']} (on by default): {kwargs.get('help', '')}"
            kwargs["default"] = argparse.SUPPRESS
            # ... and no `--no_` form of the field's aliases (`--group_by_artist`: `--no_group_by_artist`).
            names += tuple(f"--no_{alias[2:]}" for alias in self.field_aliases(kwargs["dest"]))
        hyphenated = [name.replace("_", "-") for name in names if name.startswith("--") and "_" in name]
        if kwargs.get("nargs") == "+" and isinstance(kwargs.get("metavar"), tuple):
            # A list field whose metadata names its values (`metavar=("LOW", "HIGH")`) takes exactly that many.
            kwargs["nargs"] = len(kwargs["metavar"])
        return super().add_argument(*names, *[name for name in hyphenated if name not in names], **kwargs)

    def field_aliases(self, dest: str) -> list[str]:
        """The flags of field `dest` other than its own name's two spellings (`metadata["aliases"]`)."""
        own = {f"--{dest}", f"--{dest.replace('_', '-')}"}
        return [
            option
            for action in self._actions
            if action.dest == dest and not action.option_strings[0].startswith("--no")
            for option in action.option_strings
            if option.startswith("--") and option not in own and "-" not in option[2:]
        ]

    def parse_args(self, args=None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(self.unknown_argument_message(unknown, self.flags()))
        return namespace

    def parse_args_into_dataclasses(self, args=None, **kwargs):
        try:
            *parsed, unknown = super().parse_args_into_dataclasses(args, return_remaining_strings=True, **kwargs)
        except ValueError as error:  # a dataclass's __post_init__ rejected a value
            self.error(str(error))
        if unknown:
            self.error(self.unknown_argument_message(unknown, self.flags()))
        return tuple(parsed)

    def parse_dict(self, args: dict, allow_extra_keys: bool = False):
        field_names = {name for flag in self.flags() for name in [flag.removeprefix("--")]}
        unknown = [key for key in args if key not in field_names]
        if unknown and not allow_extra_keys:
            self.error(self.unknown_argument_message(unknown, sorted(field_names), kind="key"))
        try:
            return super().parse_dict(args, allow_extra_keys=allow_extra_keys)
        except ValueError as error:
            self.error(str(error))

    def flags(self) -> list[str]:
        """Every long option string of the parser, e.g. `--data_file` and `--data-file`."""
        return [option for action in self._actions for option in action.option_strings if option.startswith("--")]

    @staticmethod
    def unknown_argument_message(unknown: list[str], known: Iterable[str], kind: str = "argument") -> str:
        """'unrecognized argument --train_file (did you mean --data_file?)' for the first unknown flag or key."""
        name = next((item for item in unknown if item.startswith("-")), unknown[0]).split("=", 1)[0]
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        return f"unrecognized {kind} {name}" + (f" (did you mean {close[0]}?)" if close else "")


def positive_int(value: str) -> int:
    """An argparse type: an integer of at least 1 (a usage error names the flag otherwise)."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number
