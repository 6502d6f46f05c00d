"""The accuracy suite's harness gives latentmi the width it gives ours (jobs/benchmark_accuracy.py).

latentmi 0.1.3 hard-codes its hidden widths; the harness rewrites its ``models.py`` source so that
``--hidden`` holds at every d. Until session 12 the rewrite missed latentmi's widening for d > 2048,
and latentmi ran 4096 wide at d = 5000 against our 128. The source below is latentmi's own text for
the width choice (``AECross.__init__``), so these tests fail if the rewrite misses either line.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
try:
    from benchmark_accuracy import LATENTMI_SCRIPT, latentmi_models_at_width
finally:
    sys.path.pop(0)

LATENTMI_WIDTHS = '''
def widths(x_dim, y_dim):
        Lx, Ly = 1024, 1024
        
        if x_dim > 2048:
            Lx = int(2**np.floor(np.log2(x_dim)))
        if y_dim > 2048:
            Ly = int(2**np.floor(np.log2(y_dim)))
        return Lx, Ly
'''


def _widths(src: str, x_dim: int, y_dim: int) -> tuple[int, int]:
    ns = {"np": np}
    exec(src, ns)
    return ns["widths"](x_dim, y_dim)


@pytest.mark.parametrize("dims, unpatched", [((10, 10), (1024, 1024)), ((1000, 5000), (1024, 4096)),
                                             ((5000, 5000), (4096, 4096)), ((3000, 100), (2048, 1024))])
def test_rewrite_sets_every_width(dims, unpatched):
    assert _widths(LATENTMI_WIDTHS, *dims) == unpatched          # latentmi's own rule, which the rewrite replaces
    assert _widths(latentmi_models_at_width(LATENTMI_WIDTHS, 128), *dims) == (128, 128)


def test_rewrite_refuses_a_source_without_the_widening():
    src = LATENTMI_WIDTHS.replace("Lx = int(2**np.floor(np.log2(x_dim)))", "Lx = 2048")
    with pytest.raises(AssertionError, match="x_dim"):
        latentmi_models_at_width(src, 128)


def test_script_carries_the_rewrite():
    # the subprocess script runs in latentmi's venv, so it holds the function's own source
    start, stop = LATENTMI_SCRIPT.index("def latentmi_models_at_width"), LATENTMI_SCRIPT.index("if hidden > 0:")
    ns: dict = {}
    exec(LATENTMI_SCRIPT[start:stop], ns)
    assert _widths(ns["latentmi_models_at_width"](LATENTMI_WIDTHS, 64), 5000, 5000) == (64, 64)
