"""Adam and AdamW as optax computes them, with a derivative written for forward mode.

:func:`adam` and :func:`adamw` compute what ``optax.adam`` and ``optax.adamw`` compute
(without ``nesterov``, ``mu_dtype`` or a mask), with the same state structure: the first
and second moments, their bias corrections, and the update

    u = -lr * (m_hat / (sqrt(v_hat + eps_root) + eps) [+ weight_decay * params]),
    m_hat = mu / (1 - b1^t),  v_hat = nu / (1 - b2^t),

by one elementwise function, :func:`adam_step`, written with optax's operations in
optax's order. The values agree to rounding (XLA fuses the two programs a little
differently: one-ulp differences after 12 steps, tested).

What differs is the derivative, a ``jax.custom_jvp`` rule. Differentiated by JAX
through optax's chain, the tangent of the update reuses the primal's quotient and
bias-corrected moment, so XLA stores them for every parameter array at every step of a
forward-mode hypergradient (:mod:`hsens_jax.hypergrad`), in loops of their own. The rule
recomputes what it needs from the moments with other operations (products with
reciprocals where the primal divides), so the update and its tangent are one fused loop
each. Measured on the digits MLP of ``benchmarks/bench_hypergrad.py`` (4 parameter
arrays, Adam): a forward-mode step (h = 1) went from 86 to 80 kernels; its time relative
to a training run went from 1.45-1.59x to 1.36-1.42x at T = 1000 and 10000 (fastest of
repeats, the two variants in interleaved processes), while in the benchmark's own runs
(both variants in one process among other programs) the two overlap: 1.44-1.54x
against 1.46-1.67x. Reverse mode through JAX's own adjoint stores less: 4.75 loop
states per step instead of 5.3 (812 MiB at T = 10000; 995 MiB in earlier runs with
optax's derivative). And float32 reverse-mode adjoints overflow later: with the engine's
earlier batch order, a 50-step digits case that gave NaN agreed with float64 to 1e-4 (see
:mod:`hsens_jax.hypergrad.core` for the case under the current batch order).

The derivative is the same (tested against JAX's derivative of the textbook formula in
every argument, bias corrections and ``eps`` included, so ``b1``, ``b2`` and ``eps``
stay differentiable hyperparameters); in float32 its rounding error is that of optax's
(tested). Reverse mode transposes the same linear rule.

Kingma and Ba 2015 (Adam); Loshchilov and Hutter 2019 (AdamW).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


@jax.custom_jvp
def adam_step(mu, nu, c1, c2, eps, eps_root, lr, params, weight_decay):
    """One Adam(W) update, elementwise: ``-lr * ((mu/c1) / (sqrt(nu/c2 + eps_root) + eps) + wd * params)``.

    Args:
      mu, nu: the updated first and second moments, arrays of one shape.
      c1, c2: the bias corrections ``1 - b1**t`` and ``1 - b2**t`` (scalars, in the
        moments' dtype).
      eps, eps_root, lr: scalars.
      params, weight_decay: the parameters (same shape as ``mu``) and the decoupled
        weight decay (scalar), or both ``None`` for Adam (no decoupled decay).
    Returns:
      the update, to be added to ``params`` (``optax.apply_updates``), shape of ``mu``.
    """
    u = (mu / c1) / (jnp.sqrt(nu / c2 + eps_root) + eps)
    if params is not None:
        u = u + weight_decay * params
    return (-1 * lr) * u


@adam_step.defjvp
def _adam_step_jvp(primals, tangents):
    mu, nu, c1, c2, eps, eps_root, lr, params, weight_decay = primals
    dmu, dnu, dc1, dc2, deps, deps_root, dlr, dparams, dweight_decay = tangents
    out = adam_step(*primals)
    # Recomputed with other operations than the primal's (products with reciprocals where
    # the primal divides): XLA then neither shares nor stores the primal's intermediates,
    # and the step and its tangent stay one fused loop each.
    i1, i2 = 1 / c1, 1 / c2
    q = nu * i2 + eps_root
    sq = jnp.sqrt(q)
    r = 1 / sq
    inv_d = 1 / (sq + eps)
    m_hat = mu * i1
    dm_hat = dmu * i1 - m_hat * (dc1 * i1)
    dq = (dnu - (nu * i2) * dc2) * i2 + deps_root
    dd = (0.5 * r) * dq + deps
    u = m_hat * inv_d
    du = (dm_hat - u * dd) * inv_d
    if params is not None:
        u = u + weight_decay * params
        du = du + dweight_decay * params + weight_decay * dparams
    return out, -(dlr * u + lr * du)


def _moment(g, moment, decay, order):
    # optax.tree.update_moment's expression (real parameters)
    return (1 - decay) * (g ** order) + decay * moment


def _bias_correction(decay, count, dtype):
    # optax.tree.bias_correction's: computed in the decay's precision, then cast
    return (1 - decay ** count).astype(dtype)


def _adam(learning_rate, b1, b2, eps, eps_root, weight_decay):
    decoupled = weight_decay is not None

    def init_fn(params):
        adam_state = optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=jax.tree.map(jnp.zeros_like, params),
                                            nu=jax.tree.map(jnp.zeros_like, params))
        rest = (optax.EmptyState(), optax.EmptyState()) if decoupled else (optax.EmptyState(),)
        return (adam_state,) + rest

    def update_fn(updates, state, params=None):
        if decoupled and params is None:
            raise ValueError("adamw: update needs `params` (decoupled weight decay)")
        adam_state = state[0]
        mu = jax.tree.map(lambda g, m: _moment(g, m, b1, 1), updates, adam_state.mu)
        nu = jax.tree.map(lambda g, v: _moment(g, v, b2, 2), updates, adam_state.nu)
        count = optax.safe_increment(adam_state.count)

        def step(m, v, p):
            c1 = _bias_correction(b1, count, m.dtype)
            c2 = _bias_correction(b2, count, v.dtype)
            # eps, eps_root, lr, weight_decay as given: the dtype promotions are optax's
            return adam_step(m, v, c1, c2, eps, eps_root, learning_rate, p, weight_decay if decoupled else None)

        if decoupled:
            new = jax.tree.map(step, mu, nu, params)
        else:
            new = jax.tree.map(lambda m, v: step(m, v, None), mu, nu)
        return new, (optax.ScaleByAdamState(count=count, mu=mu, nu=nu),) + tuple(state[1:])

    return optax.GradientTransformation(init_fn, update_fn)


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0) -> optax.GradientTransformation:
    """``optax.adam`` (its values, to rounding, and its state structure), with
    :func:`adam_step`'s derivative.

    Args:
      learning_rate: scalar (a schedule is applied by the caller, as the training loop
        does through the injected hyperparameter).
      b1, b2, eps, eps_root: as ``optax.adam``.
    """
    return _adam(learning_rate, b1, b2, eps, eps_root, None)


def adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
          weight_decay=1e-4) -> optax.GradientTransformation:
    """``optax.adamw`` without a mask (its values, to rounding, and its state structure),
    with :func:`adam_step`'s derivative.

    Args:
      learning_rate, b1, b2, eps, eps_root: as :func:`adam`.
      weight_decay: the decoupled decay rate (scalar), applied as optax does, before the
        learning rate: ``-lr * (adam direction + weight_decay * params)``.
    """
    return _adam(learning_rate, b1, b2, eps, eps_root, weight_decay)
