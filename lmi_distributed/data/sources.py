"""Input readers for ingest. Each gives random access to row blocks of a 2-D matrix.

A :class:`Source` has ``n_rows``, ``n_cols``, ``ids`` (row ids or None), ``obs``/``var``
(DataFrames or None), ``describe()`` (provenance) and ``read(start, stop)`` returning rows
``[start, stop)`` as a dense float32 array. Nothing is read whole into memory:

* ``.npy``: memory map. ``.npz``: an uncompressed member is memory-mapped in place; a
  compressed member is streamed once into a spool ``.npy`` and memory-mapped.
* Zarr arrays (v2 or v3; a group needs ``key``): sliced by rows.
* AnnData ``.h5ad`` (h5py) and AnnData Zarr: ``X`` or ``layers/<name>``; dense is sliced,
  CSR reads ``indptr`` once and the ``data``/``indices`` ranges of each row block; CSC is first
  converted out of core to an on-disk CSR spool (two passes over column blocks).
  ``obs``/``var`` are read with ``anndata.io.read_elem`` (metadata only).
* Parquet / CSV / TSV embedding tables (an id column plus numeric vector columns, or one
  list column): streamed in record batches into a spool file, then memory-mapped.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .validation import DataError, check_real, describe_exc, first_few, to_float32

__all__ = ["Source", "open_source", "detect_format", "FORMATS"]

FORMATS = ("npy", "npz", "zarr", "h5ad", "anndata-zarr", "parquet", "csv", "tsv")


class Source:
    """Random-access reader of row blocks (see module docstring)."""

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
    """Any object with 2-D numpy-like slicing (np.memmap, zarr.Array, h5py.Dataset)."""

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


# ----------------------------------------------------------------------------- npy / npz


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
    """A C-ordered array inside a file, read by ``os.pread`` per row slice.

    Unlike ``np.memmap``, pages read this way are not mapped into the process, so they do
    not count towards its resident memory (RSS): the page cache holds them, not the worker.
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
        buf = bytearray(nbytes)
        view = memoryview(buf)
        got = 0
        while got < nbytes:
            k = os.preadv(self._fd, [view[got:]], self.offset + start * self.row_bytes + got)
            if k <= 0:
                raise DataError(f"{self.path}: unexpected end of file; the file is truncated")
            got += k
        out = np.frombuffer(buf, dtype=self.dtype).reshape((n,) + self.shape[1:])
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
    """Open the .npy array that starts at byte ``offset`` of ``path`` (pread; memmap if F-order)."""
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


def _open_npy(path: Path):
    try:
        return _npy_pread(path)
    except DataError as exc:
        raise DataError(f"npy input {path}: {exc}") from exc
    except Exception as exc:
        raise DataError(f"npy input {path}: bad .npy header or data ({describe_exc(exc)}); the file may be truncated or corrupt") from exc


def _npz_member(zf: zipfile.ZipFile, key: str | None, path: Path) -> tuple[str, str | None]:
    names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    if key is None:
        cands = [n for n in names if n not in ("ids", "obs_names", "row_ids")]
        if len(cands) == 1:
            key = cands[0]
        elif "X" in cands:
            key = "X"
        else:
            raise DataError(f"npz input {path}: holds arrays {names}; pass key= to choose one")
    if key not in names:
        raise DataError(f"npz input {path}: no array {key!r}; arrays: {names}")
    ids_key = next((k for k in ("ids", "obs_names", "row_ids") if k in names), None)
    return key, ids_key


