"""The `lmi-distributed` command line: estimate, status, report, ls, --version, user errors.

Study folders are built without Ray: ``prepare_study`` + ``execute_batch`` on a tiny demo
study (the same code a worker actor runs), then the outputs written as ``run`` writes them.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmi_distributed.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
#: tiny estimator settings: these tests check the command line, not the estimate's accuracy
TINY = ["--set", "hidden=8", "--set", "max_epochs=3", "--set", "patience=3", "--set", "batch_size=64"]


def _cli(capsys, args: list[str]) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lmi-distributed {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- version, help
def test_version_subprocess():
    from lmi_distributed import __version__

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "lmi_distributed.cli.main", "--version"], capture_output=True,
                         text=True, env=env, check=True, cwd=ROOT).stdout
    assert out.strip() == f"lmi-distributed {__version__}"


@pytest.mark.parametrize("cmd", ["estimate", "status", "report", "ls"])
def test_help_shows_an_example(capsys, cmd):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower() and f"lmi-distributed {cmd} " in out


def test_parser_imports_nothing_heavy():
    code = ("import sys, lmi_distributed.cli.main as m; m.build_parser(); "
            "print(sorted(x for x in ('numpy', 'torch', 'ray', 'zarr', 'pandas') if x in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"  # --help stays fast: heavy imports wait for the command


def test_no_command_prints_help_exit_2(capsys):
    assert main([]) == 2
    assert "estimate" in capsys.readouterr().out


# --------------------------------------------------------------------- estimate
@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    y = x[:, :2] + 0.3 * rng.standard_normal((200, 2))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    return d, x, y


def test_estimate_json_with_permutations(capsys, pair_files):
    from lmi_distributed import estimate, stats
    from lmi_distributed.engine.seeds import derive_seed
    from lmi_distributed.estimators.permutation import result_latent_null

    d, x, y = pair_files
    rc, out, _ = _cli(capsys, ["estimate", str(d / "x.npy"), str(d / "y.npy"), "--json", "--seed", "3",
                               "--permutations", "9", *TINY])
    assert rc == 0
    o = json.loads(out)
    assert o["status"] == "ok" and o["detail"] == "" and o["n"] == 200 and o["n_test"] == 100
    assert o["seed"] == 3 and o["n_permutations"] == 9 and o["settings"]["hidden"] == 8
    assert o["settings"]["lr"] == 1e-4  # untouched settings stay the paper's defaults
    # the same numbers as the Python API with the same seed and settings (one code path)
    res = estimate(x, y, seed=3, hidden=8, max_epochs=3, patience=3, batch_size=64)
    assert o["mi_bits"] == res.mi and o["epochs"] == res.epochs and o["best_epoch"] == res.best_epoch
    assert o["view"] == res.view and o["mi_latents_bits"] == res.mi_latents
    null = result_latent_null(res, n_permutations=9, seed=derive_seed(3, "latent_perm"))
    assert o["p"] == stats.permutation_pvalue(res.mi, null)
    assert 0.1 <= o["p"] <= 1  # p = (1 + #{null >= mi}) / 10: never below 1/10


def test_estimate_human_line_and_stored_matrix(capsys, tmp_path, pair_files):
    from lmi_distributed.data import write_matrix

    d, x, y = pair_files
    write_matrix(tmp_path / "s.zarr", "y", y.astype(np.float32))
    rc, out, _ = _cli(capsys, ["estimate", str(d / "x.npy"), f"{tmp_path / 's.zarr'}::y", *TINY])
    assert rc == 0
    line = out.strip()
    assert line.startswith("MI = ") and " bits (status ok; N=200" in line and "p =" not in line
    assert line.endswith(("view latents)", "view canonical)"))


def test_estimate_not_ok_exit_3(capsys, pair_files):
    d, x, y = pair_files
    diverge = [*TINY, "--set", "lr=1e30"]  # an absurd step size: non-finite losses -> "diverged"
    rc, out, _ = _cli(capsys, ["estimate", str(d / "x.npy"), str(d / "y.npy"), *diverge])
    assert rc == 3
    assert out.startswith("MI = NaN: status diverged: ")
    rc, out, _ = _cli(capsys, ["estimate", str(d / "x.npy"), str(d / "y.npy"), "--json", "--permutations", "5",
                               *diverge])
    o = json.loads(out)
    assert rc == 3 and o["status"] == "diverged" and o["mi_bits"] is None and o["detail"]
    assert o["p"] is None and o["n_permutations"] == 0  # no null for a number not reported


def test_read_matrix_formats_match_ingest_readers(tmp_path):
    import anndata as ad

    from lmi_distributed.cli.estimate import read_matrix
    from lmi_distributed.data import write_matrix

    a = np.random.default_rng(1).standard_normal((30, 4)).astype(np.float32)
    ad.AnnData(X=a).write_h5ad(tmp_path / "a.h5ad")
    pd.DataFrame({"id": [f"p{i}" for i in range(30)], "emb": list(a)}).to_parquet(tmp_path / "a.parquet")
    write_matrix(tmp_path / "s.zarr", "m", a)
    np.save(tmp_path / "v.npy", a[:, 0].astype(np.float64))
    for spec in ("a.h5ad", "a.parquet", "s.zarr::m"):
        np.testing.assert_array_equal(read_matrix(str(tmp_path / spec), str(tmp_path)), a)
    assert read_matrix(str(tmp_path / "v.npy")).shape == (30, 1)  # a 1-D .npy is one feature
    # the Parquet reader's spool file is removed when the reader closes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5ad", "a.parquet", "s.zarr", "v.npy"]


@pytest.mark.parametrize("case", ["missing", "rows", "unknown_setting", "bad_value", "not_npy", "format",
                                  "no_matrix", "no_store", "three_d", "neg_perm", "bad_set", "constant"])
def test_estimate_user_errors_exit_2(capsys, tmp_path, pair_files, case):
    d, x, y = pair_files
    X, Y, extra = str(d / "x.npy"), str(d / "y.npy"), []
    want = ""
    if case == "missing":
        Y, want = str(tmp_path / "nope.npy"), "nope.npy: no such file"
    elif case == "rows":
        np.save(tmp_path / "short.npy", y[:50])
        Y, want = str(tmp_path / "short.npy"), "x.npy has 200 rows and " + str(tmp_path / "short.npy") + " has 50"
    elif case == "unknown_setting":
        extra, want = ["--set", "learning_rate=1e-3"], "unknown setting 'learning_rate'"
    elif case == "bad_value":
        extra, want = ["--set", "max_epochs=-1"], "max_epochs"
    elif case == "bad_set":
        extra, want = ["--set", "max_epochs"], "expected NAME=VALUE"
    elif case == "not_npy":
        (tmp_path / "t.npy").write_text("not an array")
        Y, want = str(tmp_path / "t.npy"), "not a readable .npy array"
    elif case == "format":
        (tmp_path / "t.bin").write_text("123")
        Y, want = str(tmp_path / "t.bin"), "cannot tell the format"
    elif case == "no_matrix":
        from lmi_distributed.data import write_matrix

        write_matrix(tmp_path / "s.zarr", "m", y.astype(np.float32))
        Y, want = f"{tmp_path / 's.zarr'}::other", "unknown matrix 'other'"
    elif case == "no_store":
        Y, want = f"{tmp_path / 'none.zarr'}::m", "does not exist"
    elif case == "three_d":
        np.save(tmp_path / "c.npy", np.zeros((4, 2, 2)))
        Y, want = str(tmp_path / "c.npy"), "expected an (N, d) matrix"
    elif case == "constant":  # the API refuses a constant variable up front
        np.save(tmp_path / "const.npy", np.ones((200, 2)))
        X, want = str(tmp_path / "const.npy"), "X is constant"
    elif case == "neg_perm":
        extra, want = ["--permutations", "-1"], "--permutations must be >= 0"
    rc, _, err = _cli(capsys, ["estimate", X, Y, *extra])
    assert rc == 2
    assert want in _one_error_line(err, "estimate")


# ------------------------------------------------------------ a tiny study folder
def _study_raw(tmp: Path) -> dict:
    return {"name": "clistudy", "seed": 5, "variables": ["X0", "X1", "X2"], "pairs": {"all_pairs_of": "all"},
            "data": {"store": str(tmp / "s.zarr"), "demo": {"n": 120, "t": 3, "k": 1, "d": 3, "rho": 0.9}},
            "nulls": {"retrain_shuffles": 0, "latent_permutations": 4},
            "estimator": {"hidden": 8, "max_epochs": 2, "patience": 2, "batch_size": 64},
            "resources": {"pairs_per_batch": 1}, "output": {"path": str(tmp / "out")}}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A study of 3 pairs (1 task each, one batch each): 2 batches stored, 1 recorded failed,
    outputs written as ``run`` writes them."""
    from lmi_distributed.engine import worker
    from lmi_distributed.engine.aggregate import write_outputs
    from lmi_distributed.engine.config import parse_study
    from lmi_distributed.engine.failures import read_failed, write_failed
    from lmi_distributed.engine.runner import prepare_study

    tmp = tmp_path_factory.mktemp("study")
    cfg = parse_study(_study_raw(tmp))
    plan, sp, out, variables, rs, _ = prepare_study(cfg, log=lambda m: None)
    assert len(plan.batches) == 3
    for b in plan.batches[:2]:
        worker.execute_batch(b, cfg, sp, out, variables=variables)
    write_failed(out, plan.batches[2], 3, "RuntimeError: injected")
    keys = [t.key for t in plan.tasks]
    tasks = rs.read_tasks(keys=keys)
    write_outputs(cfg, out, tasks, run_info={"complete": False}, report=True, keys=keys,
                  study_fingerprint=rs.fingerprint, failed=read_failed(out, set(tasks["key"])))
    return tmp, plan


