"""Attribution outputs of a study (paper A.2.3), when ``estimator.attribution: true``.

Workers: :func:`save_task_attribution` writes each observed task's held-out R^2 per dimension
(``LMIResult.r2_x`` / ``r2_y``, see :mod:`lmi_distributed.estimators.attribution`) next to its
pMI (``ResultStore.write_attribution``: atomic, keyed by task, digests + study fingerprint), before
the batch's Parquet part, so a task counted as finished always has its arrays.

Aggregation: :func:`attribution_table` reads them for the current plan and writes one row per
(pair, side, dimension) -- :data:`ATTRIBUTION_COLUMNS`: ``side`` "x" (how much of X's dimension is
explained by the latent of Y, decoder D_YX) or "y" (D_XY), ``variable`` the variable of that side,
``dim`` the column index within the variable, ``feature`` its name when the store has feature
names (``var.parquet``), ``r2`` the mean over replicates (unitless, at most 1), ``sem`` its
standard error (NaN with one replicate), ``rank`` 1 = best explained within (pair, side).

Trust: a pair whose status is not "ok" (pairs.parquet), or whose arrays are missing or damaged,
has NaN ``r2``/``sem``/``rank`` and that status in ``status``; a dimension constant on some
replicate's held-out rows has NaN ``r2`` (nothing to explain) and no rank.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["ATTRIBUTION_COLUMNS", "save_task_attribution", "attribution_table", "write_attribution_outputs"]

ATTRIBUTION_COLUMNS = ["pair", "x", "y", "side", "variable", "dim", "feature", "r2", "sem", "n_replicates",
                       "rank", "status", "detail"]


def save_task_attribution(results_store: Any, task: Any, res: Any) -> None:
    """Write an observed task's R^2 arrays when the estimator computed them (the worker's hook)."""
    if task.kind == "observed" and getattr(res, "r2_x", None) is not None:
        results_store.write_attribution(task.key, res.r2_x, res.r2_y)


def _variable_dims(cfg: Any, store_path: str | None, name: str) -> tuple[int, list[str] | None]:
    """(n_features, feature names or None) of variable ``name``, resolved once. The names are a
    convenience (the numbers do not depend on them); n_features sizes a flagged pair's NaN rows.
    A variable that no longer resolves (data changed since the run) gives (0, None): its pair
    keeps its status and detail, with no per-dimension rows."""
    if store_path is None:
        return 0, None
    from lmi_distributed.engine.study_data import open_store_cached, resolve_variables
    from lmi_distributed.errors import LMIError

    try:
        v = resolve_variables(cfg, store_path, [name])[name]
        var = open_store_cached(store_path).matrix(v.matrix).var
    except (LMIError, OSError, KeyError):
        return 0, None
    names = None if var is None else [str(s) for s in var.index]
    if names is not None and v.columns is not None:
        names = names[v.columns[0]:v.columns[1]]
    return int(v.n_features), (names if names is not None and len(names) == v.n_features else None)


def attribution_table(cfg: Any, out_dir: str | Path, pairs: Any, keys: list[str], store_path: str | None = None):
    """One row per (pair, side, dimension) (:data:`ATTRIBUTION_COLUMNS`) from the stored arrays of
    the plan's observed task ``keys``; ``pairs``: the aggregated pairs table (its status)."""
    import pandas as pd

    from lmi_distributed import stats
    from lmi_distributed.engine.results import DamagedResultError, ResultStore

    rs = ResultStore(out_dir)
    obs_keys: dict[str, list[str]] = {}
    for k in keys:
        pk, _rep, kind = k.split("/")
        if kind == "obs":
            obs_keys.setdefault(pk, []).append(k)
    dims_cache: dict[str, tuple[int, list[str] | None]] = {}
    frames = []
    for r in pairs.to_dict(orient="records"):
        status, detail = str(r["status"]), str(r.get("detail") or "")
        per_rep: list[dict[str, np.ndarray]] = []
        if status == "ok":
            for k in sorted(obs_keys.get(r["pair"], [])):
                try:
                    got = rs.read_attribution(k)
                except DamagedResultError as exc:
                    status, detail = "damaged", str(exc)
                    break
                if got is None:
                    status, detail = "missing", f"no attribution stored for task {k!r} (estimator.attribution off when it ran?)"
                    break
                per_rep.append(got)
        dims = {s: per_rep[0][f"r2_{s}"].size for s in ("x", "y")} if per_rep else {}
        if status != "ok":
            per_rep = []          # one replicate missing or damaged: the pair has no attribution
        for side, var in (("x", r["x"]), ("y", r["y"])):
            if per_rep:
                a = np.stack([d[f"r2_{side}"] for d in per_rep])          # (R, d)
                r2 = a.mean(axis=0)                                       # NaN stays NaN: flagged, not hidden
                sem = np.array([stats.sem(col) if np.isfinite(col).all() else np.nan for col in a.T])
            else:
                if var not in dims_cache:
                    dims_cache[var] = _variable_dims(cfg, store_path, var)
                r2 = sem = np.full(dims.get(side) or dims_cache[var][0], np.nan)
            order = np.argsort(-np.where(np.isnan(r2), -np.inf, r2), kind="stable")
            rank = np.full(r2.size, np.nan)
            finite = np.isfinite(r2[order])
            rank[order[finite]] = np.arange(1, int(finite.sum()) + 1)
            if var not in dims_cache:
                dims_cache[var] = _variable_dims(cfg, store_path, var)
            feats = dims_cache[var][1]
            frames.append(pd.DataFrame({
                "pair": r["pair"], "x": r["x"], "y": r["y"], "side": side, "variable": var,
                "dim": np.arange(r2.size, dtype=np.int64),
                "feature": feats if feats is not None and len(feats) == r2.size else [None] * r2.size,
                "r2": r2, "sem": sem, "n_replicates": len(per_rep), "rank": rank,
                "status": status, "detail": detail}))
    if not frames:
        return pd.DataFrame(columns=ATTRIBUTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[ATTRIBUTION_COLUMNS]


def write_attribution_outputs(cfg: Any, out_dir: str | Path, pairs: Any, keys: list[str],
                              store_path: str | None = None) -> dict[str, Any] | None:
    """Write ``attribution.parquet``, ``attribution_top.png`` and (for ``output.image_shape``
    variables) ``attribution_images.png``; return the summary's ``attribution`` block, or None
    when attribution is off."""
    if not cfg.estimator.attribution:
        return None
    from lmi_distributed.report_attribution import plot_image_maps, plot_top_dims

    out = Path(out_dir)
    table = attribution_table(cfg, out, pairs, keys, store_path)
    tmp = out / ".tmp-attribution.parquet"
    table.to_parquet(tmp, index=False)
    tmp.replace(out / "attribution.parquet")
    figures, notes = [], []
    if plot_top_dims(table, out / "attribution_top.png") is not None:
        figures.append("attribution_top.png")
    shapes: Mapping[str, tuple[int, int]] = cfg.output.image_shape or {}
    if shapes:
        path, skipped = plot_image_maps(table, shapes, out / "attribution_images.png")
        notes += skipped
        if path is not None:
            figures.append("attribution_images.png")
    ok = table[table["status"] == "ok"] if len(table) else table
    return {"table": "attribution.parquet", "figures": figures, "notes": notes,
            "units": "R^2 per dimension (held-out, z-scored scale; unitless)",
            "n_pairs_ok": int(ok["pair"].nunique()) if len(ok) else 0,
            "n_dims_nan": int(ok["r2"].isna().sum()) if len(ok) else 0}
