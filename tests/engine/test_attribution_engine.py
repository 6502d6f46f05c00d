"""Attribution in a study, without Ray: execute_batch saves each observed task's R^2 arrays,
aggregation writes attribution.parquet + figures + the report section; trust rules."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lmi_distributed.engine import worker
from lmi_distributed.engine.aggregate import write_outputs
from lmi_distributed.engine.attribution import ATTRIBUTION_COLUMNS
from lmi_distributed.engine.config import parse_study
from lmi_distributed.engine.results import ResultStore
from lmi_distributed.engine.runner import prepare_study
from lmi_distributed.errors import ConfigError


def _raw(tmp_path, **over):
    raw = {"name": "attr", "seed": 1, "variables": ["X0", "X1"], "pairs": {"all_pairs_of": "all"},
           # chain of 2 variables, d=8, k=2: dims 0-1 latent, 2-4 copies (informative), 5-7 noise
           "data": {"store": str(tmp_path / "s.zarr"), "truth": str(tmp_path / "t.json"),
                    "demo": {"n": 600, "t": 2, "k": 2, "d": 8, "rho": 0.9}},
           "replicates": 2, "nulls": {"latent_permutations": 0},
           "estimator": {"attribution": True, "hidden": 32, "batch_size": 64, "lr": 3e-3, "max_epochs": 60,
                         "patience": 10},
           "output": {"path": str(tmp_path / "out"), "image_shape": {"X0": [2, 4], "X1": [3, 3]}}}
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("attr")
    torch.set_num_threads(1)     # a busy 2-core machine: one thread (see design notes)
    cfg = parse_study(_raw(tmp_path))
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    for b in plan.batches:
        worker.execute_batch(b, cfg, sp, out, variables=variables)
    summary = write_outputs(cfg, out, rs.read_tasks())
    return cfg, Path(out), rs, summary


def test_tasks_store_arrays_and_aggregation_ranks_informative_dims(study):
    cfg, out, rs, summary = study
    arrays = rs.read_attribution("X0~X1/r0/obs")
    assert arrays["r2_x"].shape == (8,) and arrays["r2_y"].shape == (8,)
    table = pd.read_parquet(out / "attribution.parquet")
    assert list(table.columns) == ATTRIBUTION_COLUMNS and len(table) == 2 * 8
    assert (table["status"] == "ok").all() and (table["n_replicates"] == 2).all()
    # r2 is the mean over the two replicates' stored arrays
    r0, r1 = rs.read_attribution("X0~X1/r0/obs"), rs.read_attribution("X0~X1/r1/obs")
    x = table[table["side"] == "x"].sort_values("dim")
    np.testing.assert_allclose(x["r2"], (r0["r2_x"] + r1["r2_x"]) / 2, rtol=0, atol=1e-15)  # same floats
    for side in ("x", "y"):
        t = table[table["side"] == side].sort_values("dim")
        r2, rank = t["r2"].to_numpy(), t["rank"].to_numpy()
        # informative dims 0-4 all rank above the noise dims 5-7
        assert rank[:5].max() < rank[5:].min(), t
        # informative dims clearly explained (best possible 0.81 at rho=0.9; 60 small-net epochs reach
        # 0.16-0.55 here, so 0.1 is a floor with margin), noise dims near 0 (measured |R^2| <= 0.01;
        # 0.05 is well beyond the sampling spread of an unrelated dim's R^2 on 300 held-out rows)
        assert r2[:5].min() > 0.1 and np.abs(r2[5:]).max() < 0.05, t
    # X0 is drawn as 2x4; X1's 3x3 does not fit its 8 dims: skipped with a note, not reshaped
    assert summary["attribution"]["figures"] == ["attribution_top.png", "attribution_images.png"]
    assert summary["attribution"]["notes"] == [
        "output.image_shape.X1: 3x3 = 9 but X1 has 8 dimensions; map skipped"]
    html = (out / "report.html").read_text()
    assert "<h2>Attribution</h2>" in html and "attribution_top.png" in html and "3x3 = 9" in html
    assert json.loads((out / "summary.json").read_text())["attribution"]["n_pairs_ok"] == 1


def test_missing_or_damaged_arrays_flag_the_pair(study, tmp_path):
    import shutil

    cfg, out, rs, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    raw = cfg.model_dump(mode="json", exclude_none=True)
    raw["output"]["path"] = str(copy)
    cfg2 = parse_study(raw)
    rs2 = ResultStore(copy)
    rs2.attribution_path("X0~X1/r1/obs").unlink()
    write_outputs(cfg2, copy, rs2.read_tasks(), report=False)
    t = pd.read_parquet(copy / "attribution.parquet")
    assert (t["status"] == "missing").all() and t["r2"].isna().all() and t["rank"].isna().all()
    p = rs2.attribution_path("X0~X1/r0/obs")
    p.write_bytes(p.read_bytes()[:40])           # truncated file
    write_outputs(cfg2, copy, rs2.read_tasks(), report=False)
    t = pd.read_parquet(copy / "attribution.parquet")
    assert (t["status"] == "damaged").all() and t["r2"].isna().all() and len(t) == 16


def test_image_map_when_shapes_fit(study, tmp_path):
    from lmi_distributed.report_attribution import plot_image_maps

    _, out, _, _ = study
    table = pd.read_parquet(out / "attribution.parquet")
    path, notes = plot_image_maps(table, {"X0": (2, 4), "X1": (4, 2)}, tmp_path / "m.png")
    assert notes == [] and path is not None and path.stat().st_size > 0


def test_image_shape_config_errors(tmp_path):
    raw = _raw(tmp_path)
    raw["output"] = {"path": "o", "image_shape": {"Q": [8, 8]}}
    with pytest.raises(ConfigError, match=r"output.image_shape.Q: expected one of the variables"):
        parse_study(raw)
    raw = _raw(tmp_path)
    raw["estimator"] = {"hidden": 8}
    with pytest.raises(ConfigError, match=r"output.image_shape: only used by attribution"):
        parse_study(raw)
    raw = _raw(tmp_path)
    raw["output"] = {"path": "o", "image_shape": {"X0": [0, 8]}}
    with pytest.raises(ConfigError, match=r"output.image_shape"):
        parse_study(raw)


def test_attribution_off_writes_nothing(tmp_path):
    raw = _raw(tmp_path, replicates=1)
    raw["estimator"] = {"hidden": 8, "max_epochs": 2, "patience": 2}
    raw["output"] = {"path": str(tmp_path / "out")}
    raw["data"]["demo"]["n"] = 120
    cfg = parse_study(raw)
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    worker.execute_batch(plan.batches[0], cfg, sp, out, variables=variables)
    s = write_outputs(cfg, out, rs.read_tasks(), report=False)
    assert "attribution" not in s and not (tmp_path / "out" / "attribution").exists()
    assert not (tmp_path / "out" / "attribution.parquet").exists()


def test_preflight_refuses_an_image_shape_that_does_not_fit(study):
    """Before any training (the store exists now): X1's 3x3 = 9 pixels against its 8 features."""
    from lmi_distributed.engine.preflight import preflight

    cfg = study[0]
    with pytest.raises(ConfigError, match=r"output.image_shape.X1: 3 x 3 = 9 pixels, but variable 'X1' has 8 "
                                          r"features") as e:
        preflight(cfg, output=False, log=lambda m: None)
    assert "image_shape.X0" not in str(e.value)        # 2 x 4 fits X0's 8 features


