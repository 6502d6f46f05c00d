"""Accuracy suite (issue 11): LMI vs latentmi 0.1.3 on cases with known MI (bits), plus ablations.

Cases (generators in ``lmi_distributed.synthetic``; truth in bits):

- ``gauss``: paper Algorithm 4 at several d, k, bits;
- ``rotwarp``: the same after a Haar-random rotation per side and a random smooth increasing map
  per column (MI unchanged);
- ``lowvar``: dependence in 1-4 directions among 100-1000 carrying 1% of the variance, rotated
  and warped;
- ``sparse``: dependence in 2 of d columns per side (at random positions), warped, not rotated
  (a few genes among many; BMI's sparse tasks at any d; session 11);
- ``indep``: independent low-rank / heavy-tailed variables (truth 0);
- ``digits``: paper 3.2, 8x8 digit images resampled by a correlated pair of labels (discrete truth);
- ``markov``: two variables of the Gaussian AR(1) chain (``gaussian_markov_chain``) at a lag;
- ``bmi``: the public BMI benchmark's tasks (``--bmi DIR`` of .npz files written by
  ``jobs/bmi_sample.py`` in ``.venv-bmi``; truth converted from nats to bits there).

Methods: ``paper`` (our estimator at the paper's settings, today's default), ``paper_last`` (the
same keeping the last epoch's weights, latentmi's effective behaviour), ``contrastive``
(the same plus the InfoNCE term on the latents, ``contrastive_weight``/``contrastive_temperature``;
estimators/contrastive.py), ``latentmi`` (the reference library in ``.venv-latentmi``, a
subprocess, same N, epochs and patience). ``bmi_mine``, ``bmi_infonce``, ``bmi_nwj``, ``bmi_dv``,
``bmi_ksg``, ``bmi_cca``: BMI's own estimators (``benchmark-mi`` in ``.venv-bmi``, a subprocess) at
BMI's own defaults, the settings of its published benchmark (neural: 10 000 steps of batch 256, lr
0.1, hidden (16, 8), half the rows held out; KSG: k 5 and 10; none of our budget flags applies).
``--versus`` then prints the best of them per case next to ours. All seeds of a case train as one batch
(``estimate_many``). ``paper_noise``: the paper's settings with
latentmi's KSG tie-breaking jitter (``ksg_noise=1e-10``, seeded). ``paper_avg2`` / ``contrastive_avg2``: the mean of two trainings per sample
(pair seeds s and s + 100000: another split, init and order; twice the cost). Per case and method: the median |estimate - truth| over seeds and the seconds.
A method with ``view="select"`` (``default``) also writes four columns from the same trainings:
``<method>_latents`` (the latents alone), ``<method>_nobias`` (without the view's bias correction),
``<method>_noscreen`` (without the screened candidate, session 11, nor the radial ones, session 13:
the view recomputed where one of them was chosen) and ``<method>_noradial`` (without the radial
candidates only: recomputed where one was chosen).

    nice -n 10 python jobs/benchmark_accuracy.py --quick                 # minutes per method
    nice -n 10 python jobs/benchmark_accuracy.py --quick --bmi runs/bmi_tasks --only bmi
    nice -n 10 python jobs/benchmark_accuracy.py                         # the issue's sizes (hours on 2 cores)

Ablations without a method of their own (name them with ``--label``): ``--set KEY=VALUE`` (any
LMISettings field), ``--ksg-k`` and ``--cca`` (other KSG inputs on the same latents, no retraining),
``--input-scores`` / ``--input-both`` (inputs mapped to normal scores first).

JSON to jobs/results/benchmark_accuracy[_quick][_bmi].json (``--out`` to change it).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LATENTMI_PY = Path(os.environ.get("LATENTMI_PY", ROOT / ".venv-latentmi" / "bin" / "python"))
BMI_PY = Path(os.environ.get("BMI_PY", ROOT / ".venv-bmi" / "bin" / "python"))

from lmi_distributed import synthetic  # noqa: E402
from lmi_distributed.estimators.settings import PAPER  # noqa: E402

#: default: today's defaults; default_s5: the same with view="latents" (the default of session 5, before
#: the canonical view); paper: the paper's estimator (PAPER); paper_last: the same keeping the last
#: epoch's weights (latentmi's effective behaviour); contrastive: plus the InfoNCE term; latentmi: the
#: reference library
METHODS = ("default", "default_s5", "paper", "paper_last", "paper_noise", "paper_gz", "contrastive", "contrastive_gz",
           "paper_avg2",
           "contrastive_avg2", "latentmi", "bmi_mine", "bmi_infonce", "bmi_nwj", "bmi_dv", "bmi_ksg", "bmi_cca")
#: methods that run in another venv, not ours (no settings, no --ksg-k, no FPR)
EXTERNAL = ("latentmi", "bmi_mine", "bmi_infonce", "bmi_nwj", "bmi_dv", "bmi_ksg", "bmi_cca")

#: pair-seed offset of the second training of an ``*_avg2`` method (another split, init, order)
AVG_SEED_OFFSET = 100_000

#: (family, params) of the quick and the full suite
QUICK_CASES = [
    ("gauss", dict(d=10, k=1, bits=1.0)),
    ("gauss", dict(d=100, k=2, bits=1.0)),
    ("rotwarp", dict(d=10, k=1, bits=1.0)),
    ("rotwarp", dict(d=100, k=2, bits=1.0)),
    ("lowvar", dict(d=100, n_dir=2, bits=1.0, var_fraction=0.01)),
    ("indep", dict(d=100, kind="low_rank")),
    ("indep", dict(d=100, kind="heavy_tailed")),
    ("digits", dict(rho=0.8)),
    ("markov", dict(d=20, k=2, rho=0.8, lag=1)),
]
FULL_CASES = (
    [("gauss", dict(d=d, k=k, bits=1.0)) for d in (10, 100, 1000, 5000) for k in (1, 2, 4)]
    + [("gauss", dict(d=100, k=2, bits=b)) for b in (0.5, 2.0)]
    + [("rotwarp", dict(d=d, k=k, bits=1.0)) for d in (10, 100, 1000) for k in (1, 4)]
    + [("lowvar", dict(d=d, n_dir=nd, bits=1.0, var_fraction=0.01)) for d in (100, 1000) for nd in (1, 4)]
    + [("sparse", dict(d=d, n_dep=2, bits=1.0)) for d in (100, 1000)]
    + [("indep", dict(d=d, kind=kind)) for d in (100, 1000) for kind in ("low_rank", "heavy_tailed")]
    + [("digits", dict(rho=r)) for r in (0.5, 0.8)]
    + [("markov", dict(d=d, k=2, rho=0.8, lag=lag)) for d in (20, 100) for lag in (1, 2)]
)


def case_name(family: str, p: dict) -> str:
    if family in ("gauss", "rotwarp"):
        return f"{family} d={p['d']} k={p['k']} {p['bits']:g}b"
    if family == "lowvar":
        return f"lowvar d={p['d']} dirs={p['n_dir']} {p['bits']:g}b {100 * p['var_fraction']:g}%var"
    if family == "sparse":
        return f"sparse d={p['d']} cols={p['n_dep']} {p['bits']:g}b"
    if family == "indep":
        return f"indep d={p['d']} {p['kind']}"
    if family == "digits":
        return f"digits 0/1 rho={p['rho']:g}"
    if family == "markov":
        return f"markov d={p['d']} k={p['k']} rho={p['rho']:g} lag={p['lag']}"
    return f"bmi {p['task']}"


def make(family: str, p: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(X, Y, truth_bits) of one case and seed."""
    if family == "gauss":
        return synthetic.gaussian_benchmark(n, p["d"], p["k"], p["bits"], seed)
    if family == "rotwarp":
        return synthetic.rotated_warped_gaussian(n, p["d"], p["k"], p["bits"], seed)
    if family == "lowvar":
        return synthetic.low_variance_dependence(n, p["d"], p["n_dir"], p["bits"], seed, p["var_fraction"])
    if family == "sparse":
        return synthetic.sparse_columns_dependence(n, p["d"], p["n_dep"], p["bits"], seed)
    if family == "indep":
        return synthetic.independent_structured(n, p["d"], p["kind"], seed)
    if family == "digits":
        return synthetic.digits_label_benchmark(n, p["rho"], seed)
    if family == "markov":
        vs, truth = synthetic.gaussian_markov_chain(n, p["lag"] + 1, p["k"], p["d"], p["rho"], seed)
        return vs[0], vs[p["lag"]], float(truth[0, p["lag"]])
    if family == "bmi":
        z = np.load(p["files"][seed])
        if z["X"].shape[0] < n:
            raise SystemExit(f"{p['files'][seed]} has {z['X'].shape[0]} rows, asked for n={n}")
        return z["X"][:n].astype(np.float64), z["Y"][:n].astype(np.float64), float(z["truth_bits"])
    raise ValueError(family)


