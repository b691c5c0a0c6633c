"""Derivative-based global sensitivity measures (DGSM) from hypergradients.

With the hyperparameters mapped to the unit cube ``u in [0, 1]^d`` of a
:class:`hsens_jax.space.Space` and ``Y`` the trained model's objective,

    nu_i = E_u[(dY/du_i)^2]

(Sobol and Kucherenko 2009, "Derivative based global sensitivity measures and their
link with global sensitivity indices"; Kucherenko et al. 2009). For independent uniform
inputs the total Sobol index is bounded by ``S_i^tot <= nu_i / (pi^2 Var Y)``
(Sobol and Kucherenko 2009; Lamboni et al. 2013): a small ``nu_i`` proves a
hyperparameter unimportant. Hypergradients make ``nu`` cheap: one hypergradient per
design point gives all ``d`` derivatives (forward mode: about ``1 + 0.5 d`` trainings).

:func:`hypergradient_dgsm` returns the raw gradients and ``Y`` so that
``hsens_jax.sensitivity.dgsm.dgsm_indices(gradients, Y, bounds)`` can take them too.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import numpy as np

from hsens_jax.hypergrad.coordinates import unit_gradient
from hsens_jax.hypergrad.core import hypergradients
from hsens_jax.hypergrad.unrolled import DIFFERENTIABLE
from hsens_jax.space import Categorical, Float, Space
from hsens_jax.engine.train import TrainData, TrainSpec


class DGSMResult(NamedTuple):
    """DGSM from hypergradients at ``n`` design points over ``d`` hyperparameters.

    Attributes:
      names: the ``d`` hyperparameters, in column order.
      nu: (d,) ``E[(dY/du_i)^2]`` over the finite design points.
      nu_se: (d,) standard error of ``nu`` (``std((dY/du_i)^2) / sqrt(n)``).
      nu_normalized: (d,) ``nu / sum(nu)``.
      total_upper_bound: (d,) ``nu / (pi^2 Var Y)``, an upper bound on the total Sobol
        indices for independent uniform inputs.
      unit_gradients: (n, d) ``dY/du`` (unit-cube coordinates).
      raw_gradients: (n, d) ``dY/dx``.
      bounds: (d, 2) ``[low, high]`` of each hyperparameter.
      log: (d,) whether each is log-scaled.
      Y: (n,) objective values.
      finite: (n,) which design points entered the means.
      configs: the design (configs format).
    """

    names: tuple
    nu: np.ndarray
    nu_se: np.ndarray
    nu_normalized: np.ndarray
    total_upper_bound: np.ndarray
    unit_gradients: np.ndarray
    raw_gradients: np.ndarray
    bounds: np.ndarray
    log: np.ndarray
    Y: np.ndarray
    finite: np.ndarray
    configs: dict


def dgsm_from_gradients(unit_gradients, Y):
    """``(nu, nu_se, nu_normalized, total_upper_bound)`` from (n, d) unit-cube gradients and (n,) Y.

    Textbook estimators: sample mean of the squared derivatives, its standard error, and
    the Sobol-Kucherenko bound ``nu / (pi^2 Var Y)`` (``Var`` with ``ddof=0``, as SALib).
    """
    G = np.asarray(unit_gradients, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if G.ndim != 2 or Y.shape != (G.shape[0],):
        raise ValueError(f"unit_gradients must be (n, d) and Y (n,); got {G.shape} and {Y.shape}")
    if G.shape[0] < 2:
        raise ValueError("dgsm needs at least 2 design points")
    sq = G ** 2
    nu = sq.mean(axis=0)
    nu_se = sq.std(axis=0, ddof=1) / math.sqrt(G.shape[0])
    total = nu.sum()
    normalized = nu / total if total > 0 else np.full_like(nu, np.nan)
    var = Y.var()
    bound = nu / (math.pi ** 2 * var) if var > 0 else np.full_like(nu, np.inf)
    return nu, nu_se, normalized, bound


def hypergradient_dgsm(spec: TrainSpec, data: TrainData, space: Space, key, *, configs: Mapping[str, Any] | None = None,
                       n: int = 32, design: str = "sobol", seed: int = 0, wrt=None,
                       fixed: Mapping[str, Any] | None = None, mode: str = "forward",
                       chunk_size: int | None = None, **hypergradient_options) -> DGSMResult:
    """DGSM indices of a space's continuous hyperparameters from hypergradients.

    Args:
      spec, data, key: as for :func:`hsens_jax.hypergrad.hypergradients` (one key: common
        random numbers across design points).
      space: the search space; its ``Float`` parameters define the unit cube.
      configs: a design in the configs format (default ``space.sample(n, design, seed)``).
        Categorical columns are codes into the space's choices (converted to names here).
      n, design, seed: the design drawn when ``configs`` is None.
      wrt: the hyperparameters differentiated (default: the space's ``Float`` parameters
        that the engine can differentiate); each must be a ``Float`` of the space.
      fixed: values for hyperparameters outside the space (e.g. ``{"optimizer": "sgd"}``).
      mode: hypergradient mode (default ``"forward"``: cheap for a few hyperparameters).
      chunk_size, **hypergradient_options: passed to
        :func:`~hsens_jax.hypergrad.hypergradients`.
    Returns:
      a :class:`DGSMResult`.

    References:
      Sobol and Kucherenko 2009 (Math. Comput. Simul. 79(10)); Lamboni et al. 2013.
    """
    if not isinstance(space, Space):
        raise TypeError(f"space must be a hsens_jax.space.Space, got {type(space).__name__}")
    if wrt is None:
        from hsens_jax.engine.builtin import MaskedNet

        user = not isinstance(spec.model, MaskedNet)
        wrt = tuple(p.name for p in space.params if isinstance(p, Float)
                    and (p.name in DIFFERENTIABLE or (user and p.name not in dict(spec.static))))
        if not wrt:
            raise ValueError("space has no continuous hyperparameter the engine can differentiate "
                             f"(Float parameters among {DIFFERENTIABLE}, or a user's model's traced floats)")
    wrt = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    for name in wrt:
        if name not in space or not isinstance(space[name], Float):
            raise ValueError(f"wrt: {name!r} is not a Float hyperparameter of the space")
    if configs is None:
        configs = space.sample(n, design=design, seed=seed)
    space.validate(configs)
    n_rows = len(np.asarray(configs[space.names[0]]))
    cols: dict[str, Any] = {}
    for p in space.params:
        col = np.asarray(configs[p.name], dtype=np.float64)
        cols[p.name] = space.decode_column(p.name, col) if isinstance(p, Categorical) else col
    for name, v in (fixed or {}).items():
        if name in cols:
            raise ValueError(f"fixed: {name!r} is also a hyperparameter of the space")
        cols[name] = np.full(n_rows, v, dtype=object if isinstance(v, str) else np.float64)
    res = hypergradients(spec, data, cols, key, wrt, mode=mode, coordinates="raw", chunk_size=chunk_size,
                         **hypergradient_options)
    raw = {k: np.asarray(v, np.float64) for k, v in res.grad_raw.items()}
    unit = unit_gradient(raw, {k: np.asarray(cols[k], np.float64) for k in wrt}, space)
    G = np.stack([np.asarray(unit[k]) for k in wrt], axis=1)
    R = np.stack([raw[k] for k in wrt], axis=1)
    Y = np.asarray(res.value, np.float64)
    finite = np.asarray(res.finite)
    if finite.sum() < 2:
        raise ValueError(f"only {int(finite.sum())} of {n_rows} design points have a finite hypergradient")
    nu, nu_se, normalized, bound = dgsm_from_gradients(G[finite], Y[finite])
    bounds = np.array([[space[k].low, space[k].high] for k in wrt])
    log = np.array([space[k].log for k in wrt])
    return DGSMResult(wrt, nu, nu_se, normalized, bound, G, R, bounds, log, Y, finite, dict(configs))
