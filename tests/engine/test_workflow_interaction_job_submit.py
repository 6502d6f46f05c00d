"""`ray job submit` of the interaction demo (kind: interaction) to a real Ray head with token auth
(as .ci/run starts it), with small settings (a few minutes at most on 2 cores).

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


def test_interaction_demo_via_ray_job_submit(tmp_path):
    assert ADDRESS, "CI=true but LMI_TEST_RAY_JOBS_ADDRESS is unset: .ci/run must start a Ray head"
    ray_cli = str(Path(sys.executable).parent / "ray")
    out = tmp_path / "interaction_out"
    env = dict(os.environ, RAY_AUTH_MODE="token")
    small = ["data.demo.proteome.n_proteins=240", "interaction.splits=3", "interaction.held_out=60",
             "nulls.retrain_shuffles=2", "nulls.latent_permutations=20", "estimator.max_epochs=60",
             "estimator.patience=15", "resources.pairs_per_batch=3"]
    cmd = [ray_cli, "job", "submit", "--address", ADDRESS, "--working-dir", str(ROOT), "--",
           "python", "jobs/all_pairs.py", "--config", "configs/interaction_demo.yaml", "--output", str(out),
           "--set", f"data.store={tmp_path / 'store.zarr'}", "--set", f"data.truth={tmp_path / 'truth.json'}",
           "--set", f"pairing.table={tmp_path / 'annotations.csv'}"]
    for s in small:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=1500)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "succeeded" in log, log
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
