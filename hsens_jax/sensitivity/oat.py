"""One-at-a-time (OAT) sensitivity: vary each hyperparameter over its range around a base
configuration, all others held fixed, and summarise each response curve.

OAT is local (it says nothing about interactions away from the base point) but it is the
plot practitioners ask for first, and with a vmapped sweep all ``sum_i m_i`` variations run
as one batch. Continuous inputs are varied on an ``n_points`` grid that is uniform in the
space's unit coordinates -- hence log-uniform for log-scaled hyperparameters -- (for a bounds
array, uniform, or geometric where ``log_scale``); discrete inputs (Bool, Categorical, Int
with at most ``max_levels`` values) take *every* value.

Reference: Saltelli, A. et al. (2008). Global Sensitivity Analysis: The Primer, ch. 2
(and the critique of OAT in Saltelli & Annoni 2010, Environ. Model. Softw. 25, 1508-1517).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import numpy as np

from hsens_jax.compile_cache import ensure_compilation_cache
from hsens_jax.sensitivity._table import number, per_input_table, picker
from hsens_jax.sensitivity.sobol import _Domain, _evaluate_in_chunks

__all__ = ["OATDesign", "OATResult", "oat_design", "oat_analyze", "one_at_a_time"]


@dataclasses.dataclass(frozen=True)
class OATDesign:
    """An OAT design.

    X: ``(N, d)`` array (bounds) or configs dict ``{name: (N,)}`` (space), the runs to do;
    param: ``(N,)`` int, which input is varied in each run; values: ``(N,)`` the varied
    input's value (its own units; categorical = choice index; NaN = inactive);
    names; base: the base configuration (array ``(d,)`` or dict); log_x: ``(d,)`` bool,
    grid is geometric (for plotting).
    """

    X: object
    param: np.ndarray
    values: np.ndarray
    names: tuple
    base: object
    log_x: np.ndarray

    def __len__(self):
        return int(self.param.shape[0])


@dataclasses.dataclass(frozen=True)
class OATResult:
    """OAT response curves and spreads.

    curves: dict ``name -> (values (m,), outputs (m,) or (m, k))`` sorted by value;
    range: ``(d,)`` / ``(d, k)`` ``max - min`` of each curve; std: ``(d,)`` / ``(d, k)``
    standard deviation (ddof = 0) of each curve; both ignore NaN outputs (diverged runs);
    names; log_x.
    """

    curves: dict
    range: np.ndarray
    std: np.ndarray
    names: tuple
    log_x: np.ndarray

    def table(self, output: int = 0, digits: int = 4) -> str:
        """A plain-text table, one row per input in decreasing order of range: the range
        (max - min) and standard deviation of its response curve and the number of points.
        ``output`` selects the output of a multi-output result."""
        pick, multi = picker(self.range, output)
        rng, sd = pick(self.range), pick(self.std)
        order = [self.names.index(n) for n in self.ranking(output)]
        cells = [[number(rng[i], digits), number(sd[i], digits), str(len(self.curves[self.names[i]][0]))]
                 for i in order]
        return per_input_table("One-at-a-time response ranges", [self.names[i] for i in order],
                               ["input", "range", "std", "points"], cells, output, multi)

    def ranking(self, output: int = 0):
        """Names sorted by decreasing range (for output ``output`` when several)."""
        r = self.range if self.range.ndim == 1 else self.range[:, output]
        r = np.where(np.isnan(r), -np.inf, r)
        return [self.names[i] for i in np.argsort(-r, kind="stable")]


def _check_n_points(n_points):
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2, got {n_points!r}")
    return int(n_points)


def oat_design(space_or_bounds, base=None, *, n_points: int = 9, log_scale=None,
               max_levels: int = 32, names=None) -> OATDesign:
    """One-at-a-time design around ``base``.

    Args:
      space_or_bounds: bounds ``(d, 2)`` or a search-space object (``names``, ``from_unit``,
        ``to_unit``).
      base: the base configuration. Bounds: array ``(d,)`` inside the bounds (default: the
        midpoints, geometric midpoints for ``log_scale`` inputs). Space: a config dict
        ``{name: value}`` (mapped with ``space.to_unit``) or unit coordinates ``(d,)``
        (default: the centre of the unit cube).
      n_points: grid size for continuous inputs.
      log_scale: bounds only, ``(d,)`` bools: geometric grid (needs positive bounds).
      max_levels: a space input taking at most ``max(n_points, max_levels)`` distinct values is
        treated as discrete and all its values are used.
      names: input names for bounds.

    Returns:
      :class:`OATDesign` with ``sum_i m_i`` runs (``m_i = n_points`` or the number of values).
    """
    dom = _Domain(space_or_bounds, names, argname="space_or_bounds")
    n_points = _check_n_points(n_points)
    d = dom.d
    if not dom.is_space:
        lo, hi = dom.bounds[:, 0], dom.bounds[:, 1]
        logs = np.zeros(d, bool) if log_scale is None else np.asarray(log_scale, dtype=bool)
        if logs.shape != (d,):
            raise ValueError(f"log_scale must have {d} entries, got shape {logs.shape}")
        if np.any(logs & (lo <= 0)):
            raise ValueError(f"log_scale inputs need positive bounds: {[dom.names[i] for i in np.nonzero(logs & (lo <= 0))[0]]}")
        if base is None:
            base = np.where(logs, np.sqrt(np.abs(lo * hi)), 0.5 * (lo + hi))
        base = np.asarray(base, dtype=np.float64)
        if base.shape != (d,):
            raise ValueError(f"base must have shape ({d},), got {base.shape}")
        out = np.nonzero((base < lo) | (base > hi))[0]
        if out.size:
            raise ValueError(f"base outside the bounds for {[dom.names[i] for i in out]}")
        rows, param, values = [], [], []
        for j in range(d):
            g = np.geomspace(lo[j], hi[j], n_points) if logs[j] else np.linspace(lo[j], hi[j], n_points)
            R = np.repeat(base[None], n_points, 0)
            R[:, j] = g
            rows.append(R)
            param.append(np.full(n_points, j))
            values.append(g)
        return OATDesign(X=np.concatenate(rows), param=np.concatenate(param), values=np.concatenate(values),
                         names=dom.names, base=base, log_x=logs)

    if log_scale is not None:
        raise ValueError("log_scale is only for bounds; a space knows its log-scaled inputs")
    space = dom.space
    if base is None:
        u0 = np.full(d, 0.5)
    elif isinstance(base, dict):
        missing = [k for k in dom.names if k not in base]
        if missing:
            raise ValueError(f"base config lacks {missing}")
        configs = None
        if hasattr(space, "encode"):  # decoded values: choices by name, as space.decode gives them
            try:
                configs = space.encode([base])
            except (ValueError, TypeError):
                configs = None
        if configs is None:  # already in the configs format (codes for categoricals)
            configs = {k: np.atleast_1d(np.asarray(base[k], dtype=np.float64)) for k in dom.names}
        u0 = dom.to_unit(configs)[0]
    else:
        u0 = np.asarray(base, dtype=np.float64)
        if u0.shape != (d,) or np.any((u0 < 0) | (u0 > 1)):
            raise ValueError(f"base as an array must be unit coordinates of shape ({d},) in [0, 1]")
    fine = (np.arange(1024) + 0.5) / 1024
    units, param, logs = [], [], np.zeros(d, bool)
    for j, name in enumerate(dom.names):
        U = np.repeat(u0[None], fine.size, 0)
        U[:, j] = fine
        vals = np.asarray(space.from_unit(U)[name], dtype=np.float64)
        ok = ~np.isnan(vals)
        distinct = np.unique(vals[ok])
        if 0 < distinct.size <= max(n_points, max_levels):
            grid = np.array([np.median(fine[ok & (vals == v)]) for v in distinct])
        else:
            grid = np.linspace(0.0, 1.0, n_points)
            U3 = np.repeat(u0[None], 3, 0)
            U3[:, j] = [0.0, 0.5, 1.0]
            v = np.asarray(space.from_unit(U3)[name], dtype=np.float64)  # log scale: v(.5) = sqrt(v0 v1)
            logs[j] = bool(np.all(v > 0) and v[2] / v[0] > 20 and abs(np.log(v[1]) - 0.5 * np.log(v[0] * v[2]))
                           < 0.05 * abs(np.log(v[2] / v[0])))
        U = np.repeat(u0[None], grid.size, 0)
        U[:, j] = grid
        units.append(U)
        param.append(np.full(grid.size, j))
    U = np.concatenate(units)
    param = np.concatenate(param)
    X = {k: np.asarray(v, dtype=np.float64) for k, v in space.from_unit(U).items()}
    values = np.array([X[dom.names[p]][i] for i, p in enumerate(param)])
    return OATDesign(X=X, param=param, values=values, names=dom.names, base=base, log_x=logs)


def oat_analyze(design: OATDesign, Y) -> OATResult:
    """Split the outputs of an OAT design back per input and summarise each curve.

    Args:
      design: from :func:`oat_design`.
      Y: outputs ``(N,)`` or ``(N, k)`` in the design's row order (NaN allowed: a diverged
        run; it is shown in the curve and ignored by ``range``/``std``).

    Returns:
      :class:`OATResult`.
    """
    if not isinstance(design, OATDesign):
        raise TypeError(f"design must be an OATDesign, got {type(design).__name__}")
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim not in (1, 2) or Y.shape[0] != len(design):
        raise ValueError(f"Y must have shape ({len(design)},) or ({len(design)}, k), got {Y.shape}")
    curves, rng_, std = {}, [], []
    for j, name in enumerate(design.names):
        sel = design.param == j
        v, y = design.values[sel], Y[sel]
        order = np.argsort(v, kind="stable")
        curves[name] = (v[order], y[order])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN curve -> NaN
            rng_.append(np.nanmax(y, axis=0) - np.nanmin(y, axis=0))
            std.append(np.nanstd(y, axis=0))
    return OATResult(curves=curves, range=np.array(rng_), std=np.array(std), names=design.names,
                     log_x=design.log_x)


def one_at_a_time(f, space_or_bounds, base=None, *, n_points: int = 9, log_scale=None,
                  max_levels: int = 32, chunk_size: Optional[int] = None, names=None) -> OATResult:
    """OAT analysis in one call: ``f`` is evaluated on all variations in one vectorized call.

    ``f`` receives the ``(N, d)`` ``jax.numpy`` array (bounds) or the configs dict (space) of
    all runs (in chunks of ``chunk_size`` if given) and returns ``(N,)`` or ``(N, k)``.
    Other arguments as :func:`oat_design`. Returns :class:`OATResult`.
    """
    ensure_compilation_cache()
    design = oat_design(space_or_bounds, base, n_points=n_points, log_scale=log_scale,
                        max_levels=max_levels, names=names)
    Y = _evaluate_in_chunks(f, design.X, chunk_size)
    return oat_analyze(design, Y)
