"""Benchmark the latent permutation null: permutations per second, ours vs latentmi's KSG.

Same data, same run: for each N, correlated Gaussian latents (8 dims each, per-dim correlation
0.6, as ``jobs/benchmark_ksg.py``), k = 3, and

- ours, ``method="lists"`` (default on the CPU): sorted marginal lists built once
  (``neighbors.permuted.MarginalLists``), then ``--permutations`` permutations; the rate is
  given with the one-off set-up included and without it;
- ours, ``method="loop"``: one tree-backend KSG per permutation (the path before the lists),
  ``--loop-permutations`` of them; its nulls must equal the first ones of "lists" bit for bit;
- latentmi 0.1.3 (no latent-permutation null of its own): ``ksg.mi(x, y[π])`` per permutation,
  in its venv (``.venv-latentmi``) as a subprocess, its ``add_noise`` monkeypatched to the
  identity so that both sides run without noise; the same permutations; its nulls agree with
  ours to float rounding (it counts with ``<= eps − 1e-15``, we count ``< eps`` exactly).

Wall and process CPU time (all numba threads together; latentmi is single-threaded), excluding
imports and numba compilation (a warm-up call runs first); "lists" (set-up and whole null) is
the best of ``--repeats`` runs (all wall times in ``lists_s_all``). The machine may be shared:
the load average before and after each N is recorded. Prints a table, writes JSON (default
``jobs/results/benchmark_permutation.json``).

    nice -n 5 python jobs/benchmark_permutation.py --sizes 500 1000 2000 5000 --permutations 1000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "jobs"))

from benchmark_ksg import gaussian_latents, latentmi_subprocess, print_table  # noqa: E402  (jobs/)
from lmi_distributed.estimators.neighbors import permuted, tree  # noqa: E402
from lmi_distributed.estimators.permutation import (  # noqa: E402
    draw_permutations, latent_permutation_null)

LATENTMI_PY = ROOT / ".venv-latentmi" / "bin" / "python"

_LATENTMI_SCRIPT = r"""
import json, sys, time
import numpy as np
from latentmi import ksg
ksg.add_noise = lambda x, intens=1e-10: x      # noise off, like ours
d = sys.argv[1]
x, y, perms = np.load(d + "/x.npy"), np.load(d + "/y.npy"), np.load(d + "/perms.npy")
t, c = time.perf_counter(), time.process_time()
null = [float(np.mean(ksg.mi(x, y[p], k=3))) for p in perms]
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
                  "null": null}))
