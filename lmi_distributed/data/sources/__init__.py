"""Input readers for ingest. Each gives random access to row blocks of a 2-D matrix.

A :class:`Source` has ``n_rows``, ``n_cols``, ``ids`` (row ids or None), ``obs``/``var``
(DataFrames or None), ``describe()`` (provenance) and ``read(start, stop)`` returning rows
``[start, stop)`` as a dense float32 array of shape ``(stop - start, n_cols)``. Nothing is
read whole into memory; one module per format:

* :mod:`.npy` -- ``os.preadv`` of row blocks (no memory map; Fortran order: ``np.memmap``).
* :mod:`.npz` -- a stored member is read in place with ``os.preadv``; a compressed member is
  streamed once into a spool ``.npy`` and read from there with ``os.preadv``.
* :mod:`.zarr` -- Zarr arrays (v2 or v3; a group needs ``key``), sliced by rows through zarr.
* :mod:`.h5ad` -- AnnData ``.h5ad`` (h5py) and AnnData Zarr: ``X`` or ``layers/<name>``; dense
  is sliced, CSR reads ``indptr`` once and the ``data``/``indices`` ranges of each row block;
  CSC is first converted out of core to an on-disk CSR spool (two passes over column blocks).
  ``obs``/``var`` are read with ``anndata.io.read_elem`` (metadata only).
* :mod:`.table` -- Parquet / CSV / TSV embedding tables (an id column plus numeric vector
  columns, or one list column): streamed in record batches into a spool file, then read with
  ``os.preadv``.

:mod:`.base` holds the :class:`Source` protocol and the shared I/O primitives
(:class:`~.base.PreadArray`). :func:`open_source` picks the reader.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..validation import DataError, describe_exc
# ArraySource, PreadArray, CSRSource and STRAY_NUMERIC_FRACTION are re-exported so that every
# name the former single-module ``sources.py`` defined publicly still imports from here.
from .base import ArraySource, PreadArray, Source  # noqa: F401
from .h5ad import CSRSource, _open_anndata  # noqa: F401
from .npy import _open_npy
from .npz import _open_npz
from .table import STRAY_NUMERIC_FRACTION, _open_csv, _open_parquet  # noqa: F401
from .zarr import _open_zarr

__all__ = ["Source", "open_source", "detect_format", "FORMATS"]

FORMATS = ("npy", "npz", "zarr", "h5ad", "anndata-zarr", "parquet", "csv", "tsv")


def detect_format(path: Path) -> str:
    """Guess the input format from the path (extension, or Zarr metadata for directories)."""
    name = path.name.lower()
    for ext, fmt in ((".npy", "npy"), (".npz", "npz"), (".h5ad", "h5ad"), (".parquet", "parquet"),
                     (".pq", "parquet"), (".csv", "csv"), (".csv.gz", "csv"), (".tsv", "tsv"),
                     (".tsv.gz", "tsv"), (".zarr", "zarr")):
        if name.endswith(ext):
            return fmt
    if path.is_dir() and ((path / "zarr.json").exists() or (path / ".zgroup").exists()
                          or (path / ".zarray").exists()):
        return "zarr"
    raise DataError(f"cannot tell the format of {path}; pass format= one of {FORMATS}")


def open_source(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    key: str | None = None,
    id_column: str | None = None,
    vector_columns: Sequence[str] | str | None = None,
    obs_columns: Sequence[str] | None = None,
    spool_dir: str | os.PathLike | None = None,
) -> Source:
    """Open an input file for ingest (see module docstring). Raises DataError naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    fmt = (format or detect_format(path)).lower()
    spool = Path(spool_dir) if spool_dir is not None else path.parent
    try:
        return _open_format(path, fmt, key, id_column, vector_columns, obs_columns, spool)
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # a library error the readers did not name: name the file
        raise DataError(f"{fmt} input {path}: cannot read ({describe_exc(exc)}); the "
                        "file may be truncated or corrupt") from exc


def _open_format(path: Path, fmt: str, key, id_column, vector_columns, obs_columns,
                 spool: Path) -> Source:
    if fmt == "npy":
        arr = _open_npy(path)
        return ArraySource(arr, path, "npy")
    if fmt == "npz":
        return _open_npz(path, key, spool)
    if fmt == "h5ad":
        return _open_anndata(path, "h5ad", key, spool)
    if fmt in ("zarr", "anndata-zarr"):
        return _open_zarr(path, key, spool)
    if fmt == "parquet":
        return _open_parquet(path, id_column, vector_columns, obs_columns, spool)
    if fmt in ("csv", "tsv"):
        return _open_csv(path, "," if fmt == "csv" else "\t", id_column, vector_columns,
                         obs_columns, spool)
    raise DataError(f"unknown input format {fmt!r}; use one of {FORMATS}")
