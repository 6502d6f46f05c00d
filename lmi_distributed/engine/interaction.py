"""Study kind ``interaction`` (paper section 4.1, A.4.1): held-out interaction prediction.

A study of this kind is a pairs study (its pairs get I(X; Y), bits, with the retrain-shuffle and
latent nulls, paired through the annotation table with the ``join`` rule) plus R *split* tasks.

Split task j (key ``"{x}~{y}/split{j:03d}/scores"``; seeds from (study seed, key)):

1. the annotated pairs: the join of the study's pairing table, as matrix rows of the variables
   ``interaction.x`` / ``interaction.y``; with ``interaction.shuffle_annotations`` the y side is
   permuted across the table's rows (one seeded permutation for the whole study);
2. the protein universe: the distinct protein ids of the annotated pairs (ids of the x and y
   matrices); ``held_out`` of them are drawn at random (``pairing_seed`` of the task);
3. training pairs: annotated pairs with neither protein held out; an ``LMI`` (the study's
   estimator settings, seed of the task) is fitted on them;
4. query pairs (``interaction.query_pairs``): "sides" (default) every ordered pair (a, b), a != b,
   of held-out proteins with a among the table's x-side proteins and b among its y-side proteins
   (directed as in the table; a target is never scored as a kinase); "all": every ordered pair
   of held-out proteins, self pairs included (the paper's 170 x 170); each gets the density-ratio score of paper Algorithm 2 on the latents
   (``LMI.score_samples``, bits);
5. the scores and the query rows are written like a task's pMI (``ResultStore.write_pmi``: atomic,
   digest-checked), then the task record (``kind`` "split", ``mi`` = the fit's MI on its
   training pairs, ``n`` training pairs, ``n_test`` query pairs, ``status``/``detail``).

The driver (``write_interaction_outputs``, called by the aggregation) labels the query pairs
against the (same, possibly shuffled) annotation table and computes per split the ROC curve, AUC,
precision-recall curve and average precision (sklearn.metrics); AUC/AP mean +- SEM over the ok
splits go to ``interaction.json``, the per-split rows to ``splits.parquet``. A split whose
training is not ``ok``, whose scores are damaged or not finite, or whose held-out pairs hold no
positive or no negative gets NaN AUC/AP and a status saying why.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.planner import Batch, Task, split_tasks

__all__ = ["annotated_rows", "split_design", "execute_split_batch",
           "split_metrics", "aggregate_splits", "write_interaction_outputs", "ensure_proteome_store",
           "proteome_demo_problems", "interaction_problems", "SPLIT_COLUMNS"]

_SOURCE = "lmi_distributed.synthetic_proteome"

SPLIT_COLUMNS = ["split", "key", "status", "detail", "n_train_pairs", "n_query", "n_pos", "n_neg",
                 "train_mi", "epochs", "auc", "ap", "ap_baseline", "fpr", "tpr", "precision", "recall"]


# ------------------------------------------------------------------------- plan
# ------------------------------------------------------------------ the design
def annotated_rows(cfg: StudyConfig, store: Any, vx: Any, vy: Any, shuffle_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrix rows (x_rows, y_rows), int64 (M,), of the annotated pairs: the study's join
    (``data.make_pairing``); y permuted across rows with ``shuffle_seed`` when
    ``interaction.shuffle_annotations`` (pairs that become (a, a) or repeats are dropped)."""
    from lmi_distributed.data import make_pairing
    from lmi_distributed.engine.study_data import pairing_spec

    p = make_pairing(store, vx, vy, pairing_spec(cfg), 0)
    xr, yr = np.asarray(p.x_rows, np.int64), np.asarray(p.y_rows, np.int64)
    if cfg.interaction is not None and cfg.interaction.shuffle_annotations:
        yr = yr[np.random.default_rng(shuffle_seed).permutation(yr.size)]
        xid = np.asarray(store.matrix(vx.matrix).ids)[xr]
        yid = np.asarray(store.matrix(vy.matrix).ids)[yr]
        keep = xid != yid
        _, first = np.unique(np.stack([xr[keep], yr[keep]]), axis=1, return_index=True)
        idx = np.flatnonzero(keep)[np.sort(first)]
        xr, yr = xr[idx], yr[idx]
    return xr, yr


