"""Stacked networks and batched training: architecture, Adam, batch invariance, early stopping."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from lmi_distributed.estimators.networks import NETS, NetSpec, StackedCrossAE, dropout_masks, hidden_width
from lmi_distributed.estimators.training import _Adam, held_out_loss, torch_threads, train_pairs


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: these tiny problems gain nothing from two, and two threads collapse when
    other processes share the CPU (docs/design). Results do not depend on it (float64 tests)."""
    with torch_threads(1):
        yield


# --- a plain latentmi-style AECross (latentmi 0.1.3 models.py, with a width override) -------
def _lrelu():
    return nn.LeakyReLU(negative_slope=0.2)


class RefAECross(nn.Module):
    def __init__(self, x_dim, y_dim, latent, Lx, Ly):
        super().__init__()
        self.x_encoder = nn.Sequential(nn.Linear(x_dim, Lx), _lrelu(), nn.Linear(Lx, Lx // 2), _lrelu(),
                                       nn.Linear(Lx // 2, Lx // 4), _lrelu(), nn.Linear(Lx // 4, latent), _lrelu())
        self.y_encoder = nn.Sequential(nn.Linear(y_dim, Ly), _lrelu(), nn.Linear(Ly, Ly // 2), _lrelu(),
                                       nn.Linear(Ly // 2, Ly // 4), _lrelu(), nn.Linear(Ly // 4, latent), _lrelu())
        self.xx_decoder = nn.Sequential(nn.Linear(latent, Lx // 4), _lrelu(), nn.Linear(Lx // 4, Lx // 2), _lrelu(),
                                        nn.Linear(Lx // 2, Lx), _lrelu(), nn.Linear(Lx, x_dim))
        self.yy_decoder = nn.Sequential(nn.Linear(latent, Ly // 4), _lrelu(), nn.Linear(Ly // 4, Ly // 2), _lrelu(),
                                        nn.Linear(Ly // 2, Ly), _lrelu(), nn.Linear(Ly, y_dim))
        self.yx_decoder = nn.Sequential(nn.Dropout(0.5), nn.Linear(latent, Lx // 4), _lrelu(), nn.Dropout(0.5),
                                        nn.Linear(Lx // 4, Lx // 2), _lrelu(), nn.Dropout(0.5),
                                        nn.Linear(Lx // 2, Lx), _lrelu(), nn.Dropout(0.5), nn.Linear(Lx, x_dim))
        self.xy_decoder = nn.Sequential(nn.Dropout(0.5), nn.Linear(latent, Ly // 4), _lrelu(), nn.Dropout(0.5),
                                        nn.Linear(Ly // 4, Ly // 2), _lrelu(), nn.Dropout(0.5),
                                        nn.Linear(Ly // 2, Ly), _lrelu(), nn.Dropout(0.5), nn.Linear(Ly, y_dim))

    def learning_loss(self, x, y):
        mse = nn.functional.mse_loss
        zx, zy = self.x_encoder(x), self.y_encoder(y)
        return (mse(self.yx_decoder(zy), x) + mse(self.xy_decoder(zx), y)
                + mse(self.xx_decoder(zx), x) + mse(self.yy_decoder(zy), y))


_REF_NAMES = {"ex": "x_encoder", "ey": "y_encoder", "dxx": "xx_decoder", "dyy": "yy_decoder",
              "dyx": "yx_decoder", "dxy": "xy_decoder"}


def _copy_into_ref(model: StackedCrossAE, p: int, ref: RefAECross) -> None:
    with torch.no_grad():
        for net in NETS:
            lins = [m for m in getattr(ref, _REF_NAMES[net]) if isinstance(m, nn.Linear)]
            assert len(lins) == 4
            for i, lin in enumerate(lins):
                lin.weight.copy_(model.params[f"{net}.{i}.w"][p].T)
                lin.bias.copy_(model.params[f"{net}.{i}.b"][p, 0])


def test_hidden_width_rule():
    assert hidden_width(10) == 1024 and hidden_width(2048) == 1024
    assert hidden_width(2049) == 2048 and hidden_width(5000) == 4096
    assert hidden_width(5000, hidden=32) == 32
    spec = NetSpec.for_dims(100, 3000)
    assert (spec.lx, spec.ly) == (1024, 2048)
    assert spec.widths("ex") == [100, 1024, 512, 256, 8]
    assert spec.widths("dyy") == [8, 512, 1024, 2048, 3000]


@pytest.mark.parametrize("dx,dy,L", [(5, 7, 32), (3, 2, 64)])
def test_forward_equals_plain_sequential_model(dx, dy, L):
    spec = NetSpec.for_dims(dx, dy, 8, hidden=L)
    model = StackedCrossAE.init(spec, [11, 12, 13])
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(3, 50, dx)).astype(np.float32))
    y = torch.from_numpy(rng.normal(size=(3, 50, dy)).astype(np.float32))
    ours_loss = model.losses(x, y)
    zx, zy = model.encode(x, y)
    for p in range(3):
        ref = RefAECross(dx, dy, 8, L, L).eval()
        _copy_into_ref(model, p, ref)
        with torch.no_grad():
            torch.testing.assert_close(zx[p], ref.x_encoder(x[p]), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(zy[p], ref.y_encoder(y[p]), atol=1e-5, rtol=1e-5)
            one = model.select(torch.tensor([p]))
            for net, z in (("dyx", zy), ("dxy", zx), ("dxx", zx), ("dyy", zy)):
                torch.testing.assert_close(one.mlp(net, z[p:p + 1])[0], getattr(ref, _REF_NAMES[net])(z[p]),
                                           atol=1e-5, rtol=1e-5)
            assert ours_loss[p].item() == pytest.approx(ref.learning_loss(x[p], y[p]).item(), rel=1e-5)


def test_self_weight_scales_the_two_self_reconstruction_terms():
    # latentmi's alpha: loss = cross MSEs + alpha * self MSEs, in training and in the held-out loss
    spec = NetSpec.for_dims(5, 3, 4, hidden=16)
    model = StackedCrossAE.init(spec, [1, 2])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 40, 5, generator=g), torch.randn(2, 40, 3, generator=g)
    sse = model.squared_errors(x, y).double()
    cross = sse[:, 0] / (40 * 5) + sse[:, 1] / (40 * 3)
    auto = sse[:, 2] / (40 * 5) + sse[:, 3] / (40 * 3)
    assert (auto > 0.1).all()              # the weight visibly matters (untrained networks)
    for w in (1.0, 0.25, 0.0):
        torch.testing.assert_close(model.losses(x, y, self_weight=w).double(), cross + w * auto, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(held_out_loss(model, x, y, self_weight=w), cross + w * auto, rtol=1e-5, atol=1e-6)
    assert torch.equal(model.losses(x, y, self_weight=1.0), model.losses(x, y))   # the paper's, bit for bit


def test_dropout_masks_semantics_match_manual_dropout():
    spec = NetSpec.for_dims(4, 6, 8, hidden=16)
    model = StackedCrossAE.init(spec, [1])
    gens = [torch.Generator().manual_seed(5)]
    masks = dropout_masks(spec, gens, 20, "cpu", torch.float32)
    m = masks["dxy"]
    assert [t.shape[-1] for t in m] == [8, 4, 8, 16]
    allv = torch.cat([t.reshape(-1) for t in masks["dyx"] + masks["dxy"]])
    assert set(allv.unique().tolist()) <= {0.0, 2.0}
    assert abs((allv == 0).float().mean().item() - 0.5) < 0.05
    z = torch.randn(1, 20, 8)
    out = model.mlp("dxy", z, m)
    h = z
    for i in range(4):  # manual: dropout (mask) then Linear, LeakyReLU except last
        h = h * m[i]
        h = h @ model.params[f"dxy.{i}.w"] + model.params[f"dxy.{i}.b"]
        if i < 3:
            h = torch.nn.functional.leaky_relu(h, 0.2)
    torch.testing.assert_close(out, h)


def test_init_is_xavier_and_per_pair():
    spec = NetSpec.for_dims(30, 40, 8, hidden=64)
    a = StackedCrossAE.init(spec, [7, 8, 9])
    b = StackedCrossAE.init(spec, [9])
    for k, v in a.params.items():
        torch.testing.assert_close(v[2:3], b.params[k], rtol=0, atol=0)    # pair init ignores batch mates
        if k.endswith(".b"):
            assert (v == 0).all()
        else:
            fan_in, fan_out = v.shape[1:]
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert v.abs().max() <= bound
            if v[0].numel() > 1000:
                assert v[0].std().item() == pytest.approx(bound / 3**0.5, rel=0.1)
    assert not torch.equal(a.params["ex.0.w"][0], a.params["ex.0.w"][1])


def test_dropout_masks_do_not_depend_on_batch_mates():
    spec = NetSpec.for_dims(4, 6, 8, hidden=16)
    m3 = dropout_masks(spec, [torch.Generator().manual_seed(s) for s in (1, 2, 3)], 10, "cpu", torch.float32)
    m1 = dropout_masks(spec, [torch.Generator().manual_seed(3)], 10, "cpu", torch.float32)
    for net in m1:
        for a, b in zip(m3[net], m1[net]):
            assert torch.equal(a[2], b[0])


def test_vectorised_adam_equals_torch_adam():
    torch.manual_seed(0)
    w0 = torch.randn(3, 5, 4)
    target = torch.randn(3, 5, 4)
    ours = w0.clone().requires_grad_(True)
    ref = w0.clone().requires_grad_(True)
    opt_ref = torch.optim.Adam([ref], lr=1e-2, betas=(0.9, 0.999), eps=1e-7)
    opt = _Adam([ours], 1e-2, (0.9, 0.999), 1e-7)
    for _ in range(20):
        g, = torch.autograd.grad(((ours - target) ** 3).abs().sum(), [ours])
        opt.step([ours], [g])
        opt_ref.zero_grad()
        ((ref - target) ** 3).abs().sum().backward()
        opt_ref.step()
    torch.testing.assert_close(ours.detach(), ref.detach(), atol=1e-6, rtol=1e-5)


def _problem(P, n=240, dx=5, dy=4, seed=0):
    """P tiny pairs: y depends on x for even pairs, independent for odd ones."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for p in range(P):
        x = rng.normal(size=(n, dx))
        y = x[:, :dy] + (0.2 if p % 2 == 0 else 5.0) * rng.normal(size=(n, dy))
        xs.append(x)
        ys.append(y)
    t = lambda a: torch.tensor(np.stack(a), dtype=torch.float32)  # noqa: E731
    X, Y = t(xs), t(ys)
    h = n // 2
    return X[:, :h], Y[:, :h], X[:, h:], Y[:, h:]


def test_batch_invariance_and_active_set_shrinks():
    """Pair 'seed 102' alone == the same pair inside a batch of 4 whose mates stop at other epochs.

    Run in float64. In float32 the comparison is at the mercy of BLAS blocking, which depends on
    the batch size and the thread count: a fresh clone on a busy machine saw latents differ by
    9.3e-5 (float32's 6e-8 rounding amplified ~1.5e3 by 40 epochs at lr 2e-2), and a near-tie in
    the held-out loss could then move an early stop. In float64 the same amplification of
    1.1e-16 is ~2e-13, so we assert epochs / best epochs exactly and losses / latents to 1e-9
    (a 5000x margin; measured: bit-identical at 1 and 2 threads)."""
    xtr, ytr, xva, yva = (t.double() for t in _problem(4))
    spec = NetSpec.for_dims(5, 4, 8, hidden=32)
    kw = dict(batch_size=32, lr=2e-2, max_epochs=40, patience=3)   # 4 minibatches, last one smaller
    seeds = [100, 101, 102, 103]
    full = train_pairs(xtr, ytr, xva, yva, spec, seeds, **kw)
    assert len(set(full.epochs.tolist())) > 1, "want pairs stopping at different epochs"
    assert full.active_per_epoch[0] == 4 and full.active_per_epoch[-1] < 4
    assert all(a >= b for a, b in zip(full.active_per_epoch, full.active_per_epoch[1:]))
    for j in (2, 0):
        alone = train_pairs(xtr[j:j + 1], ytr[j:j + 1], xva[j:j + 1], yva[j:j + 1], spec, [seeds[j]], **kw)
        assert alone.epochs[0] == full.epochs[j]
        assert alone.best_epoch[0] == full.best_epoch[j]
        np.testing.assert_allclose(alone.val_loss[0], full.val_loss[j], rtol=1e-9)     # see docstring
        np.testing.assert_allclose(alone.train_loss[0], full.train_loss[j], rtol=1e-9)
        za, _ = alone.model.encode(xva[j:j + 1], yva[j:j + 1])
        zf, _ = full.model.select(torch.tensor([j])).encode(xva[j:j + 1], yva[j:j + 1])
        torch.testing.assert_close(za, zf, atol=1e-9, rtol=1e-9)


def test_early_stopping_restores_best_weights():
    # float64: the restored model's loss is recomputed with all 3 pairs while it was recorded
    # with fewer active ones; float32 BLAS blocking could differ by ~1e-6 relative between the
    # two compositions, float64 by ~1e-15, so rel=1e-6 below has a wide margin.
    xtr, ytr, xva, yva = (t.double() for t in _problem(3, seed=1))
    spec = NetSpec.for_dims(5, 4, 8, hidden=32)
    # a large learning rate makes the held-out loss noisy, so it rises after its minimum
    res = train_pairs(xtr, ytr, xva, yva, spec, [5, 6, 7], batch_size=32, lr=2e-2, max_epochs=60, patience=4)
    stopped = [p for p in range(3) if res.epochs[p] < 60]
    assert stopped, "expected early stopping"
    restored = held_out_loss(res.model, xva, yva).numpy()
    for p in range(3):
        v = res.val_loss[p]
        assert len(v) == res.epochs[p] == len(res.train_loss[p])
        assert res.best_epoch[p] == int(np.argmin(v))
        assert restored[p] == pytest.approx(v.min(), rel=1e-6)       # the best epoch's weights
    for p in stopped:
        assert res.best_epoch[p] == res.epochs[p] - 1 - 4              # patience 4
        assert res.val_loss[p][-1] > res.val_loss[p].min()            # last weights were worse
        assert restored[p] != pytest.approx(res.val_loss[p][-1], rel=1e-6)


def test_training_reduces_loss():
    xtr, ytr, xva, yva = _problem(2, seed=2)
    spec = NetSpec.for_dims(5, 4, 8, hidden=32)
    res = train_pairs(xtr, ytr, xva, yva, spec, [1, 2], batch_size=32, lr=1e-3, max_epochs=15, patience=30)
    for p in range(2):
        assert res.epochs[p] == 15
        assert res.train_loss[p][-1] < res.train_loss[p][0]
        assert res.val_loss[p][-1] < res.val_loss[p][0]


def test_restore_best_false_keeps_last_weights():
    xtr, ytr, xva, yva = (t.double() for t in _problem(3, seed=1))   # float64: as above
    spec = NetSpec.for_dims(5, 4, 8, hidden=32)
    res = train_pairs(xtr, ytr, xva, yva, spec, [5, 6, 7], batch_size=32, lr=2e-2, max_epochs=60, patience=4,
                      restore_best=False)
    assert (res.epochs < 60).any()
    restored = held_out_loss(res.model, xva, yva).numpy()
    for p in range(3):
        assert res.best_epoch[p] == res.epochs[p] - 1
        assert restored[p] == pytest.approx(res.val_loss[p][-1], rel=1e-6)


def test_bf16_autocast_precision_tracks_float32_and_restores_global_state():
    """precision='bf16' trains under autocast (here on the CPU) to an MI close to float32's,
    differs from it (it really ran in bf16), and leaves torch's global matmul setting alone."""
    import torch

    from lmi_distributed.estimators.api import estimate_many

    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 2))
    Y = np.hstack([X + 0.1 * rng.normal(size=(400, 2)), rng.normal(size=(400, 2))])
    before = torch.get_float32_matmul_precision()
    kw = dict(hidden=64, max_epochs=20, batch_size=64, lr=1e-3)
    r32, = estimate_many([(X, Y)], seeds=[0], **kw)
    rbf, = estimate_many([(X, Y)], seeds=[0], precision="bf16", **kw)
    rtf, = estimate_many([(X, Y)], seeds=[0], precision="tf32", **kw)
    assert torch.get_float32_matmul_precision() == before
    assert r32.mi > 1.5
    assert abs(rbf.mi - r32.mi) < 0.25
    assert not np.array_equal(rbf.val_loss, r32.val_loss)
    np.testing.assert_allclose(rtf.val_loss, r32.val_loss, rtol=1e-6)   # TF32 is a no-op on the CPU


# --- failed training: statuses come from the recorded histories ------------------------------
def test_non_finite_loss_stops_the_pair_at_once_and_mates_train_on(monkeypatch):
    """A pair whose held-out loss turns NaN at epoch 2 stops there (not after `patience` more
    epochs); its batch mates are unaffected; init_val_loss is recorded for every pair."""
    import lmi_distributed.estimators.training as training

    xtr, ytr, xva, yva = (t.double() for t in _problem(2, seed=3))
    spec = NetSpec.for_dims(5, 4, 8, hidden=16)
    kw = dict(batch_size=64, lr=1e-3, max_epochs=6, patience=30)
    ref = train_pairs(xtr, ytr, xva, yva, spec, [1, 2], **kw)
    calls = []
    real = training.held_out_loss

    def poisoned(model, x, y, self_weight=1.0):
        out = real(model, x, y, self_weight)
        calls.append(out.shape[0])
        if len(calls) == 4 and out.shape[0] == 2:      # call 1 is the initial weights: epoch 2
            out[0] = float("nan")
        return out

    monkeypatch.setattr(training, "held_out_loss", poisoned)
    res = train_pairs(xtr, ytr, xva, yva, spec, [1, 2], **kw)
    assert res.epochs.tolist() == [3, 6]
    assert np.isnan(res.val_loss[0][2]) and res.best_epoch[0] == 1
    np.testing.assert_array_equal(res.val_loss[1], ref.val_loss[1])    # float64, same shapes: exact
    assert res.init_val_loss.shape == (2,)
    assert all(res.init_val_loss[p] > ref.val_loss[p].min() for p in range(2))   # training helped
    from lmi_distributed.estimators.diagnostics import training_status
    assert training_status(res.train_loss[0], res.val_loss[0], int(res.best_epoch[0]),
                           float(res.init_val_loss[0])) == ("diverged", "non-finite held-out loss at epoch 2 (0-based)")
    assert training_status(res.train_loss[1], res.val_loss[1], int(res.best_epoch[1]),
                           float(res.init_val_loss[1])) == ("ok", "")


def test_training_status_never_improved_and_no_best_epoch():
    from lmi_distributed.estimators.diagnostics import training_status

    st, detail = training_status(np.array([1.0, 1.2]), np.array([2.5, 2.6]), 0, 2.0)
    assert st == "diverged" and "never improved on the initial weights (initial 2, best 2.5)" in detail
    assert training_status(np.array([1.0]), np.array([1.0]), -1, 2.0)[0] == "diverged"
    assert training_status(np.array([1.0, np.inf]), np.array([1.0, 0.9]), 1, 2.0) == \
        ("diverged", "non-finite training loss at epoch 1 (0-based)")
    assert training_status(np.array([1.0]), np.array([1.5]), 0, 2.0) == ("ok", "")
