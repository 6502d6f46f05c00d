"""The dataset store: one Zarr v3 group per dataset holding named float32 matrices.

Layout (``<store>`` is a directory on shared storage)::

    <store>/zarr.json                 root group; attrs: lmi_distributed_store_version (major),
                                      lmi_distributed_store_minor, created_by, created_at
    <store>/matrices/zarr.json        group of matrices
    <store>/matrices/<name>/zarr.json matrix group; attrs: "lmi_distributed_matrix" (uid, shape,
                                      chunk_rows, shard_rows, chunk rule, complete) and
                                      "provenance" (source file, preprocessing steps + params)
    <store>/matrices/<name>/X/        float32 array (n_rows, n_features), chunked along rows
    <store>/matrices/<name>/obs.parquet  row metadata: column "__lmi_id__" (row ids) + obs columns
    <store>/matrices/<name>/var.parquet  optional feature metadata (gene names, HVG statistics)
    <store>/.staging/                 in-progress writes (never read)

Chunk rule (see :func:`chunk_layout`): features are never chunked; a chunk holds
``chunk_rows`` whole rows, the largest power of two with ``chunk_rows * n_features * 4`` at most
``chunk_bytes`` (default 128 KiB, at least one row; 32 rows of a 1024-d embedding). A matrix
with more than 64 chunks is sharded: a shard holds ``2**k`` chunks, about ``shard_bytes``
(default 16 MiB), so a 2 GB matrix is ~125 files instead of ~16000 while a random row still
decodes only one 128 KiB chunk. Small chunks because the workload is random-row gathers: a
gather pays one chunk decode per distinct chunk it touches (measured: 128 KiB chunks gather
random rows ~2x faster than 512 KiB, with the same contiguous-read speed).
Compression: Blosc(lz4, clevel 5, byte shuffle) -- float embeddings barely compress (~7%
with lz4 or zstd) and lz4 decodes 2-3x faster than zstd; "zstd" and "none" are options.

Writes are atomic per matrix: data goes to a staging directory that is renamed into place
only after every array, the metadata and the attrs are written; a fresh store is staged next to
its final path and renamed as a whole. A failed write leaves no matrix (and no store) behind.

A writer that is killed (SIGKILL, node loss) cannot clean up, so every staging directory holds
an owner file (``lmi_writer.json``: pid, host, start time). :func:`clean_stale_staging` -- run by
:func:`open_store` (the store's ``.staging/``) and by every write (also the sibling
``.<store>.staging-*`` / ``.<store>.spool-*`` directories) -- removes an entry when its owner is
provably gone: same host and the pid is not running; or, when the owner is on another host or
the owner file is missing, when it is older than :data:`STALE_STAGING_SECONDS` (24 h; no ingest
comes close). ``trash-*`` entries (an overwritten matrix on its way out) are always removed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .gather import gather_rows
from .validation import DataError, check_finite, check_name, first_few

__all__ = [
    "STORE_VERSION",
    "STORE_MINOR",
    "Layout",
    "chunk_layout",
    "Store",
    "MatrixHandle",
    "MatrixWriter",
    "open_store",
    "write_matrix",
    "ID_COLUMN",
    "clean_stale_staging",
    "provenance_digest",
    "matrix_identity",
    "STALE_STAGING_SECONDS",
]

STORE_VERSION = 1  # major: readers refuse other majors
STORE_MINOR = 0
ID_COLUMN = "__lmi_id__"
FEATURE_COLUMN = "__lmi_feature__"
_ROOT_KEY = "lmi_distributed_store_version"
_MATRIX_KEY = "lmi_distributed_matrix"

OWNER_FILE = "lmi_writer.json"
STALE_STAGING_SECONDS = 24 * 3600  # staging owned by another host (or unowned) older than this

DEFAULT_CHUNK_BYTES = 128 * 1024
DEFAULT_SHARD_BYTES = 16 * 2**20
MIN_CHUNKS_FOR_SHARDS = 64
CHUNK_RULE = (
    "chunk_rows = largest power of two with chunk_rows*n_features*4 <= chunk_bytes (>=1, <= n_rows); "
    "features unchunked; shard (2**k chunks, ~shard_bytes) when the matrix has > 64 chunks"
)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("lmi_distributed")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _pow2_floor(x: float) -> int:
    return 1 if x < 2 else 2 ** int(math.floor(math.log2(x)))


@dataclass(frozen=True)
class Layout:
    """Storage layout of one matrix: chunk and shard heights in rows, and the write block."""

    chunk_rows: int
    shard_rows: int | None
    block_rows: int  # rows per write task: one shard, or a chunk multiple ~ block_bytes


def chunk_layout(
    n_rows: int,
    n_cols: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    block_bytes: int = DEFAULT_SHARD_BYTES,
) -> Layout:
    """Apply the chunk rule (module docstring) to a float32 matrix of shape (n_rows, n_cols)."""
    row_bytes = max(1, n_cols) * 4
    cr = _pow2_floor(chunk_bytes / row_bytes)
    cr = max(1, min(cr, max(1, n_rows)))
    n_chunks = math.ceil(max(1, n_rows) / cr)
    shard_rows = None
    if n_chunks > MIN_CHUNKS_FOR_SHARDS:
        k = _pow2_floor(shard_bytes / (cr * row_bytes))
        if k > 1:
            shard_rows = cr * k
    if shard_rows is not None:
        block_rows = shard_rows
    else:
        block_rows = cr * _pow2_floor(block_bytes / (cr * row_bytes))
        block_rows = min(block_rows, cr * n_chunks)
    return Layout(chunk_rows=cr, shard_rows=shard_rows, block_rows=block_rows)


def _compressors(name: str):
    from zarr.codecs import BloscCodec

    if name == "zstd":
        return [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", typesize=4)]
    if name in ("lz4", "default"):
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=4)]
    if name == "none":
        return None
    raise DataError(f"unknown compressor {name!r}; use 'zstd', 'lz4' or 'none'")


def _jsonable(obj: Any) -> Any:
    """Convert provenance values (numpy scalars/arrays, Paths, tuples) to JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _root_attrs(path: Path) -> dict:
    zj = path / "zarr.json"
    if not path.exists():
        raise DataError(f"no store at {path}: the path does not exist")
    if not zj.is_file():
        raise DataError(f"{path} is not an lmi_distributed store (no zarr.json)")
    try:
        meta = _read_json(zj)
    except (OSError, ValueError) as exc:
        raise DataError(f"store {path}: cannot read zarr.json ({exc})") from exc
    attrs = meta.get("attributes", {}) or {}
    if meta.get("zarr_format") != 3 or _ROOT_KEY not in attrs:
        raise DataError(
            f"{path} is not an lmi_distributed store (no '{_ROOT_KEY}' attribute in a "
            "Zarr v3 group)"
        )
    return attrs


