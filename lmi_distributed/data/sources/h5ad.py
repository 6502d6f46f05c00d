"""AnnData input (``.h5ad`` through h5py, AnnData Zarr through zarr): ``X``, ``layers/<name>``
or ``obsm/<name>``; ``obs``/``var`` are read with ``anndata.io.read_elem`` (metadata only).

* dense: an :class:`.base.ArraySource` over the h5py dataset / zarr array, sliced by rows;
* CSR: :class:`CSRSource` reads ``indptr`` once and the ``data``/``indices`` ranges of each
  row block, densified to float32;
* CSC: first converted out of core to an on-disk CSR spool (two passes over column blocks),
  then read as CSR with ``os.preadv``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..validation import DataError, check_real, describe_exc, to_float32
from .base import ArraySource, Source, _close_quietly, _npy_pread


class CSRSource(Source):
    """Row blocks of an on-disk CSR matrix of ``shape`` ``(n_rows, n_cols)``.

    ``data``/``indices`` are sliceable 1-D arrays (h5py datasets, zarr arrays, or
    :class:`.base.PreadArray` spools of a converted CSC matrix); ``indptr`` is read into memory
    as int64 ``(n_rows + 1,)``. ``read(start, stop)`` densifies the block to float32
    ``(stop - start, n_cols)``.
    """

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
    """Out-of-core CSC -> CSR: count per-row nnz, then scatter column blocks into spool files.

    Returns ``(data, indices, indptr, files)``: ``data`` a float32 and ``indices`` an int32
    :class:`.base.PreadArray` of length ``max(nnz, 1)``, ``indptr`` an in-memory int64 array
    ``(n_rows + 1,)``, and ``files`` the two spool ``.npy`` paths (written through
    ``np.lib.format.open_memmap``, read back with pread) for the caller to remove.
    """
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
    """Element ``key`` (``X``, ``layers/<name>``, ``obsm/<name>``; a bare name means a layer) of
    an AnnData file: an :class:`.base.ArraySource` (dense) or :class:`CSRSource` (CSR / CSC),
    with ``ids`` = obs names (str array) and ``obs``/``var`` DataFrames. The open h5py file /
    zarr group is closed by the Source's ``close()``."""
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

