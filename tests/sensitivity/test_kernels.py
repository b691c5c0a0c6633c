"""Tests of hsens_jax.sensitivity.kernels against NumPy / SciPy."""

import numpy as np
import pytest
import scipy.spatial.distance

import jax
import jax.numpy as jnp

from hsens_jax.sensitivity.kernels import (
    MEDIAN_MAX_ROWS,
    categorical_kernel,
    gaussian_kernel,
    gram_matrix,
    linear_kernel,
    median_bandwidth,
    pooled_median_bandwidth,
    std_bandwidth,
)


def test_gaussian_kernel_values():
    with jax.enable_x64(True):
        v = gaussian_kernel(jnp.array([0.0, 1.0, 3.0]), 1.0, 2.0)
    np.testing.assert_allclose(v, np.exp(-0.5 * (np.array([-1.0, 0.0, 2.0]) / 2.0) ** 2),
                               rtol=1e-15)
    assert float(gaussian_kernel(0.3, 0.3, 0.1)) == 1.0


def test_categorical_and_linear_kernels():
    np.testing.assert_array_equal(categorical_kernel(jnp.array([1, 2, 2]), 2), [0, 1, 1])
    np.testing.assert_allclose(linear_kernel(jnp.array([[1.0, 2.0]]), jnp.array([[3.0, 4.0]])),
                               [11.0])


def test_gram_matrix_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    with jax.enable_x64(True):
        G = gram_matrix(x, theta=np.array([0.5, 2.0]))
        C = gram_matrix(np.array([0, 1, 0]), kind="categorical")
        Lk = gram_matrix(x, kind="linear")
    ref = np.exp(-0.5 * (((x[:, None, 0] - x[None, :, 0]) / 0.5) ** 2
                         + ((x[:, None, 1] - x[None, :, 1]) / 2.0) ** 2))
    np.testing.assert_allclose(G, ref, rtol=1e-13)
    np.testing.assert_array_equal(C, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_allclose(Lk, x @ x.T, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="theta"):
        gram_matrix(x)
    with pytest.raises(ValueError, match="kind"):
        gram_matrix(x, 1.0, kind="laplace")


def test_std_bandwidth_ddof1():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    with jax.enable_x64(True):
        np.testing.assert_allclose(std_bandwidth(x), x.std(0, ddof=1), rtol=1e-13)


def test_median_bandwidth_excludes_diagonal():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 3))
    x[5] = x[6]  # a tie between distinct rows: its zero distance is included
    with jax.enable_x64(True):
        m = median_bandwidth(x)
        m1 = median_bandwidth(x[:, 0])
    ref = [np.median(scipy.spatial.distance.pdist(x[:, [i]])) for i in range(3)]
    np.testing.assert_allclose(m, ref, rtol=1e-13)
    np.testing.assert_allclose(m1, ref[0], rtol=1e-13)


def test_median_bandwidth_subsample_rule():
    n = MEDIAN_MAX_ROWS + 500
    x = np.linspace(0.0, 1.0, n)[:, None] ** 2
    with jax.enable_x64(True):
        m = median_bandwidth(x)
    sub = x[:: int(np.ceil(n / MEDIAN_MAX_ROWS))]
    np.testing.assert_allclose(m, [np.median(scipy.spatial.distance.pdist(sub))], rtol=1e-12)


def test_pooled_median_includes_zeros_and_pools_columns():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(20, 3))
    with jax.enable_x64(True):
        m = pooled_median_bandwidth(x)
    ref = np.median(np.abs(x[:, None, :] - x[None, :, :]))  # 20*20*3 values incl. diagonal
    np.testing.assert_allclose(m, ref, rtol=1e-13)
    iu = np.triu_indices(20, 1)
    no_diag = np.median(np.abs(x[:, None, :] - x[None, :, :])[iu])
    assert abs(float(m) - no_diag) > 1e-6  # the convention matters
