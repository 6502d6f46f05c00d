"""Result store bookkeeping (atomic parts, idempotent retries, resume) and aggregation."""
import copy
import json

import numpy as np
import pandas as pd
import pytest

from lmi_distributed import stats
from lmi_distributed.engine.aggregate import aggregate_pairs, write_outputs
from lmi_distributed.engine.config import parse_study
from lmi_distributed.engine.planner import plan_study
from lmi_distributed.engine.results import ResultStore
from lmi_distributed.errors import ConfigError

RAW = {"name": "t", "seed": 1, "data": {"store": "s.zarr"}, "variables": ["A", "B", "C"],
       "pairs": {"all_pairs_of": "all"}, "output": {"path": "out"}, "replicates": 3,
       "nulls": {"retrain_shuffles": 4, "latent_permutations": 20}, "resources": {"pairs_per_batch": 5}}


def _cfg(**mod):
    raw = copy.deepcopy(RAW)
    raw.update(mod)
    return parse_study(raw)


def _fake_records(batch, scale=1.0):
    recs = []
    for t in batch.tasks:
        rng = np.random.default_rng(t.seed)
        signal = {"A~B": 1.0, "A~C": 0.02, "B~C": 0.5}[t.pair] * scale
        mi = signal + 0.01 * rng.standard_normal() if t.kind == "observed" else 0.01 * rng.standard_normal()
        recs.append({"key": t.key, "pair": t.pair, "x": t.x, "y": t.y, "replicate": t.replicate, "kind": t.kind,
                     "shuffle": t.shuffle, "seed": t.seed, "n": 100, "n_test": 50, "mi": float(mi), "epochs": 5,
                     "best_epoch": 3, "latent_null": (0.02 * rng.standard_normal(t.n_latent_permutations)).tolist(),
                     "batch_id": batch.batch_id, "worker": "w", "device": "cpu", "attempt": 0, "wall_s": 0.1})
    return recs


def test_parts_atomic_idempotent_and_resume(tmp_path):
    cfg = _cfg()
    plan = plan_study(cfg, lambda x, y: (100, 3, 3))
    rs = ResultStore(tmp_path / "out")
    assert rs.init(cfg) is False
    b0, b1 = plan.batches[0], plan.batches[1]
    p0 = rs.write_part(b0.batch_id, _fake_records(b0))
    assert p0.exists() and not list(rs.tasks_dir.glob(".tmp-*"))
    # a retried batch writes the same part name: nothing is duplicated
    assert rs.write_part(b0.batch_id, _fake_records(b0)) == p0
    assert len(rs.parts()) == 1
    assert rs.finished_keys() == {t.key for t in b0.tasks}
    # resume: init again with the same config keeps results and reports resuming
    assert ResultStore(tmp_path / "out").init(cfg) is True
    pending = [b.without(rs.finished_keys()) for b in plan.batches]
    assert [b.size for b in pending][0] == 0 and sum(b.size for b in pending) == len(plan.tasks) - b0.size
    # a part holding an already-stored key (other batch composition) is dropped on read
    rs.write_part("other", _fake_records(b1)[:2] + _fake_records(b0)[:1])
    counts = rs.key_counts()
    assert counts[b0.tasks[0].key] == 2
    df = rs.read_tasks()
    assert df["key"].is_unique and len(df) == b0.size + 2
    # a stray temporary file from a killed writer is ignored and cleaned on init
    (rs.tasks_dir / ".tmp-dead.parquet").write_bytes(b"junk")
    assert len(rs.read_tasks()) == b0.size + 2
    rs.init(cfg)
    assert not list(rs.tasks_dir.glob(".tmp-*"))


