"""Coordinates of a hypergradient: raw, natural (log scale) and unit cube.

A hyperparameter searched on a log scale (learning rate, weight decay, eps...) is
naturally compared in relative terms: its *natural* derivative is
``dY/dlog(x) = x * dY/dx`` (the change of Y per e-fold of x). For the others the
natural derivative is the raw one. In the unit cube of a
:class:`hsens_jax.space.Space` (``u in [0, 1]``, where DGSM indices are defined,
Sobol and Kucherenko 2009), ``x = low + u (high - low)`` gives
``dY/du = (high - low) dY/dx``, and ``x = low (high/low)^u`` (``log=True``) gives
``dY/du = log(high/low) x dY/dx``.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import jax.numpy as jnp

from hsens_jax.space import Float, Space

DEFAULT_LOG_SCALED = ("learning_rate", "weight_decay", "eps")
"""Hyperparameters taken as log-scaled when neither a space nor names are given."""

COORDINATES = ("natural", "raw")


def log_scaled_names(space: Space | None = None, log_scaled: Iterable[str] | None = None) -> tuple[str, ...]:
    """Names whose natural coordinate is ``log(x)``.

    Args:
      space: a :class:`~hsens_jax.space.Space`; its ``Float(..., log=True)`` parameters.
      log_scaled: explicit names (overrides ``space``).
    Returns:
      a sorted tuple of names; :data:`DEFAULT_LOG_SCALED` when both are None.
    """
    if log_scaled is not None:
        if isinstance(log_scaled, str):
            raise TypeError(f"log_scaled must be a collection of names, got the string {log_scaled!r}")
        return tuple(sorted(log_scaled))
    if space is not None:
        if not isinstance(space, Space):
            raise TypeError(f"space must be a hsens_jax.space.Space, got {type(space).__name__}")
        return tuple(sorted(p.name for p in space.params if isinstance(p, Float) and p.log))
    return DEFAULT_LOG_SCALED


def natural_gradient(grad_raw: Mapping, values: Mapping, log_names: Iterable[str]) -> dict:
    """``x * dY/dx`` for names in ``log_names``, ``dY/dx`` otherwise.

    Args:
      grad_raw: dict ``name -> dY/dx`` (arrays broadcast with ``values[name]``).
      values: dict ``name -> x`` (the point where the gradient was taken).
      log_names: names in log coordinates.
    Returns:
      a dict with the same keys.
    """
    log_names = set(log_names)
    return {k: (values[k] * g if k in log_names else g) for k, g in grad_raw.items()}


def unit_gradient(grad_raw: Mapping, values: Mapping, space: Space) -> dict:
    """``dY/du`` in the unit cube of ``space`` (see the module docstring).

    Args:
      grad_raw: dict ``name -> dY/dx``; every name must be a ``Float`` of ``space``.
      values: dict ``name -> x``.
    Returns:
      a dict ``name -> dY/du``.
    Raises:
      ValueError: a name is not a continuous hyperparameter of the space.
    """
    out = {}
    for k, g in grad_raw.items():
        if k not in space or not isinstance(space[k], Float):
            raise ValueError(f"hyperparameter {k!r} is not a Float of the space; its unit-cube derivative is undefined")
        p = space[k]
        if p.log:
            out[k] = math.log(p.high / p.low) * jnp.asarray(values[k]) * g
        else:
            out[k] = (p.high - p.low) * g
    return out
