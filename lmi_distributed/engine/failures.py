"""Records of tasks whose batch failed for good (kept apart from the finished tasks).

A batch given up by the engine (``max_batch_attempts`` tries, or one deterministic error) writes
one record per task to ``<output>/failed/failed-<batch_id>.parquet``: the task's columns, ``mi``
NaN, ``status`` "failed", ``detail`` (the error's one-line summary) and ``attempt`` (tries - 1).
These files are not ``tasks/part-*.parquet`` parts, so ``ResultStore.finished_keys()`` does not
count them: the next ``run`` retries the tasks, and a batch that then succeeds removes its
failure record. Writes are atomic (temporary name + ``os.replace``).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

from lmi_distributed.engine.planner import Batch

__all__ = ["write_failed", "clear_failed", "read_failed", "FAILED_DIR"]

FAILED_DIR = "failed"


def _path(out_dir: str | os.PathLike, batch_id: str) -> Path:
    return Path(out_dir) / FAILED_DIR / f"failed-{batch_id}.parquet"


def write_failed(out_dir: str | os.PathLike, batch: Batch, attempts: int, detail: str) -> Path:
    """Write one ``status="failed"`` record per task of ``batch``; returns the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"key": t.key, "pair": t.pair, "x": t.x, "y": t.y, "replicate": t.replicate, "kind": t.kind,
             "shuffle": t.shuffle, "seed": t.seed, "n": int(batch.shape[0]), "mi": float("nan"),
             "batch_id": batch.batch_id, "attempt": int(attempts) - 1, "status": "failed", "detail": detail}
            for t in batch.tasks]
    final = _path(out_dir, batch.batch_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, final)
    return final


def clear_failed(out_dir: str | os.PathLike, batch_ids: Iterable[str] | None = None) -> None:
    """Remove the failure records of ``batch_ids`` (all when None)."""
    d = Path(out_dir) / FAILED_DIR
    if not d.exists():
        return
    if batch_ids is None:
        targets = list(d.glob("failed-*.parquet"))
    else:
        targets = [_path(out_dir, b) for b in batch_ids]
    for p in targets:
        p.unlink(missing_ok=True)


def read_failed(out_dir: str | os.PathLike, finished: set[str] | None = None):
    """Failure records (pandas DataFrame, sorted by key), without keys in ``finished``."""
    import pandas as pd
    import pyarrow.parquet as pq

    d = Path(out_dir) / FAILED_DIR
    frames = [pq.read_table(p).to_pandas() for p in sorted(d.glob("failed-*.parquet"))] if d.exists() else []
    if not frames:
        return pd.DataFrame(columns=["key", "status", "detail"])
    df = pd.concat(frames, ignore_index=True).drop_duplicates(subset="key", keep="last")
    if finished:
        df = df[~df["key"].isin(finished)]
    return df.sort_values("key", kind="stable").reset_index(drop=True)
