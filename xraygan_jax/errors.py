"""The project's user-error types: bad input a user can fix, as opposed to a bug.

Launchers print these as one line that names the flag or file to fix, without a traceback
(`--verbosity=1` shows it). Each subclasses the builtin a caller would expect, so
`except ValueError` and `except FileNotFoundError` still catch them.
"""


class UserError(Exception):
    """Base class: an error whose message tells the user what to change."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (names the `--config.` flag)."""


class DataError(UserError, ValueError):
    """Data that does not fit the job: too few images, wrong size or classes."""


class MissingError(UserError, FileNotFoundError):
    """A file, folder or checkpoint that should exist and does not."""


class TrainingDivergedError(UserError, FloatingPointError):
    """A NaN or Inf loss: names the step and the last good checkpoint."""