def _check_version(path: Path, attrs: dict) -> None:
    found = attrs.get(_ROOT_KEY)
    if found != STORE_VERSION:
        raise DataError(
            f"store {path} was written with store format version {found} "
            f"(by {attrs.get('created_by', 'unknown')}); this lmi_distributed "
            f"({_package_version()}) reads version {STORE_VERSION}. Re-ingest the data "
            "or use a matching lmi_distributed."
        )


class MatrixHandle:
    """A read-only view of one stored matrix. Cheap to create; picklable (by path + name).

    Attributes: ``shape`` (n_rows, n_features), ``ids`` (np.ndarray of str, row ids),
    ``obs`` (pd.DataFrame, row metadata indexed by id), ``var`` (feature metadata or None),
    ``provenance`` (dict).
    """

    def __init__(self, store_path: Path, name: str, attrs: dict) -> None:
        self.store_path = Path(store_path)
        self.name = name
        self._attrs = attrs
        info = attrs[_MATRIX_KEY]
        self.uid: str = info["uid"]
        self.shape: tuple[int, int] = (int(info["shape"][0]), int(info["shape"][1]))
        self.chunk_rows: int = int(info["chunk_rows"])
        self.shard_rows: int | None = info.get("shard_rows")
        self._array = None
        self._reader = None
        self._obs = None
        self._var = None
        self._id_index = None

    def __reduce__(self):
        return (_reopen_matrix, (str(self.store_path), self.name))

    def __repr__(self) -> str:
        return f"MatrixHandle({str(self.store_path)!r}, {self.name!r}, shape={self.shape})"

    @property
    def path(self) -> Path:
        return self.store_path / "matrices" / self.name

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_features(self) -> int:
        return self.shape[1]

    @property
    def provenance(self) -> dict:
        return dict(self._attrs.get("provenance", {}))

    @property
    def info(self) -> dict:
        return dict(self._attrs[_MATRIX_KEY])

    def identity(self) -> dict:
        """What identifies this matrix's data: ``{"uid", "shape", "provenance_digest"}``.

        ``uid`` is new for every write (a re-ingest or overwrite of the same name gets a new
        one); ``provenance_digest`` is :func:`provenance_digest` of the stored provenance. JSON
        types only, so a study fingerprint can hash it.
        """
        return {"uid": self.uid, "shape": [int(self.shape[0]), int(self.shape[1])],
                "provenance_digest": provenance_digest(self.provenance)}

    @property
    def array(self):
        """The underlying zarr.Array (opened read-only on first use)."""
        if self._array is None:
            import zarr

            try:
                self._array = zarr.open_array(str(self.path / "X"), mode="r")
            except Exception as exc:
                raise DataError(f"matrix {self.name!r} in store {self.store_path}: cannot open "
                                f"its array ({exc}); the store may be corrupt") from exc
        return self._array

    @property
    def obs(self):
        """Row metadata (pd.DataFrame, index = row ids, named 'id')."""
        if self._obs is None:
            import pandas as pd

            p = self.path / "obs.parquet"
            try:
                df = pd.read_parquet(p)
            except Exception as exc:
                raise DataError(f"matrix {self.name!r}: cannot read {p} ({exc})") from exc
            if len(df) != self.n_rows:
                raise DataError(f"matrix {self.name!r}: {p} has {len(df)} rows, expected "
                                f"{self.n_rows}; the store may be corrupt")
            df.index = pd.Index(df.pop(ID_COLUMN).astype(str), name="id")
            self._obs = df
        return self._obs

    @property
    def ids(self) -> np.ndarray:
        return self.obs.index.to_numpy(dtype=str)

    @property
    def var(self):
        """Feature metadata (pd.DataFrame) or None when the matrix has none."""
        if self._var is None:
            import pandas as pd

            p = self.path / "var.parquet"
            if not p.exists():
                return None
            df = pd.read_parquet(p)
            if FEATURE_COLUMN in df.columns:
                df.index = pd.Index(df.pop(FEATURE_COLUMN).astype(str), name="feature")
            self._var = df
        return self._var

    def id_index(self):
        """pandas Index of row ids (for id -> row lookups)."""
        if self._id_index is None:
            self._id_index = self.obs.index
        return self._id_index

    def rows_for_ids(self, ids: Sequence[str], what: str | None = None) -> np.ndarray:
        """Row indices (int64) of ``ids`` in this matrix, in the given order.

        Raises DataError with the count and first few ids that are missing, or when the
        matrix's row ids are not unique.
        """
        idx = self.id_index()
        where = what or f"matrix {self.name!r}"
        if not idx.is_unique:
            dup = idx[idx.duplicated()].unique()
            raise DataError(f"{where}: row ids are not unique ({len(dup)} duplicated, e.g. "
                            f"{first_few(dup)}); cannot select rows by id")
        ids = np.asarray(ids, dtype=str)
        pos = idx.get_indexer(ids)
        if (pos < 0).any():
            miss = ids[pos < 0]
            raise DataError(f"{where}: {miss.size} of {ids.size} ids not found in matrix "
                            f"{self.name!r}; first missing: {first_few(miss)}")
        return pos.astype(np.int64)

    def _read_slice(self, lo: int, hi: int) -> np.ndarray:
        try:
            return self.array[lo:hi]
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"matrix {self.name!r} in store {self.store_path}: reading rows "
                            f"[{lo}, {hi}) failed ({type(exc).__name__}: {exc}); the store may "
                            "be corrupt") from exc

    def _chunk_reader(self):
        if self._reader is None:
            from .chunkio import ChunkReader

            r = ChunkReader.open(self.path / "X")
            ok = r is not None and r.chunk_rows == self.chunk_rows and \
                (r.n_rows, r.n_cols) == self.shape
            self._reader = r if ok else False
        return self._reader or None

    def read_rows(self, rows: Any, columns: tuple[int, int] | None = None) -> np.ndarray:
        """Rows ``rows`` (any order, duplicates allowed) as float32 ``(len(rows), d)``.

        ``columns=(start, stop)`` returns only that column block. Chunk-aware: each chunk is
        decoded once per call and kept in the per-process LRU cache.
        """
        return gather_rows(
            self._read_slice,
            rows,
            n_rows=self.n_rows,
            n_cols=self.n_features,
            chunk_rows=self.chunk_rows,
            uid=self.uid,
            columns=columns,
            what=f"matrix {self.name!r}",
            read_chunk=self._read_chunk if self._chunk_reader() is not None else None,
        )

    def _read_chunk(self, c: int) -> np.ndarray:
        try:
            return self._reader.read_chunk(c)
        except DataError as exc:
            raise DataError(f"matrix {self.name!r} in store {self.store_path}: {exc}") from exc
        except Exception as exc:
            raise DataError(f"matrix {self.name!r} in store {self.store_path}: reading chunk {c} "
                            f"failed ({type(exc).__name__}: {exc}); the store may be corrupt") from exc

    def read_all(self) -> np.ndarray:
        """The whole matrix (n_rows, n_features) float32; for small matrices only."""
        return np.asarray(self.array[:], dtype=np.float32)


