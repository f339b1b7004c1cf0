"""The one error type for problems a user can fix."""


class UserError(ValueError):
    """
    A problem the user can fix: bad input data, a flag, a model folder, a checkpoint, a Hub setting. The message is
    one line naming the file, row, column or flag; the `lyric-valence` command and train.py print it and exit with 2.
    """
