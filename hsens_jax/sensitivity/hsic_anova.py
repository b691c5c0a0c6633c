"""HSIC-ANOVA: first- and second-order HSIC indices, the second with main effects removed.

The R2-HSIC of a pair of inputs with a product kernel (:func:`hsens_jax.sensitivity.hsic.
hsic_interactions`) mixes the pair's main effects with what the pair does jointly, and it is not
additive: "R2 of the pair minus the two first-order R2" is strongly negative for an input paired
with pure noise (measured: -0.35 for Y = X0 + noise, pair (X0, X2), n = 400). The HSIC-ANOVA
decomposition of Da Veiga (2021) separates the two. With every input kernel centred with respect
to the input distribution,

    k0_i(x, x') = k_i(x, x') - E k_i(x, X) - E k_i(X, x') + E k_i(X, X'),

the ANOVA kernel of a set A of inputs expands as ``prod_{i in A} (1 + k0_i) = sum_{B subset A}
prod_{i in B} k0_i``, and HSIC, linear in the input kernel, splits accordingly::

    HSIC_total = HSIC(X, Y with the kernel prod_i (1 + k0_i)) = sum_{B != {}} HSIC_B,
    HSIC_B     = HSIC(X_B, Y with the kernel prod_{i in B} k0_i).

``HSIC_i`` is the first-order index, ``HSIC_ij`` the part of the dependence of Y on (X_i, X_j)
that neither input shows alone; for independent inputs the terms are those of Da Veiga's
HSIC-ANOVA. Normalized indices ``S_B = HSIC_B / HSIC_total`` sum to 1 over all 2^d - 1 subsets.

Estimator: V-statistic with the empirical centring (the empirical input distribution stands
for the population one; Da Veiga uses kernels centred analytically, e.g. Sobolev kernels for
uniform inputs), Gaussian input kernels ``exp(-0.5 ((x - x') / theta)^2)``, and ``Lc = H L H``
the centred output Gram matrix (``H = I - 11'/n``)::

    K0_i = H K_i H,
    HSIC_i     = (1/n^2) sum_ab K0_i,ab Lc_ab            (= the V-statistic HSIC(X_i, Y)),
    HSIC_ij    = (1/n^2) sum_ab K0_i,ab K0_j,ab Lc_ab,
    HSIC_total = (1/n^2) sum_ab (prod_i (1 + K0_i,ab) - 1) Lc_ab.

``K0_i o K0_j`` is positive semi-definite (Schur product), so ``HSIC_ij >= 0``; like every
V-statistic it is biased upward at small n. Cost: two passes over row blocks, ``2 n^2 d``
kernel entries and ``O(n^2 d^2)`` flops (one matrix product per block); memory ``O(d b n)``
for blocks of ``b`` rows; no ``n x n`` matrix is held.

Measured (n = 400, uniform inputs, V-statistic, Gaussian output kernel): Y = (X0 - .5)(X1 - .5):
S_01 = 0.57; Y = X0: S_01 = 0.001, S_02 = 0.0; Y = X0 + X1: S_01 = 0.17 (an additive Y still
interacts through the non-linear output kernel, a known property of the decomposition).

Reference: S. Da Veiga, "Kernel-based ANOVA decomposition and Shapley effects -- Application to
global sensitivity analysis", arXiv:2101.05487 (2021).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hsens_jax.sensitivity.hsic import TargetFilter, best_fraction
from hsens_jax.sensitivity.kernels import median_bandwidth, pooled_median_bandwidth

__all__ = ["HSICANOVAResult", "hsic_anova"]

#: Elements of a (d, b, n) block of input kernels (b rows against all n columns).
BLOCK_ELEMENTS = 2**21


@dataclasses.dataclass(frozen=True)
class HSICANOVAResult:
    """Result of :func:`hsic_anova`.

    Attributes:
      first: (d,) first-order indices ``S_i = HSIC_i / HSIC_total``.
      second: (d, d) symmetric second-order indices ``S_ij = HSIC_ij / HSIC_total`` (main
        effects removed); NaN on the diagonal.
      hsic_first: (d,) ``HSIC_i`` (equal to the V-statistic HSIC of ``X_i`` and ``Y``).
      hsic_second: (d, d) ``HSIC_ij`` (NaN on the diagonal).
      hsic_total: () ``HSIC_total``, HSIC of all inputs with the ANOVA kernel.
      bandwidth: (d,) input bandwidths; output_bandwidth: () (NaN for the linear kernel).
    """

    first: Any
    second: Any
    hsic_first: Any
    hsic_second: Any
    hsic_total: Any
    bandwidth: Any
    output_bandwidth: Any


def hsic_anova(X, Y, *, bandwidth="std", output_bandwidth="std", target=None, block_size=None):
    """First- and second-order HSIC-ANOVA indices of the columns of ``X`` on ``Y``.

    Args:
      X: (n, d) inputs (n >= 4, d >= 1), finite.
      Y: (n,) output, finite.
      bandwidth: input bandwidth(s) in the units of ``X``: ``"std"`` (ddof=1), ``"median"``,
        ``"pooled_median"`` (Novello et al. 2023), a positive number or a (d,) array.
      output_bandwidth: ``"std"`` (ddof=1, of the filtered output) or a positive number; unused
        with the linear kernel of ``best_fraction``.
      target: None (Gaussian kernel on ``Y``), ``best_fraction(q)`` (linear kernel on the
        indicator of the best, lowest, fraction ``q`` of ``Y``, as in
        ``hsic(..., target=best_fraction(q))``) or another :class:`TargetFilter` / callable
        ``(n,) -> (n,)`` (Gaussian kernel on the filtered output).
      block_size: rows per block (default: ``BLOCK_ELEMENTS / (d n)``, at least 1).

    Returns:
      :class:`HSICANOVAResult` (NaN indices if ``HSIC_total`` is 0: a constant output).
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be 2-D (n, d) with d >= 1, got shape {X.shape}")
    if Y.ndim == 2 and Y.shape[1] == 1:
        Y = Y[:, 0]
    if Y.shape != (X.shape[0],):
        raise ValueError(f"Y must have shape ({X.shape[0]},) like X's rows, got {Y.shape}")
    n, d = X.shape
    if n < 4:
        raise ValueError(f"hsic_anova needs n >= 4 samples, got n={n}")
    for name, a in (("X", X), ("Y", Y)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has NaN or infinite values")
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    theta = _input_bandwidth(bandwidth, X)
    linear = False
    z = Y
    if target is not None:
        if isinstance(target, tuple) and len(target) == 2 and target[0] == "best":
            target = best_fraction(target[1])
        if not callable(target):
            raise TypeError(f"target must be best_fraction(q), a TargetFilter or a callable, got "
                            f"{type(target).__name__}")
        linear = isinstance(target, TargetFilter) and target.kind == "best"
        z = np.asarray(target(jnp.asarray(Y, dtype)), dtype=float).reshape(-1)
        if z.shape != (n,) or not np.isfinite(z).all():
            raise ValueError("target must map Y (n,) to finite values (n,)")
    if linear:
        theta_z = np.nan
    elif isinstance(output_bandwidth, str):
        if output_bandwidth != "std":
            raise ValueError(f"output_bandwidth must be 'std' or a positive number, got {output_bandwidth!r}")
        theta_z = float(np.std(z, ddof=1))
    else:
        theta_z = float(output_bandwidth)
    if not linear and not (np.isfinite(theta_z) and theta_z > 0):
        theta_z = 1.0  # a constant output: every HSIC is 0, whatever the bandwidth

    if block_size is None:
        block_size = max(1, BLOCK_ELEMENTS // (d * n))
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    block = int(min(block_size, n))
    Xs = jnp.asarray((X / theta).T, dtype)
    zs = jnp.asarray(z if linear else z / theta_z, dtype)
    with jax.default_matmul_precision("highest"):
        first, second, total = _anova_core(Xs, zs, block=block, linear=linear)
    first, second, total = (np.asarray(a, dtype=float) for a in (first, second, total))
    second = second.copy()
    np.fill_diagonal(second, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = 1.0 / total if total > 0 else np.nan
    return HSICANOVAResult(first=first * scale, second=second * scale, hsic_first=first,
                           hsic_second=second, hsic_total=total, bandwidth=theta,
                           output_bandwidth=np.float64(theta_z))


def _input_bandwidth(spec, X):
    d = X.shape[1]
    if isinstance(spec, str):
        if spec == "std":
            th = np.std(X, axis=0, ddof=1)
        elif spec == "median":
            th = np.asarray(median_bandwidth(X), float)
        elif spec == "pooled_median":  # per input, zeros included: as hsic's (and the analysis') kernels
            th = np.array([float(pooled_median_bandwidth(X[:, j])) for j in range(d)])
        else:
            raise ValueError(f"bandwidth must be 'std', 'median', 'pooled_median', a number or an array, got {spec!r}")
    else:
        th = np.broadcast_to(np.asarray(spec, float), (d,)).copy() if np.ndim(spec) == 0 else np.asarray(spec, float)
        if th.shape != (d,):
            raise ValueError(f"bandwidth must be a scalar or have shape ({d},), got {th.shape}")
    th = np.where(np.isfinite(th) & (th > 0), th, 1.0)  # a constant column has no kernel scale
    return th


@partial(jax.jit, static_argnames=("block", "linear"))
def _anova_core(Xs, z, *, block, linear):
    """Sums of the V-statistic ANOVA terms over row blocks.

    Xs: (d, n) inputs divided by their bandwidths; z: (n,) output (divided by its bandwidth
    unless ``linear``). Returns HSIC_i (d,), HSIC_ij (d, d) and HSIC_total ().
    """
    d, n = Xs.shape
    nb = -(-n // block)
    idx = np.arange(nb * block).reshape(nb, block)
    valid = jnp.asarray(idx < n)
    idx = jnp.asarray(np.minimum(idx, n - 1))

    def input_rows(rows):  # (d, b, n)
        diff = Xs[:, rows, None] - Xs[:, None, :]
        return jnp.exp(-0.5 * diff * diff)

    def output_rows(rows):  # (b, n)
        if linear:
            return z[rows, None] * z[None, :]
        diff = z[rows, None] - z[None, :]
        return jnp.exp(-0.5 * diff * diff)

    row_k, row_l = lax.map(lambda rows: (input_rows(rows).mean(-1), output_rows(rows).mean(-1)), idx)
    row_k = jnp.moveaxis(row_k, 1, 0).reshape(d, -1)[:, :n]  # (d, n) row means of K_i
    row_l = row_l.reshape(-1)[:n]
    mean_k, mean_l = row_k.mean(-1), row_l.mean()

    def sums(args):
        rows, ok = args
        k0 = input_rows(rows) - row_k[:, rows, None] - row_k[:, None, :] + mean_k[:, None, None]
        lc = (output_rows(rows) - row_l[rows, None] - row_l[None, :] + mean_l) * ok[:, None]
        kl = (k0 * lc[None]).reshape(d, -1)
        first = kl.sum(-1)
        second = jnp.matmul(k0.reshape(d, -1), kl.T)
        total = jnp.sum((jnp.prod(1.0 + k0, axis=0) - 1.0) * lc)
        return first, second, total

    first, second, total = lax.map(sums, (idx, valid))
    scale = 1.0 / (n * n)
    return first.sum(0) * scale, second.sum(0) * scale, total.sum() * scale

