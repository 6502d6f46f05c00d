"""One "GPU usable" check for torch and for CuPy.

"Usable" means more than "imports": the check creates a CUDA context, allocates a tiny array
on the device and runs a tiny kernel on it (for CuPy an elementwise kernel and a reduction, both
compiled at run time by NVRTC as the KSG raw kernels are), and reads the result back. A driver
that is missing or too old, a device hidden by ``CUDA_VISIBLE_DEVICES``, a wheel built for
another CUDA, or a broken NVRTC all answer False here, once, instead of failing later inside
a batch.

The answer is cached per process (the probe costs a CUDA context); :func:`why_not` gives the
reason of a False answer for error messages, and :func:`clear_cache` forgets both (tests).

Callers use the functions through this module (``device.cupy_usable()``), so a test that
monkeypatches ``device.cupy_usable`` / ``device.torch_gpu_usable`` steers every caller:
``api`` (training device, DLPack KSG hand-off), ``neighbors.resolve_backend``, ``permutation``,
``engine.worker`` (null backend) and ``engine.runner`` (a GPU worker's device).
"""
from __future__ import annotations

import functools

__all__ = ["torch_gpu_usable", "cupy_usable", "why_not", "clear_cache"]


@functools.lru_cache(maxsize=None)
def _probe_torch() -> tuple[bool, str]:
    """(usable, reason when not): torch sees a CUDA device and runs a tiny kernel on it."""
    try:
        import torch
    except ImportError as exc:
        return False, f"torch does not import ({exc})"
    try:
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device (torch.cuda.is_available() is False)"
        got = float(torch.arange(4, device="cuda", dtype=torch.float32).mul(2).sum().item())
    except Exception as exc:     # noqa: BLE001 - any failure means "not usable"; the reason is kept
        return False, f"torch could not run a kernel on the CUDA device ({type(exc).__name__}: {exc})"
    if got != 12.0:
        return False, f"torch's CUDA test kernel returned {got}, expected 12"
    return True, ""


@functools.lru_cache(maxsize=None)
def _probe_cupy() -> tuple[bool, str]:
    """(usable, reason when not): CuPy sees a CUDA device and compiles + runs tiny kernels."""
    try:
        import cupy
    except ImportError as exc:
        return False, f"cupy does not import ({exc})"
    except Exception as exc:     # noqa: BLE001 - a broken install can raise anything on import
        return False, f"cupy failed to import ({type(exc).__name__}: {exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "cupy sees no CUDA device"
        got = float((cupy.arange(4, dtype=cupy.float64) * 2).sum().get())
    except Exception as exc:     # noqa: BLE001 - driver/runtime/NVRTC errors all mean "not usable"
        return False, f"cupy could not run a kernel on the CUDA device ({type(exc).__name__}: {exc})"
    if got != 12.0:
        return False, f"cupy's test kernel returned {got}, expected 12"
    return True, ""


def torch_gpu_usable() -> bool:
    """True when torch can allocate on a CUDA device and run a kernel there (cached)."""
    return _probe_torch()[0]


def cupy_usable() -> bool:
    """True when CuPy can allocate on a CUDA device and compile + run a kernel there (cached)."""
    return _probe_cupy()[0]


def why_not(kind: str) -> str:
    """Why ``kind`` ("torch" or "cupy") is not usable; "" when it is."""
    if kind == "torch":
        return _probe_torch()[1]
    if kind == "cupy":
        return _probe_cupy()[1]
    raise ValueError(f"kind must be 'torch' or 'cupy', got {kind!r}")


def clear_cache() -> None:
    """Forget the cached answers (the next call probes again)."""
    _probe_torch.cache_clear()
    _probe_cupy.cache_clear()
