"""``kind: lineage`` studies (paper 4.2, A.4.2): the DPI test over random clonal pairings and
pMI per cell along trajectories. The engine's plan, pairing and workers are those of a plain
study (variables = cells filtered by condition, ``pairing: {rule: grouped, group: clone}``,
replicates = random pairings); this module adds what comes after aggregation:

- ``dpi.parquet`` / ``dpi.json``: per comparison (DPI predicts I(long) <= I(short)), the replicate
  means +- SEM of both pairs, the difference ``I(long) - I(short)`` (bits) with a two-sided Welch
  t-interval over the replicate estimates (``stats.welch_difference_ci``; the replicates of two
  pairs are independent pairings and trainings, so no pairing of replicates is assumed), and a
  verdict:

  * ``DPI violated (non-Markovian)``: the interval's lower bound > 0;
  * ``consistent with DPI``: its upper bound < 0 (I(long) is below I(short));
  * ``inconclusive``: the interval contains 0 (a violation can be neither shown nor excluded);
  * ``not tested``: a pair is flagged (status not ok) or the interval cannot be computed
    (< 2 replicates, no spread); ``detail`` says why. Never a verdict from a flagged number.

  The interval covers pairing + training randomness over the replicates, not the sampling of
  clones (every replicate draws from the same clones).
- ``cell_pmi.parquet``: per (pair, side, cell) the mean pMI (bits) over the replicates whose
  held-out half drew that cell (the engine's saved pMI per task, with matrix rows mapped to cell
  ids through the store), ``n_draws``, and the cell's pseudotime / embedding when configured;
- figures (``report_lineage``): pMI on the 2-D embedding, pMI along pseudotime (rolling mean over
  ``rolling_window`` cells), and the DPI comparisons; embedded in report.html.

The synthetic lineage store of ``data.demo: {kind: lineage}`` is built here too.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lmi_distributed import stats
from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.config_lineage import lineage_comparisons
from lmi_distributed.engine.planner import pair_key
from lmi_distributed.errors import ConfigError, LMIError

__all__ = ["VIOLATED", "CONSISTENT", "INCONCLUSIVE", "NOT_TESTED", "dpi_verdict", "dpi_table", "cell_pmi_table",
           "rolling_pmi", "write_lineage_outputs", "lineage_input_problems", "lineage_demo_problems", "ensure_lineage_store",
           "build_lineage_store", "DPI_COLUMNS"]

VIOLATED = "DPI violated (non-Markovian)"
CONSISTENT = "consistent with DPI"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
_SOURCE = "lmi_distributed.synthetic_lineage"
MATRIX = "rna"

DPI_COLUMNS = ["comparison", "long", "short", "status", "detail", "long_estimate", "long_sem", "long_replicates",
               "short_estimate", "short_sem", "short_replicates", "difference", "ci_low", "ci_high", "df",
               "confidence", "verdict"]


# ------------------------------------------------------------------------- DPI
def dpi_verdict(low: float, high: float) -> str:
    """Verdict from the interval of ``I(long) - I(short)`` (bits); DPI predicts <= 0."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return NOT_TESTED
    if low > 0:
        return VIOLATED
    if high < 0:
        return CONSISTENT
    return INCONCLUSIVE


def _find_pair(pairs, a: str, b: str):
    m = ((pairs["x"] == a) & (pairs["y"] == b)) | ((pairs["x"] == b) & (pairs["y"] == a))
    hit = pairs[m]
    return None if hit.empty else hit.iloc[0]


def _replicate_mi(tasks, pk: str) -> np.ndarray:
    if tasks is None or not len(tasks):
        return np.zeros(0)
    obs = tasks[(tasks["pair"] == pk) & (tasks["kind"] == "observed")]
    return obs.sort_values("replicate")["mi"].to_numpy(np.float64)


