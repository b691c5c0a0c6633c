"""Variance-based (Sobol') sensitivity indices from Saltelli designs, on the device.

Design layout (identical to ``SALib.sample.sobol.sample`` / ``SALib.analyze.sobol``)
---------------------------------------------------------------------------------
A scrambled Sobol' sequence of dimension ``2d`` gives ``n`` base rows (``n`` a power of
two); its first ``d`` columns form matrix ``A`` and its last ``d`` columns matrix ``B``.
``AB_i`` is ``A`` with column ``i`` taken from ``B``; ``BA_i`` is ``B`` with column ``i``
taken from ``A``. The design is stored *in blocks per base row*::

    row block of base row r (step = d + 2, or 2d + 2 with second order):
        A[r], AB_1[r], ..., AB_d[r], (BA_1[r], ..., BA_d[r],) B[r]

so that the design has ``n * (d + 2)`` rows (first/total order) or ``n * (2d + 2)`` rows
(with second order). Outputs ``Y`` follow the same row order. SALib can analyze our
outputs and we can analyze SALib's (``sobol_design(bounds, n, seed=s)`` reproduces
``SALib.sample.sobol.sample(problem, n, calc_second_order=..., seed=s)`` exactly).

Estimators (``estimator=``)
---------------------------
All outputs are first centred by the mean of *all* outputs and scaled by their standard
deviation (as SALib does; ``centering="AB"`` centres on the mean of the ``A`` and ``B``
outputs only, as ``scipy.stats.sobol_indices`` does). ``V`` is the variance of the
pooled ``A`` and ``B`` outputs.

* ``"saltelli-jansen"`` (default, = SALib, = SciPy ``"saltelli_2010"``):
  ``S1_i = mean(f_B (f_ABi - f_A)) / V`` (Saltelli et al. 2010, Table 2 b),
  ``ST_i = mean((f_A - f_ABi)^2) / (2V)`` (Jansen 1999).
* ``"martinez"`` (Martinez 2011): ``S1_i = corr(f_B, f_ABi)``, ``ST_i = 1 - corr(f_A, f_ABi)``.
* ``"janon"`` (Janon, Klein, Lagnoux, Nodet & Prieur 2014; Monod et al. 2006):
  ``S1_i = (mean(f_B f_ABi) - m^2) / (mean((f_B^2 + f_ABi^2)/2) - m^2)`` with
  ``m = mean((f_B + f_ABi)/2)``, and ``ST_i = 1 - (same with f_A instead of f_B)``.
* ``"azzini"`` (Azzini, Mara & Rosati 2020), needs the ``BA`` blocks (``second_order=True``
  design): ``S1_i = 2 sum (f_B - f_BAi)(f_ABi - f_A) / sum[(f_A - f_B)^2 + (f_BAi - f_ABi)^2]``,
  ``ST_i = sum[(f_B - f_BAi)^2 + (f_A - f_ABi)^2] / sum[(f_A - f_B)^2 + (f_BAi - f_ABi)^2]``.

Second-order indices always use SALib's formula (Saltelli 2002):
``S2_ij = mean(f_BAi f_ABj - f_A f_B) / V - S1_i - S1_j`` with the Saltelli 2010 ``S1``.

Confidence intervals
--------------------
The ``n`` base rows (each with all its blocks) are resampled with replacement
``n_bootstrap`` times. Every estimator above is a smooth function of row means of
per-row statistics, so a resample is a vector of multiplicities ``w`` (counts, summing to
``n``) and its estimates are ``finish(w @ G / n)``: the bootstrap is a batched matrix
product on the device, vmapped over resamples in chunks of ``bootstrap_chunk`` (a
``lax.map`` over chunks), and over outputs. We report

* ``*_conf = z_{(1+confidence)/2} * std(bootstrap, ddof=1)`` -- SALib's normal-approximation
  half-width (identical numbers to SALib given the same resample indices);
* ``*_ci = (low, high)`` -- percentile bootstrap interval at level ``confidence``.

References
----------
* Saltelli, A. (2002). Making best use of model evaluations to compute sensitivity
  indices. Comput. Phys. Commun. 145, 280-297.
* Saltelli, A., Annoni, P., Azzini, I., Campolongo, F., Ratto, M., Tarantola, S. (2010).
  Variance based sensitivity analysis of model output. Design and estimator for the total
  sensitivity index. Comput. Phys. Commun. 181, 259-270.
* Jansen, M. J. W. (1999). Analysis of variance designs for model output. Comput. Phys.
  Commun. 117, 35-43.
* Martinez, J.-M. (2011). Analyse de sensibilite globale par decomposition de la variance.
  Journee des GdR Ondes & MASCOT Num.
* Janon, A., Klein, T., Lagnoux, A., Nodet, M., Prieur, C. (2014). Asymptotic normality
  and efficiency of two Sobol index estimators. ESAIM: PS 18, 342-364.
* Azzini, I., Mara, T. A., Rosati, R. (2020). Comparison of two sets of Monte Carlo
  estimators of Sobol' indices. Environ. Model. Softw. 144, 105167.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm, qmc

from hsens_jax.compile_cache import ensure_compilation_cache
from hsens_jax.sensitivity._table import columns, interval, number, per_input_table, picker

__all__ = ["SobolResult", "sobol", "sobol_design", "sobol_indices", "ESTIMATORS"]

ESTIMATORS = ("saltelli-jansen", "martinez", "janon", "azzini")




def _is_space(obj) -> bool:
    """True for a search-space object (duck-typed: has ``from_unit`` and ``names``)."""
    return hasattr(obj, "from_unit") and hasattr(obj, "names")


class _Domain:
    """Uniform view of the input domain of a sensitivity analysis.

    Either a bounds array ``(d, 2)`` (each row ``[low, high]``, low < high, finite; optional
    ``names``) or a space object with ``names``, ``from_unit(U) -> dict`` and optionally
    ``to_unit(configs) -> (n, d)``.
    """

    def __init__(self, bounds_or_space, names=None, argname: str = "bounds_or_space"):
        self.argname = argname
        if _is_space(bounds_or_space):
            self.space = bounds_or_space
            self.names = tuple(str(n) for n in bounds_or_space.names)
            self.bounds = None
            if names is not None and tuple(names) != self.names:
                raise ValueError(f"{argname}: names given for a space must equal space.names")
        else:
            self.space = None
            try:
                b = np.asarray(bounds_or_space, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise TypeError(
                    f"{argname} must be a (d, 2) bounds array or a space object with "
                    f"from_unit/names, got {type(bounds_or_space).__name__}"
                ) from e
            if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] < 1:
                raise ValueError(f"{argname} must have shape (d, 2), got {b.shape}")
            if not np.all(np.isfinite(b)):
                raise ValueError(f"{argname} must be finite")
            bad = np.nonzero(~(b[:, 0] < b[:, 1]))[0]
            if bad.size:
                raise ValueError(f"{argname}: low must be < high, violated in row(s) {bad.tolist()}")
            self.bounds = b
            if names is None:
                names = tuple(f"x{i + 1}" for i in range(b.shape[0]))
            names = tuple(str(n) for n in names)
            if len(names) != b.shape[0]:
                raise ValueError(f"names has {len(names)} entries but {argname} has {b.shape[0]} rows")
            self.names = names
        self.d = len(self.names)

    @property
    def is_space(self) -> bool:
        return self.space is not None

    def from_unit(self, U):
        """Map unit-cube points ``(n, d)`` to an array (bounds) or a configs dict (space)."""
        U = np.asarray(U, dtype=np.float64)
        if self.space is not None:
            return self.space.from_unit(U)
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return lo + U * (hi - lo)

    def to_unit(self, X):
        """Inverse of :meth:`from_unit` for an array (bounds) or a configs dict (space)."""
        if isinstance(X, dict):
            if self.space is None or not hasattr(self.space, "to_unit"):
                raise TypeError("a configs dict needs a space object with to_unit")
            return np.asarray(self.space.to_unit(X), dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"X must have shape (n, {self.d}), got {X.shape}")
        if self.space is not None:
            return X  # already a unit-cube array
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return (X - lo) / (hi - lo)


def _rows_of(X, start: int, stop: int):
    """Slice rows ``start:stop`` of an array or of every column of a configs dict."""
    if isinstance(X, dict):
        return {k: np.asarray(v)[start:stop] for k, v in X.items()}
    return X[start:stop]


def _n_rows(X) -> int:
    if isinstance(X, dict):
        return len(next(iter(X.values())))
    return X.shape[0]


def _evaluate_in_chunks(f, X, chunk_size=None):
    """Evaluate ``f`` on the rows of ``X`` (array or configs dict) in chunks; stack outputs.

    Arrays are passed to ``f`` as ``jax.numpy`` arrays of the default float dtype, configs
    dicts as dicts of NumPy float64 columns. Returns a NumPy array ``(n,)`` or ``(n, k)``.
    """

    n = _n_rows(X)
    if chunk_size is None:
        chunk_size = n
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    outs = []
    for s in range(0, n, int(chunk_size)):
        part = _rows_of(X, s, min(n, s + int(chunk_size)))
        if not isinstance(part, dict):
            part = jnp.asarray(part, dtype=jnp.result_type(float))
        y = np.asarray(f(part))
        m = _n_rows(part)
        if y.ndim == 0 or y.shape[0] != m or y.ndim > 2:
            raise ValueError(f"f must return an array of shape ({m},) or ({m}, k), got {y.shape}")
        outs.append(y)
    return np.concatenate(outs, axis=0)


# ----------------------------------------------------------------------------- design


def _check_n_pow2(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int (a power of two), got {type(n).__name__}")
    n = int(n)
    if n < 2 or (n & (n - 1)) != 0:
        raise ValueError(f"n must be a power of two >= 2 (Sobol' balance properties), got {n}")
    return n


def _saltelli_unit(n: int, d: int, second_order: bool, seed) -> np.ndarray:
    """Unit-cube Saltelli design in SALib's block layout, shape ``(n * step, d)``."""
    base = qmc.Sobol(d=2 * d, scramble=True, seed=seed).random(n)
    A, B = base[:, :d], base[:, d:]
    eye = np.eye(d, dtype=bool)[None]
    blocks = [A[:, None, :], np.where(eye, B[:, None, :], A[:, None, :])]
    if second_order:
        blocks.append(np.where(eye, A[:, None, :], B[:, None, :]))
    blocks.append(B[:, None, :])
    return np.concatenate(blocks, axis=1).reshape(-1, d)


