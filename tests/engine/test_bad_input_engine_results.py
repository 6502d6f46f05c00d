"""Bad inputs to the result store and the aggregation, each with its exact outcome (no Ray).

A tiny study (3 demo variables, n=200, d=4; 3 pairs x 1 replicate x (observed + 1 shuffle),
hidden 8, 3 epochs) is run once through the Ray-free ``execute_batch``; each case copies its
output, damages or changes one thing, and checks what the next ``prepare_study`` does (moves
the damage into ``damaged/`` and recomputes only its tasks, or refuses with a ConfigError that
names the problem and the ``--overwrite`` way out) and that a rerun gives the same pairs table.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmi_distributed.engine.aggregate import aggregate_pairs, write_outputs
from lmi_distributed.engine.config import parse_study
from lmi_distributed.engine.worker import execute_batch
from lmi_distributed.engine.planner import plan_study
from lmi_distributed.engine.results import DamagedResultError, ResultStore
from lmi_distributed.engine.runner import prepare_study
from lmi_distributed.errors import ConfigError

DEMO = {"n": 200, "t": 3, "k": 1, "d": 4, "rho": 0.9, "seed": 1}


def _raw(root: Path, out: str, store: str = "store.zarr", **mod) -> dict:
    raw = {
        "name": "bad", "seed": 5,
        "data": {"store": str(root / store), "truth": str(root / f"{store}.truth.json"), "demo": dict(DEMO)},
        "variables": ["X0", "X1", "X2"], "pairs": {"all_pairs_of": "all"}, "replicates": 1,
        "nulls": {"retrain_shuffles": 1, "latent_permutations": 4},
        "estimator": {"hidden": 8, "max_epochs": 3, "patience": 2, "batch_size": 64, "lr": 1e-3},
        "resources": {"pairs_per_batch": 2},
        "output": {"path": str(root / out), "report": False},
    }
    raw.update(mod)
    return raw


def _cfg(root: Path, out: str, **mod):
    return parse_study(_raw(root, out, **mod))


def run_local(cfg, max_batches: int | None = None, log=None):
    """A Ray-free run_study: prepare, execute the batches not yet stored, aggregate the plan's keys."""
    logs: list[str] = []
    plan, store_path, out_dir, variables, rs, _ = prepare_study(cfg, log=(log or logs.append))
    done = rs.finished_keys()
    pending = [b.without(done) for b in plan.batches]
    pending = [b for b in pending if b.size][:max_batches]
    for b in pending:
        execute_batch(b, cfg, store_path, out_dir, variables=variables)
    keys = [t.key for t in plan.tasks]
    summary = write_outputs(cfg, out_dir, rs.read_tasks(keys=keys), keys=keys, report=cfg.output.report)
    return summary, logs, len(pending)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_results")
    cfg = _cfg(root, "base")
    summary, logs, n_run = run_local(cfg)
    assert summary["complete"] and n_run == 3
    return root, cfg, pd.read_parquet(root / "base" / "pairs.parquet")


def test_task_table_records_the_view_of_every_estimate(study):
    root, _, _ = study
    t = ResultStore(root / "base").read_tasks()
    ok = t[t["status"] == "ok"]
    bad = t[t["status"] != "ok"]
    assert len(ok) and set(ok["view"]) <= {"latents", "canonical"} and len(bad) and (bad["view"] == "").all()
    # "mi" is the estimate the view names; the latents' is always there, the view's is the larger
    lat, can = ok[ok["view"] == "latents"], ok[ok["view"] == "canonical"]
    assert len(lat) and len(can)        # both kinds occur in this study (measured: 2 latents, 3 canonical)
    assert (lat["mi"] == lat["mi_latents"]).all()
    assert (can["mi"] == can["mi_canonical"]).all() and (can["mi"] > can["mi_latents"]).all()
    # no view compared (mi_canonical NaN): nothing subtracted
    assert ok["canonical_bias"].notna().all() and (ok.loc[ok["mi_canonical"].isna(), "canonical_bias"] == 0).all()