def _open_npz(path: Path, key: str | None, spool_dir: Path) -> ArraySource:
    try:
        zf = zipfile.ZipFile(path)
        key, ids_key = _npz_member(zf, key, path)
        info = zf.getinfo(key + ".npy")
        ids = None
        if ids_key is not None:
            with zf.open(ids_key + ".npy") as f:
                ids = np.lib.format.read_array(f, allow_pickle=False).astype(str)
        if info.compress_type == zipfile.ZIP_STORED:
            # memory-map the member in place: local header is 30 bytes + name + extra
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                hdr = fh.read(30)
                if hdr[:4] != b"PK\x03\x04":
                    raise zipfile.BadZipFile("bad local file header")
                nlen, xlen = struct.unpack("<HH", hdr[26:30])
                data_off = info.header_offset + 30 + nlen + xlen
            if data_off + info.file_size > path.stat().st_size:
                raise DataError(f"npz input {path}: member {key!r} extends past the end of the "
                                "file; the file is truncated")
            arr = _npy_pread(path, data_off)
            zf.close()
            return ArraySource(arr, path, "npz", key=key, ids=ids)
        # compressed: stream once into a spool .npy
        spool_dir.mkdir(parents=True, exist_ok=True)
        spool = spool_dir / f"npz-{os.getpid()}-{id(zf)}.npy"
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = _read_header(f, version)
            if len(shape) not in (1, 2):
                raise DataError(f"npz input {path}: member {key!r} has shape {shape}; expected 2-D")
            total = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            with open(spool, "wb") as out:  # plain writes: no mapped pages in this process
                np.lib.format.write_array_header_2_0(
                    out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                          "shape": tuple(shape)})
                pos = 0
                while pos < total:
                    buf = f.read(min(16 << 20, total - pos))
                    if not buf:
                        raise DataError(f"npz input {path}: member {key!r} ends early; the file "
                                        "is truncated")
                    out.write(buf)
                    pos += len(buf)
        zf.close()
        return ArraySource(_npy_pread(spool), path, "npz", key=key, ids=ids, cleanup=[spool])
    except DataError as exc:
        if str(path) in str(exc):
            raise
        raise DataError(f"npz input {path} [{key}]: {exc}") from exc
    except Exception as exc:
        raise DataError(f"npz input {path}: cannot read ({describe_exc(exc)}); the file "
                        "may be truncated or corrupt") from exc


# ----------------------------------------------------------------------------- AnnData


class CSRSource(Source):
    """Row blocks of an on-disk CSR matrix (h5py/zarr group or numpy arrays)."""

    def __init__(self, data, indices, indptr: np.ndarray, shape, path: Path, fmt: str,
                 key: str, ids=None, obs=None, var=None, cleanup: Sequence[Path] = ()) -> None:
        self.data, self.indices = data, indices
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.n_rows, self.n_cols = int(shape[0]), int(shape[1])
        if self.indptr.shape != (self.n_rows + 1,):
            raise DataError(f"{fmt} input {path} [{key}]: indptr has length {self.indptr.size}, "
                            f"expected {self.n_rows + 1}; the file may be corrupt")
        self.path, self.format, self.key = Path(path), fmt, key
        self.ids, self.obs, self.var = ids, obs, var
        self._cleanup = list(cleanup)
        check_real(getattr(data, "dtype", np.float32), f"{fmt} input {path} [{key}]")

    def read(self, start: int, stop: int) -> np.ndarray:
        import scipy.sparse as sp

        a, b = int(self.indptr[start]), int(self.indptr[stop])
        try:
            data = np.asarray(self.data[a:b])
            if data.dtype.kind not in "fiub":
                raise TypeError(f"non-numeric values of dtype {data.dtype}")
            ind = np.asarray(self.indices[a:b])
        except Exception as exc:
            raise DataError(f"{self.format} input {self.path} [{self.key}]: reading rows "
                            f"[{start}, {stop}) failed ({describe_exc(exc)}); the file "
                            "may be truncated or corrupt") from exc
        if data.size != b - a or ind.size != b - a:
            raise DataError(f"{self.format} input {self.path} [{self.key}]: rows [{start}, {stop}) "
                            "are shorter than indptr says; the file is truncated or corrupt")
        m = sp.csr_matrix((data, ind, self.indptr[start:stop + 1] - a),
                          shape=(stop - start, self.n_cols))
        names = self.var.index.astype(str).tolist() if self.var is not None and \
            len(self.var) == self.n_cols else None
        ids = self.ids[start:stop] if self.ids is not None and len(self.ids) == self.n_rows else None
        return to_float32(m.toarray(), f"{self.format} input {self.path} [{self.key}]", start,
                          names, ids)

    def close(self) -> None:
        self._release(self.data, self.indices)
        self.data = self.indices = None