def test_fingerprint_mismatch_refuses_then_overwrites(tmp_path):
    rs = ResultStore(tmp_path / "out")
    cfg = _cfg()
    rs.init(cfg)
    plan = plan_study(cfg, lambda x, y: (100, 3, 3))
    rs.write_part(plan.batches[0].batch_id, _fake_records(plan.batches[0]))
    other = _cfg(seed=2)
    with pytest.raises(ConfigError, match="output.path"):
        ResultStore(tmp_path / "out").init(other)
    assert ResultStore(tmp_path / "out").init(other, overwrite=True) is False
    assert ResultStore(tmp_path / "out").finished_keys() == set()


def test_pmi_roundtrip(tmp_path):
    rs = ResultStore(tmp_path)
    pmi = np.array([np.nan, 0.5, 1.0])
    rs.write_pmi("A~B/r0/obs", pmi, np.array([0, 1, 2]), np.array([2, 1, 0]))
    rs.write_pmi("A~B/r0/obs", pmi * 0, None, None)  # retry: first write kept
    got = rs.read_pmi("A~B/r0/obs")
    np.testing.assert_array_equal(got["pmi"], pmi)
    np.testing.assert_array_equal(got["y_rows"], [2, 1, 0])


def _all_records(cfg):
    plan = plan_study(cfg, lambda x, y: (100, 3, 3))
    return pd.DataFrame([r for b in plan.batches for r in _fake_records(b)])


def test_aggregate_against_direct_computation():
    cfg = _cfg()
    tasks = _all_records(cfg)
    pairs = aggregate_pairs(tasks, cfg)
    assert list(pairs["pair"]) == ["A~B", "A~C", "B~C"]
    for _, row in pairs.iterrows():
        g = tasks[tasks["pair"] == row["pair"]]
        obs = g[g["kind"] == "observed"].sort_values("replicate")
        est = obs["mi"].mean()
        assert row["estimate"] == pytest.approx(est, abs=1e-15)
        assert row["sem"] == pytest.approx(obs["mi"].std(ddof=1) / np.sqrt(3))
        sh = g[g["kind"] == "shuffle"]
        snull = np.array([sh[sh["shuffle"] == j]["mi"].mean() for j in range(4)])
        assert row["p_shuffle"] == pytest.approx((1 + (snull >= est).sum()) / 5)
        lnull = np.mean(np.stack([np.asarray(v) for v in obs["latent_null"]]), axis=0)
        assert row["p_latent"] == pytest.approx((1 + (lnull >= est).sum()) / 21)
        assert row["null"] == "retrain_shuffles"  # auto: the paper's null when present
        assert row["p"] == row["p_shuffle"] and row["p"] > 0
        assert row["null_mean"] == pytest.approx(snull.mean())
        assert row["null_sd"] == pytest.approx(snull.std(ddof=1))
        assert row["z"] == pytest.approx((est - snull.mean()) / snull.std(ddof=1))
    np.testing.assert_allclose(pairs["q"], stats.benjamini_hochberg(pairs["p"].to_numpy()))
    assert list(pairs["significant"]) == list(pairs["q"] <= 0.05)
    lat = aggregate_pairs(tasks, _cfg(significance={"p_null": "latent_permutations"}))
    assert (lat["p"] == lat["p_latent"]).all() and (lat["null"] == "latent_permutations").all()
    assert lat["p"].iloc[0] == pytest.approx(1 / 21)


def test_aggregate_partial_and_outputs(tmp_path):
    cfg = _cfg(nulls={"retrain_shuffles": 0, "latent_permutations": 20})
    tasks = _all_records(cfg)
    part = tasks[tasks["pair"] != "B~C"]
    pairs = aggregate_pairs(part, cfg)
    assert pairs.loc[2, "replicates"] == 0 and np.isnan(pairs.loc[2, "p"])
    assert (pairs["null"][:2] == "latent_permutations").all()
    truth = tmp_path / "truth.json"
    truth.write_text('{"pairs": {"A~B": 1.0, "A~C": 0.0, "B~C": 0.5}}')
    cfg = _cfg(nulls={"retrain_shuffles": 0, "latent_permutations": 20},
               data={"store": "s.zarr", "truth": str(truth)})
    summary = write_outputs(cfg, tmp_path, tasks, run_info={"wall_s": 1.0})
    for f in ("pairs.parquet", "summary.json", "heatmap.png", "report.html"):
        assert (tmp_path / f).exists(), f
    back = pd.read_parquet(tmp_path / "pairs.parquet")
    assert list(back["truth"]) == [1.0, 0.0, 0.5]
    assert summary["n_pairs"] == 3 and summary["truth_mae_bits"] < 0.1