def _reopen_matrix(store_path: str, name: str) -> MatrixHandle:
    return open_store(store_path).matrix(name)


class Store:
    """A read-only handle to a dataset store. Cheap to open; pickles by path."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()
        self.attrs = _root_attrs(self.path)
        _check_version(self.path, self.attrs)
        self._handles: dict[str, MatrixHandle] = {}
        clean_stale_staging(self.path, siblings=False)

    def __reduce__(self):
        return (open_store, (str(self.path),))

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, matrices={self.matrix_names})"

    @property
    def version(self) -> tuple[int, int]:
        return (int(self.attrs[_ROOT_KEY]), int(self.attrs.get("lmi_distributed_store_minor", 0)))

    @property
    def matrix_names(self) -> list[str]:
        """Names of the complete matrices in the store, sorted."""
        mdir = self.path / "matrices"
        if not mdir.is_dir():
            return []
        names = []
        for p in sorted(mdir.iterdir()):
            if p.name.startswith(".") or not (p / "zarr.json").is_file():
                continue
            try:
                attrs = _read_json(p / "zarr.json").get("attributes", {})
            except (OSError, ValueError):
                continue
            if attrs.get(_MATRIX_KEY, {}).get("complete"):
                names.append(p.name)
        return names

    def __contains__(self, name: str) -> bool:
        return name in self.matrix_names

    def matrix(self, name: str) -> MatrixHandle:
        """The handle of matrix ``name``; DataError listing the available names if unknown."""
        h = self._handles.get(name)
        if h is not None:
            return h
        p = self.path / "matrices" / str(name)
        attrs = None
        if (p / "zarr.json").is_file() and not str(name).startswith("."):
            try:
                attrs = _read_json(p / "zarr.json").get("attributes", {})
            except (OSError, ValueError) as exc:
                raise DataError(f"store {self.path}: matrix {name!r} metadata unreadable ({exc})")
        if not attrs or not attrs.get(_MATRIX_KEY, {}).get("complete"):
            raise DataError(f"store {self.path}: unknown matrix {name!r}; available: "
                            f"{self.matrix_names}")
        h = MatrixHandle(self.path, name, attrs)
        self._handles[name] = h
        return h

    def provenance(self, name: str) -> dict:
        """Provenance of a matrix: source file, format, preprocessing steps and parameters."""
        return self.matrix(name).provenance


def open_store(path: str | os.PathLike) -> Store:
    """Open a store read-only. Raises DataError if missing, not a store, or another major version.

    Also removes stale ``.staging`` debris of killed writers (see :func:`clean_stale_staging`).
    """
    return Store(path)


def provenance_digest(provenance: Mapping[str, Any] | None) -> str:
    """A stable SHA-256 hex digest of a provenance dict (JSON with sorted keys)."""
    text = json.dumps(_jsonable(dict(provenance or {})), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def matrix_identity(store: "Store | str | os.PathLike", name: str) -> dict:
    """``open_store(store).matrix(name).identity()``: uid, shape and provenance digest."""
    st = store if isinstance(store, Store) else open_store(store)
    return st.matrix(name).identity()


# --------------------------------------------------------------------------- staging debris


def _write_owner(directory: Path) -> None:
    """Mark ``directory`` as being written by this process (see the module docstring)."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (directory / OWNER_FILE).write_text(json.dumps(info))


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def _is_stale(entry: Path, now: float, max_age: float) -> bool:
    """True when staging ``entry`` belongs to no live writer (rule in the module docstring)."""
    if entry.name.startswith("trash-"):
        return True
    marker = entry / OWNER_FILE
    try:
        info = json.loads(marker.read_text())
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        info = None
    if info is not None and host == socket.gethostname():
        return not _pid_running(pid)
    try:
        age = now - (marker if info is not None else entry).stat().st_mtime
    except OSError:
        return False
    return age > max_age


