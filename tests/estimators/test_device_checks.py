"""One "GPU usable" check (estimators/device.py), and every caller follows it.

The probes are checked by making them fail in the ways a real machine does (torch sees a device
but cannot run a kernel; cupy imports but its kernel raises): they answer False with a reason,
once (cached). Each caller is then steered by monkeypatching ``device.torch_gpu_usable`` /
``device.cupy_usable`` both ways, so the tests fail if any caller keeps its own check. Runs on
a CPU-only machine (no GPU, no cupy, no Ray needed).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from lmi_distributed.errors import ConfigError, InputError
from lmi_distributed.estimators import device

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def fresh_probe_cache():
    device.clear_cache()
    yield
    device.clear_cache()


# ----------------------------------------------------------------------------- the probes
def test_torch_probe_runs_a_kernel_not_only_is_available(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append(1) or True)

    def broken_arange(*a, **k):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(torch, "arange", broken_arange)
    assert device.torch_gpu_usable() is False
    assert "could not run a kernel" in device.why_not("torch")
    assert "no kernel image" in device.why_not("torch")
    assert device.torch_gpu_usable() is False
    assert len(calls) == 1                       # cached: the probe ran once


def test_torch_probe_without_a_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.torch_gpu_usable() is False
    assert "no CUDA device" in device.why_not("torch")


def test_cupy_probe_runs_a_kernel_not_only_imports(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.float64 = np.float64
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))

    def broken_arange(*a, **k):
        raise RuntimeError("nvrtc: error: failed to compile")

    fake.arange = broken_arange
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert device.cupy_usable() is False
    assert "could not run a kernel" in device.why_not("cupy") and "nvrtc" in device.why_not("cupy")

    device.clear_cache()
    fake.cuda.runtime.getDeviceCount = lambda: 0
    assert device.cupy_usable() is False and "no CUDA device" in device.why_not("cupy")


def test_cupy_probe_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)     # import cupy raises ImportError
    assert device.cupy_usable() is False
    assert "does not import" in device.why_not("cupy")
    with pytest.raises(ValueError, match="kind"):
        device.why_not("opencl")


# ----------------------------------------------------------------------------- the callers
def _cupy(monkeypatch, usable: bool) -> None:
    monkeypatch.setattr(device, "cupy_usable", lambda: usable)


def _torch(monkeypatch, usable: bool) -> None:
    monkeypatch.setattr(device, "torch_gpu_usable", lambda: usable)


def test_neighbors_auto_and_cupy_backends_follow_the_check(monkeypatch):
    from lmi_distributed.estimators import neighbors

    # CuPy arrays are faked by their namespace: auto picks the kernels only when cupy is usable
    monkeypatch.setattr(neighbors, "array_namespace", lambda *a: types.SimpleNamespace(__name__="cupy"))
    _cupy(monkeypatch, False)
    assert neighbors.resolve_backend("auto", None) == "tiled"
    assert neighbors.cupy_available() is False            # the kept alias follows it too
    with pytest.raises(InputError, match="backend='cupy' needs cupy"):
        neighbors.resolve_backend("cupy")
    _cupy(monkeypatch, True)
    assert neighbors.resolve_backend("auto", None) == "cupy"
    assert neighbors.resolve_backend("cupy") == "cupy"
    assert neighbors.cupy_available() is True


def test_permutation_null_auto_falls_back_to_tree_when_cupy_is_not_usable(monkeypatch):
    from lmi_distributed.estimators import permutation

    rng = np.random.default_rng(0)
    zx, zy = rng.standard_normal((60, 2)), rng.standard_normal((60, 2))
    ref = permutation.latent_permutation_null(zx, zy, n_permutations=5, seed=3, backend="tree")
    monkeypatch.setattr(permutation, "array_namespace", lambda *a: types.SimpleNamespace(__name__="cupy"))
    _cupy(monkeypatch, False)
    got = permutation.latent_permutation_null(zx, zy, n_permutations=5, seed=3, backend="auto")
    np.testing.assert_array_equal(got, ref)               # same permutations, same backend: exact
    with pytest.raises(InputError, match="cupy"):
        permutation.latent_permutation_null(zx, zy, n_permutations=5, seed=3, backend="cupy")


def test_training_device_follows_the_torch_check(monkeypatch):
    import lmi_distributed as lmi
    from lmi_distributed.estimators import api

    _torch(monkeypatch, False)
    x = np.random.default_rng(0).standard_normal((64, 2))
    with pytest.raises(ConfigError, match="device 'cuda' asked for but torch has no usable CUDA GPU"):
        lmi.estimate(x, x + 1.0, device="cuda", hidden=8, max_epochs=1)
    with pytest.raises(ConfigError, match="cuda:1"):
        api._resolve_device("cuda:1")
    assert api._resolve_device("cpu") == torch.device("cpu")
    _torch(monkeypatch, True)
    assert api._resolve_device("cuda") == torch.device("cuda")   # no allocation: only resolved


def test_dlpack_ksg_hand_off_follows_the_cupy_check(monkeypatch):
    from lmi_distributed.estimators import api
    from lmi_distributed.estimators.settings import resolve_settings

    on_gpu = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"))  # a CUDA tensor's face
    _cupy(monkeypatch, False)
    assert api._ksg_on_device(on_gpu, on_gpu, resolve_settings({"ksg_backend": "auto"})) is None
    with pytest.raises(ConfigError, match="ksg_backend='cupy' needs cupy"):
        api._ksg_on_device(on_gpu, on_gpu, resolve_settings({"ksg_backend": "cupy"}))   # default jitter too
    with pytest.raises(ConfigError, match="ksg_backend='cupy' needs cupy"):
        api._ksg_on_device(on_gpu, on_gpu, resolve_settings({"ksg_backend": "cupy", "ksg_noise": 0.0}))
    _cupy(monkeypatch, True)
    # usable CuPy, but the default 1e-10 jitter needs float64 latents: no device KSG (the CPU path)
    assert api._ksg_on_device(on_gpu, on_gpu, resolve_settings({"ksg_backend": "cupy"})) is None


def test_engine_null_backend_follows_the_cupy_check(monkeypatch):
    from lmi_distributed.engine.worker import _null_backend

    _cupy(monkeypatch, False)
    assert _null_backend("auto", "cuda") == "auto"
    _cupy(monkeypatch, True)
    assert _null_backend("auto", "cuda") == "cupy"
    assert _null_backend("auto", "cpu") == "auto"          # a CPU worker never asks
    assert _null_backend("tree", "cuda") == "tree"         # an explicit backend is kept


def test_gpu_worker_device_follows_the_torch_check(monkeypatch):
    from lmi_distributed.engine import runner

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(get_gpu_ids=lambda: [0]))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)       # leave this process alone
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: None)
    set_device = []
    monkeypatch.setattr(torch.cuda, "set_device", set_device.append)
    _torch(monkeypatch, False)
    assert runner._LMIWorker(0, 1, use_gpu=True).device == "cpu"
    assert set_device == []
    _torch(monkeypatch, True)
    w = runner._LMIWorker(1, 1, use_gpu=True)
    assert w.device == "cuda" and w.gpu_ids == [0] and set_device == [0]