def bmi_cases(folder: Path, seeds: list[int]) -> list[tuple[str, dict]]:
    """Cases from ``bmi_sample.py`` output: ``{task}__seed{s}.npz`` files, one per seed."""
    tasks: dict[str, dict[int, str]] = {}
    for f in sorted(folder.glob("*__seed*.npz")):
        task, s = f.stem.rsplit("__seed", 1)
        tasks.setdefault(task, {})[int(s)] = str(f)
    out = []
    for task, files in tasks.items():
        missing = [s for s in seeds if s not in files]
        if missing:
            raise SystemExit(f"BMI task {task}: no sample for seeds {missing} in {folder} "
                             f"(run jobs/bmi_sample.py with --seeds {len(seeds)})")
        out.append(("bmi", dict(task=task, files=files)))
    return out


def cca_mi(g, variant: str, k: int = 3) -> float:
    """KSG (k, seeded 1e-10 jitter) on the held-out latents of result ``g`` after linear CCA fitted
    on its *training* latents: both sides whitened and rotated to canonical variates (an invertible
    linear map per side, fixed before the held-out rows are seen: MI unchanged, the estimate still a
    lower bound, the permutation null exact). ``variant``: 'full' keeps all, 'rho' all with each pair
    scaled by its canonical correlation, an integer string the top m pairs, 'auto' the pairs whose
    training canonical correlation exceeds 3 / sqrt(n_train)."""
    from lmi_distributed.estimators.ksg import add_noise, ksg_mi
    zxt, zyt = g.zx[g.train_idx].astype(np.float64), g.zy[g.train_idx].astype(np.float64)
    mx, my = zxt.mean(0), zyt.mean(0)
    zxt, zyt = zxt - mx, zyt - my
    n = len(zxt)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        w = np.maximum(w, 1e-9 * max(w.max(), 1e-300))
        return v @ np.diag(w ** -0.5) @ v.T
    wx, wy = inv_sqrt(zxt.T @ zxt / n), inv_sqrt(zyt.T @ zyt / n)
    u, rho, vt = np.linalg.svd(wx @ (zxt.T @ zyt / n) @ wy)
    a, b = wx @ u, wy @ vt.T
    if variant == "rho":         # all pairs, each scaled by its canonical correlation (weak pairs stay small)
        a, b = a * rho, b * rho
    else:
        m = len(rho) if variant == "full" else max(1, int(np.sum(rho > 3 / np.sqrt(n)))) if variant == "auto" \
            else int(variant)
        a, b = a[:, :m], b[:, :m]
    ux = (g.zx[g.test_idx].astype(np.float64) - mx) @ a
    vy = (g.zy[g.test_idx].astype(np.float64) - my) @ b
    ux, vy = add_noise([ux, vy], 1e-10, 12345)
    return ksg_mi(ux, vy, k=k)