def split_design(cfg: StudyConfig, store: Any, vx: Any, vy: Any, task: Task) -> dict[str, Any]:
    """The split's training pairs, query pairs and their labels (matrix rows; int64 / bool arrays).

    Returns ``{"train_x", "train_y", "query_x", "query_y", "label", "held_out" (ids),
    "n_universe"}``; ``label[i]``: query pair i is in the (possibly shuffled) annotation table.
    Raises ``ValueError`` when the universe has fewer than ``held_out + 2`` proteins."""
    xr, yr = annotated_rows(cfg, store, vx, vy, task.shuffle_seed)
    ids_x = np.asarray(store.matrix(vx.matrix).ids).astype(str)
    ids_y = np.asarray(store.matrix(vy.matrix).ids).astype(str)
    ax, ay = ids_x[xr], ids_y[yr]
    universe = np.unique(np.concatenate([ax, ay]))
    H = cfg.interaction.held_out
    if universe.size < H + 2:
        raise ValueError(f"interaction.held_out: {H} proteins held out, but the annotation table names only "
                         f"{universe.size} distinct proteins (need at least held_out + 2)")
    held = np.sort(np.random.default_rng(task.pairing_seed).choice(universe, size=H, replace=False))
    hx, hy = np.isin(ax, held), np.isin(ay, held)
    train = ~hx & ~hy
    # query candidates: held-out proteins of the table's x side / y side, as rows of each variable
    if cfg.interaction.query_pairs == "all":  # every held-out protein on both sides, self pairs included
        row_of_x = {str(i): r for r, i in zip(np.asarray(vx.rows), np.asarray(vx.ids))}
        row_of_y = {str(i): r for r, i in zip(np.asarray(vy.rows), np.asarray(vy.ids))}
    else:
        row_of_x = {i: r for r, i in zip(xr, ax)}
        row_of_y = {i: r for r, i in zip(yr, ay)}
    cand_x = [i for i in held if i in row_of_x]
    cand_y = [i for i in held if i in row_of_y]
    self_ok = cfg.interaction.query_pairs == "all"
    qa = np.array([a for a in cand_x for b in cand_y if self_ok or a != b], dtype=str)
    qb = np.array([b for a in cand_x for b in cand_y if self_ok or a != b], dtype=str)
    query_x = np.array([row_of_x[a] for a in qa], dtype=np.int64)
    query_y = np.array([row_of_y[b] for b in qb], dtype=np.int64)
    annotated = set(zip(xr.tolist(), yr.tolist()))
    label = np.array([(a, b) in annotated for a, b in zip(query_x.tolist(), query_y.tolist())], dtype=bool)
    return {"train_x": xr[train], "train_y": yr[train], "query_x": query_x, "query_y": query_y,
            "label": label, "held_out": held, "n_universe": int(universe.size)}


# ----------------------------------------------------------------------- worker
def _fit_and_score(X, Y, Xq, Yq, settings, seed: int, convention: str, ids=None):
    """(scores (M,) bits, status, detail, mi, epochs, best_epoch); never raises for bad data."""
    from lmi_distributed.errors import InputError, LMIWarning
    from lmi_distributed.estimators.estimator import LMI
    from lmi_distributed.estimators.settings import SETTING_NAMES

    nan = np.full(len(Xq), np.nan)
    model = LMI(**{n: getattr(settings, n) for n in SETTING_NAMES}, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LMIWarning)
        try:
            model.fit(X, Y, ids=ids)
        except InputError as exc:
            return nan, "degenerate", f"training pairs: {exc}", float("nan"), 0, 0
        ep, best = int(model.n_epochs_), int(model.best_epoch_)
        if model.status_ != "ok":
            return nan, str(model.status_), f"training: {model.detail_}", float("nan"), ep, best
        if len(Xq) == 0:
            return nan, "no_query_pairs", "no held-out pair to score", float(model.mi_), ep, best
        try:
            scores = model.score_samples(Xq, Yq, convention=convention)
        except InputError as exc:
            return nan, "ties", f"scoring: {exc}", float(model.mi_), ep, best
    if not np.isfinite(scores).all():
        return nan, "nonfinite_scores", f"{int((~np.isfinite(scores)).sum())} score(s) not finite", \
            float(model.mi_), ep, best
    return scores, "ok", "", float(model.mi_), ep, best


