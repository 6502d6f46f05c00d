"""KSG estimator: closed-form Gaussian MI, strict counting, OOS identities, validation."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.special import digamma

from lmi_distributed.errors import InputError
from lmi_distributed.estimators.ksg import ksg_mi, ksg_pmi, oos_pmi

from ksg_reference import reference_pmi  # noqa: E402

LATENTMI_PY = Path(__file__).resolve().parents[2] / ".venv-latentmi" / "bin" / "python"


def gaussian_pair(n, rho, seed, dims=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dims))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dims))
    return x, y


def test_gaussian_closed_form_1d():
    # rho = 0.6: truth -1/2 log2(1 - 0.36) = 0.3219 bits. KSG-1 with N=2000, k=3 has a
    # standard deviation of ~0.02 bits and a bias of a few hundredths in 1+1 dims; 0.06 bits
    # is > 2.5 sd away from both the truth and the estimate, while a wrong digamma argument
    # (n instead of n+1) or non-strict counts shift the estimate by >= 0.1 bits.
    truth = -0.5 * math.log2(1 - 0.36)
    vals = [ksg_mi(*gaussian_pair(2000, 0.6, seed)) for seed in range(3)]
    assert abs(np.mean(vals) - truth) < 0.04
    assert all(abs(v - truth) < 0.08 for v in vals)
    # independent data: near zero
    x, y = gaussian_pair(2000, 0.0, 7)
    assert abs(ksg_mi(x, y)) < 0.05


def test_gaussian_closed_form_multidim():
    # 3 independent dims with rho=0.8 each: truth = 3 * -1/2 log2(0.36) = 2.21 bits;
    # KSG is biased low in higher joint dimension, so the band is one-sided-ish and wide.
    truth = 3 * -0.5 * math.log2(1 - 0.64)
    est = ksg_mi(*gaussian_pair(2000, 0.8, 3, dims=3))
    assert truth - 0.35 < est < truth + 0.1


def test_pmi_mean_is_mi_and_matches_reference():
    x, y = gaussian_pair(300, 0.7, 1, dims=2)
    p = ksg_pmi(x, y)
    assert p.shape == (300,) and p.dtype == np.float64
    assert ksg_mi(x, y) == pytest.approx(p.mean(), abs=1e-12)
    np.testing.assert_allclose(p, reference_pmi(x, y), rtol=0, atol=1e-12)
    for backend in ("tree", "tiled"):
        np.testing.assert_array_equal(ksg_pmi(x, y, backend=backend), p)


def test_k_parameter_matches_reference():
    x, y = gaussian_pair(200, 0.5, 2, dims=2)
    for k in (1, 2, 5):
        np.testing.assert_allclose(ksg_pmi(x, y, k=k), reference_pmi(x, y, k=k), atol=1e-12)


def test_strict_counts_hand_example():
    # 1-D x and y. Points (x, y): A(0,0) B(0,0) C(1,0) D(1,5) E(2,2); k = 1.
    x = np.array([[0.0], [0.0], [1.0], [1.0], [2.0]])
    y = np.array([[0.0], [0.0], [0.0], [5.0], [2.0]])
    # A: nearest joint neighbour B at 0 -> eps 0 -> nx = ny = 0 (strict: nothing is < 0)
    # C: joint distances A 1, B 1, D 5, E 2 -> eps 1; nx = #{|x - 1| < 1, j != C} = {D} = 1
    #    (A, B at exactly 1 are NOT counted); ny = #{|y| < 1} = {A, B} = 2
    # D: distances A 5, B 5, C 5, E 3 -> eps 3; nx = {A,B,C,E} = 4; ny = {E} (|5-2|=3 not <3) = 0
    # E: distances A 2, B 2, C 2, D 3 -> eps 2; nx = {C, D} = 2; ny = {} = 0
    nx = np.array([0, 0, 1, 4, 2])
    ny = np.array([0, 0, 2, 0, 0])
    expect = (digamma(1) + digamma(5) - digamma(nx + 1) - digamma(ny + 1)) / math.log(2)
    for backend in ("tree", "tiled"):
        np.testing.assert_allclose(ksg_pmi(x, y, k=1, backend=backend, ties="allow"), expect, atol=1e-12)
        with pytest.raises(InputError, match=r"2 of 5 points have their k-th \(k=1\) joint neighbour at distance 0"):
            ksg_pmi(x, y, k=1, backend=backend)          # A and B tie: refused by default
    np.testing.assert_allclose(reference_pmi(x, y, k=1), expect, atol=1e-12)


def test_strictness_is_exact_not_epsilon_shifted():
    # Neighbour at exactly eps in x is excluded; one at nextafter(eps, 0) is included.
    e = 0.3
    x = np.array([[0.0], [e], [np.nextafter(e, 0.0)], [5.0]])
    y = np.array([[0.0], [0.0], [10.0], [0.0]])
    # point 0, k=1: joint distances: 1 -> 0.3, 2 -> 10, 3 -> 5 => eps = 0.3
    # nx(0) = #{|x_j| < 0.3} = {2} = 1 (x=0.3 itself excluded, x just below included)
    # ny(0) = #{|y_j| < 0.3} = {1, 3} = 2
    p = ksg_pmi(x, y, k=1, backend="tree")
    expect0 = (digamma(1) + digamma(4) - digamma(2) - digamma(3)) / math.log(2)
    assert p[0] == pytest.approx(expect0, abs=1e-12)
    np.testing.assert_array_equal(p, ksg_pmi(x, y, k=1, backend="tiled"))


def test_noise_is_seeded_and_optional():
    x, y = gaussian_pair(200, 0.5, 4)
    xr, yr = np.round(x, 1), np.round(y, 1)
    a = ksg_pmi(xr, yr, noise=1e-6, seed=3)
    b = ksg_pmi(xr, yr, noise=1e-6, seed=3)
    c = ksg_pmi(xr, yr, noise=1e-6, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, ksg_pmi(xr, yr))  # ties matter without noise
    np.testing.assert_array_equal(ksg_pmi(x, y, noise=0.0, seed=5), ksg_pmi(x, y))


def test_oos_leave_one_out_identity():
    x, y = gaussian_pair(150, 0.6, 5, dims=2)
    p = ksg_pmi(x, y)
    for i in (0, 17, 149):
        keep = np.arange(150) != i
        q = oos_pmi(x[keep], y[keep], x[i:i + 1], y[i:i + 1])
        assert q.shape == (1,)
        assert q[0] == pytest.approx(p[i], abs=1e-12)


def test_oos_latentmi_convention_equals_insample_on_reference():
    x, y = gaussian_pair(200, 0.6, 6, dims=2)
    p = ksg_pmi(x, y)
    for backend in ("tree", "tiled"):
        q = oos_pmi(x, y, x, y, convention="latentmi", backend=backend)
        np.testing.assert_allclose(q, p, atol=1e-12)


def test_oos_backends_agree_and_reference():
    rng = np.random.default_rng(8)
    rx, ry = np.round(rng.standard_normal((120, 2)), 1), np.round(rng.standard_normal((120, 3)), 1)
    qx, qy = np.round(rng.standard_normal((40, 2)), 1), np.round(rng.standard_normal((40, 3)), 1)
    for conv in ("insert", "latentmi"):
        a = oos_pmi(rx, ry, qx, qy, convention=conv, backend="tree")
        b = oos_pmi(rx, ry, qx, qy, convention=conv, backend="tiled")
        np.testing.assert_array_equal(a, b)
    # insert convention by brute force
    k = 3
    dx = np.abs(qx[:, None] - rx[None]).max(-1)
    dy = np.abs(qy[:, None] - ry[None]).max(-1)
    eps = np.sort(np.maximum(dx, dy), 1)[:, k - 1]
    mx, my = (dx < eps[:, None]).sum(1), (dy < eps[:, None]).sum(1)
    expect = (digamma(k) + digamma(121) - digamma(mx + 1) - digamma(my + 1)) / math.log(2)
    np.testing.assert_allclose(oos_pmi(rx, ry, qx, qy), expect, atol=1e-12)


@pytest.mark.parametrize("bad", [
    dict(zx=np.zeros(10), zy=np.zeros((10, 1))),
    dict(zx=np.zeros((10, 1)), zy=np.zeros((9, 1))),
    dict(zx=np.full((10, 1), np.nan), zy=np.zeros((10, 1))),
    dict(zx=np.full((10, 1), np.inf), zy=np.zeros((10, 1))),
    dict(zx=np.zeros((3, 1)), zy=np.zeros((3, 1))),
    dict(zx=np.zeros((10, 0)), zy=np.zeros((10, 1))),
    dict(zx=np.array([["a"]] * 10), zy=np.zeros((10, 1))),
])
def test_bad_inputs_raise_input_error(bad):
    with pytest.raises(InputError):
        ksg_pmi(bad["zx"], bad["zy"], k=3)


def test_bad_options_raise_input_error():
    x, y = gaussian_pair(50, 0.5, 0)
    with pytest.raises(InputError):
        ksg_pmi(x, y, k=0)
    with pytest.raises(InputError):
        ksg_pmi(x, y, noise=-1.0)
    with pytest.raises(InputError):
        ksg_pmi(x, y, backend="nope")
    with pytest.raises(InputError):
        oos_pmi(x, y, x[:, :0], y, k=3)
    with pytest.raises(InputError):
        oos_pmi(x, y, x, y, convention="other")
    with pytest.raises(InputError, match="zx"):
        ksg_pmi(np.full((50, 1), np.nan), y)


def _latentmi(code: str, arrays: dict) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for name, a in arrays.items():
            np.save(Path(d) / f"{name}.npy", a)
        script = (
            "import json, sys, numpy as np\n"
            "from latentmi import ksg\n"
            "ksg.add_noise = lambda x, intens=1e-10: x\n"
            f"d = {str(d)!r}\n"
            "L = lambda n: np.load(d + '/' + n + '.npy')\n" + code
        )
        out = subprocess.run([str(LATENTMI_PY), "-c", script], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not LATENTMI_PY.exists(), reason="latentmi reference venv not present")
def test_agrees_with_latentmi_noise_off():
    x, y = gaussian_pair(400, 0.6, 9, dims=3)
    qx, qy = gaussian_pair(50, 0.6, 10, dims=3)
    res = _latentmi(
        "p = ksg.mi(L('x'), L('y'), k=3)\n"
        "q = ksg.out_of_sample_pmi(L('x'), L('y'), L('qx'), L('qy'), k=3)\n"
        "print(json.dumps({'p': p.tolist(), 'q': q.tolist()}))\n",
        dict(x=x, y=y, qx=qx, qy=qy))
    np.testing.assert_allclose(ksg_pmi(x, y), res["p"], atol=1e-9)
    np.testing.assert_allclose(oos_pmi(x, y, qx, qy, convention="latentmi"), res["q"], atol=1e-9)
