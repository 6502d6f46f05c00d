"""`lmi-distributed plan CONFIG`: print the study's tasks, batches and a cost estimate (no Ray)."""
from __future__ import annotations


def _plan(args) -> int:
    from lmi_distributed.engine.config import load_study
    from lmi_distributed.engine.planner import format_plan, plan_study

    overrides = list(args.overrides or [])
    cfg = load_study(args.config, overrides)
    plan = None
    note = ""
    if not args.no_data:
        try:

            import os
            from lmi_distributed.engine.execute import pair_shape, resolve_variables, store_path_abs

            sp = store_path_abs(cfg)
            if os.path.exists(sp):
                variables = resolve_variables(cfg, sp)
                plan = plan_study(cfg, lambda x, y: pair_shape(cfg, sp, variables, x, y))
            else:
                note = f"  (store {sp} not built yet: shapes unknown" + (
                    "; it is built on the first run)" if cfg.data.demo else ")")
        except ImportError as exc:
            note = f"  (data layer unavailable: {exc})"
    if plan is None and cfg.data.demo is not None:
        dm = cfg.data.demo
        plan = plan_study(cfg, lambda x, y: (dm.n, dm.d, dm.d))
    if plan is None:
        plan = plan_study(cfg)
    from lmi_distributed.engine.results import ResultStore
    from lmi_distributed.engine.execute import out_dir_abs

    print(format_plan(plan, cfg, n_workers=args.workers, gpu=args.gpu))
    if note:
        print(note)
    done = ResultStore(out_dir_abs(cfg)).finished_keys()
    if done:
        left = sum(1 for t in plan.tasks if t.key not in done)
        print(f"  already done in {out_dir_abs(cfg)}: {len(plan.tasks) - left} task(s); {left} left")
    if args.tasks:
        for b in plan.batches:
            print(f"  {b.batch_id}: " + ", ".join(f"{t.key} (seed {t.seed})" for t in b.tasks))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="print a study's plan: tasks, batches, cost estimate",
                              description="Print a study's plan without running it (no Ray needed).")
    p.add_argument("config", help="study YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--workers", type=int, default=None, help="workers to assume for the time estimate")
    p.add_argument("--gpu", action="store_true", help="assume GPU workers for the time estimate")
    p.add_argument("--tasks", action="store_true", help="list every batch with its task keys and seeds")
    p.add_argument("--no-data", action="store_true", help="do not open the store (shapes unknown)")
    p.set_defaults(func=_plan)
