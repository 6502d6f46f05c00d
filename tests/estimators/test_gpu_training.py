"""Batched training and the DLPack KSG hand-off on a CUDA device, against the CPU path.

Skipped unless torch and CuPy can both use a GPU (``estimators.device``). Imports nothing that needs ray,
dask or zarr, so it runs on the GPU machine with ``PYTHONPATH=.`` (jobs/gpu_check.sh).
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

from lmi_distributed.estimators import device  # noqa: E402  (the one GPU-usable check)

for _kind in ("torch", "cupy"):
    if not (device.torch_gpu_usable() if _kind == "torch" else device.cupy_usable()):  # pragma: no cover
        pytest.skip(f"{_kind} GPU not usable: {device.why_not(_kind)}", allow_module_level=True)
import torch  # noqa: E402

from lmi_distributed.estimators.api import estimate_many  # noqa: E402
from lmi_distributed.estimators.ksg import ksg_pmi  # noqa: E402
from lmi_distributed.synthetic import gaussian_benchmark  # noqa: E402

FAST = dict(hidden=64, max_epochs=25, patience=25, batch_size=128, lr=1e-3)


def _pairs(p, d=20, n=1000):
    return [gaussian_benchmark(n, d, 1, 1.0, s)[:2] for s in range(p)]


def test_cuda_matches_cpu_split_and_estimate():
    data = _pairs(2)
    cpu = estimate_many(data, seeds=[0, 1], device="cpu", **FAST)
    gpu = estimate_many(data, seeds=[0, 1], device="cuda", **FAST)
    for c, g in zip(cpu, gpu):
        np.testing.assert_array_equal(c.test_idx, g.test_idx)          # same seeded split
        # same init, minibatch order; dropout masks come from a CUDA generator, so the
        # trajectories differ: the estimates must agree to the estimator's own noise
        assert abs(c.mi - g.mi) < 0.15, (c.mi, g.mi)
        assert g.mi > 0.5


def test_dlpack_ksg_equals_cpu_ksg_on_the_same_latents():
    res = estimate_many(_pairs(3), seeds=[0, 1, 2], device="cuda", **FAST)
    for r in res:
        te = r.test_idx
        cpu = ksg_pmi(r.zx[te], r.zy[te], k=3, backend="tree")
        np.testing.assert_allclose(r.pmi[te], cpu, rtol=0, atol=1e-9)
        assert np.isnan(r.pmi[r.train_idx]).all()


def test_batch_invariance_on_cuda():
    data = _pairs(4)
    alone = estimate_many(data[2:3], seeds=[12], device="cuda", **FAST)[0]
    batch = estimate_many(data, seeds=[10, 11, 12, 13], device="cuda", **FAST)[2]
    assert alone.epochs == batch.epochs
    np.testing.assert_allclose(alone.zx, batch.zx, atol=1e-4)
    assert abs(alone.mi - batch.mi) < 1e-3


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_tracks_float32(precision):
    data = _pairs(3, d=100, n=2000)
    ref = estimate_many(data, seeds=[0, 1, 2], device="cuda", **FAST)
    low = estimate_many(data, seeds=[0, 1, 2], device="cuda", precision=precision, **FAST)
    diff = max(abs(a.mi - b.mi) for a, b in zip(ref, low))
    assert diff < 0.15, diff
