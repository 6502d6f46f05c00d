"""pairwise: the in-memory screen (batched LMI, latent permutation nulls, p, BH q, flagged rows)."""
from __future__ import annotations

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
    mis = [lmi.estimate(variables["b"], variables["a"], seed=engine_seed(7, f"b~a/r{r}/obs"), **FAST).mi
           for r in range(2)]
    assert row["estimate"] == np.mean(mis)         # same code path, same seeds: exactly equal
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
    (dict(alpha=1.5), "alpha"), (dict(seed=-3), "seed"), (dict(split="ids"), "split"),
    (dict(lr=-1.0), "lr"),
])
def test_bad_options_raise_config_error(variables, kw, match):
    with pytest.raises(ConfigError, match=match):
        lmi.pairwise(variables, **{**FAST, **kw})
