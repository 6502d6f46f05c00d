"""Where a study's output folder stands, read-only and without Ray (``lmi-distributed status``).

``study_status(out_dir)`` reads ``study.json`` (the study's config and fingerprint), the stored
task parts (``ResultStore``: finished, damaged), the failure records (``engine.failures``) and
the run lock (``runner.StudyLock``'s ``.lmi-run.lock``), and returns one JSON-able dict. Nothing
is moved, repaired or rewritten. ``load_output_study(out_dir)`` is the shared first step of
``status`` and ``report``: the stored config, validated, or one clear error.

Planned task keys come from the config alone (``aggregate.plan_keys``: keys do not depend on
shapes), so they are counted even when the data store is gone; the store is only opened to say
whether it is there and whether its matrices are still the ones the results were computed from.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lmi_distributed.errors import ConfigError, DataError

__all__ = ["load_output_study", "lock_state", "study_status", "format_status"]

#: estimator settings the engine sets per worker; in study.json's config dump, never settable
_ENGINE_OWNED = ("device", "num_threads")


def load_output_study(out_dir: str | os.PathLike) -> tuple[dict, Any]:
    """(study.json as a dict, its ``StudyConfig``) of a study output folder.

    DataError when the folder does not exist, is not a study output (no ``study.json``) or its
    ``study.json`` is damaged; ConfigError when the stored config does not validate (written by
    another version)."""
    from lmi_distributed.engine.config import parse_study

    root = Path(out_dir)
    if not root.exists():
        raise DataError(f"{root}: no such study output folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (give the study's output.path)")
    meta_path = root / "study.json"
    if not meta_path.is_file():
        raise DataError(f"{root}: not a study output folder (no study.json; has `lmi-distributed run` "
                        "written there?)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{meta_path}: not readable JSON ({exc}); the next `run` checks the stored parts "
                        "and rewrites it") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise DataError(f"{meta_path}: no study config in it (damaged?)")
    raw = json.loads(json.dumps(meta["config"]))
    est = raw.get("estimator")
    if isinstance(est, dict):
        # StudyConfig.model_dump() writes the engine-owned settings (set per worker from
        # ``resources``) that a study may not set: drop them to parse the dump back
        for k in _ENGINE_OWNED:
            est.pop(k, None)
    try:
        cfg = parse_study(raw, source=str(meta_path))
    except ConfigError as exc:
        raise ConfigError(f"the config stored in {meta_path} does not validate with this version: {exc}") from None
    if meta.get("fingerprint") and cfg.fingerprint() != meta["fingerprint"]:
        raise ConfigError(f"the config stored in {meta_path} does not reproduce its fingerprint "
                          f"({cfg.fingerprint()} != {meta['fingerprint']}); written by another version?")
    return meta, cfg


def lock_state(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The run lock of ``out_dir``: ``{"held": False}`` without one, else holder host, pid,
    start (epoch seconds and ISO), heartbeat age, and ``alive`` (False with ``stale_reason`` when
    a new run would take it over: ``runner.StudyLock``'s own rule)."""
    from lmi_distributed.engine.runner import StudyLock

    lock = StudyLock(out_dir, log=lambda m: None)  # constructing it touches nothing
    old = lock._read()
    if old is None:
        return {"held": False}
    try:
        age = time.time() - os.path.getmtime(lock.path)
    except OSError:
        return {"held": False}
    why = lock._stale_reason(old)
    return {"held": True, "path": lock.path, "host": old.get("host"), "pid": old.get("pid"),
            "started": old.get("started"), "started_iso": old.get("started_iso"),
            "heartbeat_age_s": round(age, 1), "alive": why is None, "stale_reason": why}


def _store_state(cfg: Any, meta: dict) -> dict[str, Any]:
    """Whether the study's data store is there and its matrices are those of ``study.json``."""
    from lmi_distributed.engine.study_data import data_identity, store_path_abs
    from lmi_distributed.engine.results import _identity_changes

    path = store_path_abs(cfg)
    out: dict[str, Any] = {"path": path}
    if not os.path.exists(path):
        out.update(available=False, why="does not exist"
                   + (" (a demo store is built by `run`)" if cfg.data.demo is not None else ""))
        return out
    try:
        from lmi_distributed.data import open_store

        ident = data_identity(cfg, open_store(path))
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable now"; status says why
        out.update(available=False, why=f"cannot be read ({type(exc).__name__}: {exc})")
        return out
    changes = _identity_changes(meta.get("data_identity"), ident)
    out.update(available=True, data_changed=changes)
    return out


