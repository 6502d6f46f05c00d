"""``.npy`` input: the array is read with ``os.preadv`` per row block (:class:`.base.PreadArray`),
not memory-mapped; a Fortran-ordered 2-D array is the exception and is opened as an
``np.memmap`` (a row block of it is scattered across the whole file)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..validation import DataError, describe_exc
from .base import PreadArray, _npy_pread


def _open_npy(path: Path) -> "PreadArray | np.memmap":
    """The array of the ``.npy`` file ``path`` (see :func:`.base._npy_pread`); DataError naming
    the file for a bad header, object dtype or truncated data."""
    try:
        return _npy_pread(path)
    except DataError as exc:
        raise DataError(f"npy input {path}: {exc}") from exc
    except Exception as exc:
        raise DataError(f"npy input {path}: bad .npy header or data ({describe_exc(exc)}); the file may be truncated or corrupt") from exc

