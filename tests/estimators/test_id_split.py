"""The held-out-ids split: no id in both halves, seeded, the documented id fraction."""
from __future__ import annotations

import numpy as np
import pytest

from lmi_distributed.estimators.id_split import held_out_id_fraction, id_split_indices


def _join_rows(n_rows=600, n_kinases=40, n_targets=120, seed=0):
    rng = np.random.default_rng(seed)
    # hubs: kinase popularity is skewed, as in kinase-target tables
    kin = rng.choice(n_kinases, size=n_rows, p=np.arange(n_kinases, 0, -1) / np.arange(n_kinases, 0, -1).sum())
    tgt = rng.integers(0, n_targets, size=n_rows)
    return np.array([f"K{i}" for i in kin]), np.array([f"T{i}" for i in tgt])


def test_no_id_in_both_halves_and_seeded():
    xi, yi = _join_rows()
    tr, te = id_split_indices(xi, yi, seed=5)
    train_ids = set(xi[tr]) | set(yi[tr])
    test_ids = set(xi[te]) | set(yi[te])
    assert train_ids.isdisjoint(test_ids)
    assert len(tr) > 50 and len(te) > 20          # both halves usable for this table
    assert np.intersect1d(tr, te).size == 0 and np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)
    tr2, te2 = id_split_indices(xi, yi, seed=5)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    tr3, _ = id_split_indices(xi, yi, seed=6)
    assert not np.array_equal(tr, tr3)


def test_shared_namespace_and_fraction():
    # the same protein on both sides of different rows is one id
    xi = np.array(["A", "B", "C", "D"] * 50)
    yi = np.array(["B", "A", "D", "C"] * 50)
    tr, te = id_split_indices(xi, yi, seed=0)
    assert (set(xi[tr]) | set(yi[tr])).isdisjoint(set(xi[te]) | set(yi[te]))
    assert held_out_id_fraction(0.5) == pytest.approx(0.5)
    # t : (1 - t) = (1 - h)^2 : h^2 for ids spread evenly over rows
    for t in (0.3, 0.5, 0.8):
        h = held_out_id_fraction(t)
        assert (1 - h) ** 2 / ((1 - h) ** 2 + h ** 2) == pytest.approx(t)


def test_bad_ids():
    with pytest.raises(ValueError, match="1-D of one length"):
        id_split_indices(np.array(["a", "b"]), np.array(["a"]), seed=0)


def test_estimate_with_id_split_keeps_ids_apart():
    import lmi_distributed as lmi
    from lmi_distributed.errors import InputError

    xi, yi = _join_rows(n_rows=600)
    rng = np.random.default_rng(1)
    emb = {name: rng.normal(size=4) for name in set(xi) | set(yi)}
    X = np.stack([emb[a] for a in xi]) + 0.1 * rng.normal(size=(600, 4))
    Y = np.stack([emb[b] for b in yi]) + 0.1 * rng.normal(size=(600, 4))
    fast = dict(hidden=16, max_epochs=3, patience=3, batch_size=64, lr=1e-3, num_threads=1, ksg_noise=1e-6)
    res = lmi.estimate(X, Y, seed=0, split="ids", ids=(xi, yi), **fast)
    tr, te = res.train_idx, res.test_idx
    assert (set(xi[tr]) | set(yi[tr])).isdisjoint(set(xi[te]) | set(yi[te]))
    used = np.zeros(600, bool)
    used[tr] = used[te] = True
    assert (~used).any()                                   # mixed rows are in neither half
    assert np.isnan(res.pmi[~used]).all() and np.isnan(res.zx[~used]).all()
    assert np.isfinite(res.pmi[te]).all() == (res.status == "ok")
    with pytest.raises(InputError, match=r"split='ids' needs the row ids"):
        lmi.estimate(X, Y, seed=0, split="ids", **fast)
    with pytest.raises(InputError, match=r"two \(N,\) arrays with N=600"):
        lmi.estimate(X, Y, seed=0, split="ids", ids=(xi[:10], yi), **fast)
