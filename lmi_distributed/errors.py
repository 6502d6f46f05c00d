"""Exception types shared by every layer.

Each error message names what is wrong and where (variable, key path, file, row count).
"""


class LMIError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(LMIError, ValueError):
    """Bad arrays given to an estimator: shape, NaN/inf, too few samples."""


class ConfigError(LMIError, ValueError):
    """A study configuration that does not validate; the message names the key path."""


class DataError(LMIError, ValueError):
    """A store, ingest input, variable or pairing that cannot be used as asked."""


class LMIWarning(UserWarning):
    """An estimate that is not "ok" (its ``status`` says why; its MI is NaN)."""
