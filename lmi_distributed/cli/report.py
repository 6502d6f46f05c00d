"""`lmi-distributed report OUTPUT`: re-aggregate the stored task records (no retraining, no Ray).

Rewrites pairs.parquet, summary.json (and heatmap.png, report.html when the study's
``output.report`` is on) from ``tasks/`` and ``failed/`` with the config stored in study.json,
exactly as the end of ``run`` does. Refused while a run holds the folder's lock.

Example::

    lmi-distributed report results/demo
"""
from __future__ import annotations

import argparse


def _report(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from lmi_distributed.engine.aggregate import plan_keys, write_outputs
    from lmi_distributed.engine.failures import read_failed
    from lmi_distributed.engine.results import ResultStore
    from lmi_distributed.engine.runner import StudyLock
    from lmi_distributed.engine.status import load_output_study, lock_state
    from lmi_distributed.errors import LMIError

    out_dir = args.output
    _, cfg = load_output_study(out_dir)
    lock = lock_state(out_dir)
    if lock.get("held") and lock.get("alive"):
        raise LMIError(f"{out_dir}: a run is in progress (host {lock.get('host')}, pid {lock.get('pid')}, "
                       f"started {lock.get('started_iso')}); it rewrites the outputs when it ends. "
                       "Use `lmi-distributed status` to follow it")
    notes: list[str] = []
    # hold the lock while rewriting, so a run cannot start halfway through
    with StudyLock(out_dir, log=notes.append).acquire():
        rs = ResultStore(out_dir)
        keys = plan_keys(cfg)
        tasks = rs.read_tasks(keys=keys)
        damaged = rs.damaged_parts()
        old = {}
        sp = Path(out_dir) / "summary.json"
        if sp.is_file():
            try:
                old = json.loads(sp.read_text()).get("run", {}) or {}
            except (OSError, ValueError, AttributeError):
                old = {}
        run_info = dict(old, complete=len(tasks) == len(keys),
                        reported_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        summary = write_outputs(cfg, out_dir, tasks, run_info=run_info, report=cfg.output.report, keys=keys,
                                study_fingerprint=rs.fingerprint,
                                failed=read_failed(out_dir, set(tasks["key"]) if len(tasks) else set()))
    for n in notes:
        print(n)
    files = "pairs.parquet, summary.json" + (", heatmap.png, report.html" if cfg.output.report else "")
    print(f"wrote {files} in {out_dir} from {len(tasks)}/{len(keys)} stored task(s); "
          f"{summary.get('n_significant', 0)} significant pair(s); q-values {summary.get('q_values')}")
    if damaged:
        print(f"note: {len(damaged)} damaged part(s) skipped (the next run moves them aside and recomputes "
              "their tasks); see `lmi-distributed status`")
    return 0


def register(subparsers) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report", help="rewrite pairs.parquet, summary.json, heatmap.png, report.html from stored results",
        description="Re-aggregate a study's stored task records with the config stored in study.json and "
                    "rewrite pairs.parquet, summary.json, heatmap.png and report.html, without retraining "
                    "and without Ray. Refused while a run holds the output folder's lock.",
        epilog="example: lmi-distributed report results/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", help="the study's output folder (output.path)")
    p.set_defaults(func=_report)