def _copy(study, name: str):
    root, _, _ = study
    shutil.copytree(root / "base", root / name)
    return _cfg(root, name), ResultStore(root / name)


def _damaged(rs: ResultStore) -> list[Path]:
    return sorted(rs.damaged_dir.iterdir()) if rs.damaged_dir.exists() else []


# ------------------------------------------------------------------ damaged task parts
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _scribble(p: Path, mid: int | None = None) -> None:
    """Overwrite 32 bytes around ``mid`` (default: the middle of the file)."""
    b = bytearray(p.read_bytes())
    mid = len(b) // 2 if mid is None else mid
    b[mid - 16: mid + 16] = b"\xa5" * 32
    p.write_bytes(bytes(b))


def _scribble_pages(p: Path) -> None:
    """Overwrite 32 bytes in the middle of the data pages (between the magic and the footer)."""
    raw = p.read_bytes()
    footer_start = len(raw) - 8 - int.from_bytes(raw[-8:-4], "little")
    _scribble(p, (4 + footer_start) // 2)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _garbage(p: Path) -> None:
    p.write_bytes(b"this is not a parquet file\n" * 20)


def _foreign(p: Path) -> None:
    """Rewrite the part as if another study (other data) had written it."""
    t = ResultStore(p.parent.parent).read_tasks()
    keys = set(pd.read_parquet(p)["key"])
    recs = t[t["key"].isin(keys)].to_dict(orient="records")
    p.unlink()
    ResultStore(p.parent.parent).write_part(recs[0]["batch_id"], recs, fingerprint="0123456789abcdef0123")


@pytest.mark.parametrize("damage", [_truncate, _scribble_pages, _scribble, _empty, _garbage, _foreign],
                         ids=["truncated-half", "data-bytes-overwritten", "middle-bytes-overwritten", "empty",
                              "not-parquet", "other-study"])
def test_damaged_part_moved_aside_and_only_its_tasks_rerun(study, damage):
    _, _, base_pairs = study
    cfg, rs = _copy(study, f"part-{damage.__name__}")
    victim = rs.parts()[0]
    n_victim = len(pd.read_parquet(victim))
    damage(victim)
    # reads never crash on it (as `plan` does), they skip it
    assert len(rs.finished_keys()) == 6 - n_victim
    summary, logs, n_run = run_local(cfg)
    moved = _damaged(rs)
    assert len(moved) == 1 and moved[0].name.endswith("tasks_" + victim.name)
    line = [ln for ln in logs if ln.startswith("damaged results moved to")]
    assert len(line) == 1 and f"{n_victim} task(s) will be recomputed" in line[0] and victim.name in line[0]
    assert n_run == 1 and summary["complete"]
    assert sorted(rs.key_counts().values()) == [1] * 6
    pd.testing.assert_frame_equal(pd.read_parquet(rs.root / "pairs.parquet"), base_pairs, check_exact=True)


# ------------------------------------------------------------------ damaged pMI
def _pmi_drop_chunk(g: Path) -> None:
    chunks = [p for p in (g / "pmi").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(chunks) == 1
    chunks[0].unlink()


def _pmi_drop_group(g: Path) -> None:
    shutil.rmtree(g)


def _pmi_bad_meta(g: Path) -> None:
    (g / "pmi" / "zarr.json").write_text("{ not json")


@pytest.mark.parametrize("damage", [_pmi_drop_chunk, _pmi_drop_group, _pmi_bad_meta],
                         ids=["chunk-deleted", "group-deleted", "array-metadata-garbage"])
def test_damaged_pmi_raises_then_its_task_is_recomputed(study, damage):
    root, _, base_pairs = study
    cfg, rs = _copy(study, f"pmi-{damage.__name__}")
    key = "X0~X2/r0/obs"
    want = ResultStore(root / "base").read_pmi(key)
    damage(rs.pmi_path(key))
    with pytest.raises(DamagedResultError, match="X0~X2/r0/obs"):
        rs.read_pmi(key)  # never the zeros a lost chunk reads as
    summary, logs, n_run = run_local(cfg)
    line = [ln for ln in logs if ln.startswith("damaged results moved to")]
    assert len(line) == 1 and "1 task(s) will be recomputed" in line[0] and "pMI" in line[0]
    assert n_run == 1 and summary["complete"] and sorted(rs.key_counts().values()) == [1] * 6
    got = rs.read_pmi(key)
    for name in ("pmi", "x_rows", "y_rows"):
        np.testing.assert_array_equal(got[name], want[name])
    pd.testing.assert_frame_equal(pd.read_parquet(rs.root / "pairs.parquet"), base_pairs, check_exact=True)


def test_pmi_chunk_bytes_overwritten_read_raises(study):
    _, rs = _copy(study, "pmi-scribbled")
    key = "X0~X1/r0/obs"
    chunk = [p for p in (rs.pmi_path(key) / "pmi").rglob("*") if p.is_file() and p.name != "zarr.json"][0]
    _scribble(chunk)
    with pytest.raises(DamagedResultError, match="X0~X1/r0/obs"):
        rs.read_pmi(key)


# ------------------------------------------------------------------ damaged study.json
@pytest.mark.parametrize("content", ["{garbage", "", "[1, 2, 3]"], ids=["garbage", "empty", "no-fingerprint"])
def test_damaged_study_json_recovered_when_parts_prove_the_study(study, content):
    root, _, base_pairs = study
    cfg, rs = _copy(study, f"meta-{len(content)}-{content[:2]}")
    rs.meta_path.write_text(content)
    summary, logs, n_run = run_local(cfg)
    line = [ln for ln in logs if ln.startswith("damaged study.json moved to")]
    assert len(line) == 1 and "0 tasks will be recomputed" in line[0]
    assert n_run == 0 and summary["complete"]
    assert json.loads(rs.meta_path.read_text())["fingerprint"] == cfg.fingerprint()
    assert [p.name.endswith("study.json") for p in _damaged(rs)] == [True]
    pd.testing.assert_frame_equal(pd.read_parquet(rs.root / "pairs.parquet"), base_pairs, check_exact=True)


def test_damaged_study_json_with_unprovable_parts_refuses(study):
    cfg, rs = _copy(study, "meta-unprovable")
    _foreign(rs.parts()[0])
    rs.meta_path.write_text("{garbage")
    with pytest.raises(ConfigError, match=r"study\.json.*--overwrite"):
        prepare_study(cfg, log=lambda m: None)
    assert rs.meta_path.read_text() == "{garbage" and len(rs.parts()) == 3  # nothing touched
    prepare_study(cfg, overwrite=True, log=lambda m: None)
    assert rs.parts() == [] and json.loads(rs.meta_path.read_text())["fingerprint"] == cfg.fingerprint()


# ------------------------------------------------------------------ changed input data
def _store_copy(study, name: str) -> Path:
    root, _, _ = study
    shutil.copytree(root / "store.zarr", root / name)
    shutil.copy(root / "store.zarr.truth.json", root / f"{name}.truth.json")
    return root / name


def _reingest(store: Path, cols: int) -> None:
    """Write matrix X1 again (same rows; ``cols`` features: the old ones, then copies)."""
    from lmi_distributed.data import open_store, write_matrix

    h = open_store(str(store)).matrix("X1")
    a = h.read_rows(np.arange(h.n_rows))
    a = np.concatenate([a, a[:, : cols - a.shape[1]]], axis=1)
    write_matrix(str(store), "X1", a, ids=[f"s{i}" for i in range(h.n_rows)], provenance=h.provenance,
                 overwrite=True)


@pytest.mark.parametrize("cols,what", [(4, "uid"), (6, "shape")], ids=["reingested-same-data", "more-features"])
def test_changed_matrix_refuses_resume(study, cols, what):
    root, _, _ = study
    name = f"store-{cols}.zarr"
    store = _store_copy(study, name)
    cfg = _cfg(root, f"data-{cols}", store=name)
    run_local(cfg, max_batches=1)
    old = json.loads((root / f"data-{cols}" / "study.json").read_text())["data_identity"]["X1"]
    _reingest(store, cols)
    with pytest.raises(ConfigError) as exc:
        prepare_study(cfg, log=lambda m: None)
    msg = str(exc.value)
    assert "matrix 'X1' changed (uid " + old["uid"] in msg and "re-ingested or overwritten" in msg
    assert "--overwrite" in msg and "'X0'" not in msg and "'X2'" not in msg  # only the changed matrix
    if what == "shape":
        assert "shape [200, 4] -> [200, 6]" in msg
    else:
        assert "shape" not in msg


def test_demo_parameters_changed_rebuilds_store(study):
    from lmi_distributed.data import open_store

    root, _, _ = study
    _store_copy(study, "demo-changed.zarr")
    cfg = _cfg(root, "demo-changed-out", store="demo-changed.zarr",
               data={"store": str(root / "demo-changed.zarr"), "truth": str(root / "demo-changed.json"),
                     "demo": {**DEMO, "rho": 0.5}})
    logs: list[str] = []
    prepare_study(cfg, log=logs.append)
    assert [ln for ln in logs if ln.startswith("rebuilding the demo store")] == [
        f"rebuilding the demo store {root / 'demo-changed.zarr'}: it was generated with other parameters "
        "(rho 0.9 -> 0.5) (synthetic data; the old store is deleted)"]
    assert open_store(str(root / "demo-changed.zarr")).matrix("X0").provenance["rho"] == 0.5
    logs.clear()
    prepare_study(cfg, log=logs.append)  # now it matches: kept
    assert not [ln for ln in logs if "demo store" in ln]


def test_demo_path_holding_real_data_is_never_rebuilt(study):
    from lmi_distributed.data import write_matrix

    root, _, _ = study
    write_matrix(str(root / "real.zarr"), "X0", np.ones((30, 2), np.float32) + np.arange(30)[:, None])
    cfg = _cfg(root, "real-out", store="real.zarr")
    with pytest.raises(ConfigError, match="is not a demo store"):
        prepare_study(cfg, log=lambda m: None)
    assert (root / "real.zarr" / "matrices" / "X0").is_dir()


# ------------------------------------------------------------------ statuses in aggregation
RAW = {"name": "agg", "seed": 1, "data": {"store": "s.zarr"}, "variables": ["A", "B", "C"],
       "pairs": {"all_pairs_of": "all"}, "output": {"path": "out"}, "replicates": 2,
       "nulls": {"retrain_shuffles": 3, "latent_permutations": 10}}


def _records(cfg):
    recs = []
    for t in plan_study(cfg).tasks:
        rng = np.random.default_rng(t.seed)
        mi = (1.0 if t.kind == "observed" else 0.0) + 0.01 * rng.standard_normal()
        recs.append({"key": t.key, "pair": t.pair, "x": t.x, "y": t.y, "replicate": t.replicate, "kind": t.kind,
                     "shuffle": t.shuffle, "seed": t.seed, "n": 100, "n_test": 50, "mi": mi,
                     "latent_null": list(0.01 * rng.standard_normal(t.n_latent_permutations)),
                     "status": "ok", "detail": ""})
    return pd.DataFrame(recs)


def _set(df, key, status, detail):
    i = df.index[df["key"] == key][0]
    df.loc[i, ["status", "detail", "mi"]] = [status, detail, np.nan]
    df.at[i, "latent_null"] = [np.nan] * len(df.at[i, "latent_null"])


@pytest.mark.parametrize("key,status,pair_status,detail", [
    ("A~B/r1/obs", "degenerate", "degenerate", "replicate 1: constant column; 1 of 2 replicate(s) ok"),
    ("A~B/r0/obs", "diverged", "diverged", "replicate 0: non-finite loss; 1 of 2 replicate(s) ok"),
    ("A~B/r0/obs", "failed", "failed", "replicate 0: CUDA OOM; 1 of 2 replicate(s) ok"),
    ("A~B/r0/s1", "degenerate", "ok", ""),
], ids=["degenerate-replicate", "diverged-replicate", "failed-replicate", "degenerate-shuffle"])
def test_non_ok_task_status_in_aggregation(key, status, pair_status, detail):
    cfg = parse_study(copy.deepcopy(RAW))
    df = _records(cfg)
    why = {"degenerate": "constant column", "diverged": "non-finite loss", "failed": "CUDA OOM"}[status]
    _set(df, key, status, why)
    pairs = aggregate_pairs(df, cfg).set_index("pair")
    row = pairs.loc["A~B"]
    assert row["status"] == pair_status and row["detail"] == detail
    others = pairs.loc[["A~C", "B~C"]]
    if pair_status == "ok":  # shuffle 1 of replicate 0 dropped: draw 1 lost in both replicates
        assert row["shuffle_n_null"] == 2 and row["shuffle_n_dropped"] == 1 and row["p"] == 1 / 3
        assert pairs["q"].notna().all()
    else:
        assert np.isnan(row[["estimate", "sem", "p", "q", "z", "p_latent", "p_shuffle"]].astype(float)).all()
        assert not row["significant"] and row["n_ok_replicates"] == 1 and row["replicates"] == 2
        # BH over the 2 ok pairs only: q = p * 2 / rank, both p = 1/4 (3 shuffles, all below)
        np.testing.assert_allclose(others["q"], [0.25, 0.25], rtol=0, atol=1e-15)  # exact arithmetic
    assert (others["status"] == "ok").all()


def test_partial_summary_and_report(tmp_path):
    cfg = parse_study({**copy.deepcopy(RAW), "output": {"path": str(tmp_path)}})
    df = _records(cfg)
    part = df[~df["key"].str.startswith("B~C/r1")]
    s = write_outputs(cfg, tmp_path, part)
    assert s["complete"] is False and s["n_tasks_planned"] == 24 and s["n_tasks_stored"] == 20
    assert s["q_values"] == "partial: computed over 2 of 3 pairs (20 of 24 tasks stored); rerun to finish"
    assert s["flagged"] == [{"pair": "B~C", "status": "incomplete", "n_ok_replicates": 1,
                             "detail": "4 of 8 task(s) stored; rerun to finish"}]
    html = (tmp_path / "report.html").read_text()
    assert "Partial results." in html and "partial: computed over 2 of 3 pairs" in html
    assert "Flagged pairs (1)" in html and "4 of 8 task(s) stored" in html


def test_missing_pair_and_stale_records_of_a_larger_plan():
    cfg3 = parse_study({**copy.deepcopy(RAW), "replicates": 3})
    df = _records(cfg3)  # records of 3 replicates; the study now asks for 2
    df = df[df["pair"] != "A~C"]
    cfg2 = parse_study(copy.deepcopy(RAW))
    pairs = aggregate_pairs(df, cfg2).set_index("pair")
    obs = df[(df["pair"] == "A~B") & (df["kind"] == "observed") & (df["replicate"] < 2)]
    assert pairs.loc["A~B", "estimate"] == pytest.approx(obs["mi"].mean(), abs=1e-15)  # same float ops
    assert pairs.loc["A~B", "replicates"] == 2
    assert pairs.loc["A~C", "status"] == "missing" and not pairs.loc["A~C", "significant"]
    assert pairs.loc["A~C", "detail"] == "no task of this pair is stored (0 of 8); rerun to finish"