def sobol_design(bounds_or_space, n: int, *, second_order: bool = False, seed: Optional[int] = 0,
                 names=None, unit: bool = False):
    """Saltelli design for Sobol' indices, in SALib's layout (see module docstring).

    Args:
      bounds_or_space: bounds array ``(d, 2)`` (rows ``[low, high]``, inputs uniform on them)
        or a search-space object (``names``, ``from_unit``).
      n: number of base rows, a power of two (error otherwise).
      second_order: also include the ``BA_i`` blocks (needed for ``S2`` and ``"azzini"``).
      seed: seed of the scrambled Sobol' sequence (``scipy.stats.qmc.Sobol``); with the same
        seed the design equals ``SALib.sample.sobol.sample(..., seed=seed)``.
      names: optional input names for a bounds array (ignored checks for spaces).
      unit: return the unit-cube design ``(N, d)`` instead of the mapped one.

    Returns:
      ``(N, d)`` float64 array with ``N = n (d + 2)`` (or ``n (2d + 2)``) for bounds, or for a
      space a configs dict ``{name: (N,) float64}`` from ``space.from_unit``.

    Reference: Saltelli (2002); Saltelli et al. (2010).
    """
    dom = _Domain(bounds_or_space, names)
    n = _check_n_pow2(n)
    U = _saltelli_unit(n, dom.d, bool(second_order), seed)
    return U if unit else dom.from_unit(U)