def study_status(out_dir: str | os.PathLike, *, now: float | None = None) -> dict[str, Any]:
    """A read-only report of a study output folder (see the module docstring); JSON types only.

    Keys: ``study``, ``out_dir``, ``fingerprint``, ``study_fingerprint``, ``tasks_planned``,
    ``tasks_stored`` (of the current plan), ``tasks_stored_other`` (stored keys no longer planned),
    ``task_status`` (status counts of the stored planned tasks), ``tasks_failed`` + ``failed``
    (failure records), ``tasks_left``, ``damaged_parts`` ([{path, why}]), ``store``, ``lock``,
    ``running``, ``eta_s`` / ``rate_tasks_per_s`` (None unless running and measurable),
    ``outputs`` (whether summary.json exists and how many tasks it covered).
    """
    from lmi_distributed.engine.aggregate import plan_keys
    from lmi_distributed.engine.failures import read_failed
    from lmi_distributed.engine.results import ResultStore

    now = time.time() if now is None else now
    meta, cfg = load_output_study(out_dir)
    root = Path(out_dir).resolve()
    keys = plan_keys(cfg)
    keyset = set(keys)
    rs = ResultStore(root)
    good = rs.good_parts()
    stored_all: set[str] = set()
    part_keys: list[tuple[Path, list[str]]] = []
    for p, t in good:
        ks = t.column("key").to_pylist()
        part_keys.append((p, ks))
        stored_all.update(ks)
    stored = stored_all & keyset
    tasks = rs.read_tasks(keys=keys)
    task_status = {str(k): int(v) for k, v in tasks["status"].value_counts().sort_index().items()} if len(tasks) else {}
    failed = read_failed(root, stored_all)
    failed = failed[failed["key"].isin(keyset)] if len(failed) else failed
    failed_batches: dict[str, dict[str, Any]] = {}
    for r in failed.to_dict(orient="records"):
        b = failed_batches.setdefault(str(r.get("batch_id")), {"batch_id": str(r.get("batch_id")), "tasks": 0,
                                                              "detail": str(r.get("detail") or "")})
        b["tasks"] += 1
    damaged = [{"path": str(p), "why": why} for p, why in rs.damaged_parts()]
    lock = lock_state(root)
    running = bool(lock.get("held") and lock.get("alive"))
    left = len(keyset - stored)
    rate = eta = None
    if running and isinstance(lock.get("started"), (int, float)):
        # tasks finished by this run: rows of the parts written since it started
        since = float(lock["started"])
        done_now = 0
        for p, ks in part_keys:
            try:
                if p.stat().st_mtime >= since:
                    done_now += len(set(ks) & keyset)
            except OSError:
                continue
        elapsed = now - since
        if done_now > 0 and elapsed > 0:
            rate = done_now / elapsed
            eta = left / rate
    outputs: dict[str, Any] = {"summary": (root / "summary.json").is_file()}
    if outputs["summary"]:
        try:
            s = json.loads((root / "summary.json").read_text())
            outputs["tasks_covered"] = int(s.get("n_tasks", 0))
            outputs["up_to_date"] = outputs["tasks_covered"] == len(stored)
        except (OSError, ValueError, TypeError):
            outputs["up_to_date"] = False
    return {
        "study": cfg.name, "out_dir": str(root), "fingerprint": meta.get("fingerprint"),
        "study_fingerprint": meta.get("study_fingerprint"), "tasks_planned": len(keys),
        "tasks_stored": len(stored), "tasks_stored_other": len(stored_all - keyset), "task_status": task_status,
        "tasks_failed": int(len(failed)), "failed": list(failed_batches.values()), "tasks_left": left,
        "damaged_parts": damaged, "store": _store_state(cfg, meta), "lock": lock, "running": running,
        "rate_tasks_per_s": None if rate is None else round(rate, 4),
        "eta_s": None if eta is None else round(eta, 1), "outputs": outputs,
    }


def _dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def format_status(st: dict[str, Any]) -> str:
    """The human-readable lines of ``study_status``'s dict."""
    lines = [f"study {st['study']!r} in {st['out_dir']}",
             f"  fingerprint {st['fingerprint']} (study fingerprint {st['study_fingerprint']})"]
    stat = ", ".join(f"{k} {v}" for k, v in st["task_status"].items())
    lines.append(f"  tasks: {st['tasks_stored']}/{st['tasks_planned']} stored"
                 + (f" ({stat})" if stat else "") + f", {st['tasks_left']} left, {st['tasks_failed']} failed")
    if st["tasks_stored_other"]:
        lines.append(f"  {st['tasks_stored_other']} stored task(s) are no longer in the plan (ignored)")
    for f in st["failed"][:10]:
        lines.append(f"  failed batch {f['batch_id']} ({f['tasks']} task(s)): {f['detail']}")
    if st["damaged_parts"]:
        lines.append(f"  damaged: {len(st['damaged_parts'])} part(s), skipped; the next run moves them to "
                     "damaged/ and recomputes their tasks")
        for d in st["damaged_parts"][:10]:
            lines.append(f"    {d['path']}: {d['why']}")
    else:
        lines.append("  damaged: none")
    store = st["store"]
    if not store.get("available"):
        lines.append(f"  store {store['path']}: unavailable ({store.get('why')}); counts above are from "
                     "the output folder only")
    elif store.get("data_changed"):
        lines.append(f"  store {store['path']}: input data changed since these results: "
                     + "; ".join(store["data_changed"]) + " (a run would refuse to resume without --overwrite)")
    else:
        lines.append(f"  store {store['path']}: available, same input data")
    lock = st["lock"]
    if not lock.get("held"):
        lines.append("  run: none in progress")
    else:
        who = f"host {lock.get('host')}, pid {lock.get('pid')}, started {lock.get('started_iso')}"
        if lock.get("alive"):
            eta = st.get("eta_s")
            lines.append(f"  run: in progress ({who}; heartbeat {lock['heartbeat_age_s']:.0f}s ago); "
                         + (f"{st['rate_tasks_per_s']:.3g} tasks/s, ETA {_dur(eta)}" if eta is not None
                            else "ETA unknown (no task finished yet in this run)"))
        else:
            lines.append(f"  run: stale lock ({who}): {lock.get('stale_reason')}; the next run takes it over")
    out = st["outputs"]
    if not out.get("summary"):
        lines.append("  outputs: no summary.json yet (`lmi-distributed report` writes it from the stored tasks)")
    elif not out.get("up_to_date"):
        lines.append(f"  outputs: summary.json covers {out.get('tasks_covered', '?')} task(s), "
                     f"{st['tasks_stored']} stored now: `lmi-distributed report` rewrites it")
    else:
        lines.append("  outputs: summary.json is up to date")
    return "\n".join(lines)