def _larger(latents: float, canonical: float) -> float:
    """What ``view="select"`` reports: the canonical view's estimate when there is one and it is
    larger, else the latents'."""
    return latents if not np.isfinite(canonical) or canonical <= latents else canonical


def _without_screen(g, X: np.ndarray, Y: np.ndarray, radial_only: bool = False) -> float:
    """Result ``g``'s estimate had the canonical view not had the screened candidate
    (``canonical.SCREENED``) nor the radial ones (``canonical.RADIAL_SPECS``): its
    view recomputed (same inputs, split, seed and settings) with ``screen=False``, then the larger of
    it and the same latents. ``radial_only``: without the radial candidates only (``radial=False``)."""
    from lmi_distributed.estimators import canonical
    from lmi_distributed.estimators.api import _canonical_view, _check_pair, _prepare

    radial = tuple(canonical.RADIAL_SPECS)
    dropped = radial if radial_only else (canonical.SCREENED, *radial)
    if g.canonical_pcs not in dropped:
        return g.mi
    X, Y = _check_pair(X, Y, g.settings, "")
    prep = _prepare(X, Y, g.seed, g.settings)
    view = (_canonical_view(prep, g.settings, radial=False) if radial_only
            else _canonical_view(prep, g.settings, screen=False))
    return _larger(g.mi_latents, view.get("mi_canonical", float("nan")))


def run_ours(data: list, seeds: list[int], settings: dict, repeats: int = 1, ks: tuple[int, ...] = (),
             cca: tuple[str, ...] = ()) -> tuple[list[float], list[str], float, dict[int, list[float]]]:
    """Our estimate of every sample (one batch). ``repeats`` > 1 (the ``*_avg2`` methods): each sample
    is trained ``repeats`` times with pair seeds s, s + AVG_SEED_OFFSET, ... (another split, init and
    minibatch order) and the estimates averaged; not ok if any training is not ok.
    ``ks``: also KSG at these k on the same held-out latents (no retraining; the KSG-k ablation):
    the fourth value ``{k: estimates}`` (empty without ``ks``)."""
    from lmi_distributed.estimators.api import estimate_many
    from lmi_distributed.estimators.ksg import ksg_mi

    t0 = time.perf_counter()
    all_seeds = [s + r * AVG_SEED_OFFSET for r in range(repeats) for s in seeds]
    res = estimate_many([(X, Y) for _ in range(repeats) for X, Y, _ in data], seeds=all_seeds,
                        validate=False, **settings)
    n = len(seeds)
    mis, sts = [], []
    for i in range(n):
        group = [res[r * n + i] for r in range(repeats)]
        bad = [g.status for g in group if g.status != "ok"]
        sts.append(bad[0] if bad else "ok")
        mis.append(float("nan") if bad else float(np.mean([g.mi for g in group])))
    dt = time.perf_counter() - t0
    from lmi_distributed.errors import InputError

    def mi_at(g, kk: int) -> float:
        try:   # tied latents (digits) at small k: KSG refuses zero distances -> NaN, not a crash
            return ksg_mi(g.zx[g.test_idx].astype(np.float64), g.zy[g.test_idx].astype(np.float64), k=kk)
        except InputError:
            return float("nan")

    by_k = {}
    if res and all(getattr(g.settings, "view", "latents") == "select" for g in res):
        # the same trainings' latents alone (view="select" reports the larger held-out estimate)
        by_k["latents"] = [float("nan") if sts[i] != "ok" else
                           float(np.mean([res[r * n + i].mi_latents for r in range(repeats)])) for i in range(n)]
        if all(getattr(g.settings, "view_bias", "none") == "gaussian" for g in res):
            # ... and the same trainings and views without the view's bias correction (session 7's default:
            # the choice of view does not depend on the correction, so this is that estimate exactly)
            by_k["nobias"] = [float("nan") if sts[i] != "ok" else
                              float(np.mean([_larger(g.mi_latents, g.mi_canonical + g.canonical_bias)
                                             for g in (res[r * n + i] for r in range(repeats))]))
                              for i in range(n)]
        # ... and without the screened candidate (session 11's ablation): the same trainings, the view
        # recomputed without canonical.SCREENED where the screen was chosen (elsewhere removing a
        # candidate that lost changes nothing, so the estimate is the default's exactly)
        by_k["noscreen"] = [float("nan") if sts[i] != "ok" else
                            float(np.mean([_without_screen(res[r * n + i], *data[i][:2]) for r in range(repeats)]))
                            for i in range(n)]
        # ... and without the radial candidate only (session 13's ablation), likewise
        by_k["noradial"] = [float("nan") if sts[i] != "ok" else
                            float(np.mean([_without_screen(res[r * n + i], *data[i][:2], radial_only=True)
                                           for r in range(repeats)]))
                            for i in range(n)]
    for v in cca:                # KSG on canonical variates of the latents (CCA fitted on training rows)
        vals = []
        for i in range(n):
            group = [res[r * n + i] for r in range(repeats)]
            vals.append(float("nan") if sts[i] != "ok" else float(np.mean([cca_mi(g, v) for g in group])))
        by_k[f"cca{v}"] = vals
    for kk in ks:
        vals = []
        for i in range(n):
            group = [res[r * n + i] for r in range(repeats)]
            vals.append(float("nan") if sts[i] != "ok" else float(np.mean([mi_at(g, kk) for g in group])))
        by_k[kk] = vals
    return mis, sts, dt, by_k


