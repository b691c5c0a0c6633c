"""HSIC (Hilbert-Schmidt Independence Criterion) sensitivity indices in JAX.

For each input column ``X_i`` (or group of columns) and the output ``Y`` this module estimates

* ``HSIC(X_i, Y)`` with the biased V-statistic (Gretton et al. 2005) or the unbiased
  U-statistic (Song et al. 2012),
* ``R2-HSIC = HSIC(X_i, Y) / sqrt(HSIC(X_i, X_i) HSIC(Y, Y))`` (Da Veiga 2015),
* independence-test p-values: the asymptotic Gamma approximation (Gretton et al. 2007, with the
  exact mean/variance formulas of OpenTURNS) or a permutation test,
* goal-oriented variants: target HSIC (Spagnol et al. 2019; Novello et al. 2023) and
  conditional HSIC (Marrel & Chabridon 2021), as in OpenTURNS
  ``HSICEstimatorGlobalSensitivity`` / ``HSICEstimatorTargetSensitivity`` /
  ``HSICEstimatorConditionalSensitivity`` with ``HSICVStat`` / ``HSICUStat``.

Two conventions for the goal-oriented index
-------------------------------------------
The default is the textbook HSIC: with ``target=best_fraction(q)`` the output is the
indicator ``z = 1{Y <= q-quantile}`` under a linear kernel and the index is the V-statistic
``HSIC_V = (1/n^2) zc' K zc`` (``zc`` = centred ``z``), which equals ``(m/n)^2 MMD^2(P_X,
P_X|best)`` (m = number of selected rows).  ``convention="novello2023"`` computes what the
authors' ``hsic.py`` (github.com/paulnovello/goal-oriented-ho) computes: threshold
``np.quantile(Y, q, method="lower")``, index ``q^2 MMD^2`` (their ``p**2 * MMD``): the textbook
value times ``(q n / m)^2``.  With ties ``m/n`` differs from ``q`` (0.25 instead of 0.24 in
their section 4.1: the textbook values are then 8.5% higher; 6x at q = 0.1 in section 4.3,
where 25% of the rows tie at the threshold).  Their bandwidths are per kernel (they call
``hsic`` per input, or per pair for a joint index): ``"pooled_median"``, the median of all
``n^2`` distances of that input (pair: ``2 n^2``, pooled over its two columns) with the zeros
of the diagonal, or ``"max"``, the bandwidth in (1e-4, 5) maximizing the index, found by
Brent's bounded search vectorized across inputs (one pass over the data per step for all
inputs; :mod:`hsens_jax.sensitivity._brent`).  ``experiments/toys.py`` reproduces their
section 4.1 to 1e-14 with their random draws.

Bias of R2-HSIC
---------------
The V-statistic HSICs are biased upward, and so is the V-statistic R2-HSIC: for independent
X ~ U(0, 1), Y ~ N(0, 1) (std bandwidths) its mean is 0.190 at n = 11, 0.034 at n = 64 and
0.0085 at n = 256 (4000 samples each, standard errors 0.002, 0.0003, 0.0001;
``benchmarks/hsic_r2_bias.py``).  ``estimator="U"`` gives R2-HSIC from the unbiased
U-statistics (``HSIC_U(X, Y) / sqrt(HSIC_U(X, X) HSIC_U(Y, Y))``, in [-1, 1]): its mean is
-0.001 +- 0.002, 0.0004 +- 0.0004 and 0.0001 +- 0.0001 at those n (negative for 60% of the
samples, as an unbiased estimate of 0 must be).  Rank inputs analysed on different numbers
of rows, or few rows, with the U-statistic R2.

Compilation
-----------
Each call runs one or two jitted programs whose shapes depend on ``n`` only through its
sample-size bucket (:mod:`hsens_jax.sensitivity.buckets`): ``n`` is padded up to the next
bucket size with rows of weight zero (``valid = 0``), masked out of every sum, so that all
sample sizes of a bucket share a program, in memory and in JAX's persistent compilation cache
(:mod:`hsens_jax.compile_cache`, turned on by every entry point).  The single pass is written
with ``lax`` primitives and traced with the garbage collector paused: in a new process, at
n = 2000, d = 10 with Gamma p-values, tracing took 0.02 s and lowering 0.06 s (JAX's one-time
start-up included) against 0.06 s and 0.11 s before (2-core CPU, load average 2.5;
``benchmarks/bench_hsic_compile.py``).

Computation
-----------
No ``n x n`` matrix product is ever formed, and no ``n x n`` matrix is held unless asked for
(``tile_size=n``).  Every Gram matrix here is symmetric, so all passes visit only the square
``(b, b)`` blocks ``(I, J)`` with ``I <= J`` (``_sym_sweep``): an off-diagonal block counts twice
in the sums, its row sums go to block ``I`` and its column sums to block ``J``.  With ``K`` the
Gram matrix of an input (or group) and ``L`` that of the output:

* unweighted V-statistic, with or without Gamma p-values (the common case):
  ONE pass over the input kernels (``_single_pass_v``).  The input kernels are shifted by
  approximate row means ``r`` from a column subsample (``Kt_ij = K_ij - r_i - r_j + mean(r)``;
  centring removes any such shift, so the exact centring follows from ``a = Kt 1`` after the
  pass, with small corrections that keep float32 accurate).  For Gamma p-values an output
  pre-pass (``n^2 / 2`` output kernel entries) gives the exactly centred ``Lc = HLH``, and the
  Gamma moment ``sum_{i != j} (Kc_ij Lc_ij)^2`` is expanded as
  ``sum Kt^2 Q - 4 u.(Kt o Q) 1 + 2 (u o u).Q1 + 2 u'Q u - diagonal`` with ``Q = Lc o Lc`` and
  ``Kc_ij = Kt_ij - u_i - u_j``: the first terms are accumulated in the same pass, ``u'Q u``
  in a post-pass over the output only.
  On a CPU, when it can be built, the same single pass runs in the fused kernel of
  :mod:`hsens_jax.native` (``_hsic_native_core``): rows shared among the cores, each kernel
  entry computed once in registers and every sum accumulated from it, where XLA:CPU
  materialises each block and reduces it once per sum (seven times with Gamma moments).
  Measured, n = 2000, d = 10, warm ``hsic`` on NumPy inputs (2-core Xeon, AVX-512): with
  Gamma p-values 10 ms against 34 ms, the V-statistic 8 ms against 16 ms
  (``benchmarks/results/hsic_cpu.md``).  ``HSENS_NATIVE=off`` runs the pure-JAX program;
  the final algebra (``_finish_single_pass``) is the same code in both.
* U-statistic and conditional (weighted) HSIC: two passes, (1) row sums ``K w`` and ``L w``
  (``w`` the conditional weights, ``w = 1`` otherwise), (2) sums of elementwise products of
  the centred blocks formed on the fly.

V-statistic (weights of mean 1; ``w = 1`` gives the textbook ``trace(K H L H) / n^2``)::

    Kc_ij = K_ij - (Kw)_i / n - (Kw)_j / n + w'Kw / n^2           (same for L)
    HSIC_V = (1 / n^2) sum_ij w_i w_j Kc_ij Lc_ij

which is algebraically the identity
``(1/n^2) sum K L - (2/n^3) sum_i (K1)_i (L1)_i + (1/n^4) (1'K1)(1'L1)`` (and OpenTURNS'
``trace(W K W H1 L H2)`` for the conditional estimator) but with small centred terms, so that
float32 stays accurate (measured: 1e-5 relative to float64 at n = 1e4).  U-statistic (Song et
al. 2012), via U-centring (Szekely & Rizzo 2014) of the zero-diagonal matrices
``Kt = K - diag(K)``::

    Ku_ij = Kt_ij - (Kt 1)_i / (n-2) - (Kt 1)_j / (n-2) + 1'Kt1 / ((n-1)(n-2)),  Ku_ii = 0
    HSIC_U = (1 / (n (n-3))) sum_{i != j} Ku_ij Lu_ij

which equals ``[tr(Kt Lt) + 1'Kt1 1'Lt1 / ((n-1)(n-2)) - 2 / (n-2) 1'Kt Lt 1] / (n (n-3))``.

Permutations permute ``Y`` (and the conditional weights with it), shared by all inputs: the
permuted statistic is ``sum_ij Kc_ij M_{pi(i) pi(j)}`` with ``M_ij = w_i w_j Lc_ij``, which is
exact because ``Lc w = 0`` (centring is permutation-equivariant).  Permutations are processed
in chunks of ``B_c = PERM_CHUNK`` (100): per chunk, one sweep over cache-sized blocks computes
each centred input block ``Kc`` (g, b, b) once and the ``B_c`` permuted output blocks, and
contracts them as one ``(B_c, b^2) x (b^2, g)`` matrix product (BLAS).

Cost
----
With ``n`` samples, ``d`` inputs (``g`` kernels: ``d`` first-order, plus pairs/groups),
``k`` output columns, ``B`` permutations; "entries" are kernel evaluations (one ``exp``):

* V indices and R2 (unweighted): ``n^2 g / 2`` input entries (the floor: each pair once per
  kernel), ``n^2 / 2`` output entries, ``O(n^2 g)`` flops, plus ``128 n g`` entries for the
  shifts.  With Gamma p-values: ``+ n^2`` output entries (pre- and post-pass) and about
  twice the flops; never ``O(n^3)``.
* U / conditional: ``n^2 (g + k)`` entries (two passes).
* permutation p-values: ``B n^2 / 2`` output entries and ``B n^2 g`` flops (matrix
  products), ``+ ceil(B / B_c) n^2 g / 2`` input entries.
* memory beyond the data: ``O(g b^2)`` floats per block, ``O(n g)`` row sums, ``O(P g b)``
  per-block row sums (``P = nb (nb + 1) / 2`` blocks, ``nb = ceil(n / b)``); the permutation
  test adds ``O(B n)`` for the permuted outputs and ``O(B_c b^2)`` per block.  Default
  block sides: ``b ~ isqrt(2^18 / g)`` for the one-pass V (d = 10, n = 2000: b = 154),
  ``isqrt(3 x 2^17 / g)`` with Gamma p-values (b = 200), ``isqrt(2^20)`` for Gamma's output
  pre-pass (one kernel: b = 1000), and
  ``b ~ isqrt(655360 / B_c)`` (= 80) for permutations, both via ``_balanced_block`` (a side
  near the target that tiles ``n`` with little padding); ``b = isqrt(2^21 / g)`` for the
  two-pass estimators: tens of MB whatever ``n``, so n = 2e4 (and 1e5 on a GPU) fit; time grows as
  ``n^2``.

References
----------
Gretton, Bousquet, Smola, Schoelkopf (2005) ALT; Gretton, Fukumizu, Teo, Song, Schoelkopf, Smola
(2007) "A kernel statistical test of independence", NIPS; Song, Smola, Gretton, Bedo, Borgwardt
(2012) "Feature selection via dependence maximization", JMLR 13; Szekely & Rizzo (2014) Ann.
Stat. 42(6); Da Veiga (2015) J. Stat. Comput. Simul. 85; Spagnol, Le Riche, Da Veiga (2019)
SIAM/ASA JUQ 7; Marrel & Chabridon (2021) Reliab. Eng. Syst. Saf. 214; Novello et al. (2023)
J. Sci. Comput. 94:45; OpenTURNS documentation, "Sensitivity analysis using HSIC".
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import numbers
from functools import partial
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hsens_jax import executables, native
from hsens_jax.compile_cache import ensure_compilation_cache
from hsens_jax.sensitivity._brent import maximize_bounded
from hsens_jax.sensitivity._table import number, per_input_table
from hsens_jax.sensitivity.buckets import bucket_size
from hsens_jax.sensitivity.kernels import median_bandwidth, pooled_median_bandwidth

__all__ = [
    "HSICResult",
    "TargetFilter",
    "MAX_BANDWIDTH_BOUNDS",
    "best_fraction",
    "critical_domain",
    "hsic",
    "hsic_novello",
    "hsic_interactions",
]

#: Target number of elements of a (kernels x b x b) block of the two-pass estimators when
#: ``tile_size`` is None (small enough to stay in cache: measured fastest on CPU).
AUTO_TILE_ELEMENTS = 2**21
#: Elements of a (permutations x b x b) block of permuted output kernels in the permutation
#: test (with ``PERM_CHUNK`` permutations: b = 80, the block stays in the L2/L3 cache).
PERM_BLOCK_ELEMENTS = 655_360
#: Permutations per sweep over the input kernels (the input kernels are recomputed once per
#: chunk, i.e. ``g / PERM_CHUNK`` kernel entries per pair and permutation).
PERM_CHUNK = 100
#: Interval searched by ``bandwidth="max"`` (Novello et al. 2023: ``(0.0001, 5)``, in the
#: units of the inputs, which they normalize to [0, 1]).
MAX_BANDWIDTH_BOUNDS = (1.0e-4, 5.0)
#: Absolute tolerance of the ``bandwidth="max"`` search (scipy's default for the bounded
#: method, which the authors use).
MAX_BANDWIDTH_XATOL = 1.0e-5
_BIG = 1.0e4  # "distance" of two different categories: exp(-1e4) == 0 in float32 and float64


# ----------------------------------------------------------------------------- result type


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["hsic", "r2", "pvalue", "bandwidth", "output_bandwidth", "hsic_yy"],
    meta_fields=["estimator", "pvalue_method", "n_permutations", "goal", "pvalue_convention"],
)
@dataclasses.dataclass(frozen=True)
class HSICResult:
    """Result of :func:`hsic` (a frozen dataclass registered as a JAX pytree).

    Attributes:
      hsic: (g,) HSIC indices (g = number of inputs, or of groups).
      r2: (g,) R2-HSIC indices ``HSIC(X_i, Y) / sqrt(HSIC(X_i, X_i) HSIC(Y, Y))`` (with the
        estimator's own HSICs: V-statistics, or U-statistics for ``estimator="U"``).
      pvalue: (g,) p-values of the independence test; NaN where none was asked.
      bandwidth: (d,) input bandwidths used (1.0 for categorical columns).
      output_bandwidth: (k,) output bandwidths (NaN for the linear output kernel).
      hsic_yy: () ``HSIC(Y, Y)`` with the same estimator / weights.
      estimator: ``"V"`` or ``"U"``.
      pvalue_method: ``None``, ``"gamma"`` or ``"permutation"``.
      n_permutations: number of permutations used (0 unless permutation p-values).
      goal: ``"global"``, ``"target"`` or ``"conditional"``.
      pvalue_convention: ``"conservative"`` or ``"openturns"`` (permutation counting).
    """

    hsic: Any
    r2: Any
    pvalue: Any
    bandwidth: Any
    output_bandwidth: Any
    hsic_yy: Any
    estimator: str = "V"
    pvalue_method: Optional[str] = None
    n_permutations: int = 0
    goal: str = "global"
    pvalue_convention: str = "conservative"

    def table(self, names=None, digits: int = 4) -> str:
        """A plain-text table, one row per input (or group): HSIC, R2-HSIC and the p-value
        (``-`` where none was asked). ``names`` label the rows (default ``x1..xg``)."""
        hsic, r2, pv = (np.atleast_1d(np.asarray(a, float)) for a in (self.hsic, self.r2, self.pvalue))
        if names is None:
            names = [f"x{i + 1}" for i in range(len(hsic))]
        elif len(names) != len(hsic):
            raise ValueError(f"{len(names)} names for {len(hsic)} indices")
        cells = [[number(hsic[i], 6), number(r2[i], digits), number(pv[i], digits)] for i in range(len(hsic))]
        title = f"HSIC ({self.estimator}-statistic, {self.goal}" + (
            f", {self.pvalue_method} p-values" if self.pvalue_method else "") + ")"
        return per_input_table(title, names, ["input", "HSIC", "R2-HSIC", "p-value"], cells, 0, False)


# ----------------------------------------------------------------------------- target filters


@dataclasses.dataclass(frozen=True)
class TargetFilter:
    """A filter of the output used by ``target=`` and ``conditional=`` (see the factories).

    kind ``"best"``: ``1{Y <= quantile(Y, q)}`` (linear output kernel for ``target``).
    kind ``"domain"``: ``exp(-dist(Y, [lower, upper]) / (smoothing * std(Y, ddof=1)))``, or the
    indicator ``1{Y in [lower, upper]}`` when ``smoothing`` is None/0.
    """

    kind: str
    q: float = 0.1
    lower: float = -math.inf
    upper: float = math.inf
    smoothing: Optional[float] = 0.1

    def __call__(self, y):
        """Apply the filter to a (n,) output; returns a (n,) array."""
        y = jnp.asarray(y)
        if self.kind == "best":
            return (y <= jnp.quantile(y, self.q)).astype(y.dtype)
        if self.kind == "domain":
            dist = jnp.maximum(jnp.maximum(self.lower - y, y - self.upper), 0.0)
            if not self.smoothing:
                return (dist == 0).astype(y.dtype)
            s = self.smoothing * jnp.std(y, ddof=1)
            return jnp.exp(-dist / s)
        raise ValueError(f"unknown TargetFilter kind {self.kind!r}")

    def _numpy(self, y):
        """The same filter in NumPy on the host (no compilation), in ``y``'s dtype."""
        if self.kind == "best":
            return (y <= np.quantile(y, self.q)).astype(y.dtype)
        if self.kind == "domain":
            dist = np.maximum(np.maximum(self.lower - y, y - self.upper), 0.0)
            if not self.smoothing:
                return (dist == 0).astype(y.dtype)
            s = self.smoothing * np.std(y, ddof=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.exp(-dist / s).astype(y.dtype)
        raise ValueError(f"unknown TargetFilter kind {self.kind!r}")


def best_fraction(q):
    """Novello et al. (2023) goal: the indicator of the best (lowest) fraction ``q`` of ``Y``.

    ``w_i = 1{Y_i <= quantile(Y, q)}`` with NumPy's linear interpolation; with
    ``hsic(..., target=best_fraction(q))`` a linear kernel ``k(w, w') = w w'`` is used on ``w``.
    With ``convention="novello2023"`` the quantile is the authors' ``method="lower"`` one
    (the same set of rows but for float rounding ties).

    Args:
      q: fraction in (0, 1).
    """
    if not isinstance(q, numbers.Real) or not 0.0 < float(q) < 1.0:
        raise ValueError(f"q must be a number in (0, 1), got {q!r}")
    return TargetFilter(kind="best", q=float(q))


def critical_domain(lower=-math.inf, upper=math.inf, smoothing=0.1):
    """OpenTURNS-style filter of the distance of ``Y`` to the critical domain ``[lower, upper]``.

    ``f(Y) = exp(-dist(Y, [lower, upper]) / (smoothing * std(Y, ddof=1)))``, the composition of
    ``ot.DistanceToDomainFunction(ot.Interval(lower, upper))`` with ``exp(-x / s)``,
    ``s = smoothing * Y.computeStandardDeviation()`` (OpenTURNS HSIC example uses
    ``smoothing=0.1``).  ``smoothing=None`` or ``0`` gives the hard indicator
    ``1{lower <= Y <= upper}`` (``ot.IndicatorFunction``).  The std is that of the sample
    passed to the filter (for permutations of ``Y`` it is unchanged).

    Args:
      lower, upper: bounds of the critical domain, in the units of ``Y``; lower <= upper.
      smoothing: positive multiple of the output std, or None/0 for the indicator.
    """
    lower, upper = float(lower), float(upper)
    if not lower <= upper:
        raise ValueError(f"critical_domain needs lower <= upper, got lower={lower}, upper={upper}")
    if smoothing is not None and (not np.isfinite(smoothing) or smoothing < 0):
        raise ValueError(f"smoothing must be a positive number or None, got {smoothing!r}")
    return TargetFilter(kind="domain", lower=lower, upper=upper, smoothing=smoothing)


# ----------------------------------------------------------------------------- kernels on blocks
# The hot paths are written with lax primitives (broadcast_in_dim, reduce_sum, dot_general)
# rather than jax.numpy: each jax.numpy function is a jitted function of its own, traced and
# lowered separately, and the first call of hsic in a new process pays for that even when
# its program comes from the persistent compilation cache (measured: tracing and lowering
# of the Gamma program 0.15-0.2 s with jax.numpy, 0.05-0.06 s this way).

_HI = lax.Precision.HIGHEST


def _bc(a, shape, dims):
    return lax.broadcast_in_dim(a, shape, dims)


def _dot(a, b, contract, batch=((), ())):
    return lax.dot_general(a, b, (contract, batch), precision=_HI)


def _rsum(a, axes):
    return lax.reduce_sum(a, tuple(axes))


def _lax_op(f):
    """A lax binary operation that takes Python numbers as constants of the other operand's
    dtype.  Arithmetic is written with these: Python operators on tracers go through
    jax.numpy's jitted ufuncs, traced anew for every signature in every new process."""
    def op(x, y):
        if isinstance(x, numbers.Number):
            x = np.array(x, dtype=y.dtype)
        elif isinstance(y, numbers.Number):
            y = np.array(y, dtype=x.dtype)
        return f(x, y)
    return op


_add, _sub, _mul, _div = (_lax_op(f) for f in (lax.add, lax.sub, lax.mul, lax.div))


def _input_gram(xr, xc, cat, groups, gscale=None):
    """Kernels of all groups between the columns of ``xr`` (c, t) and ``xc`` (c, m): (g, t, m).

    ``xr``, ``xc``: scaled inputs (divided by their bandwidths), columns first; ``cat``: static
    tuple of bools or None; ``groups``: None (one kernel per column) or a (g, c) 0/1 matrix
    (product kernels); ``gscale``: None or (g,) multipliers of each kernel's squared distance
    (one bandwidth per kernel, ``1 / theta_g^2``, when the columns are not scaled).
    """
    c, t = xr.shape
    m = xc.shape[1]
    diff = _sub(_bc(xr, (c, t, m), (0, 1)), _bc(xc, (c, t, m), (0, 2)))
    e = _mul(diff, diff)
    if cat is not None and any(cat):
        catm = _bc(jnp.asarray(np.array(cat)), (c, t, m), (0,))
        e = lax.select(catm, lax.select(lax.eq(diff, lax.full_like(diff, 0)), lax.full_like(e, 0),
                                        lax.full_like(e, _BIG)), e)
    if groups is not None:
        g = groups.shape[0]
        e = lax.reshape(_dot(groups, lax.reshape(e, (c, t * m)), ((1,), (0,))), (g, t, m))
    if gscale is not None:
        e = _mul(e, _bc(gscale, e.shape, (0,)))
    return lax.exp(_mul(e, -0.5))


def _output_gram(zr, zc, out_kind):
    """Output kernel between ``zr`` (..., t, k) and ``zc`` (..., m, k): (..., t, m).

    ``zr``, ``zc``: outputs divided by their bandwidths (Gaussian) or raw (linear); leading
    axes (e.g. a batch of permutations) broadcast.
    """
    if zr.ndim == 2 and zr.shape[-1] == 1:  # the common case, in lax
        t, m = zr.shape[0], zc.shape[0]
        a = _bc(lax.reshape(zr, (t,)), (t, m), (0,))
        b = _bc(lax.reshape(zc, (m,)), (t, m), (1,))
        if out_kind == "linear":
            return _mul(a, b)
        u = _sub(a, b)
        return lax.exp(_mul(_mul(u, u), -0.5))
    if out_kind == "linear":
        if zr.shape[-1] == 1:
            return zr[..., :, 0][..., :, None] * zc[..., :, 0][..., None, :]
        return jnp.einsum("...tk,...mk->...tm", zr, zc, precision="highest")
    if zr.shape[-1] == 1:
        u = zr[..., :, 0][..., :, None] - zc[..., :, 0][..., None, :]
        return jnp.exp(-0.5 * (u * u))
    u = zr[..., :, None, :] - zc[..., None, :, :]
    return jnp.exp(-0.5 * jnp.sum(u * u, axis=-1))


def _output_diag(Z, out_kind):
    if out_kind == "linear":
        return _rsum(_mul(Z, Z), (1,))
    return lax.full((Z.shape[0],), 1, Z.dtype)


def _pad_last(a, size):
    """Pads the last axis of ``a`` to ``size`` with its last value (finite, masked later)."""
    extra = size - a.shape[-1]
    if extra == 0:
        return a
    return jnp.concatenate([a, jnp.broadcast_to(a[..., -1:], a.shape[:-1] + (extra,))], axis=-1)


def _pad_zero(a, size):
    extra = size - a.shape[-1]
    return a if extra == 0 else jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, extra)])


