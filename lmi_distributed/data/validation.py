"""Shared checks and error-message helpers for the data layer.

Every error raised here is a :class:`lmi_distributed.errors.DataError` whose message names
the place (store, matrix, variable, file, column) and the offending rows or ids.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from lmi_distributed.errors import DataError

__all__ = [
    "DataError",
    "first_few",
    "nonfinite_rows",
    "check_finite",
    "check_name",
    "check_min_samples",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def first_few(items: Iterable, k: int = 5) -> str:
    """Render up to ``k`` items of a sequence as ``[a, b, c, ...]`` for error messages."""
    items = list(items)
    shown = ", ".join(repr(x.item() if isinstance(x, np.generic) else x) for x in items[:k])
    more = ", ..." if len(items) > k else ""
    return f"[{shown}{more}]"


def nonfinite_rows(a: np.ndarray) -> np.ndarray:
    """Indices (int64) of the rows of a 2-D array that hold any NaN or +-inf."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(a).all(axis=1)).astype(np.int64)


def check_finite(
    a: np.ndarray,
    what: str,
    row_labels: Sequence | np.ndarray | None = None,
) -> None:
    """Raise DataError naming ``what`` and the first rows that hold NaN/inf.

    ``row_labels`` (len = rows of ``a``) are shown instead of positions when given, e.g.
    matrix row indices or row ids.
    """
    bad = nonfinite_rows(a)
    if bad.size:
        labels = bad if row_labels is None else np.asarray(row_labels)[bad]
        raise DataError(
            f"{what}: {bad.size} of {a.shape[0]} rows contain NaN or inf; "
            f"first rows: {first_few(labels)}"
        )


def check_name(name: str, what: str = "matrix name") -> str:
    """Validate a store member name (letters, digits, ``_ . -``; no leading dot)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataError(
            f"invalid {what} {name!r}: use letters, digits, '_', '.', '-' and do not start "
            "with '.' or '-'"
        )
    return name


def check_min_samples(n: int, min_samples: int, what: str) -> None:
    """Raise DataError when a pairing has fewer joint samples than the estimator needs."""
    if n < min_samples:
        raise DataError(
            f"{what}: only {n} joint samples, the estimator needs at least {min_samples}"
        )
