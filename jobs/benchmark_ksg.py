"""Benchmark our KSG backends against latentmi's KSG on 8+8-dim latents.

Same data, same run: for each N, correlated Gaussian latents (8 dims each, per-dim correlation
rho, true MI = −8/2·log2(1−ρ²) bits) are timed with

- ours: ``knn_counts`` + digamma (= ``ksg_pmi``) with the "tree" backend and its default
  implementation (``tree.auto_impl(N)``: numba bitset kernels below 1.5e5 points, the kd-tree over
  bitset words of ``neighbors/kdtree.py`` from there); the "kdtree" and "bitset"
  implementations on their own (``tree.knn_counts(impl=...)``, bitset up to ``--bitset-max``),
  the scipy-cKDTree fallback and the "tiled" backend too for small N;
- latentmi 0.1.3 ``ksg.mi`` run in its own venv (``.venv-latentmi``) as a subprocess, data passed
  through a temporary .npy, its ``add_noise`` monkeypatched to the identity so that both sides
  run without noise and the estimates must agree (to float rounding: latentmi counts with
  ``<= eps − 1e-15``, we count ``< eps`` exactly).

Wall times and process CPU times (ours: all numba threads together; latentmi is
single-threaded) are the best of ``--repeats`` (1 repeat for N >= 50000), excluding imports and numba
compilation (a warm-up call runs first). Prints a table, writes JSON (default
``jobs/results/benchmark_ksg.json``). The machine may be shared: the load average is recorded.
``--curve`` adds a cost curve of ours alone (default implementation, 1 repeat from 1e5) for
N = 1e3 .. 1e6: seconds and seconds / (N log2 N), JSON key "curve".

    python jobs/benchmark_ksg.py --sizes 1000 10000 30000 100000 --repeats 3 --curve
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmi_distributed.estimators.ksg import ksg_pmi  # noqa: E402
from lmi_distributed.estimators.neighbors import tree  # noqa: E402

LATENTMI_PY = ROOT / ".venv-latentmi" / "bin" / "python"

_LATENTMI_SCRIPT = r"""
import json, sys, time
import numpy as np
from latentmi import ksg
ksg.add_noise = lambda x, intens=1e-10: x      # noise off, like ours
d, repeats = sys.argv[1], int(sys.argv[2])
x, y = np.load(d + "/x.npy"), np.load(d + "/y.npy")
best = cpu = float("inf")
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    p = ksg.mi(x, y, k=3)
    best = min(best, time.perf_counter() - t)
    cpu = min(cpu, time.process_time() - c)
np.save(d + "/latentmi_pmi.npy", np.asarray(p, dtype=np.float64))
print(json.dumps({"seconds": best, "cpu_seconds": cpu, "mi": float(np.mean(p))}))
"""


def gaussian_latents(n: int, d: int = 8, rho: float = 0.6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal((n, d))
    return x, y, -0.5 * d * math.log2(1 - rho * rho)


def best_of(fn, repeats: int, cpu: list | None = None):
    """Best wall time of ``repeats`` calls (and, into ``cpu``, the best process CPU time)."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    if cpu is not None:
        cpu.append(best_cpu)
    return best, out


