"""`lmi-distributed status OUTPUT`: where a study's output folder stands (read-only, no Ray).

Example::

    lmi-distributed status results/demo
    lmi-distributed status results/demo --json
"""
from __future__ import annotations

import argparse
import json


def _status(args: argparse.Namespace) -> int:
    from lmi_distributed.engine.status import format_status, study_status

    st = study_status(args.output)
    print(json.dumps(st, indent=2, default=str) if args.json else format_status(st))
    return 0


def register(subparsers) -> None:
    """Add the ``status`` subcommand."""
    p = subparsers.add_parser(
        "status", help="show a study output folder: tasks planned/stored/failed, damage, a run in progress, ETA",
        description="Show where a study's output folder stands, read-only and without Ray: study name and "
                    "fingerprint, tasks planned (from the config in study.json), stored, failed, damaged "
                    "parts, whether a run holds the folder's lock (alive or stale) and, if one runs, an ETA "
                    "from the parts it wrote.",
        epilog="example: lmi-distributed status results/demo --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", help="the study's output folder (output.path)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_status)
