"""Tests of hsens_jax.sensitivity.dgsm: closed forms, Poincare bound, SALib."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.sensitivity.dgsm import DGSMResult, dgsm, dgsm_indices
from hsens_jax.sensitivity.test_functions import ISHIGAMI_BOUNDS, ishigami, ishigami_indices


def test_quadratic_closed_form_both_methods():
    # f = sum a_i x_i^2 on [0, 1]: df/dx_i = 2 a_i x_i, nu_i = 4 a_i^2 / 3,
    # Var f = sum a_i^2 (1/5 - 1/9) = sum a_i^2 * 4/45
    a = np.array([1.0, 2.0, 0.5, 0.0])
    f = lambda x: jnp.sum(jnp.asarray(a, x.dtype) * x**2)  # noqa: E731
    bounds = np.array([[0.0, 1.0]] * 4)
    nu = 4 * a**2 / 3
    D = np.sum(a**2) * 4 / 45
    with jax.enable_x64(True):
        rg = dgsm(f, bounds, 2**12, method="grad")
        rj = dgsm(f, bounds, 2**12, method="jvp")
    np.testing.assert_allclose(rg.vi, nu, rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(rj.vi, rg.vi, rtol=1e-12)
    with jax.enable_x64(True):
        sub = dgsm(f, bounds, 2**12, method="jvp", inputs=["x3", 0])
    assert sub.names == ("x3", "x1")
    np.testing.assert_allclose(sub.vi, rg.vi[[2, 0]], rtol=1e-12)
    np.testing.assert_allclose(rg.dgsm, nu / (np.pi**2 * D), rtol=2e-3)
    # Poincare bound vs exact ST (additive: ST = S1 = a_i^2 (4/45) / D)
    ST = a**2 * 4 / 45 / D
    assert np.all(rg.ST_upper >= ST - 1e-12)


def test_ishigami_poincare_bound_and_closed_form():
    # df/dx1 = cos x1 (1 + b x3^4), df/dx2 = 2a sin x2 cos x2, df/dx3 = 4 b x3^3 sin x1
    a, b = 7.0, 0.1
    pi = np.pi
    E_x3_8 = pi**8 / 9
    nu = np.array([0.5 * (1 + 2 * b * pi**4 / 5 + b**2 * E_x3_8),
                   4 * a**2 / 8,
                   16 * b**2 * pi**6 / 7 * 0.5])
    with jax.enable_x64(True):
        res = dgsm(ishigami, ISHIGAMI_BOUNDS, 2**14, n_bootstrap=200)
    np.testing.assert_allclose(res.vi, nu, rtol=5e-3)
    ST = ishigami_indices(a, b)["ST"]
    assert np.all(res.ST_upper >= ST)
    assert np.all(res.vi_conf > 0) and np.all(res.dgsm_conf > 0)


def test_matches_salib_on_finite_difference_design():
    from SALib.analyze import dgsm as salib_dgsm
    from SALib.sample import finite_diff

    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": ISHIGAMI_BOUNDS.tolist()}
    n, d = 512, 3
    X = finite_diff.sample(problem, n, delta=0.001, seed=1)
    with jax.enable_x64(True):
        Y = np.asarray(ishigami(jnp.asarray(X)))
        S = salib_dgsm.analyze(problem, X, Y, num_resamples=50, seed=1)
        Yb, Xb = Y[:: d + 1], X[:: d + 1]
        G = np.stack([(Y[j + 1:: d + 1] - Yb) / (X[j + 1:: d + 1, j] - Xb[:, j]) for j in range(d)], 1)
        res = dgsm_indices(G, Yb, ISHIGAMI_BOUNDS, n_bootstrap=300)
    for k in ("vi", "vi_std", "dgsm"):
        np.testing.assert_allclose(getattr(res, k), S[k], rtol=1e-10, err_msg=k)
    # SALib's dgsm_conf is z * std of bootstrapped vi: statistically the same as our vi_conf
    np.testing.assert_allclose(res.vi_conf, S["dgsm_conf"], rtol=0.35)
    assert isinstance(res, DGSMResult)


def test_errors():
    b = np.array([[0.0, 1.0]] * 2)
    with pytest.raises(ValueError, match="gradients"):
        dgsm_indices(np.zeros((4, 3)), np.zeros(4), b)
    with pytest.raises(ValueError, match="Y must"):
        dgsm_indices(np.zeros((4, 2)), np.zeros(5), b)
    with pytest.raises(ValueError, match="method"):
        dgsm(lambda x: x.sum(), b, 8, method="fd")
    with pytest.raises(ValueError, match="inputs"):
        dgsm(lambda x: x.sum(), b, 8, inputs=[5])
    with pytest.raises(ValueError, match="scalar"):
        dgsm(lambda x: x, b, 8)


def test_table_and_default_bootstrap():
    bounds = np.array([[0.0, 1.0], [0.0, 2.0]])
    res = dgsm(lambda x: 3 * x[0] + x[1] ** 2, bounds, 256, names=["a", "b"])
    assert res.vi.shape == (2,) and np.all(np.isfinite(res.dgsm_conf))  # 100 resamples by default
    lines = res.table(digits=3).splitlines()
    assert lines[0] == "DGSM" and lines[1].split() == ["input", "vi", "vi", "std", "ST", "upper", "bound", "+/-"]
    a = lines[2].split()
    assert a[0] == "a" and float(a[1]) == pytest.approx(9.0, abs=1e-3) and float(a[2]) == pytest.approx(0.0, abs=1e-3)
    assert float(a[4]) == round(float(res.dgsm_conf[0]), 3)
    assert dgsm(lambda x: x[0], bounds, 16, n_bootstrap=0).table().splitlines()[2].split()[-1] == "-"
