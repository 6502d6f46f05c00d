"""Planner: study -> tasks (pair x replicate x {observed, shuffle j}) -> batches of equal shape.

Task keys are stable strings, ``"{x}~{y}/r{replicate}/obs"`` or ``"{x}~{y}/r{replicate}/s{j}"``,
and every seed of a task is ``derive_seed(study.seed, key + suffix)``:

- ``seed``          = derive(key)                      training: split, init, minibatches, dropout, KSG noise
- ``pairing_seed``  = derive("{x}~{y}/r{rep}/pairing")  shared by every task of one replicate
- ``shuffle_seed``  = derive(key + "/shuffle")          the Y-row permutation of a shuffle task
- ``perm_seed``     = derive(key + "/latent_perm")      latent permutations of an observed task

Batches hold tasks of one shape (n, d_x, d_y) in a fixed order (pairs in study order, then
replicate, then observed before shuffles), ``pairs_per_batch`` at a time, so a rerun builds the
same batches. On resume the finished tasks are dropped from their batches (the others stay
together, in order); a pair's numbers do not depend on its batch mates anyway.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Mapping

from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.seeds import derive_seed
from lmi_distributed.estimators.seeding import pair_key, shuffle_seed, task_key

if TYPE_CHECKING:
    from lmi_distributed.engine.costs import Prediction

__all__ = ["Task", "Batch", "Plan", "make_tasks", "make_batches", "plan_study", "pair_key", "task_key",
           "split_key", "split_tasks", "split_batches"]

Shape = tuple[int, int, int]  # (n rows, d_x, d_y)


@dataclass(frozen=True)
class Task:
    """One training of the cross-predictive model, keyed and seeded from the study seed."""

    key: str
    x: str
    y: str
    replicate: int
    kind: Literal["observed", "shuffle", "split"]  # split: kind interaction (engine/interaction.py)
    shuffle: int  # -1 for observed
    seed: int
    pairing_seed: int
    shuffle_seed: int
    perm_seed: int
    n_latent_permutations: int  # 0 for shuffle tasks
    shape: Shape = (0, 0, 0)

    @property
    def pair(self) -> str:
        return pair_key(self.x, self.y)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    """Tasks of one shape trained as one batched model by one worker."""

    batch_id: str
    shape: Shape
    tasks: tuple[Task, ...]

    @property
    def size(self) -> int:
        return len(self.tasks)

    def without(self, done: set[str]) -> "Batch":
        return Batch(self.batch_id, self.shape, tuple(t for t in self.tasks if t.key not in done))


@dataclass
class Plan:
    study: str
    tasks: list[Task]
    batches: list[Batch]
    pairs: list[tuple[str, str]]
    shapes: dict[tuple[str, str], Shape] = field(default_factory=dict)

    @property
    def n_observed(self) -> int:
        return sum(t.kind == "observed" for t in self.tasks)

    @property
    def n_shuffle(self) -> int:
        return sum(t.kind == "shuffle" for t in self.tasks)


def make_tasks(cfg: StudyConfig, shapes: Mapping[tuple[str, str], Shape] | None = None) -> list[Task]:
    """All tasks of the study, in the canonical order."""
    s = cfg.seed
    out: list[Task] = []
    for x, y in cfg.pair_list():
        shape = tuple(shapes[(x, y)]) if shapes is not None else (0, 0, 0)
        for r in range(cfg.replicates):
            pseed = derive_seed(s, f"{pair_key(x, y)}/r{r}/pairing")
            for j in range(-1, cfg.nulls.retrain_shuffles):
                key = task_key(x, y, r, j)
                out.append(Task(
                    key=key, x=x, y=y, replicate=r,
                    kind="observed" if j < 0 else "shuffle", shuffle=j,
                    seed=derive_seed(s, key),
                    pairing_seed=pseed,
                    shuffle_seed=shuffle_seed(s, key),
                    perm_seed=derive_seed(s, key + "/latent_perm"),
                    n_latent_permutations=cfg.nulls.latent_permutations if j < 0 else 0,
                    shape=shape,  # type: ignore[arg-type]
                ))
    if cfg.kind == "interaction":
        out += split_tasks(cfg, shapes)
    return out


def make_batches(tasks: Iterable[Task], per_batch: int) -> list[Batch]:
    """Group tasks by shape (first-seen order) and cut each group into runs of ``per_batch``."""
    groups: "OrderedDict[Shape, list[Task]]" = OrderedDict()
    for t in tasks:
        groups.setdefault(t.shape, []).append(t)
    batches: list[Batch] = []
    for gi, (shape, ts) in enumerate(groups.items()):
        for c in range(0, len(ts), per_batch):
            bid = f"g{gi:03d}-n{shape[0]}x{shape[1]}x{shape[2]}-b{c // per_batch:05d}"
            batches.append(Batch(bid, shape, tuple(ts[c:c + per_batch])))
    return batches


def plan_study(cfg: StudyConfig, shape_fn: Callable[[str, str], Shape] | None = None) -> Plan:
    """Tasks and batches of a study. ``shape_fn(x, y) -> (n, d_x, d_y)`` (from the data layer)."""
    pairs = cfg.pair_list()
    shapes = {p: tuple(shape_fn(*p)) if shape_fn else (0, 0, 0) for p in pairs}
    tasks = make_tasks(cfg, shapes)  # type: ignore[arg-type]
    batches = make_batches([t for t in tasks if t.kind != "split"], cfg.resources.pairs_per_batch)
    if cfg.kind == "interaction":
        batches += split_batches(tasks)
    return Plan(cfg.name, tasks, batches, pairs, shapes)  # type: ignore[arg-type]


# ----------------------------------------------------- kind interaction: split tasks
def split_key(x: str, y: str, j: int) -> str:
    return f"{pair_key(x, y)}/split{j:03d}/scores"


def split_tasks(cfg: StudyConfig, shapes: Mapping[tuple[str, str], tuple[int, int, int]] | None = None) -> list[Task]:
    """The study's R split tasks (empty unless ``kind: interaction``). ``shape`` is the full
    join's (n, d_x, d_y): an upper bound of a split's training pairs (for the plan's cost)."""
    if cfg.kind != "interaction" or cfg.interaction is None:
        return []
    it = cfg.interaction
    x, y = it.pair(cfg)
    shape = tuple(shapes[(x, y)]) if shapes is not None and (x, y) in shapes else (0, 0, 0)
    out = []
    for j in range(it.splits):
        key = split_key(x, y, j)
        out.append(Task(key=key, x=x, y=y, replicate=j, kind="split", shuffle=-1,  # type: ignore[arg-type]
                        seed=derive_seed(cfg.seed, key),
                        pairing_seed=derive_seed(cfg.seed, f"{pair_key(x, y)}/split{j:03d}/held_out"),
                        shuffle_seed=derive_seed(cfg.seed, f"{pair_key(x, y)}/shuffle_annotations"),
                        perm_seed=derive_seed(cfg.seed, key + "/latent_perm"),
                        n_latent_permutations=0, shape=shape))  # type: ignore[arg-type]
    return out


def split_batches(tasks: list[Task]) -> list[Batch]:
    """One batch per split task (splits differ in size, and run in parallel on the workers)."""
    return [Batch(f"split-{t.replicate:03d}", t.shape, (t,)) for t in tasks if t.kind == "split"]


# ------------------------------------------------------------------------- cost
def _hidden(d: int, hidden: int | None) -> int:
    if hidden is not None:
        return hidden
    return 1024 if d <= 2048 else 2 ** int(math.floor(math.log2(d)))


def _mlp_params(d: int, L: int, latent: int) -> int:
    dims = [d, L, L // 2, L // 4, latent]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def task_flops(shape: Shape, cfg: StudyConfig) -> float:
    """Upper-bound FLOPs to train one task for max_epochs (6 x rows x params per epoch)."""
    n, dx, dy = shape
    e = cfg.estimator
    lx, ly = _hidden(dx, e.hidden), _hidden(dy, e.hidden)
    px, py = _mlp_params(dx, lx, e.latent_dim), _mlp_params(dy, ly, e.latent_dim)
    params = 2 * px + 2 * py + px + py  # encoders + self-decoders (mirrors) + cross-decoders
    n_train = int(n * e.train_fraction)
    return 6.0 * n_train * params * e.max_epochs + 2.0 * (n - n_train) * params


#: GPU plan only (rough, uncalibrated): sustained FLOP/s of one worker and the CPU step/KSG terms
#: divided by 50. CPU workers use the measured model of ``engine.costs``.
CPU_WORKER_FLOPS = 3e10
GPU_WORKER_FLOPS = 5e12
CPU_STEP_S = 2e-3
CPU_KSG_S_PER_NLOGN = 1.2e-5


def task_seconds(task: Task, cfg: StudyConfig, gpu: bool = False) -> float:
    """Rough upper bound of one task's time on one worker (max_epochs; KSG + latent permutations)."""
    n = task.shape[0]
    e = cfg.estimator
    n_train = int(n * e.train_fraction)
    n_test = max(n - n_train, 2)
    steps = e.max_epochs * max(1, -(-n_train // e.batch_size))
    ksg_runs = 1 + task.n_latent_permutations
    speed = 50.0 if gpu else 1.0
    return (task_flops(task.shape, cfg) / (GPU_WORKER_FLOPS if gpu else CPU_WORKER_FLOPS)
            + (steps * CPU_STEP_S + ksg_runs * CPU_KSG_S_PER_NLOGN * n_test * math.log2(n_test)) / speed)


def format_plan(plan: Plan, cfg: StudyConfig, n_workers: int | None = None, gpu: bool | None = None,
                prediction: "Prediction | None" = None) -> str:
    """Human-readable plan: task counts, batches, FLOPs (upper bound: max_epochs) and the wall time.

    CPU: the expected wall time and its upper bound from ``engine.costs.predict`` (``prediction``,
    computed here with the default coefficients when None). GPU: a rough upper bound only."""
    lines = [f"study {cfg.name!r}: {len(plan.pairs)} pairs x {cfg.replicates} replicate(s) x "
             f"(1 observed + {cfg.nulls.retrain_shuffles} retrain shuffles) = {len(plan.tasks)} trainings",
             f"  observed tasks: {plan.n_observed}, shuffle tasks: {plan.n_shuffle}, "
             f"latent permutations per observed task: {cfg.nulls.latent_permutations}",
             f"  batches: {len(plan.batches)} (up to {cfg.resources.pairs_per_batch} tasks each)"]
    n_split = sum(t.kind == "split" for t in plan.tasks)
    if n_split:  # kind interaction
        lines.insert(1, f"  + {n_split} held-out prediction split(s), one batch each (kind interaction)")
    by_shape: "OrderedDict[Shape, list[Batch]]" = OrderedDict()
    for b in plan.batches:
        by_shape.setdefault(b.shape, []).append(b)
    for shape, bs in by_shape.items():
        lines.append(f"    shape n={shape[0]} d_x={shape[1]} d_y={shape[2]}: {len(bs)} batch(es), "
                     f"{sum(b.size for b in bs)} tasks")
    flops = sum(task_flops(t.shape, cfg) for t in plan.tasks)
    lines.append(f"  cost (upper bound, {cfg.estimator.max_epochs} epochs each): {flops / 1e12:.2f} TFLOP")
    unknown = "" if any(t.shape[0] for t in plan.tasks) else " [shapes unknown: build the store first]"
    if gpu:
        w = n_workers if n_workers else (cfg.resources.workers if isinstance(cfg.resources.workers, int) else 1)
        secs = sum(task_seconds(t, cfg, True) for t in plan.tasks)
        lines.append(f"  time at most ~{secs / w / 60:.1f} min on {w} GPU worker(s) "
                     f"(rough FLOP model, not calibrated for GPUs; --workers N to change)" + unknown)
        return "\n".join(lines)
    if unknown:
        lines.append("  wall time: unknown (pair shapes unknown: build the store first, or drop --no-data)")
        return "\n".join(lines)
    if prediction is None:
        from lmi_distributed.engine.costs import predict

        prediction = predict(plan, cfg, workers=n_workers)
    p = prediction
    lines += _format_prediction(p, cfg, unknown)
    return "\n".join(lines)


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _format_prediction(p: "Prediction", cfg: StudyConfig, unknown: str = "") -> list[str]:
    """The time lines of ``format_plan`` (CPU workers)."""
    if p.n_batches == 0:
        return ["  expected wall time: nothing left to run (aggregation only)"]
    return [
        f"  expected wall time ~{_fmt_s(p.expected_s)} on {p.workers} CPU worker(s) x {p.threads} torch "
        f"thread(s) ({p.n_batches} batch(es) to run; --workers N to change)" + unknown,
        f"  upper bound ~{_fmt_s(p.bound_s)} (every task to max_epochs={cfg.estimator.max_epochs})",
        f"    epochs: ~{p.epochs_mean:.0f} per task expected, from the {p.epochs_source}",
        f"    costs: {p.costs_source}; longest worker queue ~{_fmt_s(p.batches_s)}, start-up + aggregation "
        f"~{p.overhead_s:.0f} s, contention x{p.contention:.2f} ({p.workers}x{p.threads} threads + load "
        f"{p.load:.1f} on {p.cores} cores)",
    ]
