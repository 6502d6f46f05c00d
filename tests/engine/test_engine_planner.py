import copy
import hashlib

from lmi_distributed.engine.config import parse_study
from lmi_distributed.engine.planner import format_plan, make_batches, plan_study, task_key
from lmi_distributed.engine.seeds import derive_seed

RAW = {"name": "t", "seed": 5, "data": {"store": "s.zarr"}, "variables": ["A", "B", "C", "D"],
       "pairs": {"all_pairs_of": "all"}, "output": {"path": "out"}, "replicates": 2,
       "nulls": {"retrain_shuffles": 2, "latent_permutations": 10}, "resources": {"pairs_per_batch": 4}}
SHAPES = {"A": 10, "B": 10, "C": 20, "D": 10, "E": 10}


def _plan(**mod):
    raw = copy.deepcopy(RAW)
    raw.update(mod)
    cfg = parse_study(raw)
    return cfg, plan_study(cfg, lambda x, y: (100, SHAPES[x], SHAPES[y]))


def test_derive_seed_is_blake2b_uint32():
    h = hashlib.blake2b(b"5:A~B/r0/obs", digest_size=8).digest()
    assert derive_seed(5, "A~B/r0/obs") == int.from_bytes(h, "little") % 2**32
    assert derive_seed(5, "A~B/r0/obs") != derive_seed(6, "A~B/r0/obs")
    assert 0 <= derive_seed(123, "x") < 2**32


def test_task_keys_counts_and_seeds():
    cfg, plan = _plan()
    assert len(plan.tasks) == 6 * 2 * 3
    keys = [t.key for t in plan.tasks]
    assert len(set(keys)) == len(keys)
    assert keys[:3] == ["A~B/r0/obs", "A~B/r0/s0", "A~B/r0/s1"]
    assert task_key("A", "B", 1, 0) == "A~B/r1/s0"
    seeds = set()
    for t in plan.tasks:
        assert t.seed == derive_seed(5, t.key)
        assert t.shuffle_seed == derive_seed(5, t.key + "/shuffle")
        assert t.perm_seed == derive_seed(5, t.key + "/latent_perm")
        assert t.pairing_seed == derive_seed(5, f"{t.pair}/r{t.replicate}/pairing")
        assert t.n_latent_permutations == (10 if t.kind == "observed" else 0)
        seeds.add(t.seed)
    assert len(seeds) == len(plan.tasks)
    # replicate tasks share the pairing seed; replicates differ
    r0 = {t.pairing_seed for t in plan.tasks if t.pair == "A~B" and t.replicate == 0}
    r1 = {t.pairing_seed for t in plan.tasks if t.pair == "A~B" and t.replicate == 1}
    assert len(r0) == 1 and len(r1) == 1 and r0 != r1


def test_keys_and_seeds_stable_when_study_grows():
    _, small = _plan()
    _, big = _plan(replicates=3, variables=["A", "B", "C", "D", "E"])
    big_seeds = {t.key: t.seed for t in big.tasks}
    for t in small.tasks:
        assert big_seeds[t.key] == t.seed


def test_batches_equal_shape_bounded_deterministic():
    cfg, plan = _plan()
    for b in plan.batches:
        assert 1 <= b.size <= 4
        assert all(t.shape == b.shape for t in b.tasks)
    flat = [t.key for b in plan.batches for t in b.tasks]
    assert sorted(flat) == sorted(t.key for t in plan.tasks) and len(flat) == len(set(flat))
    shapes = {b.shape for b in plan.batches}
    assert shapes == {(100, 10, 10), (100, 10, 20), (100, 20, 10)}
    _, again = _plan()
    assert [(b.batch_id, [t.key for t in b.tasks]) for b in again.batches] == \
        [(b.batch_id, [t.key for t in b.tasks]) for b in plan.batches]


def test_resume_drops_done_tasks_keeps_order():
    _, plan = _plan()
    b = plan.batches[0]
    done = {b.tasks[1].key}
    rest = b.without(done)
    assert [t.key for t in rest.tasks] == [t.key for t in b.tasks if t.key not in done]
    assert rest.batch_id == b.batch_id
    assert make_batches([], 3) == []


def test_format_plan_mentions_counts():
    cfg, plan = _plan()
    text = format_plan(plan, cfg, n_workers=2)
    assert "36 trainings" in text and "batches:" in text and "TFLOP" in text


# ------------------------------------------------------------------ wall-time model (engine/costs.py)
import json  # noqa: E402

