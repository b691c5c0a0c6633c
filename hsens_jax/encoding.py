"""Encodings of configurations as numeric matrices: the unit cube, one-hot, and the
normalization of Novello et al. (2023) for kernel methods.

Every function takes the :class:`~hsens_jax.space.Space` first; configs are in the format of
:mod:`hsens_jax.space` (``{name: (n,) float64}``, NaN where inactive)::

    from hsens_jax import encoding
    U = encoding.to_unit(space, configs)             # (n, d) in [0, 1], NaN where inactive
    configs = encoding.from_unit(space, U)           # the inverse (designs use it)
    X, columns = encoding.one_hot(space, configs)    # regression design matrix
    X = encoding.normalize(space, configs, method="novello", seed=0)   # HSIC inputs

Unit-cube convention
--------------------
Each hyperparameter owns one coordinate ``u`` in [0, 1] (conditional ones too; their coordinate is
ignored where inactive).  ``Float``: ``low + u (high - low)`` (log: the same on the log scale).
``Int`` with ``k = high - low + 1`` values: ``u`` falls into one of ``k`` bins, equal on the linear
scale, or (log) equal on the log scale of ``[low, high + 1)`` so that ``floor`` of the log-uniform
value is the integer.  ``Categorical``/``Bool`` with ``k`` choices: ``floor(u k)`` clipped to ``k-1``.

References
----------
P. Novello, G. Poette, D. Lugato, P. M. Congedo, "Goal-oriented sensitivity analysis of
hyperparameters in deep learning", Journal of Scientific Computing 94, 45 (2023) -- the
normalization of mixed discrete/continuous hyperparameters for kernel (HSIC) methods.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from hsens_jax.space import Bool, Configs, Float, Hyperparameter, Int, Space

__all__ = ["NORMALIZATIONS", "from_unit", "to_unit", "one_hot", "normalize"]

NORMALIZATIONS = ("novello", "unit")
"""Methods of :func:`normalize`."""


def _log_int_edges(p: Int) -> tuple[float, float]:
    return math.log(p.low), math.log(p.high + 1)


def from_unit(space: Space, U: Any) -> Configs:
    """Map points of the unit cube to configs.

    Args:
      space: the search space.
      U: (n, d) array in [0, 1], d = ``len(space)``, column j for ``space.names[j]``.
    Returns:
      configs; see the module docstring for the per-type maps. Inactive -> NaN.
    """
    try:
        U = np.asarray(U, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"from_unit: U must be a numeric (n, {len(space)}) array ({e})") from None
    if U.ndim != 2 or U.shape[1] != len(space):
        raise ValueError(f"from_unit: U must have shape (n, {len(space)}), got {U.shape}")
    cols: dict[str, np.ndarray] = {}
    for j, p in enumerate(space.params):
        u = U[:, j]
        bad = ~((u >= 0) & (u <= 1))
        if np.any(bad):
            raise ValueError(
                f"from_unit: column {j} ({p.name!r}) has {float(u[bad][0])} outside [0, 1]"
            )
        if isinstance(p, Float):
            if p.log:
                lo, hi = math.log(p.low), math.log(p.high)
                x = np.exp(lo + u * (hi - lo))
            else:
                x = p.low + u * (p.high - p.low)
            x = np.clip(x, p.low, p.high)
        elif isinstance(p, Int):
            if p.log:
                lo, hi = _log_int_edges(p)
                x = np.floor(np.exp(lo + u * (hi - lo)))
            else:
                x = p.low + np.floor(u * p.n_values)
            x = np.clip(x, p.low, p.high)
        else:
            x = np.minimum(np.floor(u * p.n_values), p.n_values - 1)
        cols[p.name] = x
    active = space.active(cols)
    for name in space.names:
        cols[name][~active[name]] = np.nan
    return cols


def _unit_bins(p: Hyperparameter, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a discrete hyperparameter: lower edge and width of each value's bin in [0, 1]."""
    if isinstance(p, Int) and p.log:
        lo, hi = _log_int_edges(p)
        left = (np.log(col) - lo) / (hi - lo)
        right = (np.log(col + 1) - lo) / (hi - lo)
        return left, right - left
    j = col - p.low if isinstance(p, Int) else col
    k = p.n_values
    return j / k, np.full_like(col, 1.0 / k)


