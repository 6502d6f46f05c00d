"""`ray job submit` of the attribution demo (configs/attribution_demo.yaml, small settings) to a real
Ray head with token auth (as .ci/run starts it); same pattern as tests/engine/test_engine_job_submit.py.

Runs only when LMI_TEST_RAY_JOBS_ADDRESS names the head's dashboard (e.g. http://127.0.0.1:8275);
the client authenticates the way Ray 2.60 ships it: RAY_AUTH_MODE=token plus the token in
~/.ray/auth_token (or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH).
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


def test_attribution_demo_via_ray_job_submit(tmp_path):
    assert ADDRESS, "CI=true but LMI_TEST_RAY_JOBS_ADDRESS is unset: .ci/run must start a Ray head"
    ray_cli = str(Path(sys.executable).parent / "ray")
    out = tmp_path / "attr_out"
    env = dict(os.environ, RAY_AUTH_MODE="token")
    small = ["data.demo.n=600", "pairs.all_pairs_of=[X0,X1,X2]", "replicates=1",
             "nulls.latent_permutations=10", "estimator.max_epochs=60", "estimator.patience=10"]
    sets = [a for s in small for a in ("--set", s)]
    cmd = [ray_cli, "job", "submit", "--address", ADDRESS, "--working-dir", str(ROOT), "--",
           "python", "jobs/all_pairs.py", "--config", "configs/attribution_demo.yaml", "--output", str(out),
           "--set", f"data.store={tmp_path / 'store.zarr'}", "--set", f"data.truth={tmp_path / 'truth.json'}",
           *sets]
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=1500)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "succeeded" in log, log
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
