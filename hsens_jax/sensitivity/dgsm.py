"""Derivative-based global sensitivity measures (DGSM) with JAX derivatives.

For inputs uniform on ``[a_i, b_i]`` and ``Y = f(X)``:

* ``vi = nu_i = E[(df/dx_i)^2]`` (Sobol' & Kucherenko 2009), estimated on a scrambled
  Sobol' sample; ``vi_std`` is the (ddof = 0) standard deviation of ``(df/dx_i)^2`` (SALib).
* ``dgsm = nu_i (b_i - a_i)^2 / (pi^2 Var(Y))`` (SALib's normalised index). For uniform
  inputs this *is* the Sobol'-Poincare upper bound on the total index,
  ``ST_i <= (b_i - a_i)^2 nu_i / (pi^2 D)`` (Lamboni et al. 2013), exposed as ``ST_upper``.

Derivatives come from ``jax.grad`` vmapped over the sample (``method="grad"``, one reverse
pass per point) or from ``jax.jvp`` with the basis directions (``method="jvp"``, ``d``
forward passes per point, cheaper when there are few inputs).

Bootstrap (resampling sample points, ``n_bootstrap`` times, on the device): ``vi_conf`` is
``z * std(bootstrap vi)`` -- what SALib calls ``dgsm_conf`` (SALib resamples ``vi`` only);
``dgsm_conf`` here is ``z * std(bootstrap dgsm)``, resampling ``Var(Y)`` as well.

References
----------
* Sobol', I. M., Kucherenko, S. (2009). Derivative based global sensitivity measures and
  their link with global sensitivity indices. Math. Comput. Simul. 79, 3009-3017.
* Lamboni, M., Iooss, B., Popelin, A.-L., Gamboa, F. (2013). Derivative-based global
  sensitivity measures: general links with Sobol' indices and numerical tests. Math.
  Comput. Simul. 87, 45-54.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm, qmc

from hsens_jax.compile_cache import ensure_compilation_cache
from hsens_jax.sensitivity._table import number, per_input_table
from hsens_jax.sensitivity.sobol import _check_confidence, _check_nonneg_int, _Domain

__all__ = ["DGSMResult", "dgsm", "dgsm_indices"]


@dataclasses.dataclass(frozen=True)
class DGSMResult:
    """DGSM measures (SALib vocabulary), each ``(d,)``.

    vi, vi_std, dgsm (= ST_upper, the Poincare bound on ST), vi_conf, dgsm_conf, names.
    """

    vi: np.ndarray
    vi_std: np.ndarray
    dgsm: np.ndarray
    vi_conf: np.ndarray
    dgsm_conf: np.ndarray
    names: tuple

    @property
    def ST_upper(self) -> np.ndarray:
        """Sobol'-Poincare upper bound on the total Sobol' indices (uniform inputs)."""
        return self.dgsm

    def table(self, digits: int = 4) -> str:
        """A plain-text table, one row per input: vi = E[(df/dx_i)^2], its standard deviation,
        and the Sobol'-Poincare bound on ST with its bootstrap half-width (``-`` without
        bootstrap)."""
        cells = [[number(self.vi[i], digits), number(self.vi_std[i], digits), number(self.dgsm[i], digits),
                  number(self.dgsm_conf[i], digits)] for i in range(len(self.names))]
        return per_input_table("DGSM", self.names, ["input", "vi", "vi std", "ST upper bound", "+/-"], cells, 0,
                               False)

    def to_dict(self):
        return {"names": list(self.names), "vi": self.vi, "vi_std": self.vi_std,
                "dgsm": self.dgsm, "dgsm_conf": self.dgsm_conf}


@partial(jax.jit, static_argnames=("n_bootstrap",))
def _dgsm_core(G, Y, width, key, *, n_bootstrap):
    g2 = G**2  # (n, d)
    vi = g2.mean(0)
    vi_std = g2.std(0)
    D = jnp.var(Y)
    dg = vi * width**2 / (jnp.pi**2 * D)
    if n_bootstrap == 0:
        return vi, vi_std, dg, None, None
    n = G.shape[0]
    idx = jax.random.randint(key, (n_bootstrap, n), 0, n)

    def one(ii):
        v = g2[ii].mean(0)
        return v, v * width**2 / (jnp.pi**2 * jnp.var(Y[ii]))

    bv, bd = jax.lax.map(one, idx, batch_size=64)
    return vi, vi_std, dg, bv, bd


def dgsm_indices(gradients, Y, bounds, *, n_bootstrap: int = 100, confidence: float = 0.95,
                 seed: int = 0, names=None) -> DGSMResult:
    """DGSM from derivatives computed elsewhere (e.g. hypergradients through training).

    Args:
      gradients: ``(n, d)`` partial derivatives ``df/dx_i`` at ``n`` points drawn uniformly
        (or quasi-uniformly) on the bounds, in output units per input unit.
      Y: ``(n,)`` outputs at the same points (for ``Var(Y)``).
      bounds: ``(d, 2)`` bounds of the uniform inputs.
      n_bootstrap, confidence, seed: bootstrap over points (``*_conf = z * std``); 100
        resamples by default, as SALib's ``num_resamples``, 0 for none.

    Returns:
      :class:`DGSMResult`.

    Reference: Sobol' & Kucherenko (2009); Lamboni et al. (2013).
    """
    ensure_compilation_cache()
    dom = _Domain(bounds, names, argname="bounds")
    if dom.is_space:
        raise TypeError("bounds: DGSM needs a (d, 2) bounds array of continuous uniform inputs")
    G = np.asarray(gradients)
    Y = np.asarray(Y)
    if G.ndim != 2 or G.shape[1] != dom.d:
        raise ValueError(f"gradients must have shape (n, {dom.d}), got {G.shape}")
    if Y.shape != (G.shape[0],):
        raise ValueError(f"Y must have shape ({G.shape[0]},), got {Y.shape}")
    if G.shape[0] < 2:
        raise ValueError("need at least 2 points")
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(Y))):
        raise ValueError("gradients and Y must be finite")
    confidence = _check_confidence(confidence)
    n_bootstrap = _check_nonneg_int(n_bootstrap, "n_bootstrap")
    dt = jnp.result_type(float)
    width = dom.bounds[:, 1] - dom.bounds[:, 0]
    vi, vs, dg, bv, bd = _dgsm_core(jnp.asarray(G, dt), jnp.asarray(Y, dt), jnp.asarray(width, dt),
                                    jax.random.key(seed), n_bootstrap=n_bootstrap)
    if bv is None:
        vc = dc = np.full(dom.d, np.nan)
    else:
        z = norm.ppf(0.5 + confidence / 2)
        vc, dc = np.asarray(z * bv.std(0, ddof=1)), np.asarray(z * bd.std(0, ddof=1))
    return DGSMResult(vi=np.asarray(vi), vi_std=np.asarray(vs), dgsm=np.asarray(dg),
                      vi_conf=vc, dgsm_conf=dc, names=dom.names)


def dgsm(f, bounds, n: int, *, seed: int = 0, method: str = "grad", inputs=None,
         n_bootstrap: int = 100, confidence: float = 0.95, names=None) -> DGSMResult:
    """DGSM of a JAX function ``f: (d,) -> scalar`` for inputs uniform on ``bounds``.

    Args:
      f: differentiable JAX function of one point ``(d,)`` returning a scalar.
      bounds: ``(d, 2)`` bounds.
      n: number of points (scrambled Sobol' sample; a power of two is best).
      seed: seed of the scrambled Sobol' sequence and of the bootstrap.
      method: ``"grad"`` (vmapped ``jax.grad``) or ``"jvp"`` (vmapped ``jax.jvp`` over the
        basis directions of ``inputs`` and the points: cheaper when only a few are wanted).
      inputs: optional indices or names of the inputs to measure (default all); the result
        then covers only these, in the given order (all inputs are still sampled).
      n_bootstrap, confidence: see :func:`dgsm_indices`.

    Returns:
      :class:`DGSMResult`.

    Reference: Sobol' & Kucherenko (2009).
    """
    ensure_compilation_cache()
    dom = _Domain(bounds, names, argname="bounds")
    if dom.is_space:
        raise TypeError("bounds: DGSM needs a (d, 2) bounds array")
    if method not in ("grad", "jvp"):
        raise ValueError(f"method must be 'grad' or 'jvp', got {method!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if inputs is None:
        sel = list(range(dom.d))
    else:
        sel = []
        for c in inputs:
            if isinstance(c, str):
                if c not in dom.names:
                    raise ValueError(f"inputs: unknown input {c!r}")
                sel.append(dom.names.index(c))
            elif isinstance(c, (int, np.integer)) and 0 <= c < dom.d:
                sel.append(int(c))
            else:
                raise ValueError(f"inputs: {c!r} is not an input name or an index in [0, {dom.d})")
        if not sel:
            raise ValueError("inputs must not be empty")
    U = qmc.Sobol(d=dom.d, scramble=True, seed=seed).random(int(n))
    X = jnp.asarray(dom.from_unit(U), jnp.result_type(float))
    Y = jax.vmap(f)(X)
    if Y.shape != (X.shape[0],):
        raise ValueError(f"f must map a point (d,) to a scalar, got output shape {Y.shape[1:]}")
    if method == "grad":
        G = jax.vmap(jax.grad(f))(X)[:, jnp.asarray(sel)]
    else:
        E = jnp.eye(dom.d, dtype=X.dtype)[jnp.asarray(sel)]
        G = jax.vmap(lambda x: jax.vmap(lambda e: jax.jvp(f, (x,), (e,))[1])(E))(X)
    return dgsm_indices(G, Y, dom.bounds[sel], n_bootstrap=n_bootstrap, confidence=confidence,
                        seed=seed, names=[dom.names[i] for i in sel])
