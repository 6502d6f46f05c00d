"""Public estimator API: ``estimate`` (one pair) and ``estimate_many`` (many pairs, batched).

The single-pair estimate is the batched code with a batch of one. ``estimate_many`` groups
pairs by shape (N, d_x, d_y) and trains each group as one stacked model through
:func:`train_and_encode`, the function the engine calls with already-stacked arrays.

Per pair: z-score + clip each variable (:func:`.preprocess.zscore_clip`), split rows
(:func:`.preprocess.split_indices`, seeded), train the cross-predictive autoencoders on the
training half with early stopping on the held-out half (:func:`.training.train_pairs`),
encode all rows, run KSG on the held-out latents (:func:`.ksg.ksg_pmi`). MI in bits.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from lmi_distributed.errors import ConfigError, InputError

from .preprocess import split_indices, zscore_clip
from .seeding import derive_seed
from .settings import SETTING_NAMES, LMISettings, resolve_settings

__all__ = ["estimate", "estimate_many", "train_and_encode", "LMISettings", "LMIResult",
           "SETTING_NAMES", "resolve_settings", "STATUSES"]

#: ``LMIResult.status`` values: "ok" (a number to trust); "degenerate" (the data or the latents
#: cannot carry an estimate: constant, too few distinct rows, ties, collapsed latents);
#: "diverged" (training produced non-finite losses or never improved on the initial weights);
#: "failed" (an error stopped this pair; the engine's records only). Anything but "ok" has NaN MI.
STATUSES = ("ok", "degenerate", "diverged", "failed")

if TYPE_CHECKING:
    import torch

log = logging.getLogger("lmi_distributed")

ProgressFn = Callable[[int, int, np.ndarray], None]


@dataclass
class LMIResult:
    """One pair's LMI estimate. MI / pMI in bits."""

    mi: float                    # mean pMI over the held-out rows, bits
    pmi: np.ndarray              # (N,) bits; NaN for training rows
    zx: np.ndarray               # (N, latent_dim) float32 latents of all rows
    zy: np.ndarray               # (N, latent_dim) float32
    train_idx: np.ndarray        # (n_train,) int64
    test_idx: np.ndarray         # (n_test,) int64, where KSG ran
    epochs: int                  # epochs run
    best_epoch: int              # 0-based epoch whose weights were restored (epochs-1 if restore_best=False)
    train_loss: np.ndarray       # (epochs,) mean training minibatch loss per epoch
    val_loss: np.ndarray         # (epochs,) held-out loss per epoch (eval mode)
    seed: int
    settings: LMISettings = field(repr=False)
    status: str = "ok"           # one of STATUSES; anything but "ok" comes with mi = NaN
    detail: str = ""             # why the status is not "ok" (empty when ok)