def to_unit(space: Space, configs: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`from_unit`: configs -> (n, d) float64 array in [0, 1].

    Float: ``(x - low) / (high - low)`` (log: on the log scale). Discrete: the centre of the
    value's bin, ``(j + 0.5) / k`` (log Int: the centre on the log scale of ``[v, v + 1)``).
    NaN (inactive) stays NaN. ``from_unit(to_unit(c)) == c`` exactly for discrete columns.
    """
    cols, n = space.validated_columns(configs)
    U = np.empty((n, len(space)))
    for j, p in enumerate(space.params):
        col = cols[p.name]
        if isinstance(p, Float):
            if p.log:
                U[:, j] = (np.log(col) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
            else:
                U[:, j] = (col - p.low) / (p.high - p.low)
        else:
            left, width = _unit_bins(p, col)
            U[:, j] = left + 0.5 * width
    return np.clip(U, 0.0, 1.0)  # NaN passes through np.clip


def one_hot(space: Space, configs: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Design matrix for regression-type analyses.

    Args:
      space: the search space.
      configs: a valid configs batch.
    Returns:
      ``(X, column_names)``: X (n, D) float64. Float/Int: one column min-max scaled to [0, 1]
      by the space bounds (on the log scale if log), NaN where inactive. Categorical with k
      choices: k indicator columns named ``"name=choice"``, all 0 where inactive. Bool: one
      0/1 column named ``name`` (0 where inactive).
    """
    cols, n = space.validated_columns(configs)
    blocks, names = [], []
    for p in space.params:
        col = cols[p.name]
        if isinstance(p, (Float, Int)):
            if p.log:
                x = (np.log(col) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
            else:
                x = (col - p.low) / (p.high - p.low)
            blocks.append(x[:, None])
            names.append(p.name)
        elif isinstance(p, Bool):
            blocks.append(np.nan_to_num(col, nan=0.0)[:, None])
            names.append(p.name)
        else:
            ind = (col[:, None] == np.arange(p.n_values)[None, :]).astype(np.float64)
            blocks.append(ind)
            names.extend(f"{p.name}={c}" for c in p.choices)
    return np.concatenate(blocks, axis=1), names


def normalize(
    space: Space, configs: Mapping[str, Any], *, method: str = "novello", seed: int = 0
) -> np.ndarray:
    """Normalize mixed hyperparameters to [0, 1] for kernel methods (HSIC).

    Args:
      space: the search space.
      configs: a valid configs batch.
      method: ``"novello"`` (Novello et al. 2023): Float min-max scaled by the space bounds (on
        the log scale if log); each discrete value (Int, Categorical, Bool) is replaced by a
        uniform draw inside its bin: value index j of k -> U[j/k, (j+1)/k] (Int: j = value -
        low; log Int: the bin of the value on the log scale, as in :func:`from_unit`), so a
        discrete variable becomes a continuous uniform one with the same information.
        ``"unit"``: :func:`to_unit` (bin centres, no randomness).
      seed: non-negative integer seed of the jitter (``numpy.random.default_rng``), one
        uniform draw per (row, hyperparameter).
    Returns:
      (n, d) float64 in [0, 1], NaN where inactive.
    """
    if not isinstance(method, str) or method not in NORMALIZATIONS:
        raise ValueError(f"normalize: method {method!r} is not one of {list(NORMALIZATIONS)}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"normalize: seed must be a non-negative integer, got {seed!r}")
    if method == "unit":
        return to_unit(space, configs)
    cols, n = space.validated_columns(configs)
    jitter = np.random.default_rng(seed).random((n, len(space)))
    X = to_unit(space, configs)
    for j, p in enumerate(space.params):
        if isinstance(p, Float):
            continue
        left, width = _unit_bins(p, cols[p.name])
        X[:, j] = left + jitter[:, j] * width
    return X
