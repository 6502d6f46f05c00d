"""Batched training of P cross-predictive autoencoders with per-pair early stopping.

All P pairs share (N_train, N_val, d_x, d_y) and are trained as one stacked model
(:class:`~lmi_distributed.estimators.networks.StackedCrossAE`). Each pair's loss is the
latentmi loss (four MSEs, each a mean over samples and dims); the optimised objective is
the sum over pairs, so each pair's gradient is exactly its own.

Per pair, from the pair seed alone (see :mod:`.seeding`): the initial weights, its own
permutation of its training rows every epoch (minibatches of ``batch_size``; the last one
smaller, like a ``DataLoader`` with ``drop_last=False``), and its dropout masks (one
generator per pair filling that pair's mask slab). Hence a pair's training does not
depend on its batch mates (up to float reduction order; see docs/estimator.md).

Optimiser: Adam (lr 1e-4, betas 0.9/0.999, eps 1e-7) written out with ``torch._foreach``
ops on the stacked tensors -- Adam is elementwise, so the stacked state *is* the per-pair
state, and the step count is shared (all active pairs take the same number of steps).

Early stopping (paper Alg. 3, patience 30) per pair on the held-out loss computed in eval
mode (no dropout) over the whole held-out half. When a pair improves, its slices are
copied (deep copy) into the best-state store; at the end every pair's best state is
restored. A pair whose training or held-out loss is non-finite stops at once (it cannot
recover; the API reports it as "diverged"). A pair that stops is removed from the active set:
parameters, Adam state, data and generators are ``index_select``-ed down to the active pairs,
so it costs nothing more. The held-out loss of the initial weights is recorded too
(``init_val_loss``, for the "never improved" diagnosis; it draws no random numbers).
The only host synchronisation is the per-epoch early-stopping check.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .networks import NetSpec, StackedCrossAE, dropout_masks
from .seeding import derive_seed

log = logging.getLogger("lmi_distributed")

#: progress(epoch, n_active, val_loss_of_active_pairs) after every epoch
ProgressFn = Callable[[int, int, np.ndarray], None]


@dataclass
class TrainResult:
    """Outcome of :func:`train_pairs` for P pairs (arrays indexed by pair)."""

    model: StackedCrossAE          # best (restored) weights of all P pairs
    epochs: np.ndarray             # (P,) int, epochs run
    best_epoch: np.ndarray         # (P,) int, 0-based epoch whose weights were restored (-1: none improved on init)
    init_val_loss: np.ndarray      # (P,) float64, held-out loss of the initial weights (eval mode)
    train_loss: list[np.ndarray]   # P arrays (epochs_p,), mean minibatch loss per epoch (dropout on)
    val_loss: list[np.ndarray]     # P arrays (epochs_p,), held-out loss per epoch (eval mode)
    active_per_epoch: list[int] = field(default_factory=list)   # pairs trained in each epoch
    seconds: float = 0.0
    #: (P, dx) / (P, dy) float64 held-out R^2 per dimension of the cross-decoders D_YX / D_XY with
    #: the restored weights (``attribution=True``; NaN for a held-out-constant dimension), else None
    r2_x: np.ndarray | None = None
    r2_y: np.ndarray | None = None


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads(n)``; ``None`` leaves torch's setting alone."""
    if n is None:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _val_chunk_rows(spec: NetSpec) -> int:
    # Independent of the number of pairs, so the validation sums (and hence early
    # stopping) are computed in the same order whatever the batch.
    widest = max(spec.dx, spec.dy, spec.lx, spec.ly)
    return max(256, (1 << 22) // widest)


PRECISIONS = ("float32", "tf32", "bf16")


@contextmanager
def matmul_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Precision of the training matmuls. ``"float32"``: full float32 (the default);
    ``"tf32"``: TensorFloat-32 tensor cores for float32 matmuls on CUDA (no effect on the CPU);
    ``"bf16"``: forward passes under ``torch.autocast`` in bfloat16 (float32 master weights,
    Adam state and loss accumulation). Restores the previous global settings on exit."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        yield
    elif precision == "tf32":
        prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(prev)
    else:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield


@torch.no_grad()
def held_out_loss(model: StackedCrossAE, x: torch.Tensor, y: torch.Tensor, self_weight: float = 1.0) -> torch.Tensor:
    """Eval-mode (no dropout) LMI loss of each pair over all rows of ``x`` (P, N, dx),
    ``y`` (P, N, dy), each MSE a mean over all N rows and dims, the two self-reconstruction
    MSEs times ``self_weight``. Returns (P,) float64."""
    n = x.shape[1]
    chunk = _val_chunk_rows(model.spec)
    sse = torch.zeros(x.shape[0], 4, dtype=torch.float64, device=x.device)
    for s in range(0, n, chunk):
        sse += model.squared_errors(x[:, s:s + chunk], y[:, s:s + chunk]).to(torch.float64)
    dx, dy = x.shape[2], y.shape[2]
    terms = sse / (torch.tensor([dx, dy, dx, dy], dtype=torch.float64, device=x.device) * n)
    if self_weight != 1.0:
        terms[:, 2:] *= self_weight
    return terms.sum(dim=1)


def _val_loss(model: StackedCrossAE, x: torch.Tensor, y: torch.Tensor, aux_loss: Callable | None,
              self_weight: float = 1.0) -> torch.Tensor:
    """:func:`held_out_loss` plus ``aux_loss.held_out`` when an auxiliary term is given. (P,) float64."""
    val = held_out_loss(model, x, y, self_weight)
    return val if aux_loss is None else val + aux_loss.held_out(model, x, y)


@torch.no_grad()
def encode_all(model: StackedCrossAE, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode latents of all rows: ``x`` (P, N, dx), ``y`` (P, N, dy) -> two (P, N, latent)."""
    chunk = _val_chunk_rows(model.spec)
    zx, zy = [], []
    for s in range(0, x.shape[1], chunk):
        a, b = model.encode(x[:, s:s + chunk], y[:, s:s + chunk])
        zx.append(a)
        zy.append(b)
    return torch.cat(zx, dim=1), torch.cat(zy, dim=1)


class _Adam:
    """Adam (torch's formula, no weight decay, no amsgrad) on a list of stacked tensors."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float], eps: float):
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.step_count = 0

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
        self.step_count += 1
        bc1 = 1.0 - self.b1 ** self.step_count
        bc2 = 1.0 - self.b2 ** self.step_count
        torch._foreach_lerp_(self.m, grads, 1.0 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, grads, grads, 1.0 - self.b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, self.m, denom, -self.lr / bc1)

    def select(self, idx: torch.Tensor) -> None:
        self.m = [t.index_select(0, idx) for t in self.m]
        self.v = [t.index_select(0, idx) for t in self.v]


def _copy_slices(dst: StackedCrossAE, src: StackedCrossAE, local: np.ndarray, orig: np.ndarray,
                 device: torch.device) -> None:
    """Deep-copy pairs ``local`` of the active model ``src`` into slots ``orig`` of ``dst``."""
    loc = torch.as_tensor(local, device=device)
    org = torch.as_tensor(orig, device=device)
    with torch.no_grad():
        for k, v in src.params.items():
            dst.params[k].index_copy_(0, org, v.detach().index_select(0, loc))


def train_pairs(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    spec: NetSpec,
    seeds: Sequence[int],
    *,
    batch_size: int = 512,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-7,
    max_epochs: int = 300,
    patience: int = 30,
    restore_best: bool = True,
    precision: str = "float32",
    progress: ProgressFn | None = None,
    attribution: bool = False,
    aux_loss: Callable | None = None,
    self_weight: float = 1.0,
) -> TrainResult:
    """Train P pairs' networks as one batch.

    ``x_train`` (P, n_train, dx), ``y_train`` (P, n_train, dy): training halves;
    ``x_val`` (P, n_val, dx), ``y_val`` (P, n_val, dy): held-out halves (early stopping).
    All on the training device, same dtype (the model's dtype). ``seeds``: P pair seeds;
    init, minibatch order and dropout streams are derived from them.
    Returns a :class:`TrainResult` holding every pair's best weights (``restore_best=False``:
    each pair's last-epoch weights, latentmi's effective behaviour; for ablations).
    ``attribution``: also the held-out R^2 per dimension of both cross-decoders with those
    weights (:func:`.attribution.cross_decoder_r2`, one eval-mode forward pass over the
    held-out half); off, it costs nothing.
    ``aux_loss``: an optional extra per-pair term (e.g. :class:`.contrastive.ContrastiveTerm`):
    ``aux_loss.from_latents(zx, zy)`` -> (P,), on the latents of the minibatch's forward pass, is
    added to every minibatch loss and
    ``aux_loss.held_out(model, x, y)`` -> (P,) to the held-out loss; None: the paper's loss.
    """
    t0 = time.perf_counter()
    P, n_train, dx = x_train.shape
    dy = y_train.shape[2]
    if len(seeds) != P:
        raise ValueError(f"{len(seeds)} seeds for {P} pairs")
    if (spec.dx, spec.dy) != (dx, dy):
        raise ValueError(f"spec dims {(spec.dx, spec.dy)} != data dims {(dx, dy)}")
    device, dtype = x_train.device, x_train.dtype

    model = StackedCrossAE.init(spec, [derive_seed(s, "init") for s in seeds], device, dtype)
    best = model.detached_clone()
    for t in model.tensors():
        t.requires_grad_(True)
    with matmul_precision(precision, device):
        init_val = _val_loss(model, x_val, y_val, aux_loss, self_weight).cpu().numpy()   # diagnostics only (no RNG)
    opt = _Adam(model.tensors(), lr, betas, eps)
    shuffle_gens = [torch.Generator(device="cpu").manual_seed(derive_seed(s, "shuffle")) for s in seeds]
    drop_gens = [torch.Generator(device=device).manual_seed(derive_seed(s, "dropout")) for s in seeds]

    active = np.arange(P)                       # original pair index of each active slot
    best_val = np.full(P, np.inf)
    best_epoch = np.full(P, -1, dtype=np.int64)
    bad_epochs = np.zeros(P, dtype=np.int64)
    epochs = np.zeros(P, dtype=np.int64)
    train_hist: list[list[float]] = [[] for _ in range(P)]
    val_hist: list[list[float]] = [[] for _ in range(P)]
    active_per_epoch: list[int] = []
    xtr, ytr, xva, yva = x_train, y_train, x_val, y_val

    for epoch in range(max_epochs):
        Pa = len(active)
        if Pa == 0:
            break
        active_per_epoch.append(Pa)
        perms = torch.stack([torch.randperm(n_train, generator=g) for g in shuffle_gens]).to(device)
        rows = torch.arange(Pa, device=device)[:, None]
        params = model.tensors()
        train_sum = torch.zeros(Pa, dtype=torch.float64, device=device)
        n_batches = 0
        for s in range(0, n_train, batch_size):
            idx = perms[:, s:s + batch_size]
            xb, yb = xtr[rows, idx], ytr[rows, idx]
            masks = dropout_masks(spec, drop_gens, idx.shape[1], device, dtype)
            with matmul_precision(precision, device):
                loss, zx, zy = model.losses_and_latents(xb, yb, masks, self_weight)
                loss = loss.float()
                if aux_loss is not None:    # on this pass's latents: no second encoder pass
                    loss = loss + aux_loss.from_latents(zx, zy).float()
            grads = torch.autograd.grad(loss.sum(), params)
            opt.step(params, grads)
            train_sum += loss.detach().to(torch.float64)
            n_batches += 1

        with matmul_precision(precision, device):
            val = _val_loss(model, xva, yva, aux_loss, self_weight).cpu().numpy()       # the per-epoch host sync
        trn = (train_sum / n_batches).cpu().numpy()
        for j, pid in enumerate(active):
            train_hist[pid].append(float(trn[j]))
            val_hist[pid].append(float(val[j]))
        epochs[active] += 1

        improved = val < best_val[active]                  # NaN never improves
        if improved.any():
            if restore_best:
                _copy_slices(best, model, np.flatnonzero(improved), active[improved], device)
                best_epoch[active[improved]] = epoch
            best_val[active[improved]] = val[improved]
            bad_epochs[active[improved]] = 0
        bad_epochs[active[~improved]] += 1
        # a pair whose loss went non-finite stops now: it cannot recover (its status is "diverged")
        stopped = (bad_epochs[active] >= patience) | ~np.isfinite(val) | ~np.isfinite(trn)

        if progress is not None:
            progress(epoch, Pa, val)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("epoch %d: %d active pairs, val loss min %.5f", epoch, Pa, float(np.nanmin(val)) if Pa else float("nan"))
        if not restore_best and (stopped.any() or epoch == max_epochs - 1):
            last = stopped if epoch < max_epochs - 1 else np.ones(Pa, dtype=bool)
            _copy_slices(best, model, np.flatnonzero(last), active[last], device)
            best_epoch[active[last]] = epoch
        if stopped.any():
            log.debug("epoch %d: early stop of pairs %s", epoch, active[stopped].tolist())
            keep_np = np.flatnonzero(~stopped)
            keep = torch.as_tensor(keep_np, device=device)
            active = active[keep_np]
            model = model.select(keep)
            for t in model.tensors():
                t.requires_grad_(True)
            opt.select(keep)
            xtr, ytr = xtr.index_select(0, keep), ytr.index_select(0, keep)
            xva, yva = xva.index_select(0, keep), yva.index_select(0, keep)
            shuffle_gens = [shuffle_gens[i] for i in keep_np]
            drop_gens = [drop_gens[i] for i in keep_np]

    del model, opt
    r2_x = r2_y = None
    if attribution:
        from .attribution import cross_decoder_r2

        with matmul_precision(precision, device):
            r2_x, r2_y = cross_decoder_r2(best, x_val, y_val, _val_chunk_rows(spec))
    return TrainResult(
        model=best,
        epochs=epochs,
        best_epoch=best_epoch,
        init_val_loss=init_val,
        train_loss=[np.asarray(h) for h in train_hist],
        val_loss=[np.asarray(h) for h in val_hist],
        active_per_epoch=active_per_epoch,
        seconds=time.perf_counter() - t0,
        r2_x=r2_x,
        r2_y=r2_y,
    )
