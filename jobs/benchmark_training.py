"""Training throughput: seconds per pair-epoch of the batched trainer vs latentmi's loop.

For each (P, d): P Gaussian-benchmark pairs (N=2000, k=1, 1 bit, Alg. 4) with the full
reference architecture (hidden 1024) are trained as one batch for a warm-up epoch plus
``--epochs`` timed epochs (early stopping off); we report seconds per epoch and per
pair-epoch. latentmi 0.1.3 (its own venv, numpy 1.26) runs its ``train`` loop on the same
data in a subprocess for the same number of epochs (after a 1-epoch warm-up).

    python jobs/benchmark_training.py                       # P = 1 4 16 64, d = 10 100 1000
    python jobs/benchmark_training.py --P 1 16 --d 100 --epochs 2
Results: a table on stdout and jobs/results/benchmark_training.json.

Roofline columns: the work of one pair-epoch is the same for both (same architecture, same rows,
a held-out pass every epoch), about 2 x MACs x (3 n_train + n_val) FLOP (forward + backward ~ 3
forward passes on the training half, one forward pass on the held-out half; MACs = weights per
sample of the six networks). ``GFLOP/s`` is that over the measured time, ``% peak`` against a
float32 matrix product (``torch.mm``, 2048 x 2048, best of 5) timed in the same run at the same
thread count: the ceiling any float32 trainer can reach on this CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmi_distributed.estimators.networks import NetSpec
from lmi_distributed.estimators.preprocess import split_indices, zscore_clip
from lmi_distributed.estimators.seeding import derive_seed
from lmi_distributed.estimators.training import torch_threads, train_pairs
from lmi_distributed.synthetic import gaussian_benchmark

ROOT = Path(__file__).resolve().parents[1]
LATENTMI_PY = ROOT / ".venv-latentmi" / "bin" / "python"

LATENTMI_SCRIPT = r"""
import sys, time, json, numpy as np, torch
from latentmi import lmi, models
xtr, ytr, xte, yte = (torch.from_numpy(np.load(p)).float() for p in sys.argv[1:5])
epochs = int(sys.argv[5])
if int(sys.argv[6]) > 0:
    torch.set_num_threads(int(sys.argv[6]))
torch.manual_seed(0)
model = models.AECross(xtr.shape[1], ytr.shape[1], 8)
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    lmi.train(model, xtr, ytr, xte, yte, epochs=1, patience=10**6)          # warm-up
    t = time.perf_counter()
    lmi.train(model, xtr, ytr, xte, yte, epochs=epochs, patience=10**6)
    dt = time.perf_counter() - t
