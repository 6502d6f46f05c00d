"""pairwise: the in-memory screen (batched LMI, latent permutation and retrain-shuffle nulls, p,
BH q, flagged rows, held-out-ids split), and its equality with the engine's execute_batch."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import lmi_distributed as lmi
from lmi_distributed import stats
from lmi_distributed.engine.seeds import derive_seed as engine_seed
from lmi_distributed.errors import ConfigError, InputError, LMIWarning
from lmi_distributed.estimators.pairwise import PAIRWISE_COLUMNS, task_seed
from lmi_distributed.synthetic import gaussian_benchmark

FAST = dict(hidden=16, max_epochs=20, lr=1e-3, num_threads=1)


@pytest.fixture(scope="module")
def variables():
    A, B, _ = gaussian_benchmark(n=400, d=4, k=1, mi_bits=2.0, seed=0)
    C = np.random.default_rng(1).standard_normal((400, 3))
    return {"a": A, "b": B, "c": C}


def test_screen_finds_the_dependent_pair(variables):
    # Measured (seeds 0, 1, 2): a~b estimates 0.53-0.87 bits against a latent null of sd ~0.065
    # (so p is the floor 1/100); the independent pairs had p 0.21-0.99. ~2-10 s on 2 cores.
    df = lmi.pairwise(variables, n_permutations=99, seed=0, **FAST)
    assert list(df.columns) == PAIRWISE_COLUMNS
    assert df["pair"].tolist() == ["a~b", "a~c", "b~c"]
    assert (df["status"] == "ok").all() and (df["n"] == 400).all() and (df["replicates"] == 1).all()
    ab = df.set_index("pair").loc["a~b"]
    assert ab["p"] == pytest.approx(0.01)          # no null draw reached the observed MI
    assert ab["significant"] and ab["q"] <= 0.05
    assert ab["estimate"] > ab["null_mean"] + 5 * ab["null_sd"]
    others = df[df["pair"] != "a~b"]
    assert not others["significant"].any() and (others["p"] > 0.1).all()
    np.testing.assert_allclose(df["q"], stats.benjamini_hochberg(df["p"].to_numpy()), rtol=0, atol=0)
    assert np.isnan(df["sem"]).all()               # one replicate: no SEM


def test_seeds_are_the_engines_and_replicates_are_estimates(variables):
    # pinned: every stored result depends on these (blake2b of "7:<key>", mod 2**32); the engine
    # and pairwise share the one definition, so a study and a screen train the same networks
    assert task_seed(7, "a~b/r1/obs") == engine_seed(7, "a~b/r1/obs") == 1937282694
    assert task_seed(7, "a~b/r1/obs/latent_perm") == engine_seed(7, "a~b/r1/obs/latent_perm") == 920223502
    df = lmi.pairwise(variables, pairs=[("b", "a")], replicates=2, seed=7, **FAST)
    row = df.iloc[0]
    assert (row["pair"], row["x"], row["y"], row["replicates"]) == ("b~a", "b", "a", 2)
    res = [lmi.estimate(variables["b"], variables["a"], seed=engine_seed(7, f"b~a/r{r}/obs"), **FAST)
           for r in range(2)]
    mis = [r.mi for r in res]
    assert row["estimate"] == np.mean(mis)         # same code path, same seeds: exactly equal
    assert row["n_canonical"] == sum(r.view == "canonical" for r in res)
    assert row["sem"] == pytest.approx(stats.sem(mis), rel=1e-12)
    assert np.isnan(row["p"]) and np.isnan(row["q"]) and not row["significant"]   # no permutations


def test_constant_variable_is_a_flagged_row_not_an_error(variables):
    v = {"a": variables["a"], "b": variables["b"], "k": np.ones((400, 2))}
    with pytest.warns(LMIWarning, match="degenerate"):
        df = lmi.pairwise(v, n_permutations=19, **FAST)
    flagged = df[df["pair"].isin(["a~k", "b~k"])]
    assert (flagged["status"] == "degenerate").all()
    assert flagged["detail"].str.startswith("replicate 0:").all()
    assert flagged["detail"].str.endswith("0 of 1 replicate(s) ok").all()
    for c in ("estimate", "null_mean", "p", "q"):
        assert flagged[c].isna().all(), c
    assert not flagged["significant"].any()
    ab = df.set_index("pair").loc["a~b"]
    assert ab["status"] == "ok" and ab["p"] == pytest.approx(0.05)  # 19 permutations: floor 1/20
    assert ab["q"] == ab["p"]                      # BH over the one ok pair only


def test_diverged_replicate_flags_its_pair(variables):
    with pytest.warns(LMIWarning, match="diverged"):
        df = lmi.pairwise(variables, pairs=[("a", "b")], replicates=2, hidden=16, max_epochs=2,
                          lr=1e6, num_threads=1)
    row = df.iloc[0]
    assert row["status"] == "diverged" and np.isnan(row["estimate"]) and not row["significant"]
    assert "0 of 2 replicate(s) ok" in row["detail"]


@pytest.mark.parametrize("variables_, pairs, match", [
    ({"a": np.zeros((50, 2)), "b": np.zeros((40, 2))}, "all", "same number of rows"),
    ({"a": np.zeros(50), "b": np.zeros((50, 2))}, "all", "2-D"),
    ({"a": np.full((50, 2), np.nan), "b": np.zeros((50, 2))}, "all", "NaN"),
    ({"a": np.zeros((50, 2)), "b": np.zeros((50, 2))}, [("a", "z")], "unknown variable 'z'"),
    ({"a": np.zeros((50, 2)), "b": np.zeros((50, 2))}, [("a", "a")], "itself"),
    ({"a": np.zeros((50, 2)), "b": np.zeros((50, 2))}, [("a", "b"), ("a", "b")], "twice"),
    ({"a": np.zeros((50, 2)), "b": np.zeros((50, 2))}, "some", "'all'"),
    ({"a": np.zeros((5, 2)), "b": np.zeros((5, 2))}, "all", "too few samples"),
    ({"a": np.zeros((50, 2))}, "all", "at least two"),
])
def test_bad_input_raises_before_training(variables_, pairs, match):
    with pytest.raises(InputError, match=match):
        lmi.pairwise(variables_, pairs=pairs, **FAST)


@pytest.mark.parametrize("kw, match", [
    (dict(replicates=0), "replicates"), (dict(n_permutations=-1), "n_permutations"),
    (dict(alpha=1.5), "alpha"), (dict(seed=-3), "seed"), (dict(n_shuffles=-1), "n_shuffles"),
    (dict(n_shuffles=1.5), "n_shuffles"), (dict(p_null="shuffles"), "p_null"),
    (dict(p_null="retrain_shuffles", n_permutations=9), "n_shuffles is 0"),
    (dict(p_null="latent_permutations", n_shuffles=2), "n_permutations is 0"),
    (dict(ids=np.arange(400)), "split='ids'"),        # ids given, but split is 'rows'
    (dict(lr=-1.0), "lr"), (dict(attribution=True), "attribution=True is not supported"),
])
def test_bad_options_raise_config_error(variables, kw, match):
    with pytest.raises(ConfigError, match=match):
        lmi.pairwise(variables, **{**FAST, **kw})


# ------------------------------------------------------------------ retrain-shuffle null
def test_task_keys_and_shuffle_draws_are_the_engines():
    """The one definition of keys and shuffle draws (estimators/seeding.py) is what the planner
    puts in its tasks, with the key format pinned literally."""
    from lmi_distributed.engine.config import parse_study
    from lmi_distributed.engine.planner import make_tasks
    from lmi_distributed.estimators.seeding import key_seed, shuffle_permutation, shuffle_seed, task_key

    assert [task_key("a", "b", 0), task_key("a", "b", 3, -1), task_key("x.1", "y-2", 2, 0)] == \
        ["a~b/r0/obs", "a~b/r3/obs", "x.1~y-2/r2/s0"]
    cfg = parse_study({"name": "k", "seed": 3, "data": {"store": "s.zarr"}, "variables": ["a", "b"],
                       "pairs": {"explicit": [["a", "b"]]}, "replicates": 2, "nulls": {"retrain_shuffles": 2},
                       "output": {"path": "o"}})
    tasks = make_tasks(cfg)
    assert [t.key for t in tasks] == [task_key("a", "b", r, j) for r in range(2) for j in range(-1, 2)]
    for t in tasks:
        assert t.seed == key_seed(3, t.key) and t.shuffle_seed == shuffle_seed(3, t.key)
    # the worker permutes Y's rows with default_rng(task.shuffle_seed)
    np.testing.assert_array_equal(shuffle_permutation(50, shuffle_seed(3, "a~b/r1/s4")),
                                  np.random.default_rng(engine_seed(3, "a~b/r1/s4/shuffle")).permutation(50))


@pytest.fixture(scope="module")
def shuffled(variables):
    # one dependent (a~b, 2 bits) and one independent (a~c) pair; 9 retrain shuffles and 9 latent
    # permutations each: 2 x 10 trainings in two batches (~10-40 s on the busy 2-core machine)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LMIWarning)        # no training may be dropped here
        return lmi.pairwise(variables, pairs=[("a", "b"), ("a", "c")], n_shuffles=9, n_permutations=9,
                            seed=3, **FAST)


def test_retrain_shuffle_null_separates_dependent_from_independent(shuffled):
    df = shuffled.set_index("pair")
    assert list(shuffled.columns) == PAIRWISE_COLUMNS
    assert (df["status"] == "ok").all() and (df["shuffle_n_null"] == 9).all()
    assert (df["shuffle_n_dropped"] == 0).all() and (df["latent_n_null"] == 9).all()
    assert (df["null"] == "retrain_shuffles").all()          # auto: shuffles when there are any
    np.testing.assert_array_equal(df["p"], df["p_shuffle"])
    np.testing.assert_array_equal(df["null_mean"], df["shuffle_null_mean"])
    ab, ac = df.loc["a~b"], df.loc["a~c"]
    # dependent: no shuffled training reaches the observed MI, so p is the floor 1/(1+9)
    assert ab["p_shuffle"] == pytest.approx(1 / 10, abs=1e-12)       # exact fraction, float rounding only
    assert ab["estimate"] > ab["shuffle_null_mean"] + 3 * ab["shuffle_null_sd"]
    # independent: the observed MI sits inside its shuffled null (measured p_shuffle 0.5 at seed 3;
    # 0.2 is the smallest p an independent pair may show here without this test being a coin flip)
    assert ac["p_shuffle"] >= 0.2
    assert abs(ac["estimate"] - ac["shuffle_null_mean"]) < 3 * ac["shuffle_null_sd"]
    assert not ac["significant"]     # (a~b: q = 2 x 0.1 with 9 shuffles, above alpha; p is the floor)
    np.testing.assert_allclose(df["q"], stats.benjamini_hochberg(df["p"].to_numpy()), rtol=0, atol=0)
    assert df.loc["a~b", "z"] > 3


def test_p_null_picks_the_null_and_nothing_else_changes(variables, shuffled):
    df = lmi.pairwise(variables, pairs=[("a", "b"), ("a", "c")], n_shuffles=9, n_permutations=9, seed=3,
                      p_null="latent_permutations", **FAST)
    same = [c for c in PAIRWISE_COLUMNS if c not in ("null", "null_mean", "null_sd", "p", "q", "z", "significant")]
    pd_testing = pytest.importorskip("pandas").testing
    pd_testing.assert_frame_equal(df[same], shuffled[same])   # same seeds: the same trainings, exactly
    assert (df["null"] == "latent_permutations").all()
    np.testing.assert_array_equal(df["p"], df["p_latent"])
    np.testing.assert_array_equal(df["null_sd"], df["latent_null_sd"])


def test_shuffle_trainings_are_the_estimates_of_shuffled_rows(variables):
    # the shuffle null is estimate(X, Y[perm]) with the engine's seeds, nothing else
    from lmi_distributed.estimators.seeding import shuffle_permutation, shuffle_seed

    df = lmi.pairwise(variables, pairs=[("b", "c")], n_shuffles=2, seed=11, **FAST)
    mis = [lmi.estimate(variables["b"], variables["c"][shuffle_permutation(400, shuffle_seed(11, f"b~c/r0/s{j}"))],
                        seed=engine_seed(11, f"b~c/r0/s{j}"), **FAST).mi for j in range(2)]
    row = df.iloc[0]
    assert row["shuffle_null_mean"] == np.mean(mis)          # same code path, same seeds: exactly
    assert row["p_shuffle"] == stats.permutation_pvalue(row["estimate"], mis)
    assert row["null"] == "retrain_shuffles" and row["latent_n_null"] == 0 and np.isnan(row["p_latent"])


# ------------------------------------------------------------------------ split="ids"
def _spy(monkeypatch):
    """Record the tasks pairwise hands to the estimator: (data, seeds, ids, results)."""
    from lmi_distributed.estimators import pairwise as pw

    calls = []
    real = pw._estimate_many

    def spy(data, seeds, s, **kw):
        res = real(data, seeds, s, **kw)
        calls.append((data, seeds, kw.get("ids"), res))
        return res

    monkeypatch.setattr(pw, "_estimate_many", spy)
    return calls


def _check_held_out_by_id(x_ids, y_ids, res):
    """The held-out rows are exactly the rows whose two ids are in the held-out id set H, the
    training rows those with neither id in H, and a row mixing the two is in neither half. H is
    built here from id_split's documented rule: the task's split seed permutes the sorted distinct
    ids and the first half (train_fraction 0.5) are held out."""
    from lmi_distributed.estimators.seeding import derive_seed

    x_ids, y_ids = np.asarray(x_ids).astype(str), np.asarray(y_ids).astype(str)
    uniq = np.unique(np.concatenate([x_ids, y_ids]))
    order = np.random.default_rng(derive_seed(res.seed, "split")).permutation(uniq.size)
    held = set(uniq[order[:round(0.5 * uniq.size)]])
    hx = np.array([v in held for v in x_ids])
    hy = np.array([v in held for v in y_ids])
    np.testing.assert_array_equal(res.test_idx, np.flatnonzero(hx & hy))
    np.testing.assert_array_equal(res.train_idx, np.flatnonzero(~hx & ~hy))
    return held


def test_ids_split_holds_out_rows_by_id(variables, monkeypatch):
    calls = _spy(monkeypatch)
    rng = np.random.default_rng(5)
    donors = rng.integers(0, 40, 400).astype(str)            # one id per row, shared: 40 donors
    df = lmi.pairwise(variables, pairs=[("a", "b")], replicates=2, n_shuffles=1, seed=2, split="ids",
                      ids=donors, **FAST)
    assert df.iloc[0]["status"] == "ok" and df.iloc[0]["shuffle_n_null"] == 1
    (data, seeds, ids, results), = calls
    assert len(results) == 4                                  # r0 obs, r0 s0, r1 obs, r1 s0
    assert seeds == [engine_seed(2, f"a~b/{k}") for k in ("r0/obs", "r0/s0", "r1/obs", "r1/s0")]
    helds = []
    for (x_ids, y_ids), (X, Y), res, key in zip(ids, data, results, ["r0/obs", "r0/s0", "r1/obs", "r1/s0"]):
        assert res.status == "ok", (key, res.detail)
        helds.append(_check_held_out_by_id(x_ids, y_ids, res))
        if key.endswith("obs"):                               # observed: no donor in both halves
            np.testing.assert_array_equal(x_ids, donors)
            np.testing.assert_array_equal(y_ids, donors)
            assert not set(donors[res.test_idx]) & set(donors[res.train_idx])
        else:                                                 # a shuffle's Y ids move with Y's rows
            from lmi_distributed.estimators.seeding import shuffle_permutation, shuffle_seed

            perm = shuffle_permutation(400, shuffle_seed(2, "a~b/" + key))
            np.testing.assert_array_equal(y_ids, donors[perm])
            np.testing.assert_array_equal(Y, variables["b"][perm])
            np.testing.assert_array_equal(X, variables["a"])
    assert helds[0] != helds[2]                               # replicates hold out different donors


def test_per_variable_ids(variables, monkeypatch):
    calls = _spy(monkeypatch)
    rng = np.random.default_rng(6)
    kin, tgt = rng.integers(0, 30, 400).astype(str), rng.integers(0, 30, 400).astype(str)
    lmi.pairwise(variables, pairs=[("a", "b"), ("c", "a")], split="ids",
                 ids={"a": kin, "b": tgt, "c": tgt}, **FAST)
    (_, _, ids, results), = calls
    np.testing.assert_array_equal(ids[0][0], kin)
    np.testing.assert_array_equal(ids[0][1], tgt)
    np.testing.assert_array_equal(ids[1][0], tgt)             # pair (c, a): c's ids, then a's
    np.testing.assert_array_equal(ids[1][1], kin)
    for (x_ids, y_ids), res in zip(ids, results):
        held = _check_held_out_by_id(x_ids, y_ids, res)
        mixed = np.setdiff1d(np.arange(400), np.concatenate([res.train_idx, res.test_idx]))
        assert mixed.size > 0 and all((x_ids[i] in held) != (y_ids[i] in held) for i in mixed)


@pytest.mark.parametrize("ids, match", [
    (None, "split='ids' needs ids"),
    (np.arange(399), r"ids must be one id per row, shape \(400,\)"),
    (np.arange(800).reshape(400, 2), r"shape \(400,\)"),
    ({"a": np.arange(400)}, r"no entry for paired variable\(s\) \['b'\]"),
    ({"a": np.arange(400), "b": np.arange(400), "zz": np.arange(400)}, "unknown variable"),
    ({"a": np.arange(400), "b": np.arange(300)}, r"ids\['b'\] must be one id per row"),
    (np.where(np.arange(400) == 7, np.nan, np.arange(400.0)), "NaN ids in 1 of 400"),
    (np.array([None] + ["p"] * 399, dtype=object), "missing ids"),
    # every x id "p", every y id "q": whichever is held out, every row mixes the two -> no half
    ({"a": np.full(400, "p"), "b": np.full(400, "q")}, r"a~b, task a~b/r0/obs: split='ids' left"),
])
def test_bad_ids_raise_before_training(variables, ids, match, monkeypatch):
    calls = _spy(monkeypatch)
    with pytest.raises(InputError, match=match):
        lmi.pairwise(variables, pairs=[("a", "b")], split="ids", ids=ids, **FAST)
    assert calls == []                                        # nothing was trained


# ------------------------------------------------------------- equal to the engine's numbers
@pytest.mark.parametrize("split", ["rows", "ids"])
def test_pairwise_equals_the_engine_for_the_same_seed(variables, tmp_path, split):
    """An aligned study over a store holding the same arrays, run batch by batch through the
    Ray-free execute_batch and aggregated by the engine, gives pairwise's rows exactly: same
    task keys, seeds, shuffles, latent permutations, nulls, p and q."""
    import pandas as pd
    import torch

    from lmi_distributed.data import write_matrix
    from lmi_distributed.engine.aggregate import aggregate_pairs
    from lmi_distributed.engine.config import parse_study
    from lmi_distributed.engine.study_data import pair_shape, resolve_variables
    from lmi_distributed.engine.worker import execute_batch
    from lmi_distributed.engine.planner import plan_study

    torch.set_num_threads(1)
    n = 200
    row_ids = [f"s{i}" for i in range(n)]
    vals = {k: np.asarray(v[:n], np.float32) for k, v in variables.items()}
    for k, v in vals.items():
        write_matrix(str(tmp_path / "s.zarr"), k, v, ids=row_ids)
    est = {"hidden": 8, "max_epochs": 8, "patience": 8, "batch_size": 64, "lr": 1e-3, "split": split}
    cfg = parse_study({
        "name": "eq", "seed": 4, "data": {"store": str(tmp_path / "s.zarr")}, "variables": ["a", "b", "c"],
        "pairs": {"explicit": [["a", "b"], ["b", "c"]]}, "pairing": {"rule": "aligned"}, "replicates": 2,
        "nulls": {"retrain_shuffles": 2, "latent_permutations": 5}, "estimator": est,
        "resources": {"pairs_per_batch": 64}, "output": {"path": str(tmp_path / "out"), "report": False},
    })
    sp = str(tmp_path / "s.zarr")
    variables_ = resolve_variables(cfg, sp)
    plan = plan_study(cfg, lambda x, y: pair_shape(cfg, sp, variables_, x, y))
    recs = [r for b in plan.batches
            for r in execute_batch(b, cfg, sp, str(tmp_path / "out"), variables=variables_, write=False)]
    engine = aggregate_pairs(pd.DataFrame(recs), cfg)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LMIWarning)
        mine = lmi.pairwise(vals, pairs=[("a", "b"), ("b", "c")], replicates=2, n_shuffles=2, n_permutations=5,
                            seed=4, settings=cfg.estimator_settings("cpu"),
                            ids=np.array(row_ids) if split == "ids" else None)
    assert (mine["status"] == "ok").all(), mine[["pair", "status", "detail"]]
    cols = [c for c in PAIRWISE_COLUMNS if c in engine.columns and c not in ("replicates",)]
    assert len(cols) >= 24
    pd.testing.assert_frame_equal(mine[cols].reset_index(drop=True), engine[cols].reset_index(drop=True))