def dpi_table(cfg: StudyConfig, pairs, tasks, truth: dict[str, float] | None = None):
    """One row per DPI comparison of the study (``DPI_COLUMNS`` + truth columns when known).

    ``pairs``: the aggregated pairs table (``aggregate_pairs``); ``tasks``: the task records of
    the current plan (replicate MI in bits, ``status``)."""
    import pandas as pd

    conf = cfg.lineage.confidence
    rows = []
    for c in lineage_comparisons(cfg.lineage):
        row: dict[str, Any] = {"comparison": c.label, "long": pair_key(*c.long), "short": pair_key(*c.short),
                               "confidence": conf}
        side: dict[str, Any] = {}
        problems = []
        for key, pr in (("long", c.long), ("short", c.short)):
            r = _find_pair(pairs, *pr)
            side[key] = r
            if r is None:
                problems.append(f"{key} pair {pair_key(*pr)} is not in the study")
            elif r["status"] != "ok":
                problems.append(f"{key} pair {r['pair']} is {r['status']}" + (f" ({r['detail']})" if r["detail"] else ""))
        for key in ("long", "short"):
            r = side[key]
            ok = r is not None and r["status"] == "ok"
            row[f"{key}_estimate"] = float(r["estimate"]) if ok else float("nan")
            row[f"{key}_sem"] = float(r["sem"]) if ok else float("nan")
            row[f"{key}_replicates"] = int(r["replicates"]) if r is not None else 0
        nan = float("nan")
        if problems:
            row.update({"status": "not_tested", "detail": "; ".join(problems), "difference": nan,
                        "ci_low": nan, "ci_high": nan, "df": nan, "verdict": NOT_TESTED})
        else:
            a = _replicate_mi(tasks, side["long"]["pair"])
            b = _replicate_mi(tasks, side["short"]["pair"])
            diff, lo, hi, df, why = stats.welch_difference_ci(a, b, conf)
            row.update({"difference": diff, "ci_low": lo, "ci_high": hi, "df": df,
                        "status": "ok" if not why else "not_tested", "detail": why,
                        "verdict": dpi_verdict(lo, hi)})
            if why:
                row["difference"] = nan
        if truth:
            tl = truth.get(pair_key(*c.long), nan)
            ts = truth.get(pair_key(*c.short), nan)
            row.update({"truth_long": tl, "truth_short": ts, "truth_difference": tl - ts})
        rows.append(row)
    cols = DPI_COLUMNS + (["truth_long", "truth_short", "truth_difference"] if truth else [])
    df = pd.DataFrame(rows, columns=cols)
    df["long_replicates"] = df["long_replicates"].fillna(0).astype("int64")
    df["short_replicates"] = df["short_replicates"].fillna(0).astype("int64")
    return df


# -------------------------------------------------------------------- cell pMI
def _obs_columns(cfg: StudyConfig) -> list[str]:
    lin = cfg.lineage
    cols = [lin.pseudotime] if lin.pseudotime else []
    return cols + (list(lin.embedding) if lin.embedding else [])


def cell_pmi_table(cfg: StudyConfig, out_dir: str | Path, pairs, tasks, store) -> tuple[Any, dict[str, str]]:
    """``(table, skipped)``: mean pMI (bits) per (pair, side, cell) over the replicates that drew the
    cell into their held-out half, and ``{pair: why}`` for pairs left out (flagged, pMI damaged).

    Columns: pair, side ("x"/"y"), variable, cell_id, mean_pmi, n_draws, then the configured obs
    columns (pseudotime, embedding)."""
    import pandas as pd

    from lmi_distributed.engine.results import DamagedResultError, ResultStore

    rs = ResultStore(out_dir)
    extra = _obs_columns(cfg)
    frames, skipped = [], {}
    for r in pairs.to_dict(orient="records"):
        if r["status"] != "ok":
            skipped[r["pair"]] = f"pair is {r['status']}: no pMI from a flagged pair"
            continue
        obs = tasks[(tasks["pair"] == r["pair"]) & (tasks["kind"] == "observed")] if len(tasks) else tasks
        acc: dict[str, list] = {"x": [], "y": []}
        try:
            for key in obs["key"]:
                d = rs.read_pmi(key)
                pm = d["pmi"]
                fin = np.isfinite(pm)      # NaN on training rows: only held-out cells have pMI
                for side in ("x", "y"):
                    acc[side].append(pd.DataFrame({"row": d[f"{side}_rows"][fin], "pmi": pm[fin]}))
        except DamagedResultError as exc:
            skipped[r["pair"]] = f"pMI unreadable: {exc}"
            continue
        for side, var in (("x", r["x"]), ("y", r["y"])):
            if not acc[side]:
                continue
            g = pd.concat(acc[side]).groupby("row")["pmi"].agg(["mean", "count"]).reset_index()
            mat = store.matrix(cfg.variable(var).matrix)
            rows = g["row"].to_numpy(np.int64)
            f = pd.DataFrame({"pair": r["pair"], "side": side, "variable": var, "cell_id": mat.ids[rows],
                              "mean_pmi": g["mean"].to_numpy(np.float64), "n_draws": g["count"].to_numpy(np.int64)})
            for col in extra:
                f[col] = mat.obs[col].iloc[rows].to_numpy(np.float64)
            frames.append(f)
    cols = ["pair", "side", "variable", "cell_id", "mean_pmi", "n_draws"] + extra
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return table[cols], skipped