print(json.dumps({"seconds_per_epoch": dt / epochs}))
"""


def pair_epoch_flops(d: int, n: int, hidden: int | None) -> float:
    """FLOP of one pair-epoch (see the module notes): 2 x MACs x (3 n_train + n_val)."""
    spec = NetSpec.for_dims(d, d, 8, hidden)
    n_train = n // 2
    return 2.0 * spec.n_params() * (3 * n_train + (n - n_train))


def sgemm_peak_gflops(sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 5) -> float:
    """Best float32 ``torch.mm`` rate (GFLOP/s) over square sizes and repeats, at torch's current
    thread count (a virtual machine's speed drifts: the script measures it before AND after the
    trainings and keeps the larger)."""
    best_rate = 0.0
    for size in sizes:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        torch.mm(a, b)                                    # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best_rate = max(best_rate, 2.0 * size ** 3 / (time.perf_counter() - t) / 1e9)
    return best_rate


def stacked_pairs(P: int, n: int, d: int):
    xs, ys, tr, te = [], [], [], []
    for p in range(P):
        X, Y, _ = gaussian_benchmark(n, d, 1, 1.0, seed=1000 + p)
        a, b = split_indices(n, derive_seed(p, "split"))
        xs.append(zscore_clip(X))
        ys.append(zscore_clip(Y))
        tr.append(a)
        te.append(b)
    xz, yz = np.stack(xs), np.stack(ys)
    i = np.arange(P)[:, None]
    tr, te = np.stack(tr), np.stack(te)
    t = torch.from_numpy
    return t(xz[i, tr]), t(yz[i, tr]), t(xz[i, te]), t(yz[i, te])


def time_ours(P: int, d: int, n: int, epochs: int, hidden: int | None) -> dict:
    xtr, ytr, xte, yte = stacked_pairs(P, n, d)
    spec = NetSpec.for_dims(d, d, 8, hidden)
    stamps: list[float] = []
    t0 = time.perf_counter()
    train_pairs(xtr, ytr, xte, yte, spec, list(range(P)), max_epochs=1 + epochs, patience=10**6,
                progress=lambda e, n_act, v: stamps.append(time.perf_counter()))
    per_epoch = (stamps[-1] - stamps[0]) / epochs           # epoch 0 is the warm-up
    return {"P": P, "d": d, "seconds_per_epoch": per_epoch, "seconds_per_pair_epoch": per_epoch / P,
            "warmup_epoch_s": stamps[0] - t0}


def time_latentmi(d: int, n: int, epochs: int, threads: int) -> dict | None:
    if not LATENTMI_PY.exists():
        print(f"latentmi venv not found at {LATENTMI_PY}; skipping", file=sys.stderr)
        return None
    xtr, ytr, xte, yte = stacked_pairs(1, n, d)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, a in zip(("xtr", "ytr", "xte", "yte"), (xtr, ytr, xte, yte)):
            paths.append(os.path.join(tmp, f"{name}.npy"))
            np.save(paths[-1], a[0].numpy())
        script = os.path.join(tmp, "bench.py")
        Path(script).write_text(LATENTMI_SCRIPT)
        out = subprocess.run([str(LATENTMI_PY), script, *paths, str(epochs), str(threads)],
                             capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"d": d, **res}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--P", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--d", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    ap.add_argument("--hidden", type=int, default=None, help="override hidden width (default: reference rule, 1024)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default) for both")
    ap.add_argument("--max-gb", type=float, default=8.0,
                    help="skip batches whose params+grads+Adam+best copies exceed this many GB")
    ap.add_argument("--no-latentmi", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "jobs" / "results" / "benchmark_training.json"))
    a = ap.parse_args(argv)

    rows, ref, skipped = [], {}, []
    with torch_threads(a.threads or None):
        peak = sgemm_peak_gflops()
        print(f"float32 torch.mm peak: {peak:.0f} GFLOP/s at {torch.get_num_threads()} thread(s)", flush=True)
        for d in a.d:
            if not a.no_latentmi:
                r = time_latentmi(d, a.n, a.epochs, a.threads)
                if r:
                    ref[d] = r["seconds_per_epoch"]
                    print(f"latentmi d={d}: {ref[d]:.3f} s/epoch", flush=True)
            for P in a.P:
                gb = 5 * 4 * P * NetSpec.for_dims(d, d, 8, a.hidden).n_params() / 1e9
                if gb > a.max_gb:
                    skipped.append({"P": P, "d": d, "estimated_gb": round(gb, 1)})
                    print(f"skip P={P} d={d}: ~{gb:.1f} GB > --max-gb {a.max_gb}", flush=True)
                    continue
                r = time_ours(P, d, a.n, a.epochs, a.hidden)
                fl = pair_epoch_flops(d, a.n, a.hidden)
                r["gflop_per_pair_epoch"] = fl / 1e9
                r["gflops"] = fl / r["seconds_per_pair_epoch"] / 1e9
                if d in ref:
                    r["latentmi_gflops"] = fl / ref[d] / 1e9
                    r["latentmi_seconds_per_epoch"] = ref[d]
                    r["speedup_per_pair_epoch"] = ref[d] / r["seconds_per_pair_epoch"]
                rows.append(r)
                print(f"ours P={P} d={d}: {r['seconds_per_epoch']:.3f} s/epoch, "
                      f"{r['seconds_per_pair_epoch']:.3f} s/pair-epoch", flush=True)

        peak_end = sgemm_peak_gflops()
    print(f"float32 torch.mm peak after the trainings: {peak_end:.0f} GFLOP/s", flush=True)
    peak = max(peak, peak_end)          # shares against the faster of the two measurements
    for r in rows:
        r["pct_of_sgemm_peak"] = 100 * r["gflops"] / peak
        if "latentmi_gflops" in r:
            r["latentmi_pct_of_sgemm_peak"] = 100 * r["latentmi_gflops"] / peak
    print()
    print(f"{'d':>6} {'P':>4} {'s/epoch':>9} {'s/pair-epoch':>13} {'latentmi s/epoch':>17} {'speedup':>8} "
          f"{'GFLOP/pe':>9} {'GFLOP/s':>8} {'% peak':>7} {'lmi % peak':>10}")
    for r in rows:
        lm = r.get("latentmi_seconds_per_epoch")
        lm_s = f"{lm:.3f}" if lm else "-"
        sp_s = f"{r['speedup_per_pair_epoch']:.2f}x" if lm else "-"
        lp_s = f"{r['latentmi_pct_of_sgemm_peak']:.0f}%" if lm else "-"
        print(f"{r['d']:>6} {r['P']:>4} {r['seconds_per_epoch']:>9.3f} {r['seconds_per_pair_epoch']:>13.3f} "
              f"{lm_s:>17} {sp_s:>8} {r['gflop_per_pair_epoch']:>9.1f} {r['gflops']:>8.0f} "
              f"{r['pct_of_sgemm_peak']:>6.0f}% {lp_s:>10}")
    meta = {"n": a.n, "timed_epochs": a.epochs, "hidden": a.hidden or "reference (1024)",
            "threads": torch.get_num_threads() if not a.threads else a.threads, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(), "sgemm_peak_gflops": peak}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "ours": rows, "latentmi": ref, "skipped": skipped}, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