import pytest  # noqa: E402

from lmi_distributed.engine import costs  # noqa: E402
from lmi_distributed.engine.costs import (epoch_model, expected_max, predict, schedule,  # noqa: E402
                                          shape_costs)


def _demo_like(**mod):
    """A small CPU study of one shape (n, d, d), 2 workers' worth of batches."""
    raw = copy.deepcopy(RAW)
    raw.update({"estimator": {"hidden": 32, "batch_size": 64, "max_epochs": 50, "patience": 5}})
    n, d = mod.pop("n", 1000), mod.pop("d", 8)
    for k, v in mod.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    cfg = parse_study(raw)
    return cfg, plan_study(cfg, lambda x, y: (n, d, d))


def test_expected_max_of_draws():
    s = [10, 20, 30, 40]
    assert expected_max(s, 1) == pytest.approx(25.0)
    assert expected_max(s, 2) < expected_max(s, 5) <= 40.0
    assert expected_max([7, 7, 7], 9) == pytest.approx(7.0)


def test_schedule_counts_the_longest_queue():
    span, busy = schedule([10.0, 10.0, 10.0], 2)
    assert span == 20.0 and sorted(busy) == [10.0, 20.0]   # 3 batches on 2 workers: not 15
    assert schedule([5.0] * 4, 8)[0] == 5.0


def test_model_is_monotone_in_size_epochs_and_work():
    cfg, plan = _demo_like()
    base = predict(plan, cfg, workers=2, cores=2).expected_s
    for mod in ({"n": 4000}, {"d": 200}, {"replicates": 4},
                {"estimator": {"hidden": 32, "batch_size": 64, "max_epochs": 200, "patience": 5}},
                {"nulls": {"retrain_shuffles": 4, "latent_permutations": 10}},
                {"nulls": {"retrain_shuffles": 2, "latent_permutations": 500}}):
        c2, p2 = _demo_like(**copy.deepcopy(mod))
        assert predict(p2, c2, workers=2, cores=2).expected_s > base, mod
    # more load on the machine, or fewer workers: slower; more workers (with the cores): faster
    assert predict(plan, cfg, workers=2, cores=2, load=3.0).expected_s > base
    assert predict(plan, cfg, workers=1, cores=2).expected_s > base
    assert predict(plan, cfg, workers=4, cores=4).expected_s < predict(plan, cfg, workers=2, cores=4).expected_s
    sc, sc2 = shape_costs((1000, 8, 8), cfg), shape_costs((1000, 8, 8), cfg, threads=4)
    assert sc2.pair_epoch_s < sc.pair_epoch_s   # more threads: faster FLOPs


def test_expected_below_bound_and_bound_uses_max_epochs():
    cfg, plan = _demo_like(estimator={"hidden": 32, "batch_size": 64, "max_epochs": 300, "patience": 5})
    p = predict(plan, cfg, workers=2, cores=2, done={})
    assert p.expected_s <= p.bound_s
    done = {t.key: 8 for t in plan.tasks[:4]}  # stopped early at 8 epochs
    q = predict(plan, cfg, workers=2, cores=2, done=done)
    assert q.epochs_mean == 8 and "finished task" in q.epochs_source
    assert q.expected_s < 0.5 * q.bound_s


def test_stored_epochs_of_a_partial_study_change_the_prediction(tmp_path):
    from lmi_distributed.engine.results import ResultStore

    cfg, plan = _demo_like()
    rs = ResultStore(tmp_path)
    recs = [{"key": t.key, "pair": t.pair, "x": t.x, "y": t.y, "replicate": t.replicate, "kind": t.kind,
             "shuffle": t.shuffle, "seed": t.seed, "n": 1000, "n_test": 500, "mi": 0.1, "epochs": 6,
             "best_epoch": 0, "latent_null": [0.0], "batch_id": plan.batches[0].batch_id, "worker": "w",
             "device": "cpu", "attempt": 0, "wall_s": 1.0, "status": "ok", "detail": ""}
            for t in plan.batches[0].tasks]
    rs.write_part(plan.batches[0].batch_id, recs)
    done = costs.done_epochs(str(tmp_path), [t.key for t in plan.tasks])
    assert done == {t.key: 6 for t in plan.batches[0].tasks}
    before = predict(plan, cfg, workers=2, cores=2)
    after = predict(plan, cfg, workers=2, cores=2, done=done)
    assert after.n_batches == before.n_batches - 1
    assert after.epochs_mean == 6 and before.epochs_mean > 6   # the prior says ~ max_epochs
    assert after.expected_s < before.expected_s