def _csc_to_csr_spool(g, shape, path: Path, key: str, spool_dir: Path, block_nnz: int = 1 << 23):
    """Out-of-core CSC -> CSR: count per-row nnz, then scatter column blocks into spool files."""
    n, d = int(shape[0]), int(shape[1])
    indptr_c = np.asarray(g["indptr"][:], dtype=np.int64)
    nnz = int(indptr_c[-1])
    counts = np.zeros(n, dtype=np.int64)
    # pass 1: row counts
    for a in range(0, nnz, block_nnz):
        b = min(nnz, a + block_nnz)
        counts += np.bincount(np.asarray(g["indices"][a:b]), minlength=n)[:n]
    indptr_r = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr_r[1:])
    spool_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{id(g)}"
    pd_ = spool_dir / f"csc2csr-data-{tag}.npy"
    pi_ = spool_dir / f"csc2csr-indices-{tag}.npy"
    data_r = np.lib.format.open_memmap(pd_, mode="w+", dtype=np.float32, shape=(max(nnz, 1),))
    ind_r = np.lib.format.open_memmap(pi_, mode="w+", dtype=np.int32, shape=(max(nnz, 1),))
    cursor = indptr_r[:-1].copy()
    # pass 2: whole columns per block, in column order -> each CSR row gets ascending columns
    col = 0
    while col < d:
        a = int(indptr_c[col])
        end_col = int(np.searchsorted(indptr_c, a + block_nnz, side="right")) - 1
        end_col = max(col + 1, min(d, end_col))
        b = int(indptr_c[end_col])
        rows = np.asarray(g["indices"][a:b], dtype=np.int64)
        vals = np.asarray(g["data"][a:b], dtype=np.float32)
        cols = np.repeat(np.arange(col, end_col, dtype=np.int32), np.diff(indptr_c[col:end_col + 1]))
        order = np.argsort(rows, kind="stable")
        rs = rows[order]
        uniq, first, cnt = np.unique(rs, return_index=True, return_counts=True)
        offs = np.arange(rs.size) - np.repeat(first, cnt)
        pos = cursor[rs] + offs
        data_r[pos] = vals[order]
        ind_r[pos] = cols[order]
        cursor[uniq] += cnt
        col = end_col
    data_r.flush(); ind_r.flush()
    del data_r, ind_r
    return (_npy_pread(pd_), _npy_pread(pi_), indptr_r, [pd_, pi_])


def _open_anndata(path: Path, fmt: str, key: str | None, spool_dir: Path) -> Source:
    from anndata.io import read_elem

    key = key or "X"
    if key != "X" and not key.startswith("layers/") and not key.startswith("obsm/"):
        key = f"layers/{key}"
    try:
        if fmt == "h5ad":
            import h5py

            root = h5py.File(path, "r")
        else:
            import zarr

            root = zarr.open_group(str(path), mode="r")
        obs = read_elem(root["obs"]) if "obs" in root else None
        var = read_elem(root["var"]) if "var" in root else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{fmt} input {path}: cannot open ({describe_exc(exc)}); the file "
                        "may be truncated or corrupt") from exc
    try:
        return _anndata_source(root, path, fmt, key, obs, var, spool_dir)
    except DataError:
        _close_quietly(root)
        raise
    except Exception as exc:
        _close_quietly(root)
        raise DataError(f"{fmt} input {path} [{key}]: cannot read ({describe_exc(exc)}); "
                        "the file may be truncated or corrupt") from exc


