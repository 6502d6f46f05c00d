"""Sample tasks of the BMI benchmark (PyPI ``benchmark-mi``; Czyz et al. 2023, "Beyond Normal")
to .npz files, for ``jobs/benchmark_accuracy.py --bmi DIR``. Runs in ``.venv-bmi`` (JAX), built by
``jobs/setup_bmi_venv.sh``; imports nothing from lmi_distributed.

Each file ``DIR/{task_id}__seed{s}.npz`` holds ``X`` (n, dim_x), ``Y`` (n, dim_y) float64,
``truth_nats`` (BMI's ground truth), ``truth_bits`` (= truth_nats / ln 2), ``task_id``,
``task_name``, ``seed``.

    .venv-bmi/bin/python jobs/bmi_sample.py --out runs/bmi_tasks            # the 2-pair 25x25 tasks
    .venv-bmi/bin/python jobs/bmi_sample.py --out DIR --tasks all --n 5000 --seeds 3
    .venv-bmi/bin/python jobs/bmi_sample.py --list
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

#: the "sparse" selection: BMI's 25 x 25 tasks with 2 interacting pairs, plain and transformed
SPARSE25 = ("multinormal-sparse-25-25-2-2.0", "normal_cdf-multinormal-sparse-25-25-2-2.0",
            "half_cube-multinormal-sparse-25-25-2-2.0", "spiral-multinormal-sparse-25-25-2-2.0",
            "spiral-normal_cdf-multinormal-sparse-25-25-2-2.0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for the .npz files")
    ap.add_argument("--tasks", default="sparse25",
                    help="'sparse25' (default), 'all', or a comma list of BMI task ids")
    ap.add_argument("--n", type=int, default=5000, help="samples per task and seed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..seeds-1 (one file each)")
    ap.add_argument("--list", action="store_true", help="print the task ids, names and truths, and exit")
    a = ap.parse_args(argv)
    import bmi

    tasks = bmi.BENCHMARK_TASKS
    if a.list:
        for tid, t in tasks.items():
            print(f"{tid:<52} {t.dim_x:>3} x {t.dim_y:<3} {t.mutual_information / math.log(2):6.3f} bits  {t.name}")
        return 0
    if a.out is None:
        ap.error("--out is required (or --list)")
    ids = list(tasks) if a.tasks == "all" else list(SPARSE25) if a.tasks == "sparse25" else \
        [t.strip() for t in a.tasks.split(",") if t.strip()]
    unknown = [t for t in ids if t not in tasks]
    if unknown:
        ap.error(f"unknown BMI task ids {unknown}; see --list")
    a.out.mkdir(parents=True, exist_ok=True)
    for tid in ids:
        t = tasks[tid]
        for s in range(a.seeds):
            X, Y = t.sample(a.n, seed=s)
            X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
            nats = float(t.mutual_information)
            np.savez(a.out / f"{tid}__seed{s}.npz", X=X, Y=Y, truth_nats=nats, truth_bits=nats / math.log(2),
                     task_id=tid, task_name=t.name, seed=s)
        print(f"{tid}: {a.seeds} x {X.shape} + {Y.shape[1]}, truth {nats / math.log(2):.3f} bits", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
