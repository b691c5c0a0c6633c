"""Morris elementary-effects screening (trajectory design, mu, mu*, sigma), vectorized.

Design (Morris 1991, in SALib's construction): each of the ``r`` trajectories has ``d + 1``
points on a ``p``-level grid of the unit cube, ``Delta = p / (2 (p - 1))``. With a random
base point ``x*`` drawn from ``{0, 1/(p-1), ..., 1 - Delta}`` (the first ``p/2`` levels),
random directions ``D* = diag(+-1)`` and a random order ``P*``,
``B* = x* + (Delta/2) [(2 B - J) D* + J] P*`` (``B`` strictly lower triangular ones): every
step moves exactly one input by ``+-Delta``. Rows are stored trajectory after trajectory,
``r (d + 1)`` rows in all, as ``SALib.sample.morris.sample``.

Elementary effects (SALib's convention): ``EE = (y_after - y_before) / Delta`` when the input
increased (``(y_before - y_after) / Delta`` when it decreased), with ``Delta`` measured in
*unit-cube* coordinates, i.e. effects are "output change per full-range move" scaled by
``1 / Delta``, comparable across inputs of different units. ``mu`` = mean EE,
``mu_star`` = mean |EE| (Campolongo et al. 2007), ``sigma`` = std of EE (ddof = 1).
``mu_star_conf = z * std(bootstrap mu*, ddof=1)`` where each bootstrap resamples the ``r``
effects of an input with replacement (SALib's definition); ``mu_star_ci`` is the percentile
interval of the same bootstrap.

References
----------
* Morris, M. D. (1991). Factorial sampling plans for preliminary computational experiments.
  Technometrics 33(2), 161-174.
* Campolongo, F., Cariboni, J., Saltelli, A. (2007). An effective screening design for
  sensitivity analysis of large models. Environ. Model. Softw. 22, 1509-1518.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

from hsens_jax.compile_cache import ensure_compilation_cache
from hsens_jax.sensitivity._table import interval, number, per_input_table, picker
from hsens_jax.sensitivity.sobol import _check_confidence, _check_nonneg_int, _Domain, _evaluate_in_chunks

__all__ = ["MorrisResult", "morris", "morris_design", "morris_indices"]


def _check_levels(levels):
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    if levels % 2:
        raise ValueError(f"levels must be even (Morris' symmetric grid), got {levels}")
    return int(levels)


def _delta(levels):
    return levels / (2.0 * (levels - 1))


def _trajectories_unit(rng, *, r, d, levels):
    """``(r, d + 1, d)`` unit-cube trajectories (Morris 1991, SALib's B* construction).

    Host-side NumPy (a few hundred numbers; no compilation), from an explicit seeded
    ``numpy.random.Generator``.
    """
    delta = _delta(levels)
    grid = np.linspace(0.0, 1.0 - delta, levels // 2)
    x_star = grid[rng.integers(0, levels // 2, size=(r, d))]  # base points on the lower levels
    D = rng.choice(np.array([-1.0, 1.0]), size=(r, d))  # directions D*
    pos = np.argsort(rng.random((r, d)), axis=1)  # P*: input j moves at step pos[t, j] + 1
    moved = (pos[:, None, :] < np.arange(d + 1)[None, :, None]).astype(np.float64)  # (r, d+1, d)
    return x_star[:, None, :] + 0.5 * delta * ((2.0 * moved - 1.0) * D[:, None, :] + 1.0)


def morris_design(bounds_or_space, r: int, *, levels: int = 4, seed: int = 0, names=None,
                  unit: bool = False):
    """Morris trajectory design.

    Args:
      bounds_or_space: bounds ``(d, 2)`` or a search-space object (``names``, ``from_unit``).
      r: number of trajectories (``r (d + 1)`` model runs).
      levels: ``p``, number of grid levels (even); ``Delta = p / (2 (p - 1))``.
      seed: seed of the ``numpy.random.Generator`` drawing the trajectories.
      unit: return the unit-cube design instead of the mapped one.

    Returns:
      ``(r (d + 1), d)`` float64 array (bounds, or ``unit=True``) or a configs dict (space).

    Reference: Morris (1991).
    """
    dom = _Domain(bounds_or_space, names)
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 2:
        raise ValueError(f"r must be an int >= 2, got {r!r}")
    levels = _check_levels(levels)
    U = _trajectories_unit(np.random.default_rng(seed), r=int(r), d=dom.d, levels=levels)
    U = np.clip(U.reshape(-1, dom.d), 0.0, 1.0)
    return U if unit else dom.from_unit(U)


@dataclasses.dataclass(frozen=True)
class MorrisResult:
    """Morris screening measures (SALib vocabulary), each ``(d,)`` (or ``(d, k)``).

    Attributes: mu, mu_star, sigma, mu_star_conf, mu_star_ci (low, high), ee (elementary
    effects ``(d, r)`` or ``(d, r, k)``), names, levels, confidence.
    """

    mu: np.ndarray
    mu_star: np.ndarray
    sigma: np.ndarray
    mu_star_conf: np.ndarray
    mu_star_ci: tuple
    ee: np.ndarray
    names: tuple
    levels: int
    confidence: float

    def table(self, output: int = 0, digits: int = 4) -> str:
        """A plain-text table, one row per input: mu*, its bootstrap interval (``-`` without
        bootstrap), mu and sigma. ``output`` selects the output of a multi-output result."""
        pick, multi = picker(self.mu_star, output)
        ms, mu, sg, (lo, hi) = pick(self.mu_star), pick(self.mu), pick(self.sigma), map(pick, self.mu_star_ci)
        cells = [[number(ms[i], digits), interval(lo[i], hi[i], digits), number(mu[i], digits),
                  number(sg[i], digits)] for i in range(len(self.names))]
        r = np.shape(self.ee)[1]
        return per_input_table(f"Morris elementary effects ({r} trajectories, {self.levels} levels)", self.names,
                               ["input", "mu*", f"mu* {round(100 * self.confidence)}% CI", "mu", "sigma"],
                               cells, output, multi)

    def to_dict(self):
        return {"names": list(self.names), "mu": self.mu, "mu_star": self.mu_star,
                "sigma": self.sigma, "mu_star_conf": self.mu_star_conf}


@partial(jax.jit, static_argnames=("n_bootstrap",))
def _morris_core(X, Y, delta, key, idx, *, n_bootstrap):
    """X (r, d+1, d) unit, Y (k, r, d+1) -> EE (k, d, r), stats, bootstrap mu* (R, k, d)."""
    sign = jnp.sign(X[:, 1:, :] - X[:, :-1, :])  # (r, d, d): step s, var j
    dy = Y[:, :, 1:] - Y[:, :, :-1]  # (k, r, d)
    ee = jnp.einsum("krs,rsj->kjr", dy, sign, precision="highest") / delta  # (k, d, r)
    mu = ee.mean(-1)
    mu_star = jnp.abs(ee).mean(-1)
    sigma = jnp.std(ee, axis=-1, ddof=1)
    if n_bootstrap == 0:
        return ee, mu, mu_star, sigma, None
    r = ee.shape[-1]
    d = ee.shape[1]
    if idx is None:
        idx = jax.random.randint(key, (d, n_bootstrap, r), 0, r)
    absee = jnp.abs(ee)  # (k, d, r)
    boot = jax.vmap(lambda a, ii: a[:, ii].mean(-1), in_axes=(1, 0), out_axes=1)(absee, idx)  # (k, d, R)
    return ee, mu, mu_star, sigma, jnp.moveaxis(boot, -1, 0)


def morris_indices(X, Y, bounds_or_space, *, levels: int = 4, n_bootstrap: int = 1000,
                   confidence: float = 0.95, seed: int = 0, resample_indices=None,
                   names=None) -> MorrisResult:
    """Morris measures from a trajectory design and its outputs.

    Args:
      X: the design, ``(r (d + 1), d)`` array (unit cube or mapped to bounds) or, for a space,
        a configs dict (mapped back with ``space.to_unit``) or the unit array.
      Y: outputs ``(r (d + 1),)`` or ``(r (d + 1), k)``, finite.
      bounds_or_space: as in :func:`morris_design`.
      levels: ``p`` used for the design (gives ``Delta``).
      n_bootstrap: resamples for ``mu_star_conf`` / ``mu_star_ci`` (0: NaN).
      confidence: level; ``mu_star_conf = Phi^-1((1 + confidence)/2) * std(bootstrap)``.
      seed: ``jax.random`` seed for the resamples.
      resample_indices: optional int array ``(d, n_bootstrap, r)`` (for input ``j`` and
        resample ``b`` the trajectory indices), e.g. SALib's ``rng.integers(r, size=(d, R, r))``.

    Returns:
      :class:`MorrisResult`; float32 by default, float64 under x64.

    Reference: Morris (1991); Campolongo et al. (2007).
    """
    ensure_compilation_cache()
    dom = _Domain(bounds_or_space, names)
    levels = _check_levels(levels)
    confidence = _check_confidence(confidence)
    n_bootstrap = _check_nonneg_int(n_bootstrap, "n_bootstrap")
    d = dom.d
    U = dom.to_unit(X)
    Y = np.asarray(Y)
    if Y.ndim not in (1, 2) or Y.shape[0] != U.shape[0]:
        raise ValueError(f"Y must have shape ({U.shape[0]},) or ({U.shape[0]}, k), got {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN/inf")
    if U.shape[0] % (d + 1):
        raise ValueError(f"X has {U.shape[0]} rows, not a multiple of d + 1 = {d + 1}")
    r = U.shape[0] // (d + 1)
    if r < 2:
        raise ValueError("need at least 2 trajectories")
    Ur = U.reshape(r, d + 1, d)
    nz = np.count_nonzero(np.abs(np.diff(Ur, axis=1)) > 1e-12, axis=2)
    if np.any(nz > 1):
        raise ValueError("X is not a Morris trajectory design: a step changes more than one input")
    squeeze = Y.ndim == 1
    Yk = np.moveaxis(Y.reshape(r, d + 1, -1), -1, 0)
    idx = None
    if resample_indices is not None:
        idx = np.asarray(resample_indices)
        if idx.shape != (d, n_bootstrap, r) or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"resample_indices must be an int array of shape ({d}, {n_bootstrap}, {r})")
        idx = jnp.asarray(idx, dtype=jnp.int32)
    dt = jnp.result_type(float)
    ee, mu, mu_star, sigma, boot = _morris_core(
        jnp.asarray(Ur, dt), jnp.asarray(Yk, dt), _delta(levels), jax.random.key(seed), idx,
        n_bootstrap=n_bootstrap)

    def fix(a):
        a = np.moveaxis(np.asarray(a), 0, -1)  # k last
        return a[..., 0] if squeeze else a

    if boot is None:
        conf = np.full_like(fix(mu), np.nan)
        ci = (conf.copy(), conf.copy())
    else:
        z = norm.ppf(0.5 + confidence / 2)
        conf = fix(z * jnp.std(boot, axis=0, ddof=1))
        alpha = 1 - confidence
        q = jnp.quantile(boot, jnp.array([alpha / 2, 1 - alpha / 2], dtype=boot.dtype), axis=0)
        ci = (fix(q[0]), fix(q[1]))
    return MorrisResult(mu=fix(mu), mu_star=fix(mu_star), sigma=fix(sigma), mu_star_conf=conf,
                        mu_star_ci=ci, ee=fix(ee), names=dom.names, levels=levels, confidence=confidence)


def morris(f, bounds_or_space, r: int, *, levels: int = 4, n_bootstrap: int = 1000,
           confidence: float = 0.95, seed: int = 0, chunk_size: Optional[int] = None,
           names=None) -> MorrisResult:
    """One-call Morris screening: design, evaluation of ``f`` (in chunks), measures.

    ``f`` receives a ``jax.numpy`` array ``(m, d)`` for bounds or a configs dict for a space,
    and returns ``(m,)`` or ``(m, k)``. Other arguments as :func:`morris_design` and
    :func:`morris_indices`.

    Reference: Morris (1991); Campolongo et al. (2007).
    """
    ensure_compilation_cache()
    X = morris_design(bounds_or_space, r, levels=levels, seed=seed, names=names)
    Y = _evaluate_in_chunks(f, X, chunk_size)
    return morris_indices(X, Y, bounds_or_space, levels=levels, n_bootstrap=n_bootstrap,
                          confidence=confidence, seed=seed, names=names)
