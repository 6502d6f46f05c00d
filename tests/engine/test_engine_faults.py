"""Engine faults: the scheduling ledger (Ray-free), failure summaries, the output folder's lock,
failure records; then on a local Ray (2 CPUs): an actor lost for good while it holds two batches,
a batch that raises every time and one that kills its worker (each tried 3 times in all, then
recorded as failed while the rest of the study completes), and the rerun that retries them."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmi_distributed.engine.config import load_study, parse_study
from lmi_distributed.engine.failures import clear_failed, read_failed, write_failed
from lmi_distributed.engine.planner import Batch, plan_study
from lmi_distributed.engine.results import ResultStore
from lmi_distributed.engine.runner import LOCK_NAME, LOCK_STALE_S, BatchLedger, StudyLock, failure_detail
from lmi_distributed.errors import ConfigError, DataError, LMIError

RAW = {"name": "t", "data": {"store": "s"}, "variables": ["A", "B", "C"], "pairs": {"all_pairs_of": "all"},
       "replicates": 2, "resources": {"pairs_per_batch": 1}, "output": {"path": "o"}}


def _batches(n: int = 6) -> list[Batch]:
    batches = plan_study(parse_study(RAW)).batches
    assert len(batches) >= n
    return batches[:n]


# ------------------------------------------------------------------ the ledger
def test_ledger_worker_lost_with_two_batches_in_flight():
    """Today's loop popped the dead worker's counter at its first failure, and the second
    failure's ``count[i] -= 1`` raised KeyError; the ledger hands both batches to the others."""
    led = BatchLedger(_batches(6), workers=[0, 1], max_in_flight=2, max_attempts=3)
    sent = []
    led.dispatch(lambda w, b, a: sent.append((w, b.batch_id, a)) or len(sent) - 1)
    assert led.in_flight_by_worker() == {0: 2, 1: 2} and len(led.queue) == 2
    refs_w0 = [ref for ref, (_, w, _) in led.inflight.items() if w == 0]
    for ref in refs_w0:  # both of worker 0's batches come back as failures
        b, w, att = led.finished(ref)
        if w not in led.dead:
            led.worker_lost(w)
        assert led.failure(b, att, "ActorDiedError: gone", retryable=True)
    assert led.in_flight_by_worker() == {1: 2} and len(led.queue) == 4
    assert [a for _, a in list(led.queue)[:2]] == [1, 1]  # requeued first, second attempt
    for ref in [r for r, (_, w, _) in led.inflight.items() if w == 1]:
        led.finished(ref)
    before = len(sent)
    led.dispatch(lambda w, b, a: sent.append((w, b.batch_id, a)) or len(sent) - 1)
    assert {w for w, _, _ in sent[before:]} == {1}, "a dead worker got a batch"


def test_ledger_attempts_bounded_then_failed():
    led = BatchLedger(_batches(2), workers=[0], max_in_flight=1, max_attempts=3)
    tries = 0
    while True:
        led.dispatch(lambda w, b, a: ("ref", a))
        (ref,) = list(led.inflight)
        b, w, att = led.finished(ref)
        if b.batch_id != _batches(1)[0].batch_id:
            break
        tries += 1
        if not led.failure(b, att, "RuntimeError: CUDA out of memory", retryable=True):
            break
    assert tries == 3 and len(led.failed) == 1 and led.failed[0].attempts == 3
    # a deterministic error (our own: bad data or settings) is given up at once
    led2 = BatchLedger(_batches(1), workers=[0], max_in_flight=1, max_attempts=3)
    led2.dispatch(lambda w, b, a: "r")
    b, _, att = led2.finished("r")
    assert not led2.failure(b, att, "DataError: ...", retryable=False)
    assert led2.failed[0].attempts == 1 and not led2.busy


