"""Analytic test functions for global sensitivity analysis, with their exact indices.

Both functions are written with ``jax.numpy``, act on the last axis of ``X`` and are
therefore usable on a batch ``(N, d)`` as well as on a single point ``(d,)`` (and under
``jax.vmap`` / ``jax.grad``).

References
----------
* Ishigami, T. and Homma, T. (1990). An importance quantification technique in
  uncertainty analysis for computer models. ISUMA'90, 398-403.
* Sobol', I. M. (1993/2001); Saltelli, A. and Sobol', I. M. (1995). About the use of
  rank transformation in sensitivity analysis of model output. Reliab. Eng. Syst. Saf.
  50, 225-239 (the G-function).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["ishigami", "ishigami_indices", "ISHIGAMI_BOUNDS", "g_function", "g_function_indices"]

#: Domain of the Ishigami function: each of the three inputs is uniform on [-pi, pi].
ISHIGAMI_BOUNDS = np.array([[-np.pi, np.pi]] * 3)


def ishigami(X, a: float = 7.0, b: float = 0.1):
    """Ishigami function ``sin(x1) + a sin(x2)^2 + b x3^4 sin(x1)``.

    Args:
      X: array ``(..., 3)``; inputs uniform on ``[-pi, pi]`` (see ``ISHIGAMI_BOUNDS``).
      a, b: the usual constants (7 and 0.1).

    Returns:
      array ``(...)`` of outputs (dimensionless).

    Reference: Ishigami & Homma (1990).
    """
    X = jnp.asarray(X)
    if X.shape[-1] != 3:
        raise ValueError(f"ishigami: X must have 3 columns on its last axis, got shape {X.shape}")
    x1, x2, x3 = X[..., 0], X[..., 1], X[..., 2]
    return jnp.sin(x1) + a * jnp.sin(x2) ** 2 + b * x3**4 * jnp.sin(x1)


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> dict:
    """Exact Sobol' indices of the Ishigami function for inputs uniform on ``[-pi, pi]^3``.

    Returns:
      dict with ``"S1"`` (3,), ``"ST"`` (3,), ``"S2"`` (3, 3) (upper triangle filled, the
      rest NaN, as SALib), ``"V"`` (total variance) and ``"Vi"`` (3,) partial variances.

    Reference: Ishigami & Homma (1990); Sobol' & Levitan (1999).
    """
    pi = np.pi
    V1 = 0.5 * (1.0 + b * pi**4 / 5.0) ** 2
    V2 = a**2 / 8.0
    V3 = 0.0
    V13 = b**2 * pi**8 * (1.0 / 18.0 - 1.0 / 50.0)
    V = V1 + V2 + V13
    Vi = np.array([V1, V2, V3])
    S2 = np.full((3, 3), np.nan)
    S2[0, 1], S2[0, 2], S2[1, 2] = 0.0, V13 / V, 0.0
    return {
        "S1": Vi / V,
        "ST": np.array([V1 + V13, V2, V13]) / V,
        "S2": S2,
        "V": V,
        "Vi": Vi,
    }


def g_function(X, a):
    """Sobol' G-function ``prod_i (|4 x_i - 2| + a_i) / (1 + a_i)``.

    Args:
      X: array ``(..., d)``; inputs uniform on ``[0, 1]``.
      a: array ``(d,)`` of non-negative importance parameters (small ``a_i`` = important).

    Returns:
      array ``(...)`` of outputs; mean 1.

    Reference: Saltelli & Sobol' (1995).
    """
    X = jnp.asarray(X)
    a = jnp.asarray(a, dtype=X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else None)
    if a.ndim != 1 or a.shape[0] != X.shape[-1]:
        raise ValueError(f"g_function: a must have shape ({X.shape[-1]},), got {a.shape}")
    return jnp.prod((jnp.abs(4.0 * X - 2.0) + a) / (1.0 + a), axis=-1)


def g_function_indices(a) -> dict:
    """Exact Sobol' indices of the G-function for inputs uniform on ``[0, 1]^d``.

    ``V_i = 1 / (3 (1 + a_i)^2)``, ``V = prod(1 + V_i) - 1``, ``S1_i = V_i / V``,
    ``ST_i = V_i prod_{j != i}(1 + V_j) / V``, ``S2_ij = V_i V_j / V``.

    Returns:
      dict with ``"S1"``, ``"ST"`` (d,), ``"S2"`` (d, d) upper triangle (rest NaN),
      ``"V"`` and ``"Vi"``.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or np.any(a < 0):
        raise ValueError("g_function_indices: a must be a 1-D array of non-negative numbers")
    Vi = 1.0 / (3.0 * (1.0 + a) ** 2)
    V = np.prod(1.0 + Vi) - 1.0
    ST = Vi * np.prod(1.0 + Vi) / (1.0 + Vi) / V
    S2 = np.full((a.size, a.size), np.nan)
    iu = np.triu_indices(a.size, 1)
    S2[iu] = (Vi[:, None] * Vi[None, :] / V)[iu]
    return {"S1": Vi / V, "ST": ST, "S2": S2, "V": V, "Vi": Vi}