def _copy(study_dir, tmp_path) -> Path:
    src, _ = study_dir
    shutil.copytree(src, tmp_path / "c")
    # the config names the store by absolute path: point it at the copy's store
    meta = json.loads((tmp_path / "c" / "out" / "study.json").read_text())
    assert meta["config"]["data"]["store"] == str(src / "s.zarr")
    return tmp_path / "c" / "out"


def _write_lock(out: Path, **fields) -> None:
    lock = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "started_iso": "2026-01-01T00:00:00+0000", "token": "t"}
    lock.update(fields)
    (out / ".lmi-run.lock").write_text(json.dumps(lock))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_status_counts_and_json(capsys, study_dir):
    tmp, plan = study_dir
    out = tmp / "out"
    rc, text, err = _cli(capsys, ["status", str(out)])
    assert rc == 0, err
    assert "study 'clistudy'" in text and "tasks: 2/3 stored (ok 2), 1 left, 1 failed" in text
    assert f"failed batch {plan.batches[2].batch_id} (1 task(s)): RuntimeError: injected" in text
    assert "damaged: none" in text and "run: none in progress" in text
    assert "available, same input data" in text and "summary.json is up to date" in text
    rc, js, _ = _cli(capsys, ["status", str(out), "--json"])
    st = json.loads(js)
    meta = json.loads((out / "study.json").read_text())
    assert st["fingerprint"] == meta["fingerprint"] and st["study_fingerprint"] == meta["study_fingerprint"]
    assert (st["tasks_planned"], st["tasks_stored"], st["tasks_failed"], st["tasks_left"]) == (3, 2, 1, 1)
    assert st["running"] is False and st["eta_s"] is None and st["damaged_parts"] == []


