"""Run a study (default: configs/demo.yaml) on the Ray cluster this job was started in.

    ray job submit --working-dir . -- python jobs/all_pairs.py --config configs/demo.yaml
    python jobs/all_pairs.py                     # no cluster: an embedded local Ray

Under ``ray job submit`` RAY_ADDRESS is set and the job connects to its cluster
(``ray.init(address="auto")``); otherwise it starts a local Ray.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from lmi_distributed.cli.main import user_error_message
    from lmi_distributed.cli.run import add_run_arguments, load_from_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"), help="study YAML (default: the demo)")
    add_run_arguments(p)
    args = p.parse_args(argv)
    try:
        cfg = load_from_args(args)
        from lmi_distributed.engine.runner import main_exit_code, run_study

        address = args.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
        # run_study runs the pre-flight checks before Ray starts and takes the output folder's lock
        summary = run_study(cfg, address=address, num_cpus=args.num_cpus, overwrite=args.overwrite,
                            progress_every=args.progress_every, max_batches=args.max_batches,
                            force_unlock=args.force_unlock)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a user's mistake
        msg = user_error_message(exc)
        if msg is None or os.environ.get("LMI_DEBUG"):
            raise
        print(f"all_pairs: error: {msg}", file=sys.stderr)
        return 2
    rows = summary.get("pairs", [])
    if rows:
        has_truth = any(r.get("truth") is not None for r in rows)
        print(f"\n{'pair':<14}{'estimate':>9}{'sem':>8}" + (f"{'truth':>8}" if has_truth else "")
              + f"{'p':>8}{'q':>8}  sig")
        for r in rows:
            f = lambda v, w=8: f"{v:>{w}.3f}" if isinstance(v, (int, float)) else f"{'–':>{w}}"  # noqa: E731
            print(f"{r['pair']:<14}{f(r.get('estimate'), 9)}{f(r.get('sem'))}"
                  + (f(r.get("truth")) if has_truth else "") + f"{f(r.get('p'))}{f(r.get('q'))}  "
                  + ("*" if r.get("significant") else ""))
    run = summary.get("run", {})
    print(json.dumps({"out_dir": summary.get("out_dir"), "wall_s": run.get("wall_s"),
                      "complete": run.get("complete"), "workers": run.get("workers"), "device": run.get("device")}))
    return main_exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