def test_status_columns_roundtrip_and_legacy_parts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = _cfg()
    plan = plan_study(cfg, lambda x, y: (100, 3, 3))
    rs = ResultStore(tmp_path / "out")
    rs.init(cfg)
    b0, b1 = plan.batches[0], plan.batches[1]
    recs = _fake_records(b0)
    recs[0].update(status="degenerate", detail="constant column", mi=float("nan"))
    recs[1].update(view="canonical", mi_latents=0.25, mi_canonical=recs[1]["mi"], canonical_bias=-0.125)
    rs.write_part(b0.batch_id, recs)
    # a part written before status/detail existed (old schema, no digest, no fingerprint)
    old = [{k: v for k, v in r.items()} for r in _fake_records(b1)]
    pq.write_table(pa.Table.from_pylist(old), rs.tasks_dir / "part-legacy-000000000000.parquet")
    df = rs.read_tasks().set_index("key")
    assert df.loc[recs[0]["key"], "status"] == "degenerate" and df.loc[recs[0]["key"], "detail"] == "constant column"
    assert (df.loc[[r["key"] for r in recs[1:]], "status"] == "ok").all()
    assert (df.loc[[r["key"] for r in old], "status"] == "ok").all()
    assert (df.loc[[r["key"] for r in old], "detail"] == "").all()
    assert len(df) == b0.size + b1.size
    # the view columns: written as given, and "" / NaN (not recorded) for parts older than them
    k1 = recs[1]["key"]
    assert df.loc[k1, "view"] == "canonical" and df.loc[k1, "mi_latents"] == 0.25
    assert df.loc[k1, "mi_canonical"] == recs[1]["mi"] and df.loc[k1, "canonical_bias"] == -0.125
    legacy = df.loc[[r["key"] for r in old]]
    assert (legacy["view"] == "").all() and legacy[["mi_latents", "mi_canonical", "canonical_bias"]].isna().all().all()


def test_parts_carry_the_study_fingerprint(tmp_path):
    import pyarrow.parquet as pq

    cfg = _cfg()
    plan = plan_study(cfg, lambda x, y: (100, 3, 3))
    rs = ResultStore(tmp_path / "out")
    rs.init(cfg, identity={"A": {"uid": "u1", "shape": [100, 3], "provenance_digest": "p"}})
    p0 = rs.write_part(plan.batches[0].batch_id, _fake_records(plan.batches[0]))
    md = pq.read_schema(p0).metadata
    assert md[b"lmi_study_fingerprint"].decode() == rs.fingerprint
    assert json.loads(rs.meta_path.read_text())["study_fingerprint"] == rs.fingerprint
    # a part computed from other data (another fingerprint) is never read as this study's
    rs.write_part(plan.batches[1].batch_id, _fake_records(plan.batches[1]), fingerprint="f" * 20)
    assert rs.finished_keys() == {t.key for t in plan.batches[0].tasks}
    assert [why.startswith("written by another study") for _, why in rs.damaged_parts()] == [True]
    # the same data identity gives the same fingerprint; another uid does not
    same = ResultStore(tmp_path / "out")
    assert same.init(cfg, identity={"A": {"uid": "u1", "shape": [100, 3], "provenance_digest": "p"}}) is True
    with pytest.raises(ConfigError, match=r"matrix 'A' changed \(uid u1 -> u2\).*--overwrite"):
        ResultStore(tmp_path / "out").init(cfg, identity={"A": {"uid": "u2", "shape": [100, 3],
                                                                "provenance_digest": "p"}})


