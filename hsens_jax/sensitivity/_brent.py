"""Brent's bounded scalar search, vectorized over independent problems.

``maximize_bounded(f, lower, upper, size)`` runs ``size`` one-dimensional searches at once:
every iteration asks ``f`` for the values at a ``(size,)`` vector of points (one batched
evaluation, e.g. one pass over the data for all the inputs of an HSIC analysis) and updates
each search with its own bracket.  Each search is Brent's method on a bounded interval
(golden-section steps, parabolic steps when they are acceptable; Brent 1973, ch. 5;
Forsythe, Malcolm & Moler 1977, ``fmin``), the method of ``scipy.optimize.minimize_scalar``
with ``method="bounded"`` (its stopping rule: ``|x - mid| <= 2 tol - (b - a) / 2`` with
``tol = sqrt(eps) |x| + xatol / 3``).  The state is kept in float64 on the host; searches that
have converged keep their point while the others go on.

Like every local method it returns a local maximum of a multimodal function.
"""

from __future__ import annotations

import math

import numpy as np

_GOLDEN = 0.5 * (3.0 - math.sqrt(5.0))
_SQRT_EPS = math.sqrt(np.finfo(np.float64).eps)


def maximize_bounded(f, lower: float, upper: float, size: int, *, xatol: float = 1e-5,
                     maxiter: int = 500):
    """Maximizes ``size`` functions on ``[lower, upper]`` with vectorized bounded Brent steps.

    Args:
      f: ``(size,) float64 points -> (size,) values``; element ``g`` of the result is the
        ``g``-th function at the ``g``-th point.
      lower, upper: the interval (the same for all searches), lower < upper.
      size: number of searches.
      xatol: absolute tolerance on the maximizer.
      maxiter: maximum number of evaluations of ``f``.

    Returns:
      ``(x, fx, n_evals)``: (size,) maximizers, (size,) values there, evaluations used.
    """
    def neg(x):
        return -np.asarray(f(x), np.float64)

    a = np.full(size, float(lower))
    b = np.full(size, float(upper))
    x = a + _GOLDEN * (b - a)  # the best point so far
    fx = neg(x)
    w, fw = x.copy(), fx.copy()  # second best
    v, fv = x.copy(), fx.copy()  # previous value of w
    d = np.zeros(size)  # last step
    e = np.zeros(size)  # step before last
    n_evals = 1
    while True:
        mid = 0.5 * (a + b)
        tol = _SQRT_EPS * np.abs(x) + xatol / 3.0
        active = np.abs(x - mid) > 2.0 * tol - 0.5 * (b - a)
        if not active.any() or n_evals >= maxiter:
            break
        # parabola through (v, fv), (w, fw), (x, fx): step p / q from x
        try_parab = np.abs(e) > tol
        r = (x - w) * (fx - fv)
        q = (x - v) * (fx - fw)
        p = (x - v) * q - (x - w) * r
        q = 2.0 * (q - r)
        p = np.where(q > 0.0, -p, p)
        q = np.abs(q)
        e_prev = e.copy()
        e = np.where(try_parab, d, e)
        ok = (try_parab & (np.abs(p) < np.abs(0.5 * q * e_prev)) & (p > q * (a - x))
              & (p < q * (b - x)))
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(ok, p / np.where(q == 0.0, 1.0, q), 0.0)
        u_par = x + step
        near_end = ok & (((u_par - a) < 2.0 * tol) | ((b - u_par) < 2.0 * tol))
        toward_mid = np.where(mid - x >= 0.0, 1.0, -1.0)
        step = np.where(near_end, tol * toward_mid, step)
        golden = ~ok
        e = np.where(golden, np.where(x >= mid, a - x, b - x), e)
        step = np.where(golden, _GOLDEN * e, step)
        d = np.where(active, step, d)
        e = np.where(active, e, e_prev)
        sgn = np.where(d >= 0.0, 1.0, -1.0)
        u = np.where(active, x + sgn * np.maximum(np.abs(d), tol), x)
        fu = neg(u)
        n_evals += 1
        better = active & (fu <= fx)
        worse = active & ~better
        # bracket
        a = np.where(better & (u >= x), x, a)
        b = np.where(better & (u < x), x, b)
        a = np.where(worse & (u < x), u, a)
        b = np.where(worse & (u >= x), u, b)
        # the three best points
        shift_w = worse & ((fu <= fw) | (w == x))
        shift_v = worse & ~shift_w & ((fu <= fv) | (v == x) | (v == w))
        v_new = np.where(better | shift_w, w, np.where(shift_v, u, v))
        fv_new = np.where(better | shift_w, fw, np.where(shift_v, fu, fv))
        w_new = np.where(better, x, np.where(shift_w, u, w))
        fw_new = np.where(better, fx, np.where(shift_w, fu, fw))
        x = np.where(better, u, x)
        fx = np.where(better, fu, fx)
        v, fv, w, fw = v_new, fv_new, w_new, fw_new
    return x, -fx, n_evals
