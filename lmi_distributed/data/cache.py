"""Per-process LRU cache of decoded row chunks.

Each worker process (a Ray actor, a test, a CLI run) has one module-level cache. Keys are
``(matrix uid, chunk index)``; the uid is a random token written when a matrix is created,
so a matrix that is overwritten never serves stale chunks. Size is bounded in bytes
(default 256 MiB, or ``LMI_DATA_CACHE_MB`` in the environment; 0 disables caching).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Hashable

import numpy as np

__all__ = ["ChunkCache", "chunk_cache", "set_cache_bytes", "clear_cache"]


class ChunkCache:
    """A thread-safe, byte-bounded LRU mapping ``key -> read-only np.ndarray``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            arr = self._data.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key: Hashable, arr: np.ndarray) -> None:
        nbytes = int(arr.nbytes)
        if nbytes > self.max_bytes:
            return
        arr.flags.writeable = False
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= int(old.nbytes)
            self._data[key] = arr
            self._bytes += nbytes
            while self._bytes > self.max_bytes and self._data:
                _, ev = self._data.popitem(last=False)
                self._bytes -= int(ev.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = 0
            self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict:
        return {
            "entries": len(self._data),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }


def _default_bytes() -> int:
    try:
        mb = float(os.environ.get("LMI_DATA_CACHE_MB", "256"))
    except ValueError:
        mb = 256.0
    return int(mb * 2**20)


_CACHE = ChunkCache(_default_bytes())


def chunk_cache() -> ChunkCache:
    """The cache of this process."""
    return _CACHE


def set_cache_bytes(max_bytes: int) -> None:
    """Resize this process's chunk cache (bytes); 0 disables it. Evicts as needed."""
    _CACHE.max_bytes = int(max_bytes)
    with _CACHE._lock:
        while _CACHE._bytes > _CACHE.max_bytes and _CACHE._data:
            _, ev = _CACHE._data.popitem(last=False)
            _CACHE._bytes -= int(ev.nbytes)


def clear_cache() -> None:
    """Drop every cached chunk and reset the hit/miss counters."""
    _CACHE.clear()
