"""GPU benchmark: KSG / pMI kernels, latent permutation null throughput, batched training hook.

Runs on a GPU machine WITHOUT ray, dask or zarr (needs only numpy, scipy, cupy and, for the
training part, torch):

    PYTHONPATH=. python jobs/benchmark_gpu.py --out jobs/results/benchmark_gpu.json

and, as a smoke test on a CPU-only machine (numpy/numba backends, tiny sizes):

    python jobs/benchmark_gpu.py --device cpu --quick

Prints a table and writes JSON. Sizes are chosen to finish in well under 5 minutes on an H200.
"Comparison rate" = pair evaluations per second: the fused kernel evaluates every (query,
reference) pair twice (pass 1: joint k-NN, pass 2: strict marginal counts), 2·B·N² evaluations
per call; its "peak" is a rough roofline: (SMs × clock × FP lanes per SM) / (instructions per
pair evaluation ≈ 3 per coordinate + 4), printed as a utilisation estimate, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmi_distributed.estimators.ksg import ksg_mi, pmi_from_counts  # noqa: E402
from lmi_distributed.estimators.permutation import (  # noqa: E402
    draw_permutations, latent_permutation_null)


def gaussian_latents(n: int, d: int = 8, rho: float = 0.6, seed: int = 0):
    """(n, d) x and y with independent dims of correlation rho; truth d·(−½log2(1−ρ²)) bits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal((n, d))
    return x, y, -0.5 * d * math.log2(1 - rho * rho)


def _best_time(fn, repeats: int, sync=lambda: None) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def gpu_info(cp) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    sms = int(props["multiProcessorCount"])
    clock_hz = float(props["clockRate"]) * 1e3
    major = int(props["major"])
    fp32_lanes = 128 if major >= 8 else 64
    hpc = ("H100", "H200", "H800", "GH200", "A100", "A30", "V100", "B100", "B200", "P100")
    fp64_lanes = 64 if any(s in name for s in hpc) else 2  # consumer parts: 1/64 rate
    return {"name": name, "sms": sms, "clock_ghz": clock_hz / 1e9, "cc": f"{major}.{props['minor']}",
            "fp32_lane_ops_per_s": sms * clock_hz * fp32_lanes,
            "fp64_lane_ops_per_s": sms * clock_hz * fp64_lanes}


