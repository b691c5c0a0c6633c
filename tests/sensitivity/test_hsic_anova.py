"""Tests of hsens_jax.sensitivity.hsic_anova against an independent float64 NumPy implementation of
the textbook formulas, the exact ANOVA identity, the package's V-statistic HSIC, and known cases."""

import numpy as np
import pytest

import jax

from hsens_jax.sensitivity.hsic import best_fraction, hsic
from hsens_jax.sensitivity.hsic_anova import hsic_anova


def _np_anova(X, y, theta, theta_y=None):
    """Full n x n matrices: K0_i = H K_i H, Lc = H L H; HSIC_i, HSIC_ij, HSIC_total / n^2, and
    the third-order terms (for the identity sum of all terms = total)."""
    n, d = X.shape
    H = np.eye(n) - 1.0 / n
    K0 = [H @ np.exp(-0.5 * ((X[:, None, i] - X[None, :, i]) / theta[i]) ** 2) @ H for i in range(d)]
    L = np.outer(y, y) if theta_y is None else np.exp(-0.5 * ((y[:, None] - y[None]) / theta_y) ** 2)
    Lc = H @ L @ H
    first = np.array([np.sum(K * Lc) for K in K0]) / n**2
    second = np.array([[np.sum(K0[i] * K0[j] * Lc) for j in range(d)] for i in range(d)]) / n**2
    third = sum(np.sum(K0[i] * K0[j] * K0[k] * Lc) for i in range(d) for j in range(i + 1, d)
                for k in range(j + 1, d)) / n**2
    total = np.sum((np.prod([1.0 + K for K in K0], axis=0) - 1.0) * Lc) / n**2
    return first, second, third, total


def _sample(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 3))
    y = 4 * (X[:, 0] - 0.5) * (X[:, 1] - 0.5) + X[:, 2] ** 2 + 0.05 * rng.normal(size=n)
    return X, y


def test_matches_the_textbook_formulas_in_float64_with_any_block_size():
    X, y = _sample()
    theta = X.std(0, ddof=1)
    first, second, third, total = _np_anova(X, y, theta, y.std(ddof=1))
    with jax.enable_x64(True):
        for block in (7, 60, None):
            r = hsic_anova(X, y, block_size=block)
            np.testing.assert_allclose(r.hsic_first, first, rtol=1e-10)
            off = ~np.eye(3, dtype=bool)
            np.testing.assert_allclose(r.hsic_second[off], second[off], rtol=1e-10)
            np.testing.assert_allclose(r.hsic_total, total, rtol=1e-10)
    # the decomposition is exact: 3 first-order + 3 second-order + 1 third-order terms = total
    assert first.sum() + second[np.triu_indices(3, 1)].sum() + third == pytest.approx(total, rel=1e-10)
    assert r.first.sum() + r.second[np.triu_indices(3, 1)].sum() < 1.0
    # first-order terms are the package's V-statistic HSIC
    with jax.enable_x64(True):
        np.testing.assert_allclose(r.hsic_first, np.asarray(hsic(X, y, estimator="V").hsic), rtol=1e-10)


def test_float32_and_goal_oriented_linear_kernel():
    X, y = _sample(n=80, seed=1)
    w = np.asarray(best_fraction(0.2)(y), float)
    # the authors' median per input, zeros of the diagonal included (as hsic's kernels)
    pooled = np.median(np.abs(X[:, None, :] - X[None, :, :]), axis=(0, 1))
    first, second, _, total = _np_anova(X, w, pooled)
    r = hsic_anova(X, y, bandwidth="pooled_median", target=best_fraction(0.2), block_size=16)
    np.testing.assert_allclose(r.hsic_first, first, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(r.hsic_total, total, rtol=2e-4)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(r.hsic_second[off], second[off], rtol=2e-3, atol=1e-7)
    assert np.isnan(r.output_bandwidth) and np.isnan(np.diag(r.second)).all()


def test_the_second_order_index_is_an_interaction_not_a_main_effect():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(200, 3))
    pure = hsic_anova(X, (X[:, 0] - 0.5) * (X[:, 1] - 0.5))
    main = hsic_anova(X, X[:, 0])
    assert pure.second[0, 1] > 0.4 and pure.second[0, 1] > 20 * max(pure.second[0, 2], pure.second[1, 2])
    # an input paired with pure noise has no interaction (the product-kernel "pair R2 minus the
    # first-order R2" is -0.35 here)
    assert main.first[0] > 0.95 and np.nanmax(main.second) < 0.01
    assert (pure.hsic_second[~np.eye(3, dtype=bool)] >= 0).all()


def test_bad_inputs_are_named():
    X, y = _sample(n=10)
    with pytest.raises(ValueError, match="X must be 2-D"):
        hsic_anova(X[:, 0], y)
    with pytest.raises(ValueError, match="Y must have shape"):
        hsic_anova(X, y[:5])
    with pytest.raises(ValueError, match="n >= 4"):
        hsic_anova(X[:3], y[:3])
    with pytest.raises(ValueError, match="Y has NaN"):
        hsic_anova(X, np.where(np.arange(10) == 2, np.nan, y))
    with pytest.raises(ValueError, match="bandwidth must be"):
        hsic_anova(X, y, bandwidth="silverman")
    with pytest.raises(ValueError, match="block_size"):
        hsic_anova(X, y, block_size=0)
    flat = hsic_anova(X, np.ones(10))
    assert np.isnan(flat.first).all() and flat.hsic_total == 0
