"""Chunk-aware gathers of arbitrary rows from a row-chunked 2-D Zarr array.

A gather of rows ``r`` (any order, duplicates allowed):

1. maps each row to its chunk ``r // chunk_rows`` and takes the sorted unique chunks;
2. serves chunks found in the per-process LRU cache (:mod:`.cache`);
3. coalesces the missing chunks into runs of consecutive chunk indices (at most
   ``max_run_chunks`` per run) and reads each run with one contiguous Zarr slice; runs are
   read concurrently by a small thread pool (decompression releases the GIL);
4. scatters the rows of each run into the output (in the requested order) as soon as the
   run is decoded, then drops it: memory is the output, the cache and a bounded read-ahead
   of (max_workers + 2) runs, however many chunks the gather touches.

Each chunk is decoded once per gather, however many requested rows it holds.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from .cache import ChunkCache, chunk_cache
from .validation import DataError, first_few

__all__ = ["gather_rows", "coalesce_runs", "as_row_index"]


def as_row_index(rows: Any, n_rows: int, what: str) -> np.ndarray:
    """Validate and convert row indices to a 1-D int64 array in [0, n_rows)."""
    r = np.asarray(rows)
    if r.ndim != 1:
        r = r.reshape(-1) if r.ndim == 0 else r
        if r.ndim != 1:
            raise DataError(f"{what}: row indices must be 1-D, got shape {r.shape}")
    if r.size == 0:
        return np.zeros(0, dtype=np.int64)
    if r.dtype == bool:
        raise DataError(f"{what}: row indices must be integers, got a boolean mask")
    if not np.issubdtype(r.dtype, np.integer):
        if np.issubdtype(r.dtype, np.floating) and np.all(np.mod(r, 1) == 0):
            r = r.astype(np.int64)
        else:
            raise DataError(f"{what}: row indices must be integers, got dtype {r.dtype}")
    r = r.astype(np.int64, copy=False)
    bad = (r < 0) | (r >= n_rows)
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} row indices outside [0, {n_rows}); "
            f"first: {first_few(r[bad])}"
        )
    return r


def coalesce_runs(chunks: np.ndarray, max_run: int) -> list[tuple[int, int]]:
    """Split sorted unique chunk indices into runs ``[first, last]`` of consecutive chunks.

    >>> coalesce_runs(np.array([0, 1, 2, 5, 7, 8]), 2)
    [(0, 1), (2, 2), (5, 5), (7, 8)]
    """
    runs: list[tuple[int, int]] = []
    if len(chunks) == 0:
        return runs
    breaks = np.flatnonzero(np.diff(chunks) != 1) + 1
    for seg in np.split(chunks, breaks):
        s = int(seg[0])
        e = int(seg[-1])
        while s <= e:
            t = min(e, s + max_run - 1)
            runs.append((s, t))
            s = t + 1
    return runs


def gather_rows(
    read_slice: Callable[[int, int], np.ndarray],
    rows: np.ndarray,
    *,
    n_rows: int,
    n_cols: int,
    chunk_rows: int,
    uid: str,
    columns: tuple[int, int] | None = None,
    cache: ChunkCache | None = None,
    max_run_chunks: int = 8,
    max_workers: int = 4,
    what: str = "matrix",
    read_chunk: Callable[[int], np.ndarray] | None = None,
) -> np.ndarray:
    """Gather ``rows`` of a row-chunked matrix; returns float32 ``(len(rows), n_out_cols)``.

    ``read_slice(start, stop)`` returns rows ``[start, stop)`` (all columns) as an array;
    ``read_chunk(c)``, when given, returns chunk ``c`` directly (see :mod:`.chunkio`) and is
    used instead of slicing;
    ``chunk_rows`` is the storage chunk height; ``uid`` keys the cache; ``columns`` selects
    the column block ``[start, stop)`` of the output.
    """
    rows = as_row_index(rows, n_rows, what)
    c0, c1 = (0, n_cols) if columns is None else (int(columns[0]), int(columns[1]))
    if not (0 <= c0 < c1 <= n_cols):
        raise DataError(f"{what}: column block [{c0}, {c1}) outside [0, {n_cols})")
    out = np.empty((rows.size, c1 - c0), dtype=np.float32)
    if rows.size == 0:
        return out
    cache = chunk_cache() if cache is None else cache
    use_cache = cache.max_bytes > 0

    order = np.argsort(rows, kind="stable")
    srows = rows[order]
    schunks = srows // chunk_rows
    uniq, starts = np.unique(schunks, return_index=True)
    ends = np.append(starts[1:], srows.size)

    # position of each unique chunk's requested rows in the sorted order
    seg = {c: (s, e) for c, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist())}
    full = c0 == 0 and c1 == n_cols

    def scatter(c: int, chunk: np.ndarray) -> None:
        s, e = seg[c]
        local = srows[s:e] - c * chunk_rows
        out[order[s:e]] = chunk[local] if full else chunk[local, c0:c1]

    missing: list[int] = []
    for c in uniq.tolist():
        arr = cache.get((uid, c)) if use_cache else None
        if arr is None:
            missing.append(c)
        else:
            scatter(c, arr)

    def fetch(run: tuple[int, int]) -> tuple[int, np.ndarray]:
        a, b = run
        if read_chunk is not None:
            return a, [read_chunk(c) for c in range(a, b + 1)]
        lo, hi = a * chunk_rows, min((b + 1) * chunk_rows, n_rows)
        block = np.asarray(read_slice(lo, hi), dtype=np.float32)
        if block.shape != (hi - lo, n_cols):
            raise DataError(
                f"{what}: storage returned shape {block.shape} for rows [{lo}, {hi}), "
                f"expected {(hi - lo, n_cols)}; the store may be corrupt"
            )
        return a, block

    def consume(a: int, block) -> None:
        # scatter the run's rows now and drop the run: memory stays ~ output + a few runs
        if isinstance(block, list):  # per-chunk reads
            for i, part in enumerate(block):
                if a + i in seg:
                    scatter(a + i, part)
                    if use_cache:
                        cache.put((uid, a + i), part)
            return
        n_in_run = -(-block.shape[0] // chunk_rows)
        for i in range(n_in_run):
            c = a + i
            if c not in seg:
                continue
            part = block[i * chunk_rows:(i + 1) * chunk_rows]
            scatter(c, part)
            if use_cache:
                cache.put((uid, c), part.copy() if n_in_run > 1 else part)

    runs = coalesce_runs(np.asarray(missing, dtype=np.int64), max_run_chunks)
    if len(runs) == 1 or max_workers <= 1:
        for r in runs:
            consume(*fetch(r))
    elif runs:
        window = max_workers + 2  # bounded read-ahead
        with ThreadPoolExecutor(max_workers=min(max_workers, len(runs))) as ex:
            pending = deque()
            it = iter(runs)
            for r in it:
                pending.append(ex.submit(fetch, r))
                if len(pending) >= window:
                    break
            while pending:
                consume(*pending.popleft().result())
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(ex.submit(fetch, nxt))
    return out