# ----------------------------------------------------------------------------- estimators
# Every estimator = (per-row statistics G, finish(mean of G)); bootstrap = finish(w @ G / n).


def _common_stats(A, B):
    return {"m1": 0.5 * (A + B), "m2": 0.5 * (A * A + B * B)}


def _var(m):
    return m["m2"] - m["m1"] ** 2


def _safe_div(a, b):
    ok = b > 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def _stats_saltelli(A, AB, BA, B):
    return {"s1": B[:, None] * (AB - A[:, None]), "st": (A[:, None] - AB) ** 2}


def _finish_saltelli(m):
    V = _var(m)
    return _safe_div(m["s1"], V), _safe_div(0.5 * m["st"], V)


def _stats_martinez(A, AB, BA, B):
    return {"a": A, "b": B, "a2": A * A, "b2": B * B, "ab": AB, "ab2": AB * AB,
            "b_ab": B[:, None] * AB, "a_ab": A[:, None] * AB}


def _corr(exy, ex, ey, ex2, ey2):
    cov = exy - ex * ey
    vx, vy = ex2 - ex**2, ey2 - ey**2
    return _safe_div(cov, jnp.sqrt(jnp.maximum(vx * vy, 0.0)))


def _finish_martinez(m):
    s1 = _corr(m["b_ab"], m["b"], m["ab"], m["b2"], m["ab2"])
    st = 1.0 - _corr(m["a_ab"], m["a"], m["ab"], m["a2"], m["ab2"])
    return s1, jnp.where(_var(m) > 0, st, 0.0)