def test_failure_detail_one_line_and_retryable():
    class FakeTaskError(Exception):  # what ray.get raises: the original error in ``cause``
        def __init__(self, cause):
            super().__init__("ray::_LMIWorker.run()\n  File ...\nRuntimeError: boom")
            self.cause = cause

    retry, detail = failure_detail(FakeTaskError(RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")))
    assert retry and detail == "RuntimeError: CUDA out of memory."
    retry, detail = failure_detail(FakeTaskError(DataError("variable 'A': too few rows")))
    assert not retry and detail.startswith("DataError: variable 'A'")
    retry, detail = failure_detail(OSError("worker died"))
    assert retry and "\n" not in detail


# -------------------------------------------------------------------- the lock
def _lock_file(out: Path, **fields) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = out / LOCK_NAME
    p.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started_iso": "2026-01-01T00:00:00",
                             **fields}))
    return p


def test_lock_refuses_a_second_run(tmp_path):
    out = tmp_path / "out"
    notes: list[str] = []
    with StudyLock(out, log=notes.append).acquire():
        held = json.loads((out / LOCK_NAME).read_text())
        assert held["host"] == socket.gethostname() and held["pid"] == os.getpid() and held["started"] > 0
        with pytest.raises(LMIError, match=r"output.path: .*in use by another run \(host .*pid "
                                           rf"{os.getpid()}.*--force-unlock"):
            StudyLock(out, log=notes.append).acquire()
    assert not out.exists(), "a run that wrote nothing must leave no folder behind"
    assert notes == []


def test_lock_stale_same_host_dead_pid_taken_over(tmp_path):
    out = tmp_path / "out"
    (out / "tasks").mkdir(parents=True)
    dead = 2 ** 22 + 12345  # above the default pid_max on Linux: no such process
    _lock_file(out, pid=dead)
    notes: list[str] = []
    lock = StudyLock(out, log=notes.append).acquire()
    assert len(notes) == 1 and f"pid {dead} on this host is no longer running" in notes[0]
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / LOCK_NAME).exists() and (out / "tasks").exists()  # the folder held results: kept


def test_lock_other_host_refused_unless_old_or_forced(tmp_path):
    out = tmp_path / "out"
    p = _lock_file(out, host="another-node-7", pid=1)
    with pytest.raises(LMIError, match="host another-node-7"):
        StudyLock(out, log=lambda m: None).acquire()
    notes: list[str] = []
    StudyLock(out, log=notes.append).acquire(force=True).release()
    assert "--force-unlock" in notes[0]
    p = _lock_file(out, host="another-node-7", pid=1)
    old = time.time() - LOCK_STALE_S - 60
    os.utime(p, (old, old))
    notes.clear()
    StudyLock(out, log=notes.append).acquire().release()
    assert "no heartbeat" in notes[0]


def test_lock_release_keeps_a_lock_taken_over_by_another_run(tmp_path):
    out = tmp_path / "out"
    lock = StudyLock(out, log=lambda m: None).acquire()
    (out / LOCK_NAME).write_text(json.dumps({"host": "x", "pid": 1, "token": "someone-else"}))
    lock.release()
    assert (out / LOCK_NAME).exists()


