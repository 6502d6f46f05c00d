"""Study engine: config -> plan -> batches -> Ray worker actors -> result store -> aggregation.

Importing this package does not import ray; only ``engine.runner`` does (lazily, on use).

    from lmi_distributed.engine import load_study, run_study
    summary = run_study(load_study("configs/demo.yaml"))
"""
from __future__ import annotations

from lmi_distributed.engine.config import StudyConfig, load_study, parse_study
from lmi_distributed.engine.planner import Batch, Plan, Task, make_batches, make_tasks, plan_study
from lmi_distributed.engine.seeds import derive_seed

__all__ = ["StudyConfig", "load_study", "parse_study", "Task", "Batch", "Plan", "make_tasks",
           "make_batches", "plan_study", "derive_seed", "run_study"]


def run_study(*args, **kwargs):
    """See :func:`lmi_distributed.engine.runner.run_study` (imports ray)."""
    from lmi_distributed.engine.runner import run_study as _run

    return _run(*args, **kwargs)
