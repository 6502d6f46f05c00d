"""The example study configs (configs/*.yaml) load, and run on the data of jobs/make_example_data.py.

For each example: build the --small data in a temporary folder, load the config with the
store / pair table / output paths overridden (as ``--set`` does), plan it against the store
(real shapes), check every pair's n against counts made independently from the data, and run
one batch through the Ray-free ``execute_batch`` with tiny estimator settings. No Ray.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from lmi_distributed.engine.config import load_study

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
EXAMPLES = {
    "explicit": ("example_explicit_pairs.yaml", "cells.zarr"),
    "grouped": ("example_grouped.yaml", "lineage.zarr"),
    "join": ("example_x_by_y_join.yaml", "proteins.zarr"),
}
TINY = ["estimator.hidden=16", "estimator.max_epochs=2", "estimator.patience=2",
        "estimator.batch_size=32", "nulls.latent_permutations=4"]


def _load_maker():
    spec = importlib.util.spec_from_file_location("make_example_data", REPO / "jobs" / "make_example_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("example_data")
    _load_maker().main(["--small", "--out", str(out)])
    return out


def _cfg(example: str, data_dir: Path, out: Path, extra: list[str] = ()):
    cfg_file, store = EXAMPLES[example]
    over = [f"data.store={data_dir / store}", f"output.path={out}", *TINY, *extra]
    if example == "join":
        over.append(f"pairing.table={data_dir / 'interactions.csv'}")
    return load_study(REPO / "configs" / cfg_file, over)


def _plan(cfg):
    from lmi_distributed.engine.study_data import pair_shape, resolve_variables, store_path_abs
    from lmi_distributed.engine.planner import plan_study

    sp = store_path_abs(cfg)
    variables = resolve_variables(cfg, sp)
    return plan_study(cfg, lambda x, y: pair_shape(cfg, sp, variables, x, y)), sp, variables


def _run_first_batch(cfg, sp, variables, plan, out: Path):
    from lmi_distributed.engine.worker import execute_batch

    batch = plan.batches[0]
    recs = execute_batch(batch, cfg, sp, str(out), device="cpu", variables=variables)
    assert [r["key"] for r in recs] == [t.key for t in batch.tasks]
    for r, t in zip(recs, batch.tasks):
        # --small data (32-64 rows) with 2 epochs: the networks cannot beat their initial weights,
        # so tasks come back "diverged" (NaN MI, a detail); an ok task has a finite MI
        assert r["status"] in ("ok", "diverged") and (r["status"] == "ok") == math.isfinite(r["mi"]), r
        # a non-ok task says why; an ok one says nothing or carries a caution (tied latents)
        assert (r["status"] == "ok") == (r["detail"] == "" or r["detail"].startswith("caution:")), r
        assert r["n"] == t.shape[0] == plan.shapes[(t.x, t.y)][0]
        assert 0 < r["n_test"] < r["n"] and abs(r["n_test"] - r["n"] / 2) <= 1
        assert 1 <= r["epochs"] <= cfg.estimator.max_epochs
        if t.kind == "observed":
            assert len(r["latent_null"]) == cfg.nulls.latent_permutations
            assert all(math.isfinite(v) == (r["status"] == "ok") for v in r["latent_null"])
        else:
            assert r["latent_null"] == []
    assert list(Path(out, "tasks").glob("part-*.parquet")), "no result part written"
    return recs


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads_and_validates(path):
    cfg = load_study(path)
    assert cfg.pair_list(), path
    for x, y in cfg.pair_list():
        assert x in cfg.variable_names and y in cfg.variable_names


def test_example_configs_keep_their_semantics():
    ex = load_study(REPO / "configs" / "example_explicit_pairs.yaml")
    assert ex.pairing.rule == "aligned" and ex.pairing.model_dump()["on"] == "ids"
    assert ex.pair_list() == [("rna", "atac"), ("rna", "protein"), ("rna_hvg", "atac")]
    gr = load_study(REPO / "configs" / "example_grouped.yaml")
    assert gr.pairing.model_dump()["group"] == "clone" and len(gr.pair_list()) == 3
    jn = load_study(REPO / "configs" / "example_x_by_y_join.yaml")
    assert jn.pairing.model_dump()["missing"] == "drop" and len(jn.pair_list()) == 4


# -------------------------------------------------------------------------- explicit
def test_explicit_pairs_example(data_dir, tmp_path):
    from lmi_distributed.data import make_pairing, open_store

    cfg = _cfg("explicit", data_dir, tmp_path / "out", ["nulls.retrain_shuffles=1", "replicates=1"])
    plan, sp, variables = _plan(cfg)
    store = open_store(sp)
    rna, atac, adt = (store.matrix(m) for m in ("rna", "atac", "adt"))
    n_cells = rna.n_rows
    n_b1 = int((adt.obs["batch"].astype(str) == "b1").sum())
    assert atac.n_rows == adt.n_rows == n_cells and 0 < n_b1 < n_cells
    assert set(rna.ids) == set(atac.ids) == set(adt.ids)
    assert list(rna.ids) != list(atac.ids) and list(rna.ids) != list(adt.ids), "row orders should differ"
    assert plan.shapes == {("rna", "atac"): (n_cells, rna.n_features, atac.n_features),
                           ("rna", "protein"): (n_b1, rna.n_features, adt.n_features),
                           ("rna_hvg", "atac"): (n_cells, 2000, atac.n_features)}
    assert rna.n_features > 2000  # the HVG block is a strict subset
    # aligned on ids: paired rows carry the same cell id, and positions alone would be wrong
    t = plan.tasks[0]
    p = make_pairing(store, variables["rna"], variables["protein"],
                     cfg.pairing.model_dump(), t.pairing_seed)
    assert (rna.ids[p.x_rows] == adt.ids[p.y_rows]).all() and (adt.obs["batch"].astype(str).to_numpy()[p.y_rows] == "b1").all()
    assert (p.x_rows != p.y_rows).any()
    recs = _run_first_batch(cfg, sp, variables, plan, tmp_path / "out")
    assert {r["kind"] for r in recs} == {"observed", "shuffle"}


# --------------------------------------------------------------------------- grouped
def test_grouped_example(data_dir, tmp_path):
    from lmi_distributed.data import open_store

    cfg = _cfg("grouped", data_dir, tmp_path / "out", ["replicates=2"])
    plan, sp, variables = _plan(cfg)
    m = open_store(sp).matrix("rna")
    obs = m.obs
    assert set(obs["day"].unique()) == {2, 4, 6}
    assert obs["clone"].isna().any(), "some cells without a barcode"
    clones = {d: set(obs.loc[(obs["day"] == d) & obs["clone"].notna(), "clone"]) for d in (2, 4, 6)}
    assert any(obs[obs["day"] == d]["clone"].value_counts().max() > 1 for d in (2, 4, 6)), "sisters per day"
    for (x, y), shape in plan.shapes.items():
        a, b = int(x[3:]), int(y[3:])
        shared = clones[a] & clones[b]
        assert shape == (len(shared), m.n_features, m.n_features), (x, y)
        assert len(shared) > 8
    recs = _run_first_batch(cfg, sp, variables, plan, tmp_path / "out")
    # replicates are different random draws of one member per shared clone: same n
    assert len({r["n"] for r in recs if r["pair"] == recs[0]["pair"]}) == 1


# ------------------------------------------------------------------------------ join
def test_x_by_y_join_example(data_dir, tmp_path):
    from lmi_distributed.data import open_store

    cfg = _cfg("join", data_dir, tmp_path / "out")
    plan, sp, variables = _plan(cfg)
    store = open_store(sp)
    esm, prott5, go = (store.matrix(m) for m in ("esm", "prott5", "go"))
    assert (esm.n_features, prott5.n_features) == (1280, 1024)
    table = pd.read_csv(data_dir / "interactions.csv", dtype=str)
    assert list(table.columns) == ["protein_a", "protein_b"]
    ids = {"esm": set(esm.ids), "prott5": set(prott5.ids), "go": set(go.ids)}
    assert not set(table["protein_a"]) <= ids["esm"], "some table ids should be missing"
    assert table.duplicated().any()
    for (x, y), shape in plan.shapes.items():
        ym = "prott5" if y == "prott5" else "go"
        ok = table["protein_a"].isin(ids["esm"]) & table["protein_b"].isin(ids[ym])
        n = len(table[ok].drop_duplicates())
        assert 8 < n < len(table)
        assert shape == (n, 640, prott5.n_features if ym == "prott5" else go.n_features), (x, y)
    assert plan.shapes[("esm_a", "go_terms")][0] < plan.shapes[("esm_a", "prott5")][0]
    assert len({b.shape for b in plan.batches}) == 2
    _run_first_batch(cfg, sp, variables, plan, tmp_path / "out")


def test_truth_files_are_written(data_dir):
    import json

    for f, pairs in (("cells_truth.json", ["rna~atac", "rna~protein", "rna_hvg~atac"]),
                     ("lineage_truth.json", ["day2~day4", "day2~day6", "day4~day6"]),
                     ("proteins_truth.json", ["esm_a~prott5", "esm_b~go_terms"])):
        got = json.loads((data_dir / f).read_text())["pairs"]
        for p in pairs:
            assert 0.3 < got[p] < 5, (f, p, got[p])
    lin = json.loads((data_dir / "lineage_truth.json").read_text())["pairs"]
    assert lin["day2~day6"] < lin["day2~day4"]  # information decays along the chain


def test_join_example_with_held_out_ids_split(data_dir, tmp_path):
    """estimator.split: ids on a join pairing reaches the estimator with the paired rows' ids: the
    records' n_test is the held-out-ids half, well under n/2 since mixed rows are dropped (that no
    id sits in both halves is tested on the API in tests/estimators/test_id_split.py)."""
    from lmi_distributed.engine.worker import execute_batch

    cfg = _cfg("join", data_dir, tmp_path / "out", ["estimator.split=ids", "estimator.ksg_noise=1e-6"])
    plan, sp, variables = _plan(cfg)
    batch = plan.batches[0]
    recs = execute_batch(batch, cfg, sp, str(tmp_path / "out"), device="cpu", variables=variables)
    for r in recs:
        assert 0 < r["n_test"] < r["n"] / 2, r
        assert r["status"] in ("ok", "diverged", "degenerate", "failed") and (r["status"] == "ok") == math.isfinite(r["mi"])
