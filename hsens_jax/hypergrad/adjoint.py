"""The engine's training step with a symmetric-Hessian adjoint, for reverse-mode hypergradients.

A training step is ``theta' = U(g(theta, lambda), theta, s, lambda, t)``: ``g`` the
minibatch gradient of the training loss ``L`` (:func:`hsens_jax.engine.train.batch_loss`) and
``U`` the optimizer (:func:`hsens_jax.engine.train.optimizer_update`, with optimizer state
``s``). Reverse mode pulls an adjoint ``a`` of ``(theta', s')`` back through the step;
through ``g`` that takes the transposed Jacobian of the gradient,

    a_theta += (dg/dtheta)^T a_g,    a_lambda += (dg/dlambda)^T a_g,    a_g = (dU/dg)^T a.

Plain autodiff does it reverse-over-reverse: it keeps every intermediate of the network's
forward and backward pass for every step (the residuals) and transposes them. But
``dg/dtheta`` is the Hessian of ``L``, which is symmetric, and
``(dg/dlambda)^T a_g = d^2 L / dlambda dtheta . a_g`` is a mixed second derivative, so both
are the tangent of the gradient ``(theta, lambda) -> grad_(theta, lambda) L`` along
``(a_g, 0)``: one Hessian-vector product, forward-over-reverse (``jax.jvp`` of the gradient;
Pearlmutter 1994). :func:`symmetric_step` is the engine's step with that adjoint
(``jax.custom_vjp``): reverse mode stores per step only the step's inputs and the
minibatch gradient, and recomputes the network's forward pass inside the Hessian-vector
product. On the digits MLP with Adam that is 1.6 loop states per step instead of 4.75
(5.3 with JAX's derivative of optax's Adam in place of :mod:`hsens_jax.engine.adam`'s rule;
sizes read off the traced program, as
:func:`~hsens_jax.hypergrad.unrolled.segment_for` does).

Measured on that problem (2-core CPU, float32, ``benchmarks/bench_hypergrad.py``: both
rules in the same process; ratios to one training run at T = 100 / 1000 / 10000, fastest
of the repeats, two runs):

- checkpointed mode: 2.27 / 2.89 / 2.62 against 2.41 / 2.90 / 2.54 with autodiff, and
  2.51 / 2.81 / 2.81 against 2.57 / 2.81 / 2.80: the same within the noise;
- plain reverse mode: 1.69 / 3.00 / 2.90 against 1.91 / 3.58 / 3.26, and 1.88 / 2.96 /
  3.04 against 2.03 / 3.33 / 3.47; XLA's peak temporary memory 53 against 81 MiB at
  T = 1000 and 527 against 812 MiB at T = 10000.

With optax's Adam derivative (before :mod:`hsens_jax.engine.adam`), autodiff stored more and
cost more: checkpointed 2.74 / 2.62 / 2.92 and 2.47 / 3.21 / 3.04, reverse 2.01 / 3.73 /
4.97 and 2.09 / 3.73 / 5.17, 995 MiB at T = 10000 (two earlier runs), while the
symmetric rule's numbers were those above to the noise.

The identity holds where ``L`` is twice differentiable in ``theta``: almost everywhere for
networks with relu or max pooling (on the kinks both are autodiff's conventional
derivatives of a piecewise smooth function, which agree almost everywhere). The results
equal autodiff's to rounding (tested in float64).

Batch normalization is not covered: its running statistics are a second output of the
forward pass that the next steps read, whose adjoint is not a Hessian-vector product.
With batch statistics in the state, :func:`symmetric_step` is the plain step
(``train_step(..., guard=False)``) and autodiff transposes it.

``symmetric_step`` is for reverse mode only: forward mode (``jax.jvp``) cannot go through
a ``jax.custom_vjp`` function; :mod:`.unrolled` uses the plain step there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hsens_jax.hypergrad.leaves import merge_float, split_float
from hsens_jax.engine.train import TrainData, TrainSpec, TrainState, batch_loss, optimizer_update, train_step

ADJOINTS = ("symmetric", "autodiff")
"""How reverse mode pulls adjoints back through a step: ``"symmetric"`` (Hessian-vector
products, :func:`symmetric_step`) or ``"autodiff"`` (JAX's transpose of the step)."""


def has_batch_stats(state: TrainState) -> bool:
    """Whether the state carries batch-norm running statistics (then the plain step is used)."""
    return bool(jax.tree.leaves(state.batch_stats))


def symmetric_step(spec: TrainSpec, data: TrainData, hp, state: TrainState, batch_idx, dropout_key, t):
    """``train_step(spec, data, hp, state, batch_idx, dropout_key, t, guard=False)`` with the
    symmetric-Hessian adjoint of the module docstring: ``(new state, training loss)``.

    Same values (the same operations run forward); only the derivative rule differs.
    Differentiable in reverse mode with respect to the floating leaves of ``state`` and
    ``hp``; not in forward mode (``jax.custom_vjp``). Falls back to the plain step when
    the state has batch statistics (:func:`has_batch_stats`).
    """
    if has_batch_stats(state):
        return train_step(spec, data, hp, state, batch_idx, dropout_key, t, guard=False)
    x = data.x_train[batch_idx]
    y = data.y_train[batch_idx]
    fl_s, nf_s, meta_s = split_float((state.params, state.opt_state))
    fl_h, nf_h, meta_h = split_float(hp)
    n_params = len(jax.tree.leaves(state.params))  # the params' leaves come first in fl_s
    stats = state.batch_stats

    def gradients(fs, fh, ns, nh, x, y, dk):
        """``(loss, grad wrt params (a pytree), grad wrt the float leaves of hp (a list))``."""
        params, _ = merge_float(fs, ns, meta_s)

        def loss(p, fh):
            return batch_loss(spec, merge_float(fh, nh, meta_h), p, stats, x, y, dk)[0]

        value, (gp, gh) = jax.value_and_grad(loss, argnums=(0, 1))(params, list(fh))
        return value, gp, gh

    def update(g, fs, fh, ns, nh, t):
        params, opt_state = merge_float(fs, ns, meta_s)
        return split_float(optimizer_update(spec, merge_float(fh, nh, meta_h), params, opt_state, g, t))[:2]

    def primal(fs, fh, ns, nh, x, y, dk, t):
        loss, g, gh = gradients(fs, fh, ns, nh, x, y, dk)
        new_fs, new_ns = update(g, fs, fh, ns, nh, t)
        return (new_fs, new_ns, loss), (g, gh)

    @jax.custom_vjp
    def step(fs, fh, ns, nh, x, y, dk, t):
        return primal(fs, fh, ns, nh, x, y, dk, t)[0]

    def fwd(fs, fh, ns, nh, x, y, dk, t):
        out, (g, gh) = primal(fs, fh, ns, nh, x, y, dk, t)
        return out, (fs, fh, ns, nh, x, y, dk, t, g, gh)  # the inputs and the minibatch gradients

    def bwd(res, ct):
        fs, fh, ns, nh, x, y, dk, t, g, gh = res
        ct_fs, _, ct_loss = ct  # the non-float outputs (step counts) carry no adjoint
        _, pull = jax.vjp(lambda g, fs, fh: update(g, fs, fh, ns, nh, t)[0], g, fs, fh)
        a_g, a_s, a_h = pull(ct_fs)
        # (H a_g, d2L/dlambda dtheta a_g): the tangent of the gradient along (a_g, 0)
        a_g_leaves = jax.tree.leaves(a_g)
        tangent_s = a_g_leaves + [jnp.zeros_like(v) for v in fs[n_params:]]
        tangent_h = [jnp.zeros_like(v) for v in fh]
        _, (_, hv_p, hv_h) = jax.jvp(lambda fs, fh: gradients(fs, fh, ns, nh, x, y, dk),
                                               (list(fs), list(fh)), (tangent_s, tangent_h))
        hv_p, gp = jax.tree.leaves(hv_p), jax.tree.leaves(g)  # the primal outputs are unused:
        # XLA drops the primal backward pass, only its tangent runs
        a_s = [a + hv_p[i] + ct_loss * gp[i] if i < n_params else a for i, a in enumerate(a_s)]
        a_h = [a + b + ct_loss * c for a, b, c in zip(a_h, hv_h, gh)]
        return (a_s, a_h, None, None, None, None, None, None)

    step.defvjp(fwd, bwd)
    new_fs, new_ns, loss = step(fl_s, fl_h, nf_s, nf_h, x, y, dropout_key, t)
    params, opt_state = merge_float(new_fs, new_ns, meta_s)
    first = ~state.diverged & ~jnp.isfinite(loss)
    return TrainState(params, stats, opt_state, state.diverged | first,
                      jnp.where(first, jnp.asarray(t, jnp.int32), state.diverged_step)), loss