def rolling_pmi(cells, pseudotime: str, window: int):
    """Cells sorted by pseudotime with ``rolling_pmi``: the mean pMI (bits) of the ``window`` cells
    centred on each (NaN where fewer than ``window`` cells fit)."""
    s = cells.sort_values(pseudotime, kind="stable").reset_index(drop=True)
    s["rolling_pmi"] = s["mean_pmi"].rolling(window, center=True, min_periods=window).mean()
    return s


def _pmi_trend(cells, pseudotime: str) -> dict[str, Any]:
    """Spearman correlation of per-cell pMI with pseudotime, and the mean pMI in its quartiles."""
    from scipy.stats import spearmanr

    if len(cells) < 8:
        return {"n_cells": int(len(cells)), "spearman": None, "quartile_mean_pmi": None}
    rho = spearmanr(cells[pseudotime], cells["mean_pmi"]).statistic
    q = np.quantile(cells[pseudotime], [0.25, 0.5, 0.75])
    bins = np.digitize(cells[pseudotime], q)
    qm = [float(cells["mean_pmi"][bins == i].mean()) for i in range(4)]
    return {"n_cells": int(len(cells)), "spearman": float(rho), "quartile_mean_pmi": qm}


# --------------------------------------------------------------------- outputs
def _atomic_parquet(df, path: Path) -> None:
    tmp = path.parent / f".tmp-{path.name}"
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def _clean(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_lineage_outputs(cfg: StudyConfig, out_dir: str | Path, pairs, tasks) -> tuple[dict, str]:
    """Write dpi.parquet, dpi.json, cell_pmi.parquet and the figures; return (summary block, HTML
    section for report.html)."""
    from lmi_distributed.engine.study_data import load_truth
    from lmi_distributed.engine.study_data import open_store_cached, store_path_abs

    out = Path(out_dir)
    lin = cfg.lineage
    truth = load_truth(cfg)
    dpi = dpi_table(cfg, pairs, tasks, truth)
    _atomic_parquet(dpi, out / "dpi.parquet")
    dpi_rows = [{k: _clean(v) for k, v in r.items()} for r in dpi.to_dict(orient="records")]
    (out / ".tmp-dpi.json").write_text(json.dumps({"units": "bits", "confidence": lin.confidence,
                                                    "interval": "two-sided Welch t-interval over replicates",
                                                    "comparisons": dpi_rows}, indent=2))
    (out / ".tmp-dpi.json").replace(out / "dpi.json")
    block: dict[str, Any] = {"dpi": dpi_rows, "figures": []}
    figures: list[Path] = []
    if lin.comparisons or lin.chains:
        from lmi_distributed.report_lineage import plot_dpi

        if len(dpi):
            figures.append(plot_dpi(dpi, out / "dpi.png"))
    if lin.cell_pmi and cfg.output.save_pmi != "none":
        store = open_store_cached(store_path_abs(cfg))
        cells, skipped = cell_pmi_table(cfg, out, pairs, tasks, store)
        _atomic_parquet(cells, out / "cell_pmi.parquet")
        block["cell_pmi"] = {"n_rows": int(len(cells)), "skipped_pairs": skipped, "trend": {}}
        from lmi_distributed.report_lineage import plot_pmi_embedding, plot_pmi_pseudotime

        for (pk, side), g in cells.groupby(["pair", "side"], sort=False):
            if side != "x":      # the x side (e.g. the early timepoint), as paper Fig. 6b/c
                continue
            var = g["variable"].iloc[0]
            safe = pk.replace("~", "__")
            if lin.embedding:
                mat = store.matrix(cfg.variable(var).matrix)
                bg = mat.obs[list(lin.embedding)].to_numpy(np.float64)
                figures.append(plot_pmi_embedding(g, lin.embedding, bg, out / f"pmi_embedding_{safe}.png",
                                                  title=f"pMI of {pk} on {var} cells (bits)"))
            if lin.pseudotime:
                roll = rolling_pmi(g, lin.pseudotime, lin.rolling_window)
                figures.append(plot_pmi_pseudotime(roll, lin.pseudotime, lin.rolling_window,
                                                   out / f"pmi_pseudotime_{safe}.png",
                                                   title=f"pMI of {pk} along pseudotime ({var} cells)"))
                block["cell_pmi"]["trend"][pk] = _pmi_trend(g, lin.pseudotime)
    block["figures"] = [p.name for p in figures if p is not None]
    from lmi_distributed.report_lineage import lineage_html

    return block, lineage_html(dpi, [p for p in figures if p is not None], block)


# ---------------------------------------------------------------- input checks
def lineage_input_problems(cfg: StudyConfig, store) -> list[str]:
    """Pre-flight lines (key path first) when a configured obs column (pseudotime, embedding) is
    missing from a variable's matrix or is not numeric; checked before any training."""
    lin = cfg.lineage
    if lin is None:
        return []
    import pandas as pd

    errs = []
    for key, cols in (("lineage.pseudotime", [lin.pseudotime] if lin.pseudotime else []),
                      ("lineage.embedding", list(lin.embedding) if lin.embedding else [])):
        for m in sorted({v.matrix for v in cfg.variables}):
            try:
                obs = store.matrix(m).obs
            except LMIError:  # an unknown or unreadable matrix is reported by the variable checks
                continue
            for col in cols:
                if col not in obs.columns:
                    errs.append(f"  {key}: obs column {col!r} not found in matrix {m!r} "
                                f"(obs columns: {list(obs.columns)})")
                elif not pd.api.types.is_numeric_dtype(obs[col]):
                    errs.append(f"  {key}: obs column {col!r} of matrix {m!r} is not numeric (dtype {obs[col].dtype})")
    return errs


#: obs columns of the synthetic lineage store (``synthetic_lineage.simulate_lineage``).
DEMO_OBS = ("clone", "day", "pseudotime", "emb1", "emb2")


def lineage_demo_problems(cfg: StudyConfig, info) -> list[str]:
    """Pre-flight against the synthetic lineage store the first run builds (matrix ``rna``)."""
    errs = []
    for i, v in enumerate(cfg.variables):
        if v.matrix != MATRIX:
            errs.append(f"  variables[{i}].matrix: variable {v.name!r}: unknown matrix {v.matrix!r} in the lineage "
                        f"demo store (it will hold [{MATRIX!r}])")
    lin = cfg.lineage
    if lin is not None:
        for key, cols in (("lineage.pseudotime", [lin.pseudotime] if lin.pseudotime else []),
                          ("lineage.embedding", list(lin.embedding) if lin.embedding else [])):
            errs += [f"  {key}: obs column {c!r} not in the lineage demo store (it will have {list(DEMO_OBS)})"
                     for c in cols if c not in DEMO_OBS]
    info.notes.append(f"store {cfg.data.store} not built yet: the lineage demo store is built on the first run")
    return errs


# ------------------------------------------------------------------ demo store
def build_lineage_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None) -> Path:
    """Simulate ``demo`` (``DemoData`` of kind lineage), write ``cells.h5ad`` next to the store with
    anndata, ingest it as matrix ``rna`` (obs kept), write the truth JSON; returns the store path."""
    from lmi_distributed.data.ingest import ingest_source
    from lmi_distributed.data.sources import open_source
    from lmi_distributed.synthetic_lineage import lineage_anndata, lineage_truth

    from lmi_distributed.engine.synthetic_store import write_atomically, write_truth

    params = demo.lineage.params(demo.seed)
    parent = Path(store_path).expanduser().resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    spool = parent / f".tmp-{tag}-spool"
    h5 = parent / f".tmp-{tag}-cells.h5ad"

    def write(tmp: Path) -> None:
        src = open_source(str(h5), spool_dir=spool)
        try:
            ingest_source(src, str(tmp), MATRIX, scheduler="synchronous",
                          extra_provenance={"source": _SOURCE, "params": _demo_params(demo)})
        finally:
            src.close()

    try:
        lineage_anndata(params).write_h5ad(h5)
        spool.mkdir()
        final = write_atomically(store_path, write)
        h5.replace(final.parent / f"{final.name}.cells.h5ad")
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        h5.unlink(missing_ok=True)
    write_truth(final, truth_path, lineage_truth(params))
    return final


