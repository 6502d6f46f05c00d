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
- ``q``: Benjamini-Hochberg over the study's ``ok`` pairs; ``significant`` = q <= alpha.
- ``n_canonical``: ok observed replicates whose reported MI is the canonical view (task column
  ``view``; the others report the latents; 0 for parts written before views existed).

Trust (``status``/``detail`` per pair; only the records of the current plan's task keys count,
so lowering replicates or nulls never averages in old records):
- ``ok``: every planned task of the pair is stored and every observed replicate is ``ok``.
- a task status (``degenerate``, ``diverged``, ``failed``, ...): the first non-ok observed
  replicate's, with its detail. The pair is *flagged*, not averaged over its ok replicates: which
  replicates fail is not random (a partial mean is biased), so ``n_ok_replicates`` says how many
  were ok and the estimate is NaN.
- ``incomplete``: some planned tasks are not stored (a ``--max-batches`` stop, a failed batch);
  ``missing``: none is.
Non-ok pairs have NaN estimate/sem/p/q/z, ``significant=False``, and are left out of the BH
correction. Non-ok *shuffle* tasks are dropped from the retrain-shuffle null (draw j is dropped
when any replicate's shuffle j is not ok) and counted in ``shuffle_n_dropped``.
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
from lmi_distributed.engine.study_data import load_truth

__all__ = ["aggregate_pairs", "load_truth", "write_outputs", "PAIR_COLUMNS", "plan_keys", "completeness"]

PAIR_COLUMNS = [
    "pair", "x", "y", "status", "detail", "n", "replicates", "n_ok_replicates", "n_canonical",
    "estimate", "sem",
    "latent_n_null", "latent_null_mean", "latent_null_sd", "p_latent",
    "shuffle_n_null", "shuffle_n_dropped", "shuffle_null_mean", "shuffle_null_sd", "p_shuffle",
    "null", "null_mean", "null_sd", "p", "q", "z", "significant",
]
_INT_COLUMNS = ("n", "replicates", "n_ok_replicates", "n_canonical", "latent_n_null", "shuffle_n_null",
                "shuffle_n_dropped")
#: Columns that are NaN for a pair whose status is not ok.
_NUMBER_COLUMNS = ("estimate", "sem", "latent_null_mean", "latent_null_sd", "p_latent", "shuffle_null_mean",
                   "shuffle_null_sd", "p_shuffle", "null_mean", "null_sd", "p", "q", "z")


def plan_keys(cfg: StudyConfig) -> list[str]:
    """Task keys of the study's current plan (keys do not depend on shapes)."""
    from lmi_distributed.engine.planner import make_tasks

    return [t.key for t in make_tasks(cfg)]


def _status_of(obs, n_stored: int, n_planned: int, replicates: int) -> tuple[str, str]:
    """A pair's (status, detail) from its observed records and how many of its tasks are stored."""
    bad = obs[obs["status"] != "ok"] if len(obs) else obs
    if len(bad):
        first = bad.iloc[0]
        detail = str(first["detail"] or "")
        return str(first["status"]), (f"replicate {int(first['replicate'])}: {detail}" if detail else
                                      f"replicate {int(first['replicate'])}") + \
            f"; {len(obs) - len(bad)} of {replicates} replicate(s) ok"
    if n_stored == 0:
        return "missing", f"no task of this pair is stored (0 of {n_planned}); rerun to finish"
    if n_stored < n_planned:
        return "incomplete", f"{n_stored} of {n_planned} task(s) stored; rerun to finish"
    noted = obs[obs["detail"].fillna("") != ""] if len(obs) and "detail" in obs else obs.iloc[:0]
    if len(noted):   # an ok estimate with a caution (e.g. tied latents): keep the first one
        first = noted.iloc[0]
        return "ok", f"replicate {int(first['replicate'])}: {first['detail']}"
    return "ok", ""


def _flag(row: dict[str, Any]) -> None:
    """Blank the numbers of a pair that is not ok: shown, never ranked or tested."""
    for c in _NUMBER_COLUMNS:
        row[c] = float("nan")
    row.update({"null": "none", "significant": False})


def aggregate_pairs(tasks, cfg: StudyConfig, keys=None):
    """One row per study pair (study order) from the task records DataFrame.

    ``keys``: the current plan's task keys (default: ``plan_keys(cfg)``); records of other keys
    (replicates, shuffles or pairs no longer planned) are ignored. See the module docstring for
    ``status`` and the flagging rules."""
    import pandas as pd

    truth = load_truth(cfg)
    which_cfg = cfg.significance.p_null
    keys = list(plan_keys(cfg) if keys is None else keys)
    keyset = set(keys)
    if len(tasks):
        tasks = tasks[tasks["key"].isin(keyset)]
        if "status" not in tasks:
            tasks = tasks.assign(status="ok", detail="")
        tasks = tasks.assign(status=tasks["status"].fillna("ok"), detail=tasks["detail"].fillna(""))
    planned: dict[str, int] = {}
    for k in keys:
        pk = k.split("/", 1)[0]
        planned[pk] = planned.get(pk, 0) + 1
    rows: list[dict[str, Any]] = []
    by_pair = {k: g for k, g in tasks.groupby("pair", sort=False)} if len(tasks) else {}
    for x, y in cfg.pair_list():
        pk = pair_key(x, y)
        g = by_pair.get(pk)
        row: dict[str, Any] = {"pair": pk, "x": x, "y": y}
        obs = g[g["kind"] == "observed"].sort_values("replicate") if g is not None else None
        n_stored = 0 if g is None else len(g)
        status, detail = _status_of(obs if obs is not None else pd.DataFrame(columns=["status"]),
                                    n_stored, planned.get(pk, 0), cfg.replicates)
        n_ok = 0 if obs is None else int((obs["status"] == "ok").sum())
        n_can = 0 if obs is None or "view" not in obs else int(((obs["status"] == "ok") &
                                                                 (obs["view"] == "canonical")).sum())
        sh_all = g[g["kind"] == "shuffle"] if g is not None else None
        n_dropped = 0 if sh_all is None else int((sh_all["status"] != "ok").sum())
        row.update({"status": status, "detail": detail, "n_ok_replicates": n_ok, "n_canonical": n_can,
                    "shuffle_n_dropped": n_dropped})
        if obs is None or obs.empty:
            row.update({c: float("nan") for c in PAIR_COLUMNS if c not in row})
            row.update({"n": 0, "replicates": 0, "latent_n_null": 0, "shuffle_n_null": 0,
                        "null": "none", "significant": False})
            rows.append(row)
            continue
        mi = obs["mi"].to_numpy(np.float64)
        est = float(np.mean(mi))
        row.update({"n": int(obs["n"].iloc[0]), "replicates": int(len(obs)), "estimate": est, "sem": stats.sem(mi)})
        if status != "ok":
            row.update({"latent_n_null": 0, "shuffle_n_null": 0})
            _flag(row)
            rows.append(row)
            continue
        # latent permutation null of replicate means
        lat = [np.asarray(v, dtype=np.float64) for v in obs["latent_null"]]
        n_lat = min((v.size for v in lat), default=0)
        if n_lat > 0:
            lnull = stats.null_of_means(np.stack([v[:n_lat] for v in lat]))
            m, sd, p = stats.null_summary(est, lnull)
            row.update({"latent_n_null": n_lat, "latent_null_mean": m, "latent_null_sd": sd, "p_latent": p})
        else:
            lnull = None
            row.update({"latent_n_null": 0, "latent_null_mean": float("nan"),
                        "latent_null_sd": float("nan"), "p_latent": float("nan")})
        # retrain-shuffle null of replicate means (draw j = shuffle j, over every replicate)
        sh = sh_all[sh_all["status"] == "ok"]
        snull = None
        if len(sh):
            piv = sh.pivot_table(index="replicate", columns="shuffle", values="mi", aggfunc="first", dropna=False)
            piv = piv.reindex(index=sorted(obs["replicate"].tolist()))
            piv = piv.dropna(axis=1, how="any")  # a draw needs shuffle j of every replicate
            snull = stats.null_of_means(piv.to_numpy(np.float64)) if piv.shape[1] else np.zeros(0)
            snull = snull[~np.isnan(snull)]
            m, sd, p = stats.null_summary(est, snull)
            row.update({"shuffle_n_null": int(snull.size), "shuffle_null_mean": m, "shuffle_null_sd": sd,
                        "p_shuffle": p})
        else:
            row.update({"shuffle_n_null": 0, "shuffle_null_mean": float("nan"),
                        "shuffle_null_sd": float("nan"), "p_shuffle": float("nan")})
        row.update(stats.chosen_null(est, which_cfg, snull, lnull))
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in PAIR_COLUMNS:
        if c not in df:
            df[c] = float("nan")
    df["q"], df["significant"] = stats.bh_over_ok(df["p"].to_numpy(np.float64), (df["status"] == "ok").to_numpy(),
                                                  cfg.significance.alpha)
    df = df[PAIR_COLUMNS]
    if truth:
        df["truth"] = [truth.get(p, float("nan")) for p in df["pair"]]
    for c in _INT_COLUMNS:
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


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.parent / f".tmp-{path.name}"
    tmp.write_text(text)
    tmp.replace(path)


def completeness(pairs, n_tasks_stored: int, n_tasks_planned: int) -> dict[str, Any]:
    """The summary's trust block: complete?, what q was computed over, the flagged pairs."""
    ok = pairs["status"] == "ok"
    n_ok, n = int(ok.sum()), int(len(pairs))
    complete = n_tasks_stored >= n_tasks_planned
    if not complete:
        qtext = (f"partial: computed over {n_ok} of {n} pairs ({n_tasks_stored} of {n_tasks_planned} "
                 "tasks stored); rerun to finish")
    elif n_ok < n:
        qtext = f"computed over {n_ok} of {n} pairs; {n - n_ok} flagged pair(s) left out (see 'flagged')"
    else:
        qtext = f"computed over all {n} pairs"
    flagged = [{"pair": r["pair"], "status": r["status"], "detail": r["detail"],
                "n_ok_replicates": int(r["n_ok_replicates"])}
               for r in pairs[~ok].to_dict(orient="records")]
    return {"complete": bool(complete), "q_values": qtext, "n_pairs_ok": n_ok,
            "n_tasks_planned": int(n_tasks_planned), "n_tasks_stored": int(n_tasks_stored),
            "status_counts": {str(k): int(v) for k, v in pairs["status"].value_counts().sort_index().items()},
            "shuffle_tasks_dropped": int(pairs["shuffle_n_dropped"].sum()), "flagged": flagged}


def write_outputs(cfg: StudyConfig, out_dir: str | Path, tasks, *, run_info: dict | None = None,
                  report: bool = True, keys=None, study_fingerprint: str | None = None,
                  failed=None) -> dict:
    """Write ``pairs.parquet`` + ``summary.json`` (+ ``heatmap.png``, ``report.html``); return the summary.

    ``keys``: the current plan's task keys (default ``plan_keys(cfg)``); only their records count,
    and ``complete`` says whether every one of them is stored. ``failed``: records of tasks whose
    batch failed for good (``engine.failures.read_failed``): not stored, but their pairs show
    status "failed" with the error as ``detail`` instead of "missing"/"incomplete"."""
    import pandas as pd

    out = Path(out_dir)
    keys = list(plan_keys(cfg) if keys is None else keys)
    if len(tasks):
        tasks = tasks[tasks["key"].isin(set(keys))]
    shown = tasks
    if failed is not None and len(failed):
        failed = failed[failed["key"].isin(set(keys)) & ~failed["key"].isin(set(tasks["key"]) if len(tasks) else set())]
        if len(failed):
            shown = pd.concat([tasks, failed], ignore_index=True) if len(tasks) else failed.reset_index(drop=True)
    pairs = aggregate_pairs(shown, cfg, keys=keys)
    tmp = out / ".tmp-pairs.parquet"
    pairs.to_parquet(tmp, index=False)
    tmp.replace(out / "pairs.parquet")
    n_sig = int(pairs["significant"].sum())
    trust = completeness(pairs, int(len(tasks)), len(keys))
    summary = {
        "study": cfg.name,
        "description": cfg.description,
        "units": "bits",
        "complete": trust.pop("complete"),
        "q_values": trust.pop("q_values"),
        "n_pairs": int(len(pairs)),
        "n_pairs_done": int((pairs["replicates"] > 0).sum()),
        "replicates": cfg.replicates,
        "nulls": cfg.nulls.model_dump(),
        "p_null": cfg.significance.p_null,
        "alpha": cfg.significance.alpha,
        "n_significant": n_sig,
        "n_tasks": int(len(tasks)),
        **trust,
        "estimator": cfg.estimator.model_dump(),
        "fingerprint": cfg.fingerprint(),
        "study_fingerprint": study_fingerprint,
        "run": run_info or {},
        "pairs": [{k: _clean(v) for k, v in r.items()} for r in pairs.to_dict(orient="records")],
    }
    summary["kind"] = cfg.kind
    if "truth" in pairs:
        err = (pairs["estimate"] - pairs["truth"]).to_numpy(np.float64)
        ok = ~np.isnan(err)
        summary["truth_mae_bits"] = float(np.mean(np.abs(err[ok]))) if ok.any() else None
    from lmi_distributed.engine.attribution import write_attribution_outputs
    from lmi_distributed.engine.study_data import store_path_abs

    attribution = write_attribution_outputs(cfg, out, pairs, keys, store_path_abs(cfg))
    if attribution is not None:   # estimator.attribution: attribution.parquet + figures
        summary["attribution"] = attribution
    kind_html = ""                # the study kind's own outputs and report section
    if cfg.kind == "interaction":  # held-out prediction: splits.parquet, interaction.json, figures
        from lmi_distributed.engine.interaction import write_interaction_outputs

        summary["interaction"] = write_interaction_outputs(cfg, out, tasks, pairs, report=report)
        if report and summary["interaction"]:
            from lmi_distributed.report_interaction import interaction_html

            kind_html = interaction_html(out, summary["interaction"])
    elif cfg.kind == "lineage":  # dpi.parquet/json, cell_pmi.parquet, figures (engine/lineage.py)
        from lmi_distributed.engine.lineage import write_lineage_outputs

        summary["lineage"], kind_html = write_lineage_outputs(cfg, out, pairs, tasks)
    _atomic_text(out / "summary.json", json.dumps(summary, indent=2, default=_clean))
    if report:
        from lmi_distributed.report import write_report

        from lmi_distributed.report_attribution import attribution_html

        write_report(out, pairs, summary, sections_html=attribution_html(out, summary) + kind_html)
    return summary