def test_aggregate_uses_only_the_current_plan(tmp_path):
    cfg = _cfg()  # 3 replicates, 4 shuffles
    tasks = _all_records(cfg)
    fewer = _cfg(replicates=2, nulls={"retrain_shuffles": 2, "latent_permutations": 20})
    pairs = aggregate_pairs(tasks, fewer)
    for _, row in pairs.iterrows():
        g = tasks[tasks["pair"] == row["pair"]]
        obs = g[(g["kind"] == "observed") & (g["replicate"] < 2)]
        assert row["replicates"] == 2 and row["shuffle_n_null"] == 2 and row["status"] == "ok"
        assert row["estimate"] == pytest.approx(obs["mi"].mean(), abs=1e-15)  # same two floats averaged
    s = write_outputs(fewer, tmp_path, tasks, report=False)
    assert s["complete"] is True and s["n_tasks"] == s["n_tasks_planned"] == 3 * 2 * 3
    assert s["q_values"] == "computed over all 3 pairs" and s["flagged"] == []


def _tiny_demo_study(tmp_path, name: str, seed: int, latent_permutations: int):
    """Two 3-d demo variables of 120 rows, one retrain shuffle, a tiny network (2 epochs)."""
    return parse_study({
        "name": name, "seed": seed, "variables": ["X0", "X1"], "pairs": {"all_pairs_of": "all"},
        "data": {"store": str(tmp_path / "s.zarr"), "truth": str(tmp_path / "t.json"),
                 "demo": {"n": 120, "t": 2, "k": 1, "d": 3, "rho": 0.9}},
        "nulls": {"retrain_shuffles": 1, "latent_permutations": latent_permutations},
        "estimator": {"hidden": 8, "max_epochs": 2, "patience": 2, "batch_size": 64},
        "output": {"path": str(tmp_path / "out")}})