def execute_split_batch(batch: Batch, cfg: StudyConfig, store_path: str, out_dir: str, *, device: str = "cpu",
                        variables: Mapping[str, Any] | None = None, worker: str | None = None, attempt: int = 0,
                        write: bool = True, on_trained: Callable[[], None] | None = None) -> list[dict]:
    """Run split tasks (the body a worker runs for ``kind == "split"``; no Ray): fit on the
    training pairs, score the held-out pairs, write the scores (bits) + query rows atomically
    (always: they are the result) and the task records as one Parquet part. Returns the records."""
    from lmi_distributed.engine.study_data import batch_fingerprint, open_store_cached, resolve_variables
    from lmi_distributed.engine.results import ResultStore

    t0 = time.perf_counter()
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    store = open_store_cached(store_path)
    tasks = list(batch.tasks)
    needed = sorted({t.x for t in tasks} | {t.y for t in tasks})
    if variables is None or any(n not in variables for n in needed):
        variables = resolve_variables(cfg, store_path, needed)
    results_store = ResultStore(out_dir, fingerprint=batch_fingerprint(cfg, store) if write else None)
    settings = cfg.estimator_settings(device)
    records = []
    for t in tasks:
        vx, vy = variables[t.x], variables[t.y]
        try:
            des = split_design(cfg, store, vx, vy, t)
        except ValueError as exc:
            des, status0, detail0 = None, "too_few_proteins", str(exc)
        min_n = settings.min_samples()
        if des is None:
            scores, qx, qy = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
            status, detail, mi, ep, best, n_train = status0, detail0, float("nan"), 0, 0, 0
        else:
            qx, qy = des["query_x"], des["query_y"]
            n_train = int(des["train_x"].size)
            if n_train < min_n:
                scores = np.full(qx.size, np.nan)
                status, detail, mi, ep, best = ("too_few_pairs", f"{n_train} training pairs; the estimator needs "
                                                f"at least {min_n}", float("nan"), 0, 0)
            else:
                mx, my = store.matrix(vx.matrix), store.matrix(vy.matrix)
                X = mx.read_rows(des["train_x"], columns=vx.columns)
                Y = my.read_rows(des["train_y"], columns=vy.columns)
                Xq = mx.read_rows(qx, columns=vx.columns) if qx.size else np.zeros((0, X.shape[1]), np.float32)
                Yq = my.read_rows(qy, columns=vy.columns) if qy.size else np.zeros((0, Y.shape[1]), np.float32)
                ids = None
                if settings.split == "ids":
                    ids = (np.asarray(mx.ids)[des["train_x"]], np.asarray(my.ids)[des["train_y"]])
                scores, status, detail, mi, ep, best = _fit_and_score(
                    X, Y, Xq, Yq, settings, t.seed, cfg.interaction.convention, ids)
        if on_trained is not None:
            on_trained()
        if write:
            results_store.write_pmi(t.key, np.asarray(scores, np.float64), qx, qy)
        records.append({
            "key": t.key, "pair": t.pair, "x": t.x, "y": t.y, "replicate": t.replicate, "kind": "split",
            "shuffle": -1, "seed": t.seed, "n": n_train, "n_test": int(qx.size), "mi": mi, "epochs": ep,
            "best_epoch": best, "latent_null": [], "batch_id": batch.batch_id, "worker": worker,
            "device": device, "attempt": int(attempt), "status": status, "detail": detail,
        })
    t_end = time.perf_counter()
    timing = {"read_s": 0.0, "train_s": t_end - t0, "null_s": 0.0}
    for r in records:
        r["wall_s"] = (t_end - t0) / max(len(records), 1)
    if write:
        part = results_store.write_part(batch.batch_id, records)
        timing["part"] = str(part) if part else ""
    for r in records:
        r["_timing"] = timing
    return records