def _close_quietly(root) -> None:
    """Close an h5py file (zarr groups have nothing to close). Called while another error is
    being raised about the same file: a failure to close must not replace that error."""
    try:
        if hasattr(root, "close"):
            root.close()
    except Exception:  # noqa: BLE001 - the error being raised already names the file
        pass


def _anndata_source(root, path: Path, fmt: str, key: str, obs, var, spool_dir: Path) -> Source:
    """The Source of element ``key`` of an opened AnnData file (errors: see _open_anndata)."""
    import anndata
    import pandas as pd

    try:
        node = root[key]
    except KeyError:
        layers = list(root["layers"].keys()) if "layers" in root else []
        raise DataError(f"{fmt} input {path}: no element {key!r}; X and layers {layers}") from None

    if (obs is not None and not isinstance(obs, pd.DataFrame)) or \
            (var is not None and not isinstance(var, pd.DataFrame)):
        # files written by old anndata versions (structured arrays): let anndata convert them
        # (backed mode: obs/var in memory, X stays on disk)
        try:
            if fmt == "h5ad":
                ad = anndata.read_h5ad(path, backed="r")
                obs, var = ad.obs.copy(), ad.var.copy()
                ad.file.close()
            else:
                obs = pd.DataFrame(obs) if obs is not None else None
                var = pd.DataFrame(var) if var is not None else None
        except Exception as exc:
            raise DataError(f"{fmt} input {path}: cannot read obs/var ({describe_exc(exc)})") from exc
    ids = obs.index.astype(str).to_numpy() if obs is not None else None
    enc = node.attrs.get("encoding-type", None)
    if enc is None and "h5sparse_format" in node.attrs:  # old anndata sparse encoding
        old = node.attrs["h5sparse_format"]
        old = old.decode() if isinstance(old, bytes) else old
        enc = f"{old}_matrix"
        shape_attr = node.attrs["h5sparse_shape"]
    else:
        shape_attr = node.attrs.get("shape")
    enc = enc or "array"
    if isinstance(enc, bytes):
        enc = enc.decode()
    if enc in ("csr_matrix", "csc_matrix"):
        shape = tuple(int(s) for s in shape_attr)
        if enc == "csr_matrix":
            src = CSRSource(node["data"], node["indices"], node["indptr"][:], shape, path, fmt,
                            key, ids=ids, obs=obs, var=var)
            src._root = root
            return src
        data, ind, indptr, files = _csc_to_csr_spool(node, shape, path, key, spool_dir)
        src = CSRSource(data, ind, indptr, shape, path, fmt, key, ids=ids, obs=obs, var=var,
                        cleanup=files)
        src.converted_from = "csc_matrix"
        src._root = root
        return src
    if not hasattr(node, "shape"):
        raise DataError(f"{fmt} input {path}: element {key!r} has encoding {enc!r}; expected a "
                        "dense array or csr/csc matrix")
    src = ArraySource(node, path, fmt, key=key, ids=ids, obs=obs, var=var)
    src._root = root
    return src


# ----------------------------------------------------------------------------- zarr


def _open_zarr(path: Path, key: str | None, spool_dir: Path) -> Source:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise DataError(f"zarr input {path}: cannot open ({describe_exc(exc)})") from exc
    if isinstance(node, zarr.Group):
        if node.attrs.get("encoding-type") == "anndata":
            return _open_anndata(path, "anndata-zarr", key, spool_dir)
        if node.attrs.get("lmi_distributed_store_version") is not None and key and "/" not in key:
            key = f"matrices/{key}/X"
        if key is None:
            arrays = [k for k, _ in node.arrays()]
            if len(arrays) == 1:
                key = arrays[0]
            else:
                raise DataError(f"zarr input {path}: a group; pass key= to choose an array "
                                f"(arrays here: {arrays})")
        try:
            node = node[key]
        except KeyError:
            raise DataError(f"zarr input {path}: no array {key!r}") from None
        except Exception as exc:
            raise DataError(f"zarr input {path} [{key}]: cannot open ({describe_exc(exc)}); the store may be corrupt") from exc
    return ArraySource(node, path, "zarr", key=key)


