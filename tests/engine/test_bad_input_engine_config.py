"""A user's mistakes in a study config or on the command line: each is ONE clear error before Ray
starts, naming the key path or the file, the same from `plan`, `run` and `run_study`; exit code 2
with one `error:` message and no traceback at the CLI; no output folder left behind."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from lmi_distributed.cli.main import main
from lmi_distributed.engine.config import load_study
from lmi_distributed.errors import ConfigError, LMIError


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A real store: X0, X1, X2 (200 x 4 each, ids s0..s199)."""
    from lmi_distributed.engine.config import DemoData
    from lmi_distributed.engine.demo import build_demo_store

    root = tmp_path_factory.mktemp("badstore")
    p = root / "store.zarr"
    build_demo_store(p, DemoData(n=200, t=3, k=1, d=4, rho=0.9, seed=1))
    return p


def _raw(store: Path, out: Path) -> dict:
    return {"name": "bad", "seed": 1, "data": {"store": str(store)}, "variables": ["X0", "X1", "X2"],
            "pairs": {"all_pairs_of": "all"}, "nulls": {"retrain_shuffles": 0, "latent_permutations": 5},
            "estimator": {"hidden": 8, "max_epochs": 2}, "resources": {"workers": 1, "gpus_per_worker": 0},
            "output": {"path": str(out)}}