def _check_variable(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        hint = f"; for a single feature use {name.split()[-1]}.reshape(-1, 1)" if arr.ndim == 1 else ""
        raise InputError(f"{name} must be a 2-D array (N samples, d features), got shape {arr.shape}{hint}")
    if arr.shape[1] < 1:
        raise InputError(f"{name} has no features (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise InputError(f"{name} must be real numeric, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        first = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise InputError(f"{name} has NaN or inf in {len(rows)} of {arr.shape[0]} rows (rows {first})")
    return arr


def _check_pair(X: Any, Y: Any, s: LMISettings, label: str) -> tuple[np.ndarray, np.ndarray]:
    X = _check_variable(X, f"{label}X")
    Y = _check_variable(Y, f"{label}Y")
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"{label}X and Y must have the same number of rows (joint samples): "
                         f"X has {X.shape[0]}, Y has {Y.shape[0]}")
    need = s.min_samples()
    if X.shape[0] < need:
        raise InputError(
            f"{label}too few samples: N={X.shape[0]}, LMI needs N >= {need} (k={s.k} KSG neighbours "
            f"among the held-out {1 - s.train_fraction:g} of the rows and > k training rows)")
    return X, Y


def _check_seeds(seeds: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        out = [int(seeds) + i for i in range(n)]
    else:
        out = [int(s) for s in seeds]
        if len(out) != n:
            raise InputError(f"got {len(out)} seeds for {n} pairs")
    if any(s < 0 for s in out):
        raise InputError(f"seeds must be non-negative integers, got {[s for s in out if s < 0][:5]}")
    return out


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def _resolve_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but torch sees no CUDA GPU (use device='cpu')")
    return torch.device(device)


def _ksg_on_device(zx_te: torch.Tensor, zy_te: torch.Tensor, s: LMISettings) -> np.ndarray | None:
    """KSG pMI (bits) of all P pairs' held-out latents in one CuPy launch, or None.

    Used when training ran on a CUDA device, CuPy sees it, the backend is ``auto``/``cupy`` and
    no tie-breaking noise is asked for. The latents (P, n_test, latent) are handed from torch to
    CuPy by DLPack (no copy) and the kernel runs in float64, the precision of the CPU backends,
    so the neighbour counts equal theirs. Returns (P, n_test) float64 on the host.
    """
    if zx_te.device.type != "cuda" or s.ksg_noise > 0 or s.ksg_backend not in ("auto", "cupy"):
        return None
    from .neighbors import cupy_available

    if not cupy_available():
        if s.ksg_backend == "cupy":
            raise ConfigError("ksg_backend='cupy' needs cupy and a visible CUDA device")
        return None
    import cupy

    from .neighbors import cupy_kernels

    zx = cupy.from_dlpack(zx_te.float().contiguous())
    zy = cupy.from_dlpack(zy_te.float().contiguous())
    return cupy.asnumpy(cupy_kernels.ksg_pmi_batched(zx, zy, k=s.k, dtype="float64"))


def train_and_encode(
    X: np.ndarray | Sequence[np.ndarray],
    Y: np.ndarray | Sequence[np.ndarray],
    seeds: Sequence[int],
    settings: LMISettings | None = None,
    *,
    progress: ProgressFn | None = None,
    validate: bool = True,
) -> list[LMIResult]:
    """Estimate MI for P pairs of equal shape as ONE batch (the engine's entry point).

    ``X``: (P, N, d_x) array or P arrays (N, d_x); ``Y``: (P, N, d_y) likewise, raw values
    (this function z-scores and clips). ``seeds``: P non-negative pair seeds. Returns P
    :class:`LMIResult` in order; MI and pMI in bits.
    """
    import torch

    from . import ksg
    from .networks import NetSpec
    from .training import encode_all, torch_threads, train_pairs

    s = settings if settings is not None else LMISettings()
    P = len(seeds)
    if len(X) != P or len(Y) != P:
        raise InputError(f"got {len(X)} X and {len(Y)} Y variables for {P} seeds")
    seeds = [int(v) for v in seeds]
    if P == 0:
        return []
    xs, ys = [], []
    for i in range(P):
        label = f"pair {i}: " if P > 1 else ""
        if validate:
            x, y = _check_pair(X[i], Y[i], s, label)
        else:
            x, y = np.asarray(X[i]), np.asarray(Y[i])
        xs.append(x)
        ys.append(y)
    shapes = {(x.shape[0], x.shape[1], y.shape[1]) for x, y in zip(xs, ys)}
    if len(shapes) != 1:
        raise InputError(f"train_and_encode needs pairs of one shape (N, d_x, d_y), got {sorted(shapes)}")
    (N, dx, dy), = shapes

    device = _resolve_device(s.device)
    dtype = _torch_dtype(s.dtype)
    splits = [split_indices(N, derive_seed(seed, "split"), s.train_fraction) for seed in seeds]
    xz = np.stack([zscore_clip(x, s.clip) for x in xs])      # (P, N, dx) float32
    yz = np.stack([zscore_clip(y, s.clip) for y in ys])
    tr = np.stack([a for a, _ in splits])
    te = np.stack([b for _, b in splits])
    pidx = np.arange(P)[:, None]

    def dev(a: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    x_tr, y_tr, x_te, y_te = dev(xz[pidx, tr]), dev(yz[pidx, tr]), dev(xz[pidx, te]), dev(yz[pidx, te])
    del xz, yz
    spec = NetSpec.for_dims(dx, dy, s.latent_dim, s.hidden)
    log.info("LMI: training %d pair(s) as one batch (N=%d, d_x=%d, d_y=%d, L=%d/%d) on %s",
             P, N, dx, dy, spec.lx, spec.ly, device)
    with torch_threads(s.num_threads):
        res = train_pairs(x_tr, y_tr, x_te, y_te, spec, seeds, batch_size=s.batch_size, lr=s.lr,
                          betas=(0.9, 0.999), eps=s.adam_eps, max_epochs=s.max_epochs,
                          patience=s.patience, restore_best=s.restore_best, precision=s.precision,
                          progress=progress)
        zx_tr, zy_tr = encode_all(res.model, x_tr, y_tr)
        zx_te, zy_te = encode_all(res.model, x_te, y_te)
    log.info("LMI: %d pair(s) trained in %.1f s, epochs %s", P, res.seconds, res.epochs.tolist())
    pmi_gpu = _ksg_on_device(zx_te, zy_te, s)      # (P, n_test) or None
    zx_tr, zy_tr = zx_tr.float().cpu().numpy(), zy_tr.float().cpu().numpy()
    zx_te, zy_te = zx_te.float().cpu().numpy(), zy_te.float().cpu().numpy()

    out = []
    for p, seed in enumerate(seeds):
        zx = np.empty((N, s.latent_dim), np.float32)
        zy = np.empty((N, s.latent_dim), np.float32)
        zx[tr[p]], zy[tr[p]] = zx_tr[p], zy_tr[p]
        zx[te[p]], zy[te[p]] = zx_te[p], zy_te[p]
        if not (np.isfinite(zx).all() and np.isfinite(zy).all()):
            warnings.warn(f"pair seed {seed}: non-finite latents (training diverged?); set to 0")
            zx, zy = np.nan_to_num(zx, nan=0.0, posinf=0.0, neginf=0.0), np.nan_to_num(zy, nan=0.0, posinf=0.0, neginf=0.0)
        if pmi_gpu is not None:
            pmi_te = pmi_gpu[p]
        else:
            pmi_te = ksg.ksg_pmi(zx[te[p]], zy[te[p]], k=s.k, noise=s.ksg_noise,
                                 seed=derive_seed(seed, "ksg"), backend=s.ksg_backend)
        pmi = np.full(N, np.nan)
        pmi[te[p]] = pmi_te
        out.append(LMIResult(
            mi=float(np.mean(pmi_te)), pmi=pmi, zx=zx, zy=zy,
            train_idx=tr[p].copy(), test_idx=te[p].copy(),
            epochs=int(res.epochs[p]), best_epoch=int(res.best_epoch[p]),
            train_loss=res.train_loss[p], val_loss=res.val_loss[p],
            seed=seed, settings=s,
        ))
    return out


def estimate_many(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seeds: int | Sequence[int] = 0,
    progress: ProgressFn | None = None,
    **settings: Any,
) -> list[LMIResult]:
    """LMI estimates for many (X, Y) pairs; X (N, d_x), Y (N, d_y) per pair (N may differ
    between pairs). Pairs of equal (N, d_x, d_y) are trained together as one batch.

    ``seeds``: one non-negative seed per pair, or an int ``s`` giving pair i the seed
    ``s + i``. A pair's seed alone fixes its split, init, minibatch order, dropout masks and
    KSG noise. ``settings``: :class:`LMISettings` fields (or ``settings=LMISettings(...)``).
    ``progress(epoch, n_active, val_losses)`` is called after every epoch of every batch.
    Returns one :class:`LMIResult` per pair, in input order (MI in bits).
    """
    s = resolve_settings(settings)
    pairs = list(pairs)
    seed_list = _check_seeds(seeds, len(pairs))
    checked = []
    for i, pr in enumerate(pairs):
        try:
            X, Y = pr
        except (TypeError, ValueError):
            raise InputError(f"pair {i}: expected an (X, Y) tuple, got {type(pr).__name__}") from None
        checked.append(_check_pair(X, Y, s, f"pair {i}: " if len(pairs) > 1 else ""))
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, (X, Y) in enumerate(checked):
        groups.setdefault((X.shape[0], X.shape[1], Y.shape[1]), []).append(i)
    results: list[LMIResult | None] = [None] * len(pairs)
    for idx in groups.values():
        got = train_and_encode([checked[i][0] for i in idx], [checked[i][1] for i in idx],
                               [seed_list[i] for i in idx], s, progress=progress, validate=False)
        for i, r in zip(idx, got):
            results[i] = r
    return results  # type: ignore[return-value]


def estimate(X: np.ndarray, Y: np.ndarray, *, seed: int = 0, progress: ProgressFn | None = None,
             **settings: Any) -> LMIResult:
    """LMI estimate of I(X; Y) in bits for X (N, d_x), Y (N, d_y): ``estimate_many([(X, Y)],
    seeds=[seed])[0]``. See :class:`LMISettings` for ``settings``."""
    return estimate_many([(X, Y)], seeds=[seed], progress=progress, **settings)[0]