# ----------------------------------------------------------------------------- tables


def _parse_vector_strings(vals: np.ndarray, what: str) -> np.ndarray:
    rows = []
    for i, v in enumerate(vals):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise DataError(f"{what}: row {i} has an empty vector")
        if isinstance(v, str):
            rows.append(np.array(v.strip().strip("[]").replace(",", " ").split(), dtype=np.float32))
        else:
            rows.append(np.asarray(v, dtype=np.float32))
    lens = {r.size for r in rows}
    if len(lens) > 1:
        raise DataError(f"{what}: vectors of different lengths {sorted(lens)[:5]}")
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


class _Spool:
    """Append float32 row blocks to a raw file; reopen as a memmap."""

    def __init__(self, spool_dir: Path, tag: str) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.path = spool_dir / f"{tag}-{os.getpid()}-{id(self)}.f32"
        self.f = open(self.path, "wb")
        self.n = 0
        self.d: int | None = None

    def add(self, block: np.ndarray, what: str) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.d is None:
            self.d = block.shape[1]
        elif block.shape[1] != self.d:
            raise DataError(f"{what}: vectors of length {block.shape[1]} after rows of length {self.d}")
        self.f.write(block.tobytes())
        self.n += block.shape[0]

    def finish(self) -> np.ndarray:
        self.f.close()
        if self.n == 0:
            return np.zeros((0, self.d or 1), dtype=np.float32)
        return PreadArray(self.path, 0, np.float32, (self.n, self.d))


def _split_columns(names: list[str], types: dict[str, str], id_column: str | None,
                   vector_columns, obs_columns, what: str):
    if id_column is not None and id_column not in names:
        raise DataError(f"{what}: unknown id column {id_column!r}; columns: {names[:20]}")
    if isinstance(vector_columns, str):
        vector_columns = [vector_columns]
    if vector_columns is None:
        lists = [c for c in names if types[c] == "list" and c != id_column]
        if len(lists) == 1:
            vector_columns = lists
        else:
            excl = set([id_column] + list(obs_columns or []))
            vector_columns = [c for c in names if types[c] == "num" and c not in excl]
            if not vector_columns:
                raise DataError(f"{what}: no numeric vector columns found; pass vector_columns "
                                f"(columns: {names[:20]})")
    miss = [c for c in vector_columns if c not in names]
    if miss:
        raise DataError(f"{what}: unknown vector column(s) {first_few(miss)}; columns: {names[:20]}")
    if obs_columns is None:
        obs_columns = [c for c in names if c not in vector_columns and c != id_column]
    else:
        miss = [c for c in obs_columns if c not in names]
        if miss:
            raise DataError(f"{what}: unknown obs column(s) {miss}; columns: {names[:20]}")
    return list(vector_columns), list(obs_columns)


STRAY_NUMERIC_FRACTION = 0.95  # a text column with at least this share of numbers is numeric


def _complex_str(v: str) -> bool:
    """True when ``v`` is the text of a complex number such as ``(1+2j)`` or ``3-1j``."""
    try:
        complex(v.strip().replace(" ", ""))
    except (ValueError, TypeError):
        return False
    return "j" in v.lower()