def _stats_janon(A, AB, BA, B):
    return {"b_ab": B[:, None] * AB, "b_p": 0.5 * (B[:, None] + AB), "b_q": 0.5 * (B[:, None] ** 2 + AB**2),
            "a_ab": A[:, None] * AB, "a_p": 0.5 * (A[:, None] + AB), "a_q": 0.5 * (A[:, None] ** 2 + AB**2)}


def _finish_janon(m):
    s1 = _safe_div(m["b_ab"] - m["b_p"] ** 2, m["b_q"] - m["b_p"] ** 2)
    closed = _safe_div(m["a_ab"] - m["a_p"] ** 2, m["a_q"] - m["a_p"] ** 2)
    return s1, jnp.where(_var(m) > 0, 1.0 - closed, 0.0)


def _stats_azzini(A, AB, BA, B):
    return {"num1": (B[:, None] - BA) * (AB - A[:, None]),
            "den": (A - B)[:, None] ** 2 + (BA - AB) ** 2,
            "numt": (B[:, None] - BA) ** 2 + (A[:, None] - AB) ** 2}


def _finish_azzini(m):
    return _safe_div(2.0 * m["num1"], m["den"]), _safe_div(m["numt"], m["den"])


_ESTIMATOR_FNS = {
    "saltelli-jansen": (_stats_saltelli, _finish_saltelli),
    "martinez": (_stats_martinez, _finish_martinez),
    "janon": (_stats_janon, _finish_janon),
    "azzini": (_stats_azzini, _finish_azzini),
}


def _split_blocks(Yr, d, second_order):
    """``Yr (n, step)`` -> A (n,), AB (n, d), BA (n, d) or None, B (n,)."""
    A, B = Yr[:, 0], Yr[:, -1]
    AB = Yr[:, 1:d + 1]
    BA = Yr[:, d + 1:2 * d + 1] if second_order else None
    return A, AB, BA, B


def _row_stats(Yr, d, second_order, estimator):
    A, AB, BA, B = _split_blocks(Yr, d, second_order)
    stats_fn, _ = _ESTIMATOR_FNS[estimator]
    g = {"est": stats_fn(A, AB, BA, B), "common": _common_stats(A, B)}
    if second_order:
        g["s2"] = {"ba_ab": BA[:, :, None] * AB[:, None, :], "ab": A * B,
                   "s1": B[:, None] * (AB - A[:, None])}
    return g


def _finish(m, d, second_order, estimator):
    _, finish_fn = _ESTIMATOR_FNS[estimator]
    est = dict(m["est"], **m["common"])
    S1, ST = finish_fn(est)
    out = {"S1": S1, "ST": ST}
    if second_order:
        V = _var(m["common"])
        s1_sal = _safe_div(m["s2"]["s1"], V)
        Vjk = _safe_div(m["s2"]["ba_ab"] - m["s2"]["ab"], V)
        S2 = Vjk - s1_sal[:, None] - s1_sal[None, :]
        iu = np.triu(np.ones((d, d), dtype=bool), 1)
        out["S2"] = jnp.where(iu, S2, jnp.nan)
    return out


@partial(jax.jit, static_argnames=("d", "second_order", "estimator", "n_bootstrap", "chunk", "centering",
                                   "mesh"))
def _sobol_core(Y, seed, idx, z, probs, *, d, second_order, estimator, n_bootstrap, chunk,
                centering, mesh=None):
    """Point estimates and bootstrap summaries, in one program.

    ``Y``: (k, n, step) outputs; ``seed``: uint32 seed of ``jax.random.key`` (the resamples are
    drawn from it when ``idx`` is None); ``idx``: (n_bootstrap, n) int resample indices or
    None; ``z``: normal quantile of the half-widths; ``probs``: (2,) percentile levels.
    Returns (point, conf, low, high): dicts of (k, ...) arrays (the last three None without
    bootstrap).  The standard deviations and percentiles of the resamples are computed here
    rather than by separate eager calls: each of those compiled a program of its own in a new
    process (measured: 0.4 s of the 0.78 s compile time of a first call).  ``mesh``: None, or a
    1-D mesh whose devices share the bootstrap chunks.
    """
    key = jax.random.key(seed)
    point, boot = _sobol_boot(Y, key, idx, d=d, second_order=second_order, estimator=estimator,
                              n_bootstrap=n_bootstrap, chunk=chunk, centering=centering, mesh=mesh)
    if boot is None:
        return point, None, None, None
    # all replicates side by side: one std and one sort for every index
    leaves, treedef = jax.tree_util.tree_flatten(boot)
    shapes = [leaf.shape[1:] for leaf in leaves]
    flat = jnp.concatenate([leaf.reshape(n_bootstrap, -1) for leaf in leaves], axis=1)
    conf = z * jnp.std(flat, axis=0, ddof=1)
    low, high = jnp.quantile(flat, probs, axis=0)
    offs = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])

    def split(v):
        return jax.tree_util.tree_unflatten(
            treedef, [v[offs[i]:offs[i + 1]].reshape(sh) for i, sh in enumerate(shapes)])

    return point, split(conf), split(low), split(high)