def test_a_damaged_or_lost_attribution_file_is_recomputed_on_resume(tmp_path):
    """Resume treats R^2 arrays like pMI: a damaged file is moved to damaged/, a lost one of an ok
    task counts as missing, and only those tasks run again, giving the same numbers."""
    from lmi_distributed.engine.runner import prepare_study

    torch.set_num_threads(1)
    raw = _raw(tmp_path, replicates=2)
    raw["estimator"] = dict(raw["estimator"], max_epochs=3, patience=3)
    raw["output"] = {"path": str(tmp_path / "out")}
    cfg = parse_study(raw)
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    for b in plan.batches:
        worker.execute_batch(b, cfg, sp, out, variables=variables)
    k0, k1 = "X0~X1/r0/obs", "X0~X1/r1/obs"
    before = rs.read_attribution(k0)
    rs.attribution_path(k0).write_bytes(b"not an npz")        # damaged
    rs.attribution_path(k1).unlink()                           # lost
    logs: list[str] = []
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=logs.append)
    assert rs.finished_keys() == set()                        # both tasks will run again
    assert any("attribution (damaged" in m and "2 task(s) will be recomputed" in m for m in logs), logs
    assert list((Path(out) / "damaged").rglob("*.npz"))       # the damaged file kept aside, not deleted
    for b in plan.batches:
        worker.execute_batch(b.without(rs.finished_keys()), cfg, sp, out, variables=variables)
    np.testing.assert_array_equal(rs.read_attribution(k0)["r2_x"], before["r2_x"])   # same seeds, same floats
    assert rs.read_attribution(k1) is not None
