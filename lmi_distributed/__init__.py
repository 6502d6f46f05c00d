"""lmi_distributed: latent mutual information (LMI) estimation, from one pair to a Ray cluster.

Quick use (MI in bits)::

    import lmi_distributed as lmi
    est = lmi.LMI(random_state=0).fit(X, Y)   # X: (N, d_x), Y: (N, d_y) -> est.mi_, est.pmi_
    est.score_samples(Xq, Yq)                 # out-of-sample pMI of new pairs (paper Alg. 2)
    lmi.pairwise({"a": A, "b": B, "c": C}, n_permutations=99)   # a screen with p and q
    res = lmi.estimate(X, Y, seed=0)          # one call -> res.mi

Every public name is loaded lazily: importing the package does not import torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "LMI": "lmi_distributed.estimators.estimator",
    "estimate": "lmi_distributed.estimators.api",
    "estimate_many": "lmi_distributed.estimators.api",
    "LMISettings": "lmi_distributed.estimators.settings",
    "PAPER": "lmi_distributed.estimators.settings",
    "LMIResult": "lmi_distributed.estimators.api",
    "pairwise": "lmi_distributed.estimators.pairwise",
    "ksg_mi": "lmi_distributed.estimators.ksg",
    "ksg_pmi": "lmi_distributed.estimators.ksg",
    "latent_permutation_null": "lmi_distributed.estimators.permutation",
    "permutation_pvalue": "lmi_distributed.stats",
    "benjamini_hochberg": "lmi_distributed.stats",
    "LMIError": "lmi_distributed.errors",
    "InputError": "lmi_distributed.errors",
    "ConfigError": "lmi_distributed.errors",
    "DataError": "lmi_distributed.errors",
    "LMIWarning": "lmi_distributed.errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    # Lazy: importing the package must not import torch (the CLI's --help stays fast).
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'lmi_distributed' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
