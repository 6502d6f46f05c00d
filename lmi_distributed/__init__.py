"""lmi_distributed: latent mutual information (LMI) estimation, from one pair to a Ray cluster.

Quick use::

    import lmi_distributed as lmi
    res = lmi.estimate(X, Y, seed=0)     # X: (N, d_x), Y: (N, d_y) -> res.mi in bits
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["estimate", "estimate_many", "LMISettings", "LMIResult", "__version__"]


def __getattr__(name: str):
    # Lazy: importing the package must not import torch (the CLI's --help stays fast).
    if name in ("estimate", "estimate_many", "LMISettings", "LMIResult"):
        from lmi_distributed.estimators import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmi_distributed' has no attribute {name!r}")
