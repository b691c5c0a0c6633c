"""Kernels and bandwidth rules for HSIC sensitivity analysis.

Kernels (all with unit diagonal except the linear one):

* Gaussian (OpenTURNS ``SquaredExponential`` with unit amplitude, R ``sensiHSIC`` ``"rbf"``)::

      k(x, x') = exp(-0.5 * (|x - x'| / theta)^2)

  For a vector ``x`` (several columns, e.g. a pair of inputs or a multivariate output) the
  product of the one-dimensional Gaussian kernels is used, i.e. an anisotropic Gaussian kernel.
* Categorical: ``k(x, x') = 1{x == x'}``.
* Linear: ``k(z, z') = <z, z'>`` (used on the best-fraction indicator of Novello et al. 2023).

Bandwidth rules (functions of the sample, computed once before the estimator, on the host):

* ``"std"``: the sample standard deviation with ``ddof=1`` (``Sample.computeStandardDeviation``
  in OpenTURNS and ``sd`` in R ``sensiHSIC``).
* ``"median"``: per column, the median of the pairwise distances ``|x_i - x_j|`` over the
  ``n (n - 1) / 2`` pairs ``i < j``; the diagonal ``i == j`` is excluded, ties between distinct
  rows (zero distances) are included.
* ``"pooled_median"``: Novello et al. (2023), ``np.median(np.abs(XX))`` of their ``hsic.py``:
  the median of ALL ``n^2 c`` absolute differences ``|x_ik - x_jk|`` of the ``c`` columns given,
  ordered pairs ``(i, j)`` and the diagonal ``i == j`` (zeros) included, pooled over the
  columns.  The authors call their estimator once per input (``c = 1``) or per pair of inputs
  (``c = 2``), so the HSIC functions apply it per kernel, never across all inputs.

Both medians are exact at any ``n`` (no subsample): the k-th smallest of the ``n (n - 1) / 2``
distances of a sorted column is found by bisection on its value, counting the pairs below a
threshold in ``O(n log n)`` (``np.searchsorted`` plus an exact check of the boundary pairs),
until at most ``8 n`` pairs remain between the bracket ends, which are then listed and
selected with ``np.partition``.  Cost ``O(n log n log(range / spacing))`` time and ``O(n)``
memory per column, against ``O(n^2)`` for sorting (or partitioning) all distances: measured
in ``benchmarks/bench_median.py``.  The distances are those of the working precision
(``|x_i - x_j|`` rounded to float32, or float64 under ``jax_enable_x64``), exactly as a
float32/float64 NumPy median of the same distances would see them.

References: Gretton et al. (2005) "Measuring statistical dependence with Hilbert-Schmidt norms",
ALT; Da Veiga (2015) J. Stat. Comput. Simul. 85:1283-1305; Novello, Poette, Lugato & Congedo
(2023) "Goal-oriented sensitivity analysis of hyperparameters in deep learning", J. Sci. Comput.
94:45.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "gaussian_kernel",
    "categorical_kernel",
    "linear_kernel",
    "std_bandwidth",
    "median_bandwidth",
    "pooled_median_bandwidth",
    "pairwise_distance_order_statistic",
    "gram_matrix",
]

#: Pairs left between the bracket ends, per row, when the bisection stops and lists them.
_LIST_PAIRS_PER_ROW = 8


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


def _working_dtype(dtype):
    """float32, or float64 under jax_enable_x64 (integers and bools become floats)."""
    if not np.issubdtype(dtype, np.floating):
        dtype = float
    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def _as_columns(x):
    """(n,) or (n, d) array-like -> (n, d) NumPy array in the working dtype, and ``one_d``."""
    arr = np.asarray(x)
    arr = np.asarray(arr, dtype=_working_dtype(arr.dtype))
    if arr.ndim == 1:
        return arr[:, None], True
    if arr.ndim != 2:
        raise ValueError(f"x must be (n,) or (n, d), got shape {arr.shape}")
    return arr, False


def _pairs_at_most(cols, t):
    """For each sorted column ``c`` and row ``i``, the first ``j > i`` with
    ``c[j] - c[i] > t`` in the working precision.  Returns (list of (n,) int arrays, count).

    ``np.searchsorted(c, c + t)`` places the boundary up to a rounding of ``c[i] + t``; the
    pairs next to it are then checked with the very subtraction the distances use, so that
    the count is exactly ``#{i < j: fl(c[j] - c[i]) <= t}`` (``fl(c[j] - c[i])`` is
    non-decreasing in ``j`` for a sorted column).
    """
    ends, total = [], 0
    for c in cols:
        n = c.shape[0]
        rows = np.arange(n)
        tt = c.dtype.type(t)
        e = np.searchsorted(c, c + tt, side="right")
        e = np.clip(np.maximum(e, rows + 1), 0, n)
        while True:  # the boundary moves by at most an element or two
            fwd = e < n
            fwd[fwd] = (c[e[fwd]] - c[rows[fwd]]) <= tt
            back = e > rows + 1
            back[back] = (c[e[back] - 1] - c[rows[back]]) > tt
            if not (fwd.any() or back.any()):
                break
            e = e + fwd - back
        ends.append(e)
        total += int(np.sum(e - rows - 1))
    return ends, total


def _kth_distance(cols, k):
    """The k-th smallest (0-based) of the distances ``fl(c[j] - c[i])``, ``i < j``, pooled
    over the sorted columns ``cols`` (exact; see the module docstring)."""
    n_rows = sum(c.shape[0] for c in cols)
    _, c0 = _pairs_at_most(cols, 0.0)
    if k < c0:
        return cols[0].dtype.type(0.0)
    lo, c_lo = 0.0, c0
    hi = float(max(c[-1] - c[0] for c in cols))
    _, c_hi = _pairs_at_most(cols, hi)
    budget = _LIST_PAIRS_PER_ROW * n_rows
    while c_hi - c_lo > budget:
        mid = lo + 0.5 * (hi - lo)
        mid = float(cols[0].dtype.type(mid))  # thresholds in the working precision
        if not lo < mid < hi:  # adjacent values: everything in (lo, hi] equals hi
            return cols[0].dtype.type(hi)
        _, c_mid = _pairs_at_most(cols, mid)
        if c_mid > k:
            hi, c_hi = mid, c_mid
        else:
            lo, c_lo = mid, c_mid
    ends_lo, _ = _pairs_at_most(cols, lo)
    ends_hi, _ = _pairs_at_most(cols, hi)
    cands = []
    for c, a, b in zip(cols, ends_lo, ends_hi):
        cnt = b - a
        i = np.repeat(np.arange(c.shape[0]), cnt)
        j = np.repeat(a - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        cands.append(c[j] - c[i])
    cand = np.concatenate(cands)
    return np.partition(cand, k - c_lo)[k - c_lo]


def pairwise_distance_order_statistic(x, k):
    """The ``k``-th smallest (0-based) pairwise distance ``|x_ik - x_jk|``, ``i < j``, pooled
    over the columns of ``x``, without forming the ``n (n - 1) / 2`` distances.

    Args:
      x: (n,) or (n, c) array; the distances are computed in the working precision.
      k: rank in ``[0, c n (n - 1) / 2)``.

    Returns:
      A NumPy scalar of the working dtype, exactly the value ``np.sort(d)[k]`` of the list
      ``d`` of all distances in that precision.
    """
    xc, _ = _as_columns(x)
    n, c = xc.shape
    total = c * n * (n - 1) // 2
    if not 0 <= k < total:
        raise ValueError(f"k={k} out of range for {total} pairwise distances")
    return _kth_distance([np.sort(xc[:, j]) for j in range(c)], int(k))


def _median_of_pairs(cols, with_diagonal):
    """Median of the pooled distances of sorted columns: pairs ``i < j`` only, or (Novello)
    all ordered pairs with the diagonal zeros, as ``np.median`` of that multiset computes it."""
    n = cols[0].shape[0]
    c = len(cols)
    pairs = c * n * (n - 1) // 2
    if with_diagonal:  # multiset: c n zeros, then every pair distance twice
        size = c * n * n
        zeros = c * n

        def at(r):  # r-th smallest of the multiset
            return cols[0].dtype.type(0.0) if r < zeros else _kth_distance(cols, (r - zeros) // 2)
    else:
        size = pairs

        def at(r):
            return _kth_distance(cols, r)

    if size % 2:
        return at(size // 2)
    lo, hi = at(size // 2 - 1), at(size // 2)
    return (lo + hi) / cols[0].dtype.type(2.0) if lo != hi else lo


def median_bandwidth(x, max_rows=None):
    """Per-column median of pairwise distances ``|x_i - x_j|``, ``i < j`` (diagonal excluded).

    Exact (see the module docstring): ``np.median(scipy.spatial.distance.pdist(x[:, [k]]))``
    in the working precision, at ``O(n log n)`` cost per column instead of ``O(n^2)``.

    Args:
      x: (n,) or (n, d) array, n >= 2.
      max_rows: None (all rows, exact) or a row count above which the evenly strided
        subsample ``x[::ceil(n / max_rows)]`` is used.

    Returns:
      (d,) NumPy array (0-d for 1-D input) in the units of ``x``, working dtype.
    """
    xc, one_d = _as_columns(x)
    if xc.shape[0] < 2:
        raise ValueError(f"median_bandwidth needs n >= 2 rows, got {xc.shape[0]}")
    xc = _row_subsample(xc, max_rows)
    out = np.array([_median_of_pairs([np.sort(xc[:, j])], False) for j in range(xc.shape[1])],
                   dtype=xc.dtype)
    return out[0] if one_d else out


def pooled_median_bandwidth(x, max_rows=None):
    """Novello et al. (2023) bandwidth: median of ALL pooled ``|x_ik - x_jk|``, zeros included.

    The median is over the ``n^2 c`` values for all ordered pairs ``(i, j)`` (the diagonal
    ``i == j`` included) and all columns ``k`` of ``x`` pooled together (their ``hsic.py``:
    ``np.median(np.abs(XX))``).  Their estimator is called per input or per pair of inputs:
    pass one column for an input's bandwidth, the two columns of a pair for the pair's.  The
    HSIC functions here apply it per kernel.  Exact at any ``n`` (see the module docstring).

    Args:
      x: (n,) or (n, c) array (normalized hyperparameters in the paper).
      max_rows: None (exact) or a strided row subsample above this many rows.

    Returns:
      0-d NumPy array of the working dtype: one bandwidth for the columns given.
    """
    xc, _ = _as_columns(x)
    xc = _row_subsample(xc, max_rows)
    return np.asarray(_median_of_pairs([np.sort(xc[:, j]) for j in range(xc.shape[1])], True),
                      dtype=xc.dtype)


def _row_subsample(x, max_rows):
    n = x.shape[0]
    if max_rows is None or n <= max_rows:
        return x
    stride = -(-n // int(max_rows))
    return x[::stride]