def latentmi_models_at_width(src: str, hidden: int) -> str:
    """latentmi 0.1.3's ``models.py`` source with every hidden width set to ``hidden``.

    latentmi hard-codes ``Lx, Ly = 1024, 1024`` and, in ``AECross``, widens a side to
    ``2**floor(log2 d)`` when ``d > 2048``: both are replaced, so ``--hidden`` means the same width
    for latentmi as for ours at every d (before session 12 the widening was left in, and latentmi ran
    4096 wide at d = 5000 against our 128). Raises AssertionError if the source no longer has them."""
    out = src.replace("Lx, Ly = 1024, 1024", f"Lx, Ly = {hidden}, {hidden}")
    assert f"Lx, Ly = {hidden}, {hidden}" in out, "latentmi's models.py: no 'Lx, Ly = 1024, 1024'"
    for side, dim in (("Lx", "x_dim"), ("Ly", "y_dim")):
        wide = f"{side} = int(2**np.floor(np.log2({dim})))"
        assert wide in out, f"latentmi's models.py: no {wide!r}"
        out = out.replace(wide, f"{side} = {hidden}")
    return out


#: how latentmi runs: ``stock``, or ``eval_validation``, its held-out loss computed in eval mode (no
#: dropout) as ours is (latentmi calls ``model.train()`` before every minibatch and never ``eval()``
#: before validating; a probe of jobs/oracle_residuals.py)
LATENTMI_PROBES = ("stock", "eval_validation")

LATENTMI_SCRIPT = r"""
import sys, json, io, contextlib, inspect, numpy as np, torch
from latentmi import lmi, models
torch.set_num_threads(1)
epochs, patience, hidden, lr, probe = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
""" + inspect.getsource(latentmi_models_at_width) + r"""
if hidden > 0:      # the same classes at another width, at every d
    src = latentmi_models_at_width(inspect.getsource(models), hidden)
    exec(compile(src, models.__file__, "exec"), models.__dict__)
if probe == "eval_validation":
    train_loss = models.AECross.learning_loss
    def learning_loss(self, x, y):
        if torch.is_grad_enabled():                  # a training step
            return train_loss(self, x, y)
        was = self.training                          # latentmi's validation pass (under no_grad)
        self.eval()
        try:
            return train_loss(self, x, y)
        finally:
            self.train(was)
    models.AECross.learning_loss = learning_loss
out = []
for path in sys.argv[6:]:
    z = np.load(path)
    seed = int(z["seed"])
    np.random.seed(seed); torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        pmi, _, _ = lmi.estimate(z["X"], z["Y"], epochs=epochs, patience=patience, lr=lr, quiet=True,
                                 device="cpu")
    out.append(float(np.nanmean(pmi)))
print(json.dumps(out))
"""


def run_latentmi(data: list, seeds: list[int], epochs: int, patience: int, hidden: int | None,
                 lr: float, probe: str = "stock") -> tuple[list[float], list[str], float]:
    """latentmi's estimates (bits) of ``data`` ((X, Y, truth) triples), numpy and torch seeded with
    each seed before ``lmi.estimate``; width ``hidden`` (None: latentmi's own), ``probe`` one of
    :data:`LATENTMI_PROBES`. Returns (estimates, statuses, seconds)."""
    if not LATENTMI_PY.exists():
        raise SystemExit(f"latentmi venv not found at {LATENTMI_PY}: run jobs/setup_latentmi_venv.sh "
                         f"or drop 'latentmi' from --methods")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, ((X, Y, _), s) in enumerate(zip(data, seeds)):
            p = Path(tmp) / f"{i}.npz"
            np.savez(p, X=X.astype(np.float32), Y=Y.astype(np.float32), seed=s)
            paths.append(str(p))
        script = Path(tmp) / "run.py"
        script.write_text(LATENTMI_SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        out = subprocess.run([str(LATENTMI_PY), str(script), str(epochs), str(patience),
                              str(hidden or 0), repr(lr), probe, *paths],
                             capture_output=True, text=True, env=env)
        dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"latentmi failed:\n{out.stderr[-3000:]}")
    mis = json.loads(out.stdout.strip().splitlines()[-1])
    return mis, ["ok" if np.isfinite(m) else "nan" for m in mis], dt


BMI_SCRIPT = r"""
import sys, json, math, time, numpy as np
import bmi.estimators as e
make = {"bmi_mine": lambda s: e.MINEEstimator(verbose=False, seed=s),
        "bmi_infonce": lambda s: e.InfoNCEEstimator(verbose=False, seed=s),
        "bmi_nwj": lambda s: e.NWJEstimator(verbose=False, seed=s),
        "bmi_dv": lambda s: e.DonskerVaradhanEstimator(verbose=False, seed=s),
        "bmi_ksg": lambda s: e.KSGEnsembleFirstEstimator(),
        "bmi_cca": lambda s: e.CCAMutualInformationEstimator()}
methods = sys.argv[1].split(",")
out = {m: {"bits": [], "seconds": 0.0} for m in methods}
for path in sys.argv[2:]:
    z = np.load(path)
    for m in methods:
        t0 = time.perf_counter()
        try:
            v = float(make[m](int(z["seed"])).estimate(z["X"], z["Y"])) / math.log(2)   # nats -> bits
        except Exception as exc:                       # one failed estimate is a NaN row, not a lost case
            print(f"{m} on {path}: {exc!r}", file=sys.stderr)
            v = float("nan")
        out[m]["seconds"] += time.perf_counter() - t0
        out[m]["bits"].append(v)
print(json.dumps(out))
"""