def clean_stale_staging(
    store_path: str | os.PathLike,
    *,
    siblings: bool = True,
    max_age: float = STALE_STAGING_SECONDS,
) -> list[Path]:
    """Remove staging debris of killed writers of the store at ``store_path``; best effort.

    Looks at ``<store>/.staging/*`` and, with ``siblings``, at ``.<store>.staging-*`` and
    ``.<store>.spool-*`` beside the store. Returns the removed paths. Never raises (a read-only
    store is left as it is).
    """
    store = Path(store_path)
    now = time.time()
    cands: list[Path] = []
    try:
        if (store / ".staging").is_dir():
            cands += list((store / ".staging").iterdir())
        if siblings and store.parent.is_dir():
            pre = (f".{store.name}.staging-", f".{store.name}.spool-")
            cands += [p for p in store.parent.iterdir() if p.name.startswith(pre)]
    except OSError:
        return []
    removed = []
    for entry in cands:
        if entry.is_dir() and _is_stale(entry, now, max_age):
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    try:
        (store / ".staging").rmdir()  # only when empty
    except OSError:
        pass
    return removed


# --------------------------------------------------------------------------- writing


class MatrixWriter:
    """Stage one matrix for a store and publish it atomically.

    Usage::

        with MatrixWriter(store_path, name, n_rows, n_cols) as w:
            w.array[a:b] = block            # zarr array, layout w.layout
            w.finish(ids=..., obs=..., provenance=...)

    If the block raises, or ``finish`` is never called, the staging directory is removed and
    the store is left as it was (a new store is not created at all).
    """

    def __init__(
        self,
        store_path: str | os.PathLike,
        name: str,
        n_rows: int,
        n_cols: int,
        *,
        overwrite: bool = False,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        block_bytes: int = DEFAULT_SHARD_BYTES,
        compressor: str = "lz4",
    ) -> None:
        import zarr

        check_name(name)
        if n_rows < 0 or n_cols < 1:
            raise DataError(f"matrix {name!r}: invalid shape ({n_rows}, {n_cols})")
        self.store_path = Path(store_path).resolve()
        self.name = name
        self.shape = (int(n_rows), int(n_cols))
        self.overwrite = overwrite
        self.layout = chunk_layout(n_rows, n_cols, chunk_bytes=chunk_bytes,
                                   shard_bytes=shard_bytes, block_bytes=block_bytes)
        self.uid = uuid.uuid4().hex
        self._finished = False
        token = uuid.uuid4().hex[:12]
        clean_stale_staging(self.store_path)
        empty_dir = self.store_path.is_dir() and not any(self.store_path.iterdir())
        if self.store_path.exists() and not empty_dir:
            attrs = _root_attrs(self.store_path)
            _check_version(self.store_path, attrs)
            if (self.store_path / "matrices" / name).exists() and not overwrite:
                raise DataError(f"store {self.store_path}: matrix {name!r} already exists "
                                "(pass overwrite=True / --overwrite to replace it)")
            self.new_store = False
            self.stage_root = self.store_path / ".staging" / token
            self.stage_root.mkdir(parents=True)
            _write_owner(self.stage_root)
            self.matrix_dir = self.stage_root / name
        else:
            self.new_store = True
            self.store_path.parent.mkdir(parents=True, exist_ok=True)
            self.stage_root = self.store_path.parent / f".{self.store_path.name}.staging-{token}"
            root = zarr.open_group(
                str(self.stage_root), mode="w",
                attributes={_ROOT_KEY: STORE_VERSION, "lmi_distributed_store_minor": STORE_MINOR,
                            "created_by": f"lmi_distributed {_package_version()}",
                            "created_at": _now()},
            )
            root.create_group("matrices")
            _write_owner(self.stage_root)
            self.matrix_dir = self.stage_root / "matrices" / name
        try:
            self.group = zarr.open_group(
                str(self.matrix_dir), mode="w",
                attributes={_MATRIX_KEY: {"uid": self.uid, "complete": False}},
            )
            lay = self.layout
            self.array = self.group.create_array(
                "X",
                shape=self.shape,
                dtype="float32",
                chunks=(lay.chunk_rows, n_cols),
                shards=None if lay.shard_rows is None else (lay.shard_rows, n_cols),
                compressors=_compressors(compressor),
                fill_value=0.0,
            )
        except Exception:
            self.abort()
            raise
        self.compressor = compressor

    def __enter__(self) -> "MatrixWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._finished:
            self.abort()

    def abort(self) -> None:
        """Remove everything staged; the store is unchanged."""
        shutil.rmtree(self.stage_root, ignore_errors=True)
        if not self.new_store:
            try:
                (self.store_path / ".staging").rmdir()
            except OSError:
                pass

    def finish(
        self,
        *,
        ids: Sequence[str] | np.ndarray | None = None,
        obs=None,
        var=None,
        provenance: Mapping[str, Any] | None = None,
        extra_files: Mapping[str, Any] | None = None,
    ) -> MatrixHandle:
        """Write row ids / obs / var and attrs, then publish the matrix (atomic rename)."""
        import pandas as pd
        import zarr

        n = self.shape[0]
        obs_df = _make_obs(n, ids, obs, f"matrix {self.name!r}")
        obs_df.to_parquet(self.matrix_dir / "obs.parquet", index=False)
        if var is not None:
            vdf = pd.DataFrame(var).copy()
            if len(vdf) != self.shape[1]:
                raise DataError(f"matrix {self.name!r}: var has {len(vdf)} rows, the matrix "
                                f"has {self.shape[1]} features")
            names = vdf.index.astype(str).to_numpy()
            vdf = vdf.reset_index(drop=True)
            vdf.insert(0, FEATURE_COLUMN, names)
            vdf = _parquet_safe(vdf)
            vdf.to_parquet(self.matrix_dir / "var.parquet", index=False)
        for fname, df in (extra_files or {}).items():
            _parquet_safe(pd.DataFrame(df)).to_parquet(self.matrix_dir / fname, index=False)
        lay = self.layout
        info = {
            "uid": self.uid,
            "shape": list(self.shape),
            "dtype": "float32",
            "chunk_rows": lay.chunk_rows,
            "shard_rows": lay.shard_rows,
            "chunk_rule": CHUNK_RULE,
            "compressor": self.compressor,
            "created_at": _now(),
            "created_by": f"lmi_distributed {_package_version()}",
            "complete": True,
        }
        prov = _jsonable(dict(provenance or {}))
        g = zarr.open_group(str(self.matrix_dir), mode="r+")
        g.attrs.put({_MATRIX_KEY: info, "provenance": prov})
        self._publish()
        self._finished = True
        return open_store(self.store_path).matrix(self.name)

    def _publish(self) -> None:
        final = self.store_path / "matrices" / self.name
        if self.new_store:
            try:
                (self.stage_root / OWNER_FILE).unlink(missing_ok=True)
                os.rename(self.stage_root, self.store_path)
                return
            except OSError:
                if not self.store_path.exists():
                    raise
                # another writer created the store meanwhile: fall through and add our matrix
                src = self.matrix_dir
        else:
            src = self.matrix_dir
        trash = None
        if final.exists():
            if not self.overwrite:
                raise DataError(f"store {self.store_path}: matrix {self.name!r} already exists")
            trash = self.store_path / ".staging" / f"trash-{uuid.uuid4().hex[:12]}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, trash)
        os.rename(src, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.stage_root, ignore_errors=True)
        try:
            (self.store_path / ".staging").rmdir()
        except OSError:
            pass