def test_status_damaged_part_is_reported_not_moved(capsys, study_dir, tmp_path):
    out = _copy(study_dir, tmp_path)
    part = sorted((out / "tasks").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:40])  # truncated
    rc, js, _ = _cli(capsys, ["status", str(out), "--json"])
    st = json.loads(js)
    assert rc == 0 and st["tasks_stored"] == 1 and len(st["damaged_parts"]) == 1
    assert st["damaged_parts"][0]["path"] == str(part.resolve()) and "unreadable" in st["damaged_parts"][0]["why"]
    assert part.exists() and not (out / "damaged").exists()  # status is read-only


def test_status_store_unavailable(capsys, study_dir):
    tmp, _ = study_dir
    store, away = tmp / "s.zarr", tmp / "s.zarr.away"
    store.rename(away)
    try:
        rc, text, _ = _cli(capsys, ["status", str(tmp / "out")])
    finally:
        away.rename(store)
    assert rc == 0 and "tasks: 2/3 stored" in text  # planned keys come from the config alone
    assert f"store {store}: unavailable (does not exist (a demo store is built by `run`))" in text


def test_status_refuses_a_config_that_does_not_match_its_fingerprint(capsys, study_dir, tmp_path):
    out = _copy(study_dir, tmp_path)
    meta = json.loads((out / "study.json").read_text())
    meta["config"]["seed"] = 99  # edited by hand: these results were not computed with it
    (out / "study.json").write_text(json.dumps(meta))
    rc, _, err = _cli(capsys, ["status", str(out)])
    assert rc == 2 and "does not reproduce its fingerprint" in _one_error_line(err, "status")


