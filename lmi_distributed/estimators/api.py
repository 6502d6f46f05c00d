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

from lmi_distributed.errors import ConfigError, InputError, LMIWarning

from .preprocess import split_indices, zscore_clip
from .seeding import derive_seed
from .settings import SETTING_NAMES, LMISettings, resolve_settings

__all__ = ["estimate", "estimate_many", "train_and_encode", "LMISettings", "LMIResult",
           "SETTING_NAMES", "resolve_settings", "STATUSES", "LMIWarning"]

#: ``LMIResult.status`` values: "ok" (a number to trust); "degenerate" (the data or the latents
#: cannot carry an estimate: constant, too few distinct rows, ties, collapsed latents);
#: "diverged" (training produced non-finite losses or never improved on the initial weights);
#: "failed" (an error stopped this pair: arrays that fail the input checks under
#: ``train_and_encode(validate=False)``, or the engine's records). Anything but "ok" has NaN MI.
#: Triggers and thresholds: :mod:`.diagnostics` and docs/estimator.md.
STATUSES = ("ok", "degenerate", "diverged", "failed")

if TYPE_CHECKING:
    import torch

log = logging.getLogger("lmi_distributed")

ProgressFn = Callable[[int, int, np.ndarray], None]


@dataclass(repr=False)
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
    detail: str = ""             # why the status is not "ok"; for an ok result a caution or empty
    #: the pair's trained encoder weights ({"ex.0.w": (1, in, out) tensor, ...} on the CPU, and the
    #: NetSpec) when asked for (``LMI.fit``); None otherwise and for pairs that never trained
    encoders: Any = field(default=None, repr=False, compare=False)
    #: attribution (``attribution=True``, paper A.2.3): held-out R^2 per dimension of the
    #: cross-decoders, D_YX(E_Y y) vs x -> ``r2_x`` (d_x,), D_XY(E_X x) vs y -> ``r2_y`` (d_y,),
    #: float64, in the z-scored scale the network sees (:mod:`.attribution`). NaN for a dimension
    #: constant on the held-out rows, and all NaN when ``status`` is not "ok" (None for a
    #: "failed" pair and when attribution was not asked for)
    r2_x: np.ndarray | None = field(default=None, repr=False, compare=False)
    r2_y: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: ``view="select"`` (:mod:`.canonical`): which held-out estimate ``mi`` / ``pmi`` are, "latents"
    #: or "canonical" (the larger of the two); ``mi_latents`` / ``mi_canonical`` both estimates in
    #: bits (``mi_canonical`` NaN when no canonical view was compared: ``view="latents"``, no view
    #: above the noise gate, or a pair that is not ok);
    #: ``canonical_pcs`` the principal components per side it was fitted in (0: all columns; -1: the
    #: columns that correlate with the other side, :data:`.canonical.SCREENED`; -2: those columns with
    #: their products with the row's squared norm, :data:`.canonical.RADIAL`; -3: all columns with their
    #: products with it and its square, :data:`.canonical.RADIAL_ALL`; -4 / -5: those two Gaussianised
    #: in independent components, :data:`.canonical.RADIAL_ICA`, :data:`.canonical.RADIAL_ALL_ICA`);
    #: ``canonical_bias`` the KSG bias in bits subtracted from its KSG estimate and from each of its pMI
    #: (``settings.view_bias``; 0.0 with "none" or no view): ``mi_canonical`` is the KSG estimate minus it;
    #: ``cx`` / ``cy`` (N, width) float64 its canonical variates of all rows (NaN on rows in neither
    #: half), or None (no view compared; ``canonical_width`` is then 0)
    view: str = "latents"
    mi_latents: float = float("nan")
    mi_canonical: float = float("nan")
    canonical_pcs: int = 0
    canonical_bias: float = 0.0
    cx: np.ndarray | None = field(default=None, repr=False, compare=False)
    cy: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the fitted :class:`.canonical.CanonicalMap` of ``cx`` / ``cy`` (``LMI.score_samples`` maps
    #: new rows with it; kept by ``LMI.fit`` only, as the encoders are), or None
    canonical_map: Any = field(default=None, repr=False, compare=False)

    @property
    def canonical_width(self) -> int:
        """Width of the canonical view compared with the latents (``cx.shape[1]``); 0: none."""
        return 0 if self.cx is None else int(self.cx.shape[1])

    def __repr__(self) -> str:
        """One line, no arrays: ``LMIResult(mi=0.95 bits, status='ok', N=2000, n_test=1000, epochs=87, seed=0)``."""
        return (f"LMIResult(mi={self.mi:.4g} bits, status={self.status!r}, N={len(self.pmi)}, "
                f"n_test={len(self.test_idx)}, epochs={self.epochs}, seed={self.seed})")


def _check_variable(a: Any, name: str) -> np.ndarray:
    """``a`` as a 2-D real (float, int, uint or bool) finite array, else InputError naming ``name``."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:          # ragged nested lists and the like
        raise InputError(f"{name} is not an array of numbers: {exc}") from None
    if arr.ndim != 2:
        hint = f"; for a single feature use {name.split()[-1]}.reshape(-1, 1)" if arr.ndim == 1 else ""
        raise InputError(f"{name} must be a 2-D array (N samples, d features), got shape {arr.shape}{hint}")
    if arr.shape[1] < 1:
        raise InputError(f"{name} has no features (shape {arr.shape})")
    if arr.dtype.kind not in "fiub":     # refuses complex, object, strings, datetime/timedelta
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

    from . import device as gpu

    if device.startswith("cuda") and not gpu.torch_gpu_usable():
        raise ConfigError(f"device {device!r} asked for but torch has no usable CUDA GPU "
                          f"({gpu.why_not('torch') or 'torch GPU not usable'}); use device='cpu'")
    return torch.device(device)


def _ksg_on_device(zx_te: torch.Tensor, zy_te: torch.Tensor, s: LMISettings) -> np.ndarray | None:
    """KSG pMI (bits) of all P pairs' held-out latents in one CuPy launch, or None.

    Used when training ran on a CUDA device, CuPy sees it, the backend is ``auto``/``cupy`` and
    no tie-breaking noise is asked for (``ksg_noise=0``: the jitter needs float64 latents, which
    the CPU path gets). The latents (P, n_test, latent) are handed from torch to CuPy by DLPack
    (no copy) and the kernel runs in float64, the precision of the CPU backends, so the neighbour
    counts equal theirs. Returns (P, n_test) float64 on the host. ``ksg_backend='cupy'`` without a
    usable CuPy raises ``ConfigError`` whatever the noise.
    """
    if zx_te.device.type != "cuda" or s.ksg_backend not in ("auto", "cupy"):
        return None
    from . import device as gpu

    if not gpu.cupy_usable():
        if s.ksg_backend == "cupy":
            raise ConfigError("ksg_backend='cupy' needs cupy and a usable CUDA device "
                              f"({gpu.why_not('cupy') or 'cupy not usable'})")
        return None
    if s.ksg_noise > 0:
        return None
    import cupy

    from .neighbors import cupy_kernels

    zx = cupy.from_dlpack(zx_te.float().contiguous())
    zy = cupy.from_dlpack(zy_te.float().contiguous())
    return cupy.asnumpy(cupy_kernels.ksg_pmi_batched(zx, zy, k=s.k, dtype="float64"))


@dataclass
class _Prepared:
    """One pair, standardised and split, before training (see :func:`_prepare`)."""

    xz: np.ndarray               # (N, dx) float32 z-scored, clipped
    yz: np.ndarray               # (N, dy) float32
    train_idx: np.ndarray        # (n_train,) int64
    test_idx: np.ndarray         # (n_test,) int64
    seed: int
    status: str = "ok"           # "degenerate"/"failed" when the pair cannot be trained on
    detail: str = ""
    # the raw rows' squared norms (N,) float64 and their exponents (canonical.square_norms), for the
    # radial views (view="select" only); None: no radial candidate
    x_sq: np.ndarray | None = None
    y_sq: np.ndarray | None = None
    sq_exponents: tuple[int, int] = (0, 0)


def _split(n: int, seed: int, s: LMISettings, ids: tuple[Any, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): random rows (``split="rows"``), or held-out ids (``split="ids"``,
    :func:`.id_split.id_split_indices`; rows mixing held-out and training ids are in neither)."""
    if s.split == "rows":
        return split_indices(n, derive_seed(seed, "split"), s.train_fraction)
    from .id_split import id_split_indices

    if ids is None:
        raise InputError("split='ids' needs the row ids of both sides: ids=(x_ids, y_ids), each (N,)")
    xi, yi = (np.asarray(a) for a in ids)
    if xi.shape != (n,) or yi.shape != (n,):
        raise InputError(f"ids=(x_ids, y_ids) must be two (N,) arrays with N={n}, got shapes "
                         f"{xi.shape} and {yi.shape}")
    tr, te = id_split_indices(xi, yi, derive_seed(seed, "split"), s.train_fraction)
    if min(tr.size, te.size) <= s.k:
        raise InputError(f"split='ids' left {tr.size} training and {te.size} held-out rows of {n} "
                         f"(rows mixing held-out and training ids are dropped); both must exceed "
                         f"k={s.k}: use more rows or split='rows'")
    return tr, te


def _prepare(x: np.ndarray, y: np.ndarray, seed: int, s: LMISettings,
             ids: tuple[Any, Any] | None = None) -> _Prepared:
    """Z-score + clip both variables, split the rows (seeded), and check, on the held-out rows
    as the network will see them, that each variable has more than k distinct rows and that no
    joint row has k or more exact duplicates, whatever ``ksg_noise`` (:mod:`.diagnostics`)."""
    from . import canonical, diagnostics

    tr, te = _split(x.shape[0], seed, s, ids)
    xz, yz = zscore_clip(x, s.clip), zscore_clip(y, s.clip)
    problem = (diagnostics.check_variable(xz[te], "X", s.k) or diagnostics.check_variable(yz[te], "Y", s.k)
               or diagnostics.joint_ties(xz[te], yz[te], s.k))
    sq = (canonical.square_norms(x), canonical.square_norms(y)) if s.view == "select" else None
    return _Prepared(xz, yz, tr, te, seed, "degenerate" if problem else "ok", problem,
                     x_sq=sq[0][0] if sq else None, y_sq=sq[1][0] if sq else None,
                     sq_exponents=(sq[0][1], sq[1][1]) if sq else (0, 0))


def _not_ok_result(prep: _Prepared, s: LMISettings, status: str, detail: str, **fields: Any) -> LMIResult:
    """A result with NaN MI / pMI and ``status``; latents NaN unless given in ``fields``."""
    n = prep.xz.shape[0]
    nan_z = np.full((n, s.latent_dim), np.nan, np.float32)
    base = dict(zx=nan_z, zy=nan_z.copy(), epochs=0, best_epoch=-1,
                train_loss=np.zeros(0), val_loss=np.zeros(0))
    base.update(fields)
    if s.attribution and status != "failed":
        # trust: a pair without an estimate has no attribution either (all NaN, same shapes)
        base["r2_x"] = np.full(prep.xz.shape[1], np.nan)
        base["r2_y"] = np.full(prep.yz.shape[1], np.nan)
    return LMIResult(mi=float("nan"), pmi=np.full(n, np.nan), train_idx=prep.train_idx.copy(),
                     test_idx=prep.test_idx.copy(), seed=prep.seed, settings=s, status=status,
                     detail=detail, **base)


def _canonical_view(prep: _Prepared, s: LMISettings, keep_map: bool = False, screen: bool = True,
                    radial: bool = True) -> dict[str, Any]:
    """The canonical view of one ok pair (:mod:`.canonical`): its (pcs, width) chosen on the training rows,
    its map refitted on them, KSG (k, the pair's seeded jitter) on its held-out variates, minus KSG's
    Gaussian-reference bias (``s.view_bias``, a Gaussian-looking view only). Returns ``mi_canonical``,
    ``pmi_canonical`` (n_test,), ``canonical_pcs``, ``canonical_bias``, ``cx``, ``cy`` (N, width), and
    with ``keep_map`` ``canonical_map`` (it holds the training rows' inputs
    in float64: kept for ``LMI.fit`` only, like the encoders, not for the many results of a screen);
    no canonical fields (``mi_canonical`` NaN) when :func:`.canonical.view_candidates` offers none or
    none clears the noise gate. ``screen=False``: without the screened candidate
    (:data:`.canonical.SCREENED`; the view before session 11, for the benchmarks' ablations; it also
    leaves out the radial candidates); ``radial=False``: without the radial candidates
    (:data:`.canonical.RADIAL_SPECS`; the view before session 13)."""
    from . import canonical, ksg

    tr, te = prep.train_idx, prep.test_idx
    has_sq = prep.x_sq is not None and prep.y_sq is not None
    candidates = canonical.view_candidates(prep.xz.shape[1], prep.yz.shape[1], len(tr), s.latent_dim, screen=screen,
                                           radial=radial and has_sq)
    sq_tr = (prep.x_sq[tr], prep.y_sq[tr]) if has_sq else (None, None)
    if not candidates:
        return {}
    x_tr, y_tr = prep.xz[tr].astype(np.float64), prep.yz[tr].astype(np.float64)
    backend = s.ksg_backend if s.ksg_backend != "cupy" else "auto"

    def mi(u: np.ndarray, v: np.ndarray) -> float:
        try:
            return ksg.ksg_mi(u, v, k=s.k, noise=s.ksg_noise, seed=derive_seed(prep.seed, "view-select"),
                              backend=backend)
        except InputError:          # tied variates (tied inputs, no jitter): this view cannot compete
            return float("-inf")
    choice, scores, corr, normality_z = canonical.select_view(x_tr, y_tr, candidates=candidates, k=s.k,
                                                              seed=derive_seed(prep.seed, "view-halves"), ksg_mi=mi,
                                                              x_sq=sq_tr[0], y_sq=sq_tr[1])
    if choice is None or not np.isfinite(scores[choice]):
        return {}
    pcs, width = choice
    # the ICA stage of a radial view takes the halves' seed, as it did when the view was chosen
    fit, u_tr, v_tr = canonical.fit_canonical(x_tr, y_tr, pcs=pcs, variates=True, width=width, x_sq=sq_tr[0],
                                              y_sq=sq_tr[1], exponents=prep.sq_exponents,
                                              seed=derive_seed(prep.seed, "view-halves"))
    n = prep.xz.shape[0]
    cx, cy = np.full((n, width), np.nan), np.full((n, width), np.nan)
    cx[tr], cy[tr] = u_tr[:, :width], v_tr[:, :width]
    cx[te], cy[te] = fit.transform(prep.xz[te], prep.yz[te], width, *((prep.x_sq[te], prep.y_sq[te]) if has_sq
                                                                      else (None, None)))
    u, v = canonical.ksg_input(cx[te], cy[te], s.ksg_noise, prep.seed)
    try:
        pmi = ksg.ksg_pmi(u, v, k=s.k, backend=backend)
    except InputError:              # tied held-out variates: the latents' estimate stands alone
        return {}
    # KSG's bias at a Gaussian with the view's cross-fitted correlations (training rows) at its held-out
    # variates' scales, when its variates look Gaussian: the same number under every permutation of
    # the held-out rows (a column's sd does not change), so .permutation subtracts it unchanged
    bias = 0.0
    if s.view_bias == "gaussian" and normality_z <= canonical.NORMALITY_Z:
        bias = canonical.ksg_gaussian_bias(canonical.reference_cov(corr, cx[te], cy[te]), len(te),
                                           seed=derive_seed(prep.seed, "view-bias"), ksg_mi=mi)
    # the estimate as the permutation null computes it (KSG's mean, then the bias): bit for bit
    return dict(mi_canonical=float(np.mean(pmi)) - bias, pmi_canonical=pmi - bias, canonical_pcs=pcs or 0, cx=cx, cy=cy,
                canonical_bias=bias, canonical_map=fit if keep_map else None)


def _train_prepared(preps: list[_Prepared], s: LMISettings, progress: ProgressFn | None,
                    keep_encoders: bool = False) -> list[LMIResult]:
    """Train the ok pairs of ``preps`` (one shape) as ONE batch, encode, check, run KSG.

    Pairs whose preparation found a problem get their not-ok result without training; the
    others train together. A trained pair whose losses or latents are not trustworthy gets
    status "diverged" / "degenerate" and NaN MI (:mod:`.diagnostics`). Returns results in order.
    ``keep_encoders``: every trained result carries its encoder weights (``LMIResult.encoders``).
    """
    import torch

    from . import diagnostics, ksg
    from .gaussianize import gaussianize
    from .networks import NetSpec
    from .training import encode_all, torch_threads, train_pairs

    out: list[LMIResult | None] = [None if p.status == "ok" else _not_ok_result(p, s, p.status, p.detail)
                                   for p in preps]
    live = [i for i, p in enumerate(preps) if p.status == "ok"]
    if not live:
        return out  # type: ignore[return-value]
    batch = [preps[i] for i in live]
    P = len(batch)
    N, dx = batch[0].xz.shape
    dy = batch[0].yz.shape[1]
    seeds = [p.seed for p in batch]
    device = _resolve_device(s.device)
    dtype = _torch_dtype(s.dtype)
    xz = np.stack([p.xz for p in batch])      # (P, N, dx) float32
    yz = np.stack([p.yz for p in batch])
    tr = np.stack([p.train_idx for p in batch])
    te = np.stack([p.test_idx for p in batch])
    pidx = np.arange(P)[:, None]

    def dev(a: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    x_tr, y_tr, x_te, y_te = dev(xz[pidx, tr]), dev(yz[pidx, tr]), dev(xz[pidx, te]), dev(yz[pidx, te])
    del xz, yz
    spec = NetSpec.for_dims(dx, dy, s.latent_dim, s.hidden)
    log.info("LMI: training %d pair(s) as one batch (N=%d, d_x=%d, d_y=%d, L=%d/%d) on %s",
             P, N, dx, dy, spec.lx, spec.ly, device)
    aux = None
    if s.contrastive_weight > 0:
        from .contrastive import ContrastiveTerm

        aux = ContrastiveTerm(s.contrastive_weight, s.contrastive_temperature, chunk=max(2, s.batch_size))
    with torch_threads(s.num_threads):
        res = train_pairs(x_tr, y_tr, x_te, y_te, spec, seeds, batch_size=s.batch_size, lr=s.lr,
                          betas=(0.9, 0.999), eps=s.adam_eps, max_epochs=s.max_epochs,
                          patience=s.patience, restore_best=s.restore_best, precision=s.precision,
                          progress=progress, attribution=s.attribution, aux_loss=aux,
                          self_weight=float(s.self_weight))
        zx_tr_d, zy_tr_d = encode_all(res.model, x_tr, y_tr)
        zx_te_d, zy_te_d = encode_all(res.model, x_te, y_te)
    log.info("LMI: %d pair(s) trained in %.1f s, epochs %s", P, res.seconds, res.epochs.tolist())
    zx_tr, zy_tr = zx_tr_d.float().cpu().numpy(), zy_tr_d.float().cpu().numpy()
    zx_te, zy_te = zx_te_d.float().cpu().numpy(), zy_te_d.float().cpu().numpy()

    fitted = []            # per batch slot: (zx, zy, status, detail, jittered held-out latents, gaussianize refs)
    for p, seed in enumerate(seeds):
        status, detail = diagnostics.training_status(res.train_loss[p], res.val_loss[p],
                                                     int(res.best_epoch[p]), float(res.init_val_loss[p]))
        jittered = refs = None
        if status == "ok":
            status, detail = diagnostics.latent_status(zx_te[p], zy_te[p], s.k)
        if status == "ok":
            if s.ksg_gaussianize:      # every latent dim to normal scores (its held-out ECDF), robust scale kept
                refs = (zx_te[p].copy(), zy_te[p].copy())
                zx_tr[p] = gaussianize(refs[0], zx_tr[p]).astype(np.float32)
                zy_tr[p] = gaussianize(refs[1], zy_tr[p]).astype(np.float32)
                zx_te[p] = gaussianize(refs[0]).astype(np.float32)
                zy_te[p] = gaussianize(refs[1]).astype(np.float32)
            # the KSG input: float64 held-out latents plus the pair's seeded jitter (ksg_noise)
            jittered = ksg.add_noise([zx_te[p].astype(np.float64), zy_te[p].astype(np.float64)],
                                     s.ksg_noise, derive_seed(seed, "ksg"))
            detail = diagnostics.marginal_ties(*jittered)
        zx = np.full((N, s.latent_dim), np.nan, np.float32)   # NaN on rows in neither half (split="ids")
        zy = np.full((N, s.latent_dim), np.nan, np.float32)
        zx[tr[p]], zy[tr[p]] = zx_tr[p], zy_tr[p]
        zx[te[p]], zy[te[p]] = zx_te[p], zy_te[p]
        fitted.append((zx, zy, status, detail, jittered, refs))
    # the device KSG (ksg_noise=0 only, see _ksg_on_device) must see the mapped latents
    if s.ksg_gaussianize and s.ksg_noise == 0 and zx_te_d.device.type != "cpu":
        zx_te_d = torch.from_numpy(zx_te).to(zx_te_d.device)
        zy_te_d = torch.from_numpy(zy_te).to(zy_te_d.device)

    ok_slots = [p for p in range(P) if fitted[p][2] == "ok"]
    sel = torch.as_tensor(ok_slots, dtype=torch.long, device=zx_te_d.device)
    pmi_gpu = _ksg_on_device(zx_te_d.index_select(0, sel), zy_te_d.index_select(0, sel), s) if ok_slots else None
    for p, seed in enumerate(seeds):
        zx, zy, status, detail, jittered, refs = fitted[p]
        common = dict(zx=zx, zy=zy, epochs=int(res.epochs[p]), best_epoch=int(res.best_epoch[p]),
                      train_loss=res.train_loss[p], val_loss=res.val_loss[p])
        if res.r2_x is not None:
            common.update(r2_x=res.r2_x[p].copy(), r2_y=res.r2_y[p].copy())
        if keep_encoders:
            common["encoders"] = (spec, {k: v[p:p + 1].detach().cpu().clone()
                                         for k, v in res.model.params.items() if k.startswith(("ex.", "ey."))})
            if refs is not None:       # the Gaussianisation's reference: raw held-out latents
                common["encoders"][1].update({"cx.ref": torch.from_numpy(refs[0])[None],
                                              "cy.ref": torch.from_numpy(refs[1])[None]})
        if status != "ok":
            out[live[p]] = _not_ok_result(batch[p], s, status, detail, **common)
            continue
        if pmi_gpu is not None:
            pmi_te = pmi_gpu[ok_slots.index(p)]
        else:           # noise already added: ksg_pmi(noise=0) on the jittered latents
            pmi_te = ksg.ksg_pmi(jittered[0], jittered[1], k=s.k, backend=s.ksg_backend)
        mi_lat = float(np.mean(pmi_te))
        can = _canonical_view(batch[p], s, keep_map=keep_encoders) if s.view == "select" else {}
        pmi_can = can.pop("pmi_canonical", None)
        reported = "canonical" if can.get("mi_canonical", -np.inf) > mi_lat else "latents"   # the larger (.canonical)
        if reported == "canonical":
            pmi_te = pmi_can
        pmi = np.full(N, np.nan)
        pmi[te[p]] = pmi_te
        mi = can["mi_canonical"] if reported == "canonical" else float(np.mean(pmi_te))
        out[live[p]] = LMIResult(mi=mi, pmi=pmi, train_idx=tr[p].copy(),
                                 test_idx=te[p].copy(), seed=seed, settings=s, detail=detail, **common,
                                 view=reported, mi_latents=mi_lat, **can)
    return out  # type: ignore[return-value]


def train_and_encode(
    X: np.ndarray | Sequence[np.ndarray],
    Y: np.ndarray | Sequence[np.ndarray],
    seeds: Sequence[int],
    settings: LMISettings | None = None,
    *,
    progress: ProgressFn | None = None,
    validate: bool = True,
    ids: Sequence[tuple[Any, Any] | None] | None = None,
) -> list[LMIResult]:
    """Estimate MI for P pairs of equal shape as ONE batch (the engine's entry point).

    ``X``: (P, N, d_x) array or P arrays (N, d_x); ``Y``: (P, N, d_y) likewise, raw values
    (this function z-scores and clips). ``seeds``: P non-negative pair seeds. Returns P
    :class:`LMIResult` in order; MI and pMI in bits.

    ``validate=True``: a bad pair (shape, NaN/inf, too few rows, a degenerate variable, tied
    joint rows) raises :class:`InputError` before any training. ``validate=False`` (the
    engine's path: one bad pair must not fail its batch): such a pair gets a result with NaN
    MI and ``status`` "failed" (arrays that fail the input checks) or "degenerate", with the
    reason in ``detail``, and the other pairs train normally. Either way a pair whose training
    diverges or whose latents collapse or tie gets status "diverged" / "degenerate" and NaN MI.
    """
    s = settings if settings is not None else LMISettings()
    P = len(seeds)
    if len(X) != P or len(Y) != P:
        raise InputError(f"got {len(X)} X and {len(Y)} Y variables for {P} seeds")
    seeds = [int(v) for v in seeds]
    if P == 0:
        return []
    xs, ys, failed = [], [], {}
    for i in range(P):
        label = f"pair {i}: " if P > 1 else ""
        try:
            x, y = _check_pair(X[i], Y[i], s, label)
        except InputError as exc:
            if validate:
                raise
            x, y = np.asarray(X[i]), np.asarray(Y[i])
            failed[i] = str(exc)
        xs.append(x)
        ys.append(y)
    shapes = {(x.shape[0], x.shape[1], y.shape[1]) for i, (x, y) in enumerate(zip(xs, ys)) if i not in failed}
    if len(shapes) > 1:
        raise InputError(f"train_and_encode needs pairs of one shape (N, d_x, d_y), got {sorted(shapes)}")
    preps = []
    for i in range(P):
        if i in failed:
            n = next(iter(shapes))[0] if shapes else (xs[i].shape[0] if xs[i].ndim else 0)
            tr, te = split_indices(n, derive_seed(seeds[i], "split"), s.train_fraction)
            nan = np.full((n, 1), np.nan, np.float32)
            preps.append(_Prepared(nan, nan, tr, te, seeds[i], "failed", failed[i]))
            continue
        try:
            prep = _prepare(xs[i], ys[i], seeds[i], s, ids[i] if ids is not None else None)
        except InputError as exc:       # split="ids" without usable ids
            if validate:
                raise
            nan = np.full((xs[i].shape[0], 1), np.nan, np.float32)
            empty = np.zeros(0, np.int64)
            preps.append(_Prepared(nan, nan, empty, empty, seeds[i], "failed", str(exc)))
            continue
        if validate and prep.status != "ok":
            raise InputError(f"{'pair %d: ' % i if P > 1 else ''}{prep.detail}")
        preps.append(prep)
    return _train_prepared(preps, s, progress)


def estimate_many(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seeds: int | Sequence[int] = 0,
    progress: ProgressFn | None = None,
    validate: bool = True,
    ids: Sequence[tuple[Any, Any] | None] | None = None,
    **settings: Any,
) -> list[LMIResult]:
    """LMI estimates for many (X, Y) pairs; X (N, d_x), Y (N, d_y) per pair (N may differ
    between pairs). Pairs of equal (N, d_x, d_y) are trained together as one batch.

    ``seeds``: one non-negative seed per pair, or an int ``s`` giving pair i the seed
    ``s + i``. A pair's seed alone fixes its split, init, minibatch order, dropout masks and
    KSG noise. ``settings``: :class:`LMISettings` fields (or ``settings=LMISettings(...)``).
    ``progress(epoch, n_active, val_losses)`` is called after every epoch of every batch.
    Returns one :class:`LMIResult` per pair, in input order (MI in bits).

    ``validate=True``: bad or degenerate input raises :class:`InputError` naming the pair, for
    every pair before any training. ``validate=False`` (the engine's batches): such a pair gets
    status "failed" (bad arrays) or "degenerate" with NaN MI, and the others train as usual.
    Every result that is not "ok" also emits an :class:`~lmi_distributed.errors.LMIWarning`, and so
    does an ok result with a caution in its ``detail`` (tied latents, :func:`.diagnostics.marginal_ties`).
    ``ids``: per pair ``(x_ids, y_ids)`` (two (N,) arrays) or None; needed by ``split="ids"``
    (held-out ids, :mod:`.id_split`), whose pairs batch by equal half sizes.
    """
    s = resolve_settings(settings)
    pairs = list(pairs)
    seed_list = _check_seeds(seeds, len(pairs))
    results = _estimate_many(pairs, seed_list, s, progress=progress, validate=validate, ids=ids)
    for i, r in enumerate(results):
        if r.status != "ok":
            warnings.warn(f"pair {i} (seed {r.seed}): status {r.status!r}, MI is NaN: {r.detail}",
                          LMIWarning, stacklevel=2)
        elif r.detail:
            warnings.warn(f"pair {i} (seed {r.seed}): MI {r.mi:.4g} bits, {r.detail}", LMIWarning, stacklevel=2)
    return results


def _estimate_many(pairs: list, seed_list: list[int], s: LMISettings, *, progress: ProgressFn | None = None,
                   validate: bool = True, ids: Sequence[tuple[Any, Any] | None] | None = None,
                   keep_encoders: bool = False) -> list[LMIResult]:
    """The body of :func:`estimate_many` (checked seeds, resolved settings), without its
    warnings; ``keep_encoders`` as in :func:`_train_prepared` (``LMI.fit``, ``pairwise``)."""
    label = (lambda i: f"pair {i}: ") if len(pairs) > 1 else (lambda i: "")
    if ids is not None and len(ids) != len(pairs):
        raise InputError(f"got {len(ids)} ids entries for {len(pairs)} pairs")
    preps = []
    for i, pr in enumerate(pairs):                # every pair checked before any training
        try:
            try:
                X, Y = pr
            except (TypeError, ValueError):
                raise InputError(f"pair {i}: expected an (X, Y) tuple, got {type(pr).__name__}") from None
            X, Y = _check_pair(X, Y, s, label(i))
        except InputError as exc:
            if validate:
                raise
            n = len(pr[0]) if isinstance(pr, tuple) and len(pr) == 2 and hasattr(pr[0], "__len__") else 0
            tr, te = split_indices(n, derive_seed(seed_list[i], "split"), s.train_fraction)
            nan = np.full((n, 1), np.nan, np.float32)
            preps.append(_Prepared(nan, nan, tr, te, seed_list[i], "failed", str(exc)))
            continue
        try:
            prep = _prepare(X, Y, seed_list[i], s, ids[i] if ids is not None else None)
        except InputError as exc:
            if validate:
                raise InputError(label(i) + str(exc)) from None
            n = X.shape[0]
            nan = np.full((n, 1), np.nan, np.float32)
            preps.append(_Prepared(nan, nan, np.zeros(0, np.int64), np.zeros(0, np.int64), seed_list[i],
                                   "failed", str(exc)))
            continue
        if prep.status != "ok" and validate:
            raise InputError(label(i) + prep.detail)
        preps.append(prep)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prep in enumerate(preps):             # failed pairs form their own (untrained) groups
        # one batch per (N, d_x, d_y, n_train, n_test): split="ids" halves differ in size by seed
        key = ((prep.xz.shape[0], prep.xz.shape[1], prep.yz.shape[1], prep.train_idx.size, prep.test_idx.size)
               if prep.status != "failed" else (-1 - i, 0, 0))
        groups.setdefault(key, []).append(i)
    results: list[LMIResult | None] = [None] * len(pairs)
    for idx in groups.values():
        got = _train_prepared([preps[i] for i in idx], s, progress, keep_encoders)
        for i, r in zip(idx, got):
            results[i] = r
    return results  # type: ignore[return-value]


def estimate(X: np.ndarray, Y: np.ndarray, *, seed: int = 0, progress: ProgressFn | None = None,
             ids: tuple[Any, Any] | None = None, **settings: Any) -> LMIResult:
    """LMI estimate of I(X; Y) in bits for X (N, d_x), Y (N, d_y): ``estimate_many([(X, Y)],
    seeds=[seed])[0]``. See :class:`LMISettings` for ``settings``. ``ids=(x_ids, y_ids)``, two
    (N,) arrays of row ids (e.g. proteins), with ``split="ids"``: no id sits in both halves."""
    return estimate_many([(X, Y)], seeds=[seed], progress=progress,
                         ids=None if ids is None else [ids], **settings)[0]