def _parquet_safe(df):
    """Make object columns parquet-writable (mixed types -> str)."""
    import pandas as pd
    import pyarrow as pa

    df = df.copy()
    for c in df.columns:
        s = df[c]
        if s.dtype == object:
            try:
                pa.array(s, from_pandas=True)
            except (pa.ArrowException, TypeError, ValueError):   # mixed types Parquet cannot hold: keep as text
                df[c] = s.astype(str)
        elif isinstance(s.dtype, pd.CategoricalDtype) and s.cat.categories.dtype == object:
            try:
                pa.array(s.cat.categories, from_pandas=True)
            except (pa.ArrowException, TypeError, ValueError):   # mixed-type categories: keep as text
                df[c] = s.astype(str).astype("category")
    df.columns = [str(c) for c in df.columns]
    return df


def _make_obs(n: int, ids, obs, what: str):
    """Build the obs table written to obs.parquet: id column + obs columns, length n."""
    import pandas as pd

    if obs is not None:
        odf = pd.DataFrame(obs).copy()
        if len(odf) != n:
            raise DataError(f"{what}: obs has {len(odf)} rows, the matrix has {n}")
    else:
        odf = pd.DataFrame(index=pd.RangeIndex(n))
    if ids is None:
        if obs is not None and not isinstance(odf.index, pd.RangeIndex):
            ids = odf.index.astype(str).to_numpy()
        else:
            ids = np.arange(n).astype(str)
    ids = np.asarray(ids).astype(str)
    if ids.shape != (n,):
        raise DataError(f"{what}: {ids.shape[0] if ids.ndim else 0} ids for {n} rows")
    if ID_COLUMN in odf.columns:
        raise DataError(f"{what}: obs column name {ID_COLUMN!r} is reserved")
    odf = odf.reset_index(drop=True)
    odf.insert(0, ID_COLUMN, ids)
    return _parquet_safe(odf)


