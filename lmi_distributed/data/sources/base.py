"""The :class:`Source` protocol every reader implements, and the shared I/O primitives.

* :class:`Source` -- ``n_rows``, ``n_cols``, ``ids``, ``obs``/``var``, ``describe()``,
  ``read(start, stop)`` (rows ``[start, stop)`` as a dense float32 ``(stop - start, n_cols)``
  array) and the ``shape``/``dtype``/``__getitem__`` protocol of ``dask.array.from_array``.
* :class:`ArraySource` -- a Source over any 2-D (or 1-D: one column) array-like with row
  slicing: a :class:`PreadArray`, an ``np.memmap``, a ``zarr.Array`` or an ``h5py.Dataset``.
* :class:`PreadArray` -- a C-ordered array inside a file, read with ``os.preadv`` per row slice
  (no memory map: see its docstring for why). :func:`_npy_pread` opens the ``.npy`` array that
  starts at a byte offset of a file (a ``.npy`` file, or a stored member of a ``.npz``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..validation import DataError, check_real, describe_exc, to_float32


class Source:
    """Random-access reader of row blocks of one 2-D input matrix.

    ``read(start, stop)`` returns rows ``[start, stop)`` as a dense float32 array of shape
    ``(stop - start, n_cols)``; ``ids`` is a str array ``(n_rows,)`` or None; ``obs``/``var``
    are pandas DataFrames or None; ``describe()`` gives provenance (path, format, key, shape,
    size in bytes, mtime). ``close()`` releases file handles and removes spool files.
    """

    format: str = "?"
    path: Path
    n_rows: int
    n_cols: int
    ids: np.ndarray | None = None
    obs = None
    var = None
    key: str | None = None

    def read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance: ``path`` (absolute), ``format``, ``key``, ``shape`` ``[n_rows, n_cols]``,
        ``size_bytes`` (file size, or total under a directory) and ``mtime`` (seconds)."""
        st = self.path.stat() if self.path.exists() else None
        size = st.st_size if st and self.path.is_file() else _dir_size(self.path)
        return {
            "path": str(self.path.resolve()),
            "format": self.format,
            "key": self.key,
            "shape": [self.n_rows, self.n_cols],
            "size_bytes": size,
            "mtime": st.st_mtime if st else None,
        }

    def close(self) -> None:
        pass

    def _close_root(self) -> None:
        root = getattr(self, "_root", None)
        if root is not None and hasattr(root, "close"):
            _close_quietly(root)
        self._root = None

    def _release(self, *arrays) -> None:
        """Close pread-backed ``arrays`` and the open root; delete temporary spool files."""
        for a in arrays:
            if isinstance(a, PreadArray):
                a.close()
        self._close_root()
        for p in getattr(self, "_cleanup", ()):
            try:
                os.remove(p)
            except OSError:
                pass

    # dask.array.from_array protocol
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    dtype = np.dtype(np.float32)
    ndim = 2

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        rs = key[0]
        cs = key[1] if len(key) > 1 else slice(None)
        if not isinstance(rs, slice):
            raise TypeError("Source supports row slices only")
        start, stop, step = rs.indices(self.n_rows)
        block = self.read(start, stop)
        if step != 1:
            block = block[::step]
        if cs != slice(None):
            block = block[:, cs]
        return block


def _dir_size(p: Path) -> int | None:
    if not p.is_dir():
        return None
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _as_2d_numeric(a, what: str):
    if a.ndim not in (1, 2):
        raise DataError(f"{what}: expected a 2-D matrix, got shape {a.shape}")
    check_real(a.dtype, what)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DataError(f"{what}: expected numeric values, got dtype {a.dtype}")
    return a


