"""`lmi-distributed plan CONFIG`: check a study and print its tasks, batches and a cost estimate (no Ray).

The checks are the pre-flight of ``run`` (``engine.preflight``): the same mistake gives the same
error from both, and nothing is written.
"""
from __future__ import annotations


def _plan(args) -> int:
    from lmi_distributed.cli.run import load_from_args
    from lmi_distributed.engine.study_data import out_dir_abs
    from lmi_distributed.engine.planner import format_plan, plan_study
    from lmi_distributed.engine.preflight import preflight
    from lmi_distributed.engine.results import ResultStore

    cfg = load_from_args(args)
    info = preflight(cfg, data=not args.no_data)
    if info.shapes:
        plan = plan_study(cfg, lambda x, y: info.shapes[(x, y)])
    elif cfg.data.demo is not None:
        dm = cfg.data.demo
        plan = plan_study(cfg, lambda x, y: (dm.n, dm.d, dm.d))
    else:
        plan = plan_study(cfg)
    print(format_plan(plan, cfg, n_workers=args.workers, gpu=args.gpu))
    for note in info.notes:
        print(f"  ({note})")
    done = ResultStore(out_dir_abs(cfg)).finished_keys()
    if done:
        left = sum(1 for t in plan.tasks if t.key not in done)
        print(f"  already done in {out_dir_abs(cfg)}: {len(plan.tasks) - left} task(s); {left} left")
    if args.tasks:
        for b in plan.batches:
            print(f"  {b.batch_id}: " + ", ".join(f"{t.key} (seed {t.seed})" for t in b.tasks))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="check a study and print its plan: tasks, batches, cost estimate",
                              description="Check a study (the pre-flight of `run`) and print its plan "
                                          "without running it (no Ray needed).")
    p.add_argument("config", help="study YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--output", default=None, help="shorthand for --set output.path=DIR")
    p.add_argument("--workers", type=int, default=None, help="workers to assume for the time estimate")
    p.add_argument("--gpu", action="store_true", help="assume GPU workers for the time estimate")
    p.add_argument("--tasks", action="store_true", help="list every batch with its task keys and seeds")
    p.add_argument("--no-data", action="store_true", help="do not open the store (shapes unknown)")
    p.set_defaults(func=_plan)
