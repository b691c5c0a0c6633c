"""Hypergradient descent: tune hyperparameters by gradient steps on the validation loss.

Each iteration trains the model from scratch with the current hyperparameters, takes
the hypergradient of the final validation loss, and moves the hyperparameters one step
against it, in natural coordinates: ``log x <- log x - meta_lr * x dY/dx`` for
log-scaled hyperparameters (learning rate, weight decay), ``x <- x - meta_lr * dY/dx``
for the others (Maclaurin et al. 2015 section 3; Franceschi et al. 2017; Micaelli and
Storkey 2021). Steps are clipped to ``max_step`` per coordinate (half an e-fold by default)
and, when a space is given, the iterate is kept inside its bounds. An iteration whose
hypergradient is not finite does not move.

The whole loop is one compiled ``lax.scan`` over iterations.

Example (full digits, 200 momentum-SGD steps per training, about 4 s on 2 CPU cores
including compilation; validation loss 1.62 -> 0.17 in 10 iterations)::

    ds = load_dataset("digits"); data = prepare_data(ds)
    spec = TrainSpec(ModelSpec("mlp", 32, 1, 10, (8, 8, 1)), "classification", batch_size=64,
                     n_steps=200, n_train=ds.n_train, optimizers=("momentum",))
    tr = hypergradient_descent(spec, data, {"learning_rate": 3e-3, "weight_decay": 1e-3,
                                            "optimizer": "momentum"}, jax.random.PRNGKey(0))
    tr.objective, tr.values["learning_rate"], tr.best
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.hypergrad.coordinates import log_scaled_names
from hsens_jax.hypergrad.core import HypergradientWarning, _check, _pure
from hsens_jax.space import Float, Space
from hsens_jax.engine.train import TrainData, TrainSpec, hp_from_values


class DescentTrajectory(NamedTuple):
    """The iterates of :func:`hypergradient_descent` (``n_iters + 1`` of them).

    Attributes:
      values: dict ``name -> (n_iters + 1,)`` hyperparameter values; row 0 is the start.
      objective: ``(n_iters + 1,)`` objective (validation loss) at each iterate.
      grads: dict ``name -> (n_iters + 1,)`` natural-coordinate hypergradients.
      finite: ``(n_iters + 1,)`` whether each hypergradient was finite.
      best: dict ``name -> value`` of the iterate with the lowest finite objective.
      best_objective: that objective.
    """

    values: dict
    objective: np.ndarray
    grads: dict
    finite: np.ndarray
    best: dict
    best_objective: float


@partial(jax.jit, static_argnames=("spec", "wrt", "log_names", "n_iters", "kw"))
def _descend(spec, data, hp, key, lo, hi, meta_lr, max_step, *, wrt, log_names, n_iters, kw):
    kw = dict(kw)

    def encode(x):
        return jnp.stack([jnp.log(x[n]) if n in log_names else x[n] for n in wrt])

    def decode(z):
        return {n: (jnp.exp(z[i]) if n in log_names else z[i]) for i, n in enumerate(wrt)}

    def body(z, _):
        x = decode(z)
        r = _pure(spec, data, {**hp, **x}, key, wrt=wrt, log_names=log_names, coordinates="natural", **kw)
        g = jnp.stack([r.grad[n] for n in wrt])
        stepv = jnp.clip(-meta_lr * g, -max_step, max_step)
        z_new = jnp.where(r.finite, jnp.clip(z + stepv, lo, hi), z)
        return z_new, (x, r.value, r.grad, r.finite)

    z0 = encode({n: hp[n] for n in wrt})
    _, (xs, ys, gs, fin) = jax.lax.scan(body, z0, None, length=n_iters + 1)
    return xs, ys, gs, fin


def hypergradient_descent(spec: TrainSpec, data: TrainData, values: Mapping[str, Any], key,
                          wrt=("learning_rate", "weight_decay"), *, n_iters: int = 10, meta_lr: float = 10.0,
                          max_step: float = 0.5, space: Space | None = None, log_scaled=None,
                          mode: str = "forward", objective="final_val_loss", checkpoint_every: int | None = None,
                          truncate: int | None = None) -> DescentTrajectory:
    """Gradient descent on hyperparameters, in natural (log) coordinates.

    Args:
      spec, data, values, key: as for :func:`hsens_jax.hypergrad.hypergradient`; the
        same key (initialization and batch order) at every iteration, so the objective
        is a deterministic function of the hyperparameters.
      wrt: the tuned hyperparameters.
      n_iters: number of steps (``n_iters + 1`` trainings and hypergradients).
      meta_lr: step size in natural coordinates (log units for log-scaled names). Natural
        hypergradients of a cross-entropy after a short run are typically 0.01-0.1 per
        e-fold, hence the large default; ``max_step`` bounds the move.
      max_step: largest change of one coordinate per step (log units / raw units).
      space: optional space: its ``Float(log=True)`` names are log-scaled and its bounds
        clip the iterates.
      log_scaled: explicit log-scaled names (default: the space's, else
        :data:`~hsens_jax.hypergrad.coordinates.DEFAULT_LOG_SCALED`).
      mode, objective, checkpoint_every, truncate: hypergradient options (default
        ``"forward"``: memory independent of the training length).
    Returns:
      a :class:`DescentTrajectory`.

    References:
      Maclaurin, Duvenaud and Adams 2015; Franceschi et al. 2017; Micaelli and Storkey 2021.
    """
    if mode == "implicit":
        raise ValueError("mode='implicit' is not supported by hypergradient_descent; use an unrolled mode")
    wrt, checkpoint_every, truncate, _ = _check(spec, data, values, wrt, mode, objective, checkpoint_every,
                                                truncate, "natural", space, log_scaled)
    log_names = tuple(n for n in log_scaled_names(space, log_scaled) if n in wrt)
    if isinstance(n_iters, bool) or not isinstance(n_iters, (int, np.integer)) or n_iters < 0:
        raise ValueError(f"n_iters must be a non-negative integer, got {n_iters!r}")
    if not (np.isfinite(meta_lr) and meta_lr > 0):
        raise ValueError(f"meta_lr must be a positive number, got {meta_lr!r}")
    if not (np.isfinite(max_step) and max_step > 0):
        raise ValueError(f"max_step must be a positive number, got {max_step!r}")
    hp = hp_from_values(dict(values), spec, dtype=data.x_train.dtype)
    for n in log_names:
        if not float(hp[n]) > 0:
            raise ValueError(f"values[{n!r}]={float(hp[n])} must be > 0 to be tuned in log coordinates")
    lo, hi = [], []
    for n in wrt:
        if space is not None and n in space and isinstance(space[n], Float):
            p = space[n]
            a, b = (math.log(p.low), math.log(p.high)) if n in log_names else (p.low, p.high)
        else:
            a, b = -math.inf, math.inf
        lo.append(a)
        hi.append(b)
    dt = data.x_train.dtype
    kw = (("mode", mode), ("objective", objective), ("checkpoint_every", checkpoint_every),
          ("truncate", truncate), ("solver_options", ()))
    xs, ys, gs, fin = _descend(spec, data, hp, key, jnp.asarray(lo, dt), jnp.asarray(hi, dt),
                               jnp.asarray(meta_lr, dt), jnp.asarray(max_step, dt),
                               wrt=wrt, log_names=log_names, n_iters=int(n_iters), kw=kw)
    ys = np.asarray(ys)
    fin = np.asarray(fin)
    if not fin.all():
        warnings.warn(f"hypergradient descent: {int((~fin).sum())} of {fin.size} iterations had a non-finite "
                      "hypergradient and did not move", HypergradientWarning, stacklevel=2)
    masked = np.where(fin, ys, np.inf)
    i = int(np.argmin(masked))
    values_np = {k: np.asarray(v) for k, v in xs.items()}
    return DescentTrajectory(values_np, ys, {k: np.asarray(v) for k, v in gs.items()}, fin,
                             {k: float(v[i]) for k, v in values_np.items()}, float(ys[i]))