def run_bmi_estimators(data: list, seeds: list[int], methods: list[str]) -> dict[str, tuple[list[float], list[str], float]]:
    """BMI's own estimators at BMI's defaults on each seed's (X, Y), in ``.venv-bmi`` (one CPU
    thread): per method (estimates in bits, statuses, summed seconds)."""
    if not BMI_PY.exists():
        raise SystemExit(f"BMI venv not found at {BMI_PY}: run jobs/setup_bmi_venv.sh or drop the bmi_* methods")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, ((X, Y, _), s) in enumerate(zip(data, seeds)):
            p = Path(tmp) / f"{i}.npz"
            np.savez(p, X=X, Y=Y, seed=s)
            paths.append(str(p))
        script = Path(tmp) / "run_bmi.py"
        script.write_text(BMI_SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
        out = subprocess.run([str(BMI_PY), str(script), ",".join(methods), *paths],
                             capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"BMI estimators failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {m: (res[m]["bits"], ["ok" if np.isfinite(v) else "nan" for v in res[m]["bits"]], res[m]["seconds"])
            for m in methods}


#: null pairs of the FPR check, cycled: independent structured variables (truth 0)
FPR_KINDS = (("indep", dict(d=100, kind="low_rank")), ("indep", dict(d=100, kind="heavy_tailed")))


def run_fpr(method: str, settings: dict, n_pairs: int, n: int, n_perm: int, alpha: float = 0.05,
            start: int = 0) -> dict:
    """False-positive rate of the latent-permutation p-value over ``n_pairs`` independent pairs.

    Pair i (``start`` <= i < ``start + n_pairs``; runs with disjoint ranges can be pooled) is
    ``FPR_KINDS[i % len]`` drawn with data seed 1000 + i and trained with pair seed i
    (all pairs in one ``estimate_many`` call, batched by shape); its p-value is
    ``(1 + #{null >= MI}) / (1 + n_perm)`` from ``result_latent_null`` (``n_perm`` permutations of
    the held-out Y latents, seed 10_000 + i), as ``lmi.pairwise`` computes it. Returns the FPR at
    ``alpha`` with its 95% Wilson interval, a Kolmogorov-Smirnov test of the p-values against
    Uniform(0, 1), and per-pair rows."""
    from scipy import stats as st

    from lmi_distributed.estimators.api import estimate_many
    from lmi_distributed.estimators.permutation import result_latent_null
    from lmi_distributed.stats import permutation_pvalue

    ids = list(range(start, start + n_pairs))
    data = [make(*FPR_KINDS[i % len(FPR_KINDS)], n, 1000 + i) for i in ids]
    t0 = time.perf_counter()
    res = estimate_many([(X, Y) for X, Y, _ in data], seeds=ids, validate=False, **settings)
    t_train = time.perf_counter() - t0
    rows = []
    for i, r in zip(ids, res):
        null = result_latent_null(r, n_permutations=n_perm, seed=10_000 + i)
        rows.append({"pair": i, "kind": case_name(*FPR_KINDS[i % len(FPR_KINDS)]), "estimate": r.mi,
                     "status": r.status, "p": permutation_pvalue(r.mi, null), "view": r.view,
                     "canonical_width": int(r.canonical_width),
                     "null_mean": float(np.nanmean(null)) if r.status == "ok" else float("nan")})
    ps = np.array([r["p"] for r in rows if r["status"] == "ok"])
    k = int(np.sum(ps <= alpha))
    lo = hi = float("nan")
    if ps.size:
        ci = st.binomtest(k, ps.size).proportion_ci(method="wilson")     # 95% Wilson interval
        lo, hi = float(ci.low), float(ci.high)
    out = {"method": method, "n_pairs": n_pairs, "start": start, "n": n, "n_ok": int(ps.size), "n_permutations": n_perm,
           "alpha": alpha, "fpr": k / ps.size if ps.size else float("nan"), "fpr_ci95": [lo, hi],
           "ks_uniform_p": float(st.kstest(ps, "uniform").pvalue) if ps.size else float("nan"),
           "median_estimate": float(np.median([r["estimate"] for r in rows if r["status"] == "ok"])),
           "n_view_compared": sum(r["canonical_width"] > 0 for r in rows),
           "n_view_reported": sum(r["view"] == "canonical" for r in rows),
           "seconds": time.perf_counter() - t0, "train_seconds": t_train, "rows": rows}
    print(f"FPR {method:<14} {k}/{ps.size} = {out['fpr']:.3f} at alpha {alpha} (95% CI {lo:.3f}-{hi:.3f}), "
          f"KS p {out['ks_uniform_p']:.2f}, median MI {out['median_estimate']:.3f} bits; canonical view "
          f"compared on {out['n_view_compared']}, reported on {out['n_view_reported']} "
          f"[{out['seconds']:.0f} s]", flush=True)
    return out


def summarise(rows: list[dict], truth: float) -> dict:
    """Median |error| over seeds whose status is ok; NaN (flagged) when none is."""
    errs = [abs(r["estimate"] - truth) for r in rows if r["status"] == "ok" and np.isfinite(r["estimate"])]
    return {"median_abs_error": float(np.median(errs)) if errs else float("nan"),
            "median_estimate": float(np.median([r["estimate"] for r in rows if r["status"] == "ok"]))
            if errs else float("nan"), "n_ok": len(errs)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small suite: N=2000, 2 seeds, hidden 128, lr 1e-3, 60 epochs, patience 10")
    ap.add_argument("--n", type=int, default=None, help="rows per sample (quick 2000, full 2000)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per case (quick 2, full 3)")
    ap.add_argument("--seed-start", type=int, default=0,
                    help="first seed (seeds seed-start .. seed-start + seeds - 1): more seeds of a slow case "
                         "in a second run (--table keeps one run per method: pool their rows by hand)")
    ap.add_argument("--max-epochs", type=int, default=None, help="quick 60, full 300 (the paper's)")
    ap.add_argument("--hidden", type=int, default=None,
                    help="hidden width of every method, latentmi included (quick 128; full: the paper's 1024)")
    ap.add_argument("--lr", type=float, default=None, help="Adam lr of every method (quick 1e-3, full 1e-4)")
    ap.add_argument("--patience", type=int, default=None, help="quick 10, full 30 (the paper's)")
    ap.add_argument("--methods", default="paper,contrastive,latentmi",
                    help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--contrastive-weight", type=float, default=1.0)
    ap.add_argument("--contrastive-temperature", type=float, default=3.0)
    ap.add_argument("--self-weight", type=float, default=1.0,
                    help="weight of the self-reconstruction MSEs (contrastive method; 1: the paper's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one LMISettings field in every method of ours (e.g. latent_dim=4; "
                         "the value is read as a Python literal), for ablations; use with --label")
    ap.add_argument("--input-scores", action="store_true",
                    help="ablation: map every input column to normal scores (its ECDF over all N rows, as "
                         "the z-score uses all rows) before our methods; use with --label")
    ap.add_argument("--input-both", action="store_true",
                    help="ablation: every input column twice, as itself and as its normal scores (as "
                         "--input-scores), before our methods; use with --label")
    ap.add_argument("--label", default="",
                    help="suffix of the method names in the output (ablations of one method side by side)")
    ap.add_argument("--bmi", type=Path, default=None, help="folder of BMI task samples (jobs/bmi_sample.py)")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this text")
    ap.add_argument("--exclude", action="append", default=[], metavar="TEXT",
                    help="skip cases whose name contains this text (repeatable; after --only)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: share the machine)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--ksg-k", default="",
                    help="comma list of KSG k: also report our methods with KSG at these k on the same "
                         "latents (method name + '_ksgk<k>'; no retraining)")
    ap.add_argument("--cca", default="",
                    help="comma list of full, rho, auto, or integers m: also report our methods with KSG on "
                         "the latents' canonical variates (CCA on the training latents; all pairs, all "
                         "scaled by their correlation, the significant ones, or the top m) "
                         "(method name + '_cca<v>'; no retraining)")
    ap.add_argument("--fpr", type=int, default=0, metavar="N_PAIRS",
                    help="instead of the suite: false-positive rate of the latent-permutation p-value "
                         "over N_PAIRS independent pairs (>= 100 for the issue's check)")
    ap.add_argument("--view-gate", type=float, default=None, metavar="Z",
                    help="ablation: the canonical view's noise gate (estimators.canonical.GATE_Z, default 2); "
                         "--view-gate=-inf compares the view with the latents on every pair (e.g. to test the "
                         "maximum null with --fpr)")
    ap.add_argument("--fpr-start", type=int, default=0, help="first null pair index (--fpr; pool disjoint runs)")
    ap.add_argument("--permutations", type=int, default=199, help="latent permutations per pair (--fpr)")
    ap.add_argument("--versus", default="default",
                    help="--table: also compare this method, case by case, with the best of the other "
                         "libraries' estimators in the files (latentmi, bmi_*)")
    ap.add_argument("--others", default="",
                    help="--table --versus: compare with only these of the other libraries' methods "
                         "(comma list, e.g. bmi_mine,bmi_infonce: the neural ones)")
    ap.add_argument("--table", type=Path, nargs="+", default=None,
                    help="no run: merge these result JSONs (e.g. one per method, run in parallel) and "
                         "print the table; with --out, write the merged JSON there")
    a = ap.parse_args(argv)
    if a.table:
        merged = merge([json.loads(f.read_text()) for f in a.table])
        print_table(merged["cases"], merged["meta"]["methods"])
        if "latentmi" in merged["meta"]["methods"]:
            print_versus(merged["cases"], [m for m in merged["meta"]["methods"] if m not in EXTERNAL])
        others = [m for m in merged["meta"]["methods"] if m in EXTERNAL]
        if a.others:
            others = [m for m in others if m in a.others.split(",")]
        if a.versus in merged["meta"]["methods"] and others:
            print_best_other(merged["cases"], a.versus, others)
        if a.out:
            a.out.write_text(json.dumps(merged, indent=1))
            print(f"wrote {a.out}")
        return
    n = a.n or 2000
    n_seeds = a.seeds or (2 if a.quick else 3)
    epochs = a.max_epochs or (60 if a.quick else 300)
    hidden = a.hidden or (128 if a.quick else None)
    lr = a.lr or (1e-3 if a.quick else 1e-4)
    patience = a.patience or (10 if a.quick else 30)
    seeds = list(range(a.seed_start, a.seed_start + n_seeds))
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    ks = tuple(int(v) for v in a.ksg_k.split(",") if v.strip())
    cca = tuple(v.strip() for v in a.cca.split(",") if v.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; expected some of {', '.join(METHODS)}")
    if a.view_gate is not None:
        from lmi_distributed.estimators import canonical
        canonical.GATE_Z = a.view_gate
    cases = list(QUICK_CASES if a.quick else FULL_CASES)
    if a.bmi is not None:
        cases += bmi_cases(a.bmi, seeds)
    if a.only:
        cases = [c for c in cases if a.only in case_name(*c)]
    cases = [c for c in cases if not any(t in case_name(*c) for t in a.exclude)]
    if not cases:
        raise SystemExit("no case selected")
    budget = dict(max_epochs=epochs, patience=patience, num_threads=a.threads, hidden=hidden, lr=lr)
    import ast
    overrides = {}
    for kv in a.set:
        key, _, val = kv.partition("=")
        try:
            overrides[key.strip()] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = val.strip()
    budget.update(overrides)
    base = {**budget, **PAPER, **overrides}   # the paper's estimator at this budget (overrides win)
    settings = {"default": budget, "default_s5": {**budget, "view": "latents"},
                "paper": base, "paper_last": {**base, "restore_best": False},
                "paper_noise": {**base, "ksg_noise": 1e-10},
                "contrastive": {**base, "contrastive_weight": a.contrastive_weight,
                                "contrastive_temperature": a.contrastive_temperature,
                                "self_weight": a.self_weight}}
    settings["paper_gz"] = {**base, "ksg_gaussianize": True}
    settings["contrastive_gz"] = {**settings["contrastive"], "ksg_gaussianize": True}
    if a.fpr:
        out_path = a.out or ROOT / "jobs" / "results" / ("benchmark_accuracy_fpr" + ("_quick" if a.quick else "") + ".json")
        if any(m.endswith("_avg2") for m in methods):
            raise SystemExit("--fpr: the *_avg2 methods have no latent null of their own")
        runs = [run_fpr(m + a.label, settings[m], a.fpr, n, a.permutations, start=a.fpr_start)
                for m in methods if m not in EXTERNAL]
        meta = {"label": a.label, "n": n, "max_epochs": epochs, "patience": patience, "hidden": hidden, "lr": lr,
                "methods": [m + a.label for m in methods if m not in EXTERNAL], "settings": settings,
                "threads": a.threads, "quick": a.quick, "fpr_kinds": [case_name(*c) for c in FPR_KINDS]}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({"meta": meta, "fpr": runs}, indent=1))
        print(f"wrote {out_path}")
        return
    out_path = a.out or ROOT / "jobs" / "results" / (
        "benchmark_accuracy" + ("_quick" if a.quick else "") + ("_bmi" if a.only == "bmi" else "") + ".json")
    meta = {"label": a.label, "n": n, "seeds": seeds, "max_epochs": epochs, "patience": patience, "hidden": hidden, "lr": lr,
            "methods": methods, "ksg_k": list(ks),
            "method_keys": [m + a.label for m in methods]
            + [f"{m}{a.label}_ksgk{kk}" for m in methods if m not in EXTERNAL for kk in ks]
            + [f"{m}{a.label}_cca{v}" for m in methods if m not in EXTERNAL for v in cca],
            "settings": settings, "threads": a.threads, "quick": a.quick}
    print(f"N={n}, seeds={seeds}, epochs<={epochs}, patience {patience}, hidden {hidden or 'paper'}, "
          f"lr {lr:g}, methods {methods}", flush=True)
    results = []
    for family, p in cases:
        name = case_name(family, p)
        data = [make(family, p, n, s) for s in seeds]
        if a.input_both:
            data = [(np.hstack([X, normal_scores(X)]), np.hstack([Y, normal_scores(Y)]), t) for X, Y, t in data]
        if a.input_scores:
            data = [(normal_scores(X), normal_scores(Y), t) for X, Y, t in data]
        truth = data[0][2]
        entry = {"case": name, "family": family, "params": {k: v for k, v in p.items() if k != "files"},
                 "truth_bits": truth, "methods": {}}
        bmi_runs = run_bmi_estimators(data, seeds, [m for m in methods if m.startswith("bmi_")]) \
            if any(m.startswith("bmi_") for m in methods) else {}
        for m in methods:
            if m == "latentmi":
                mis, sts, dt = run_latentmi(data, seeds, epochs, patience, hidden, lr)
            elif m in bmi_runs:
                mis, sts, dt = bmi_runs[m]
            else:
                mis, sts, dt, by_k = run_ours(data, seeds, settings[m.removesuffix("_avg2")],
                                              repeats=2 if m.endswith("_avg2") else 1, ks=ks, cca=cca)
                for kk, vals in by_k.items():
                    krows = [{"seed": s, "estimate": v, "status": st if np.isfinite(v) else "ties"}
                             for s, v, st in zip(seeds, vals, sts)]
                    kname = f"{m}{a.label}_{kk}" if isinstance(kk, str) else f"{m}{a.label}_ksgk{kk}"
                    entry["methods"][kname] = {"rows": krows, "seconds": dt,
                                                                   **summarise(krows, truth)}
                    print(f"{name:<36} {kname:<20} est {' '.join(f'{v:6.3f}' for v in vals)}  "
                          f"median|err| {entry['methods'][kname]['median_abs_error']:.3f}", flush=True)
            rows = [{"seed": s, "estimate": v, "status": st} for s, v, st in zip(seeds, mis, sts)]
            key = m + a.label
            entry["methods"][key] = {"rows": rows, "seconds": dt, **summarise(rows, truth)}
            print(f"{name:<36} {m:<12} truth {truth:6.3f}  est {' '.join(f'{v:6.3f}' for v in mis)}  "
                  f"median|err| {entry['methods'][key]['median_abs_error']:.3f}  [{dt:.0f} s]", flush=True)
        results.append(entry)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({"meta": meta, "cases": results}, indent=1))   # after every case
    print_table(results, meta["method_keys"])
    print(f"wrote {out_path}")


def normal_scores(a: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, d) float64: every column's normal scores by its own ECDF over all N rows (average
    ranks; unit scale: ``gaussianize`` keeps the robust scale, divided out here). The
    ``--input-scores`` / ``--input-both`` ablations."""
    from lmi_distributed.estimators.gaussianize import gaussianize, robust_scale
    return gaussianize(a) / robust_scale(a)


def merge(runs: list[dict]) -> dict:
    """One result dict from several runs of the same cases (methods side by side; a method that
    appears in two runs keeps the later run's numbers)."""
    cases: dict[str, dict] = {}
    methods: list[str] = []
    for r in runs:
        keys = r["meta"].get("method_keys") or [m + r["meta"].get("label", "") for m in r["meta"]["methods"]]
        keys = list(keys) + [m for c in r["cases"] for m in c["methods"] if m not in keys]   # older merged files
        for m in keys:
            if m not in methods:
                methods.append(m)
        for c in r["cases"]:
            cases.setdefault(c["case"], {**c, "methods": {}})["methods"].update(c["methods"])
    meta = {**runs[0]["meta"], "methods": methods, "method_keys": methods,   # a merged file merges again
            "merged_from": [r["meta"] for r in runs]}
    return {"meta": meta, "cases": list(cases.values())}


def print_versus(results: list[dict], methods: list[str], ref: str = "latentmi") -> None:
    """Compact markdown table: per case the median |error| (median estimate) of each method and
    ``ref``, then per method the largest excess of its median |error| over ``ref``'s (the
    issue's "no case worse than latentmi by more than 0.02 bits") and the summed seconds."""
    cols = methods + [ref]
    print("\n| case | truth (bits) | " + " | ".join(cols) + " |")
    print("|" + "---|" * (2 + len(cols)))
    worst = {m: (-np.inf, "") for m in methods}
    secs = {m: 0.0 for m in cols}
    for c in results:
        r = c["methods"]
        cells = []
        for m in cols:
            if m not in r:
                cells.append("-")
                continue
            secs[m] += r[m]["seconds"]
            cells.append(f"{r[m]['median_abs_error']:.3f} ({r[m]['median_estimate']:.2f})")
            if m != ref and ref in r:
                gap = r[m]["median_abs_error"] - r[ref]["median_abs_error"]
                if gap > worst[m][0]:
                    worst[m] = (gap, c["case"])
        print(f"| {c['case']} | {c['truth_bits']:.3f} | " + " | ".join(cells) + " |")
    print("\nlargest (median |err| - latentmi's): " + "; ".join(
        f"{m} {worst[m][0]:+.3f} ({worst[m][1]})" for m in methods if worst[m][1]))
    print("total seconds: " + ", ".join(f"{m} {secs[m]:.0f}" for m in cols))


def print_best_other(results: list[dict], ours: str, others: list[str], margin: float = 0.02) -> None:
    """Markdown table: per case ``ours``'s median |error| (median estimate) against the best of
    ``others`` (the smallest median |error| among those run on that case, named), then how many
    cases ``ours`` is best on, within ``margin`` bits (the issue's 0.02), and behind by more."""
    print(f"\n| case | truth (bits) | {ours} | best other | by |")
    print("|---|---|---|---|---|")
    best = within = behind = 0
    losses = []
    for c in results:
        r = c["methods"]
        ran = [m for m in others if m in r and np.isfinite(r[m]["median_abs_error"])]
        if ours not in r or not ran:
            continue
        o = min(ran, key=lambda m: r[m]["median_abs_error"])
        gap = r[ours]["median_abs_error"] - r[o]["median_abs_error"]
        best += gap <= 0
        within += 0 < gap <= margin
        if gap > margin:
            behind += 1
            losses.append(f"{c['case']} {gap:+.3f} ({o})")
        print(f"| {c['case']} | {c['truth_bits']:.3f} | {r[ours]['median_abs_error']:.3f} "
              f"({r[ours]['median_estimate']:.2f}) | {r[o]['median_abs_error']:.3f} ({r[o]['median_estimate']:.2f}) "
              f"{o} | {gap:+.3f} |")
    print(f"\n{ours}: best on {best}, within {margin} on {within}, behind by more on {behind} of "
          f"{best + within + behind} cases" + (": " + "; ".join(losses) if losses else ""))


def print_table(results: list[dict], methods: list[str]) -> None:
    """Markdown table: per case the truth and, per method, the median |error| (bits) and seconds."""
    head = "| case | truth (bits) | " + " | ".join(f"{m} median \\|err\\| | {m} s" for m in methods) + " |"
    print("\n" + head)
    print("|" + "---|" * (2 + 2 * len(methods)))
    tot = {m: 0.0 for m in methods}
    for c in results:
        cells = []
        for m in methods:
            r = c["methods"].get(m)
            if r is None:
                cells += ["-", "-"]
                continue
            tot[m] += r["seconds"]
            cells += [f"{r['median_abs_error']:.3f} ({r['median_estimate']:.2f})", f"{r['seconds']:.0f}"]
        print(f"| {c['case']} | {c['truth_bits']:.3f} | " + " | ".join(cells) + " |")
    print("\ntotal seconds: " + ", ".join(f"{m} {tot[m]:.0f}" for m in methods))
    if "paper" in tot and tot["paper"] > 0:
        print("cost vs paper: " + ", ".join(f"{m} {tot[m] / tot['paper']:.2f}x" for m in methods))


if __name__ == "__main__":
    sys.exit(main())