def _demo_params(demo) -> dict[str, Any]:
    return {"seed": int(demo.seed), **demo.lineage.model_dump()}


def ensure_lineage_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None, *,
                         create: bool = True, log: Callable[[str], None] = print) -> bool:
    """Build the synthetic lineage store when missing or built with other parameters (True when it did);
    a store there that the lineage generator did not write is never touched (ConfigError)."""
    from lmi_distributed.data import open_store
    from lmi_distributed.engine.synthetic_store import ensure_built

    def mismatch(final: Path) -> str | None:
        try:
            prov = open_store(str(final)).matrix(MATRIX).provenance
        except (LMIError, OSError) as exc:   # not a store, or no lineage matrix in it
            raise ConfigError(f"data.store: {final} exists and was not written by the lineage demo generator "
                              f"({exc}); remove data.demo or choose another data.store") from None
        if not prov or prov.get("source") != _SOURCE:
            raise ConfigError(f"data.store: {final} exists and was not written by the lineage demo generator; "
                              "remove data.demo or choose another data.store")
        return None if prov.get("params") == _demo_params(demo) else "data.demo parameters changed"

    return ensure_built(store_path, mismatch=mismatch, build=lambda p: build_lineage_store(p, demo, truth_path=truth_path),
                        label="lineage demo store", describe=str(_demo_params(demo)), create=create, log=log)
