"""Designs: the configurations a sweep trains, drawn from a :class:`~hsens_jax.space.Space`.

The second stage of ``space -> design -> sweep``.  Every function takes the space first and
returns configs in the format of :mod:`hsens_jax.space` (``{name: (n,) float64}``, NaN where a
conditional hyperparameter is inactive, including under a :class:`~hsens_jax.space.Threshold`)::

    from hsens_jax import design
    configs = design.sample(space, 256, kind="sobol", seed=0)
    configs = design.grid(space, levels={"learning_rate": 7})
    configs = design.make(space, "lhs", n=100, seed=3)      # one entry point for a [design] table
    design.check(space, "grid", n=64)                        # ValueError naming n, before building

* ``"random"``: i.i.d. uniform points of the unit cube (``numpy.random.default_rng(seed)``);
* ``"sobol"``: scrambled Sobol' (best with n a power of two; SciPy warns otherwise);
* ``"halton"``: scrambled Halton;
* ``"lhs"``: Latin hypercube;

all from ``scipy.stats.qmc`` and mapped to configurations by
:func:`hsens_jax.encoding.from_unit` (one unit coordinate per hyperparameter, conditional ones
too).  ``"grid"``: the full factorial grid of :func:`grid`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from hsens_jax import encoding
from hsens_jax.space import Bool, Categorical, Configs, Float, Hyperparameter, Space

__all__ = ["KINDS", "SAMPLED_KINDS", "unit_sample", "sample", "grid", "check", "make"]

SAMPLED_KINDS = ("random", "sobol", "halton", "lhs")
"""Designs of ``n`` points drawn in the unit cube."""

KINDS = SAMPLED_KINDS + ("grid",)
"""Every kind :func:`make` builds."""

DEFAULT_LEVELS = 5


def _describe(v: Any) -> str:
    return f"{v!r} ({type(v).__name__})"


def _check_n(n: Any, where: str) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n <= 0:
        raise ValueError(
            f"{where}: n (the number of configurations) must be a positive integer, got "
            f"{_describe(n)}"
        )
    return int(n)


def _check_seed(seed: Any, where: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{where}: seed must be a non-negative integer, got {_describe(seed)}")
    return int(seed)


def _check_kind(kind: Any, kinds: tuple[str, ...], where: str) -> str:
    if not isinstance(kind, str) or kind not in kinds:
        hint = " (a grid is design.grid(space, levels))" if kind == "grid" else ""
        raise ValueError(f"{where}: kind {kind!r} is not one of {list(kinds)}{hint}")
    return kind


def unit_sample(n: int, d: int, kind: str = "random", seed: int = 0) -> np.ndarray:
    """``n`` points of the unit cube ``[0, 1]^d``.

    Args:
      n: number of points (> 0).
      d: dimension (> 0).
      kind: ``"random"`` (``numpy.random.default_rng(seed).random``), ``"sobol"``, ``"halton"`` or
        ``"lhs"`` (``scipy.stats.qmc`` engines, scrambled, seeded with ``seed``).
      seed: non-negative integer.
    Returns:
      (n, d) float64.
    """
    n = _check_n(n, "unit_sample")
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) or d <= 0:
        raise ValueError(f"unit_sample: d must be a positive integer, got {_describe(d)}")
    kind = _check_kind(kind, SAMPLED_KINDS, "unit_sample")
    seed = _check_seed(seed, "unit_sample")
    d = int(d)
    if kind == "random":
        return np.random.default_rng(seed).random((n, d))
    from scipy.stats import qmc

    klass = {"sobol": qmc.Sobol, "halton": qmc.Halton, "lhs": qmc.LatinHypercube}[kind]
    try:
        engine = klass(d, scramble=True, rng=seed)
    except TypeError:  # scipy < 1.15
        engine = klass(d, scramble=True, seed=seed)
    return engine.random(n)


def sample(space: Space, n: int, kind: str = "random", seed: int = 0) -> Configs:
    """Draw ``n`` configurations of ``space``.

    Args:
      space: the search space.
      n: number of configurations (a positive integer).
      kind: ``"random"``, ``"sobol"``, ``"halton"`` or ``"lhs"`` (see :func:`unit_sample`).
      seed: non-negative integer seed (sampling / scrambling).
    Returns:
      configs with ``n`` rows: :func:`unit_sample` ``(n, len(space), kind, seed)`` mapped by
      :func:`hsens_jax.encoding.from_unit`.
    """
    n = _check_n(n, "sample")
    kind = _check_kind(kind, SAMPLED_KINDS, "sample")
    seed = _check_seed(seed, "sample")
    return encoding.from_unit(space, unit_sample(n, len(space), kind, seed))


def _grid_values(p: Hyperparameter, levels: int) -> np.ndarray:
    """Codes/values of ``p`` on the grid."""
    if isinstance(p, (Categorical, Bool)):
        return np.arange(p.n_values, dtype=np.float64)
    if isinstance(p, Float):
        v = np.geomspace(p.low, p.high, levels) if p.log else np.linspace(p.low, p.high, levels)
        v[0], v[-1] = p.low, p.high
        return v
    if p.n_values <= levels:
        return np.arange(p.low, p.high + 1, dtype=np.float64)
    raw = np.geomspace(p.low, p.high, levels) if p.log else np.linspace(p.low, p.high, levels)
    v = np.round(raw)
    v[0], v[-1] = p.low, p.high
    for i in range(1, levels):  # rounding may merge neighbours on the log scale: push apart
        v[i] = max(v[i], v[i - 1] + 1)
    for i in range(levels - 2, -1, -1):
        v[i] = min(v[i], v[i + 1] - 1)
    return v


def _grid_levels(space: Space, levels: Any) -> dict[str, int]:
    """``levels`` checked and expanded to ``{name: int}`` for every hyperparameter."""

    def bad(L: Any) -> bool:
        return isinstance(L, (bool, np.bool_)) or not isinstance(L, numbers.Integral) or L < 2

    if isinstance(levels, Mapping):
        unknown = [k for k in levels if k not in space]
        if unknown:
            raise ValueError(f"grid: levels names unknown hyperparameter(s) {unknown}")
        discrete = [k for k in levels if isinstance(space[k], (Categorical, Bool))]
        if discrete:
            raise ValueError(
                f"grid: levels names {discrete}, but a Categorical or Bool takes all its choices "
                "on a grid; give levels only for Float and Int hyperparameters"
            )
        for name, L in levels.items():
            if bad(L):
                raise ValueError(f"grid: levels for {name!r} must be an integer >= 2, got {L!r}")
        return {name: int(levels.get(name, DEFAULT_LEVELS)) for name in space.names}
    if bad(levels):
        raise ValueError(
            f"grid: levels must be an integer >= 2 or a mapping {{name: integer >= 2}}, got "
            f"{levels!r}"
        )
    return {name: int(levels) for name in space.names}


def grid(space: Space, levels: int | Mapping[str, int] = DEFAULT_LEVELS) -> Configs:
    """Full factorial grid of ``space``, respecting conditions.

    Args:
      space: the search space.
      levels: int >= 2, or ``{name: int}`` naming Float/Int hyperparameters (the others get 5).
        Categorical/Bool take all choices (naming one in ``levels`` is an error). Int takes all
        its integers if there are at most ``levels``, else ``levels`` distinct integers evenly
        spaced (log scale if log; rounded, nudged apart if rounding merges neighbours). Float
        takes ``levels`` points evenly spaced (log scale if log), endpoints included.
    Returns:
      configs; a conditional hyperparameter only varies in the rows where it is active (NaN
      elsewhere; a child of a :class:`~hsens_jax.space.Threshold` is active on the grid points of
      its parent that pass), so no configuration appears twice.
    """
    lv = _grid_levels(space, levels)
    cols: dict[str, np.ndarray] = {}
    n = 1
    active: dict[str, np.ndarray] = {}
    for name in space.topological_order:  # parents first: children vary only where active
        p = space[name]
        vals = _grid_values(p, lv[name])
        if p.condition is None:
            act = np.ones(n, dtype=bool)
        else:
            act = space.active_given_parents(name, cols, active)
        reps = np.where(act, len(vals), 1)
        for k in cols:
            cols[k] = np.repeat(cols[k], reps)
        for k in active:
            active[k] = np.repeat(active[k], reps)
        new = np.full(int(reps.sum()), np.nan)
        new_act = np.repeat(act, reps)
        new[new_act] = np.tile(vals, int(act.sum()))
        cols[name] = new
        active[name] = new_act
        n = new.shape[0]
    return {name: cols[name] for name in space.names}


def check(
    space: Space,
    kind: str,
    *,
    n: int | None = None,
    levels: int | Mapping[str, int] | None = None,
    seed: int = 0,
) -> None:
    """Check the settings of a design without building it (ValueError naming the setting).

    Arguments as in :func:`make`; for example, a configuration file is checked when it is read,
    before anything trains.
    """
    kind = _check_kind(kind, KINDS, "design")
    _check_seed(seed, "design")
    if kind == "grid":
        if n is not None:
            raise ValueError(
                f"design: kind='grid' builds the full factorial grid from `levels`, so n={n!r} "
                "would be ignored; remove n (the grid's size follows from levels) or choose a "
                f"sampled kind {list(SAMPLED_KINDS)}"
            )
        _grid_levels(space, DEFAULT_LEVELS if levels is None else levels)
        return
    if levels is not None:
        raise ValueError(
            f"design: levels is only used by kind='grid'; kind={kind!r} draws n points "
            "(remove levels)"
        )
    if n is None:
        raise ValueError(f"design: kind={kind!r} needs n, the number of configurations")
    _check_n(n, "design")


def make(
    space: Space,
    kind: str,
    *,
    n: int | None = None,
    levels: int | Mapping[str, int] | None = None,
    seed: int = 0,
) -> Configs:
    """The design a ``[design]`` table describes, every setting checked (see :func:`check`).

    Args:
      space: the search space.
      kind: one of :data:`KINDS`.
      n: number of configurations, required for the sampled kinds; a grid's size follows from
        its ``levels``, so ``n`` with ``kind="grid"`` is an error (it would be ignored).
      levels: for ``kind="grid"`` only (default 5); see :func:`grid`.
      seed: non-negative integer, for the sampled kinds (a grid has no randomness; ``seed`` is
        checked and unused).
    Returns:
      configs.
    Raises:
      ValueError naming the setting (``kind``, ``n``, ``levels``, ``seed``).
    """
    check(space, kind, n=n, levels=levels, seed=seed)
    if kind == "grid":
        return grid(space, DEFAULT_LEVELS if levels is None else levels)
    return sample(space, n, kind, seed)
