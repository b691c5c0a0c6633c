"""Tests of the analytic test functions and their exact indices (independent quadrature)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.sensitivity.test_functions import (
    g_function,
    g_function_indices,
    ishigami,
    ishigami_indices,
)


def test_ishigami_values_vmappable_and_differentiable():
    x = jnp.array([0.3, -1.2, 2.0])
    expect = np.sin(0.3) + 7 * np.sin(-1.2) ** 2 + 0.1 * 2.0**4 * np.sin(0.3)
    np.testing.assert_allclose(ishigami(x), expect, rtol=1e-6)
    X = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(jax.vmap(ishigami)(X), ishigami(X), rtol=1e-6)
    g = jax.grad(ishigami)(x)
    np.testing.assert_allclose(g[1], 7 * 2 * np.sin(-1.2) * np.cos(-1.2), rtol=1e-5)
    with pytest.raises(ValueError, match="3 columns"):
        ishigami(jnp.zeros((2, 4)))


def test_ishigami_indices_by_quadrature():
    """Partial variances from a tensor Gauss-Legendre rule on [-pi, pi]^3."""
    a, b = 5.0, 0.3
    t, w = np.polynomial.legendre.leggauss(40)
    t, w = t * np.pi, w / 2  # nodes on [-pi, pi], weights of the uniform density
    X1, X2, X3 = np.meshgrid(t, t, t, indexing="ij")
    W = w[:, None, None] * w[None, :, None] * w[None, None, :]
    with jax.enable_x64(True):
        F = np.asarray(ishigami(jnp.asarray(np.stack([X1, X2, X3], -1)), a, b))
    mu = np.sum(W * F)
    V = np.sum(W * (F - mu) ** 2)
    cond = lambda axes: np.sum(W * F, axis=axes) / np.sum(W, axis=axes)  # noqa: E731
    wi = [w, w, w]
    Vi = [np.sum(wi[i] * (cond(tuple(k for k in range(3) if k != i)) - mu) ** 2) for i in range(3)]
    # V_13 = Var(E[F|x1,x3]) - V1 - V3
    m13 = np.sum(W * F, axis=1) / np.sum(W, axis=1)
    V13 = np.sum(w[:, None] * w[None, :] * (m13 - mu) ** 2) - Vi[0] - Vi[2]
    ex = ishigami_indices(a, b)
    np.testing.assert_allclose(ex["V"], V, rtol=1e-8)
    np.testing.assert_allclose(ex["S1"], np.array(Vi) / V, atol=1e-10)
    np.testing.assert_allclose(ex["S2"][0, 2], V13 / V, atol=1e-10)
    np.testing.assert_allclose(ex["ST"], [(Vi[0] + V13) / V, Vi[1] / V, V13 / V], atol=1e-10)


def test_g_function_indices_by_monte_carlo_pick_freeze():
    a = np.array([0.0, 1.0, 4.5, 9.0])
    ex = g_function_indices(a)
    rng = np.random.default_rng(0)
    n = 400_000
    A, B = rng.random((n, 4)), rng.random((n, 4))
    with jax.enable_x64(True):
        fA = np.asarray(g_function(A, a))
        np.testing.assert_allclose(fA.mean(), 1.0, atol=5e-3)
        np.testing.assert_allclose(fA.var(), ex["V"], rtol=0.02)
        for i in range(4):
            Ci = B.copy()
            Ci[:, i] = A[:, i]
            fC = np.asarray(g_function(Ci, a))
            s1 = np.cov(fA, fC)[0, 1] / fA.var()
            assert abs(s1 - ex["S1"][i]) < 0.01
    np.testing.assert_allclose(ex["S1"].sum() + np.nansum(ex["S2"]), 1.0 - 0.0, atol=0.05)
    assert np.all(ex["ST"] >= ex["S1"])
    with pytest.raises(ValueError):
        g_function(jnp.zeros((3, 4)), a[:3])
    with pytest.raises(ValueError):
        g_function_indices([-1.0])
