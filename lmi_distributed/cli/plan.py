"""`lmi-distributed plan CONFIG`: check a study and print its tasks, batches and wall time (no Ray).

The checks are the pre-flight of ``run`` (``engine.preflight``): the same mistake gives the same
error from both, and nothing is written. The wall time (``engine.costs``): expected and upper
bound, from the cached calibration of this machine when there is one (``--calibrate`` makes it:
tens of seconds of the study's first shape through the estimator, plus a pilot of its first batch
when the store exists), and from the study's finished tasks when some are done.
"""
from __future__ import annotations

import os


def _plan(args) -> int:
    from lmi_distributed.cli.run import load_from_args
    from lmi_distributed.engine.costs import calibrate, done_epochs, load_calibration, predict
    from lmi_distributed.engine.planner import format_plan, plan_study
    from lmi_distributed.engine.preflight import preflight
    from lmi_distributed.engine.study_data import out_dir_abs

    cfg = load_from_args(args)
    info = preflight(cfg, data=not args.no_data)
    if info.shapes:
        plan = plan_study(cfg, lambda x, y: info.shapes[(x, y)])
    elif cfg.data.demo is not None:
        dm = cfg.data.demo
        plan = plan_study(cfg, lambda x, y: (dm.n, dm.d, dm.d))
    else:
        plan = plan_study(cfg)
    pred = None
    cal_line = ""
    if not args.gpu:
        cal = None
        known = any(b.shape[0] for b in plan.batches)
        if args.calibrate and known:
            cal = calibrate(cfg, plan, pilot=not args.no_pilot, log=lambda m: print(f"  [calibrate] {m}", flush=True))
            cal_line = f"  calibration: measured in {cal['seconds']:.0f} s, cached in {cal.get('path', '-')}"
        elif not args.no_calibration and known:
            cal = load_calibration(cfg, plan, pilot=not args.no_pilot)
            cal_line = (f"  calibration: cached {cal.get('created', '?')} (--calibrate to measure again)" if cal
                        else "  calibration: none cached for these shapes/settings (--calibrate measures "
                             "this machine in tens of seconds)")
        done = done_epochs(out_dir_abs(cfg), [t.key for t in plan.tasks])
        load = float(args.load) if args.load is not None else os.getloadavg()[0]
        pred = predict(plan, cfg, workers=args.workers, cores=args.cores, calibration=cal, done=done, load=load)
    print(format_plan(plan, cfg, n_workers=args.workers, gpu=args.gpu, prediction=pred))
    if cal_line:
        print(cal_line)
    for note in info.notes:
        print(f"  ({note})")
    from lmi_distributed.engine.results import ResultStore

    done_keys = ResultStore(out_dir_abs(cfg)).finished_keys()
    if done_keys:
        left = sum(1 for t in plan.tasks if t.key not in done_keys)
        print(f"  already done in {out_dir_abs(cfg)}: {len(plan.tasks) - left} task(s); {left} left")
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump({"study": cfg.name, "tasks": len(plan.tasks), "batches": len(plan.batches),
                       "prediction": pred.to_dict() if pred else None}, fh, indent=1)
    if args.tasks:
        for b in plan.batches:
            print(f"  {b.batch_id}: " + ", ".join(f"{t.key} (seed {t.seed})" for t in b.tasks))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="check a study and print its plan: tasks, batches, wall time",
                              description="Check a study (the pre-flight of `run`) and print its plan "
                                          "and expected wall time without running it (no Ray needed).")
    p.add_argument("config", help="study YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--output", default=None, help="shorthand for --set output.path=DIR")
    p.add_argument("--workers", type=int, default=None, help="workers to assume for the time estimate")
    p.add_argument("--cores", type=int, default=None, help="CPU cores of the local Ray (default: this machine's)")
    p.add_argument("--load", type=float, default=None,
                   help="load of other processes on those cores (default: the 1-minute load average)")
    p.add_argument("--gpu", action="store_true", help="assume GPU workers for the time estimate (rough)")
    p.add_argument("--calibrate", action="store_true",
                   help="time this machine on the study's first shape(s) (tens of seconds) and cache it")
    p.add_argument("--no-pilot", action="store_true",
                   help="with --calibrate: skip training the first batch to its early stop (epochs from the prior)")
    p.add_argument("--no-calibration", action="store_true", help="ignore a cached calibration (default coefficients)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the prediction as JSON")
    p.add_argument("--tasks", action="store_true", help="list every batch with its task keys and seeds")
    p.add_argument("--no-data", action="store_true", help="do not open the store (shapes unknown)")
    p.set_defaults(func=_plan)
