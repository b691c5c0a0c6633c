"""Tests of hsens_jax.sensitivity.kernels against NumPy / SciPy."""

import numpy as np
import pytest
import scipy.spatial.distance

import jax
import jax.numpy as jnp

from hsens_jax.sensitivity.kernels import (
    categorical_kernel,
    gaussian_kernel,
    gram_matrix,
    linear_kernel,
    median_bandwidth,
    pairwise_distance_order_statistic,
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


def test_median_bandwidth_exact_at_large_n_without_forming_the_distances():
    rng = np.random.default_rng(4)
    n = 2500  # above the old subsampling threshold: now exact
    x = np.linspace(0.0, 1.0, n)[:, None] ** 2
    x = np.concatenate([x, rng.integers(0, 7, (n, 1)).astype(float)], axis=1)  # many ties
    with jax.enable_x64(True):
        m = median_bandwidth(x)
    ref = [np.median(scipy.spatial.distance.pdist(x[:, [i]])) for i in range(2)]
    np.testing.assert_array_equal(m, ref)
    # float32: the median of the float32 distances, bit for bit
    x32 = x.astype(np.float32)
    iu = np.triu_indices(n, 1)
    ref32 = [np.median(np.abs(x32[:, None, i] - x32[None, :, i])[iu]) for i in range(2)]
    np.testing.assert_array_equal(median_bandwidth(x32), np.asarray(ref32, np.float32))
    # the strided subsample, when asked for
    with jax.enable_x64(True):
        ms = median_bandwidth(x[:, :1], max_rows=1000)
    np.testing.assert_allclose(ms, [np.median(scipy.spatial.distance.pdist(x[::3, :1]))],
                               rtol=1e-14)


@pytest.mark.parametrize("n", [2, 3, 4, 9, 41])
def test_pairwise_order_statistics_every_rank(n):
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=(n, 2)), 1)  # ties and zero distances
    d = np.sort(np.concatenate([scipy.spatial.distance.pdist(x[:, [i]]) for i in range(2)]))
    with jax.enable_x64(True):
        got = [pairwise_distance_order_statistic(x, k) for k in range(d.size)]
        with pytest.raises(ValueError, match="out of range"):
            pairwise_distance_order_statistic(x, d.size)
    np.testing.assert_array_equal(got, d)


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
    x = rng.uniform(size=(3001, 2))  # large n: exact, no subsample
    with jax.enable_x64(True):
        m = pooled_median_bandwidth(x)
    d = np.concatenate([scipy.spatial.distance.pdist(x[:, [i]]) for i in range(2)])
    full = np.concatenate([np.zeros(2 * 3001), d, d])  # ordered pairs and the diagonal
    assert float(m) == np.median(full)