def _as_numbers(values, column: str, row0: int, what: str) -> np.ndarray:
    """One vector column's values as a numeric array; DataError naming the column and the
    first rows that hold text (or complex numbers) instead of real numbers."""
    import pandas as pd

    v = np.asarray(values)
    if v.dtype.kind == "c":
        check_real(v.dtype, f"{what}: column {column!r}")
    if v.dtype.kind in "fiub":
        return v
    s = pd.Series(v, dtype=object)
    num = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())
    if bad.size:
        vals = [s.iloc[i] for i in bad[:5]]
        if all(isinstance(x, str) and _complex_str(x) for x in vals):
            raise DataError(f"{what}: column {column!r} holds complex numbers (e.g. row "
                            f"{row0 + bad[0]}: {vals[0]!r}); the store keeps real float32 numbers "
                            "only: split real and imaginary parts into two columns")
        raise DataError(f"{what}: column {column!r} has {bad.size} non-numeric values in rows "
                        f"{first_few((bad + row0).tolist())}, values {first_few(vals)}; fix them "
                        "or leave the column out of vector_columns")
    return num.to_numpy(dtype=np.float64)


class _StrayCheck:
    """Auto-detect guard for tables: a text column that is mostly numbers is a mistake.

    When the user did not name the vector columns, a numeric column with a stray string
    (``"n/a"`` in row 57) is read as text and would silently become row metadata. Over all
    batches this counts, per text column, the non-null values that parse as numbers; at the end,
    a column with at least ``STRAY_NUMERIC_FRACTION`` (95 %) numbers but not all of them raises a
    DataError naming the column and the first rows that did not parse. A text column of complex
    numbers raises too. A column of text that all parses as numbers stays metadata (in Parquet
    its writer chose a text type; in CSV pandas already reads it as a number).
    """

    def __init__(self, columns: Sequence[str], what: str) -> None:
        self.what = what
        self.n = {c: 0 for c in columns}
        self.ok = {c: 0 for c in columns}
        self.bad: dict[str, list] = {c: [] for c in columns}
        self.maybe_complex = {c: True for c in columns}

    def add(self, frame, row0: int) -> None:
        import pandas as pd

        for c in self.n:
            s = frame[c]
            nn = s.notna().to_numpy()
            if not nn.any():
                continue
            text = s[nn].astype(str)
            num = pd.to_numeric(text.str.strip(), errors="coerce").notna().to_numpy()
            self.n[c] += int(nn.sum())
            self.ok[c] += int(num.sum())
            pos = np.flatnonzero(nn)[~num]
            for i in pos[:max(0, 5 - len(self.bad[c]))]:
                self.bad[c].append((row0 + int(i), s.iloc[int(i)]))
            if self.maybe_complex[c] and pos.size:
                self.maybe_complex[c] = all(_complex_str(str(s.iloc[int(i)])) for i in pos)

    def finish(self) -> None:
        for c, n in self.n.items():
            if not n or self.ok[c] == n:
                continue
            rows = [r for r, _ in self.bad[c]]
            vals = [v for _, v in self.bad[c]]
            if self.maybe_complex[c]:
                raise DataError(f"{self.what}: column {c!r} holds complex numbers (e.g. row "
                                f"{rows[0]}: {vals[0]!r}); the store keeps real float32 numbers "
                                "only: split real and imaginary parts into two columns")
            if self.ok[c] >= STRAY_NUMERIC_FRACTION * n:
                raise DataError(
                    f"{self.what}: column {c!r} looks numeric ({self.ok[c]} of {n} values are "
                    f"numbers) but {n - self.ok[c]} are not, in rows {first_few(rows)}: "
                    f"{first_few(vals)}; it would silently become row metadata instead of a "
                    "feature. Fix those values, or name the columns: vector_columns=[...] "
                    "(--vector-columns) and obs_columns=[...] (--obs-columns)")


