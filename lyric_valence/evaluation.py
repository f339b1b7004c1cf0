"""
Song-level valence metrics as an `evaluate` module (`lyric_valence/metrics/song_valence/`, loaded offline by path),
used by training (`lyric_valence.trainer`) and by `lyric-valence evaluate` (`lyric_valence.commands.evaluate`).

    song_metrics(predicted, true)   # {"mse": ..., "rmse": ..., "mae": ..., "pearson": ..., "spearman": ..., "r2": ...}
"""

import functools
from pathlib import Path

SONG_VALENCE_METRIC = Path(__file__).resolve().parent / "metrics" / "song_valence"


@functools.cache
def load_song_metric():
    """The `song_valence` evaluate module, loaded from this package's folder (a local path: no network)."""
    import evaluate  # imported here: `lyric-valence predict` does not need it

    return evaluate.load(str(SONG_VALENCE_METRIC), keep_in_memory=True)


def song_metrics(predicted, true) -> dict[str, float]:
    """mse, rmse, mae, pearson, spearman and r2 of the song scores `predicted` against `true`."""
    return load_song_metric().compute(predictions=predicted, references=true)