# ------------------------------------------------------------------ aggregation
def split_metrics(scores: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall of one split (sklearn.metrics): ``auc``, ``ap``, ``ap_baseline``
    (positive rate = AP of a random ranking), curves ``fpr``/``tpr``/``precision``/``recall``
    (lists), ``n_pos``/``n_neg``, ``status``/``detail`` ("no_positives"/"no_negatives": NaN)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    label = np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    out: dict[str, Any] = {"n_pos": n_pos, "n_neg": n_neg, "auc": float("nan"), "ap": float("nan"),
                           "ap_baseline": n_pos / max(n_pos + n_neg, 1) if n_pos + n_neg else float("nan"),
                           "fpr": [], "tpr": [], "precision": [], "recall": [], "status": "ok", "detail": ""}
    if n_pos == 0 or n_neg == 0:
        out.update(status="no_positives" if n_pos == 0 else "no_negatives",
                   detail=f"{n_pos} annotated and {n_neg} unannotated held-out pairs: AUC undefined")
        return out
    fpr, tpr, _ = roc_curve(label, scores)
    prec, rec, _ = precision_recall_curve(label, scores)
    out.update(auc=float(roc_auc_score(label, scores)), ap=float(average_precision_score(label, scores)),
               fpr=fpr.tolist(), tpr=tpr.tolist(), precision=prec.tolist(), recall=rec.tolist())
    return out


def _mean_sem(v: np.ndarray) -> tuple[float, float]:
    from lmi_distributed import stats

    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    return float(v.mean()), (stats.sem(v) if v.size > 1 else float("nan"))


def aggregate_splits(cfg: StudyConfig, out_dir: str | Path, tasks) -> tuple[Any, dict[str, Any]]:
    """(splits DataFrame with ``SPLIT_COLUMNS``, summary dict) from the split task records and
    their stored scores. A split not stored is ``missing``; not ``ok`` ones have NaN AUC/AP and
    are left out of the means (``n_ok`` says how many count)."""
    import pandas as pd

    from lmi_distributed.engine.study_data import open_store_cached, resolve_variables, store_path_abs
    from lmi_distributed.engine.results import DamagedResultError, ResultStore

    planned = split_tasks(cfg)
    it = cfg.interaction
    x, y = it.pair(cfg)
    recs = {} if not len(tasks) else {r["key"]: r for r in tasks[tasks["kind"] == "split"].to_dict(orient="records")}
    rstore = ResultStore(out_dir)
    store = variables = None
    rows = []
    for t in planned:
        row: dict[str, Any] = {"split": t.replicate, "key": t.key, "n_train_pairs": 0, "n_query": 0, "n_pos": 0,
                               "n_neg": 0, "train_mi": float("nan"), "epochs": 0, "auc": float("nan"),
                               "ap": float("nan"), "ap_baseline": float("nan"), "fpr": [], "tpr": [],
                               "precision": [], "recall": []}
        r = recs.get(t.key)
        if r is None:
            row.update(status="missing", detail="split not stored; rerun to finish")
            rows.append(row)
            continue
        row.update(n_train_pairs=int(r["n"]), n_query=int(r["n_test"]), train_mi=float(r["mi"]),
                   epochs=int(r["epochs"]), status=str(r["status"]), detail=str(r["detail"] or ""))
        if store is None:
            sp = store_path_abs(cfg)
            store = open_store_cached(sp)
            variables = resolve_variables(cfg, sp, [x, y])
        try:
            des = split_design(cfg, store, variables[x], variables[y], t)
        except ValueError as exc:
            row.update(status="too_few_proteins", detail=str(exc))
            rows.append(row)
            continue
        row["ap_baseline"] = float(des["label"].mean()) if des["label"].size else float("nan")
        row.update(n_pos=int(des["label"].sum()), n_neg=int((~des["label"]).sum()))
        if row["status"] != "ok":
            rows.append(row)
            continue
        try:
            stored = rstore.read_pmi(t.key)
        except DamagedResultError as exc:
            row.update(status="damaged", detail=str(exc))
            rows.append(row)
            continue
        if not (np.array_equal(stored.get("x_rows"), des["query_x"])
                and np.array_equal(stored.get("y_rows"), des["query_y"])):
            row.update(status="damaged", detail="stored query rows differ from the split's held-out pairs "
                                                "(data or table changed?); rerun with --overwrite")
            rows.append(row)
            continue
        m = split_metrics(stored["pmi"], des["label"])
        row.update({k: m[k] for k in ("auc", "ap", "ap_baseline", "fpr", "tpr", "precision", "recall",
                                      "n_pos", "n_neg", "status", "detail")})
        rows.append(row)
    df = pd.DataFrame(rows, columns=SPLIT_COLUMNS)
    ok = df["status"] == "ok"
    auc_m, auc_s = _mean_sem(df.loc[ok, "auc"].to_numpy())
    ap_m, ap_s = _mean_sem(df.loc[ok, "ap"].to_numpy())
    base_m, _ = _mean_sem(df.loc[ok, "ap_baseline"].to_numpy())
    n_ok = int(ok.sum())
    summary = {
        "x": x, "y": y, "splits": it.splits, "held_out": it.held_out,
        "shuffle_annotations": it.shuffle_annotations, "convention": it.convention,
        "n_ok": n_ok, "status": "ok" if n_ok == it.splits else ("none_ok" if n_ok == 0 else "partial"),
        "auc_mean": auc_m, "auc_sem": auc_s, "ap_mean": ap_m, "ap_sem": ap_s, "ap_baseline_mean": base_m,
        "score_units": "bits (log density ratio, paper Algorithm 2)",
        "status_counts": {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()},
        "flagged": [{"split": int(r["split"]), "status": r["status"], "detail": r["detail"]}
                    for r in df[~ok].to_dict(orient="records")],
        "per_split": [{"split": int(r["split"]), "status": r["status"], "auc": r["auc"], "ap": r["ap"],
                       "n_pos": int(r["n_pos"]), "n_neg": int(r["n_neg"]), "n_train_pairs": int(r["n_train_pairs"])}
                      for r in df.to_dict(orient="records")],
    }
    return df, summary


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(u) for u in v]
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_interaction_outputs(cfg: StudyConfig, out_dir: str | Path, tasks, pairs, *, report: bool = True) -> dict:
    """Write ``splits.parquet``, ``interaction.json`` (+ ``interaction_mi.png``, ``interaction_roc.png``,
    ``interaction_pr.png`` when ``report``); return the summary block (``summary["interaction"]``)."""
    out = Path(out_dir)
    df, summary = aggregate_splits(cfg, out, tasks)
    tmp = out / ".tmp-splits.parquet"
    df.to_parquet(tmp, index=False)
    tmp.replace(out / "splits.parquet")
    cols = [c for c in ("pair", "status", "estimate", "sem", "shuffle_null_mean", "shuffle_null_sd", "p_shuffle",
                        "latent_null_mean", "latent_null_sd", "p_latent", "truth") if c in pairs]
    summary["mi"] = [{k: _clean(v) for k, v in r.items()} for r in pairs[cols].to_dict(orient="records")]
    if report:
        from lmi_distributed.report_interaction import plot_mi_vs_null, plot_pr, plot_roc

        figs = {"mi": plot_mi_vs_null(pairs, out / "interaction_mi.png"),
                "roc": plot_roc(df, out / "interaction_roc.png", summary),
                "pr": plot_pr(df, out / "interaction_pr.png", summary)}
        summary["figures"] = {k: p.name for k, p in figs.items() if p is not None}
    tmpj = out / ".tmp-interaction.json"
    tmpj.write_text(json.dumps(_clean(summary), indent=2))
    tmpj.replace(out / "interaction.json")
    return _clean(summary)