def write_matrix(
    path: str | os.PathLike,
    name: str,
    array: np.ndarray,
    ids: Sequence[str] | np.ndarray | None = None,
    obs=None,
    provenance: Mapping[str, Any] | None = None,
    *,
    var=None,
    overwrite: bool = False,
    on_nonfinite: str = "error",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    compressor: str = "lz4",
) -> MatrixHandle:
    """Write an in-memory (n, d) array as matrix ``name`` of the store at ``path``.

    Creates the store if needed. ``ids`` (n,) row ids (default: obs index if it is not a
    RangeIndex, else "0".."n-1"); ``obs`` row metadata (DataFrame, n rows); ``provenance``
    free-form JSON-able dict. Values are stored as float32. ``on_nonfinite``: "error"
    (default: DataError naming the rows with NaN/inf) or "allow".
    """
    a = np.asarray(array)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataError(f"matrix {name!r}: expected a 2-D array, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DataError(f"matrix {name!r}: expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if on_nonfinite == "error":
        check_finite(a, f"matrix {name!r} (write_matrix)")
    elif on_nonfinite != "allow":
        raise DataError(f"on_nonfinite must be 'error' or 'allow', got {on_nonfinite!r}")
    prov = {"source": {"format": "in-memory array", "dtype": str(np.asarray(array).dtype)},
            "preprocessing": []}
    prov.update(dict(provenance or {}))
    with MatrixWriter(path, name, a.shape[0], a.shape[1], overwrite=overwrite,
                      chunk_bytes=chunk_bytes, shard_bytes=shard_bytes,
                      compressor=compressor) as w:
        step = w.layout.block_rows
        for s in range(0, a.shape[0], step):
            w.array[s:s + step] = a[s:s + step]
        return w.finish(ids=ids, obs=obs, var=var, provenance=prov)