def _set(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _not_utf8(p: Path) -> None:
    p.write_bytes(b"name: \xff\xfe bad\n")


# (id, changes to the raw study {dotted key: value} or a callable(raw, tmp) -> None,
#  extra CLI args, text the message must contain)
CASES = [
    ("unknown_top_key", {"colour": "red"}, [], "colour: unknown key"),
    ("unknown_estimator_key", {"estimator.learning_rate": 0.1}, [], "estimator.learning_rate: unknown key"),
    ("infinite_lr", {"estimator.lr": float("inf")}, [], "estimator.lr"),
    ("k_not_int", {"estimator.k": 2.5}, [], "estimator.k"),
    ("replicates_zero", {"replicates": 0}, [], "replicates"),
    ("workers_zero", {"resources.workers": 0}, [], "resources.workers"),
    ("pair_unknown_variable", {"pairs": {"explicit": [["X0", "Q"]]}}, [], "pairs.explicit[0][1]"),
    ("duplicate_variable", {"variables": ["X0", "X0", "X1"]}, [], "variables[1].name"),
    ("missing_store", {"data.store": "{tmp}/nowhere.zarr"}, [], "data.store: {tmp}/nowhere.zarr does not exist"),
    ("store_is_a_file", lambda raw, tmp: (tmp / "f.zarr").write_text("x") and _set(raw, "data.store", str(tmp / "f.zarr")),
     [], "data.store"),
    ("variable_unknown_matrix", {"variables": ["X0", {"name": "X1", "matrix": "Nope"}]}, [],
     "variables[1].matrix: variable 'X1': unknown matrix 'Nope'"),
    ("filter_unknown_column", {"variables": ["X0", {"name": "X1", "matrix": "X1", "where": "celltype == 'T'"}]}, [],
     "variables[1].where"),
    ("filter_syntax", {"variables": ["X0", {"name": "X1", "matrix": "X1", "where": "a >< 3"}]}, [],
     "variables[1].where"),
    ("columns_outside", {"variables": ["X0", {"name": "X1", "matrix": "X1", "columns": [0, 9]}]}, [],
     "variables[1].columns"),
    ("ids_file_missing", {"variables": ["X0", {"name": "X1", "matrix": "X1", "ids": "{tmp}/ids.txt"}]}, [],
     "{tmp}/ids.txt"),
    ("k_too_large", {"estimator.k": 150}, [], "estimator.k: k=150 with train_fraction 0.5 needs N >= 302"),
    ("too_few_rows_after_ids", {"variables": [{"name": "A", "matrix": "X0", "ids": ["s1", "s2", "s3", "s4", "s5"]},
                                              {"name": "B", "matrix": "X1", "ids": ["s1", "s2", "s3", "s4", "s5"]}]},
     [], "estimator.k: k=3 with train_fraction 0.5 needs N >= 8 joint samples per pair (more than k held-out and k training rows); the smallest pair A~B has N=5"),
    ("join_table_missing", {"pairing": {"rule": "join", "table": "{tmp}/pairs.csv", "x_column": "a", "y_column": "b"}},
     [], "pairing"),
    ("output_is_a_file", lambda raw, tmp: (tmp / "outfile").write_text("x") and _set(raw, "output.path", str(tmp / "outfile")),
     [], "output.path: {tmp}/outfile exists and is not a directory"),
    ("output_below_a_file", lambda raw, tmp: (tmp / "plain").write_text("x") and _set(raw, "output.path", str(tmp / "plain/out")),
     [], "output.path: {tmp}/plain/out cannot be created: {tmp}/plain is a file"),
    ("output_not_writable", {"output.path": "/sys/lmi-distributed-test/out"}, [],  # /sys refuses even root
     "output.path: /sys/lmi-distributed-test/out cannot be created: /sys is not writable"),
    ("output_is_the_store", lambda raw, tmp: _set(raw, "output.path", raw["data"]["store"]), [],
     "is the data store itself"),
    ("truth_missing", {"data.truth": "{tmp}/truth.json"}, [], "data.truth: {tmp}/truth.json does not exist"),
    ("cupy_on_cpu_workers", {"estimator.ksg_backend": "cupy"}, [], "estimator.ksg_backend: 'cupy' runs on GPU workers"),
    ("require_gpu_without_gpus", {"resources.require_gpu": True}, [], "resources.require_gpu"),
    ("p_null_without_shuffles", {"significance.p_null": "retrain_shuffles"}, [], "significance.p_null"),
    ("demo_store_unknown_matrix", {"data.store": "{tmp}/demo.zarr", "data.demo": {"n": 100, "t": 2, "d": 3},
                                   "variables": ["X0", "X5"]}, [], "variables[1].matrix"),
    ("demo_store_k_too_large", {"data.store": "{tmp}/demo.zarr", "data.demo": {"n": 30, "t": 2, "d": 3},
                                "variables": ["X0", "X1"], "estimator.k": 20}, [], "estimator.k: k=20"),
    ("set_bad_yaml", {}, ["--set", "replicates=[1"], "--set"),
    ("set_without_equals", {}, ["--set", "replicates"], "override 'replicates'"),
]


def _fmt(v, tmp: Path):
    if isinstance(v, str):
        return v.replace("{tmp}", str(tmp))
    if isinstance(v, list):
        return [_fmt(e, tmp) for e in v]
    if isinstance(v, dict):
        return {k: _fmt(e, tmp) for k, e in v.items()}
    return v


def _write_study(store: Path, tmp: Path, change) -> tuple[Path, Path]:
    out = tmp / "out"
    raw = _raw(store, out)
    if callable(change):
        change(raw, tmp)
    else:
        for k, v in change.items():
            _set(raw, k, _fmt(v, tmp))
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, Path(raw["output"]["path"])


def _cli(capsys, args: list[str]) -> tuple[int, str]:
    rc = main(args)
    err = capsys.readouterr().err
    return rc, err


def _assert_one_clean_error(rc: int, err: str, command: str, expect: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith(f"lmi-distributed {command}: error: ") and err.count("error:") == 1, err
    assert expect in err, err
    return err.split("error: ", 1)[1]


def _no_ray_started():
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "Ray was started for a bad study"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_study_same_error_everywhere(case, store, tmp_path, capsys):
    name, change, extra, expect = case
    path, out = _write_study(store, tmp_path, change)
    expect = _fmt(expect, tmp_path)
    existed = out.exists()
    rc, err = _cli(capsys, ["plan", str(path), *extra])
    from_plan = _assert_one_clean_error(rc, err, "plan", expect)
    rc, err = _cli(capsys, ["run", str(path), "--num-cpus", "1", *extra])
    from_run = _assert_one_clean_error(rc, err, "run", expect)
    assert from_plan == from_run, "plan and run must give the same error for the same mistake"
    _no_ray_started()
    if not extra:  # the API: load_study (config errors) or run_study's pre-flight, same text
        from lmi_distributed.engine.runner import run_study

        with pytest.raises(LMIError) as ei:
            run_study(load_study(path), num_cpus=1, log=lambda m: None)
        assert isinstance(ei.value, ConfigError) and str(ei.value) == from_plan.rstrip("\n")
        _no_ray_started()
    if not existed:
        assert not out.exists(), "a failed pre-flight must leave no output folder behind"


def test_many_problems_one_error(store, tmp_path, capsys):
    """Every problem in one message, each with its key path: the user fixes them in one go."""
    (tmp_path / "plain").write_text("x")
    path, out = _write_study(store, tmp_path, {"estimator.k": 150, "output.path": "{tmp}/plain/out",
                                               "variables": ["X0", "X1", {"name": "X2", "matrix": "Q"}]})
    rc, err = _cli(capsys, ["plan", str(path)])
    msg = _assert_one_clean_error(rc, err, "plan", "3 problem(s) found before starting")
    for key in ("output.path:", "variables[2].matrix:", "estimator.k:"):
        assert f"\n  {key}" in msg, msg


@pytest.mark.parametrize("what", ["missing", "directory", "bad_yaml", "not_a_mapping", "not_utf8"])
def test_bad_config_file(what, tmp_path, capsys):
    p = tmp_path / "study.yaml"
    if what == "directory":
        p.mkdir()
    elif what == "bad_yaml":
        p.write_text("name: [unclosed\n")
    elif what == "not_a_mapping":
        p.write_text("- a\n- b\n")
    elif what == "not_utf8":
        _not_utf8(p)
    for cmd in ("plan", "run"):
        rc, err = _cli(capsys, [cmd, str(p)])
        _assert_one_clean_error(rc, err, cmd, str(p))
    _no_ray_started()


def test_all_pairs_job_same_clean_error(store, tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
    try:
        import all_pairs
    finally:
        sys.path.pop(0)
    path, out = _write_study(store, tmp_path, {"estimator.k": 150})
    rc = all_pairs.main(["--config", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and err.startswith("all_pairs: error: study 'bad'")
    assert "estimator.k: k=150" in err and not out.exists()
    _no_ray_started()


def test_real_bugs_keep_their_traceback(monkeypatch, tmp_path, store):
    """Only a user's mistakes are turned into messages; an unexpected error is re-raised."""
    path, _ = _write_study(store, tmp_path, {})

    def boom(*a, **k):
        raise KeyError("internal")

    monkeypatch.setattr("lmi_distributed.engine.preflight.check_study", boom)
    with pytest.raises(KeyError):
        main(["plan", str(path)])