def test_status_lock_alive_eta_and_stale(study_dir, tmp_path):
    from lmi_distributed.engine.status import format_status, study_status

    out = _copy(study_dir, tmp_path)
    t0 = 1_000_000.0
    _write_lock(out, started=t0)  # held by this (live) process
    parts = sorted((out / "tasks").glob("part-*.parquet"))
    os.utime(parts[0], (t0 - 50, t0 - 50))  # written by an earlier run
    os.utime(parts[1], (t0 + 10, t0 + 10))  # written by this run
    st = study_status(out, now=t0 + 20)
    assert st["running"] and st["lock"]["pid"] == os.getpid()
    assert st["rate_tasks_per_s"] == pytest.approx(1 / 20)   # 1 task in 20 s (exact arithmetic)
    assert st["eta_s"] == pytest.approx(20.0)                 # 1 task left at that rate
    assert "run: in progress" in format_status(st) and "ETA 20s" in format_status(st)
    _write_lock(out, pid=_dead_pid())
    st = study_status(out)
    assert st["lock"]["held"] and not st["running"] and "no longer running" in st["lock"]["stale_reason"]
    assert "stale lock" in format_status(st)


def test_report_rewrites_identical_outputs(capsys, study_dir, tmp_path):
    out = _copy(study_dir, tmp_path)
    before = pd.read_parquet(out / "pairs.parquet")
    summary_before = json.loads((out / "summary.json").read_text())
    for name in ("pairs.parquet", "summary.json", "heatmap.png", "report.html"):
        (out / name).unlink()
    rc, text, _ = _cli(capsys, ["report", str(out)])
    assert rc == 0 and "from 2/3 stored task(s)" in text
    after = pd.read_parquet(out / "pairs.parquet")
    pd.testing.assert_frame_equal(after, before)
    assert list(after["status"]) == ["ok", "ok", "failed"]  # the failed record shown, as `run` shows it
    summary = json.loads((out / "summary.json").read_text())
    for k in ("pairs", "complete", "q_values", "n_tasks", "flagged", "study_fingerprint"):
        assert summary[k] == summary_before[k], k
    assert (out / "heatmap.png").stat().st_size > 0 and (out / "report.html").stat().st_size > 0
    assert not (out / ".lmi-run.lock").exists()  # the lock it held while writing is released


def test_report_refuses_while_a_run_holds_the_lock(capsys, study_dir, tmp_path):
    out = _copy(study_dir, tmp_path)
    (out / "pairs.parquet").unlink()
    _write_lock(out)  # this live process
    rc, _, err = _cli(capsys, ["report", str(out)])
    assert rc == 2 and "a run is in progress" in _one_error_line(err, "report")
    assert not (out / "pairs.parquet").exists()
    _write_lock(out, pid=_dead_pid())  # a stale lock is taken over, with a note
    rc, text, _ = _cli(capsys, ["report", str(out)])
    assert rc == 0 and "taking over the lock" in text and (out / "pairs.parquet").exists()


@pytest.mark.parametrize("cmd", ["status", "report"])
def test_output_folder_user_errors(capsys, tmp_path, cmd):
    rc, _, err = _cli(capsys, [cmd, str(tmp_path / "nope")])
    assert rc == 2 and "no such study output folder" in _one_error_line(err, cmd)
    (tmp_path / "empty").mkdir()
    rc, _, err = _cli(capsys, [cmd, str(tmp_path / "empty")])
    assert rc == 2 and "not a study output folder (no study.json" in _one_error_line(err, cmd)
    (tmp_path / "empty" / "study.json").write_text("{not json")
    rc, _, err = _cli(capsys, [cmd, str(tmp_path / "empty")])
    assert rc == 2 and "not readable JSON" in _one_error_line(err, cmd)
    (tmp_path / "f").write_text("x")
    rc, _, err = _cli(capsys, [cmd, str(tmp_path / "f")])
    assert rc == 2 and "not a folder" in _one_error_line(err, cmd)