def _fake_calibration(cfg, plan, pair_epoch_s: float) -> dict:
    shape = plan.batches[0].shape
    return {"version": 1, "shapes": {json.dumps(list(shape)): {
        "P": plan.batches[0].size, "pair_epoch_s": pair_epoch_s, "epoch_fixed_s": 0.01, "batch_fixed_s": 0.1,
        "pair_fixed_s": 0.05, "perm_s": 1e-3}}, "pilot": {"epochs": [12, 14, 13]}, "created": "test"}


def test_cached_calibration_is_found_and_used(tmp_path, monkeypatch):
    monkeypatch.setenv("LMI_CACHE_DIR", str(tmp_path))
    cfg, plan = _demo_like()
    assert costs.load_calibration(cfg, plan) is None
    cal = _fake_calibration(cfg, plan, pair_epoch_s=1.0)
    path = costs.cache_dir() / f"{costs.calibration_key(cfg, plan)}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cal))
    assert costs.load_calibration(cfg, plan) == cal
    # another shape or other settings: another key, not this calibration
    c2, p2 = _demo_like(d=9)
    assert costs.calibration_key(c2, p2) != costs.calibration_key(cfg, plan)
    slow = predict(plan, cfg, workers=2, cores=2, calibration=cal)
    fast = predict(plan, cfg, workers=2, cores=2, calibration=_fake_calibration(cfg, plan, 0.01))
    assert slow.costs_source == "calibration" and slow.epochs_mean == pytest.approx(13.0)
    assert "pilot" in slow.epochs_source
    assert slow.expected_s > fast.expected_s


def test_calibrate_times_the_real_estimator_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("LMI_CACHE_DIR", str(tmp_path))
    raw = copy.deepcopy(RAW)
    raw.update({"variables": ["A", "B"], "replicates": 1, "nulls": {"retrain_shuffles": 1, "latent_permutations": 20},
                "estimator": {"hidden": 16, "batch_size": 64, "max_epochs": 50, "patience": 5}})
    cfg = parse_study(raw)
    plan = plan_study(cfg, lambda x, y: (200, 3, 3))
    cal = costs.calibrate(cfg, plan, epochs=1, pilot=False, permutations=20)
    v = cal["shapes"][json.dumps([200, 3, 3])]
    assert v["P"] == 2 and v["pair_epoch_s"] > 0 and v["perm_s"] > 0
    assert costs.load_calibration(cfg, plan, pilot=False)["shapes"] == cal["shapes"]
    p = predict(plan, cfg, workers=1, cores=2, calibration=cal)
    assert p.costs_source == "calibration" and p.expected_s > 0


def test_format_plan_prints_expected_time_and_bound():
    cfg, plan = _demo_like()
    text = format_plan(plan, cfg, n_workers=2)
    assert "expected wall time ~" in text and "upper bound ~" in text and "max_epochs=50" in text
    assert "epochs: ~" in text and "prior" in text
    pred = predict(plan, cfg, workers=2, cores=2, done={t.key: 3 for t in plan.tasks})
    assert "nothing left to run" in format_plan(plan, cfg, prediction=pred)
    assert "GPU worker" in format_plan(plan, cfg, n_workers=2, gpu=True)
    unknown = plan_study(cfg)   # no shapes (the store is not built): no made-up time
    text = format_plan(unknown, cfg)
    assert "wall time: unknown" in text and "expected wall time" not in text


def test_pilot_rescales_the_timed_epochs():
    cfg, plan = _demo_like(nulls={"retrain_shuffles": 0, "latent_permutations": 10})
    b = plan.batches[0]
    out = {"shapes": {json.dumps(list(b.shape)): {"pair_epoch_s": 0.1, "epoch_fixed_s": 0.0, "batch_fixed_s": 0.0,
                                                  "pair_fixed_s": 0.0, "perm_s": 1.0}},
           "pilot": {"epochs": [10] * b.size, "train_s": 0.5 * b.size, "null_s": 2.0}}
    costs._scale_to_pilot(out, plan)
    v = out["shapes"][json.dumps(list(b.shape))]
    # the model gave 10 epochs x 0.1 s per task = 1 s; the pilot took 0.5 s per task
    assert v["pilot_scale"] == pytest.approx(0.5) and v["pair_epoch_s"] == pytest.approx(0.05)
    assert v["perm_s"] == pytest.approx(2.0 / (10 * b.size))
