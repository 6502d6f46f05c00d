"""The work of one batch, without Ray: read rows, train the batch, KSG/pMI, nulls, write results.

``execute_batch`` is what a Ray worker actor calls after pinning its device; it runs the same in a
plain Python process (unit tests, a GPU box without Ray). It must not import ray.

Per task (see ``planner.Task``):
1. the pairing of (pair, replicate) from ``pairing_seed`` (shared by the replicate's tasks);
2. rows read from the store (``data.read_pair``); a shuffle task permutes Y's rows with
   ``shuffle_seed`` (the paper's null: the network is trained anew on the shuffled pairs);
3. all tasks of the batch trained as one batched model (``estimate_many``, seed per task);
4. observed tasks: ``latent_permutation_null`` on the held-out latents (``perm_seed``);
5. pMI (bits) written to the store, then the batch's records as one atomic Parquet part,
   stamped with the study fingerprint computed from the data this process read
   (``data_identity``), so a part computed from other data is recognised on every read.
Each record carries the estimator's ``status``/``detail`` ("ok"/"" for a number to trust; a
non-ok task has NaN ``mi`` and an all-NaN latent null).
Returns the records (MI in bits, epochs, null draws); pMI arrays never travel back. What a Ray
worker ships to the driver is smaller still: ``run_batch`` returns a :class:`BatchReceipt` (keys,
status counts, timing), because the driver reads the records back from the Parquet part.
"""
from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.planner import Batch, Task
from lmi_distributed.engine.results import ResultStore
from lmi_distributed.estimators.seeding import shuffle_permutation
from lmi_distributed.engine.study_data import (batch_fingerprint, open_store_cached, pairing_spec,
                                               resolve_variables)

__all__ = ["execute_batch", "run_batch", "BatchReceipt"]


def _estimate_many(pairs, seeds, settings, ids=None):
    """The batch's estimates; a bad or degenerate pair becomes a flagged result (its status goes
    into the task record) instead of failing its batch mates, so its warning is not repeated.
    ``ids``: per task (x_ids, y_ids) of the paired rows, for ``estimator.split: ids``."""
    import warnings

    from lmi_distributed.errors import LMIWarning
    from lmi_distributed.estimators.api import estimate_many

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LMIWarning)
        return estimate_many(pairs, seeds=list(seeds), settings=settings, validate=False, ids=ids)


def _null_backend(backend: str, device: str) -> str:
    """KSG backend for the latent nulls: the CuPy kernels on a GPU worker (``auto``), else as set."""
    if backend == "auto" and device.startswith("cuda"):
        from lmi_distributed.estimators import device as gpu

        return "cupy" if gpu.cupy_usable() else "auto"
    return backend


def _status(res: Any) -> str:
    """The estimator's status of a task ("ok" when the result carries none)."""
    return str(getattr(res, "status", "ok") or "ok")


def _task_mi(res: Any) -> float:
    """The task's MI (bits): NaN whenever the estimator's status is not ok (never a number to trust)."""
    return float(res.mi) if _status(res) == "ok" else float("nan")


def _view_record(res: Any) -> dict[str, Any]:
    """The task table's view columns: which held-out estimate ``mi`` is ("latents" / "canonical"),
    both estimates in bits and the KSG bias subtracted from the canonical view's
    (:mod:`lmi_distributed.estimators.canonical`); "" and NaN when the task is not ok."""
    nan = float("nan")
    if _status(res) != "ok":
        return {"view": "", "mi_latents": nan, "mi_canonical": nan, "canonical_bias": nan}
    return {"view": str(getattr(res, "view", "latents")), "mi_latents": float(getattr(res, "mi_latents", nan)),
            "mi_canonical": float(getattr(res, "mi_canonical", nan)),
            "canonical_bias": float(getattr(res, "canonical_bias", 0.0))}