def test_execute_batch_records_status_and_fingerprint(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from lmi_distributed.engine import worker
    from lmi_distributed.engine.runner import prepare_study

    cfg = _tiny_demo_study(tmp_path, "st", seed=2, latent_permutations=4)
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    real = worker._estimate_many

    def degenerate_first(pairs, seeds, settings, ids=None):
        res = real(pairs, seeds, settings, ids)
        res[0].status, res[0].detail = "degenerate", "collapsed latents"  # mi left as a number on purpose
        return res

    monkeypatch.setattr(worker, "_estimate_many", degenerate_first)
    recs = worker.execute_batch(plan.batches[0], cfg, sp, out, variables=variables)
    assert [r["status"] for r in recs] == ["degenerate", "ok"] and recs[0]["detail"] == "collapsed latents"
    assert np.isnan(recs[0]["mi"]) and np.isfinite(recs[1]["mi"])
    assert np.isnan(recs[0]["latent_null"]).all()  # no null for a number not to trust
    part = rs.parts()[0]
    assert pq.read_schema(part).metadata[b"lmi_study_fingerprint"].decode() == rs.fingerprint
    pairs = aggregate_pairs(rs.read_tasks(), cfg)
    assert pairs.loc[0, "status"] == "degenerate" and np.isnan(pairs.loc[0, "estimate"])
    assert pairs.loc[0, "detail"] == "replicate 0: collapsed latents; 0 of 1 replicate(s) ok"


def test_init_without_identity_keeps_the_recorded_one(tmp_path):
    cfg = _cfg()
    plan = plan_study(cfg, lambda x, y: (100, 3, 3))
    ident = {"A": {"uid": "u1", "shape": [100, 3], "provenance_digest": "p"}}
    rs = ResultStore(tmp_path / "out")
    rs.init(cfg, identity=ident)
    rs.write_part(plan.batches[0].batch_id, _fake_records(plan.batches[0]))
    other = ResultStore(tmp_path / "out")
    assert other.init(cfg) is True and other.fingerprint == rs.fingerprint
    assert other.finished_keys() == {t.key for t in plan.batches[0].tasks}
    assert json.loads(other.meta_path.read_text())["data_identity"] == ident


def test_run_batch_ships_a_receipt_not_the_records(tmp_path):
    """A worker's reply to the driver carries keys, status counts and timing only; the records
    (with their null draws) reach the driver from the Parquet part, exactly once."""
    import pickle

    from lmi_distributed.engine.runner import prepare_study
    from lmi_distributed.engine.worker import BatchReceipt, run_batch

    cfg = _tiny_demo_study(tmp_path, "rc", seed=3, latent_permutations=50)
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    batch = plan.batches[0]
    receipt = run_batch(batch, cfg, sp, out, variables=variables, worker="w0")
    assert isinstance(receipt, BatchReceipt)
    assert receipt.keys == tuple(t.key for t in batch.tasks) and receipt.n_tasks == batch.size
    assert sum(receipt.statuses.values()) == batch.size
    assert {"read_s", "train_s", "null_s", "write_s"} <= set(receipt.timing)
    stored = rs.read_tasks()
    assert sorted(stored["key"]) == sorted(receipt.keys)            # the records are in the part
    obs = stored[stored["kind"] == "observed"]
    assert len(obs) == 1 and len(obs.iloc[0]["latent_null"]) == 50  # null draws stored, not shipped
    # the reply carries no record fields (no null draws, no per-task rows)
    assert b"latent_null" not in pickle.dumps(receipt) and not hasattr(receipt, "records")


def test_an_ok_pairs_tie_caution_reaches_pairs_table():
    """An ok observed record with a caution in its detail (tied latents) keeps the pair ok, counted
    in BH, with that caution as the pair's detail; pairs without one keep an empty detail."""
    cfg = _cfg()
    tasks = _all_records(cfg).assign(status="ok", detail="")      # as the worker writes them
    caution = "caution: 900 of 1000 held-out X latent rows equal another row exactly"
    hit = (tasks["pair"] == "A~C") & (tasks["kind"] == "observed") & (tasks["replicate"] == 1)
    assert hit.sum() == 1
    tasks.loc[hit, "detail"] = caution
    pairs = aggregate_pairs(tasks, cfg).set_index("pair")
    assert pairs.loc["A~C", "status"] == "ok" and np.isfinite(pairs.loc["A~C", "q"])
    assert pairs.loc["A~C", "detail"] == f"replicate 1: {caution}"
    assert (pairs.drop(index="A~C")["detail"] == "").all()


def test_n_canonical_counts_the_ok_observed_replicates_read_on_the_canonical_view():
    """pairs.parquet's n_canonical: how many ok observed replicates report the canonical view; shuffle
    tasks and non-ok replicates do not count; records without a view column (old parts) count 0."""
    cfg = _cfg()
    tasks = _all_records(cfg).assign(status="ok", detail="", view="latents")
    obs = tasks["kind"] == "observed"
    tasks.loc[obs & (tasks["pair"] == "A~B") & tasks["replicate"].isin([0, 2]), "view"] = "canonical"
    tasks.loc[~obs, "view"] = "canonical"                             # shuffles never count
    bad = obs & (tasks["pair"] == "B~C") & (tasks["replicate"] == 1)
    tasks.loc[obs & (tasks["pair"] == "B~C"), "view"] = "canonical"
    tasks.loc[bad, ["status", "detail", "mi"]] = ["diverged", "loss went NaN", np.nan]
    pairs = aggregate_pairs(tasks, cfg).set_index("pair")
    assert pairs["n_canonical"].dtype == np.int64
    assert pairs["n_canonical"].to_dict() == {"A~B": 2, "A~C": 0, "B~C": 2}
    assert pairs.loc["B~C", "status"] == "diverged" and pairs.loc["B~C", "n_ok_replicates"] == 2
    legacy = aggregate_pairs(_all_records(cfg), cfg)                  # no view column at all
    assert (legacy["n_canonical"] == 0).all()