# ------------------------------------------------------------------ demo store
def _truth_doc(pro, demo) -> dict:
    p = demo.proteome
    return {"units": "bits", "pairs": {f"{p.x_column}~{p.y_column}": float(pro.truth_bits)},
            "note": "I(K;T) = I(F_K;F_T) of the family graph (synthetic_proteome); pair key = table columns"}


def build_proteome_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None) -> Path:
    """Write the synthetic proteome of ``demo`` (``DemoData`` of kind proteome): the embedding
    matrix (ids = protein ids) to ``store_path``, the annotation table (CSV) to
    ``demo.proteome.table``, the truth JSON to ``truth_path``. Atomic (temporary name, rename)."""
    from lmi_distributed.data import write_matrix
    from lmi_distributed.engine.synthetic_store import write_atomically, write_truth
    from lmi_distributed.synthetic_proteome import synthetic_proteome

    p = demo.proteome
    pro = synthetic_proteome(**p.generator_kwargs())

    def write(tmp: Path) -> None:
        write_matrix(str(tmp), p.matrix, pro.embedding, ids=pro.ids.tolist(),
                     provenance={"source": _SOURCE, **p.generator_kwargs()})
        _write_table(pro, p)

    final = write_atomically(store_path, write)
    write_truth(final, truth_path, _truth_doc(pro, demo))
    return final


def _write_table(pro, p) -> None:
    table = Path(p.table).expanduser()
    table.parent.mkdir(parents=True, exist_ok=True)
    tmp = table.parent / f".tmp-{uuid.uuid4().hex[:8]}-{table.name}"
    pro.table(p.x_column, p.y_column).to_csv(tmp, index=False)
    os.replace(tmp, table)


