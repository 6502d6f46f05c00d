"""kind: lineage (paper 4.2): synthetic truth, DPI statistics and verdicts, config checks, and a
tiny Ray-free study (prepare_study + execute_batch + write_outputs) checking every output."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmi_distributed import stats
from lmi_distributed.engine.aggregate import write_outputs
from lmi_distributed.engine.config import parse_study
from lmi_distributed.engine.worker import execute_batch
from lmi_distributed.engine.lineage import (CONSISTENT, INCONCLUSIVE, NOT_TESTED, VIOLATED, dpi_table,
                                            dpi_verdict, rolling_pmi)
from lmi_distributed.engine.preflight import check_study
from lmi_distributed.engine.runner import prepare_study
from lmi_distributed.errors import ConfigError
from lmi_distributed.synthetic_lineage import LineageParams, lineage_truth, simulate_lineage

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ synthetic
@pytest.mark.parametrize("variant", ["markov", "sister"])
def test_synthetic_truth_matches_empirical_gaussian_mi(variant):
    p = LineageParams(variant=variant, clones=4000, genes=30, seed=3)
    X, obs = simulate_lineage(p)
    assert X.shape == (len(obs), 30) and np.isfinite(X).all()
    # the lift is injective: v = sinh(X) / 2 is a rank-(k+m) linear image of the latents
    v = np.sinh(X.astype(np.float64)) / 2.0
    sv = np.linalg.svd(v - v.mean(0), compute_uv=False)
    # float32 genes: the singular values past rank k+m are rounding noise, 1e-4 of the largest
    assert (sv[: p.k + p.m] > 1e-2 * sv[0]).all() and (sv[p.k + p.m:] < 1e-4 * sv[0]).all()
    # pseudotime = chi2_k cdf of |z|^2 and the embedding = z[:, :2], so |z|^2 = emb1^2 + emb2^2 (k = 2)
    from scipy.stats import chi2
    z2 = obs["emb1"] ** 2 + obs["emb2"] ** 2
    np.testing.assert_allclose(obs["pseudotime"], chi2.cdf(z2, df=2), rtol=1e-12)  # exact by construction
    # empirical correlation of two different cells of a clone, per latent dim, vs the closed form
    rng = np.random.default_rng(0)
    z = obs[["emb1", "emb2"]].to_numpy()
    groups = {d: obs.assign(i=np.arange(len(obs)))[obs["day"] == d].groupby("clone")["i"].apply(np.array)
              for d in (2, 6)}
    e = np.array([rng.choice(groups[2][c]) for c in groups[2].index])
    late = [rng.choice(groups[6][c], 2, replace=False) for c in groups[2].index]
    l1, l2 = np.array([a for a, _ in late]), np.array([b for _, b in late])
    t = lineage_truth(p)["pairs"]
    for (a, b), key in (((e, l1), "day2~day6"), ((l1, l2), "day6~day6_sister")):
        r = np.mean([np.corrcoef(z[a, j], z[b, j])[0, 1] for j in range(2)])
        mi = -(p.k / 2) * math.log2(1 - r * r)
        # 4000 clones: sd of a correlation is ~(1 - r^2)/sqrt(4000) < 0.016; 0.05 bits is ~3 sd at these r
        assert abs(mi - t[key]) < 0.05, (key, mi, t[key])


def test_truth_dpi_direction_per_variant():
    m = lineage_truth(LineageParams(variant="markov"))["comparisons"]["sister_vs_early"]
    s = lineage_truth(LineageParams(variant="sister"))["comparisons"]["sister_vs_early"]
    assert m["dpi_holds"] and m["difference"] < -0.2
    assert not s["dpi_holds"] and s["difference"] > 0.3
    with pytest.raises(ValueError, match="a_late"):
        LineageParams(variant="sister", a_late=0.9, b_sister=0.6).check()


# ------------------------------------------------------------------ statistics
def test_welch_interval_matches_formula():
    a = np.array([0.9, 1.0, 1.1, 1.05])
    b = np.array([0.5, 0.62, 0.55])
    d, lo, hi, df, why = stats.welch_difference_ci(a, b, 0.9)
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 3
    dof = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    from scipy.stats import t
    half = t.ppf(0.95, dof) * math.sqrt(va + vb)
    assert why == "" and d == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    # the same formula in two codes: agreement to float rounding
    assert (lo, hi, df) == pytest.approx((d - half, d + half, dof), rel=1e-9)
    assert np.isnan(stats.welch_difference_ci([1.0], [0.5, 0.6])[1])
    assert "no spread" in stats.welch_difference_ci([1.0, 1.0], [0.5, 0.5])[4]


def test_verdicts():
    assert dpi_verdict(0.01, 0.3) == VIOLATED
    assert dpi_verdict(-0.3, -0.01) == CONSISTENT
    assert dpi_verdict(-0.1, 0.1) == INCONCLUSIVE
    assert dpi_verdict(float("nan"), 0.1) == NOT_TESTED


def _lineage_raw(root: Path, **mod) -> dict:
    raw = {
        "name": "lin", "kind": "lineage", "seed": 1,
        "data": {"store": str(root / "store.zarr"), "truth": str(root / "truth.json"),
                 "demo": {"kind": "lineage", "seed": 2,
                          "lineage": {"variant": "sister", "clones": 150, "genes": 40}}},
        "variables": [{"name": "day2", "matrix": "rna", "where": "day == 2"},
                      {"name": "day6", "matrix": "rna", "where": "day == 6"},
                      {"name": "day6_sister", "matrix": "rna", "where": "day == 6"}],
        "pairs": {"explicit": [["day2", "day6"], ["day6", "day6_sister"]]},
        "pairing": {"rule": "grouped", "group": "clone"},
        "replicates": 3,
        "nulls": {"retrain_shuffles": 0, "latent_permutations": 5},
        "lineage": {"comparisons": [{"name": "sister", "long": ["day6", "day6_sister"], "short": ["day2", "day6"]}],
                    "pseudotime": "pseudotime", "embedding": ["emb1", "emb2"], "rolling_window": 20},
        "estimator": {"hidden": 16, "max_epochs": 4, "patience": 2, "batch_size": 64, "lr": 1e-3},
        "resources": {"pairs_per_batch": 3, "torch_threads": 1},
        "output": {"path": str(root / "out"), "save_pmi": "observed"},
    }
    raw.update(mod)
    return raw


def _records(rows):
    return pd.DataFrame([{"pair": p, "kind": "observed", "replicate": r, "mi": v, "key": f"{p}/r{r}/obs"}
                         for p, vals in rows.items() for r, v in enumerate(vals)])


def _pairs(est: dict, status: dict | None = None):
    status = status or {}
    return pd.DataFrame([{"pair": p, "x": p.split("~")[0], "y": p.split("~")[1], "status": status.get(p, "ok"),
                          "detail": "" if status.get(p, "ok") == "ok" else "diverged in replicate 1",
                          "estimate": np.mean(v) if status.get(p, "ok") == "ok" else np.nan,
                          "sem": stats.sem(v), "replicates": len(v)} for p, v in est.items()])


def test_dpi_table_verdicts_and_flags(tmp_path):
    cfg = parse_study(_lineage_raw(tmp_path))
    long, short = "day6~day6_sister", "day2~day6"
    viol = {long: [0.8, 0.85, 0.9], short: [0.3, 0.35, 0.32]}
    t = dpi_table(cfg, _pairs(viol), _records(viol), {long: 0.83, short: 0.41})
    assert t["verdict"].tolist() == [VIOLATED] and t["ci_low"].iloc[0] > 0
    assert t["truth_difference"].iloc[0] == pytest.approx(0.42)
    cons = {long: [0.1, 0.15, 0.12], short: [0.3, 0.35, 0.32]}
    assert dpi_table(cfg, _pairs(cons), _records(cons))["verdict"].tolist() == [CONSISTENT]
    inc = {long: [0.3, 0.5, 0.1], short: [0.3, 0.35, 0.32]}
    assert dpi_table(cfg, _pairs(inc), _records(inc))["verdict"].tolist() == [INCONCLUSIVE]
    # a flagged pair: no number, no verdict, the reason given
    t = dpi_table(cfg, _pairs(viol, {long: "diverged"}), _records(viol))
    r = t.iloc[0]
    assert r["verdict"] == NOT_TESTED and r["status"] == "not_tested" and "diverged" in r["detail"]
    assert np.isnan(r["difference"]) and np.isnan(r["ci_low"]) and np.isnan(r["long_estimate"])
    one = {long: [0.8], short: [0.3]}
    t = dpi_table(cfg, _pairs(one), _records(one))
    assert t["verdict"].iloc[0] == NOT_TESTED and ">= 2 replicates" in t["detail"].iloc[0]
    assert np.isnan(t["difference"].iloc[0])


def test_chains_expand_to_triples(tmp_path):
    raw = _lineage_raw(tmp_path)
    raw["variables"].append({"name": "day4", "matrix": "rna", "where": "day == 4"})
    raw["pairs"] = {"all_pairs_of": ["day2", "day4", "day6"]}
    raw["lineage"] = {"chains": [["day2", "day4", "day6"]]}
    cfg = parse_study(raw)
    from lmi_distributed.engine.config_lineage import lineage_comparisons
    got = [(c.long, c.short) for c in lineage_comparisons(cfg.lineage)]
    assert got == [(("day2", "day6"), ("day2", "day4")), (("day2", "day6"), ("day4", "day6"))]


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("mod, where", [
    ({"lineage": None}, "lineage"),
    ({"kind": "pairs"}, "lineage"),
    ({"lineage": {"comparisons": [{"long": ["day6", "day6_sister"], "short": ["day2", "day6_sister"]}]}},
     "lineage.comparisons[0].short"),
    ({"lineage": {"comparisons": [{"long": ["day6", "nope"], "short": ["day2", "day6"]}]}},
     "lineage.comparisons[0].long"),
    ({"lineage": {"chains": [["day2", "day6"]]}}, "lineage.chains"),
    ({"output": {"path": "x", "save_pmi": "none"}}, "lineage.cell_pmi"),
    ({"data": {"store": "s.zarr", "demo": {"lineage": {"variant": "markov"}}}}, "data.demo"),
])
def test_config_errors_name_the_key(tmp_path, mod, where):
    raw = _lineage_raw(tmp_path)
    for k, v in mod.items():
        if v is None:
            raw.pop(k)
        else:
            raw[k] = v
    with pytest.raises(ConfigError) as ei:
        parse_study(raw)
    assert where in str(ei.value)


def test_example_config_parses():
    from lmi_distributed.engine.config import load_study
    for p in sorted((ROOT / "configs").glob("lineage_*.yaml")):
        cfg = load_study(p)
        assert cfg.kind == "lineage" and cfg.lineage is not None


# ------------------------------------------------------------------ study (no Ray)
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    cfg = parse_study(_lineage_raw(root))
    errs, _ = check_study(cfg)
    assert errs == []
    plan, store_path, out_dir, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    for b in plan.batches:
        execute_batch(b, cfg, store_path, out_dir, variables=variables)
    keys = [t.key for t in plan.tasks]
    summary = write_outputs(cfg, out_dir, rs.read_tasks(keys=keys), keys=keys, report=True)
    return root, cfg, Path(out_dir), summary, rs, keys


def test_study_outputs(study):
    root, cfg, out, summary, rs, keys = study
    assert summary["complete"]
    dpi = pd.read_parquet(out / "dpi.parquet")
    assert dpi["comparison"].tolist() == ["sister"]
    assert dpi["verdict"].iloc[0] in (VIOLATED, CONSISTENT, INCONCLUSIVE)
    assert dpi["truth_difference"].iloc[0] == pytest.approx(
        json.loads((root / "truth.json").read_text())["comparisons"]["sister_vs_early"]["difference"])
    js = json.loads((out / "dpi.json").read_text())
    assert js["units"] == "bits" and js["comparisons"][0]["verdict"] == dpi["verdict"].iloc[0]
    html = (out / "report.html").read_text()
    assert "Lineage: DPI tests" in html and dpi["verdict"].iloc[0] in html
    for f in summary["lineage"]["figures"]:
        assert (out / f).stat().st_size > 0
    assert {"dpi.png", "pmi_embedding_day2__day6.png", "pmi_pseudotime_day6__day6_sister.png"} <= set(
        summary["lineage"]["figures"])


def test_cell_pmi_maps_rows_to_cells(study):
    root, cfg, out, summary, rs, keys = study
    cells = pd.read_parquet(out / "cell_pmi.parquet")
    from lmi_distributed.data import open_store
    obs = open_store(cfg.data.store).matrix("rna").obs
    # every cell of a side has the day of its variable, and its obs columns copied
    for (pair, side), g in cells.groupby(["pair", "side"]):
        var = g["variable"].iloc[0]
        want_day = 2 if var == "day2" else 6
        assert (obs.loc[g["cell_id"], "day"].to_numpy() == want_day).all()
        np.testing.assert_array_equal(obs.loc[g["cell_id"], "pseudotime"].to_numpy(), g["pseudotime"].to_numpy())
        assert g["cell_id"].is_unique
        assert (g["n_draws"] >= 1).all() and (g["n_draws"] <= cfg.replicates).all()
    # recompute one cell's mean from the stored per-task pMI
    c = cells[(cells["pair"] == "day2~day6") & (cells["side"] == "x")].sort_values("n_draws").iloc[-1]
    row = int(np.flatnonzero(obs.index == c["cell_id"])[0])
    vals = []
    for k in [k for k in keys if k.startswith("day2~day6/")]:
        d = rs.read_pmi(k)
        hit = (d["x_rows"] == row) & np.isfinite(d["pmi"])
        vals += d["pmi"][hit].tolist()
    assert len(vals) == c["n_draws"] and np.mean(vals) == pytest.approx(c["mean_pmi"], abs=1e-12)


def test_rolling_mean_window():
    cells = pd.DataFrame({"pt": np.arange(10.0)[::-1], "mean_pmi": np.arange(10.0)[::-1] * 2})
    r = rolling_pmi(cells, "pt", 3)
    assert r["pt"].tolist() == list(np.arange(10.0))
    assert np.isnan(r["rolling_pmi"].iloc[0]) and r["rolling_pmi"].iloc[1] == pytest.approx(2.0)


def test_missing_obs_column_fails_before_training(study):
    root, cfg, out, summary, rs, keys = study
    raw = _lineage_raw(root)
    raw["lineage"] = dict(raw["lineage"], pseudotime="dpt")
    raw["output"] = {"path": str(root / "out2")}
    errs, _ = check_study(parse_study(raw))
    assert any("lineage.pseudotime" in e and "'dpt'" in e for e in errs), errs
    assert not (root / "out2").exists()


def test_study_json_reads_back(study):
    """The study.json a lineage run writes is a valid study again (``lmi-distributed report``)."""
    root, cfg, out, summary, rs, keys = study
    from lmi_distributed.engine.config import parse_study as ps
    raw = json.loads((out / "study.json").read_text())
    again = ps(raw.get("config", raw))
    assert again.kind == "lineage" and again.lineage == cfg.lineage and again.data.demo == cfg.data.demo


def test_preflight_before_the_demo_store_exists(tmp_path):
    """The lineage demo store is not built yet: the pre-flight checks the matrix name and the obs
    columns against what the generator will write, and writes nothing."""
    raw = _lineage_raw(tmp_path)
    errs, info = check_study(parse_study(raw))
    assert errs == [] and any("lineage demo store is built on the first run" in n for n in info.notes)
    raw["variables"][0] = {"name": "day2", "matrix": "X0", "where": "day == 2"}
    raw["lineage"] = dict(raw["lineage"], embedding=["umap1", "umap2"])
    errs, _ = check_study(parse_study(raw))
    assert any(e.strip().startswith("variables[0].matrix") and "'rna'" in e for e in errs), errs
    assert any(e.strip().startswith("lineage.embedding") and "'umap1'" in e for e in errs), errs
    assert not (tmp_path / "store.zarr").exists() and not (tmp_path / "out").exists()
