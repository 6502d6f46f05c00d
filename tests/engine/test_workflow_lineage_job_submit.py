"""`ray job submit` of the lineage demo (configs/lineage_demo.yaml, small settings) to a real Ray
head with token auth, as tests/test_engine_job_submit.py does for the demo study.

Runs only when LMI_TEST_RAY_JOBS_ADDRESS names the head's dashboard (e.g. http://127.0.0.1:8275);
under CI=true it must run, never skip.
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

# small settings (~1-2 min on 2 cores): 300 clones, 200 genes, 3 pairings, <= 30 epochs
SMALL = ["data.demo.lineage.clones=300", "data.demo.lineage.genes=200", "replicates=3",
         "estimator.max_epochs=30", "estimator.patience=10", "nulls.latent_permutations=20",
         "lineage.rolling_window=50"]


def test_lineage_via_ray_job_submit(tmp_path):
    assert ADDRESS, "CI=true but LMI_TEST_RAY_JOBS_ADDRESS is unset: .ci/run must start a Ray head"
    ray_cli = str(Path(sys.executable).parent / "ray")
    out = tmp_path / "lineage_out"
    env = dict(os.environ, RAY_AUTH_MODE="token")
    sets = [a for s in SMALL + [f"data.store={tmp_path / 'store.zarr'}", f"data.truth={tmp_path / 'truth.json'}"]
            for a in ("--set", s)]
    cmd = [ray_cli, "job", "submit", "--address", ADDRESS, "--working-dir", str(ROOT), "--",
           "python", "jobs/all_pairs.py", "--config", "configs/lineage_demo.yaml", "--output", str(out), *sets]
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=1500)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "succeeded" in log, log
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