def _proteome_mismatch(store_path: Path, demo) -> str | None:
    from lmi_distributed.data import open_store
    from lmi_distributed.errors import ConfigError

    try:
        store = open_store(str(store_path))
        provs = {m: store.matrix(m).provenance for m in store.matrix_names}
    except Exception as exc:  # noqa: BLE001 - an unreadable demo store: rebuild it
        return f"it cannot be read ({type(exc).__name__}: {exc})"
    if not provs or any(pv.get("source") != _SOURCE for pv in provs.values()):
        raise ConfigError(f"data.store: {store_path} exists and is not a proteome demo store; remove data.demo "
                          "or choose another data.store")
    want = demo.proteome.generator_kwargs()
    if list(provs) != [demo.proteome.matrix]:
        return f"it holds matrices {list(provs)}, data.demo asks for [{demo.proteome.matrix!r}]"
    have = {k: provs[demo.proteome.matrix].get(k) for k in want}
    if have != want:
        return "it was generated with other parameters (" + ", ".join(
            f"{k} {have[k]} -> {want[k]}" for k in want if have[k] != want[k]) + ")"
    if not Path(demo.proteome.table).expanduser().is_file():
        return f"its annotation table {demo.proteome.table} is missing"
    return None


def ensure_proteome_store(store_path: str | os.PathLike, demo, truth_path: str | os.PathLike | None = None, *,
                          create: bool = True, log: Callable[[str], None] = print) -> bool:
    """Build the proteome demo store (and table, truth) when missing or when ``demo`` changed;
    True when it (re)built. ``create=False``: ConfigError instead of building."""
    from lmi_distributed.engine.synthetic_store import ensure_built

    return ensure_built(store_path, mismatch=lambda p: _proteome_mismatch(p, demo),
                        build=lambda p: build_proteome_store(p, demo, truth_path), label="proteome demo store",
                        describe=f"table {demo.proteome.table}, {demo.proteome.generator_kwargs()}",
                        create=create, log=log)


def interaction_problems(cfg: StudyConfig, info: Any) -> list[str]:
    """Pre-flight check against an existing store: the annotation table names enough distinct
    proteins for ``interaction.held_out`` (+ 2). ``info``: the pre-flight's resolved variables."""
    from lmi_distributed.engine.study_data import open_store_cached, store_path_abs
    from lmi_distributed.errors import LMIError

    x, y = cfg.interaction.pair(cfg)
    if x not in info.variables or y not in info.variables:
        return []  # reported by the variable checks
    store = open_store_cached(store_path_abs(cfg))
    try:
        xr, yr = annotated_rows(cfg, store, info.variables[x], info.variables[y], 0)
    except (LMIError, OSError):
        return []  # the pairing check reports it
    vx, vy = info.variables[x], info.variables[y]
    n = np.unique(np.concatenate([np.asarray(store.matrix(vx.matrix).ids)[xr].astype(str),
                                  np.asarray(store.matrix(vy.matrix).ids)[yr].astype(str)])).size
    if n < cfg.interaction.held_out + 2:
        return [f"  interaction.held_out: {cfg.interaction.held_out} proteins held out, but the annotation table "
                f"names only {n} distinct proteins of the store (need at least held_out + 2)"]
    return []


def proteome_demo_problems(cfg: StudyConfig, info: Any) -> list[str]:
    """Pre-flight checks against the proteome demo store the first run will build."""
    p = cfg.data.demo.proteome
    errs = [f"  variables[{i}].matrix: variable {v.name!r}: unknown matrix {v.matrix!r} in the demo store "
            f"(it will hold [{p.matrix!r}])" for i, v in enumerate(cfg.variables) if v.matrix != p.matrix]
    errs += [f"  variables[{i}].columns: variable {v.name!r}: column block [{v.columns[0]}, {v.columns[1]}) "
             f"outside the demo embedding's {p.d} columns"
             for i, v in enumerate(cfg.variables) if v.columns is not None and v.columns[1] > p.d]
    if cfg.interaction is not None and cfg.interaction.held_out + 2 > p.n_proteins:
        errs.append(f"  interaction.held_out: {cfg.interaction.held_out} held out of a demo proteome of "
                    f"{p.n_proteins} proteins")
    info.notes.append(f"store {cfg.data.store} not built yet: it is built on the first run")
    return errs
