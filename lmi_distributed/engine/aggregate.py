"""Aggregation: task records -> one row per pair with estimate, SEM, nulls, p, BH q, z.

Per pair (MI in bits):
- ``estimate``: mean over replicates of the observed MI; ``sem``: std(ddof=1)/sqrt(R).
- each null present gives a null of replicate means: draw j of the null is the mean over
  replicates of draw j (``stats.null_of_means``); with one replicate it is the plain null.
  ``latent_*`` columns: latent permutations (held-out Y latents permuted, KSG recomputed);
  ``shuffle_*`` columns: retrain shuffles (Y rows shuffled, network trained anew; the paper's).
- ``p_latent``/``p_shuffle`` = (1 + #{null >= estimate}) / (1 + n_null), never 0.
- ``null``: which null feeds ``p``/``q``/``z``/``null_mean``/``null_sd`` (config
  ``significance.p_null``; auto = retrain_shuffles when present, else latent_permutations).
- ``q``: Benjamini-Hochberg over the study's pairs; ``significant`` = q <= alpha.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lmi_distributed import stats
from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.planner import pair_key

__all__ = ["aggregate_pairs", "load_truth", "write_outputs", "PAIR_COLUMNS"]

PAIR_COLUMNS = [
    "pair", "x", "y", "n", "replicates", "estimate", "sem",
    "latent_n_null", "latent_null_mean", "latent_null_sd", "p_latent",
    "shuffle_n_null", "shuffle_null_mean", "shuffle_null_sd", "p_shuffle",
    "null", "null_mean", "null_sd", "p", "q", "z", "significant",
]


def load_truth(cfg: StudyConfig) -> dict[str, float]:
    """Known MI per pair key (bits), from ``data.truth`` if given and present."""
    if not cfg.data.truth:
        return {}
    p = Path(cfg.data.truth).expanduser()
    if not p.exists():
        return {}
    obj = json.loads(p.read_text())
    pairs = obj.get("pairs", obj)
    return {k: float(v) for k, v in pairs.items()}


def _nan_sd(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(np.std(a, ddof=1)) if a.size >= 2 else float("nan")


def _nan_mean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(np.mean(a)) if a.size else float("nan")


def aggregate_pairs(tasks, cfg: StudyConfig):
    """One row per study pair (study order) from the task records DataFrame."""
    import pandas as pd

    truth = load_truth(cfg)
    which_cfg = cfg.significance.p_null
    rows: list[dict[str, Any]] = []
    by_pair = {k: g for k, g in tasks.groupby("pair", sort=False)} if len(tasks) else {}
    for x, y in cfg.pair_list():
        pk = pair_key(x, y)
        g = by_pair.get(pk)
        row: dict[str, Any] = {"pair": pk, "x": x, "y": y}
        obs = g[g["kind"] == "observed"].sort_values("replicate") if g is not None else None
        if obs is None or obs.empty:
            row.update({c: float("nan") for c in PAIR_COLUMNS if c not in row})
            row.update({"n": 0, "replicates": 0, "latent_n_null": 0, "shuffle_n_null": 0,
                        "null": "none", "significant": False})
            rows.append(row)
            continue
        mi = obs["mi"].to_numpy(np.float64)
        est = float(np.mean(mi))
        row.update({"n": int(obs["n"].iloc[0]), "replicates": int(len(obs)), "estimate": est, "sem": stats.sem(mi)})
        # latent permutation null of replicate means
        lat = [np.asarray(v, dtype=np.float64) for v in obs["latent_null"]]
        n_lat = min((v.size for v in lat), default=0)
        if n_lat > 0:
            lnull = stats.null_of_means(np.stack([v[:n_lat] for v in lat]))
            row.update({"latent_n_null": n_lat, "latent_null_mean": _nan_mean(lnull),
                        "latent_null_sd": _nan_sd(lnull), "p_latent": stats.permutation_pvalue(est, lnull)})
        else:
            lnull = None
            row.update({"latent_n_null": 0, "latent_null_mean": float("nan"),
                        "latent_null_sd": float("nan"), "p_latent": float("nan")})
        # retrain-shuffle null of replicate means (draw j = shuffle j)
        sh = g[g["kind"] == "shuffle"]
        snull = None
        if len(sh):
            piv = sh.pivot_table(index="replicate", columns="shuffle", values="mi", aggfunc="first")
            piv = piv.reindex(index=sorted(obs["replicate"].tolist()))
            snull = stats.null_of_means(piv.to_numpy(np.float64))
            snull = snull[~np.isnan(snull)]
            row.update({"shuffle_n_null": int(snull.size), "shuffle_null_mean": _nan_mean(snull),
                        "shuffle_null_sd": _nan_sd(snull), "p_shuffle": stats.permutation_pvalue(est, snull)})
        else:
            row.update({"shuffle_n_null": 0, "shuffle_null_mean": float("nan"),
                        "shuffle_null_sd": float("nan"), "p_shuffle": float("nan")})
        if which_cfg == "auto":
            which = "retrain_shuffles" if snull is not None and snull.size else (
                "latent_permutations" if lnull is not None else "none")
        else:
            which = which_cfg
        null = snull if which == "retrain_shuffles" else (lnull if which == "latent_permutations" else None)
        if null is None or null.size == 0:
            row.update({"null": "none", "null_mean": float("nan"), "null_sd": float("nan"),
                        "p": float("nan"), "z": float("nan")})
        else:
            row.update({"null": which, "null_mean": _nan_mean(null), "null_sd": _nan_sd(null),
                        "p": stats.permutation_pvalue(est, null), "z": stats.zscore(est, null)})
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in PAIR_COLUMNS:
        if c not in df:
            df[c] = float("nan")
    df["q"] = stats.benjamini_hochberg(df["p"].to_numpy(np.float64))
    df["significant"] = (df["q"] <= cfg.significance.alpha).fillna(False).astype(bool)
    df = df[PAIR_COLUMNS]
    if truth:
        df["truth"] = [truth.get(p, float("nan")) for p in df["pair"]]
    for c in ("n", "replicates", "latent_n_null", "shuffle_n_null"):
        df[c] = df[c].fillna(0).astype("int64")
    return df


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (np.floating,)):
        return _clean(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_outputs(cfg: StudyConfig, out_dir: str | Path, tasks, *, run_info: dict | None = None,
                  report: bool = True) -> dict:
    """Write ``pairs.parquet`` + ``summary.json`` (+ ``heatmap.png``, ``report.html``); return the summary."""
    out = Path(out_dir)
    pairs = aggregate_pairs(tasks, cfg)
    tmp = out / ".tmp-pairs.parquet"
    pairs.to_parquet(tmp, index=False)
    tmp.replace(out / "pairs.parquet")
    n_sig = int(pairs["significant"].sum())
    summary = {
        "study": cfg.name,
        "description": cfg.description,
        "units": "bits",
        "n_pairs": int(len(pairs)),
        "n_pairs_done": int((pairs["replicates"] > 0).sum()),
        "replicates": cfg.replicates,
        "nulls": cfg.nulls.model_dump(),
        "p_null": cfg.significance.p_null,
        "alpha": cfg.significance.alpha,
        "n_significant": n_sig,
        "n_tasks": int(len(tasks)),
        "estimator": cfg.estimator.model_dump(),
        "fingerprint": cfg.fingerprint(),
        "run": run_info or {},
        "pairs": [{k: _clean(v) for k, v in r.items()} for r in pairs.to_dict(orient="records")],
    }
    if "truth" in pairs:
        err = (pairs["estimate"] - pairs["truth"]).to_numpy(np.float64)
        ok = ~np.isnan(err)
        summary["truth_mae_bits"] = float(np.mean(np.abs(err[ok]))) if ok.any() else None
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_clean))
    if report:
        from lmi_distributed.report import write_report

        write_report(out, pairs, summary)
    return summary