def _spool_table(batches, path: Path, kind: str, what: str, spool_dir: Path,
                 check: "_StrayCheck | None" = None) -> "ArraySource":
    """Spool ``(block (rows, d) float32, ids (rows,) or None, obs DataFrame or None)`` batches of
    a table to a temporary .npy and wrap it as an :class:`ArraySource`. A read error removes the
    spool and becomes a :class:`DataError` naming the file; ``check.finish()`` runs at the end."""
    import pandas as pd

    spool = _Spool(spool_dir, kind)
    ids, obs_parts = [], []
    try:
        for block, id_chunk, obs_chunk in batches:
            spool.add(block, what)
            if id_chunk is not None:
                ids.append(id_chunk)
            if obs_chunk is not None:
                obs_parts.append(obs_chunk)
        if check is not None:
            check.finish()
    except DataError:
        spool.finish(); _rm(spool.path)
        raise
    except Exception as exc:
        spool.finish(); _rm(spool.path)
        raise DataError(f"{what}: reading failed ({describe_exc(exc)}); the file may be "
                        "truncated or corrupt") from exc
    arr = spool.finish()
    obs = pd.concat(obs_parts, ignore_index=True) if obs_parts else None
    return ArraySource(arr, path, kind, ids=np.concatenate(ids) if ids else None,
                       obs=obs, cleanup=[spool.path])


def _stray_columns(names, types, id_column, vector_columns, obs_columns, text_types) -> list[str]:
    """Text columns to guard in auto-detect mode (not named by the user as id or obs)."""
    if vector_columns is not None:
        return []
    named = set([id_column] + list(obs_columns or []))
    return [c for c in names if types[c] == "other" and c not in named and c in text_types]


def _parquet_types(schema) -> tuple[dict[str, str], set[str]]:
    import pyarrow as pa

    types, text = {}, set()
    for f in schema:
        t = f.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            types[f.name] = "list"
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            types[f.name] = "num"
        else:
            types[f.name] = "other"
            if pa.types.is_string(t) or pa.types.is_large_string(t) or \
                    (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)):
                text.add(f.name)
    return types, text


def _parquet_list_block(col, name: str, row0: int, what: str) -> np.ndarray:
    import pyarrow.compute as pc

    if col.null_count:
        bad = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False)) + row0
        raise DataError(f"{what}: {bad.size} rows have a null vector in column "
                        f"{name!r}; first rows: {first_few(bad)}")
    lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if lens.size and (lens != lens[0]).any():
        bad = np.flatnonzero(lens != lens[0]) + row0
        raise DataError(f"{what}: vectors in column {name!r} differ in length "
                        f"({lens[0]} vs {lens[lens != lens[0]][0]}); first rows: "
                        f"{first_few(bad)}")
    flat = _as_numbers(pc.list_flatten(col).to_numpy(zero_copy_only=False), name, row0, what)
    return flat.reshape(len(col), -1)


def _open_parquet(path: Path, id_column, vector_columns, obs_columns, spool_dir: Path) -> Source:
    """Parquet table: page checksums verified where the file has them, each row group's row
    count checked against the file metadata, decode errors named by file and row group."""
    import pyarrow.parquet as pq

    what = f"parquet input {path}"
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        meta = pf.metadata
        schema = pf.schema_arrow
    except Exception as exc:
        raise DataError(f"{what}: cannot read ({describe_exc(exc)}); the file may be "
                        "truncated or corrupt") from exc
    names = list(schema.names)
    types, text = _parquet_types(schema)
    vcols, ocols = _split_columns(names, types, id_column, vector_columns, obs_columns, what)
    check = _StrayCheck(_stray_columns(names, types, id_column, vector_columns, obs_columns,
                                       text), what)
    is_list = len(vcols) == 1 and types[vcols[0]] == "list"

    def convert(batch, row0: int):
        if is_list:
            block = _parquet_list_block(batch.column(vcols[0]), vcols[0], row0, what)
            cols = [f"{vcols[0]}[{j}]" for j in range(block.shape[1])]
        else:
            block = np.column_stack([
                _as_numbers(batch.column(c).to_numpy(zero_copy_only=False), c, row0, what)
                for c in vcols])
            cols = vcols
        ids = None if id_column is None else \
            batch.column(id_column).to_numpy(zero_copy_only=False).astype(str)
        if check.n:
            check.add(batch.select(list(check.n)).to_pandas(), row0)
        return (to_float32(block, what, row0, cols, ids), ids,
                batch.select(ocols).to_pandas() if ocols else None)

    def batches():
        row0 = 0
        for rg in range(pf.num_row_groups):
            expected = meta.row_group(rg).num_rows
            got = 0
            try:
                for batch in pf.iter_batches(batch_size=8192, row_groups=[rg]):
                    out = convert(batch, row0 + got)
                    got += len(batch)
                    yield out
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"{what}: row group {rg} (rows {row0}..{row0 + expected - 1}) "
                                f"cannot be decoded ({describe_exc(exc)}); the file is "
                                "corrupt or truncated") from exc
            if got != expected:
                raise DataError(f"{what}: row group {rg} gave {got} rows but the file metadata "
                                f"says {expected}; the file is corrupt")
            row0 += got
        if row0 != meta.num_rows:
            raise DataError(f"{what}: read {row0} rows but the file metadata says "
                            f"{meta.num_rows}; the file is corrupt")

    src = _spool_table(batches(), path, "parquet", what, spool_dir, check)
    src.key = ",".join(vcols) if len(vcols) <= 4 else f"{vcols[0]}..{vcols[-1]} ({len(vcols)} columns)"
    return src