def _sobol_boot(Y, key, idx, *, d, second_order, estimator, n_bootstrap, chunk, centering, mesh=None):
    """Point estimates and bootstrap replicates.

    ``Y``: (k, n, step) outputs; ``idx``: (n_bootstrap, n) int resample indices or None
    (then drawn from ``key``). Returns (point dict of (k, ...) arrays, boot dict of
    (n_bootstrap, k, ...) arrays or None).  With a ``mesh`` of D devices, each device computes
    a contiguous share of the chunks of resamples (chunk ``c`` draws from
    ``fold_in(key, c)`` wherever it runs, so the replicates are those of one device); the
    per-row statistics are replicated.
    """
    k, n, _ = Y.shape
    if centering == "all":
        mu = jnp.mean(Y, axis=(1, 2), keepdims=True)
        sd = jnp.std(Y, axis=(1, 2), keepdims=True)
    else:  # "AB"
        AB_ = jnp.stack([Y[:, :, 0], Y[:, :, -1]], axis=-1)
        mu = jnp.mean(AB_, axis=(1, 2), keepdims=True)
        sd = jnp.std(AB_, axis=(1, 2), keepdims=True)
    Y = (Y - mu) / jnp.where(sd > 0, sd, 1.0)
    G = jax.vmap(lambda y: _row_stats(y, d, second_order, estimator))(Y)  # leaves (k, n, ...)
    fin = jax.vmap(lambda m: _finish(m, d, second_order, estimator))  # over k
    point = fin(jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=1), G))
    if n_bootstrap == 0:
        return point, None
    n_chunks = -(-n_bootstrap // chunk)
    if mesh is not None:  # whole chunks per device
        n_chunks = -(-n_chunks // mesh.size) * mesh.size

    # all per-row statistics side by side in one (n, M) matrix: one GEMM per chunk
    leaves, treedef = jax.tree_util.tree_flatten(G)
    shapes = [leaf.shape[2:] for leaf in leaves]
    sizes = [int(np.prod(sh)) for sh in shapes]
    Gmat = jnp.concatenate([jnp.moveaxis(leaf.reshape(k, n, -1), 1, 0).reshape(n, -1) for leaf in leaves], 1)
    offs = np.cumsum([0] + [k * sz for sz in sizes])

    if idx is not None and n_chunks * chunk > idx.shape[0]:  # a last, partial chunk
        idx = jnp.concatenate([idx, jnp.zeros((n_chunks * chunk - idx.shape[0], n), idx.dtype)])

    def one_chunk(c, key=key, idx=idx, Gmat=Gmat):
        kc = jax.random.fold_in(key, c)
        if idx is not None:
            ii = jax.lax.dynamic_slice_in_dim(idx, c * chunk, chunk, axis=0)
        elif n & (n - 1) == 0:  # power of two (Sobol' designs): masking random bits is exact and 2x faster
            ii = (jax.random.bits(kc, (chunk, n), jnp.uint32) & jnp.uint32(n - 1)).astype(jnp.int32)
        else:
            ii = jax.random.randint(kc, (chunk, n), 0, n)
        # multiplicities of the base rows: a flat int32 scatter-add (much faster on CPU than 2-D float)
        flat = (ii.astype(jnp.int32) + jnp.arange(chunk, dtype=jnp.int32)[:, None] * n).reshape(-1)
        cnt = jnp.zeros((chunk * n,), jnp.int32).at[flat].add(1).reshape(chunk, n)
        # full float32 products (no TF32 on GPUs): the bootstrap means must match float64
        M = jnp.matmul(cnt.astype(Y.dtype) / n, Gmat, precision="highest")  # (chunk, sum k * size)
        parts = [M[:, offs[i]:offs[i + 1]].reshape((chunk, k) + shapes[i]) for i in range(len(leaves))]
        return jax.vmap(fin)(jax.tree_util.tree_unflatten(treedef, parts))  # leaves (chunk, k, ...)

    if mesh is None:
        boot = jax.lax.map(one_chunk, jnp.arange(n_chunks))
    else:
        from jax.sharding import PartitionSpec

        axis = mesh.axis_names[0]
        share = jax.shard_map(lambda cs, key, idx, Gmat: jax.lax.map(lambda c: one_chunk(c, key, idx, Gmat), cs),
                              mesh=mesh, in_specs=(PartitionSpec(axis), PartitionSpec(), PartitionSpec(),
                                                   PartitionSpec()),
                              out_specs=PartitionSpec(axis), check_vma=False)
        boot = share(jnp.arange(n_chunks), key, idx, Gmat)
    boot = jax.tree_util.tree_map(lambda b: b.reshape((n_chunks * chunk,) + b.shape[2:])[:n_bootstrap], boot)
    return point, boot


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class SobolResult:
    """Sobol' indices (SALib vocabulary).

    Attributes (``d`` inputs; a trailing ``k`` axis when ``f``/``Y`` has ``k`` outputs):
      S1, ST: ``(d,)`` first and total order indices.
      S1_conf, ST_conf: ``(d,)`` SALib's half-widths ``z * std(bootstrap)`` (NaN without bootstrap).
      S1_ci, ST_ci: ``(low, high)`` percentile bootstrap intervals (NaN without bootstrap).
      S2, S2_conf, S2_ci: ``(d, d)`` second-order indices (upper triangle, NaN elsewhere),
        only when ``second_order=True``, else None.
      names: input names; n: base rows; estimator; confidence; n_bootstrap.
    """

    S1: np.ndarray
    ST: np.ndarray
    S1_conf: np.ndarray
    ST_conf: np.ndarray
    S1_ci: tuple
    ST_ci: tuple
    names: tuple
    n: int
    estimator: str
    confidence: float
    n_bootstrap: int
    S2: Optional[np.ndarray] = None
    S2_conf: Optional[np.ndarray] = None
    S2_ci: Optional[tuple] = None

    def table(self, output: int = 0, digits: int = 4) -> str:
        """A plain-text table: one row per input with S1 and ST and their bootstrap intervals
        (``-`` without bootstrap), then the second-order indices if computed. ``output``
        selects the output of a multi-output result."""
        pick, multi = picker(self.S1, output)
        level = f"{round(100 * self.confidence)}% CI"
        s1, st, (l1, h1), (lt, ht) = pick(self.S1), pick(self.ST), map(pick, self.S1_ci), map(pick, self.ST_ci)
        cells = [[number(s1[i], digits), interval(l1[i], h1[i], digits), number(st[i], digits),
                  interval(lt[i], ht[i], digits)] for i in range(len(self.names))]
        text = per_input_table(f"Sobol' indices ({self.estimator}, n = {self.n}, {self.n_bootstrap} bootstrap "
                               "resamples)", self.names, ["input", "S1", f"S1 {level}", "ST", f"ST {level}"],
                               cells, output, multi)
        if self.S2 is not None:
            s2, (l2, h2) = pick(self.S2), map(pick, self.S2_ci)
            pairs = [[f"{a} x {b}", number(s2[i, j], digits), interval(l2[i, j], h2[i, j], digits)]
                     for i, a in enumerate(self.names) for j, b in enumerate(self.names) if j > i]
            text += "\n\n" + "\n".join(columns(["pair", "S2", f"S2 {level}"], pairs))
        return text

    def to_dict(self) -> dict:
        """SALib-style dict: ``S1, S1_conf, ST, ST_conf`` (and ``S2, S2_conf``), ``names``."""
        out = {"names": list(self.names), "S1": self.S1, "S1_conf": self.S1_conf,
               "ST": self.ST, "ST_conf": self.ST_conf}
        if self.S2 is not None:
            out.update(S2=self.S2, S2_conf=self.S2_conf)
        return out


def _check_confidence(confidence):
    if not (isinstance(confidence, (float, int)) and 0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_nonneg_int(x, name):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0:
        raise ValueError(f"{name} must be a non-negative int, got {x!r}")
    return int(x)


def sobol_indices(Y, d: int, *, second_order: bool = False, estimator: str = "saltelli-jansen",
                  n_bootstrap: int = 100, confidence: float = 0.95, seed: int = 0,
                  resample_indices=None, bootstrap_chunk: int = 128, centering: str = "all",
                  names=None, devices=None) -> SobolResult:
    """Sobol' indices from outputs of a Saltelli design computed elsewhere.

    Args:
      Y: outputs ``(N,)`` or ``(N, k)`` in the row order of :func:`sobol_design` (= SALib's),
        ``N = n (d + 2)`` or ``n (2d + 2)`` with second order. Must be finite.
      d: number of inputs.
      second_order: whether the design contains the ``BA`` blocks; then ``S2`` is computed.
      estimator: one of ``"saltelli-jansen"`` (default), ``"martinez"``, ``"janon"``,
        ``"azzini"`` (the latter requires ``second_order=True``). See the module docstring.
      n_bootstrap: number of bootstrap resamples of the ``n`` base rows (default 100, as
        SALib's ``num_resamples``; 0: no intervals).
      confidence: level of the intervals; ``*_conf`` uses ``z = Phi^-1((1 + confidence)/2)``.
      seed: seed of the ``jax.random`` key used to draw resamples.
      resample_indices: optional int array ``(n_bootstrap, n)`` of base-row indices per resample
        (e.g. ``r.T`` for SALib's ``r``) to reproduce another library's bootstrap exactly.
      bootstrap_chunk: resamples per vmapped chunk (memory ~ ``bootstrap_chunk * n`` floats
        plus per-row statistics).
      centering: ``"all"`` (SALib: centre by the mean of all outputs) or ``"AB"`` (SciPy:
        mean of the ``A`` and ``B`` outputs).
      names: optional input names (default ``x1..xd``).
      devices: ``None`` (one device), ``"all"`` (every device of every process; in a process
        group every process makes the same call) or a sequence of JAX devices that share the
        chunks of resamples: the same resamples and results as one device, ``D`` times less
        bootstrap work per device; ``Y``'s per-row statistics (``O(n d)``) are replicated.

    Returns:
      :class:`SobolResult`; float32 arithmetic by default, float64 under ``jax.enable_x64``.

    References: Saltelli et al. (2010), Jansen (1999), Martinez (2011), Janon et al. (2014),
    Azzini et al. (2020); bootstrap as in SALib (Archer, Saltelli & Sobol' 1997).
    """
    ensure_compilation_cache()
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive int, got {d!r}")
    d = int(d)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if estimator == "azzini" and not second_order:
        raise ValueError("estimator='azzini' needs the BA blocks: use a design with second_order=True")
    if centering not in ("all", "AB"):
        raise ValueError(f"centering must be 'all' or 'AB', got {centering!r}")
    confidence = _check_confidence(confidence)
    n_bootstrap = _check_nonneg_int(n_bootstrap, "n_bootstrap")
    if isinstance(bootstrap_chunk, bool) or not isinstance(bootstrap_chunk, (int, np.integer)) or bootstrap_chunk < 1:
        raise ValueError(f"bootstrap_chunk must be a positive int, got {bootstrap_chunk!r}")
    Y = np.asarray(Y)
    if Y.ndim not in (1, 2) or Y.shape[0] == 0:
        raise ValueError(f"Y must have shape (N,) or (N, k), got {Y.shape}")
    if not np.issubdtype(Y.dtype, np.number) or np.iscomplexobj(Y):
        raise TypeError(f"Y must be a real numeric array, got dtype {Y.dtype}")
    bad = ~np.isfinite(Y)
    if bad.any():
        rows = np.nonzero(bad.reshape(Y.shape[0], -1).any(axis=1))[0]
        raise ValueError(f"Y contains NaN/inf in {rows.size} row(s), first rows {rows[:5].tolist()}")
    step = 2 * d + 2 if second_order else d + 2
    if Y.shape[0] % step:
        raise ValueError(f"Y has {Y.shape[0]} rows, not a multiple of {step} = "
                         f"{'2d + 2' if second_order else 'd + 2'} (d={d}, second_order={second_order})")
    n = Y.shape[0] // step
    if n < 2:
        raise ValueError("Y must contain at least 2 base rows")
    if names is None:
        names = tuple(f"x{i + 1}" for i in range(d))
    names = tuple(names)
    if len(names) != d:
        raise ValueError(f"names has {len(names)} entries, expected d={d}")
    squeeze = Y.ndim == 1
    Y2 = Y.reshape(Y.shape[0], -1)
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    Yk = np.ascontiguousarray(np.moveaxis(Y2.reshape(n, step, -1), -1, 0), dtype=dtype)  # (k, n, step)

    chunk = max(1, min(int(bootstrap_chunk), n_bootstrap)) if n_bootstrap else 1
    idx = None
    if resample_indices is not None:
        if n_bootstrap == 0:
            raise ValueError("resample_indices given but n_bootstrap == 0")
        ri = np.asarray(resample_indices)
        if ri.shape != (n_bootstrap, n) or not np.issubdtype(ri.dtype, np.integer):
            raise ValueError(f"resample_indices must be an int array of shape ({n_bootstrap}, {n}), "
                             f"got {ri.dtype} {ri.shape}")
        if ri.min() < 0 or ri.max() >= n:
            raise ValueError(f"resample_indices must lie in [0, {n})")
        idx = ri.astype(np.int32, copy=False)
    z = norm.ppf(0.5 + confidence / 2.0)
    alpha = 1.0 - confidence
    args = (Yk, np.uint32(seed % 2**32), idx, np.asarray(z, dtype), np.asarray([alpha / 2, 1 - alpha / 2], dtype))
    from hsens_jax.engine import distributed

    chosen = distributed.estimator_devices(devices) if n_bootstrap else None
    mesh = None
    if chosen is not None:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(chosen), ("resamples",))
        if distributed.is_multiprocess():
            distributed.check_agreement("Sobol' inputs", {"Y": Yk, "idx": idx, "options": [
                d, bool(second_order), estimator, n_bootstrap, confidence, seed, chunk, centering]})
        args = distributed.put(args, NamedSharding(mesh, PartitionSpec()))
    with distributed.collective("computing Sobol' indices"):
        outs = _sobol_core(*args, d=d, second_order=bool(second_order), estimator=estimator,
                           n_bootstrap=n_bootstrap, chunk=chunk, centering=centering, mesh=mesh)
    if mesh is not None:  # replicated on every device: this process's copy
        outs = jax.tree_util.tree_map(lambda a: np.asarray(a.addressable_data(0)), outs)
    point, conf, low, high = jax.device_get(outs)

    def fix(a):  # (k, *shape) -> (*shape, k) or (*shape)
        a = np.moveaxis(np.asarray(a), 0, -1)
        return a[..., 0] if squeeze else a

    out = {}
    for key_ in point:
        out[key_] = fix(point[key_])
        if conf is None:
            out[key_ + "_conf"] = np.full_like(out[key_], np.nan)
            out[key_ + "_ci"] = (np.full_like(out[key_], np.nan), np.full_like(out[key_], np.nan))
        else:
            out[key_ + "_conf"] = fix(conf[key_])
            out[key_ + "_ci"] = (fix(low[key_]), fix(high[key_]))
    return SobolResult(names=names, n=n, estimator=estimator, confidence=confidence,
                       n_bootstrap=n_bootstrap, **out)


def sobol(f: Callable[[Any], Any], bounds_or_space, n: int, *, second_order: bool = False,
          estimator: str = "saltelli-jansen", n_bootstrap: int = 100, confidence: float = 0.95,
          seed: int = 0, chunk_size: Optional[int] = None, names=None,
          bootstrap_chunk: int = 128, devices=None) -> SobolResult:
    """Sobol' indices of ``f`` in one call: design, evaluation in chunks, estimation.

    Args:
      f: the model. For a bounds array it receives a ``jax.numpy`` array ``(m, d)`` of input
        rows (default float dtype) and returns ``(m,)`` or ``(m, k)``; for a space it receives
        the configs dict ``{name: (m,) float64}`` of ``space.from_unit`` instead.
      bounds_or_space: bounds array ``(d, 2)`` (uniform inputs) or a search-space object.
      n: base rows, a power of two; ``f`` is evaluated ``n (d + 2)`` times (``n (2d + 2)``
        with ``second_order``).
      second_order, estimator, n_bootstrap, confidence, bootstrap_chunk, devices: see
        :func:`sobol_indices` (``devices`` shares the bootstrap; ``f`` runs in this process).
      seed: seeds both the scrambled Sobol' design and the bootstrap.
      chunk_size: rows per call of ``f`` (None: all rows in one call).
      names: input names for a bounds array.

    Returns:
      :class:`SobolResult`.

    Reference: Saltelli et al. (2010).
    """
    ensure_compilation_cache()
    dom = _Domain(bounds_or_space, names)
    X = sobol_design(bounds_or_space, n, second_order=second_order, seed=seed, names=names)
    Y = _evaluate_in_chunks(f, X, chunk_size)
    return sobol_indices(Y, dom.d, second_order=second_order, estimator=estimator,
                         n_bootstrap=n_bootstrap, confidence=confidence, seed=seed,
                         bootstrap_chunk=bootstrap_chunk, names=dom.names, devices=devices)
