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
    "check_real",
    "describe_exc",
    "to_float32",
    "F32_MAX",
    "F32_TINY",
]

F32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38
F32_TINY = float(np.finfo(np.float32).tiny)  # 1.1754944e-38, smallest normal float32

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


def check_real(dtype, what: str) -> None:
    """Raise DataError when ``dtype`` is complex: the store holds real float32 values only."""
    if np.dtype(dtype).kind == "c":
        raise DataError(f"{what}: holds complex values (dtype {np.dtype(dtype)}); the store keeps "
                        "real float32 numbers only. Convert first, e.g. store the real and "
                        "imaginary parts as separate columns, or the magnitude (np.abs)")


def _column_name(columns: Sequence | None, j: int) -> str:
    if columns is not None and j < len(columns):
        return repr(str(columns[j]))
    return str(j)


def to_float32(
    block,
    what: str,
    row0: int = 0,
    columns: Sequence | None = None,
    row_labels: Sequence | np.ndarray | None = None,
) -> np.ndarray:
    """Cast a block to float32, refusing values that float32 cannot hold.

    A finite value with ``|v| > 3.4e38`` would become inf, and a non-zero value with
    ``|v| < 1.18e-38`` would become 0 or a subnormal (losing its digits, possibly making a
    column constant); either raises DataError naming ``what``, the column (name from
    ``columns``, else index), the first rows (``row0`` + position; ``row_labels`` = ids of the
    block's rows, shown when given) and how to fix it. Complex values raise too. Values that fit
    are returned unchanged (as float32).
    """
    b = np.asarray(block)
    check_real(b.dtype, what)
    if b.dtype.kind == "f" and b.dtype.itemsize > 4 and b.size:
        with np.errstate(invalid="ignore", over="ignore"):
            a = np.abs(b)
            over = np.isfinite(a) & (a > F32_MAX)
            under = (a > 0) & (a < F32_TINY)
        b2 = b if b.ndim == 2 else b.reshape(len(b), -1)
        for mask, problem, fix in (
            (over, "finite values beyond float32's range (|v| > 3.4e38) that would become inf",
             "divide the column by a constant"),
            (under, "non-zero values below float32's normal range (|v| < 1.18e-38) that would "
                    "become 0 or lose precision", "multiply the column by a constant"),
        ):
            if mask.any():
                m2 = mask.reshape(b2.shape)
                j = int(np.flatnonzero(m2.any(axis=0))[0])
                rows = np.flatnonzero(m2[:, j])
                shown = first_few((rows + row0).tolist())
                if row_labels is not None:
                    shown += f" (ids {first_few(np.asarray(row_labels)[rows[:5]].tolist())})"
                raise DataError(
                    f"{what}: column {_column_name(columns, j)} holds {problem}, in rows "
                    f"{shown}, e.g. {float(b2[rows[0], j])!r}. The store keeps float32: rescale "
                    f"the input ({fix}, e.g. 1e30) before ingest")
    return b.astype(np.float32, copy=False)


def describe_exc(exc: BaseException, limit: int = 300) -> str:
    """``"Type: message"`` of a library exception on one line (whitespace collapsed), at most
    ``limit`` characters, for embedding in a DataError message."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
