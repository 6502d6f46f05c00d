"""Out of core: a matrix several times larger than a memory cap is ingested, preprocessed
(unit variance + clip) and gathered in a subprocess whose peak RSS growth stays under the cap."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

N_ROWS, N_COLS = 100_000, 1024  # 410 MB float32
CAP_MB = 120  # peak RSS growth allowed over the post-import, post-warm-up baseline

CHILD = textwrap.dedent(r"""
    import json, os, resource, sys, time
    import numpy as np
    from lmi_distributed.data import open_store
    from lmi_distributed.data.ingest import ingest

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

    big, small, work = sys.argv[1:4]
    kw = dict(preprocess="embedding", block_bytes=8 << 20, num_workers=2)
    # warm-up: import every lazily imported module and touch every code path once
    h = ingest(small, os.path.join(work, "warm.zarr"), "w", **kw)
    h.read_rows(np.arange(0, h.n_rows, 3))
    base = peak_mb()
    t0 = time.perf_counter()
    h = ingest(big, os.path.join(work, "big.zarr"), "big", **kw)
    t_ingest = time.perf_counter() - t0
    after_ingest = peak_mb()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, h.n_rows, size=3000)
    got = h.read_rows(rows)
    # expected rows straight from the .npy file, transformed with the stored column statistics
    off = os.path.getsize(big) - h.n_rows * h.n_features * 4
    raw = np.stack([np.fromfile(big, dtype=np.float32, count=h.n_features,
                                offset=off + int(r) * h.n_features * 4) for r in rows[:200]])
    mu = h.var["scale_mean"].to_numpy(np.float32)
    sd = h.var["scale_std"].to_numpy(np.float32)
    exp = np.clip((raw - mu) / sd, -10, 10)
    err = float(np.abs(got[:200] - exp).max())
    print(json.dumps({"base_mb": base, "after_ingest_mb": after_ingest, "peak_mb": peak_mb(),
                      "ingest_s": t_ingest, "max_err": err, "shape": list(h.shape),
                      "mean_abs_colmean": float(np.abs(got.mean(0)).mean()),
                      "sd_mean": float(got.std(0).mean())}))
""")


def _write_npy(path, n, d, seed):
    """Stream a float32 .npy to disk without holding it (or mapping it) in this process."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 20, size=d).astype(np.float32)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        for s in range(0, n, 10_000):
            k = min(10_000, n - s)
            f.write((rng.standard_normal((k, d), dtype=np.float32) * scales + 3.0).tobytes())


@pytest.mark.timeout(300)
def test_ingest_preprocess_gather_within_memory_cap(tmp_path):
    big, small = tmp_path / "big.npy", tmp_path / "small.npy"
    _write_npy(big, N_ROWS, N_COLS, 0)
    _write_npy(small, 5000, N_COLS, 1)
    size_mb = os.path.getsize(big) / 2**20
    assert size_mb > 3 * CAP_MB
    env = dict(os.environ, LMI_DATA_CACHE_MB="16", OMP_NUM_THREADS="1",
               MALLOC_ARENA_MAX="2")
    res = subprocess.run([sys.executable, "-c", CHILD, str(big), str(small), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=280)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"\nout-of-core: {size_mb:.0f} MB matrix, baseline {m['base_mb']:.0f} MB, "
          f"after ingest {m['after_ingest_mb']:.0f} MB, peak {m['peak_mb']:.0f} MB (+{m['peak_mb'] - m['base_mb']:.0f} MB, cap +{CAP_MB}), "
          f"ingest {m['ingest_s']:.1f} s")
    assert m["shape"] == [N_ROWS, N_COLS]
    assert m["max_err"] < 1e-4
    assert m["mean_abs_colmean"] < 0.1 and abs(m["sd_mean"] - 1) < 0.1  # really standardised
    assert m["peak_mb"] - m["base_mb"] < CAP_MB