def _sym_sweep(n, b, body, init, dt):
    """Runs ``body`` on the square blocks (I, J), I <= J, of side ``b`` of an n x n matrix.

    Every matrix swept here is symmetric, so the lower triangle of blocks is never visited:
    ``body(r0, c0)`` (block offsets, traced ints) returns ``(sums, rows, cols)`` where ``sums``
    is a pytree accumulated with weight 1 on the diagonal blocks and 2 off it, ``rows`` (m, b)
    per-row sums of the block (added to block I) and ``cols`` (m, b) its per-column sums
    (added to block J when I < J, i.e. the row sums of the mirror block); ``rows`` and
    ``cols`` may be None.  Returns ``(sums, vec)`` with ``vec`` (m, nb b) the full row sums
    (or None), gathered from the per-block sums by two segment sums.  Cost:
    ``nb (nb + 1) / 2`` calls of ``body``, ``nb = ceil(n / b)``.
    """
    nb = -(-n // b)
    I, J = np.triu_indices(nb)
    P = I.size
    wgt = jnp.asarray(np.where(I == J, 1.0, 2.0), dt)

    def step(acc, args):
        i, j, wt = args
        s, r, c = body(i, j)
        acc = jax.tree_util.tree_map(lambda a, x: _add(a, _mul(wt, x)), acc, s)
        return acc, (r, c)

    acc, (R, C) = lax.scan(step, init, (jnp.asarray(I * b, jnp.int32),
                                        jnp.asarray(J * b, jnp.int32), wgt))
    if R is None:
        return acc, None
    m = R.shape[1]
    off = jnp.asarray((I != J).astype(np.float64), dt)
    C = _mul(C, _bc(off, C.shape, (0,)))  # the diagonal blocks' rows are counted once
    vec = _add(jax.ops.segment_sum(lax.reshape(R, (P, m * b)), jnp.asarray(I, jnp.int32), nb,
                                   indices_are_sorted=True),
               jax.ops.segment_sum(lax.reshape(C, (P, m * b)), jnp.asarray(J, jnp.int32), nb))
    return acc, lax.reshape(lax.transpose(lax.reshape(vec, (nb, m, b)), (1, 0, 2)), (m, nb * b))


_CENTRE_SAMPLE = 128
# Elements of one (g, b, b) block of input kernels in the single pass, measured on 2 cores
# (AMD EPYC, n = 2000, d = 10): the V-statistic is fastest at 2^18 (the block and its products
# stay in cache), Gamma moments (more live products per block) at 3 x 2^17; 2^19 and 2^20 are
# 5-15% slower.  The output-only pre-pass sweeps one kernel: larger blocks, fewer dispatches.
SINGLE_PASS_TILE_ELEMENTS = 2 ** 18
GAMMA_TILE_ELEMENTS = 3 * 2 ** 17
OUTPUT_TILE_ELEMENTS = 2 ** 20
# The shifts of the single pass are computed in one (g, N, 128) operation up to this many
# elements (64 MB in float32), else block by block.
_SHIFT_ONE_OP_ELEMENTS = 2 ** 24


def _sl(a, start, size, axis=-1):
    return lax.dynamic_slice_in_dim(a, start, size, axis % a.ndim)


def _single_pass_v(Xs, Zs, G, gs, cat, out_kind, block, valid, dt, want_gamma, diag_l, ob):
    """Unweighted V-statistic, R2, exact centring vectors and (optionally) the Gamma moments
    with ONE pass over the input kernels.

    ``Xs`` (c, N), ``Zs`` (N, k): scaled inputs and outputs of ``N`` rows (a sample-size
    bucket), of which those with ``valid == 1`` are the sample (n = sum(valid), traced: one
    program serves every n of the bucket); padded rows are masked out of every sum.

    1. Output pre-pass (one kernel of the output, ``N^2 / 2`` entries): exact row sums
       ``L 1``, hence the exactly centred ``Lc = HLH`` on any block.
    2. Input shifts ``r``: approximate row means of each input kernel from a strided subsample
       of ``_CENTRE_SAMPLE`` valid columns; ``Kt_ij = K_ij - r_i - r_j + mean(r)``.  Centring
       removes any such shift (``H Kt H = H K H``), so with ``a = Kt 1``::

           sum Kc Lc = sum Kt Lc                        (Lc is exactly centred)
           sum Kc Kc = sum Kt Kt - (2/n) a.a + (1'a)^2 / n^2

       and ``K 1 = a + n r``.  ``Kt`` being nearly centred, the corrections are small and
       float32 keeps its accuracy; each input kernel entry is computed once.
    3. Gamma moments (Gretton et al. 2007; OpenTURNS): ``sum_{i != j} (Kc_ij Lc_ij)^2`` with
       ``Kc_ij = Kt_ij - u_i - u_j``, ``u = a / n - 1'a / (2 n^2)``, ``Q = Lc o Lc``::

           sum_ij Kc^2 Q = sum Kt^2 Q - 4 u.(Kt o Q) 1 + 2 (u o u).Q1 + 2 u'Q u

       the first three accumulated in the same pass (``(Kt o Q) 1``: (g, n); with
       ``M = Kt o Lc``, ``sum Kt^2 Q = sum M o M`` and ``sum Kt Lc = sum M``, one-operand
       reductions), ``u'Q u`` in a post-pass over the output only (a (g, b) x (b, b)
       product per block); the diagonal ``i == j`` is subtracted in O(n g) (``K_ii = 1``).

    Cost: ``N^2 (g + 3) / 2`` kernel entries (``g`` inputs + output pre-/main/post-pass) and
    ``O(N^2 g)`` flops (``~2x`` that with Gamma); memory ``O(g b^2 + ob^2 + g N)`` (``ob``:
    the output pre-pass block side).
    """
    N = Xs.shape[1]
    b = block
    Np = -(-N // b) * b
    if Np != N:  # hsic pads on the host; direct callers may not
        Xs, Zs = _pad_last(Xs, Np), _pad_last(Zs.T, Np).T
        valid, diag_l = _pad_zero(valid, Np), _pad_last(diag_l, Np)
    nb = Np // b
    ob = max(b, (min(ob, Np) // b) * b)
    while nb % (ob // b):
        ob -= b
    nf = _rsum(valid, (0,))
    g = Xs.shape[0] if G is None else G.shape[0]
    # ---- input shifts from a strided subsample of the valid rows
    m = min(N, _CENTRE_SAMPLE)
    sub = lax.convert_element_type(
        lax.floor(_mul(_add(lax.iota(dt, m), 0.5), _div(nf, float(m)))), jnp.int32)
    xsub = jnp.take(Xs, sub, axis=1)  # (c, m)
    offsets = _mul(lax.iota(jnp.int32, nb), b)
    if g * Np * m <= _SHIFT_ONE_OP_ELEMENTS:
        rk = _div(_rsum(_input_gram(Xs, xsub, cat, G, gs), (2,)), float(m))  # (g, Np)
    else:
        rk = lax.map(lambda r0: _div(_rsum(_input_gram(_sl(Xs, r0, b), xsub, cat, G, gs), (2,)),
                                     float(m)), offsets)  # (nb, g, b)
        rk = lax.reshape(lax.transpose(rk, (1, 0, 2)), (g, Np))
    rk_bar = _div(_dot(rk, valid, ((1,), (0,))), nf)

    def vv(r0, c0, size=b):
        return _mul(_bc(_sl(valid, r0, size), (size, size), (0,)),
                    _bc(_sl(valid, c0, size), (size, size), (1,)))

    # ---- 1. output centring: exact (pre-pass, L 1) for Gamma, else a subsample shift
    if want_gamma:
        # the pre-pass sweeps ONE kernel, not g: blocks of side ``ob`` (a multiple of ``b``),
        # so that fewer, larger operations amortise their dispatch
        def pre(r0, c0):
            L = _mul(_output_gram(_sl(Zs, r0, ob, 0), _sl(Zs, c0, ob, 0), out_kind), vv(r0, c0, ob))
            return (), lax.reshape(_rsum(L, (1,)), (1, ob)), lax.reshape(_rsum(L, (0,)), (1, ob))

        _, lrow = _sym_sweep(Np, ob, pre, (), dt)
        rl = _div(lax.reshape(lrow, (Np,)), nf)  # exact L 1 / n (0 on padded rows)
    else:
        zsub = jnp.take(Zs, sub, axis=0)
        rl = lax.reshape(lax.map(lambda r0: _div(_rsum(_output_gram(_sl(Zs, r0, b, 0), zsub, out_kind),
                                                       (1,)), float(m)), offsets), (Np,))
    rl_bar = _div(_dot(rl, valid, ((0,), (0,))), nf)

    def lc_block(r0, c0):
        L = _output_gram(_sl(Zs, r0, b, 0), _sl(Zs, c0, b, 0), out_kind)
        Lc = _add(_sub(_sub(L, _bc(_sl(rl, r0, b), (b, b), (0,))), _bc(_sl(rl, c0, b), (b, b), (1,))),
                  rl_bar)
        return _mul(Lc, vv(r0, c0))

    # ---- 2. main pass over the inputs
    gbb = (g, b, b)

    def main(r0, c0):
        K = _input_gram(_sl(Xs, r0, b), _sl(Xs, c0, b), cat, G, gs)  # (g, b, b)
        shift = _sub(_add(_bc(_sl(rk, r0, b), gbb, (0, 1)), _bc(_sl(rk, c0, b), gbb, (0, 2))),
                     _bc(rk_bar, gbb, (0,)))
        Kt = _mul(_sub(K, shift), _bc(vv(r0, c0), gbb, (1, 2)))
        Lc = lc_block(r0, c0)
        Lb = _bc(Lc, gbb, (1, 2))
        sums = {"sxx": _rsum(_mul(Kt, Kt), (1, 2)), "syy": _rsum(_mul(Lc, Lc), (0, 1))}
        rows, cols = [_rsum(Kt, (2,))], [_rsum(Kt, (1,))]
        if not want_gamma:  # row sums of the shifted output kernel
            sums["sxy"] = _rsum(_mul(Kt, Lb), (1, 2))
            rows.append(lax.reshape(_rsum(Lc, (1,)), (1, b)))
            cols.append(lax.reshape(_rsum(Lc, (0,)), (1, b)))
        else:
            # Kt^2 Q = (Kt Lc)^2: with M = Kt o Lc, sxy and s1 are one-operand reductions of
            # M (a product of two operands, one broadcast, reduces ~2x slower in XLA:CPU)
            M = _mul(Kt, Lb)
            sums["sxy"] = _rsum(M, (1, 2))
            sums["s1"] = _rsum(_mul(M, M), (1, 2))
            KQ = _mul(M, Lb)  # Kt o Q
            Q = _mul(Lc, Lc)
            rows += [_rsum(KQ, (2,)), lax.reshape(_rsum(Q, (1,)), (1, b))]
            cols += [_rsum(KQ, (1,)), lax.reshape(_rsum(Q, (0,)), (1, b))]
        return sums, lax.concatenate(rows, 0), lax.concatenate(cols, 0)

    zg = lax.full((g,), 0, dt)
    init = {"sxy": zg, "sxx": zg, "syy": lax.full((), 0, dt)}
    if want_gamma:
        init["s1"] = zg
    acc, vec = _sym_sweep(Np, b, main, init, dt)
    a = lax.slice_in_dim(vec, 0, g, axis=0)  # Kt 1 (0 on padded rows)
    gamma = None
    if want_gamma:
        def uqu(u):
            def post(r0, c0):
                Lc = lc_block(r0, c0)
                t = _dot(_sl(u, r0, b), _mul(Lc, Lc), ((1,), (0,)))  # (g, b)
                return _rsum(_mul(t, _sl(u, c0, b)), (1,)), None, None

            return _sym_sweep(Np, b, post, zg, dt)[0]

        gamma = (acc["s1"], lax.slice_in_dim(vec, g, 2 * g, axis=0),
                 lax.index_in_dim(vec, 2 * g, 0, keepdims=False), uqu)
    bl = None if want_gamma else lax.index_in_dim(vec, g, 0, keepdims=False)
    return _finish_single_pass(acc, a, rk, rk_bar, rl, rl_bar, valid, diag_l, N, bl=bl, gamma=gamma)


def _finish_single_pass(acc, a, rk, rk_bar, rl, rl_bar, valid, diag_l, N, *, bl=None, gamma=None):
    """The indices, R2, centring vectors and Gamma parameters from the sums of the single pass
    (:func:`_single_pass_v`'s notation; arrays of ``Np >= N`` rows, 0 on padded rows).

    ``acc``: ``sxx`` (g,) = sum Kt^2, ``sxy`` (g,) = sum Kt Lc (Kt Lt when ``bl`` is given),
    ``syy`` () = sum Lc^2 (Lt^2); ``a`` (g, Np) = Kt 1; ``rk`` (g, Np), ``rk_bar`` (g,): the
    input shifts and their mean; ``rl`` (Np,), ``rl_bar``: L 1 / n and its mean when the output
    kernel was exactly centred, else (``bl`` = Lt 1 given) the output shifts; ``gamma``: None
    or ``(s1, kq, q, uqu)`` with ``s1`` (g,) = sum (Kt Lc)^2, ``kq`` (g, Np) = (Kt o Q) 1, ``q``
    (Np,) = Q 1 and ``uqu`` a function of ``u`` (g, Np) returning ``u'Q u`` (g,).
    """
    g, Np = a.shape
    dt = a.dtype
    nf = _rsum(valid, (0,))
    nf2 = _mul(nf, nf)
    sa = _rsum(a, (1,))
    sxx = _add(_sub(acc["sxx"], _mul(_div(2.0, nf), _rsum(_mul(a, a), (1,)))), _div(_mul(sa, sa), nf2))
    if bl is None:  # Lc exactly centred
        sxy, syy, cb = acc["sxy"], acc["syy"], rl
    else:
        sbl = _rsum(bl, (0,))
        sxy = _add(_sub(acc["sxy"], _mul(_div(2.0, nf), _dot(a, bl, ((1,), (0,))))),
                   _div(_mul(sa, sbl), nf2))
        syy = _add(_sub(acc["syy"], _mul(_div(2.0, nf), _rsum(_mul(bl, bl), (0,)))),
                   _div(_mul(sbl, sbl), nf2))
        cb = _add(_div(bl, nf), rl)  # exact: L 1 / n
    gb = _div(_dot(cb, valid, ((0,), (0,))), nf)
    hxy, hxx, hyy = _div(sxy, nf2), _div(sxx, nf2), _div(syy, nf2)
    ca = _add(_div(a, nf), rk)  # exact: K 1 / n
    res = {"hsic": hxy, "hxx": hxx, "hyy": hyy, "r2": _mul(hxy, lax.rsqrt(_mul(hxx, hyy))),
           "ca": lax.slice_in_dim(ca, 0, N, axis=1), "ga": _div(_dot(ca, valid, ((1,), (0,))), nf),
           "cb": lax.slice_in_dim(cb, 0, N), "gb": gb, "sxy": sxy}
    if gamma is not None:
        s1, kq, q, uqu = gamma
        # Kc_ij = Kt_ij - u_i - u_j
        u = _sub(_div(a, nf), _bc(_div(sa, _mul(2.0, nf2)), (g, Np), (0,)))
        s_all = _add(_add(_sub(s1, _mul(4.0, _rsum(_mul(u, kq), (1,)))),
                          _mul(2.0, _dot(_mul(u, u), q, ((1,), (0,))))), _mul(2.0, uqu(u)))
        lc_diag = _add(_sub(diag_l, _mul(2.0, rl)), rl_bar)
        kc_diag = _sub(_add(_sub(lax.full_like(rk, 1), _mul(2.0, rk)), _bc(rk_bar, (g, Np), (0,))),
                       _mul(2.0, u))
        s_b = _sub(s_all, _dot(_mul(kc_diag, kc_diag), _mul(_mul(lc_diag, lc_diag), valid),
                               ((1,), (0,))))
        sum_k = _add(sa, _mul(nf2, rk_bar))  # 1'K1
        res.update(_gamma_params(sum_k, _mul(nf, _dot(rl, valid, ((0,), (0,)))),
                                 _dot(diag_l, valid, ((0,), (0,))), s_b, hxy, nf, "V"))
    return res


def _gamma_params(sum_k, sum_l, tr_l, s_b, hxy, nf, estimator):
    """Gamma approximation (Gretton et al. 2007) with OpenTURNS' mean / variance formulas.

    ``sum_k`` (g,) = 1'K1, ``sum_l`` = 1'L1, ``tr_l`` = trace L, ``nf`` = n (traced),
    ``s_b`` (g,) = sum_{i != j} ((HKH) o (HLH))_ij^2 (unit-diagonal input kernels).
    """
    nn1 = _mul(nf, _sub(nf, 1.0))
    ex = _div(_sub(sum_k, nf), nn1)
    ey = _div(_sub(sum_l, tr_l), nn1)
    mean = _div(_mul(_sub(1.0, ex), _sub(_div(tr_l, nf), ey)), nf)
    factor = _div(_mul(_mul(2.0, _sub(nf, 4.0)), _sub(nf, 5.0)),
                  _mul(_mul(nn1, _sub(nf, 2.0)), _sub(nf, 3.0)))
    var = _div(_mul(s_b, factor), nn1)
    x = _mul(nf, hxy) if estimator == "V" else _add(_mul(nf, hxy), _mul(nf, mean))
    # Gamma(shape, scale) survival function of x: see _gamma_sf
    return {"gamma_shape": _div(_mul(mean, mean), var), "gamma_scale": _div(_mul(nf, var), mean),
            "gamma_x": x,
            "gamma_mean": mean, "gamma_var": var}


def _two_pass(Xs, Zs, G, gs, cat, out_kind, block, w, valid, dt, estimator, want_gamma,
              diag_l):
    """U-statistic and weighted (conditional) V-statistic: (1) weighted row sums ``K w`` and
    ``L w``, (2) sums of elementwise products of the centred blocks formed on the fly."""
    N = Xs.shape[1]
    nf = jnp.sum(valid)
    nb = -(-N // block)
    Np = nb * block
    g = Xs.shape[0] if G is None else G.shape[0]
    Xp, Zp = _pad_last(Xs, Np), _pad_last(Zs.T, Np).T
    wp, vp = _pad_zero(w, Np), _pad_zero(valid, Np)
    ar = jnp.arange(block)

    def grams(r0, c0):
        K = _input_gram(_sl(Xp, r0, block), _sl(Xp, c0, block), cat, G, gs)  # (g, b, b)
        L = _output_gram(_sl(Zp, r0, block, 0), _sl(Zp, c0, block, 0), out_kind)  # (b, b)
        return K, L

    # ---- pass 1: weighted row sums K w, L w
    def pass1(r0, c0):
        K, L = grams(r0, c0)
        wr, wc = _sl(wp, r0, block), _sl(wp, c0, block)
        rows = jnp.concatenate([K @ wc, (L @ wc)[None]])
        cols = jnp.concatenate([jnp.einsum("i,gij->gj", wr, K), (wr @ L)[None]])
        return (), rows, cols

    _, vec = _sym_sweep(Np, block, pass1, (), dt)
    a, b = vec[:g] * vp, vec[g] * vp  # (g, Np), (Np,)
    diag_lp = _pad_last(diag_l, Np)
    if estimator == "V":
        ca = a / nf
        ga = (ca @ wp) / nf
        cb = b / nf
        gb = (cb @ wp) / nf
        norm = nf * nf
    else:  # U-centring of the zero-diagonal matrices (w == valid)
        at = a - vp
        bt = b - diag_lp * vp
        ca = at / (nf - 2.0)
        ga = jnp.sum(at, axis=1) / ((nf - 1.0) * (nf - 2.0))
        cb = bt / (nf - 2.0)
        gb = jnp.sum(bt) / ((nf - 1.0) * (nf - 2.0))
        norm = nf * (nf - 3.0)
    if want_gamma:  # Gretton's B uses H K H (V-centring, unweighted)
        va, vga = a / nf, jnp.sum(a, axis=1) / (nf * nf)
        vb, vgb = b / nf, jnp.sum(b) / (nf * nf)

    # ---- pass 2: sums of products of centred blocks
    def pass2(r0, c0):
        K, L = grams(r0, c0)
        Kc = K - _sl(ca, r0, block)[:, :, None] - _sl(ca, c0, block)[:, None, :] + ga[:, None, None]
        Lc = L - _sl(cb, r0, block)[:, None] - _sl(cb, c0, block)[None, :] + gb
        vv = _sl(vp, r0, block)[:, None] * _sl(vp, c0, block)[None, :]
        off = vv * ((r0 + ar)[:, None] != (c0 + ar)[None, :]).astype(dt)
        if estimator == "V":
            ww = _sl(wp, r0, block)[:, None] * _sl(wp, c0, block)[None, :]
        else:
            ww = off
        M = ww * Lc
        sums = {"sxy": jnp.sum(Kc * M, axis=(1, 2)), "sxx": jnp.sum(Kc * Kc * ww, axis=(1, 2)),
                "syy": jnp.sum(M * Lc)}
        if want_gamma:
            Bx = K - _sl(va, r0, block)[:, :, None] - _sl(va, c0, block)[:, None, :] \
                + vga[:, None, None]
            By = L - _sl(vb, r0, block)[:, None] - _sl(vb, c0, block)[None, :] + vgb
            P = Bx * (By * off)
            sums["sb"] = jnp.sum(P * Bx * By, axis=(1, 2))
        return sums, None, None

    init = {"sxy": jnp.zeros(g, dt), "sxx": jnp.zeros(g, dt), "syy": jnp.zeros((), dt)}
    if want_gamma:
        init["sb"] = jnp.zeros(g, dt)
    sums, _ = _sym_sweep(Np, block, pass2, init, dt)
    hxy, hxx, hyy = sums["sxy"] / norm, sums["sxx"] / norm, sums["syy"] / norm
    res = {"hsic": hxy, "hxx": hxx, "hyy": hyy, "r2": hxy / jnp.sqrt(hxx * hyy),
           "ca": ca[:, :N], "ga": ga, "cb": cb[:N], "gb": gb, "sxy": sums["sxy"]}
    if want_gamma:
        res.update(_gamma_params(jnp.sum(a, axis=1), jnp.sum(b), diag_lp @ vp, sums["sb"], hxy,
                                 nf, estimator))
    return res


@partial(
    jax.jit,
    static_argnames=("estimator", "out_kind", "cat", "block", "want_gamma", "has_groups",
                     "has_gscale", "single_pass", "out_block"),
)
def _hsic_core(Xt, theta, gscale, groups, Z, theta_z, w, valid, *, estimator, out_kind, cat,
               block, want_gamma, has_groups, has_gscale=False, single_pass=False,
               out_block=None):
    """Indices, R2 ingredients and (optionally) Gamma moments; returns a dict of arrays.

    ``Xt`` (c, N) inputs (columns first), ``theta`` (c,) their bandwidths, ``gscale`` (g,)
    per-kernel multipliers of the squared distances (used when ``has_gscale``), ``groups``
    (g, c) (used when ``has_groups``), ``Z`` (N, k) outputs, ``theta_z`` (k,), ``w`` (N,)
    weights (mean 1 over the sample, 0 on padded rows), ``valid`` (N,) 1 on the sample's
    rows, 0 on the rows padding it to its bucket.
    """
    dt = Xt.dtype
    G = groups if has_groups else None
    gs = gscale if has_gscale else None
    Xs = _div(Xt, _bc(theta, Xt.shape, (0,)))
    Zs = Z if out_kind == "linear" else _div(Z, _bc(theta_z, Z.shape, (1,)))
    diag_l = _output_diag(Z, out_kind)
    if single_pass:
        return _single_pass_v(Xs, Zs, G, gs, cat, out_kind, block, valid, dt, want_gamma,
                              diag_l, out_block or block)
    return _two_pass(Xs, Zs, G, gs, cat, out_kind, block, w, valid, dt, estimator, want_gamma,
                     diag_l)


@partial(jax.jit, static_argnames=("target", "out_kind", "cat", "want_gamma", "nthreads"))
def _hsic_native_core(Xt, theta, Z, theta_z, valid, *, target, out_kind, cat, want_gamma, nthreads):
    """:func:`_hsic_core`'s single pass (unweighted V-statistic, one kernel per column) by the
    fused CPU kernel of :mod:`hsens_jax.native` (FFI target ``target``), which computes each
    kernel entry once and every sum from it; the same result dict.  ``valid`` must be 1 on a
    prefix of the rows (the sample) and 0 after (its bucket's padding)."""
    dt = Xt.dtype
    g, N = Xt.shape
    Xs = _div(Xt, _bc(theta, Xt.shape, (0,)))
    Zs = Z if out_kind == "linear" else _div(Z, _bc(theta_z, Z.shape, (1,)))
    cat_flags = np.array(cat if cat is not None else (False,) * g, np.uint8)
    sums, scal, gvec, nvec = jax.ffi.ffi_call(target, (
        jax.ShapeDtypeStruct((5, g), dt), jax.ShapeDtypeStruct((2,), dt),
        jax.ShapeDtypeStruct((3, g, N), dt), jax.ShapeDtypeStruct((2, N), dt)))(
        Xs, cat_flags, Zs, valid, out_linear=np.int32(out_kind == "linear"),
        want_gamma=np.int32(want_gamma), nthreads=np.int32(nthreads))
    def row(a, i):
        return lax.index_in_dim(a, i, 0, keepdims=False)

    acc = {"sxx": row(sums, 0), "sxy": row(sums, 1), "syy": row(scal, 0)}
    gamma = None
    if want_gamma:
        uqu = row(sums, 3)
        gamma = (row(sums, 2), row(gvec, 1), row(nvec, 0), lambda u: uqu)
    return _finish_single_pass(acc, row(gvec, 0), row(gvec, 2), row(sums, 4), row(nvec, 1), row(scal, 1),
                               valid, _output_diag(Z, out_kind), N, gamma=gamma)


def _permutations(key, n_perm, valid):
    """``n_perm`` permutations of the valid rows (the first ``n`` of ``N``), as (n_perm, N)
    int32 index arrays; the padded rows stay in place.

    Permutation ``b`` sorts the rows by two 32-bit random keys drawn from
    ``jax.random.split(jax.random.split(key, n_perm)[b])`` (``jax.random.bits`` of shape
    (N,)), the padded rows' keys set above all others: a uniformly random permutation
    (64-bit keys: ties have probability < n^2 / 2^65), identical for every bucket N >= n.
    """
    N = valid.shape[0]
    top = jnp.uint32(0xFFFFFFFF)
    iota = jnp.arange(N, dtype=jnp.int32)

    def one(k):
        k1, k2 = jax.random.split(k)
        b1 = jnp.where(valid > 0, jnp.minimum(jax.random.bits(k1, (N,), jnp.uint32), top - 1), top)
        b2 = jnp.where(valid > 0, jax.random.bits(k2, (N,), jnp.uint32), top)
        return lax.sort((b1, b2, iota), num_keys=2, is_stable=True)[2]

    return jax.vmap(one)(jax.random.split(key, n_perm))


@partial(
    jax.jit,
    static_argnames=("estimator", "out_kind", "cat", "block", "has_groups", "has_gscale",
                     "n_perm", "chunk", "weighted"),
)
def _perm_core(key, Xt, theta, gscale, groups, Z, theta_z, w, valid, ca, ga, cb, gb, *,
               estimator, out_kind, cat, block, has_groups, has_gscale=False, n_perm, chunk,
               weighted):
    """Permutation statistics: returns (n_perm, g) sums ``sum_ij Kc_ij M_pi(i)pi(j)``.

    The permutations are :func:`_permutations` of the valid rows; the permuted output is
    ``Y[perm]``.  Permutations are processed ``chunk`` at a time; for each chunk one sweep
    over the upper-triangle blocks computes the centred input block ``Kc`` (g, b, b) once and
    the permuted output blocks (chunk, b, b), contracted as one ``(chunk, b^2) x (b^2, g)``
    matrix product: the input kernels are recomputed ``ceil(n_perm / chunk)`` times
    (``g / chunk`` kernel entries per pair and permutation) and the per-permutation work is
    one output kernel entry and ``2 g`` flops per pair.
    """
    c, N = Xt.shape
    dt = Xt.dtype
    G = groups if has_groups else None
    gs = gscale if has_gscale else None
    Xs = Xt / theta[:, None]
    Zs = Z if out_kind == "linear" else Z / theta_z
    g = groups.shape[0] if has_groups else c
    nb = -(-N // block)
    Np = nb * block
    n_chunks = -(-n_perm // chunk)
    perms = _permutations(key, n_perm, valid)  # (B, N)
    pad = n_chunks * chunk - n_perm  # identity permutations, discarded at the end
    perms = jnp.concatenate([perms, jnp.broadcast_to(jnp.arange(N, dtype=perms.dtype), (pad, N))])
    perms = _pad_last(perms, Np)  # padded positions are masked out below
    # permuted outputs, centring vectors and weights: (n_chunks, chunk, Np[, k])
    zp = Zs[perms].reshape(n_chunks, chunk, Np, -1)
    cp = (cb[perms] - 0.5 * gb).reshape(n_chunks, chunk, Np)
    wp = w[perms].reshape(n_chunks, chunk, Np) if weighted else jnp.zeros((n_chunks, 1), dt)
    Xp, cap, vp = _pad_last(Xs, Np), _pad_last(ca, Np), _pad_zero(valid, Np)
    ar = jnp.arange(block)
    vdiag = estimator == "V"

    def one_chunk(args):
        z, cc, ww = args  # (chunk, Np, k), (chunk, Np), (chunk, Np) or placeholder

        def body(r0, c0):
            K = _input_gram(_sl(Xp, r0, block), _sl(Xp, c0, block), cat, G, gs)  # (g, b, b)
            mask = _sl(vp, r0, block)[:, None] * _sl(vp, c0, block)[None, :]
            if not vdiag:  # U-statistic: off-diagonal entries only
                mask = mask * ((r0 + ar)[:, None] != (c0 + ar)[None, :]).astype(dt)
            Kc = (K - _sl(cap, r0, block)[:, :, None] - _sl(cap, c0, block)[:, None, :]
                  + ga[:, None, None]) * mask
            Lt = _output_gram(_sl(z, r0, block, 1), _sl(z, c0, block, 1), out_kind)  # (chunk, b, b)
            M = Lt - _sl(cc, r0, block)[:, :, None] - _sl(cc, c0, block)[:, None, :]
            if weighted:
                M = M * (_sl(ww, r0, block)[:, :, None] * _sl(ww, c0, block)[:, None, :])
            # one (chunk, b b) x (b b, g) matrix product (einsum's layout is slow on CPU)
            return M.reshape(M.shape[0], -1) @ Kc.reshape(g, -1).T, None, None

        acc, _ = _sym_sweep(Np, block, body, jnp.zeros((chunk, g), dt), dt)
        return acc

    stats = lax.map(one_chunk, (zp, cp, wp))  # (n_chunks, chunk, g)
    return stats.reshape(n_chunks * chunk, g)[:n_perm]


@partial(jax.jit, static_argnames=("cat", "block", "has_groups"))
def _target_index_at(inv_theta2, Xt, groups, zc, *, cat, block, has_groups):
    """``sum_ij K^g_ij zc_i zc_j / n^2`` for every kernel ``g`` at its own bandwidth
    (``inv_theta2`` (g,) = 1 / theta_g^2): the V-statistic HSIC with the linear kernel on
    the centred indicator ``zc`` (0 on padded rows), as a function of the bandwidths: the
    objective of ``bandwidth="max"``.  One pass, ``N^2 g / 2`` kernel entries."""
    c, N = Xt.shape
    dt = Xt.dtype
    G = groups if has_groups else None
    nb = -(-N // block)
    Np = nb * block
    Xp, zp = _pad_last(Xt, Np), _pad_zero(zc, Np)
    g = inv_theta2.shape[0]

    def body(r0, c0):
        K = _input_gram(_sl(Xp, r0, block), _sl(Xp, c0, block), cat, G, inv_theta2)
        return (K @ _sl(zp, c0, block)) @ _sl(zp, r0, block), None, None

    acc, _ = _sym_sweep(Np, block, body, jnp.zeros(g, dt), dt)
    return acc


# ----------------------------------------------------------------------------- validation


_ESTIMATORS = ("V", "U")
_PVALUES = (None, "gamma", "permutation")
_CONVENTIONS = ("conservative", "openturns")
#: Smallest sample sizes: see hsic's docstring ("Raises").
MIN_N = {"V": 3, "U": 4, "gamma": 6}


def _working_dtype():
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


def _as_float_array(a, name):
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be array-like: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must have a numeric dtype, got {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    dt = _working_dtype()
    with np.errstate(over="ignore"):  # overflow is reported below, naming the value
        out = np.asarray(arr, dtype=dt)
    if dt != arr.dtype and np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > dt.itemsize:
        with np.errstate(over="ignore", invalid="ignore"):
            over = np.isinf(out) & np.isfinite(arr)
        if over.any():
            where = np.argwhere(over.reshape(arr.shape[0], -1) if arr.ndim else over.reshape(1, 1))
            row, col = (int(v) for v in where[0])
            val = arr.reshape(arr.shape[0], -1)[row, col] if arr.ndim else arr
            raise ValueError(
                f"{name} column {col} overflows {dt} (row {row} holds {float(val):.6g}; the "
                f"largest {dt} is {float(np.finfo(dt).max):.6g}): rescale {name} or compute in "
                f"float64 (jax.config.update('jax_enable_x64', True))")
    return out


def _check_finite(arr, name):
    bad = ~np.all(np.isfinite(arr), axis=0)
    if bad.any():
        col = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} column {col} contains NaN or inf values")


def _validate_xy(X, Y):
    X = _as_float_array(X, "X")
    Y = _as_float_array(Y, "Y")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {tuple(X.shape)}")
    if Y.ndim not in (1, 2):
        raise ValueError(f"Y must be (n,) or (n, k), got shape {tuple(Y.shape)}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows n: X has {X.shape[0]}, "
                         f"Y has {Y.shape[0]}")
    if X.shape[1] == 0:
        raise ValueError("X must have at least one column")
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    if Y2.shape[1] == 0:
        raise ValueError("Y must have at least one column")
    _check_finite(X, "X")
    _check_finite(Y2, "Y")
    return X, Y2


def _categorical_mask(kernel, d):
    if kernel is None:
        return (False,) * d
    if isinstance(kernel, str):
        if kernel == "gaussian":
            return (False,) * d
        if kernel == "categorical":
            return (True,) * d
        raise ValueError(f"kernel must be 'gaussian', 'categorical', a mask, indices or a list "
                         f"of per-column kernel names, got {kernel!r}")
    items = list(kernel)
    if all(isinstance(k, str) for k in items) and items:
        if len(items) != d:
            raise ValueError(f"kernel lists {len(items)} kernel names but X has {d} columns")
        for i, k in enumerate(items):
            if k not in ("gaussian", "categorical"):
                raise ValueError(f"kernel[{i}] must be 'gaussian' or 'categorical', got {k!r}")
        return tuple(k == "categorical" for k in items)
    arr = np.asarray(items)
    if arr.size == 0:
        return (False,) * d
    if arr.dtype == bool:
        if arr.shape != (d,):
            raise ValueError(f"kernel boolean mask must have shape ({d},), got {arr.shape}")
        return tuple(bool(v) for v in arr)
    if np.issubdtype(arr.dtype, np.integer):
        mask = [False] * d
        for i in arr.tolist():
            if not -d <= i < d:
                raise ValueError(f"kernel categorical column index {i} out of range for d={d}")
            mask[i] = True
        return tuple(mask)
    raise TypeError("kernel must be None, 'gaussian', 'categorical', a boolean mask, a list of "
                    "categorical column indices or a list of per-column kernel names")


_RULES = ("std", "median", "pooled_median", "max")


def _check_bandwidth_values(th, name, cat=None):
    if cat is not None and any(cat):
        th = np.where(np.asarray(cat), np.ones_like(th), th)
    bad = ~(np.isfinite(th) & (th > 0))
    if bad.any():
        col = int(np.flatnonzero(bad)[0])
        what = "X" if name == "bandwidth" else "Y"
        raise ValueError(f"{name} for {what} column {col} is {th[col]!r}: it must be finite and "
                         f"> 0 (is the column constant?)")
    return th


def _resolve_bandwidth(spec, X, name, cat=None, rules=_RULES):
    """Per-column bandwidths (d,) for a rule or a value; "max" is resolved later."""
    d = X.shape[1]
    if isinstance(spec, str):
        if spec not in rules:
            opts = ", ".join(repr(r) for r in rules)
            raise ValueError(f"{name} must be {opts}, a positive number or an array, got {spec!r}")
        if spec == "std":  # on the host, accumulated in float64
            th = np.std(X.astype(np.float64), axis=0, ddof=1)
        elif spec == "median":
            th = np.asarray(median_bandwidth(X))
        elif spec == "pooled_median":  # per column (per kernel), zeros included
            th = np.array([pooled_median_bandwidth(X[:, j]) for j in range(d)])
        else:  # "max": placeholder, the search needs the output
            th = np.ones(d)
    else:
        if isinstance(spec, bool):
            raise TypeError(f"{name} must be a string, a number or an array, got a bool")
        try:
            th = np.asarray(spec, dtype=X.dtype)
        except Exception:
            raise TypeError(f"{name} must be a string, a number or an array, got "
                            f"{type(spec).__name__}") from None
        if th.ndim == 0:
            th = np.full((d,), th)
        elif th.shape != (d,):
            raise ValueError(f"{name} must be a scalar or have shape ({d},), got "
                             f"{tuple(th.shape)}")
    th = np.asarray(th).astype(X.dtype)
    return _check_bandwidth_values(th, name, cat)


def _auto_tile(n, g, tile_size):
    """Returns the side of the square blocks of the two-pass estimators."""
    if tile_size is None:
        block = int(min(n, max(32, math.isqrt(AUTO_TILE_ELEMENTS // g))))
    else:
        block = int(min(tile_size, n))
    return block


def _check_tile(tile_size):
    if tile_size is not None and (isinstance(tile_size, bool)
                                  or not isinstance(tile_size, numbers.Integral)
                                  or tile_size < 1):
        raise ValueError(f"tile_size must be a positive integer or None, got {tile_size!r}")


def _balanced_block(n, target):
    """Block side near ``target`` (clipped to [32, n]) that tiles ``n`` with little padding.

    A divisor ``n / nb`` of ``n`` is preferred when ``nb`` is within 2 of ``ceil(n / target)``
    (no padded block, hence no masks); otherwise ``ceil(n / nb)``.
    """
    target = int(min(n, max(32, target)))
    nb0 = -(-n // target)
    for nb in sorted(range(max(1, nb0 - 2), nb0 + 3), key=lambda k: (abs(k - nb0), k)):
        if n % nb == 0:
            return n // nb
    return -(-n // nb0)


def _apply_filter(f, y, name, novello=False):
    """Apply a TargetFilter or a callable (n,) -> (n,) to the univariate output y (n,)."""
    if isinstance(f, tuple):
        if len(f) == 2 and f[0] == "best":
            f = best_fraction(f[1])
        else:
            raise ValueError(f"{name} tuple must be ('best', q), got {f!r}")
    if not callable(f):
        raise TypeError(f"{name} must be a TargetFilter, ('best', q) or a callable, got "
                        f"{type(f).__name__}")
    if isinstance(f, TargetFilter):
        if novello and f.kind == "best":  # the authors' np.quantile(Y, p, method="lower")
            out = (y <= np.quantile(y, f.q, method="lower")).astype(y.dtype)
        else:
            out = f._numpy(y)
    else:
        out = np.asarray(f(jnp.asarray(y)), dtype=y.dtype)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != y.shape:
        raise ValueError(f"{name} must map Y (n,) to (n,), got shape {tuple(out.shape)}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} returned NaN or inf values")
    return f, out


@dataclasses.dataclass
class _Prepared:
    """Host-side (NumPy) inputs of the core, before padding to a bucket."""

    X: np.ndarray  # (n, d)
    Z: np.ndarray  # (n, k): output, filtered output or (scaled) indicator
    theta: np.ndarray  # (d,) per-column bandwidths
    theta_z: np.ndarray  # (k,)
    w: np.ndarray  # (n,) weights, mean 1
    cat: tuple
    out_kind: str
    goal: str
    rule: Optional[str]  # the bandwidth rule name, or None for values


def _prepare(X, Y, *, estimator, bandwidth, output_bandwidth, target, conditional, pvalue,
             n_permutations, key, kernel, convention):
    if convention not in (None, "novello2023"):
        raise ValueError(f"convention must be None or 'novello2023', got {convention!r}")
    novello = convention == "novello2023"
    if novello:
        if estimator != "V":
            raise ValueError("convention='novello2023' uses the V-statistic (estimator='V')")
        if target is None:
            raise ValueError("convention='novello2023' needs target=best_fraction(q) "
                             "(or ('best', q))")
        if isinstance(bandwidth, str) and bandwidth == "std":
            bandwidth = "pooled_median"
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be 'V' or 'U', got {estimator!r}")
    if pvalue not in _PVALUES:
        raise ValueError(f"pvalue must be None, 'gamma' or 'permutation', got {pvalue!r}")
    X, Y2 = _validate_xy(X, Y)
    n, d = X.shape
    min_n = MIN_N["gamma"] if pvalue == "gamma" else MIN_N[estimator]
    if n < min_n:
        why = {"V": "at n = 2 every centred Gram matrix is a multiple of [[1, -1], [-1, 1]], so "
                    "R2-HSIC = 1 whatever the data",
               "U": "the U-statistic divides by n (n - 3)",
               "gamma": "the Gamma variance has the factor (n - 4)(n - 5)"}
        reason = why["gamma" if pvalue == "gamma" else estimator]
        raise ValueError(f"n={n} samples is too small: estimator={estimator!r}"
                         f"{' with gamma p-values' if pvalue == 'gamma' else ''} needs "
                         f"n >= {min_n} ({reason})")
    if target is not None and conditional is not None:
        raise ValueError("give either target or conditional, not both")
    if conditional is not None and estimator == "U":
        raise ValueError("conditional HSIC is only defined for the V-statistic (estimator='V'), "
                         "as in OpenTURNS")
    if conditional is not None and pvalue == "gamma":
        raise ValueError("conditional HSIC has no asymptotic (gamma) p-value; use "
                         "pvalue='permutation'")
    if pvalue == "permutation":
        if (isinstance(n_permutations, bool) or not isinstance(n_permutations, numbers.Integral)
                or n_permutations < 1):
            raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
        if key is None:
            raise ValueError("pvalue='permutation' needs an explicit PRNG key "
                             "(key=jax.random.key(0))")
    cat = _categorical_mask(kernel, d)

    goal = "global"
    out_kind = "gaussian"
    w = np.ones((n,), X.dtype)
    Z = Y2
    if target is not None or conditional is not None:
        if Y2.shape[1] != 1:
            raise ValueError("target / conditional analyses need a univariate Y (n,) or (n, 1)")
    if target is not None:
        goal = "target"
        f, z = _apply_filter(target, Y2[:, 0], "target", novello)
        if isinstance(f, TargetFilter) and f.kind == "best":
            out_kind = "linear"
        elif novello:
            raise ValueError("convention='novello2023' needs target=best_fraction(q) "
                             "(or ('best', q))")
        if float(np.std(z)) == 0.0:
            raise ValueError("target filter is constant on this sample: no output variation")
        if novello:  # the authors' p^2 MMD^2 = HSIC_V with the indicator scaled by q n / m
            z = z * X.dtype.type(f.q * n / float(np.sum(z)))
        Z = z[:, None]
    elif conditional is not None:
        goal = "conditional"
        if callable(conditional) or isinstance(conditional, tuple):
            _, wt = _apply_filter(conditional, Y2[:, 0], "conditional")
        else:
            wt = _as_float_array(conditional, "conditional")
            if wt.shape != (n,):
                raise ValueError(f"conditional weights must have shape ({n},), got "
                                 f"{tuple(wt.shape)}")
        wt = np.asarray(wt, dtype=np.float64)
        if np.any(wt < 0) or not np.all(np.isfinite(wt)):
            raise ValueError("conditional weights must be finite and >= 0")
        mw = np.mean(wt)
        if float(mw) <= 0.0:
            raise ValueError("conditional weights are all zero on this sample")
        w = (wt / mw).astype(X.dtype)
    rule = bandwidth if isinstance(bandwidth, str) else None
    if rule == "max" and (out_kind != "linear" or estimator != "V"):
        raise ValueError("bandwidth='max' maximizes the goal-oriented index of Novello et al. "
                         "(2023): it needs estimator='V' and target=best_fraction(q)")
    theta = _resolve_bandwidth(bandwidth, X, "bandwidth", cat=cat)
    if out_kind == "linear":
        theta_z = np.full((Z.shape[1],), np.nan, X.dtype)
    else:
        ob = output_bandwidth
        if ob is None:
            ob = bandwidth if isinstance(bandwidth, str) and bandwidth in ("std", "median") else "std"
        theta_z = _resolve_bandwidth(ob, Z, "output_bandwidth", rules=("std", "median"))
    return _Prepared(X, Z, theta, theta_z, w, cat, out_kind, goal, rule)


def _gamma_sf(res, dtype):
    """Gamma survival function ``Q(alpha, x / scale)`` of the asymptotic null distribution.

    Evaluated on the host with ``scipy.special.gammaincc`` in float64 on the (g,) parameters
    from the jitted core: it is O(g) work, exact in float64 even in float32 mode, and avoids
    compiling JAX's incomplete-gamma series (seconds of XLA compile time per shape).
    """
    import scipy.special

    a, sc, x = (np.asarray(v, np.float64) for v in
                jax.device_get((res["gamma_shape"], res["gamma_scale"], res["gamma_x"])))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = scipy.special.gammaincc(a, np.maximum(x, 0.0) / sc)
    return p.astype(dtype)  # NumPy, as _run's other p-values: hsic's result moves them to the device


def _on_device(a):
    """``a`` as a JAX array: a transfer of a host array (``jnp.asarray`` would compile a small
    program for it in every new process)."""
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


def _pvalues_from_perm(stats, obs, convention):
    stats, obs = np.asarray(stats), np.asarray(obs)
    if convention == "openturns":
        cnt = np.sum(stats > obs[None, :], axis=0)
        return cnt / (stats.shape[0] + 1.0)
    cnt = np.sum(stats >= obs[None, :], axis=0)
    return (1.0 + cnt) / (stats.shape[0] + 1.0)


@contextlib.contextmanager
def _no_gc_pauses():
    """Python's cyclic garbage collector paused while the cores are traced and dispatched:
    tracing allocates many short-lived objects, and the collections it triggers took half of
    the tracing time of a first call (measured: 0.10-0.11 s -> 0.05 s).  Nothing cyclic is
    created here, and the collector is restored (if it was on) right after."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _padded(prep, N, groups=None, gscale=None):
    """Arrays of ``prep`` padded to ``N`` rows (copies of the last row, weight 0), in the
    layout of the core (inputs columns first)."""
    n = prep.X.shape[0]
    rows = np.minimum(np.arange(N), n - 1)
    dt = prep.X.dtype
    valid = (np.arange(N) < n).astype(dt)
    Xt = np.ascontiguousarray(prep.X[rows].T)
    Z = prep.Z[rows]
    w = prep.w[rows] * valid
    d = prep.X.shape[1]
    G = np.zeros((1, d), dt) if groups is None else np.asarray(groups, dt)
    gs = np.ones(G.shape[0], dt) if gscale is None else np.asarray(gscale, dt)
    return Xt, G, gs, Z, w, valid


def _max_bandwidths(prep, N, groups, block):
    """``bandwidth="max"``: per kernel, the bandwidth in ``MAX_BANDWIDTH_BOUNDS`` maximizing
    the target index (vectorized Brent search, all kernels in one pass per step)."""
    n = prep.X.shape[0]
    Xt, G, _, Z, _, valid = _padded(prep, N, groups)
    z = Z[:, 0].astype(np.float64) * valid
    zc = (z - np.sum(z) / n) * valid
    cat = prep.cat if any(prep.cat) else None
    g = G.shape[0] if groups is not None else Xt.shape[0]
    dt = prep.X.dtype
    zc = zc.astype(dt)

    def f(theta):
        val = _target_index_at(np.asarray(1.0 / theta**2, dt), Xt, G, zc, cat=cat, block=block,
                               has_groups=groups is not None)
        return np.asarray(val, np.float64) / n**2

    lo, hi = MAX_BANDWIDTH_BOUNDS
    theta, _, _ = maximize_bounded(f, lo, hi, g, xatol=MAX_BANDWIDTH_XATOL)
    return theta.astype(dt)


#: Work memory the native kernel may allocate (per-thread column sums, row sums, shifts);
#: above it the pure-JAX program (tiled: O(g b^2 + g N)) runs instead.
NATIVE_MAX_WORK_BYTES = 2**30


def _native_work_bytes(g, N, itemsize):
    """Bytes the native kernel allocates for ``g`` kernels over ``N`` rows: per thread
    ``(2 g + 1) N`` column sums in float64 and in the working precision, plus about ``8 g N``
    float64 and working-precision values shared (``hsic_pass_body.h``)."""
    return ((2 * g + 1) * N * (8 + itemsize) * native.num_threads()
            + g * N * (5 * 8 + 3 * itemsize) + 4 * N * 8)


def _native_target():
    """The fused CPU kernel's FFI target when the default backend is a CPU and the kernel is
    available (:mod:`hsens_jax.native`), else None (the pure-JAX program)."""
    if jax.default_backend() != "cpu":
        return None
    return native.hsic_pass_target()


def _run(prep, groups=None, kernel_bandwidth=None, *, estimator, pvalue, n_permutations, key,
         tile_size, pvalue_convention, perm_chunk, bucket, devices=None):
    """Pads ``prep`` to its bucket and runs the jitted cores.  ``kernel_bandwidth``: None
    (per-column bandwidths ``prep.theta``) or "pooled_median"/"max" (one bandwidth per group
    of ``groups``).  Returns (result dict, p-values (g,) NumPy, per-kernel bandwidths or
    None).  ``devices`` other than None: see :mod:`hsens_jax.sensitivity.hsic_sharded`."""
    if devices is not None:  # rows sharded over several devices (and processes)
        from hsens_jax.sensitivity import hsic_sharded

        chosen = hsic_sharded.resolve_devices(devices)
        if chosen is not None:
            return hsic_sharded.run(prep, groups, kernel_bandwidth, devices=chosen, estimator=estimator,
                                    pvalue=pvalue, n_permutations=n_permutations, key=key, tile_size=tile_size,
                                    pvalue_convention=pvalue_convention, perm_chunk=perm_chunk, bucket=bucket)
    n, d = prep.X.shape
    has_groups = groups is not None
    g = groups.shape[0] if has_groups else d
    N = bucket_size(n) if bucket else n
    weighted = prep.goal == "conditional"
    cat_s = prep.cat if any(prep.cat) else None
    block = _auto_tile(N, g, tile_size)
    single = estimator == "V" and not weighted
    # the single pass keeps a kernel block and its products live at once: smaller blocks
    # stay in cache (see SINGLE_PASS_TILE_ELEMENTS)
    tile = GAMMA_TILE_ELEMENTS if pvalue == "gamma" else SINGLE_PASS_TILE_ELEMENTS
    core_block = _balanced_block(N, math.isqrt(tile // g)) if single and tile_size is None else block
    out_block = _balanced_block(N, math.isqrt(OUTPUT_TILE_ELEMENTS)) if tile_size is None else block
    theta = prep.theta
    gscale = None
    if kernel_bandwidth is not None and has_groups:  # one bandwidth per kernel (group)
        if kernel_bandwidth == "max":
            kb = _max_bandwidths(prep, N, groups, core_block)
        else:
            kb = np.array([pooled_median_bandwidth(prep.X[:, np.flatnonzero(row)])
                           for row in groups])
            kb = _check_bandwidth_values(np.asarray(kb, prep.X.dtype), "bandwidth")
        theta = np.ones(d, prep.X.dtype)
        gscale = (1.0 / kb.astype(np.float64) ** 2).astype(prep.X.dtype)
    elif kernel_bandwidth == "max":
        theta = _max_bandwidths(prep, N, None, core_block)
        kb = theta
    else:
        kb = None
    # rows padded on the host up to a whole number of the single pass's blocks
    Xt, G, gs, Z, w, valid = _padded(prep, -(-N // core_block) * core_block, groups, gscale)
    has_gscale = gscale is not None
    native_target = (_native_target() if single and not has_groups
                     and _native_work_bytes(g, Xt.shape[1], Xt.dtype.itemsize) <= NATIVE_MAX_WORK_BYTES else None)
    with jax.default_matmul_precision("highest"), _no_gc_pauses():
        # Full float32 matrix products: on GPUs the default lets XLA use TF32 (10-bit
        # mantissas), which would break the float32-vs-float64 agreement of the sums.
        # the compiled program, kept across processes (hsens_jax.executables): a new process
        # neither traces nor lowers it again
        if native_target is not None:
            args = (Xt, theta, Z, prep.theta_z, valid)
            res = executables.compiled(_hsic_native_core, "hsic._hsic_native_core", args, dict(
                target=native_target, out_kind=prep.out_kind, cat=cat_s, want_gamma=(pvalue == "gamma"),
                nthreads=native.num_threads()))(*args)
        else:
            args = (Xt, theta, gs, G, Z, prep.theta_z, w, valid)
            res = executables.compiled(_hsic_core, "hsic._hsic_core", args, dict(
                estimator=estimator, out_kind=prep.out_kind, cat=cat_s, block=core_block,
                want_gamma=(pvalue == "gamma"), has_groups=has_groups, has_gscale=has_gscale,
                single_pass=single, out_block=out_block), compiler_options=executables.kernel_options())(*args)
        pv = np.full((g,), np.nan, prep.X.dtype)
        if pvalue == "gamma":
            pv = _gamma_sf(res, prep.X.dtype)
        elif pvalue == "permutation":
            chunk = min(n_permutations, PERM_CHUNK) if perm_chunk is None else int(perm_chunk)
            perm_block = block if tile_size is not None else _balanced_block(
                N, math.isqrt(PERM_BLOCK_ELEMENTS // chunk))
            if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                k = key
            else:  # a legacy uint32 key
                k = jnp.asarray(key)
            args = (k, Xt, theta, gs, G, Z, prep.theta_z, w, valid, res["ca"], res["ga"], res["cb"],
                    res["gb"])
            stats = executables.compiled(_perm_core, "hsic._perm_core", args, dict(
                estimator=estimator, out_kind=prep.out_kind, cat=cat_s, block=perm_block,
                has_groups=has_groups, has_gscale=has_gscale, n_perm=int(n_permutations), chunk=chunk,
                weighted=weighted), compiler_options=executables.kernel_options())(*args)
            pv = _pvalues_from_perm(stats, res["sxy"], pvalue_convention).astype(prep.X.dtype)
    return res, pv, kb


def hsic(X, Y, *, estimator="V", bandwidth="std", output_bandwidth=None, target=None,
         conditional=None, pvalue=None, n_permutations=1000, key=None, kernel=None,
         tile_size=None, convention=None, pvalue_convention="conservative", perm_chunk=None,
         bucket=True, devices=None):
    """HSIC and R2-HSIC sensitivity indices of each input column of ``X`` on the output ``Y``.

    Args:
      X: (n, d) inputs (NumPy or JAX), already normalized if wanted.  float32 by default,
        float64 when ``jax_enable_x64`` is on.
      Y: (n,) or (n, k) outputs; for k > 1 a product Gaussian kernel is used on Y.
      estimator: ``"V"`` (biased V-statistic, Gretton et al. 2005, ``ot.HSICVStat``) or ``"U"``
        (unbiased U-statistic, Song et al. 2012, ``ot.HSICUStat``; needs n >= 4).  ``r2``
        uses the estimator's own HSICs; see "Bias of R2-HSIC" in the module docstring: for
        rankings at small n, the U-statistic R2 is the unbiased choice.
      bandwidth: Gaussian kernel bandwidth ``theta`` of the inputs, in the units of ``X``:
        ``"std"`` (std with ddof=1, OpenTURNS / R convention), ``"median"`` (median of the
        pairwise distances, diagonal excluded), ``"pooled_median"`` (Novello et al. 2023:
        per input, the median of all ``n^2`` distances, zeros of the diagonal included),
        ``"max"`` (Novello et al. 2023: per input, the bandwidth in ``MAX_BANDWIDTH_BOUNDS``
        that maximizes the index, by a vectorized bounded Brent search; V-statistic with
        ``target=best_fraction(q)`` only), a positive number, or a (d,) array.  Kernel
        ``exp(-0.5 (|x - x'| / theta)^2)``.
      output_bandwidth: bandwidth(s) of the output kernel ((k,) or scalar); default: ``"std"``
        of the (filtered) output (or ``"median"`` when ``bandwidth="median"``).
      target: goal-oriented (target) HSIC: ``best_fraction(q)`` / ``("best", q)`` (indicator of
        the best q-fraction of Y with a linear kernel, Novello et al. 2023), a
        ``critical_domain(lower, upper, smoothing)`` filter (OpenTURNS
        ``HSICEstimatorTargetSensitivity`` with ``exp(-dist/(s sd))`` filter) or any callable
        ``(n,) -> (n,)`` filter; the Gaussian kernel is then used on the filtered output.
      conditional: conditional HSIC (Marrel & Chabridon 2021, OpenTURNS
        ``HSICEstimatorConditionalSensitivity``): a filter as for ``target`` (or a (n,) array
        of non-negative weights) giving weights ``w = f(Y) / mean(f(Y))``; weighted
        V-statistic, Gaussian kernel on the raw Y.  V-statistic and permutation p-values only.
      pvalue: ``None``, ``"gamma"`` or ``"permutation"``.  ``"gamma"``: Gretton et al. (2007)
        Gamma approximation of ``n HSIC_V`` under independence, with OpenTURNS' formulas:
        ``E = (tr K / n - Ex)(tr L / n - Ey) / n`` with ``Ex = (1'K1 - tr K) / (n (n - 1))``
        (= OpenTURNS' ``(1 + Ex Ey - Ex - Ey) / n`` for unit-diagonal kernels),
        ``Var = 2 (n-4)(n-5) / (n (n-1)(n-2)(n-3)) * sum_{i != j} ((HKH) o (HLH))_ij^2 /
        (n (n-1))``, shape ``E^2 / Var``, scale ``n Var / E``, p = survival function at
        ``n HSIC_V``; like OpenTURNS 1.27 it is also offered for U, at ``n HSIC_U + n E``.
        Needs n >= 6; not for ``conditional``.  The final survival function is evaluated on the
        host with ``scipy.special.gammaincc`` in float64.
      n_permutations: number B of permutations of Y (shared by all inputs).
      key: JAX PRNG key, required for permutation p-values.  Permutation ``b`` sorts the
        sample's rows by 64 random bits from ``jax.random.split(key, B)[b]``.
      kernel: which input columns are categorical (kernel ``1{x == x'}``): ``None``, a
        (d,) boolean mask, a list of column indices, ``"categorical"`` (all), or a list of
        per-column names ``"gaussian"`` / ``"categorical"``.
      tile_size: side ``b`` of the square blocks of the pure-JAX programs (``None``:
        automatic and cache-sized, see the module docstring); ``tile_size >= n`` computes
        everything in one block (same result up to rounding).  The native CPU kernel of the
        single pass (V-statistic) has no blocks: it ignores it.
      convention: ``None`` (textbook HSIC) or ``"novello2023"``: what the authors' ``hsic.py``
        computes (needs ``target=best_fraction(q)``; V-statistic): the threshold is
        ``np.quantile(Y, q, method="lower")``, the index is ``q^2 MMD^2(X, X | best)`` (their
        ``p**2 * MMD``), i.e. the textbook V-statistic times ``(q n / m)^2`` (m = number of
        selected rows: ``m / n`` differs from ``q`` with ties or rounding), and the default
        bandwidth is their median, ``"pooled_median"``.  R2-HSIC and p-values are unchanged
        by the factor.
      pvalue_convention: counting of the permutation p-value: ``"conservative"`` (default,
        ``(1 + #{HSIC_b >= HSIC_obs}) / (1 + B)``, a valid p-value under the null, Phipson &
        Smyth 2010) or ``"openturns"`` (``#{HSIC_b > HSIC_obs} / (1 + B)``, which can be 0).
      perm_chunk: permutations per sweep over the input kernels (default
        ``min(n_permutations, PERM_CHUNK)`` = 100).
      bucket: pad n up to its sample-size bucket (:mod:`hsens_jax.sensitivity.buckets`) with
        rows of weight zero, so that nearby sample sizes share one compiled program (also
        across processes, through the persistent compilation cache); the result is the same
        up to rounding.  ``False`` compiles for the exact n.
      devices: ``None`` (one device), ``"all"`` (every device of every process: in a
        process group of :func:`hsens_jax.engine.distributed.initialize`, every process must
        make the same call) or a sequence of JAX devices: the rows are sharded over them and
        the blocks visited by a ring (:mod:`hsens_jax.sensitivity.hsic_sharded`), memory per
        device ``O(n (d + g) / D + g b^2)``; the result equals one device's up to the order
        of float additions.  One device of this process: as ``None``.

    Returns:
      :class:`HSICResult` with ``hsic``, ``r2``, ``pvalue`` of shape (d,).

    Raises:
      ValueError / TypeError on bad shapes, NaN/inf (naming the column), values that
      overflow float32 (naming the column, row and value), unknown options, incompatible
      options (U with conditional, gamma with conditional), or n too small: the V-statistic
      needs n >= 3 (at n = 2 the centred Gram matrices of all inputs and of the output are
      multiples of one 2 x 2 matrix, so R2-HSIC = 1 for every input whatever the data), the
      U-statistic n >= 4 (it divides by n (n - 3)), Gamma p-values n >= 6 (their variance
      has the factor (n - 4)(n - 5)).
    """
    ensure_compilation_cache()
    if pvalue_convention not in _CONVENTIONS:
        raise ValueError(f"pvalue_convention must be 'conservative' or 'openturns', got "
                         f"{pvalue_convention!r}")
    _check_tile(tile_size)
    prep = _prepare(X, Y, estimator=estimator, bandwidth=bandwidth,
                    output_bandwidth=output_bandwidth, target=target, conditional=conditional,
                    pvalue=pvalue, n_permutations=n_permutations, key=key, kernel=kernel,
                    convention=convention)
    res, pv, kb = _run(prep, None, "max" if prep.rule == "max" else None, estimator=estimator,
                       pvalue=pvalue, n_permutations=n_permutations, key=key,
                       tile_size=tile_size, pvalue_convention=pvalue_convention,
                       perm_chunk=perm_chunk, bucket=bucket, devices=devices)
    theta = prep.theta if kb is None else kb
    return HSICResult(
        hsic=res["hsic"], r2=res["r2"], pvalue=_on_device(pv), bandwidth=_on_device(theta),
        output_bandwidth=_on_device(prep.theta_z),
        hsic_yy=res["hyy"], estimator=estimator, pvalue_method=pvalue,
        n_permutations=int(n_permutations) if pvalue == "permutation" else 0, goal=prep.goal,
        pvalue_convention=pvalue_convention)


def hsic_novello(X, Y, q, *, bandwidth="pooled_median", pvalue=None, n_permutations=1000,
                 key=None, tile_size=None, devices=None):
    """Novello et al. (2023) goal-oriented HSIC of hyperparameters, as their ``hsic.py``.

    ``hsic(X, Y, target=best_fraction(q), convention="novello2023", ...)``: V-statistic,
    output = indicator of the best (lowest) fraction ``q`` of ``Y`` (threshold
    ``np.quantile(Y, q, method="lower")``) with a linear kernel, index ``q^2 MMD^2``, and per
    input the authors' median bandwidth (all ``n^2`` distances, zeros included) or, with
    ``bandwidth="max"``, the bandwidth in ``(1e-4, 5)`` maximizing the index.

    Args:
      X: (n, d) normalized hyperparameter configurations
        (``hsens_jax.space.Space.normalize(configs, method="novello")``).
      Y: (n,) losses / errors (lower is better).
      q: fraction of best runs in (0, 1).
      bandwidth: ``"pooled_median"`` (the authors' default), ``"max"`` or values.
      pvalue, n_permutations, key, tile_size, devices: as in :func:`hsic`.

    Returns:
      :class:`HSICResult`.
    """
    return hsic(X, Y, estimator="V", bandwidth=bandwidth, target=best_fraction(q),
                pvalue=pvalue, n_permutations=n_permutations, key=key, tile_size=tile_size,
                convention="novello2023", devices=devices)


def hsic_interactions(X, Y, *, pairs=None, groups=None, metric="hsic", estimator="V",
                      bandwidth="std", output_bandwidth=None, target=None, conditional=None,
                      kernel=None, tile_size=None, convention=None, bucket=True, devices=None):
    """HSIC of pairs (or groups) of inputs against Y with product kernels, vectorized.

    The kernel of a pair/group is the product of its columns' Gaussian kernels.  With a
    per-column bandwidth rule (``"std"``, ``"median"``, values) each column keeps its own
    bandwidth, as in :func:`hsic`.  With ``"pooled_median"`` or ``"max"`` (the default of
    ``convention="novello2023"``) every kernel has ONE bandwidth, chosen for that kernel as
    the authors do when they pass the pair ``X[:, [i, j]]`` to their ``hsic.py``: the median
    of the pair's ``2 n^2`` pooled distances, or the maximizer of the pair's index.  All
    pairs/groups are estimated in one pass.

    Args:
      X, Y, estimator, bandwidth, output_bandwidth, target, conditional, kernel, tile_size,
        convention, bucket, devices: as in :func:`hsic`.
      pairs: optional list of ``(i, j)`` column pairs; default: all pairs ``i < j``.
      groups: optional list of lists of column indices; if given, the result is a
        (len(groups),) vector for those groups instead of the (d, d) matrix.
      metric: ``"hsic"`` or ``"r2"``.

    Returns:
      (d, d) symmetric matrix (diagonal = first-order index, entry (i, j) = index of the pair
      {X_i, X_j}, NaN for pairs not requested), or a (len(groups),) vector when ``groups`` is
      given.
    """
    ensure_compilation_cache()
    if metric not in ("hsic", "r2"):
        raise ValueError(f"metric must be 'hsic' or 'r2', got {metric!r}")
    if pairs is not None and groups is not None:
        raise ValueError("give pairs or groups, not both")
    _check_tile(tile_size)
    prep = _prepare(X, Y, estimator=estimator, bandwidth=bandwidth,
                    output_bandwidth=output_bandwidth, target=target, conditional=conditional,
                    pvalue=None, n_permutations=1, key=None, kernel=kernel,
                    convention=convention)
    n, d = prep.X.shape
    if groups is not None:
        glist = []
        for gi, grp in enumerate(groups):
            idx = _check_indices(grp, d, f"groups[{gi}]")
            if not idx:
                raise ValueError(f"groups[{gi}] is empty")
            glist.append(idx)
    else:
        if pairs is None:
            plist = [(i, j) for i in range(d) for j in range(i + 1, d)]
        else:
            plist = []
            for pi, p in enumerate(pairs):
                idx = _check_indices(p, d, f"pairs[{pi}]")
                if len(idx) != 2 or idx[0] == idx[1]:
                    raise ValueError(f"pairs[{pi}] must be two distinct column indices, got {p!r}")
                plist.append(tuple(idx))
        glist = [[i] for i in range(d)] + [list(p) for p in plist]
    Gm = np.zeros((len(glist), d), prep.X.dtype)
    for gi, grp in enumerate(glist):
        Gm[gi, grp] = 1.0
    per_kernel = prep.rule if prep.rule in ("pooled_median", "max") else None
    res, _, _ = _run(prep, Gm, per_kernel, estimator=estimator, pvalue=None, n_permutations=1,
                     key=None, tile_size=tile_size, pvalue_convention="conservative",
                     perm_chunk=None, bucket=bucket, devices=devices)
    vals = np.asarray(res[metric])
    if groups is not None:
        return jnp.asarray(vals)
    mat = np.full((d, d), np.nan, vals.dtype)
    mat[np.arange(d), np.arange(d)] = vals[:d]
    if plist:
        pi = np.array([p[0] for p in plist])
        pj = np.array([p[1] for p in plist])
        mat[pi, pj] = vals[d:]
        mat[pj, pi] = vals[d:]
    return jnp.asarray(mat)


def _check_indices(seq, d, name):
    try:
        items = list(seq)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of column indices") from None
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{name} must contain integer column indices, got {i!r}")
        if not -d <= i < d:
            raise ValueError(f"{name}: column index {i} out of range for d={d}")
        out.append(int(i) % d)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated column indices: {items!r}")
    return out
