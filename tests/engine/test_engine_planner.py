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
