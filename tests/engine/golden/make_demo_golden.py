"""Write the golden numbers of a small demo study, computed Ray-free by this checkout's engine.

    python tests/engine/golden/make_demo_golden.py OUT.json

The study is the demo's (configs/demo.yaml: Gaussian Markov chain, seeds, pairing, replicates,
latent null) shrunk so it runs in seconds: 3 variables of 300 rows, hidden 16, 6 epochs, one
retrain shuffle and 20 latent permutations, with the paper's estimator (`settings.PAPER`).
`tests/engine/test_demo_golden.py` recomputes it and
compares with the committed `demo_small_pairs.json`, which was written by this script on the
commit before the issue-9 refactors (ae81980), so the refactors are shown not to move a number.
Works with both layouts of the engine (`engine/execute.py` before the split, `engine/worker.py`
after).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import yaml


def small_demo_raw(tmp: Path) -> dict:
    import lmi_distributed

    root = Path(lmi_distributed.__file__).resolve().parents[1]   # the checkout whose engine runs
    raw = yaml.safe_load((root / "configs" / "demo.yaml").read_text())
    raw["data"] = {"store": str(tmp / "store.zarr"), "truth": str(tmp / "truth.json"),
                   "demo": {"kind": "gaussian_markov_chain", "n": 300, "t": 3, "k": 2, "d": 6, "rho": 0.8,
                            "seed": 0}}
    raw["variables"] = ["X0", "X1", "X2"]
    raw["nulls"] = {"retrain_shuffles": 1, "latent_permutations": 20}
    raw["estimator"] = {"hidden": 16, "batch_size": 64, "lr": 1.0e-3, "max_epochs": 6, "patience": 6}
    try:            # the paper's estimator, the default when the golden file was written
        from lmi_distributed.estimators.settings import PAPER
        raw["estimator"].update(PAPER)
    except ImportError:                      # checkouts before PAPER existed: the default was the paper's
        pass
    raw["output"] = {"path": str(tmp / "out"), "save_pmi": "observed", "report": False}
    return raw


def compute(tmp: Path) -> dict:
    """Run every batch of the small demo without Ray; returns {pair: {estimate, sem, null_mean, p}}."""
    import torch

    from lmi_distributed.engine.aggregate import aggregate_pairs
    from lmi_distributed.engine.config import parse_study
    from lmi_distributed.engine.runner import prepare_study
    try:
        from lmi_distributed.engine.worker import execute_batch
    except ImportError:                      # the layout before the split
        from lmi_distributed.engine.execute import execute_batch

    torch.set_num_threads(1)
    cfg = parse_study(small_demo_raw(tmp))
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    for b in plan.batches:
        execute_batch(b, cfg, sp, out, variables=variables)
    pairs = aggregate_pairs(rs.read_tasks(), cfg)
    cols = ["estimate", "sem", "null_mean", "p", "shuffle_null_mean", "latent_null_mean", "latent_null_sd", "p_latent"]
    return {str(r["pair"]): {c: float(r[c]) for c in cols} for _, r in pairs.iterrows()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        numbers = compute(Path(d))
    Path(sys.argv[1]).write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    print(json.dumps(numbers, indent=1))
