"""Kernels and bandwidth rules for HSIC sensitivity analysis.

Kernels (all with unit diagonal except the linear one):

* Gaussian (OpenTURNS ``SquaredExponential`` with unit amplitude, R ``sensiHSIC`` ``"rbf"``)::

      k(x, x') = exp(-0.5 * (|x - x'| / theta)^2)

  For a vector ``x`` (several columns, e.g. a pair of inputs or a multivariate output) the
  product of the one-dimensional Gaussian kernels is used, i.e. an anisotropic Gaussian kernel.
* Categorical: ``k(x, x') = 1{x == x'}``.
* Linear: ``k(z, z') = <z, z'>`` (used on the best-fraction indicator of Novello et al. 2023).

Bandwidth rules (functions of the sample, computed once before the estimator):

* ``"std"``: the sample standard deviation with ``ddof=1`` (``Sample.computeStandardDeviation``
  in OpenTURNS and ``sd`` in R ``sensiHSIC``).
* ``"median"``: per column, the median of the pairwise distances ``|x_i - x_j|`` over the
  ``n (n - 1) / 2`` pairs ``i < j``; the diagonal ``i == j`` is excluded, ties between distinct
  rows (zero distances) are included.  Above ``MEDIAN_MAX_ROWS`` rows an evenly strided
  deterministic subsample of at most ``MEDIAN_MAX_ROWS`` rows is used.
* ``"pooled_median"``: Novello et al. (2023): one bandwidth for all inputs, the median of ALL
  ``n^2 d`` absolute differences ``|x_ik - x_jk|`` pooled over the columns ``k``, the diagonal
  ``i == j`` (zeros) included.  Same subsampling rule above ``MEDIAN_MAX_ROWS`` rows.

References: Gretton et al. (2005) "Measuring statistical dependence with Hilbert-Schmidt norms",
ALT; Da Veiga (2015) J. Stat. Comput. Simul. 85:1283-1305; Novello, Poirier, Mozharovskyi et al.
(2023) "Goal-oriented sensitivity analysis of hyperparameters in deep learning", J. Sci. Comput.
94:45.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "MEDIAN_MAX_ROWS",
    "gaussian_kernel",
    "categorical_kernel",
    "linear_kernel",
    "std_bandwidth",
    "median_bandwidth",
    "pooled_median_bandwidth",
    "gram_matrix",
]

#: Above this many rows the median bandwidth rules use a strided subsample of rows.
MEDIAN_MAX_ROWS = 2000


def gaussian_kernel(x, xp, theta):
    """Gaussian kernel ``exp(-0.5 * ((x - xp) / theta)^2)``, elementwise and broadcasting.

    Args:
      x, xp: arrays of the same units (broadcastable).
      theta: bandwidth(s), same units as ``x``, strictly positive (broadcastable).

    Returns:
      Array of kernel values in ``(0, 1]``; equals OpenTURNS ``SquaredExponential(theta)``
      with amplitude 1.
    """
    u = (jnp.asarray(x) - jnp.asarray(xp)) / theta
    return jnp.exp(-0.5 * u * u)


def categorical_kernel(x, xp):
    """Categorical (Dirac) kernel ``1{x == xp}`` as a float array (elementwise, broadcasting)."""
    x = jnp.asarray(x)
    return (x == jnp.asarray(xp)).astype(jnp.result_type(x.dtype, jnp.float32))


def linear_kernel(z, zp):
    """Linear kernel ``<z, zp>`` over the last axis (``z`` (..., k), ``zp`` (..., k))."""
    return jnp.sum(jnp.asarray(z) * jnp.asarray(zp), axis=-1)


def gram_matrix(x, theta=None, kind="gaussian"):
    """Full ``(n, n)`` Gram matrix of one column ``x`` (n,) or columns ``x`` (n, k).

    Convenience for small ``n`` (the estimators in :mod:`hsens_jax.sensitivity.hsic` never build
    it).  ``kind``: ``"gaussian"`` (product over columns, ``theta`` scalar or (k,)),
    ``"categorical"`` (product of indicators) or ``"linear"``.
    """
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if kind == "gaussian":
        if theta is None:
            raise ValueError("theta is required for the Gaussian kernel")
        u = (x[:, None, :] - x[None, :, :]) / jnp.asarray(theta)
        return jnp.exp(-0.5 * jnp.sum(u * u, axis=-1))
    if kind == "categorical":
        return jnp.all(x[:, None, :] == x[None, :, :], axis=-1).astype(x.dtype)
    if kind == "linear":
        return jnp.matmul(x, x.T, precision="highest")
    raise ValueError(f"kind must be 'gaussian', 'categorical' or 'linear', got {kind!r}")


def std_bandwidth(x):
    """Per-column sample standard deviation with ``ddof=1`` (the OpenTURNS / R convention).

    Args:
      x: (n,) or (n, d) array.

    Returns:
      (d,) array (a 0-d array for 1-D input).
    """
    x = jnp.asarray(x)
    return jnp.std(x, axis=0, ddof=1)


def _row_subsample(x, max_rows):
    n = x.shape[0]
    if n <= max_rows:
        return x
    stride = math.ceil(n / max_rows)
    return x[::stride]


@jax.jit
def _median_pairwise(x):
    # x (m, d): median over i<j of |x_i - x_j| per column.
    m = x.shape[0]
    iu, ju = jnp.triu_indices(m, k=1)
    dist = jnp.abs(x[iu] - x[ju])  # (m(m-1)/2, d)
    return jnp.median(dist, axis=0)


def median_bandwidth(x, max_rows=MEDIAN_MAX_ROWS):
    """Per-column median of pairwise distances ``|x_i - x_j|``, ``i < j`` (diagonal excluded).

    Args:
      x: (n,) or (n, d) array, n >= 2.
      max_rows: above this many rows an evenly strided subsample ``x[::ceil(n / max_rows)]``
        is used (deterministic), keeping memory at O(max_rows^2 d).

    Returns:
      (d,) array (0-d for 1-D input) in the units of ``x``.
    """
    x = jnp.asarray(x)
    one_d = x.ndim == 1
    x2 = x[:, None] if one_d else x
    out = _median_pairwise(_row_subsample(x2, max_rows))
    return out[0] if one_d else out


@jax.jit
def _pooled_median(x):
    dist = jnp.abs(x[:, None, :] - x[None, :, :])  # (m, m, d), diagonal zeros included
    return jnp.median(dist.reshape(-1))


def pooled_median_bandwidth(x, max_rows=MEDIAN_MAX_ROWS):
    """Novello et al. (2023) bandwidth: median of ALL pooled ``|x_ik - x_jk|``, zeros included.

    The median is over the ``n^2 d`` values for all ordered pairs ``(i, j)`` (the diagonal
    ``i == j`` included) and all columns ``k`` pooled together; the inputs are expected to be
    normalized already (``hsens_jax.space.Space.normalize(configs, method="novello")``).

    Args:
      x: (n, d) array.
      max_rows: strided row subsample above this many rows (see :func:`median_bandwidth`).

    Returns:
      0-d array: one bandwidth shared by all inputs.
    """
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    return _pooled_median(_row_subsample(x, max_rows))