def bench_ksg(device: str, sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    if device == "cuda":
        import cupy as cp

        from lmi_distributed.estimators.neighbors import cupy_kernels as ck

        info = gpu_info(cp)
        sync = cp.cuda.Device().synchronize
        for n in sizes:
            x, y, truth = gaussian_latents(n)
            for dtype in ("float32", "float64"):
                xd = cp.asarray(x, dtype=dtype)[None]
                yd = cp.asarray(y, dtype=dtype)[None]
                ck.knn_counts_batched(xd, yd, kth=3, dtype=dtype)  # compile + warm up
                sync()
                reps = repeats if n <= 20000 else max(1, repeats // 2)
                t = _best_time(lambda: ck.knn_counts_batched(xd, yd, kth=3, dtype=dtype), reps,
                               sync)
                _, nx, ny = ck.knn_counts_batched(xd, yd, kth=3, dtype=dtype)
                mi = float(pmi_from_counts(3, n, cp.asnumpy(nx[0]) + 1.0,
                                           cp.asnumpy(ny[0]) + 1.0).mean())
                evals = 2.0 * n * n
                ops_per_eval = 3 * 16 + 4
                peak = info["fp32_lane_ops_per_s" if dtype == "float32" else "fp64_lane_ops_per_s"]
                row = {"part": "ksg", "device": "cuda", "n": n, "dims": "8+8", "dtype": dtype,
                       "seconds": t, "pair_evals_per_s": evals / t,
                       "roofline_pair_evals_per_s": peak / ops_per_eval,
                       "utilisation_est": evals / t * ops_per_eval / peak,
                       "mi_bits": mi, "truth_bits": truth}
                if n <= 10000 and dtype == "float64":  # identical counts => identical MI
                    t0 = time.perf_counter()
                    mi_cpu = ksg_mi(x, y, backend="tree")
                    row["cpu_tree_seconds"] = time.perf_counter() - t0
                    row["abs_diff_vs_cpu_bits"] = abs(mi - mi_cpu)
                rows.append(row)
    else:
        from lmi_distributed.estimators.neighbors import knn_counts

        for n in sizes:
            x, y, truth = gaussian_latents(n)
            knn_counts(x[:200], y[:200], kth=3, backend="tree")  # numba compile / cache load
            for backend in ("tree", "tiled"):
                if backend == "tiled" and n > 5000:
                    continue
                t = _best_time(lambda: knn_counts(x, y, kth=3, backend=backend), repeats)
                _, nx, ny = knn_counts(x, y, kth=3, backend=backend)
                mi = float(pmi_from_counts(3, n, nx + 1.0, ny + 1.0).mean())
                rows.append({"part": "ksg", "device": "cpu", "backend": backend, "n": n,
                             "dims": "8+8", "dtype": "float64", "seconds": t,
                             "pair_evals_per_s": 2.0 * n * n / t, "mi_bits": mi,
                             "truth_bits": truth})
    return rows


def bench_permutations(device: str, n: int, n_perms: int) -> list[dict]:
    x, y, _ = gaussian_latents(n, seed=1)
    perms = draw_permutations(n, n_perms, seed=0)
    rows = []
    if device == "cuda":
        import cupy as cp

        from lmi_distributed.estimators.neighbors import cupy_kernels as ck

        sync = cp.cuda.Device().synchronize
        for dtype in ("float32", "float64"):
            ck.permutation_null(x, y, perms[:8], k=3, dtype=dtype)
            sync()
            t0 = time.perf_counter()
            null = ck.permutation_null(x, y, perms, k=3, dtype=dtype)
            sync()
            t = time.perf_counter() - t0
            rows.append({"part": "permutation_null", "device": "cuda", "n": n, "dtype": dtype,
                         "permutations": n_perms, "seconds": t, "perms_per_s": n_perms / t,
                         "null_mean_bits": float(null.mean()), "null_sd_bits": float(null.std())})
        # check a few against the CPU
        chk = latent_permutation_null(x, y, n_permutations=4, seed=0, backend="tree")
        rows[-1]["abs_diff_vs_cpu_first4"] = float(np.abs(
            ck.permutation_null(x, y, perms[:4], k=3, dtype="float64") - chk).max())
    else:
        for backend in ("tree", "tiled"):
            t0 = time.perf_counter()
            null = latent_permutation_null(x, y, n_permutations=n_perms, seed=0, backend=backend)
            t = time.perf_counter() - t0
            rows.append({"part": "permutation_null", "device": "cpu", "backend": backend, "n": n,
                         "dtype": "float64", "permutations": n_perms, "seconds": t,
                         "perms_per_s": n_perms / t, "null_mean_bits": float(null.mean()),
                         "null_sd_bits": float(null.std())})
    return rows


def _pair_epoch_flops(d: int, n: int, train_fraction: float = 0.5) -> float:
    """Matmul FLOPs of one pair-epoch at the reference architecture: training rows
    forward + backward (~6 FLOPs per weight per row), held-out rows forward (2 per weight)."""
    from lmi_distributed.estimators.networks import NetSpec

    w = NetSpec.for_dims(d, d).n_params()
    n_tr = int(n * train_fraction)
    return 6.0 * w * n_tr + 2.0 * w * (n - n_tr)


def benchmark_training(device: str = "cuda", *, pairs=(1, 16, 64, 256), dims=(100, 1000),
                       n: int = 2000, epochs: int = 3, loop_max_pairs: int = 8,
                       time_budget_s: float = 150.0, peak_tflops: float = 67.0,
                       precision: str = "float32") -> list[dict]:
    """Batched training of P pairs (one stacked model) vs a one-network-at-a-time loop.

    Fixed ``epochs`` (patience > epochs: no early stop), reference architecture (hidden 1024),
    N = ``n``. The loop baseline trains ``min(P, loop_max_pairs)`` pairs one after another
    (P = 1 each, like the reference library) and is scaled linearly to P. Reports pair-epochs/s,
    the speed-up, and achieved matmul TFLOP/s as a fraction of ``peak_tflops`` (H200: ~67 dense
    FP32, ~495 dense TF32). Each timing includes preprocessing, encoding and KSG, as a user sees it.
    """
    try:
        from lmi_distributed.estimators.api import estimate_many
    except Exception as exc:  # pragma: no cover
        return [{"part": "training", "skipped": f"training unavailable: {exc!r}"}]
    rows = []
    t_start = time.perf_counter()
    settings = dict(device=device, max_epochs=epochs, patience=10 * epochs + 10, precision=precision)
    for d in dims:
        flops = _pair_epoch_flops(d, n)
        for p in pairs:
            if time.perf_counter() - t_start > time_budget_s:
                rows.append({"part": "training", "d": d, "P": p, "skipped": "time budget"})
                continue
            rng = np.random.default_rng(d + p)
            data = [(rng.standard_normal((n, d)).astype(np.float32),
                     rng.standard_normal((n, d)).astype(np.float32)) for _ in range(p)]
            try:
                estimate_many(data[:1], seeds=0, **settings)  # warm-up (allocator, kernels)
                t0 = time.perf_counter()
                estimate_many(data, seeds=0, **settings)
                t_batched = time.perf_counter() - t0
                m = min(p, loop_max_pairs)
                t0 = time.perf_counter()
                for i in range(m):
                    estimate_many([data[i]], seeds=[i], **settings)
                t_loop = (time.perf_counter() - t0) * p / m
            except Exception as exc:  # pragma: no cover
                rows.append({"part": "training", "d": d, "P": p, "error": repr(exc)})
                continue
            pe_s = p * epochs / t_batched
            tflops = pe_s * flops / 1e12
            rows.append({"part": "training", "device": device, "precision": precision, "d": d,
                         "P": p, "n": n, "epochs": epochs, "batched_s": t_batched,
                         "loop_s_est": t_loop, "loop_pairs_timed": m, "speedup": t_loop / t_batched,
                         "pair_epochs_per_s": pe_s, "loop_pair_epochs_per_s": p * epochs / t_loop,
                         "tflops": tflops, "frac_of_peak": tflops / peak_tflops})
            del data
    return rows


def precision_check(device: str = "cuda", *, d: int = 100, n: int = 2000, seeds=(0, 1, 2),
                    precisions=("float32", "tf32", "bf16"), max_epochs: int = 300) -> list[dict]:
    """MI on the paper's Gaussian benchmark (k=1, 1 bit) at full settings for each training
    precision, three seeds as one batch: the accuracy cost of tf32/bf16 against float32."""
    from lmi_distributed.estimators.api import estimate_many
    from lmi_distributed.synthetic import gaussian_benchmark

    data = [gaussian_benchmark(n, d, 1, 1.0, s)[:2] for s in seeds]
    rows, ref = [], None
    for prec in precisions:
        t0 = time.perf_counter()
        res = estimate_many(data, seeds=list(seeds), device=device, precision=prec, max_epochs=max_epochs)
        mis = np.array([r.mi for r in res])
        ref = mis if ref is None else ref
        rows.append({"part": "precision", "device": device, "precision": prec, "d": d, "n": n,
                     "mi_bits": float(mis.mean()), "mi_per_seed": mis.tolist(),
                     "abs_diff_vs_float32_bits": float(np.abs(mis - ref).max()),
                     "epochs": [r.epochs for r in res], "seconds": time.perf_counter() - t0})
    return rows


def print_table(rows: list[dict]) -> None:
    keys = ["part", "device", "backend", "n", "dtype", "seconds", "pair_evals_per_s",
            "utilisation_est", "perms_per_s", "mi_bits", "abs_diff_vs_cpu_bits", "d", "P",
            "batched_s", "loop_s_est", "speedup", "pair_epochs_per_s", "tflops", "frac_of_peak",
            "precision", "abs_diff_vs_float32_bits", "skipped", "error"]
    present = [k for k in keys if any(k in r for r in rows)]
    fmt = []
    for r in rows:
        cells = []
        for k in present:
            v = r.get(k, "")
            if isinstance(v, float):
                v = f"{v:.3e}" if (abs(v) >= 1e5 or (v != 0 and abs(v) < 1e-3)) else f"{v:.4f}"
            cells.append(str(v))
        fmt.append(cells)
    widths = [max(len(k), *(len(c[i]) for c in fmt)) if fmt else len(k)
              for i, k in enumerate(present)]
    print("  ".join(k.ljust(w) for k, w in zip(present, widths)))
    for c in fmt:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--perm-n", type=int, default=2000)
    ap.add_argument("--perms", type=int, default=None)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=67.0, help="device FP32 matmul peak (H200: ~67)")
    ap.add_argument("--peak-tflops-tf32", type=float, default=495.0, help="dense TF32 peak (H200: ~495)")
    ap.add_argument("--out", default="jobs/results/benchmark_gpu.json")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        try:
            import cupy as cp

            assert cp.cuda.runtime.getDeviceCount() > 0
        except Exception as exc:
            print(f"no usable CUDA device / cupy ({exc!r}); use --device cpu", file=sys.stderr)
            return 2
    sizes = args.sizes or ([1000, 2000] if args.quick else [1000, 10000, 100000])
    if args.device == "cpu" and not args.quick and args.sizes is None:
        sizes = [1000, 10000]
    perm_n = 500 if args.quick else args.perm_n
    n_perms = args.perms or (4 if args.quick else (4096 if args.device == "cuda" else 16))
    t0 = time.perf_counter()
    rows = bench_ksg(args.device, sizes, args.repeats)
    rows += bench_permutations(args.device, perm_n, n_perms)
    if not args.skip_training:
        if args.quick:
            rows += benchmark_training(args.device, pairs=(1, 4), dims=(20,), n=256, epochs=1,
                                       loop_max_pairs=4, time_budget_s=60)
        else:
            rows += benchmark_training(args.device, peak_tflops=args.peak_tflops)
            rows += benchmark_training(args.device, pairs=(256,), dims=(100,), precision="tf32",
                                       peak_tflops=args.peak_tflops_tf32, time_budget_s=60)
            rows += precision_check(args.device)
    meta = {"device": args.device, "quick": args.quick, "python": platform.python_version(),
            "numpy": np.__version__, "total_seconds": time.perf_counter() - t0,
            "cpu_count": os.cpu_count()}
    if args.device == "cuda":
        import cupy as cp

        meta["gpu"] = gpu_info(cp)
        meta["cupy"] = cp.__version__
    print_table(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out} ({meta['total_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
