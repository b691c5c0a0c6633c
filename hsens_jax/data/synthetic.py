"""Synthetic regression data: Runge's function and radioactive decay chains (Bateman).

References
----------
C. Runge, "Ueber empirische Funktionen und die Interpolation zwischen aequidistanten
Ordinaten", Z. Math. Phys. 46 (1901).
H. Bateman, "The solution of a system of differential equations occurring in the theory of
radioactive transformations", Proc. Cambridge Phil. Soc. 15 (1910).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hsens_jax.data.dataset import Dataset
from hsens_jax.data.split import holdout_dataset, rngs


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def runge(
    n: int = 1000,
    *,
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_train: int | None = None,
) -> Dataset:
    """Runge's function ``y = 1 / (1 + 25 (x - 0.5)^2)`` on x ~ U[0, 1] (Runge 1901).

    Args:
      n: number of examples before the validation split.
      noise: standard deviation of additive Gaussian noise on y (>= 0).
      seed: seed of x, of the noise and of the split.
      val_fraction: fraction held out for validation.
      n_train: optional subsample before the split.
    Returns:
      regression Dataset, x (n, 1) float32, y (n, 1) float32, no test split.
    """
    n = _positive_int("n", n)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng_x, rng_noise, rng_split = rngs(seed, 3)
    x = rng_x.random((n, 1))
    y = 1.0 / (1.0 + 25.0 * (x - 0.5) ** 2)
    if noise > 0:
        y = y + noise * rng_noise.standard_normal(y.shape)
    split_seed = int(rng_split.integers(2**63))
    return holdout_dataset("runge", "regression", x.astype(np.float32), y.astype(np.float32),
                           n_classes=None, val_fraction=val_fraction, seed=split_seed,
                           n_train=n_train)


def _expm_batched(M: np.ndarray, order: int = 18) -> np.ndarray:
    """exp of a stack of small matrices (..., m, m): scaling and squaring with a Taylor series.

    Each matrix is scaled by 2^-s so its infinity norm is <= 1/2 (Taylor remainder of order 18
    below 1e-22 relative), then squared s times; all in vectorized float64 (scipy's expm loops
    over triangular stacks in Python, ~3 ms per matrix).
    """
    norm = np.abs(M).sum(axis=-1).max(axis=-1)
    s = np.maximum(0, np.ceil(np.log2(np.maximum(norm, 1e-300) / 0.5))).astype(np.int64)
    X = M / np.ldexp(1.0, s)[..., None, None]
    eye = np.broadcast_to(np.eye(M.shape[-1]), M.shape)
    E = eye.copy()
    for k in range(order, 0, -1):  # Horner: I + X/1 (I + X/2 (I + ...))
        E = eye + (X @ E) / k
    for j in range(int(s.max(initial=0))):
        E = np.where((j < s)[..., None, None], E @ E, E)
    return E


def bateman_solution(rates: Any, t: Any) -> np.ndarray:
    """Abundances of a radioactive decay chain (Bateman 1910), float64.

    Solves ``dN_1/dt = -l_1 N_1``, ``dN_i/dt = l_{i-1} N_{i-1} - l_i N_i`` with ``N_1(0) = 1``,
    ``N_i(0) = 0``, as ``N(t) = expm(A t) e_1`` for the lower-bidiagonal rate matrix A (vectorized
    scaling and squaring), which stays exact when rates coincide or nearly coincide (where the
    closed Bateman formula divides by zero or cancels catastrophically).

    Args:
      rates: (..., m) positive decay rates l_1..l_m (1 / time unit).
      t: time(s) >= 0, broadcastable against ``rates[..., 0]``.
    Returns:
      (..., m) abundances N_1(t)..N_m(t) (clipped at 0 against round-off).
    """
    rates = np.asarray(rates, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if rates.ndim < 1 or rates.shape[-1] < 1:
        raise ValueError(f"rates must have shape (..., m) with m >= 1, got {rates.shape}")
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError("rates must be finite and positive")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("t must be finite and >= 0")
    batch = np.broadcast_shapes(rates.shape[:-1], t.shape)
    m = rates.shape[-1]
    rates = np.broadcast_to(rates, batch + (m,))
    t = np.broadcast_to(t, batch)
    A = np.zeros(batch + (m, m))
    idx = np.arange(m)
    A[..., idx, idx] = -rates
    A[..., idx[1:], idx[:-1]] = rates[..., :-1]
    N = _expm_batched(A * t[..., None, None])[..., :, 0]
    return np.maximum(N, 0.0)


def bateman(
    n: int = 2000,
    *,
    n_nuclides: int = 3,
    rate_range: tuple[float, float] = (0.1, 2.0),
    t_range: tuple[float, float] = (0.0, 5.0),
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_train: int | None = None,
) -> Dataset:
    """Decay-chain regression: inputs (l_1..l_m, t) uniform, outputs N_1(t)..N_m(t).

    Args:
      n: number of examples before the validation split.
      n_nuclides: chain length m.
      rate_range: (low, high) of the uniform decay rates, ``0 < low < high``.
      t_range: (low, high) of the uniform time, ``0 <= low < high``.
      noise: standard deviation of additive Gaussian noise on the outputs.
      seed, val_fraction, n_train: as in :func:`runge`.
    Returns:
      regression Dataset, x (n, m + 1) float32 = (rates, t), y (n, m) float32 (see
      :func:`bateman_solution`).
    """
    n = _positive_int("n", n)
    m = _positive_int("n_nuclides", n_nuclides)
    (r0, r1), (t0, t1) = rate_range, t_range
    if not (np.isfinite(r0) and np.isfinite(r1) and 0 < r0 < r1):
        raise ValueError(f"rate_range must satisfy 0 < low < high, got {rate_range!r}")
    if not (np.isfinite(t0) and np.isfinite(t1) and 0 <= t0 < t1):
        raise ValueError(f"t_range must satisfy 0 <= low < high, got {t_range!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng_x, rng_noise, rng_split = rngs(seed, 3)
    rates = rng_x.uniform(r0, r1, (n, m))
    t = rng_x.uniform(t0, t1, n)
    y = bateman_solution(rates, t)
    if noise > 0:
        y = y + noise * rng_noise.standard_normal(y.shape)
    x = np.concatenate([rates, t[:, None]], axis=1)
    split_seed = int(rng_split.integers(2**63))
    return holdout_dataset("bateman", "regression", x.astype(np.float32), y.astype(np.float32),
                           n_classes=None, val_fraction=val_fraction, seed=split_seed,
                           n_train=n_train)