"""


def timed(fn):
    """(wall seconds, process CPU seconds, result) of one call."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def run_latentmi(x: np.ndarray, y: np.ndarray, perms: np.ndarray, python: Path) -> dict:
    return latentmi_subprocess(_LATENTMI_SCRIPT, {"x": x, "y": y, "perms": perms}, python=python)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="latent permutation null: permutations/s")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    ap.add_argument("--permutations", type=int, default=1000, help="for method='lists'")
    ap.add_argument("--repeats", type=int, default=3,
                    help="lists: best wall time of this many runs (set-up and whole null alike)")
    ap.add_argument("--loop-permutations", type=int, default=20, help="for method='loop'")
    ap.add_argument("--latentmi-permutations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="numba threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "jobs" / "results" / "benchmark_permutation.json"))
    ap.add_argument("--no-latentmi", action="store_true")
    ap.add_argument("--latentmi-python", default=str(LATENTMI_PY),
                    help="python of the latentmi venv (jobs/setup_latentmi_venv.sh)")
    args = ap.parse_args(argv)
    if not tree.HAVE_NUMBA:
        print("numba is not installed: method='lists' cannot run", file=sys.stderr)
        return 1
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    latentmi_py = Path(args.latentmi_python)
    have_latentmi = latentmi_py.exists() and not args.no_latentmi
    if not have_latentmi:
        print("latentmi venv not found (or --no-latentmi): timing ours only", file=sys.stderr)
    wx, wy, _ = gaussian_latents(300)
    for m in ("lists", "loop"):  # numba compile / cache load
        latent_permutation_null(wx, wy, n_permutations=2, seed=0, method=m)
    rows = []
    for n in args.sizes:
        x, y, _ = gaussian_latents(n)
        row = {"n": n, "dims": "8+8", "k": 3, "loadavg_before": os.getloadavg()[0]}
        b = args.permutations
        runs = [timed(lambda: (permuted.MarginalLists(x, permuted.list_columns(n)),
                               permuted.MarginalLists(y, permuted.list_columns(n))))
                for _ in range(max(1, args.repeats))]
        setup_s = min(r[0] for r in runs)
        runs = [timed(lambda: latent_permutation_null(x, y, n_permutations=b, seed=args.seed,
                                                      method="lists"))
                for _ in range(max(1, args.repeats))]
        wall, cpu, null = min(runs, key=lambda r: r[0])
        row.update(lists_repeats=len(runs), lists_s_all=[r[0] for r in runs])
        row.update(lists_permutations=b, lists_s=wall, lists_cpu_s=cpu, lists_setup_s=setup_s,
                   lists_per_s=b / wall, lists_per_s_after_setup=b / max(wall - setup_s, 1e-9),
                   lists_per_cpu_s=b / cpu, null_mean_bits=float(null.mean()),
                   null_sd_bits=float(null.std()))
        bl = min(args.loop_permutations, b)
        wall, cpu, loop = timed(lambda: latent_permutation_null(
            x, y, n_permutations=bl, seed=args.seed, method="loop"))
        row.update(loop_permutations=bl, loop_s=wall, loop_cpu_s=cpu, loop_per_s=bl / wall,
                   loop_per_cpu_s=bl / cpu, identical_to_loop=bool(np.array_equal(loop, null[:bl])),
                   speedup_vs_loop=row["lists_per_s"] / (bl / wall))
        if have_latentmi:
            bm = min(args.latentmi_permutations, b)
            lm = run_latentmi(x, y, draw_permutations(n, bm, args.seed), latentmi_py)
            row.update(latentmi_permutations=bm, latentmi_s=lm["seconds"],
                       latentmi_per_s=bm / lm["seconds"],
                       latentmi_per_cpu_s=bm / lm["cpu_seconds"],
                       speedup_vs_latentmi=row["lists_per_s"] / (bm / lm["seconds"]),
                       max_abs_diff_null_bits=float(np.max(np.abs(np.asarray(lm["null"])
                                                                  - null[:bm]))))
        row["loadavg_after"] = os.getloadavg()[0]
        rows.append(row)
        print(f"N={n} done", file=sys.stderr, flush=True)

    cols = [("n", "N", "{:d}"), ("lists_per_s", "lists perm/s", "{:.0f}"),
            ("lists_per_s_after_setup", "w/o setup", "{:.0f}"), ("lists_setup_s", "setup s", "{:.2f}"),
            ("lists_per_cpu_s", "perm/cpu-s", "{:.0f}"), ("loop_per_s", "loop perm/s", "{:.1f}"),
            ("speedup_vs_loop", "vs loop", "{:.1f}x"), ("identical_to_loop", "identical", "{}"),
            ("latentmi_per_s", "latentmi perm/s", "{:.2f}"),
            ("speedup_vs_latentmi", "vs latentmi", "{:.0f}x"),
            ("max_abs_diff_null_bits", "max|dnull|", "{:.1e}"),
            ("loadavg_before", "load", "{:.1f}"), ("loadavg_after", "load after", "{:.1f}")]
    print_table(rows, cols)
    meta = {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "permutations": args.permutations, "repeats": args.repeats, "seed": args.seed,
            "note": "noise off; rates with set-up included unless 'after_setup'; shared machine: "
                    "see load averages"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
