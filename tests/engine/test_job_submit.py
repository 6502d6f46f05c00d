"""`ray job submit` of each study kind's demo to a real Ray head with token auth (as .ci/run
starts it): the Gaussian-chain demo at its own settings, the attribution, interaction and lineage
demos at small settings (a minute or two each on 2 cores).

Runs only when LMI_TEST_RAY_JOBS_ADDRESS names the head's dashboard (e.g. http://127.0.0.1:8275);
under CI=true it must run, never skip. The client authenticates the way Ray 2.60 ships it:
RAY_AUTH_MODE=token plus the token in ~/.ray/auth_token (or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = os.environ.get("LMI_TEST_RAY_JOBS_ADDRESS")

# Outside CI it needs a head (`bash .ci/run` starts one); under CI=true it must run, never skip.
pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(not ADDRESS and os.environ.get("CI") != "true",
                                 reason="set LMI_TEST_RAY_JOBS_ADDRESS to a Ray head's dashboard URL")]


def submit(config: str, tmp_path: Path, sets: list[str] = ()) -> Path:
    """Submit ``jobs/all_pairs.py --config CONFIG`` (store, truth and output under ``tmp_path``,
    plus ``--set`` overrides) and wait; asserts the job succeeded; returns the output folder."""
    assert ADDRESS, "CI=true but LMI_TEST_RAY_JOBS_ADDRESS is unset: .ci/run must start a Ray head"
    out = tmp_path / "out"
    sets = [f"data.store={tmp_path / 'store.zarr'}", f"data.truth={tmp_path / 'truth.json'}", *sets]
    cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", ADDRESS,
           "--working-dir", str(ROOT), "--", "python", "jobs/all_pairs.py", "--config", config,
           "--output", str(out), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.run(cmd, env=dict(os.environ, RAY_AUTH_MODE="token"), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=1500)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "succeeded" in log, log
    return out


def test_demo_via_ray_job_submit(tmp_path):
    out = submit("configs/demo.yaml", tmp_path)
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert len(pairs) == 10 and pairs["estimate"].notna().all() and (pairs["p"] > 0).all()
    assert pairs["truth"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["complete"] and summary["n_pairs"] == 10
    assert (out / "heatmap.png").stat().st_size > 0 and "estimate" in (out / "report.html").read_text()
    # the strongest true links (neighbours in the chain) are detected
    near = pairs[pairs["truth"] > 1.0]
    assert near["significant"].all(), pairs[["pair", "estimate", "truth", "q"]]


def test_attribution_demo_via_ray_job_submit(tmp_path):
    out = submit("configs/attribution_demo.yaml", tmp_path,
                 ["data.demo.n=600", "pairs.all_pairs_of=[X0,X1,X2]", "replicates=1",
                  "nulls.latent_permutations=10", "estimator.max_epochs=60", "estimator.patience=10"])
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert len(pairs) == 3 and (pairs["status"] == "ok").all()
    table = pd.read_parquet(out / "attribution.parquet")
    assert len(table) == 3 * 2 * 12 and (table["status"] == "ok").all() and table["r2"].notna().all()
    # dims 0-6 of every variable carry the chain's latent, 7-11 are noise: the noise dims rank last
    worst_informative = table[table["dim"] <= 6].groupby(["pair", "side"])["rank"].max()
    best_noise = table[table["dim"] >= 7].groupby(["pair", "side"])["rank"].min()
    assert (worst_informative < best_noise).all(), table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attribution"]["figures"] == ["attribution_top.png", "attribution_images.png"]
    assert (out / "attribution_top.png").stat().st_size > 0
    assert "<h2>Attribution</h2>" in (out / "report.html").read_text()


def test_interaction_demo_via_ray_job_submit(tmp_path):
    out = submit("configs/interaction_demo.yaml", tmp_path,
                 [f"pairing.table={tmp_path / 'annotations.csv'}", "data.demo.proteome.n_proteins=240",
                  "interaction.splits=3", "interaction.held_out=60", "nulls.retrain_shuffles=2",
                  "nulls.latent_permutations=20", "estimator.max_epochs=60", "estimator.patience=15",
                  "resources.pairs_per_batch=3"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["complete"] and summary["kind"] == "interaction"
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert len(pairs) == 1 and pairs.loc[0, "status"] == "ok" and pairs.loc[0, "shuffle_n_null"] == 2
    # (a) partners share information well above their retrained-shuffle null (bits)
    assert pairs.loc[0, "estimate"] > pairs.loc[0, "shuffle_null_mean"] + 0.5
    # (b) every split ran on the cluster and ranks held-out annotated pairs above chance
    splits = pd.read_parquet(out / "splits.parquet")
    assert len(splits) == 3 and (splits["status"] == "ok").all()
    inter = json.loads((out / "interaction.json").read_text())
    assert inter["n_ok"] == 3 and inter["auc_mean"] > 0.75  # ~0.85-0.9 at these sizes; chance is 0.5
    assert "Interaction prediction" in (out / "report.html").read_text()


def test_lineage_via_ray_job_submit(tmp_path):
    # small settings (~1-2 min on 2 cores): 300 clones, 200 genes, 3 pairings, <= 30 epochs
    out = submit("configs/lineage_demo.yaml", tmp_path,
                 ["data.demo.lineage.clones=300", "data.demo.lineage.genes=200", "replicates=3",
                  "estimator.max_epochs=30", "estimator.patience=10", "nulls.latent_permutations=20",
                  "lineage.rolling_window=50"])
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert len(pairs) == 2 and (pairs["status"] == "ok").all() and pairs["truth"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["complete"]
    dpi = pd.read_parquet(out / "dpi.parquet")
    assert dpi["comparison"].tolist() == ["sister_vs_early"] and dpi["status"].iloc[0] == "ok"
    assert dpi["verdict"].iloc[0] in ("DPI violated (non-Markovian)", "inconclusive", "consistent with DPI")
    cells = pd.read_parquet(out / "cell_pmi.parquet")
    assert set(cells["pair"]) == {"day2~day6", "day6~day6_sister"} and (cells["n_draws"] >= 1).all()
    assert {"pseudotime", "emb1", "emb2"} <= set(cells.columns)
    html = (out / "report.html").read_text()
    assert "Lineage: DPI tests" in html and "pmi_pseudotime" in html
    for f in summary["lineage"]["figures"]:
        assert (out / f).stat().st_size > 0
