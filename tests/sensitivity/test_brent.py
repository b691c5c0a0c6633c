"""Tests of the vectorized bounded Brent search against scipy's scalar one."""

import numpy as np
from scipy.optimize import minimize_scalar

from hsens_jax.sensitivity._brent import maximize_bounded


def test_vectorized_search_equals_scipy_bounded_brent_on_each_function():
    rng = np.random.default_rng(0)
    c, w = rng.uniform(0.05, 3.0, 25), rng.uniform(0.3, 4.0, 25)

    def one(x, i):  # smooth, some with a second local maximum
        return np.exp(-w[i] * np.log(x / c[i]) ** 2) * x**0.3 + 0.1 * np.sin(5 * x)

    calls = []

    def batch(xs):
        calls.append(xs.shape)
        return np.array([one(x, i) for i, x in enumerate(xs)])

    x, fx, n_evals = maximize_bounded(batch, 1e-4, 5.0, 25)
    assert all(s == (25,) for s in calls) and n_evals == len(calls)
    for i in range(25):
        ref = minimize_scalar(lambda t: -one(t, i), bounds=(1e-4, 5.0), method="bounded")
        assert abs(x[i] - ref.x) < 1e-8, (i, x[i], ref.x)
        assert abs(fx[i] - one(x[i], i)) < 1e-15
