"""Tests for hsens_jax.data.synthetic: Runge's function (checked against the formula, with
calibrated noise) and the Bateman decay chain (against scipy's solve_ivp, the closed Bateman
formula, the equal-rate analytic limit and scipy.linalg.expm)."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import solve_ivp

from hsens_jax.data import bateman, bateman_solution, runge

# ----------------------------------------------------------------------------- runge


def test_runge():
    d = runge(500, seed=1, val_fraction=0.2)
    assert d.task == "regression" and d.n_classes is None and d.output_dim == 1
    assert d.x_train.shape == (400, 1) and d.y_train.shape == (400, 1)
    assert d.x_train.dtype == np.float32 and d.y_val.dtype == np.float32
    x = np.concatenate([d.x_train, d.x_val]).astype(np.float64)
    y = np.concatenate([d.y_train, d.y_val]).astype(np.float64)
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(y, 1 / (1 + 25 * (x - 0.5) ** 2), rtol=1e-6)
    assert stats.kstest(x.ravel(), "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(runge(500, seed=1).x_train, d.x_train)
    assert not np.array_equal(runge(500, seed=2).x_train, d.x_train)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        runge(10, noise=-1)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        runge(0)


def test_runge_noise_is_calibrated():
    d = runge(20000, noise=0.1, seed=4, val_fraction=0.0)
    x, y = d.x_train.astype(np.float64), d.y_train.astype(np.float64)
    r = (y - 1 / (1 + 25 * (x - 0.5) ** 2)).ravel()
    # N(0, 0.1^2): KS on the standardized residuals; mean and std within 4 standard errors
    assert stats.kstest(r / 0.1, "norm").pvalue > 1e-3
    assert abs(r.mean()) < 4 * 0.1 / math.sqrt(r.size)
    assert abs(r.std() - 0.1) < 4 * 0.1 / math.sqrt(2 * r.size)


# ----------------------------------------------------------------------------- Bateman


def bateman_closed_form(rates, t):
    """Bateman (1910): N_k(t) = (prod_{i<k} l_i) sum_{i<=k} exp(-l_i t) / prod_{j<=k, j!=i} (l_j - l_i)."""
    m = len(rates)
    out = np.zeros(m)
    for k in range(m):
        pre = np.prod(rates[:k])
        s = 0.0
        for i in range(k + 1):
            den = np.prod([rates[j] - rates[i] for j in range(k + 1) if j != i])
            s += np.exp(-rates[i] * t) / den
        out[k] = pre * s
    return out


def bateman_ode(rates, t):
    m = len(rates)

    def f(_, N):
        dN = -rates * N
        dN[1:] += rates[:-1] * N[:-1]
        return dN

    y0 = np.zeros(m)
    y0[0] = 1.0
    if t == 0:
        return y0
    sol = solve_ivp(f, (0, t), y0, method="LSODA", rtol=1e-11, atol=1e-13)
    return sol.y[:, -1]


def test_bateman_solution_matches_ode_and_closed_form():
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 5):
        for _ in range(3):
            rates = rng.uniform(0.1, 2.0, m)
            t = rng.uniform(0, 5)
            N = bateman_solution(rates, t)
            assert N.shape == (m,)
            np.testing.assert_allclose(N, bateman_ode(rates, t), rtol=1e-7, atol=1e-10)
            np.testing.assert_allclose(N, bateman_closed_form(rates, t), rtol=1e-9, atol=1e-12)
    # first nuclide: pure exponential decay
    np.testing.assert_allclose(bateman_solution([0.7, 1.3], 2.0)[0], np.exp(-1.4), rtol=1e-13)


def test_bateman_solution_equal_and_near_equal_rates():
    """Equal rates: N_k(t) = (l t)^(k-1) / (k-1)! exp(-l t); the closed form divides by zero there,
    and near-equal rates (1e-9 apart) must stay continuous with that limit."""
    lam, t = 0.8, 2.5
    ref = np.array([(lam * t) ** k / math.factorial(k) * np.exp(-lam * t) for k in range(4)])
    np.testing.assert_allclose(bateman_solution(np.full(4, lam), t), ref, rtol=1e-12)
    near = lam + np.array([0, 1e-9, 2e-9, 3e-9])
    np.testing.assert_allclose(bateman_solution(near, t), ref, rtol=1e-7)
    np.testing.assert_allclose(bateman_solution(near, t), bateman_ode(near, t), rtol=1e-7)


def test_bateman_solution_batched_and_conservation():
    rng = np.random.default_rng(1)
    rates = rng.uniform(0.1, 2.0, (7, 3))
    t = rng.uniform(0, 5, 7)
    N = bateman_solution(rates, t)
    assert N.shape == (7, 3)
    for i in range(7):
        np.testing.assert_allclose(N[i], bateman_solution(rates[i], t[i]), rtol=1e-14)
    assert np.all(N >= 0) and np.all(N.sum(axis=1) <= 1 + 1e-12)
    # reference library: scipy.linalg.expm of the bidiagonal rate matrix, one chain at a time
    from scipy.linalg import expm

    for i in range(7):
        A = np.diag(-rates[i]) + np.diag(rates[i, :-1], k=-1)
        np.testing.assert_allclose(N[i], expm(A * t[i])[:, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(bateman_solution(rates, 0.0), np.tile([1.0, 0, 0], (7, 1)))
    # broadcasting one chain against several times
    N2 = bateman_solution(rates[0], t)
    assert N2.shape == (7, 3)
    with pytest.raises(ValueError, match="rates must be finite and positive"):
        bateman_solution([1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="t must be finite and >= 0"):
        bateman_solution([1.0], -1.0)


def test_bateman_dataset():
    d = bateman(300, n_nuclides=4, rate_range=(0.2, 1.5), t_range=(1.0, 3.0), seed=3)
    assert d.task == "regression" and d.input_shape == (5,) and d.output_dim == 4
    assert d.n_train == 240 and d.n_val == 60
    x = np.concatenate([d.x_train, d.x_val]).astype(np.float64)
    y = np.concatenate([d.y_train, d.y_val]).astype(np.float64)
    assert x[:, :4].min() >= 0.2 and x[:, :4].max() <= 1.5
    assert x[:, 4].min() >= 1.0 and x[:, 4].max() <= 3.0
    for i in range(0, 300, 37):
        np.testing.assert_allclose(y[i], bateman_closed_form(x[i, :4], x[i, 4]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bateman(300, n_nuclides=4, rate_range=(0.2, 1.5),
                                          t_range=(1.0, 3.0), seed=3).y_val, d.y_val)
    with pytest.raises(ValueError, match="rate_range must satisfy 0 < low < high"):
        bateman(10, rate_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="t_range must satisfy 0 <= low < high"):
        bateman(10, t_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="n_nuclides must be a positive integer"):
        bateman(10, n_nuclides=0)

