"""Direct chunk reader for the Zarr v3 arrays this package writes.

``zarr`` costs about a millisecond of Python/async overhead per call, which dominates random
row gathers (a gather decodes one chunk per distinct chunk touched). For the exact layouts
that :class:`.store.MatrixWriter` produces -- a 2-D float32 array with row chunks, codecs
``bytes(little) -> blosc|none``, optionally inside ``sharding_indexed`` with the index at the
end (``bytes(little) -> crc32c``) -- this module reads a chunk with one ``os.pread`` of its
bytes (plus one of the shard index, cached) and one Blosc decompression, about 10x less
overhead. Any other layout (or a metadata surprise) returns ``None`` from
:meth:`ChunkReader.open` and the caller falls back to zarr. Output equals zarr's.

Kept instead of zarr's own reader because ``jobs/benchmark_readers.py`` measured zarr slower for
our access pattern (docs/benchmarks.md, "Hand-written readers vs libraries"): on a 50k x 1024
lz4-sharded matrix, a cold gather of 2000 random rows took 0.56 s here vs 3.9 s through zarr
slices per chunk and 1.6 s through ``Array.oindex``; 64 single-chunk reads 6 ms vs 236 ms.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from .validation import DataError

__all__ = ["ChunkReader"]

_EMPTY = np.uint64(2**64 - 1)


def _inner_codecs_ok(codecs: list) -> str | None:
    """'blosc' / 'none' when codecs are [bytes(little)] (+ [blosc]); else None."""
    if not codecs or codecs[0].get("name") != "bytes":
        return None
    if (codecs[0].get("configuration") or {}).get("endian", "little") != "little":
        return None
    if len(codecs) == 1:
        return "none"
    if len(codecs) == 2 and codecs[1].get("name") == "blosc":
        return "blosc"
    return None


class ChunkReader:
    """Reads whole row chunks (trimmed to the matrix) of one array directory."""

    def __init__(self, path: Path, shape, chunk_rows: int, shard_rows: int | None,
                 compression: str, fill_value: float) -> None:
        self.path = Path(path)
        self.n_rows, self.n_cols = int(shape[0]), int(shape[1])
        self.chunk_rows = int(chunk_rows)
        self.shard_rows = shard_rows
        self.per_shard = (shard_rows // chunk_rows) if shard_rows else 1
        self.compression = compression
        self.fill_value = fill_value
        self._index: dict[int, np.ndarray | None] = {}
        self._lock = threading.Lock()
        if compression == "blosc":
            from numcodecs import blosc

            self._decompress = blosc.decompress
        else:
            self._decompress = None

    @classmethod
    def open(cls, array_dir: str | os.PathLike) -> "ChunkReader | None":
        p = Path(array_dir)
        try:
            meta = json.loads((p / "zarr.json").read_text())
            if meta.get("zarr_format") != 3 or meta.get("data_type") != "float32":
                return None
            shape = meta["shape"]
            if len(shape) != 2:
                return None
            kenc = meta.get("chunk_key_encoding", {})
            if kenc.get("name") != "default" or (kenc.get("configuration") or {}).get("separator", "/") != "/":
                return None
            if meta.get("storage_transformers"):
                return None
            outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
            if outer[1] != shape[1]:
                return None
            fill = float(meta.get("fill_value", 0.0))
            codecs = meta["codecs"]
            if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
                cfg = codecs[0]["configuration"]
                inner = cfg["chunk_shape"]
                if inner[1] != shape[1] or outer[0] % inner[0]:
                    return None
                if cfg.get("index_location", "end") != "end":
                    return None
                ic = [c.get("name") for c in cfg.get("index_codecs", [])]
                if ic not in (["bytes", "crc32c"], ["bytes"]):
                    return None
                comp = _inner_codecs_ok(cfg["codecs"])
                if comp is None:
                    return None
                r = cls(p, shape, inner[0], outer[0], comp, fill)
                r._index_has_crc = ic == ["bytes", "crc32c"]
                return r
            comp = _inner_codecs_ok(codecs)
            if comp is None:
                return None
            return cls(p, shape, outer[0], None, comp, fill)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    # -- reading

    def _file(self, outer: int) -> Path:
        return self.path / "c" / str(outer) / "0"

    def _decode(self, raw: bytes, c: int) -> np.ndarray:
        try:
            buf = self._decompress(raw) if self._decompress is not None else raw
            a = np.frombuffer(buf, dtype="<f4")
            a = a.reshape(self.chunk_rows, self.n_cols)
        except Exception as exc:
            raise DataError(f"{self.path}: chunk {c} cannot be decoded ({type(exc).__name__}: "
                            f"{exc}); the store may be corrupt") from exc
        return a

    def _fill(self) -> np.ndarray:
        return np.full((self.chunk_rows, self.n_cols), self.fill_value, dtype=np.float32)

    def _shard_index(self, s: int) -> np.ndarray | None:
        with self._lock:
            if s in self._index:
                return self._index[s]
        f = self._file(s)
        k = self.per_shard
        tail = 16 * k + (4 if self._index_has_crc else 0)
        try:
            fd = os.open(f, os.O_RDONLY)
        except FileNotFoundError:
            idx = None
        else:
            try:
                size = os.fstat(fd).st_size
                if size < tail:
                    raise DataError(f"{f}: shard is shorter than its index; the store is corrupt")
                raw = os.pread(fd, tail, size - tail)
            finally:
                os.close(fd)
            idx = np.frombuffer(raw[:16 * k], dtype="<u8").reshape(k, 2)
            used = idx[:, 0] != _EMPTY
            if used.any() and int((idx[used, 0] + idx[used, 1]).max()) > size - tail:
                raise DataError(f"{f}: shard index points past the end of the file; the store is "
                                "corrupt")
            if self._index_has_crc:
                self._check_crc(raw, f)
        with self._lock:
            self._index[s] = idx
        return idx

    @staticmethod
    def _check_crc(raw: bytes, f: Path) -> None:
        try:
            from numcodecs.checksum32 import CRC32C
        except ImportError:  # pragma: no cover
            return
        try:
            CRC32C(location="end").decode(raw)
        except Exception as exc:
            raise DataError(f"{f}: shard index checksum mismatch ({exc}); the store is corrupt") from exc

    def read_chunk(self, c: int) -> np.ndarray:
        """Rows ``[c*chunk_rows, min((c+1)*chunk_rows, n_rows))``, float32 (read-only view)."""
        valid = min(self.chunk_rows, self.n_rows - c * self.chunk_rows)
        if self.shard_rows is None:
            f = self._file(c)
            try:
                raw = f.read_bytes()
            except FileNotFoundError:
                return self._fill()[:valid]
            return self._decode(raw, c)[:valid]
        s, j = divmod(c, self.per_shard)
        idx = self._shard_index(s)
        if idx is None or idx[j, 0] == _EMPTY:
            return self._fill()[:valid]
        off, nb = int(idx[j, 0]), int(idx[j, 1])
        fd = os.open(self._file(s), os.O_RDONLY)
        try:
            raw = os.pread(fd, nb, off)
        finally:
            os.close(fd)
        if len(raw) != nb:
            raise DataError(f"{self._file(s)}: chunk {c} is truncated; the store is corrupt")
        return self._decode(raw, c)[:valid]