# ------------------------------------------------------------------------- ls
def test_ls_text_json_and_ingest_list_alias(capsys, tmp_path):
    from lmi_distributed.data import open_store, write_matrix

    write_matrix(tmp_path / "s.zarr", "b", np.zeros((7, 2), np.float32), provenance={"source": "synthetic"})
    write_matrix(tmp_path / "s.zarr", "a", np.zeros((5, 3), np.float32))
    uid_a = open_store(tmp_path / "s.zarr").matrix("a").uid
    rc, out, _ = _cli(capsys, ["ls", str(tmp_path / "s.zarr")])
    lines = out.strip().splitlines()
    assert rc == 0 and [ln.split("\t")[0] for ln in lines] == ["a", "b"]
    assert lines[0].startswith(f"a\t5 x 3\tuid={uid_a}\t") and lines[1].endswith("\tsynthetic")
    rc, out, _ = _cli(capsys, ["ls", str(tmp_path / "s.zarr"), "--json"])
    rows = json.loads(out)
    assert rows[1]["name"] == "b" and (rows[1]["rows"], rows[1]["features"]) == (7, 2)
    assert rows[0]["uid"] == uid_a and rows[1]["source"] == "synthetic"
    rc, alias, _ = _cli(capsys, ["ingest", "--list", str(tmp_path / "s.zarr")])
    assert rc == 0 and alias == "\n".join(lines) + "\n"


def test_ls_user_errors(capsys, tmp_path):
    rc, _, err = _cli(capsys, ["ls", str(tmp_path / "none.zarr")])
    assert rc == 2 and str(tmp_path / "none.zarr") in _one_error_line(err, "ls")
    (tmp_path / "plain").mkdir()
    rc, _, err = _cli(capsys, ["ls", str(tmp_path / "plain")])
    assert rc == 2
    _one_error_line(err, "ls")


# ---------------------------------------------------------------- plan: wall time
def test_plan_prints_expected_time_and_uses_cached_calibration(capsys, tmp_path, monkeypatch):
    import argparse

    from lmi_distributed.cli.run import load_from_args
    from lmi_distributed.engine import costs
    from lmi_distributed.engine.planner import plan_study

    monkeypatch.setenv("LMI_CACHE_DIR", str(tmp_path / "cache"))
    sets = ["--set", f"data.store={tmp_path / 'store.zarr'}", "--set", f"data.truth={tmp_path / 'truth.json'}",
            "--set", f"output.path={tmp_path / 'out'}"]
    args = ["plan", str(ROOT / "configs/demo.yaml")] + sets + ["--cores", "2", "--load", "0"]
    rc, out, _ = _cli(capsys, args)
    assert rc == 0 and "expected wall time ~" in out and "upper bound ~" in out
    assert "calibration: none cached" in out and "default coefficients" in out
    # a cached calibration of these shapes/settings on this machine: used, and its pilot's epochs too
    cfg = load_from_args(argparse.Namespace(config=str(ROOT / "configs/demo.yaml"), overrides=sets[1::2], output=None))
    plan = plan_study(cfg, lambda x, y: (cfg.data.demo.n, cfg.data.demo.d, cfg.data.demo.d))
    shape = plan.batches[0].shape
    cal = {"version": 1, "created": "2026-01-01T00:00:00", "pilot": {"epochs": [21, 23, 22]},
           "shapes": {json.dumps(list(shape)): {"P": 5, "pair_epoch_s": 0.05, "epoch_fixed_s": 0.01,
                                                "batch_fixed_s": 0.1, "pair_fixed_s": 0.05, "perm_s": 1e-3}}}
    path = costs.cache_dir() / f"{costs.calibration_key(cfg, plan)}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cal))
    rc, out2, _ = _cli(capsys, args + ["--json", str(tmp_path / "p.json")])
    assert rc == 0 and "calibration: cached 2026-01-01" in out2 and "costs: calibration" in out2
    assert "epochs: ~22 per task expected, from the calibration pilot" in out2
    pred = json.loads((tmp_path / "p.json").read_text())["prediction"]
    assert pred["costs_source"] == "calibration" and pred["expected_s"] <= pred["bound_s"]
    rc, out3, _ = _cli(capsys, args + ["--no-calibration"])
    assert "default coefficients" in out3 and "calibration: cached" not in out3
