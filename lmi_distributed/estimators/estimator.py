"""``LMI``: the latent-MI estimator as a scikit-learn style class.

``LMI(**settings, random_state=s).fit(X, Y)`` trains through exactly the code path of
:func:`~lmi_distributed.estimators.api.estimate` (a batch of one), so
``LMI(random_state=s).fit(X, Y).mi_ == estimate(X, Y, seed=s).mi``; and it keeps what that
function throws away: the trained encoders, the column statistics of the z-scoring and the held-out
(reference) latents. With them it encodes new rows (:meth:`LMI.transform`) and scores new query
pairs against the held-out sample (:meth:`LMI.score_samples`, paper Algorithm 2). MI in bits.

scikit-learn conventions: ``__init__`` only stores its keyword arguments (every
:class:`~lmi_distributed.estimators.settings.LMISettings` field with the same default, plus
``random_state``); they are validated in :meth:`LMI.fit` (``ConfigError``); ``get_params`` /
``set_params`` / ``sklearn.base.clone`` work (``BaseEstimator``); fitted attributes end in ``_``;
using them before ``fit`` raises ``sklearn.exceptions.NotFittedError``.

This module imports torch only inside methods that need it (``import lmi_distributed`` stays light).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from lmi_distributed.errors import ConfigError, InputError, LMIError, LMIWarning

from .api import LMIResult, ProgressFn, _check_variable, _estimate_many
from .canonical import CanonicalMap
from .seeding import derive_seed
from .settings import SETTING_NAMES, LMISettings

if TYPE_CHECKING:
    import torch

__all__ = ["LMI", "Standardizer", "PairEncoders", "FORMAT", "FORMATS"]

#: the ``format`` tag of files written by :meth:`LMI.save`
FORMAT = "lmi_distributed.LMI/1"
#: the tag of a file whose canonical map is radial (session 13): a reader that knows only FORMAT would
#: rebuild the map without its norms and mis-map every query, so such a file refuses it by its tag
FORMAT_RADIAL = "lmi_distributed.LMI/2"
#: the tags :meth:`LMI.load` reads
FORMATS = (FORMAT, FORMAT_RADIAL)

#: the :class:`.canonical.CanonicalMap` arrays :meth:`LMI.save` writes (``cmap.<name>`` tensors)
CANONICAL_FIELDS = ("ref_x", "ref_y", "mean_x", "mean_y", "a", "b", "rho")
#: and those of a radial map (:data:`.canonical.RADIAL_SPECS`) and of its ICA stage, written when it
#: has them
RADIAL_FIELDS = ("cols_x", "cols_y", "norm_x", "norm_y", "ica_x", "ica_y", "ica_mean_x", "ica_mean_y")


@dataclass(frozen=True)
class Standardizer:
    """Column statistics of :func:`.preprocess.zscore_clip` on the fitted rows, to standardise new
    rows exactly as the fitted ones were.

    ``zscore_clip`` first scales each column by ``2**-exponent`` (exact; keeps 1e-200 or 1e200 data
    from under/overflowing), then takes the mean and the population std (``ddof=0``) in float64.
    ``exponent`` (d,) int64, ``mean`` (d,) float64 and ``std`` (d,) float64 are of the scaled
    column; a column with std 0 maps to 0. Applied to the fitted rows, :meth:`transform`
    reproduces ``zscore_clip`` bit for bit (same operations in the same order).
    """

    exponent: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    clip: float

    @classmethod
    def fit(cls, a: np.ndarray, clip: float) -> "Standardizer":
        """Statistics of ``a`` (N, d) real, as ``zscore_clip(a, clip)`` computes them."""
        a64 = np.asarray(a).astype(np.float64, copy=False)
        peak = np.max(np.abs(a64), axis=0) if a64.shape[0] else np.zeros(a64.shape[1])
        _, exponent = np.frexp(peak)
        a64 = np.ldexp(a64, -exponent)
        mean = a64.mean(axis=0)
        centred = a64 - mean
        std = np.sqrt(np.add.reduce(centred * centred, axis=0) / a64.shape[0]) if a64.shape[0] \
            else np.zeros(a64.shape[1])
        return cls(exponent.astype(np.int64), mean, std, float(clip))

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, a: np.ndarray) -> np.ndarray:
        """``a`` (n, d) -> (n, d) float32 z-scores with the fitted statistics, clipped to ±clip."""
        a64 = np.ldexp(np.asarray(a).astype(np.float64, copy=False), -self.exponent)
        centred = a64 - self.mean
        safe = np.where(self.std > 0, self.std, 1.0)
        z = np.where(self.std > 0, centred / safe, 0.0)
        np.clip(z, -self.clip, self.clip, out=z)
        return z.astype(np.float32)


class PairEncoders:
    """The trained encoders E_X, E_Y of one pair (paper A.1.2: d -> L -> L/2 -> L/4 -> latent,
    LeakyReLU(0.2) after every layer), on the CPU.

    ``spec``: the pair's :class:`~.networks.NetSpec`; ``params``: ``{"ex.i.w": (1, in, out),
    "ex.i.b": (1, 1, out), "ey.i.w": ..., ...}`` tensors (the stacked model's slices of this pair),
    and with ``ksg_gaussianize=True`` ``"cx.ref"`` / ``"cy.ref"`` (1, n_test, latent): the raw held-out
    latents by which every latent is Gaussianised (:mod:`.gaussianize`).
    :meth:`encode_x` / :meth:`encode_y` take *standardised* rows (what the network saw; use
    :meth:`LMI.transform` for raw rows) and apply that map; :meth:`as_modules` gives plain
    ``torch.nn`` modules of the networks alone, without the map (for gradients, e.g. attribution).
    """

    def __init__(self, spec: Any, params: dict[str, "torch.Tensor"]):
        self.spec = spec
        self.params = params

    def __repr__(self) -> str:
        s = self.spec
        return (f"PairEncoders(d_x={s.dx}, d_y={s.dy}, hidden=({s.lx}, {s.ly}), latent={s.latent}, "
                f"dtype={next(iter(self.params.values())).dtype})")

    def _encode(self, net: str, a: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        import torch

        from .networks import StackedCrossAE
        from .training import _val_chunk_rows, torch_threads

        model = StackedCrossAE(self.spec, self.params)
        dtype = self.params[f"{net}.0.w"].dtype
        a = np.ascontiguousarray(a, dtype=np.float32)
        out = []
        chunk = _val_chunk_rows(self.spec)
        with torch.no_grad(), torch_threads(num_threads):
            for s in range(0, a.shape[0], chunk):
                h = torch.from_numpy(a[s:s + chunk]).to(dtype)[None]
                out.append(model.mlp(net, h)[0].float().numpy())
        z = np.concatenate(out) if out else np.zeros((0, self.spec.latent), np.float32)
        ref = self.params.get(f"c{net[1]}.ref")
        if ref is not None:      # ksg_gaussianize: by the raw held-out latents
            from .gaussianize import gaussianize

            z = gaussianize(ref[0].numpy(), z).astype(np.float32)
        return z

    def encode_x(self, xz: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Latents (n, latent) float32 of standardised X rows ``xz`` (n, d_x)."""
        return self._encode("ex", xz, num_threads)

    def encode_y(self, yz: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Latents (n, latent) float32 of standardised Y rows ``yz`` (n, d_y)."""
        return self._encode("ey", yz, num_threads)

    def as_modules(self) -> tuple["torch.nn.Sequential", "torch.nn.Sequential"]:
        """(E_X, E_Y) as ``torch.nn.Sequential`` (Linear + LeakyReLU(0.2), four times), eval mode,
        copies of the weights, in the weights' dtype."""
        import torch

        from .networks import NEGATIVE_SLOPE

        mods = []
        for net in ("ex", "ey"):
            layers: list[torch.nn.Module] = []
            for i in range(4):
                w, b = self.params[f"{net}.{i}.w"][0], self.params[f"{net}.{i}.b"][0, 0]
                lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=w.dtype)
                with torch.no_grad():
                    lin.weight.copy_(w.T)
                    lin.bias.copy_(b)
                layers += [lin, torch.nn.LeakyReLU(NEGATIVE_SLOPE)]
            mods.append(torch.nn.Sequential(*layers).eval())
        return mods[0], mods[1]


def _seed_of(random_state: Any) -> int:
    """``random_state`` -> the pair seed: None -> 0 (deterministic: an LMI fit never draws from
    global state), else a non-negative int."""
    if random_state is None:
        return 0
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ConfigError(f"LMI.random_state: expected None or a non-negative integer seed, got "
                          f"{random_state!r} (numpy RandomState/Generator objects are not supported: "
                          f"every draw derives from one integer seed)")
    return int(random_state)


class LMI(BaseEstimator):
    """Latent mutual information estimator (Gowri et al.), scikit-learn style. MI in bits.

    Parameters: every :class:`~lmi_distributed.estimators.settings.LMISettings` field (same names
    and defaults; ``LMI(**lmi.PAPER)`` is the paper's estimator exactly), validated in :meth:`fit`
    (``ConfigError``), and ``random_state``:
    the pair seed (None -> 0; a fit is always deterministic). ``LMI(random_state=s).fit(X, Y).mi_``
    equals ``estimate(X, Y, seed=s).mi`` exactly.

    Fitted attributes (after :meth:`fit`):

    - ``mi_`` (float, bits; NaN unless ``status_ == "ok"``), ``pmi_`` (N,) bits, NaN on training rows;
    - ``status_``, ``detail_`` (see ``api.STATUSES``), ``seed_``, ``n_samples_``;
    - ``train_idx_``, ``test_idx_`` (int64 row indices); ``n_epochs_``, ``best_epoch_`` (0-based),
      ``history_`` = ``{"train_loss": (n_epochs,), "val_loss": (n_epochs,)}``;
    - ``encoders_``: :class:`PairEncoders` (None if the pair never trained);
    - ``x_scaler_``, ``y_scaler_``: :class:`Standardizer` (column stats of the z-scoring);
    - ``n_features_x_``, ``n_features_y_``; ``reference_x_``, ``reference_y_``: (n_test, latent)
      float32 held-out latents, the reference sample of :meth:`score_samples`;
    - ``r2_x_`` (d_x,), ``r2_y_`` (d_y,): with ``attribution=True``, the held-out R^2 per dimension of
      the cross-decoders (latent of Y -> x, latent of X -> y; paper A.2.3; NaN for a dimension
      constant on the held-out rows, all NaN unless ``status_ == "ok"``); None otherwise;
    - ``view_``: "latents" or "canonical", which held-out estimate ``mi_`` is (``view="select"``:
      the larger of the two, :mod:`.canonical`); ``mi_latents_``, ``mi_canonical_`` both (bits;
      the second NaN when no canonical view was compared); ``canonical_bias_``: the KSG bias (bits)
      subtracted from the canonical view's estimate and scores (``view_bias``; 0.0 without);
    - ``result_``: the full :class:`~lmi_distributed.estimators.api.LMIResult` (latents of all rows).
    """

    def __init__(self, latent_dim: int = 8, hidden: Optional[int] = None, batch_size: int = 512,
                 lr: float = 1e-4, adam_eps: float = 1e-7, max_epochs: int = 300, patience: int = 30,
                 train_fraction: float = 0.5, split: str = "rows", clip: float = 10.0, k: int = 3,
                 ksg_noise: float = 1e-10, ksg_gaussianize: bool = True, ksg_backend: str = "auto", device: str = "cpu",
                 dtype: str = "float32", precision: str = "float32", num_threads: Optional[int] = None,
                 restore_best: bool = True, attribution: bool = False, contrastive_weight: float = 1.0,
                 contrastive_temperature: float = 3.0, self_weight: float = 1.0, view: str = "select",
                 view_bias: str = "gaussian", random_state: Optional[int] = None):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.batch_size = batch_size
        self.lr = lr
        self.adam_eps = adam_eps
        self.max_epochs = max_epochs
        self.patience = patience
        self.train_fraction = train_fraction
        self.split = split
        self.clip = clip
        self.k = k
        self.ksg_noise = ksg_noise
        self.ksg_gaussianize = ksg_gaussianize
        self.ksg_backend = ksg_backend
        self.device = device
        self.dtype = dtype
        self.precision = precision
        self.num_threads = num_threads
        self.restore_best = restore_best
        self.attribution = attribution
        self.contrastive_weight = contrastive_weight
        self.contrastive_temperature = contrastive_temperature
        self.self_weight = self_weight
        self.view = view
        self.view_bias = view_bias
        self.random_state = random_state

    # -- settings -------------------------------------------------------------------------
    @property
    def settings(self) -> LMISettings:
        """The current parameters as validated :class:`LMISettings` (``ConfigError`` if bad)."""
        return LMISettings(**{name: getattr(self, name) for name in SETTING_NAMES})

    # -- fit --------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, Y: np.ndarray, ids: tuple[Any, Any] | None = None, *,
            progress: ProgressFn | None = None) -> "LMI":
        """Train on X (N, d_x), Y (N, d_y) (rows are joint samples) and estimate I(X; Y) in bits.

        The code path of :func:`estimate` (``estimate_many`` with a batch of one, seed
        ``random_state``): bad or degenerate input raises ``InputError``, bad settings
        ``ConfigError``; a fit whose training diverged or whose latents collapsed gets
        ``status_ != "ok"``, NaN ``mi_`` and an :class:`LMIWarning`. ``ids=(x_ids, y_ids)`` for
        ``split="ids"``. Returns self.
        """
        s = self.settings
        seed = _seed_of(self.random_state)
        res = _estimate_many([(X, Y)], [seed], s, validate=True, progress=progress,
                             ids=None if ids is None else [ids], keep_encoders=True)[0]
        if res.status != "ok":
            warnings.warn(f"LMI fit (seed {seed}): status {res.status!r}, MI is NaN: {res.detail}",
                          LMIWarning, stacklevel=2)
        elif res.detail:
            warnings.warn(f"LMI fit (seed {seed}): MI {res.mi:.4g} bits, {res.detail}", LMIWarning, stacklevel=2)
        # the same checks fit just passed; z-score statistics of the rows the network saw
        X, Y = _check_variable(X, "X"), _check_variable(Y, "Y")
        self._set_fitted(res, Standardizer.fit(X, s.clip), Standardizer.fit(Y, s.clip))
        return self

    def _set_fitted(self, res: LMIResult, xs: Standardizer, ys: Standardizer) -> None:
        self.result_ = res
        self.mi_ = float(res.mi)
        self.pmi_ = res.pmi
        self.status_ = res.status
        self.detail_ = res.detail
        self.seed_ = int(res.seed)
        self.n_samples_ = int(res.pmi.shape[0])
        self.train_idx_ = res.train_idx
        self.test_idx_ = res.test_idx
        self.n_epochs_ = int(res.epochs)
        self.best_epoch_ = int(res.best_epoch)
        self.history_ = {"train_loss": np.asarray(res.train_loss), "val_loss": np.asarray(res.val_loss)}
        self.encoders_ = None if res.encoders is None else PairEncoders(*res.encoders)
        self.x_scaler_, self.y_scaler_ = xs, ys
        self.r2_x_, self.r2_y_ = res.r2_x, res.r2_y
        self.n_features_x_, self.n_features_y_ = xs.n_features, ys.n_features
        self.reference_x_ = np.ascontiguousarray(res.zx[res.test_idx])
        self.reference_y_ = np.ascontiguousarray(res.zy[res.test_idx])
        self.view_ = res.view
        self.mi_latents_, self.mi_canonical_ = float(res.mi_latents), float(res.mi_canonical)
        self.canonical_bias_ = float(res.canonical_bias)

    # -- use --------------------------------------------------------------------------------
    def _checked(self, a: Any, name: str, n_features: int) -> np.ndarray:
        arr = _check_variable(a, name)
        if arr.shape[1] != n_features:
            raise InputError(f"{name} has {arr.shape[1]} features, but this LMI was fitted on "
                             f"{n_features}")
        return arr

    def transform(self, X: np.ndarray | None = None, Y: np.ndarray | None = None):
        """Latents of new rows: X (n, d_x) and/or Y (m, d_y), raw values (standardised with the
        fitted column statistics, clipped, encoded). Returns ``(zx, zy)`` when both are given,
        else the one asked for; each (n, latent_dim) float32. ``InputError`` for bad arrays or a
        feature count that differs from the fit's; ``NotFittedError`` before :meth:`fit`."""
        check_is_fitted(self, "result_")
        if X is None and Y is None:
            raise InputError("transform needs X, Y or both")
        out = []
        for a, name, scaler, side in ((X, "X", self.x_scaler_, "x"), (Y, "Y", self.y_scaler_, "y")):
            if a is None:
                continue
            arr = self._checked(a, name, scaler.n_features)
            if self.encoders_ is None:
                raise LMIError(f"this LMI fit never trained (status {self.status_!r}: {self.detail_}); "
                               f"it has no encoders")
            z = scaler.transform(arr)
            enc = self.encoders_.encode_x if side == "x" else self.encoders_.encode_y
            out.append(enc(z, self.num_threads))
        return tuple(out) if len(out) == 2 else out[0]

    def score_samples(self, Xq: np.ndarray, Yq: np.ndarray, *, convention: str = "insert",
                      ties: str = "raise") -> np.ndarray:
        """Out-of-sample pointwise MI (bits) of query pairs (Xq[i], Yq[i]) against the fitted
        held-out sample: paper Algorithm 2 on the latents (:func:`.ksg.oos_pmi`; ``convention``
        "insert" (default) or "latentmi"; ``ties`` as there). Xq (M, d_x), Yq (M, d_y) raw rows;
        returns (M,) float64. High scores: the pair is more likely under the joint than under the
        product of marginals. A fit whose ``status_`` is not "ok" gives NaN and an LMIWarning. A fit
        whose MI is its canonical view's (``view_ == "canonical"``) scores on that view: the queries'
        canonical variates against the held-out rows' (:mod:`.canonical`).
        KSG noise (``ksg_noise > 0``) is drawn from the fit's seed, so scores are deterministic.
        """
        from .ksg import OOS_CONVENTIONS, oos_pmi

        check_is_fitted(self, "result_")
        if convention not in OOS_CONVENTIONS:
            raise InputError(f"unknown out-of-sample convention {convention!r}; expected one of "
                             f"{OOS_CONVENTIONS}")
        Xq = self._checked(Xq, "Xq", self.n_features_x_)
        Yq = self._checked(Yq, "Yq", self.n_features_y_)
        if Xq.shape[0] != Yq.shape[0]:
            raise InputError(f"Xq and Yq must have the same number of rows (query pairs): "
                             f"{Xq.shape[0]} and {Yq.shape[0]}")
        if self.status_ != "ok":
            warnings.warn(f"LMI fit has status {self.status_!r} (no trustworthy reference): scores "
                          f"are NaN: {self.detail_}", LMIWarning, stacklevel=2)
            return np.full(Xq.shape[0], np.nan)
        s = self.result_.settings
        backend = s.ksg_backend if s.ksg_backend in ("tree", "tiled") else "auto"
        if self.view_ == "canonical":     # the MI is the canonical view's: score on that view
            res, cmap = self.result_, self.result_.canonical_map
            if cmap is None:
                raise LMIError("this fit's MI is its canonical view's, but the view's map was not kept "
                               "(a file saved without it): refit to score new pairs")
            sq = cmap.square_norms(Xq, Yq) if cmap.radial else (None, None)
            qx, qy = cmap.transform(self.x_scaler_.transform(Xq), self.y_scaler_.transform(Yq),
                                    res.canonical_width, *sq)
            return oos_pmi(res.cx[res.test_idx], res.cy[res.test_idx], qx, qy, k=s.k, noise=s.ksg_noise,
                           seed=derive_seed(self.seed_, "view-ksg"), backend=backend,
                           convention=convention, ties=ties) - res.canonical_bias
        qx, qy = self.transform(Xq, Yq)
        return oos_pmi(self.reference_x_, self.reference_y_, qx, qy, k=s.k, noise=s.ksg_noise,
                       seed=derive_seed(self.seed_, "ksg"), backend=backend, convention=convention,
                       ties=ties)

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted estimator to one file: a ``torch.save`` of ``{"meta": JSON text,
        "tensors": {name: tensor}}`` -- parameters, settings and scalar fitted attributes as
        JSON; encoder weights, z-score statistics, latents, indices, pMI and loss histories as
        tensors. No pickled code: :meth:`load` reads it with ``torch.load(weights_only=True)``."""
        import torch

        check_is_fitted(self, "result_")
        res = self.result_
        params = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in self.get_params().items()}
        meta = {
            "format": FORMAT_RADIAL if getattr(res.canonical_map, "radial", False) else FORMAT,
            "params": params,
            "settings": res.settings.model_dump(),
            "fitted": {"mi": None if math.isnan(res.mi) else res.mi, "status": res.status,
                       "detail": res.detail, "seed": int(res.seed), "epochs": int(res.epochs),
                       "best_epoch": int(res.best_epoch), "clip_x": self.x_scaler_.clip,
                       "clip_y": self.y_scaler_.clip, "view": res.view,
                       "mi_latents": None if math.isnan(res.mi_latents) else res.mi_latents,
                       "mi_canonical": None if math.isnan(res.mi_canonical) else res.mi_canonical,
                       "canonical_pcs": int(res.canonical_pcs), "canonical_bias": float(res.canonical_bias)},
            "spec": None,
        }
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        tensors = {
            "pmi": t(res.pmi), "zx": t(res.zx), "zy": t(res.zy),
            "train_idx": t(res.train_idx), "test_idx": t(res.test_idx),
            "train_loss": t(np.asarray(res.train_loss, np.float64)),
            "val_loss": t(np.asarray(res.val_loss, np.float64)),
        }
        if res.cx is not None:
            tensors.update({"cx": t(res.cx), "cy": t(res.cy)})
        if res.canonical_map is not None:
            cm = res.canonical_map
            tensors.update({f"cmap.{f}": t(getattr(cm, f)) for f in CANONICAL_FIELDS})
            tensors.update({f"cmap.{f}": t(getattr(cm, f)) for f in RADIAL_FIELDS if getattr(cm, f) is not None})
        if res.r2_x is not None:
            tensors.update({"r2_x": t(np.asarray(res.r2_x, np.float64)), "r2_y": t(np.asarray(res.r2_y, np.float64))})
        for side, sc in (("x", self.x_scaler_), ("y", self.y_scaler_)):
            tensors.update({f"{side}_exponent": t(sc.exponent), f"{side}_mean": t(sc.mean),
                            f"{side}_std": t(sc.std)})
        if self.encoders_ is not None:
            sp = self.encoders_.spec
            meta["spec"] = {"dx": sp.dx, "dy": sp.dy, "latent": sp.latent, "lx": sp.lx, "ly": sp.ly}
            tensors.update({f"enc.{k}": v.contiguous() for k, v in self.encoders_.params.items()})
        torch.save({"meta": json.dumps(meta), "tensors": tensors}, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LMI":
        """Read a file written by :meth:`save` (``torch.load(weights_only=True)``: tensors and
        JSON only). The loaded estimator's ``transform`` and ``score_samples`` equal the saved
        one's."""
        import torch

        from .networks import NetSpec

        blob = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        try:
            meta = json.loads(blob["meta"])
            tensors = blob["tensors"]
        except (TypeError, KeyError, ValueError):
            raise InputError(f"{os.fspath(path)} is not a file written by LMI.save") from None
        if meta.get("format") not in FORMATS:
            raise InputError(f"{os.fspath(path)}: format {meta.get('format')!r}, expected one of {FORMATS}")
        est = cls(**meta["params"])
        f = meta["fitted"]
        n = lambda name: tensors[name].numpy()  # noqa: E731
        encoders = None
        if meta["spec"] is not None:
            encoders = (NetSpec(**meta["spec"]),
                        {k[len("enc."):]: v for k, v in tensors.items() if k.startswith("enc.")})
        res = LMIResult(mi=float("nan") if f["mi"] is None else float(f["mi"]), pmi=n("pmi"),
                        zx=n("zx"), zy=n("zy"), train_idx=n("train_idx"), test_idx=n("test_idx"),
                        epochs=int(f["epochs"]), best_epoch=int(f["best_epoch"]),
                        train_loss=n("train_loss"), val_loss=n("val_loss"), seed=int(f["seed"]),
                        settings=LMISettings(**meta["settings"]), status=f["status"],
                        detail=f["detail"], encoders=encoders,
                        r2_x=n("r2_x") if "r2_x" in tensors else None,
                        r2_y=n("r2_y") if "r2_y" in tensors else None,
                        view=f.get("view", "latents"),
                        mi_latents=float("nan") if f.get("mi_latents") is None else float(f["mi_latents"]),
                        mi_canonical=float("nan") if f.get("mi_canonical") is None else float(f["mi_canonical"]),
                        canonical_pcs=int(f.get("canonical_pcs", 0)),
                        canonical_bias=float(f.get("canonical_bias", 0.0)),
                        cx=n("cx") if "cx" in tensors else None, cy=n("cy") if "cy" in tensors else None,
                        canonical_map=CanonicalMap(**{f: n(f"cmap.{f}") for f in CANONICAL_FIELDS},
                                                   **{f: n(f"cmap.{f}") for f in RADIAL_FIELDS
                                                      if f"cmap.{f}" in tensors})
                        if "cmap.a" in tensors else None)
        xs = Standardizer(n("x_exponent"), n("x_mean"), n("x_std"), float(f["clip_x"]))
        ys = Standardizer(n("y_exponent"), n("y_mean"), n("y_std"), float(f["clip_y"]))
        est._set_fitted(res, xs, ys)
        return est