def execute_batch(
    batch: Batch,
    cfg: StudyConfig,
    store_path: str,
    out_dir: str,
    *,
    device: str = "cpu",
    variables: Mapping[str, Any] | None = None,
    worker: str | None = None,
    attempt: int = 0,
    write: bool = True,
    on_trained: Callable[[], None] | None = None,
) -> list[dict]:
    """Run one batch: returns one record per task (MI in bits); writes pMI + a Parquet part.

    ``store_path``/``out_dir``: absolute paths visible from this process. ``device``: torch
    device for training ("cpu", "cuda", "cuda:0"). ``variables``: resolved ``data.Variable``s
    by name (resolved here when omitted). ``on_trained``: test hook called after training.
    """
    from lmi_distributed.data import make_pairing, read_pair

    t0 = time.perf_counter()
    tasks: list[Task] = list(batch.tasks)
    if not tasks:
        return []
    if tasks[0].kind == "split":  # kind interaction: held-out prediction (engine/interaction.py)
        from lmi_distributed.engine.interaction import execute_split_batch

        return execute_split_batch(batch, cfg, store_path, out_dir, device=device, variables=variables,
                                   worker=worker, attempt=attempt, write=write, on_trained=on_trained)
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    store = open_store_cached(store_path)
    needed = sorted({t.x for t in tasks} | {t.y for t in tasks})
    if variables is None or any(n not in variables for n in needed):
        variables = resolve_variables(cfg, store_path, needed)
    pspec = pairing_spec(cfg)
    results_store = ResultStore(out_dir, fingerprint=batch_fingerprint(cfg, store) if write else None)

    cache: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray, Any]] = {}
    arrays: list[tuple[np.ndarray, np.ndarray]] = []
    rows: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    for t in tasks:
        ck = (t.x, t.y, t.replicate)
        if ck not in cache:
            vx, vy = variables[t.x], variables[t.y]
            pairing = make_pairing(store, vx, vy, pspec, t.pairing_seed)
            X, Y = read_pair(store, vx, vy, pairing)
            cache[ck] = (np.asarray(X), np.asarray(Y), pairing)
        X, Y, pairing = cache[ck]
        x_rows, y_rows = pairing.x_rows, pairing.y_rows
        if t.kind == "shuffle":
            perm = shuffle_permutation(Y.shape[0], t.shuffle_seed)
            Y = Y[perm]
            y_rows = np.asarray(y_rows)[perm]
        arrays.append((X, Y))
        rows.append((x_rows, y_rows))
    t_read = time.perf_counter()

    settings = cfg.estimator_settings(device)
    ids = None
    if settings.split == "ids":   # held-out ids: the row ids of the paired rows, per task
        ids = [(store.matrix(variables[t.x].matrix).ids[np.asarray(xr)],
                store.matrix(variables[t.y].matrix).ids[np.asarray(yr)]) for t, (xr, yr) in zip(tasks, rows)]
    results = _estimate_many(arrays, [t.seed for t in tasks], settings, ids)
    if on_trained is not None:
        on_trained()
    t_train = time.perf_counter()

    null_backend = _null_backend(cfg.estimator.ksg_backend, device)
    records: list[dict] = []
    for t, res, (x_rows, y_rows), (X, _) in zip(tasks, results, rows, arrays):
        null = np.zeros(0)
        test = np.asarray(res.test_idx)
        if t.kind == "observed" and t.n_latent_permutations > 0:
            from lmi_distributed.estimators.permutation import result_latent_null

            null = np.asarray(result_latent_null(res, n_permutations=t.n_latent_permutations,
                                                 seed=t.perm_seed, backend=null_backend), dtype=np.float64)
        save = cfg.output.save_pmi
        if write and (save == "all" or (save == "observed" and t.kind == "observed")):
            results_store.write_pmi(t.key, np.asarray(res.pmi), x_rows, y_rows)
        if write:   # estimator.attribution: the task's R^2 per dimension, before its part
            from lmi_distributed.engine.attribution import save_task_attribution
            save_task_attribution(results_store, t, res)
        records.append({
            "key": t.key, "pair": t.pair, "x": t.x, "y": t.y, "replicate": t.replicate,
            "kind": t.kind, "shuffle": t.shuffle, "seed": t.seed, "n": int(X.shape[0]),
            "n_test": int(test.size), "mi": _task_mi(res), "epochs": int(res.epochs),
            "best_epoch": int(res.best_epoch), "latent_null": null.tolist(),
            "batch_id": batch.batch_id, "worker": worker, "device": device, "attempt": int(attempt),
            "status": _status(res), "detail": str(getattr(res, "detail", "") or ""),
            **_view_record(res),
        })
    t_end = time.perf_counter()
    timing = {"read_s": t_read - t0, "train_s": t_train - t_read, "null_s": t_end - t_train}
    for r in records:
        r["wall_s"] = (t_end - t0) / len(records)
    if write:
        part = results_store.write_part(batch.batch_id, records)
        timing["write_s"] = time.perf_counter() - t_end
        timing["part"] = str(part) if part else ""
    for r in records:
        r["_timing"] = timing
    return records


@dataclass(frozen=True)
class BatchReceipt:
    """What a worker ships back to the driver for a finished batch: no arrays, no per-task rows.

    The driver needs only progress and timing; the records themselves are in the batch's Parquet
    part (read back by ``ResultStore.read_tasks`` at aggregation), so shipping them too would send
    every null draw twice. ``statuses``: task count per estimator status. ``timing``: seconds
    spent reading, training, computing nulls and writing (``read_s``, ``train_s``, ``null_s``,
    ``write_s``) and the part's path.
    """

    batch_id: str
    keys: tuple[str, ...]
    statuses: dict[str, int] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return len(self.keys)

    @classmethod
    def of(cls, batch_id: str, records: list[dict]) -> "BatchReceipt":
        return cls(batch_id=batch_id, keys=tuple(r["key"] for r in records),
                   statuses=dict(Counter(str(r.get("status", "ok")) for r in records)),
                   timing=dict(records[0].get("_timing", {})) if records else {})


def run_batch(batch: Batch, cfg: StudyConfig, store_path: str, out_dir: str, *, device: str = "cpu",
              variables: Mapping[str, Any] | None = None, worker: str | None = None,
              attempt: int = 0) -> BatchReceipt:
    """What a worker actor runs: ``execute_batch`` (writing its results), then only a receipt back."""
    records = execute_batch(batch, cfg, store_path, out_dir, device=device, variables=variables,
                            worker=worker, attempt=attempt, write=True)
    return BatchReceipt.of(batch.batch_id, records)
