"""Engine on a local Ray (2 CPUs): a tiny study end to end, then the same study interrupted
(a worker actor killed mid-run; the driver process killed after some batches, then rerun)
gives exactly the same pairs.parquet, with no task lost or duplicated."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ray = pytest.importorskip("ray")

from lmi_distributed.engine.config import load_study  # noqa: E402
from lmi_distributed.engine.results import ResultStore  # noqa: E402

pytestmark = [pytest.mark.ray]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_local():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny study: 3 variables (n=200, d=4), 3 pairs x 2 replicates x (obs + 1 shuffle)."""
    root = tmp_path_factory.mktemp("tiny")
    raw = {
        "name": "tiny", "seed": 3,
        "data": {"store": str(root / "store.zarr"), "truth": str(root / "truth.json"),
                 "demo": {"n": 200, "t": 3, "k": 1, "d": 4, "rho": 0.9, "seed": 1}},
        "variables": ["X0", "X1", "X2"], "pairs": {"all_pairs_of": "all"}, "replicates": 2,
        "nulls": {"retrain_shuffles": 1, "latent_permutations": 10},
        # enough training that every task beats its initial weights (else "diverged", NaN)
        "estimator": {"hidden": 16, "max_epochs": 10, "patience": 5, "batch_size": 32, "lr": 1e-2},
        "resources": {"workers": 2, "torch_threads": 1, "pairs_per_batch": 2, "max_in_flight_per_worker": 1},
        "output": {"path": str(root / "base")},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, root


def _cfg(tiny, out: str):
    path, root = tiny
    return load_study(path, [f"output.path={root / out}"])


def _run(cfg, **kw):
    from lmi_distributed.engine.runner import run_study

    return run_study(cfg, progress_every=30, **kw)


def _assert_complete(cfg):
    rs = ResultStore(cfg.output.path)
    counts = rs.key_counts()
    from lmi_distributed.engine.planner import plan_study

    keys = {t.key for t in plan_study(cfg).tasks}
    assert set(counts) == keys, "a task was lost"
    assert all(c == 1 for c in counts.values()), f"duplicated: {[k for k, c in counts.items() if c > 1]}"


@pytest.fixture(scope="module")
def baseline(ray_local, tiny):
    cfg = _cfg(tiny, "base")
    summary = _run(cfg)
    return cfg, summary, pd.read_parquet(Path(cfg.output.path) / "pairs.parquet")


def test_end_to_end(baseline):
    cfg, summary, pairs = baseline
    out = Path(cfg.output.path)
    for f in ("pairs.parquet", "summary.json", "heatmap.png", "report.html", "study.json"):
        assert (out / f).exists(), f
    assert summary["run"]["complete"] and summary["run"]["device"] == "cpu"
    assert list(pairs["pair"]) == ["X0~X1", "X0~X2", "X1~X2"]
    assert (pairs["replicates"] == 2).all() and (pairs["p"] > 0).all()
    assert (pairs["null"] == "retrain_shuffles").all() and pairs["p_latent"].notna().all()
    assert pairs["truth"].notna().all()
    _assert_complete(cfg)
    tasks = ResultStore(out).read_tasks()
    assert len(tasks) == 12 and (tasks[tasks.kind == "observed"]["latent_null"].map(len) == 10).all()
    pmi = ResultStore(out).read_pmi("X0~X1/r0/obs")
    assert pmi["pmi"].shape == (200,) and np.isnan(pmi["pmi"]).sum() == 100


def test_ray_free_execute_batch_matches_actor(baseline, tmp_path):
    from lmi_distributed.engine.study_data import out_dir_abs, store_path_abs
    from lmi_distributed.engine.worker import execute_batch
    from lmi_distributed.engine.runner import prepare_study

    cfg, _, _ = baseline
    plan = prepare_study(cfg)[0]
    recs = execute_batch(plan.batches[0], cfg, store_path_abs(cfg), str(tmp_path), device="cpu", write=False)
    stored = ResultStore(out_dir_abs(cfg)).read_tasks().set_index("key")
    for r in recs:
        assert r["mi"] == stored.loc[r["key"], "mi"]
        assert r["latent_null"] == list(stored.loc[r["key"], "latent_null"])


def test_rerun_skips_everything(baseline):
    cfg, _, pairs = baseline
    s = _run(cfg)
    assert s["run"]["tasks_run"] == 0 and s["run"]["tasks_skipped"] == 12
    pd.testing.assert_frame_equal(pd.read_parquet(Path(cfg.output.path) / "pairs.parquet"), pairs, check_exact=True)


def test_worker_actor_killed_mid_run(baseline, tiny):
    _, _, pairs = baseline
    cfg = _cfg(tiny, "killed_actor")
    killed = []

    def kill_one(state):
        if not killed:  # the other batches are still queued or running on that actor
            victim = state.actors[0]
            ray.kill(victim, no_restart=False)
            killed.append(state.done_batches)

    s = _run(cfg, on_progress=kill_one)
    assert killed and s["run"]["complete"]
    _assert_complete(cfg)
    got = pd.read_parquet(Path(cfg.output.path) / "pairs.parquet")
    pd.testing.assert_frame_equal(got, pairs, check_exact=True)


def test_driver_killed_then_rerun(baseline, tiny, ray_local):
    _, _, pairs = baseline
    cfg = _cfg(tiny, "killed_driver")
    path, root = tiny
    env = dict(os.environ, RAY_ADDRESS=ray_local, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(ROOT / "jobs" / "all_pairs.py"), "--config", str(path),
           "--output", str(root / "killed_driver"), "--progress-every", "1"]
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    rs = ResultStore(root / "killed_driver")
    deadline = time.time() + 240
    try:
        while time.time() < deadline and len(rs.parts()) < 2 and proc.poll() is None:
            time.sleep(0.2)
        n_parts = len(rs.parts())
        assert proc.poll() is None, "driver finished before it could be killed:\n" + proc.stdout.read().decode()
        assert n_parts >= 2
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; its actors die with it
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(rs.finished_keys())
    assert 0 < done_before < 12
    s = _run(cfg)
    assert s["run"]["tasks_skipped"] == done_before and s["run"]["tasks_run"] == 12 - done_before
    _assert_complete(cfg)
    got = pd.read_parquet(Path(cfg.output.path) / "pairs.parquet")
    pd.testing.assert_frame_equal(got, pairs, check_exact=True)


def test_partial_run_says_so_then_resume_completes(baseline, tiny):
    _, _, pairs = baseline
    cfg = _cfg(tiny, "partial")
    s = _run(cfg, max_batches=1)
    assert s["complete"] is False and s["run"]["complete"] is False
    assert 0 < s["n_tasks_stored"] < 12 and s["n_tasks_planned"] == 12
    assert s["q_values"] == (f"partial: computed over {s['n_pairs_ok']} of 3 pairs ({s['n_tasks_stored']} of 12 "
                             "tasks stored); rerun to finish")
    assert {f["status"] for f in s["flagged"]} <= {"incomplete", "missing"} and len(s["flagged"]) == 3 - s["n_pairs_ok"]
    assert "Partial results." in (Path(cfg.output.path) / "report.html").read_text()
    s2 = _run(cfg)
    assert s2["complete"] is True and s2["flagged"] == [] and s2["q_values"] == "computed over all 3 pairs"
    got = pd.read_parquet(Path(cfg.output.path) / "pairs.parquet")
    pd.testing.assert_frame_equal(got, pairs, check_exact=True)