class ArraySource(Source):
    """A Source over an array-like with numpy row slicing: a :class:`PreadArray`, an
    ``np.memmap`` (Fortran-ordered ``.npy``), a ``zarr.Array`` or an ``h5py.Dataset``.

    ``arr`` is 2-D ``(n_rows, n_cols)`` or 1-D ``(n_rows,)`` (read as one column), of a real
    numeric or bool dtype; ``read`` converts to float32 and checks the float32 range.
    """

    def __init__(self, arr, path: Path, fmt: str, key: str | None = None, ids=None, obs=None,
                 var=None, cleanup: Sequence[Path] = ()) -> None:
        self.arr = _as_2d_numeric(arr, f"{fmt} input {path}" + (f" [{key}]" if key else ""))
        self.path, self.format, self.key = Path(path), fmt, key
        self._1d = self.arr.ndim == 1
        self.n_rows = int(self.arr.shape[0])
        self.n_cols = 1 if self._1d else int(self.arr.shape[1])
        self.ids, self.obs, self.var = ids, obs, var
        self._cleanup = list(cleanup)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as float32 ``(stop - start, n_cols)``; DataError on a failed
        read (truncated or corrupt file) or a value out of float32 range."""
        try:
            if self._1d:
                b = np.asarray(self.arr[start:stop]).reshape(-1, 1)
            else:
                b = np.asarray(self.arr[start:stop])
        except Exception as exc:
            raise DataError(f"{self.format} input {self.path}: reading rows [{start}, {stop}) "
                            f"failed ({describe_exc(exc)}); the file may be truncated "
                            "or corrupt") from exc
        return to_float32(b, self._what(), start, self._columns(), self._row_ids(start, stop))

    def close(self) -> None:
        self._release(self.arr)
        self.arr = None

    def _what(self) -> str:
        return f"{self.format} input {self.path}" + (f" [{self.key}]" if self.key else "")

    def _columns(self):
        names = getattr(self, "column_names", None)
        if names is None and self.var is not None and len(self.var) == self.n_cols:
            names = self.var.index.astype(str).tolist()
        return names

    def _row_ids(self, start: int, stop: int):
        return None if self.ids is None or len(self.ids) != self.n_rows else self.ids[start:stop]


def _read_header(f, version: tuple[int, int]):
    """(shape, fortran_order, dtype) of an .npy header, with numpy's public readers only.

    Version 3.0 differs from 2.0 only by utf-8 structured field names; a structured array is
    not a numeric matrix, so it is refused here with a clear message.
    """
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f, max_header_size=1 << 20)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f, max_header_size=1 << 20)
    if version == (3, 0):
        raise DataError("npy format version 3.0 (utf-8 field names of a structured array); "
                        "save a plain numeric array instead")
    raise DataError(f"unknown npy format version {version[0]}.{version[1]}; the header may be "
                    "corrupt")


class PreadArray:
    """A C-ordered array of ``shape`` and ``dtype`` starting at byte ``offset`` of ``path``,
    read with ``os.preadv`` per row slice (this is not a memory map).

    ``a[start:stop]`` (or ``a[start:stop, cols]``) returns a new writable numpy array of shape
    ``(stop - start,) + shape[1:]``; only row slices are supported. The file size is checked
    against the shape when it is opened (DataError if truncated).

    Why not ``np.load(mmap_mode="r")``: pages read through a map are mapped into the process
    and count in its resident memory (RSS) until unmapped, so a Ray worker that streams a large
    input would look like it holds all of it; pages read with pread stay in the kernel's page
    cache only (measured: streaming a 195 MiB file leaves 195 MiB of RssFile with a map, 0 with
    pread; the map streams ~2x faster). ``jobs/benchmark_readers.py`` measures this and
    docs/benchmarks.md ("Hand-written readers vs libraries") records the decision.
    """

    def __init__(self, path: Path, offset: int, dtype, shape: tuple[int, ...]) -> None:
        self._fd = None
        self.path = Path(path)
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.ndim = len(self.shape)
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64)) if self.ndim > 1 else 1
        self.row_bytes = self.row_items * self.dtype.itemsize
        need = self.offset + self.shape[0] * self.row_bytes
        size = self.path.stat().st_size
        if size < need:
            raise DataError(f"{self.path}: file has {size} bytes but the array needs {need}; the "
                            "file is truncated")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rest = key[1:]
            key = key[0]
        else:
            rest = ()
        if not isinstance(key, slice):
            raise TypeError("PreadArray supports row slices only")
        start, stop, step = key.indices(self.shape[0])
        n = max(0, stop - start)
        nbytes = n * self.row_bytes
        out = np.empty((n,) + self.shape[1:], dtype=self.dtype)  # filled by preadv, no zeroing
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = 0
        while got < nbytes:
            k = os.preadv(self._fd, [view[got:]], self.offset + start * self.row_bytes + got)
            if k <= 0:
                raise DataError(f"{self.path}: unexpected end of file; the file is truncated")
            got += k
        if step != 1:
            out = out[::step]
        return out[(slice(None),) + rest] if rest else out

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self) -> None:  # pragma: no cover
        self.close()


def _npy_pread(path: Path, offset: int = 0) -> "PreadArray | np.ndarray":
    """Open the ``.npy`` array whose header starts at byte ``offset`` of ``path``.

    Returns a :class:`PreadArray` (C order, or any 0/1-D array), or a read-only ``np.memmap``
    for a Fortran-ordered array of 2 or more dimensions. The header is parsed with numpy's
    public ``np.lib.format`` readers; object arrays are refused with a DataError.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        version = np.lib.format.read_magic(fh)
        shape, fortran, dtype = _read_header(fh, version)
        data_off = fh.tell()
    if dtype.hasobject:
        raise DataError(f"{path}: object arrays are not supported")
    if fortran and len(shape) > 1:
        return np.memmap(path, dtype=dtype, mode="r", offset=data_off, shape=shape, order="F")
    return PreadArray(path, data_off, dtype, shape)


def _close_quietly(root) -> None:
    """Close an h5py file (zarr groups have nothing to close). Called while another error is
    being raised about the same file: a failure to close must not replace that error."""
    try:
        if hasattr(root, "close"):
            root.close()
    except Exception:  # noqa: BLE001 - the error being raised already names the file
        pass


def _rm(p: Path) -> None:
    try:
        os.remove(p)
    except OSError:
        pass

