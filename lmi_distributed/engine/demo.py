"""The demo study's data: a Gaussian Markov chain of T variables with known pairwise MI.

``build_demo_store`` writes matrices ``X0 .. X{T-1}`` (n, d) to a Zarr store and the true
pairwise MI (bits) to a JSON file (``{"pairs": {"X0~X1": bits, ...}, "matrix": ...}``) that the
aggregation and the report read (``data.truth`` in the study config).

``ensure_demo_store`` is what a run calls: it builds the store when missing and rebuilds it
when the store's provenance (which records the generator's parameters) does not match
``data.demo`` (the data is synthetic, so rebuilding is safe); a store at that path that is not a
demo store is never touched.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

_SOURCE = "lmi_distributed.synthetic.gaussian_markov_chain"
_PARAMS = ("n", "t", "k", "d", "rho", "seed")

import numpy as np

__all__ = ["build_demo_store", "demo_truth", "ensure_demo_store", "demo_mismatch"]


def demo_truth(t: int, truth: np.ndarray) -> dict[str, Any]:
    names = [f"X{i}" for i in range(t)]
    pairs = {f"{names[i]}~{names[j]}": float(truth[i, j]) for i in range(t) for j in range(t) if i != j}
    mat = [[None if not np.isfinite(truth[i, j]) else float(truth[i, j]) for j in range(t)] for i in range(t)]
    return {"units": "bits", "variables": names, "pairs": pairs, "matrix": mat}


def build_demo_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None) -> Path:
    """Write the Gaussian Markov chain ``demo`` (config.DemoData) to ``store_path``; returns it.

    Written to a temporary sibling and renamed into place, so a half-written store never exists.
    """
    from lmi_distributed.data import write_matrix
    from lmi_distributed.engine.synthetic_store import write_atomically, write_truth
    from lmi_distributed.synthetic import gaussian_markov_chain

    variables, truth = gaussian_markov_chain(demo.n, demo.t, demo.k, demo.d, demo.rho, demo.seed)
    ids = [f"s{i}" for i in range(demo.n)]
    prov = {"source": _SOURCE, **{k: getattr(demo, k) for k in ("n", "t", "k", "d", "rho", "seed")}}

    def write(tmp: Path) -> None:
        for i, v in enumerate(variables):
            write_matrix(str(tmp), f"X{i}", np.asarray(v, dtype=np.float32), ids=ids, provenance=prov)

    final = write_atomically(store_path, write)
    write_truth(final, truth_path, demo_truth(demo.t, truth))
    return final


def demo_mismatch(store_path: str | os.PathLike, demo) -> str | None:
    """Why the store at ``store_path`` is not the demo store of ``demo``; None when it is.

    Raises ConfigError when the store is not a demo store at all (never rebuilt over real data)."""
    from lmi_distributed.data import open_store
    from lmi_distributed.errors import ConfigError

    try:
        store = open_store(str(store_path))
        names = store.matrix_names
        provs = {m: store.matrix(m).provenance for m in names}
    except Exception as exc:  # noqa: BLE001 - an unreadable demo store: rebuild it
        return f"it cannot be read ({type(exc).__name__}: {exc})"
    if not provs or any(p.get("source") != _SOURCE for p in provs.values()):
        raise ConfigError(f"data.store: {store_path} exists and is not a demo store (its matrices were not written "
                          "by the demo generator); remove data.demo or choose another data.store")
    want = {k: getattr(demo, k) for k in _PARAMS}
    expected = [f"X{i}" for i in range(demo.t)]
    if sorted(names) != sorted(expected):
        return f"it holds matrices {names}, data.demo asks for {expected}"
    for m, p in provs.items():
        have = {k: p.get(k) for k in _PARAMS}
        if have != want:
            diff = ", ".join(f"{k} {have[k]} -> {want[k]}" for k in _PARAMS if have[k] != want[k])
            return f"it was generated with other parameters ({diff})"
    return None


def ensure_demo_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None, *,
                      create: bool = True, log: Callable[[str], None] = print) -> bool:
    """Build the demo store when missing, rebuild it when ``demo``'s parameters changed; one log line.

    Returns True when it (re)built the store. ``create=False``: ConfigError instead of building."""
    if demo.kind == "lineage":  # kind: lineage (engine/lineage.py)
        from lmi_distributed.engine.lineage import ensure_lineage_store
        return ensure_lineage_store(store_path, demo, truth_path=truth_path, create=create, log=log)
    if demo.kind == "proteome":  # the interaction workflow's synthetic proteome
        from lmi_distributed.engine.interaction import ensure_proteome_store

        return ensure_proteome_store(store_path, demo, truth_path, create=create, log=log)
    from lmi_distributed.engine.synthetic_store import ensure_built

    return ensure_built(store_path, mismatch=lambda p: demo_mismatch(p, demo),
                        build=lambda p: build_demo_store(p, demo, truth_path=truth_path), label="demo store",
                        describe=f"Gaussian Markov chain, {demo.model_dump()}", create=create, log=log)