def test_run_study_refuses_a_locked_output_before_ray(tmp_path, monkeypatch, capsys):
    from lmi_distributed.engine.demo import build_demo_store
    from lmi_distributed.engine.runner import run_study

    raw = {"name": "lk", "data": {"store": str(tmp_path / "store.zarr"), "demo": {"n": 60, "t": 2, "d": 3}},
           "variables": ["X0", "X1"], "pairs": {"all_pairs_of": "all"}, "output": {"path": str(tmp_path / "out")}}
    cfg = parse_study(raw)
    build_demo_store(cfg.data.store, cfg.data.demo)
    _lock_file(tmp_path / "out", pid=1)  # pid 1 is alive: a live run on this host

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for a locked output folder")

    monkeypatch.setattr("lmi_distributed.engine.runner.connect_ray", no_ray)
    with pytest.raises(LMIError, match="in use by another run"):
        run_study(cfg, log=lambda m: None)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_NAME]
    # the CLI: exit code 2, one error line naming output.path and the holder, no traceback
    from lmi_distributed.cli.main import main

    (tmp_path / "lk.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "lk.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmi-distributed run: error: output.path: ") and "pid 1," in err and "Traceback" not in err


# ------------------------------------------------------------- failure records
def test_failure_records_not_counted_as_done(tmp_path):
    b = _batches(1)[0]
    write_failed(tmp_path, b, 3, "RuntimeError: boom")
    df = read_failed(tmp_path)
    assert list(df["status"]) == ["failed"] * b.size and df["mi"].isna().all()
    assert (df["detail"] == "RuntimeError: boom").all() and (df["attempt"] == 2).all()
    assert ResultStore(tmp_path).finished_keys() == set()  # so the next run retries them
    assert read_failed(tmp_path, finished={t.key for t in b.tasks}).empty
    clear_failed(tmp_path, [b.batch_id])
    assert read_failed(tmp_path).empty


# ------------------------------------------------------------------- on Ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """6 tasks (3 pairs x (obs + 1 shuffle)), one per batch, n=200, d=4: seconds per batch."""
    root = tmp_path_factory.mktemp("faults")
    raw = {
        "name": "faults", "seed": 5,
        "data": {"store": str(root / "store.zarr"), "demo": {"n": 200, "t": 3, "k": 1, "d": 4, "rho": 0.9, "seed": 2}},
        "variables": ["X0", "X1", "X2"], "pairs": {"all_pairs_of": "all"}, "replicates": 1,
        "nulls": {"retrain_shuffles": 1, "latent_permutations": 5},
        "estimator": {"hidden": 8, "max_epochs": 4, "patience": 2, "batch_size": 64, "lr": 1e-3},
        "resources": {"workers": 2, "torch_threads": 1, "pairs_per_batch": 1, "max_in_flight_per_worker": 1},
        "output": {"path": str(root / "base")},
    }
    path = root / "faults.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, root


def _cfg(small, out: str, *sets: str):
    path, root = small
    return load_study(path, [f"output.path={root / out}", *sets])


def _assert_stored_once(cfg, keys=None):
    counts = ResultStore(cfg.output.path).key_counts()
    keys = keys if keys is not None else {t.key for t in plan_study(cfg).tasks}
    assert set(counts) == set(keys), "a task was lost"
    assert all(c == 1 for c in counts.values()), "a task was stored twice"


def test_actor_lost_for_good_holding_two_batches(ray_local, small):
    from lmi_distributed.engine.runner import run_study

    cfg = _cfg(small, "lost_actor", "resources.max_in_flight_per_worker=2")
    killed: list[tuple[int, int]] = []

    def kill_busy(state):
        if killed:
            return
        busy = [w for w, n in state.in_flight.items() if n == 2]
        if busy:  # a worker holding two batches, lost for good (no restart)
            ray.kill(state.actors[busy[0]], no_restart=True)
            killed.append((busy[0], state.done_batches))

    s = run_study(cfg, progress_every=30, on_progress=kill_busy, log=lambda m: None)
    assert killed, "no worker ever held two batches"
    assert s["run"]["complete"] and s["run"]["tasks_failed"] == 0 and s["run"]["batches_retried"] == 2
    _assert_stored_once(cfg)
    workers = set(ResultStore(cfg.output.path).read_tasks()["worker"])
    assert all(w.startswith(("w0@", "w1@")) for w in workers)


def test_failing_and_crashing_batches_tried_three_times_then_recorded(ray_local, small, tmp_path, monkeypatch):
    from lmi_distributed.engine.runner import run_study

    cfg = _cfg(small, "failing")
    batches = plan_study(cfg, lambda x, y: (200, 4, 4)).batches  # batch ids name the shape
    fail, crash = batches[1], batches[3]
    hook_log = tmp_path / "hook.log"
    monkeypatch.setenv("LMI_TEST_FAIL_BATCH", fail.batch_id)  # raises inside execute's worker every time
    monkeypatch.setenv("LMI_TEST_CRASH_BATCH", crash.batch_id)  # kills its worker process every time
    monkeypatch.setenv("LMI_TEST_HOOK_LOG", str(hook_log))
    s = run_study(cfg, progress_every=30)
    runs = [ln.split()[0] for ln in hook_log.read_text().splitlines()]
    assert runs.count(fail.batch_id) == 3, "an exception must be tried 3 times in all (not 3 x Ray retries)"
    assert runs.count(crash.batch_id) == 3, "a worker crash must be tried 3 times in all (not 3 x Ray retries)"
    run = s["run"]
    assert not run["complete"] and run["tasks_failed"] == 2 and run["tasks_run"] == 4
    by_batch = {f["batch_id"]: f for f in run["failed_batches"]}
    assert by_batch[fail.batch_id]["detail"] == f"RuntimeError: LMI_TEST_FAIL_BATCH: injected failure in batch {fail.batch_id}"
    assert by_batch[crash.batch_id]["attempts"] == 3 and "\n" not in by_batch[crash.batch_id]["detail"]
    failed = read_failed(cfg.output.path)
    assert set(failed["key"]) == {fail.tasks[0].key, crash.tasks[0].key} and (failed["status"] == "failed").all()
    assert failed["mi"].isna().all()
    _assert_stored_once(cfg, {t.key for t in plan_study(cfg).tasks} - set(failed["key"]))
    pairs = pd.read_parquet(Path(cfg.output.path) / "pairs.parquet")
    assert len(pairs) == 3  # every pair shown; the one without its observed task has no estimate
    by_pair = pairs.set_index("pair")
    for _, f in failed.iterrows():
        row = by_pair.loc[f["pair"]]
        if f["kind"] == "observed":   # the pair is shown as failed, with the error
            assert row["status"] == "failed" and np.isnan(row["estimate"]) and not row["significant"]
            assert f["detail"] in row["detail"]
        else:                         # a lost shuffle draw is left out of the null, and counted
            assert row["shuffle_n_dropped"] >= 1

    # the next run retries exactly the failed tasks and clears their failure records
    for var in ("LMI_TEST_FAIL_BATCH", "LMI_TEST_CRASH_BATCH"):
        monkeypatch.delenv(var)
    s2 = run_study(cfg, progress_every=30, log=lambda m: None)
    assert s2["run"]["complete"] and s2["run"]["tasks_run"] == 2 and s2["run"]["tasks_skipped"] == 4
    assert read_failed(cfg.output.path).empty
    _assert_stored_once(cfg)
    assert not (Path(cfg.output.path) / LOCK_NAME).exists()


def test_a_slow_restart_is_waited_for_not_taken_for_a_lost_worker(ray_local, small, monkeypatch):
    """A crashed worker that takes longer to restart than ``resources.worker_restart_s`` counts as
    gone: with both workers crashed that way the run stops (what a 30 s wait did on a loaded CI
    machine). Waited for, the same restarts keep both workers and the run goes on."""
    from lmi_distributed.engine.runner import run_study

    crash = plan_study(_cfg(small, "slow"), lambda x, y: (200, 4, 4)).batches[3]
    monkeypatch.setenv("LMI_TEST_CRASH_BATCH", crash.batch_id)
    monkeypatch.setenv("LMI_TEST_SLOW_RESTART", "4")   # every restart takes 4 s more: longer than the 1 s wait
    lines: list[str] = []
    with pytest.raises(LMIError, match="every worker actor died"):
        run_study(_cfg(small, "slow", "resources.worker_restart_s=1"), progress_every=30, log=lines.append)
    assert sum("gone for good (no answer within 1 s" in m for m in lines) == 2, lines

    lines.clear()
    s = run_study(_cfg(small, "slow"), progress_every=30, log=lines.append)   # the default wait, 120 s
    assert not any("gone for good" in m for m in lines), lines
    run = s["run"]
    assert not run["complete"] and run["tasks_failed"] == 1
    assert [f["attempts"] for f in run["failed_batches"]] == [3]
    failed = read_failed(_cfg(small, "slow").output.path)
    assert set(failed["key"]) == {crash.tasks[0].key}


def test_config_error_from_pre_flight_not_from_a_worker(ray_local, small):
    """k too large for N=200 used to fail on a worker after Ray started; now before."""
    from lmi_distributed.engine.runner import run_study

    cfg = _cfg(small, "bad_k", "estimator.k=120")
    with pytest.raises(ConfigError, match=r"estimator.k: k=120 .* needs N >= 242 .* has N=200"):
        run_study(cfg, log=lambda m: None)
    assert not Path(cfg.output.path).exists()
