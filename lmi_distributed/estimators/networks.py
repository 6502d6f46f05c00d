"""Stacked cross-predictive autoencoders: P independent LMI networks in one set of tensors.

The architecture is latentmi 0.1.3's ``AECross`` (paper A.1.2), for P pairs at once:

* hidden width ``L = 1024``, or ``2**floor(log2 d)`` when ``d > 2048`` (per variable),
  or an explicit override ``hidden`` (tests, demos);
* encoders ``d -> L -> L/2 -> L/4 -> latent`` with LeakyReLU(0.2) after EVERY layer,
  the latent layer included;
* self-decoders ``latent -> L/4 -> L/2 -> L -> d``, LeakyReLU(0.2) between layers, linear output;
* cross-decoders (``D_YX``: latent of Y -> x, ``D_XY``: latent of X -> y) of the same shape
  with Dropout(0.5) before every Linear layer, the first included;
* Xavier-uniform weights, zero biases.

Every layer is a weight of shape (P, in, out) and a bias of shape (P, 1, out); a forward
pass is ``torch.baddbmm(bias, h, weight)`` on activations of shape (P, B, width). Pair p's
slices are initialised from a ``torch.Generator`` seeded by pair p's own init seed, so its
initial weights do not depend on its batch mates. The module is functional: parameters
are plain tensors in :attr:`StackedCrossAE.params`, so the trainer can ``index_select``
them when pairs stop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

NEGATIVE_SLOPE = 0.2
DROPOUT_P = 0.5
#: Network names, in initialisation order.
NETS = ("ex", "ey", "dxx", "dyy", "dyx", "dxy")
CROSS_NETS = ("dyx", "dxy")


def hidden_width(d: int, hidden: int | None = None) -> int:
    """Hidden width L for a variable of dimension ``d``: ``hidden`` if given, else 1024,
    or ``2**floor(log2 d)`` when ``d > 2048`` (latentmi's rule)."""
    if hidden is not None:
        return int(hidden)
    if d > 2048:
        return int(2 ** math.floor(math.log2(d)))
    return 1024


@dataclass(frozen=True)
class NetSpec:
    """Shapes of one pair's network. ``lx``/``ly``: hidden widths of the X and Y sides."""

    dx: int
    dy: int
    latent: int = 8
    lx: int = 1024
    ly: int = 1024

    @classmethod
    def for_dims(cls, dx: int, dy: int, latent: int = 8, hidden: int | None = None) -> "NetSpec":
        return cls(dx, dy, latent, hidden_width(dx, hidden), hidden_width(dy, hidden))

    def widths(self, net: str) -> list[int]:
        """Layer widths ``[in, h1, h2, h3, out]`` of network ``net``."""
        lx, ly, z = self.lx, self.ly, self.latent
        return {
            "ex": [self.dx, lx, lx // 2, lx // 4, z],
            "ey": [self.dy, ly, ly // 2, ly // 4, z],
            "dxx": [z, lx // 4, lx // 2, lx, self.dx],
            "dyy": [z, ly // 4, ly // 2, ly, self.dy],
            "dyx": [z, lx // 4, lx // 2, lx, self.dx],
            "dxy": [z, ly // 4, ly // 2, ly, self.dy],
        }[net]

    def dropout_widths(self, net: str) -> list[int]:
        """Input widths of the four Linear layers of cross-decoder ``net`` (where dropout acts)."""
        return self.widths(net)[:4]

    @property
    def dropout_total(self) -> int:
        """Dropout mask columns per sample for both cross-decoders together."""
        return sum(sum(self.dropout_widths(n)) for n in CROSS_NETS)

    def n_params(self) -> int:
        """Parameters of one pair's network."""
        tot = 0
        for net in NETS:
            w = self.widths(net)
            tot += sum(a * b + b for a, b in zip(w[:-1], w[1:]))
        return tot


def _key(net: str, i: int, kind: str) -> str:
    return f"{net}.{i}.{kind}"


class StackedCrossAE:
    """P cross-predictive autoencoders with identical shapes, stored as stacked tensors.

    ``params[f"{net}.{i}.w"]``: (P, in, out); ``params[f"{net}.{i}.b"]``: (P, 1, out),
    for ``net`` in :data:`NETS` and layer ``i`` in 0..3.
    """

    def __init__(self, spec: NetSpec, params: dict[str, torch.Tensor]):
        self.spec = spec
        self.params = params

    # -- construction -------------------------------------------------------------------
    @classmethod
    def init(cls, spec: NetSpec, init_seeds: Sequence[int], device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> "StackedCrossAE":
        """Xavier-uniform weights / zero biases; pair p's slices drawn (on the CPU, in float32,
        so the initial weights are the same on every device) from a generator seeded with
        ``init_seeds[p]``, network by network in :data:`NETS` order, layer by layer."""
        P = len(init_seeds)
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in init_seeds]
        params: dict[str, torch.Tensor] = {}
        for net in NETS:
            w = spec.widths(net)
            for i, (fan_in, fan_out) in enumerate(zip(w[:-1], w[1:])):
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                W = torch.empty(P, fan_in, fan_out, dtype=torch.float32)
                for p in range(P):
                    W[p].uniform_(-bound, bound, generator=gens[p])
                params[_key(net, i, "w")] = W.to(device=device, dtype=dtype)
                params[_key(net, i, "b")] = torch.zeros(P, 1, fan_out, device=device, dtype=dtype)
        return cls(spec, params)

    @property
    def n_pairs(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def names(self) -> list[str]:
        return list(self.params)

    def tensors(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def select(self, idx: torch.Tensor) -> "StackedCrossAE":
        """A new model holding pairs ``idx`` (1-D long tensor) only (copies)."""
        return StackedCrossAE(self.spec, {k: v.index_select(0, idx) for k, v in self.params.items()})

    def detached_clone(self) -> "StackedCrossAE":
        return StackedCrossAE(self.spec, {k: v.detach().clone() for k, v in self.params.items()})

    # -- forward ------------------------------------------------------------------------
    def mlp(self, net: str, h: torch.Tensor, masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Run network ``net`` on ``h`` (P, B, in) -> (P, B, out).

        ``masks`` (cross-decoders in training mode only): four tensors broadcastable to the
        inputs of the four Linear layers, already scaled (0 or 1/(1-p)).
        Encoders apply LeakyReLU after the last layer too; decoders have a linear output.
        """
        encoder = net in ("ex", "ey")
        for i in range(4):
            if masks is not None:
                h = h * masks[i]
            h = torch.baddbmm(self.params[_key(net, i, "b")], h, self.params[_key(net, i, "w")])
            if i < 3 or encoder:
                h = F.leaky_relu(h, NEGATIVE_SLOPE)
        return h

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(zx, zy)``, each (P, B, latent), of ``x`` (P, B, dx) and ``y`` (P, B, dy)."""
        return self.mlp("ex", x), self.mlp("ey", y)

    def squared_errors(self, x: torch.Tensor, y: torch.Tensor,
                       masks: dict[str, Sequence[torch.Tensor]] | None = None) -> torch.Tensor:
        """Per pair sums of squared errors of the four reconstructions, shape (P, 4):
        columns ``[D_YX(E_Y y) vs x, D_XY(E_X x) vs y, D_XX(E_X x) vs x, D_YY(E_Y y) vs y]``.
        ``masks``: ``{"dyx": [...], "dxy": [...]}`` dropout masks (training) or None (eval)."""
        return self._errors_and_latents(x, y, masks)[0]

    def _errors_and_latents(self, x: torch.Tensor, y: torch.Tensor,
                            masks: dict[str, Sequence[torch.Tensor]] | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`squared_errors` (P, 4) and the latents ``zx``, ``zy`` (P, B, latent) it encoded."""
        zx, zy = self.encode(x, y)
        m = masks or {}
        terms = [
            (self.mlp("dyx", zy, m.get("dyx")) - x),
            (self.mlp("dxy", zx, m.get("dxy")) - y),
            (self.mlp("dxx", zx) - x),
            (self.mlp("dyy", zy) - y),
        ]
        return torch.stack([t.square().sum(dim=(1, 2)) for t in terms], dim=1), zx, zy

    def losses(self, x: torch.Tensor, y: torch.Tensor,
               masks: dict[str, Sequence[torch.Tensor]] | None = None, self_weight: float = 1.0) -> torch.Tensor:
        """Per pair LMI loss, shape (P,): the sum of the four MSEs, each a mean over the
        B samples and the dimensions (latentmi's ``learning_loss`` with alpha = lam = 1);
        ``self_weight`` (latentmi's alpha) multiplies the two self-reconstruction MSEs."""
        return self.losses_and_latents(x, y, masks, self_weight)[0]

    def losses_and_latents(self, x: torch.Tensor, y: torch.Tensor,
                           masks: dict[str, Sequence[torch.Tensor]] | None = None, self_weight: float = 1.0
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`losses` (P,) and the latents ``zx``, ``zy`` (P, B, latent) of the same forward
        pass (so an auxiliary term on the latents needs no second encoder pass)."""
        B, dx, dy = x.shape[1], x.shape[2], y.shape[2]
        sse, zx, zy = self._errors_and_latents(x, y, masks)
        # python-scalar divisors: no host->device copy per step
        cross = sse[:, 0] / (B * dx) + sse[:, 1] / (B * dy)
        auto = sse[:, 2] / (B * dx) + sse[:, 3] / (B * dy)
        return (cross + auto if self_weight == 1.0 else cross + self_weight * auto), zx, zy


def dropout_masks(spec: NetSpec, gens: Sequence[torch.Generator], batch: int,
                  device: str | torch.device, dtype: torch.dtype,
                  p: float = DROPOUT_P) -> dict[str, list[torch.Tensor]]:
    """Draw the cross-decoder dropout masks for one training step.

    One call per pair: pair j's generator ``gens[j]`` fills its (batch, spec.dropout_total)
    slab of uniforms, so its masks do not depend on its batch mates. Returns
    ``{"dyx": [m0..m3], "dxy": [m0..m3]}``, each (P, batch, width), values 0 or 1/(1-p).
    """
    P = len(gens)
    u = torch.empty(P, batch, spec.dropout_total, device=device, dtype=torch.float32)
    for j, g in enumerate(gens):
        u[j].uniform_(0.0, 1.0, generator=g)
    keep = (u >= p).to(dtype).mul_(1.0 / (1.0 - p))
    out: dict[str, list[torch.Tensor]] = {}
    col = 0
    for net in CROSS_NETS:
        out[net] = []
        for w in spec.dropout_widths(net):
            out[net].append(keep[:, :, col:col + w])
            col += w
    return out