def latentmi_subprocess(script: str, arrays: dict[str, np.ndarray], args: tuple[str, ...] = (),
                        python: Path = LATENTMI_PY, read_back: tuple[str, ...] = ()) -> dict:
    """Run ``script`` with latentmi's venv ``python``: the arrays are saved as ``<name>.npy`` in a
    temporary folder passed as ``argv[1]`` (then ``args``); returns the JSON of the script's last
    stdout line, plus the ``.npy`` files named in ``read_back`` that the script wrote there."""
    with tempfile.TemporaryDirectory() as d:
        for name, a in arrays.items():
            np.save(Path(d) / f"{name}.npy", a)
        res = subprocess.run([str(python), "-c", script, d, *args], capture_output=True, text=True,
                             timeout=3600)
        if res.returncode != 0:
            raise RuntimeError(f"latentmi subprocess failed:\n{res.stderr}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out.update({name: np.load(Path(d) / f"{name}.npy") for name in read_back})
        return out


def run_latentmi(x: np.ndarray, y: np.ndarray, repeats: int, python: Path = LATENTMI_PY) -> dict:
    out = latentmi_subprocess(_LATENTMI_SCRIPT, {"x": x, "y": y}, (str(repeats),), python=python,
                              read_back=("latentmi_pmi",))
    out["pmi"] = out.pop("latentmi_pmi")
    return out


def print_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as right-aligned columns ``(key, header, format)``; keys no row has are left
    out, a row without a key shows "-"."""
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    cells = [[c[2].format(r[c[0]]) if c[0] in r else "-" for c in cols] for r in rows]
    widths = [max(len(c[1]), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c[1].rjust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.rjust(w) for v, w in zip(x, widths)))


def plot_scaling(doc: dict, png: Path) -> Path:
    """Log-log seconds vs N: our default implementation (the cost curve and the rows), the bitset
    and kdtree implementations and latentmi where timed, and an N log2 N guide through our first
    point. ``doc``: this script's JSON."""
    from lmi_distributed.report import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = doc.get("rows", [])
    curve = doc.get("curve", [])
    series = [("ours (auto), cost curve", [(c["n"], c["seconds"]) for c in curve], "o-"),
              ("ours (auto), vs latentmi", [(r["n"], r["ours_tree_s"]) for r in rows if r.get("ours_tree_s")], "o:"),
              ("ours, bitset", [(r["n"], r["ours_bitset_s"]) for r in rows if r.get("ours_bitset_s")], "s--"),
              ("ours, kdtree", [(r["n"], r["ours_kdtree_s"]) for r in rows if r.get("ours_kdtree_s")], "^--"),
              ("latentmi 0.1.3 (1 thread)", [(r["n"], r["latentmi_s"]) for r in rows if r.get("latentmi_s")], "x-")]
    for label, pts, style in series:
        if pts:
            n, t = zip(*sorted(pts))
            ax.plot(n, t, style, label=label)
    if curve:
        n0, t0 = curve[0]["n"], curve[0]["seconds"]
        ns = np.array(sorted(c["n"] for c in curve), dtype=float)
        ax.plot(ns, t0 * ns * np.log2(ns) / (n0 * math.log2(n0)), ":", color="grey", label="∝ N log2 N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (points, 8+8-dim latents)")
    ax.set_ylabel("wall seconds (2 cores)")
    ax.set_title("KSG cost on the 2-core CPU")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, png)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="KSG: our backends vs latentmi (8+8 dims)")
    ap.add_argument("--plot", type=Path, default=None, help="also draw the scaling plot (PNG) from the JSON")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="no run: draw --plot from this earlier JSON of this script")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000, 50000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "jobs" / "results" / "benchmark_ksg.json"))
    ap.add_argument("--no-latentmi", action="store_true")
    ap.add_argument("--latentmi-python", default=str(LATENTMI_PY),
                    help="python of a venv with latentmi 0.1.3 (default: .venv-latentmi here)")
    ap.add_argument("--bitset-max", type=int, default=50000,
                    help="time impl='bitset' on its own up to this N (it is O(N^2))")
    ap.add_argument("--curve", action="store_true", help="also time ours for N = 1e3 .. 1e6")
    ap.add_argument("--curve-sizes", type=int, nargs="+",
                    default=[1000, 3000, 10000, 30000, 100000, 300000, 1000000])
    args = ap.parse_args(argv)
    if args.from_json is not None:
        if args.plot is None:
            raise SystemExit("--from-json needs --plot PNG")
        print(f"wrote {plot_scaling(json.loads(args.from_json.read_text()), args.plot)}")
        return 0
    lm_python = Path(args.latentmi_python)
    have_latentmi = lm_python.exists() and not args.no_latentmi
    if not have_latentmi:
        print("latentmi venv not found (or --no-latentmi): timing ours only", file=sys.stderr)
    ksg_pmi(*gaussian_latents(300)[:2], backend="tree")  # numba compile / cache load
    if tree.HAVE_NUMBA:
        for impl in ("kdtree", "bitset"):
            tree.knn_counts(*gaussian_latents(300)[:2], kth=3, impl=impl)
    rows = []
    for n in args.sizes:
        x, y, truth = gaussian_latents(n)
        reps = args.repeats if n < 50000 else 1
        row = {"n": n, "dims": "8+8", "truth_bits": truth, "repeats": reps,
               "loadavg_before": os.getloadavg()[0]}
        cpu: list = []
        t, p = best_of(lambda: ksg_pmi(x, y, backend="tree"), reps, cpu)
        row.update(ours_tree_s=t, ours_tree_cpu_s=cpu[0], ours_mi=float(p.mean()),
                   ours_impl=tree.auto_impl(n))
        if tree.HAVE_NUMBA:
            ref_counts = None
            for impl in ("kdtree", "bitset"):
                if impl == "bitset" and n > args.bitset_max:
                    continue
                c2: list = []
                ti, ci = best_of(lambda: tree.knn_counts(x, y, kth=3, impl=impl), reps, c2)
                row[f"ours_{impl}_s"] = ti
                row[f"ours_{impl}_cpu_s"] = c2[0]
                if ref_counts is None:
                    ref_counts = ci
                else:
                    row["kdtree_bitset_identical"] = all(
                        bool(np.array_equal(a, b)) for a, b in zip(ref_counts, ci))
        if n <= 10000 and tree.HAVE_NUMBA:
            t2, p2 = best_of(lambda: tree.knn_counts(x, y, kth=3, impl="scipy"), 1)
            row["ours_scipy_ckdtree_s"] = t2
            row["scipy_counts_identical"] = bool(np.array_equal(p2[1], tree.knn_counts(
                x, y, kth=3)[1]) and np.array_equal(p2[2], tree.knn_counts(x, y, kth=3)[2]))
        if n <= 5000:
            t3, p3 = best_of(lambda: ksg_pmi(x, y, backend="tiled"), 1)
            row["ours_tiled_s"] = t3
            row["tiled_identical"] = bool(np.array_equal(p3, p))
        if have_latentmi:
            lm = run_latentmi(x, y, reps, lm_python)
            row.update(latentmi_s=lm["seconds"], latentmi_cpu_s=lm["cpu_seconds"],
                       latentmi_mi=lm["mi"], speedup_vs_latentmi=lm["seconds"] / t,
                       cpu_time_ratio=lm["cpu_seconds"] / cpu[0],
                       abs_diff_mi_bits=abs(lm["mi"] - float(p.mean())),
                       max_abs_diff_pmi_bits=float(np.max(np.abs(lm["pmi"] - p))))
            if "ours_kdtree_s" in row:
                row["kdtree_speedup_vs_latentmi"] = lm["seconds"] / row["ours_kdtree_s"]
        row["loadavg_after"] = os.getloadavg()[0]
        rows.append(row)
        print(f"N={n} done", file=sys.stderr, flush=True)

    cols = [("n", "N", "{:d}"), ("ours_impl", "auto", "{}"), ("ours_tree_s", "ours tree s", "{:.4f}"),
            ("ours_kdtree_s", "kdtree s", "{:.4f}"), ("ours_bitset_s", "bitset s", "{:.4f}"),
            ("ours_scipy_ckdtree_s", "cKDTree s", "{:.3f}"), ("ours_tiled_s", "tiled s", "{:.3f}"),
            ("latentmi_s", "latentmi s", "{:.3f}"), ("speedup_vs_latentmi", "speedup", "{:.1f}x"),
            ("kdtree_speedup_vs_latentmi", "kdtree speedup", "{:.1f}x"),
            ("ours_tree_cpu_s", "ours cpu s", "{:.3f}"), ("latentmi_cpu_s", "lmi cpu s", "{:.3f}"),
            ("cpu_time_ratio", "cpu ratio", "{:.1f}x"),
            ("ours_mi", "ours MI", "{:.5f}"), ("latentmi_mi", "latentmi MI", "{:.5f}"),
            ("abs_diff_mi_bits", "|dMI| bits", "{:.1e}"),
            ("max_abs_diff_pmi_bits", "max|dpMI|", "{:.1e}"),
            ("kdtree_bitset_identical", "kd==bits", "{}"), ("loadavg_before", "load", "{:.1f}")]
    print_table(rows, cols)
    sys.stdout.flush()
    meta = {"numba": tree.HAVE_NUMBA, "cpu_count": os.cpu_count(),
            "numba_threads": (__import__("numba").get_num_threads() if tree.HAVE_NUMBA else None),
            "note": "noise off on both sides; shared machine: see load averages"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(curve: list) -> None:  # after the rows and after every curve point
        doc = {"meta": meta, "rows": rows}
        if curve:
            doc["curve"] = curve
        out.write_text(json.dumps(doc, indent=2))

    save([])
    curve = []
    if args.curve:
        ksg_pmi(*gaussian_latents(30000)[:2], backend="tree")  # compile / load the kdtree path
        for n in args.curve_sizes:
            x, y, _ = gaussian_latents(n)
            reps = args.repeats if n < 100000 else 1
            pt = {"n": n, "impl": tree.auto_impl(n), "repeats": reps,
                  "loadavg_before": os.getloadavg()[0]}
            cpu = []
            t, p = best_of(lambda: ksg_pmi(x, y, backend="tree"), reps, cpu)
            pt.update(seconds=t, cpu_seconds=cpu[0], s_per_nlog2n=t / (n * math.log2(n)),
                      mi=float(p.mean()), loadavg_after=os.getloadavg()[0])
            curve.append(pt)
            save(curve)
            print(f"curve N={n} done ({t:.2f} s)", file=sys.stderr, flush=True)
        print("\ncost curve (ours, default implementation):")
        print_table(curve, [("n", "N", "{:d}"), ("impl", "impl", "{}"), ("seconds", "wall s", "{:.3f}"),
                            ("cpu_seconds", "cpu s", "{:.3f}"),
                            ("s_per_nlog2n", "s/(N log2 N)", "{:.2e}"),
                            ("loadavg_before", "load", "{:.1f}")])
    save(curve)
    print(f"wrote {out}")
    if args.plot is not None:
        print(f"wrote {plot_scaling(json.loads(out.read_text()), args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
