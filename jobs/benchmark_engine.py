"""Engine overhead on a study of many small pairs (default 55: all pairs of 11 variables).

    python jobs/benchmark_engine.py                    # embedded local Ray, 2 CPUs
    ray job submit --working-dir . -- python jobs/benchmark_engine.py

By default each pair is a tiny LMI estimate (n=300, d=4, hidden 8, <=10 epochs, 10 latent
permutations), so the engine's own costs are as visible as they get; ``--n --d --hidden
--max-epochs`` make the pairs larger. Reported:
- ``compute_s``: time workers spent training + KSG/nulls (sum over batches);
- ``io_s``: time workers spent reading rows and writing pMI / Parquet parts;
- ``overhead_fraction_steady`` = 1 - compute_s / (workers x (execute wall - actor start-up)):
  scheduling, transfers, I/O and end-of-run idling once the actors are up;
- ``overhead_fraction_execute`` = 1 - compute_s / (workers x execute wall): the share of
  worker time not spent estimating (scheduling, transfers, I/O, actor start-up, idling at the end);
- ``overhead_fraction_total`` = the same over the whole run (Ray start, planning, aggregation,
  report included).
Prints a table and writes jobs/results/benchmark_engine.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variables", type=int, default=11, help="T variables -> T(T-1)/2 pairs (default 11 -> 55)")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--d", type=int, default=4)
    p.add_argument("--pairs-per-batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=8, help="hidden width of each pair's networks")
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded local Ray")
    p.add_argument("--workdir", default=None, help="where the store and results go (default: a temp dir)")
    p.add_argument("--out", default=str(ROOT / "jobs" / "results" / "benchmark_engine.json"))
    args = p.parse_args(argv)

    import ray

    from lmi_distributed.engine.config import parse_study
    from lmi_distributed.engine.runner import connect_ray, run_study

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lmi_bench_engine_"))
    raw = {
        "name": "bench-engine", "seed": 0,
        "description": "engine overhead: many tiny pairs",
        "data": {"store": str(work / "store.zarr"), "truth": str(work / "truth.json"),
                 "demo": {"n": args.n, "t": args.variables, "k": 1, "d": args.d, "rho": 0.8, "seed": 0}},
        "variables": [f"X{i}" for i in range(args.variables)],
        "pairs": {"all_pairs_of": "all"}, "replicates": 1,
        "nulls": {"retrain_shuffles": 0, "latent_permutations": 10},
        "estimator": {"hidden": args.hidden, "max_epochs": args.max_epochs, "patience": 5,
                      "batch_size": 64, "lr": 1e-3},
        "resources": {"workers": "auto", "torch_threads": 1, "pairs_per_batch": args.pairs_per_batch},
        "output": {"path": str(work / "out"), "report": False},
    }
    cfg = parse_study(raw)
    t0 = time.perf_counter()
    connect_ray(None, args.num_cpus)
    t_ray = time.perf_counter() - t0
    summary = run_study(cfg, overwrite=True, progress_every=30, shutdown=False)
    total = time.perf_counter() - t0
    run = summary["run"]
    ray.shutdown()
    w = max(1, int(run.get("workers", 1)))
    res = {
        "pairs": summary["n_pairs"], "tasks": run["tasks_run"], "batches": run["batches_run"], "workers": w,
        "device": run.get("device"), "n": args.n, "d": args.d, "pairs_per_batch": args.pairs_per_batch,
        "ray_start_s": round(t_ray, 3), "prepare_s": run["prepare_s"], "execute_s": run["execute_s"],
        "total_s": round(total, 3), "compute_s": run["compute_s"], "io_s": run["io_s"],
        "actors_start_s": run.get("actors_start_s", 0.0),
        "overhead_fraction_execute": round(1 - run["compute_s"] / (w * run["execute_s"]), 4),
        "overhead_fraction_steady": round(
            1 - run["compute_s"] / (w * (run["execute_s"] - run.get("actors_start_s", 0.0))), 4),
        "overhead_fraction_total": round(1 - run["compute_s"] / (w * total), 4),
        "io_fraction_execute": round(run["io_s"] / (w * run["execute_s"]), 4),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    print("\nengine overhead, study of {pairs} small pairs ({tasks} tasks, {batches} batches, {workers} {device} workers)"
          .format(**res))
    for k in ("ray_start_s", "prepare_s", "actors_start_s", "execute_s", "total_s", "compute_s", "io_s",
              "overhead_fraction_steady", "overhead_fraction_execute", "io_fraction_execute", "overhead_fraction_total"):
        print(f"  {k:<28}{res[k]:>10}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
