"""Labelled lyrics in, clean and leak-free train/validation/test splits out; one module per step (see `load`)."""

from .columns import Columns
from .load import LoadedData, PreparedData, load_data, load_splits, prepare
from .options import DataOptions
from .read import read_table
from .split import SPLITS

__all__ = [
    "SPLITS",
    "Columns",
    "DataOptions",
    "PreparedData",
    "LoadedData",
    "load_data",
    "load_splits",
    "prepare",
    "read_table",
]