def _csv_types(head) -> tuple[dict[str, str], set[str]]:
    import pandas as pd

    types, text = {}, set()
    for c in head.columns:
        s = head[c]
        if pd.api.types.is_numeric_dtype(s):
            types[str(c)] = "num"
        elif s.dtype == object and len(s.dropna()) and \
                s.dropna().astype(str).str.strip().str.startswith("[").all():
            types[str(c)] = "list"
        else:
            types[str(c)] = "other"
            if s.dtype == object:
                text.add(str(c))
    return types, text


def _open_csv(path: Path, sep: str, id_column, vector_columns, obs_columns, spool_dir: Path) -> Source:
    """CSV/TSV table, streamed in chunks; parse errors and text in vector columns are named by
    file, column and row."""
    import pandas as pd

    what = f"{'tsv' if sep == chr(9) else 'csv'} input {path}"
    try:
        head = pd.read_csv(path, sep=sep, nrows=50)
    except Exception as exc:
        raise DataError(f"{what}: cannot read ({describe_exc(exc)})") from exc
    names = [str(c) for c in head.columns]
    types, text = _csv_types(head)
    vcols, ocols = _split_columns(names, types, id_column, vector_columns, obs_columns, what)
    check = _StrayCheck(_stray_columns(names, types, id_column, vector_columns, obs_columns,
                                       text), what)
    dtypes = {c: str for c in set(ocols) | set(check.n)}
    if id_column is not None:
        dtypes[id_column] = str
    is_list = len(vcols) == 1 and types[vcols[0]] == "list"

    def convert(chunk, row0: int):
        if is_list:
            block = _parse_vector_strings(chunk[vcols[0]].to_numpy(), what)
            cols = [f"{vcols[0]}[{j}]" for j in range(block.shape[1])]
        else:
            block = np.column_stack([_as_numbers(chunk[c].to_numpy(), c, row0, what)
                                     for c in vcols])
            cols = vcols
        ids = None if id_column is None else chunk[id_column].astype(str).to_numpy()
        if check.n:
            check.add(chunk, row0)
        return (to_float32(block, what, row0, cols, ids), ids,
                chunk[ocols].reset_index(drop=True) if ocols else None)

    def batches():
        row0 = 0
        reader = pd.read_csv(path, sep=sep, chunksize=8192, dtype=dtypes)
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                return
            except Exception as exc:
                raise DataError(f"{what}: cannot parse the file after data row {row0} "
                                f"({describe_exc(exc)}); the file may be truncated or "
                                "corrupt") from exc
            yield convert(chunk, row0)
            row0 += len(chunk)

    return _spool_table(batches(), path, "csv" if sep == "," else "tsv", what, spool_dir, check)


def _rm(p: Path) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


# ----------------------------------------------------------------------------- dispatch


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
