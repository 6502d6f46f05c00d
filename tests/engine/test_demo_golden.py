"""The demo's numbers do not move under refactors: a small demo study, recomputed Ray-free by
today's engine, equals the golden numbers written by ``tests/engine/golden/make_demo_golden.py`` on the
commit before the issue-9 refactors (ae81980).

The columns cover both nulls: the retrain shuffles (``p``, ``null_mean``) and the latent
permutations (``latent_null_mean``/``sd``, ``p_latent``; 20 draws, which today take the sorted-list
path while ae81980 ran one KSG per draw). The comparison is exact on purpose: same seeds, same code path, single-threaded torch on the
CPU, so every float is reproducible; a refactor that changes any number (a seed, a split, the
order of minibatches, the null's draws) must show up here. Regenerate the golden file only for
a deliberate change of numbers, and say so in the commit.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_small_demo_numbers_are_bit_identical_to_the_golden_file(tmp_path):
    sys.path.insert(0, str(GOLDEN))
    try:
        from make_demo_golden import compute
    finally:
        sys.path.remove(str(GOLDEN))
    got = compute(tmp_path)
    want = json.loads((GOLDEN / "demo_small_pairs.json").read_text())
    assert sorted(got) == sorted(want) == ["X0~X1", "X0~X2", "X1~X2"]
    for pair, cols in want.items():
        for col, v in cols.items():
            assert got[pair][col] == v, (pair, col, got[pair][col], v)
