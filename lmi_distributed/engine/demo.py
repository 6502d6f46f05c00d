"""The demo study's data: a Gaussian Markov chain of T variables with known pairwise MI.

``build_demo_store`` writes matrices ``X0 .. X{T-1}`` (n, d) to a Zarr store and the true
pairwise MI (bits) to a JSON file (``{"pairs": {"X0~X1": bits, ...}, "matrix": ...}``) that the
aggregation and the report read (``data.truth`` in the study config).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_demo_store", "demo_truth"]


def demo_truth(t: int, truth: np.ndarray) -> dict[str, Any]:
    names = [f"X{i}" for i in range(t)]
    pairs = {f"{names[i]}~{names[j]}": float(truth[i, j]) for i in range(t) for j in range(t) if i != j}
    mat = [[None if not np.isfinite(truth[i, j]) else float(truth[i, j]) for j in range(t)] for i in range(t)]
    return {"units": "bits", "variables": names, "pairs": pairs, "matrix": mat}


def build_demo_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None) -> Path:
    """Write the Gaussian Markov chain ``demo`` (config.DemoData) to ``store_path``; returns it.

    Written to a temporary sibling and renamed into place, so a half-written store never exists.
    """
    import shutil
    import uuid

    from lmi_distributed.data import write_matrix
    from lmi_distributed.synthetic import gaussian_markov_chain

    final = Path(store_path).expanduser().resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:8]}-{final.name}"
    variables, truth = gaussian_markov_chain(demo.n, demo.t, demo.k, demo.d, demo.rho, demo.seed)
    ids = [f"s{i}" for i in range(demo.n)]
    for i, v in enumerate(variables):
        write_matrix(str(tmp), f"X{i}", np.asarray(v, dtype=np.float32), ids=ids,
                     provenance={"source": "lmi_distributed.synthetic.gaussian_markov_chain",
                                 **{k: getattr(demo, k) for k in ("n", "t", "k", "d", "rho", "seed")}})
    try:
        os.replace(tmp, final)
    except OSError:  # someone else built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    tp = Path(truth_path).expanduser() if truth_path else final.parent / "truth.json"
    tp.parent.mkdir(parents=True, exist_ok=True)
    tp.write_text(json.dumps(demo_truth(demo.t, truth), indent=2))
    return final
