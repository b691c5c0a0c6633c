"""Implicit differentiation of a trained model's validation loss (implicit function theorem).

If training converges to a stationary point of a training objective,
``grad_theta L(theta*, lambda) = 0``, and the Hessian ``H = d2L/dtheta2`` is invertible
there, the implicit function theorem gives ``theta*(lambda)`` locally and

    dY/dlambda = dY/dlambda|_direct - v^T d2L/(dtheta dlambda),   H v = dY/dtheta,

evaluated at ``theta*`` (Bengio 2000; Pedregosa 2016; Lorraine, Vicol and Duvenaud 2020,
"Optimizing millions of hyperparameters by implicit differentiation"). The linear
system is solved matrix-free with Hessian-vector products (``jax.jvp`` of ``jax.grad``),
by conjugate gradient (``solver="cg"``, needs ``H`` symmetric positive definite) or by
the truncated Neumann series ``v = alpha sum_{j<K} (I - alpha H)^j dY/dtheta`` of
Lorraine et al. (``solver="neumann"``, needs ``0 < alpha < 2 / lambda_max(H)``).

Assumptions, which the unrolled modes do not need:

* **stationarity**: the final iterate must be (close to) a stationary point of the
  training objective. With minibatch SGD, few steps or a learning rate too large to
  converge it is not, and the implicit hypergradient is the one of a model you did not
  train. :func:`engine_implicit_gradient` reports ``||grad_theta L(theta_T)||``.
* **only hyperparameters that enter the training objective** have an implicit
  hypergradient: at a true minimum, the learning rate, momentum, betas and the
  initialization scale do not move ``theta*`` (only which minimum is reached, which the
  theorem does not see). In the engine these are ``weight_decay`` (the optimizers other
  than ``adamw`` add ``weight_decay * theta`` to the gradient: L2 regularization
  ``L = mean loss + weight_decay/2 ||theta||^2``, biases included) and
  ``label_smoothing`` (in the classification loss).
* ``adamw``'s decoupled weight decay is *not* the gradient of a penalty; its fixed
  points are not stationary points of any ``L`` here, so it is refused.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

from hsens_jax.hypergrad.unrolled import final_state, full_train_loss, objective_value
from hsens_jax.engine.train import TrainData, TrainSpec

IMPLICIT_HYPERPARAMETERS = ("weight_decay", "label_smoothing")
"""Engine hyperparameters that enter the training objective (so IFT applies)."""

SOLVERS = ("cg", "neumann")


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _norm(a):
    return jnp.sqrt(_vdot(a, a))


def implicit_gradient(inner_loss: Callable, outer_loss: Callable, params, hparams, *, solver: str = "cg",
                      maxiter: int = 500, tol: float = 1e-10, damping: float = 0.0,
                      neumann_steps: int = 100, neumann_lr: float = 0.1):
    """Implicit-function-theorem hypergradient of ``outer_loss(theta*(lambda), lambda)``.

    Args:
      inner_loss: ``inner_loss(params, hparams) -> scalar`` training objective, of which
        ``params`` is assumed to be a stationary point (pytree params).
      outer_loss: ``outer_loss(params, hparams) -> scalar`` validation objective.
      params: the (trained) parameters theta*, a pytree.
      hparams: dict ``name -> scalar array`` of the hyperparameters lambda.
      solver: ``"cg"`` (conjugate gradient, ``jax.scipy.sparse.linalg.cg``) or
        ``"neumann"`` (truncated Neumann series, Lorraine et al. 2020).
      maxiter, tol: CG iteration limit and relative tolerance.
      damping: Tikhonov term ``damping * I`` added to the Hessian (0: exact IFT).
      neumann_steps, neumann_lr: K and alpha of the Neumann series.
    Returns:
      ``(grad, info)``: ``grad`` a dict like ``hparams`` of total derivatives
      ``dY/dlambda``; ``info`` a dict with ``stationarity`` (``||grad_theta L||``) and
      ``residual`` (``||H v - dY/dtheta|| / ||dY/dtheta||`` of the linear solve).

    References:
      Bengio 2000 (Neural Computation 12(8)); Pedregosa 2016 (ICML, HOAG); Lorraine,
      Vicol and Duvenaud 2020 (AISTATS, Neumann series).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: choose from {SOLVERS}")
    grad_inner = jax.grad(inner_loss, argnums=0)
    g_theta, direct = jax.grad(outer_loss, argnums=(0, 1))(params, hparams)

    def hvp(v):
        hv = jax.jvp(lambda p: grad_inner(p, hparams), (params,), (v,))[1]
        return jax.tree.map(lambda a, b: a + damping * b, hv, v)

    if solver == "cg":
        v, _ = cg(hvp, g_theta, tol=tol, maxiter=maxiter)
    else:
        def body(carry, _):
            p, acc = carry
            p = jax.tree.map(lambda a, b: a - neumann_lr * b, p, hvp(p))
            return (p, jax.tree.map(jnp.add, acc, p)), None

        (_, acc), _ = jax.lax.scan(body, (g_theta, g_theta), None, length=neumann_steps - 1)
        v = jax.tree.map(lambda a: neumann_lr * a, acc)
    v = jax.lax.stop_gradient(v)
    mixed = jax.grad(lambda h: _vdot(v, grad_inner(params, h)))(hparams)
    grad = {k: direct[k] - mixed[k] for k in hparams}
    residual = _norm(jax.tree.map(jnp.subtract, hvp(v), g_theta)) / jnp.maximum(_norm(g_theta), 1e-300)
    info = {"stationarity": _norm(grad_inner(params, hparams)), "residual": residual}
    return grad, info


def engine_training_loss(spec: TrainSpec, data: TrainData, hp, params) -> jax.Array:
    """The objective the engine's optimizer (other than ``adamw``) minimizes, full batch.

    ``mean loss over the training set + weight_decay / 2 * ||params||^2`` (every leaf,
    biases included, as ``optax.add_decayed_weights`` does).
    """
    sq = sum(jnp.sum(p ** 2) for p in jax.tree.leaves(params))
    return full_train_loss(spec, data, hp, params) + 0.5 * hp["weight_decay"] * sq


def check_implicit(spec: TrainSpec, wrt, optimizer_name: str | None, data: TrainData | None = None,
                   hp=None) -> None:
    """Raise ValueError when implicit differentiation does not apply (see module docstring).

    For a user's model (``data`` and ``hp`` given), a hyperparameter qualifies when the
    full-batch training loss depends on it (found by a data-flow pass over its jaxpr), and the
    model must be deterministic in training (no dropout stream read, no mutable state).
    """
    from hsens_jax.engine.builtin import MaskedNet

    if not spec.model.builtin_optimizer:
        raise ValueError("implicit differentiation needs the engine's optimizer (its fixed points are stationary "
                         "points of the training loss plus the L2 penalty); this model brings its own optimizer: "
                         "use mode='checkpointed' or 'forward'")
    builtin = isinstance(spec.model, MaskedNet)
    user_names = [n for n in wrt if n not in IMPLICIT_HYPERPARAMETERS and not builtin and data is not None
                  and n not in _OPTIMIZER_NAMES]
    bad = [n for n in wrt if n not in IMPLICIT_HYPERPARAMETERS and n not in user_names]
    if user_names and hp is not None:
        params, stats = jax.eval_shape(lambda h: _init_params(spec, data, h), hp)
        for name in user_names:
            if not _loss_depends_on(spec, data, hp, params, stats, name):
                bad.append(name)
    if bad:
        raise ValueError(
            f"wrt={tuple(wrt)}: implicit differentiation only handles hyperparameters that enter the "
            f"training loss ({IMPLICIT_HYPERPARAMETERS} or a user's loss and module hyperparameters); {bad} do not "
            f"move a stationary point (use mode='checkpointed' or 'forward')")
    if "label_smoothing" in wrt and spec.task != "classification":
        raise ValueError("wrt: label_smoothing has no effect on a regression task")
    if builtin and (spec.model.use_dropout or spec.model.use_batch_norm):
        raise ValueError("spec.model: implicit differentiation needs a deterministic training loss; "
                         "the program uses dropout or batch norm")
    if not builtin and data is not None and hp is not None and _stochastic(spec, data, hp):
        raise ValueError("spec.model: implicit differentiation needs a deterministic training loss; the model "
                         "reads the dropout stream or keeps mutable state (batch norm) in training")
    if optimizer_name == "adamw":
        raise ValueError("optimizer='adamw': decoupled weight decay is not the gradient of a penalty, "
                         "so its fixed points are not stationary points; implicit mode needs an L2-coupled "
                         "optimizer (sgd, momentum, nesterov, adam, rmsprop)")


_OPTIMIZER_NAMES = ("learning_rate", "momentum", "b1", "b2", "eps", "rms_decay", "warmup", "final_lr_fraction",
                    "optimizer", "schedule")


def _init_params(spec, data, hp):
    from hsens_jax.engine.train import init_state

    st = init_state(spec, data, hp, jax.random.key(0))
    return st.params, st.batch_stats


def _loss_depends_on(spec, data, hp, params, stats, name) -> bool:
    """Whether the full-batch training loss depends on ``hp[name]`` (a data-flow pass over its
    jaxpr, with the parameters as inputs that do not count)."""
    jaxpr = jax.make_jaxpr(lambda v, p, s: full_train_loss(spec, data, {**hp, name: v}, p, s))(
        hp[name], params, stats).jaxpr
    live = {jaxpr.invars[0]}
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, jax.extend.core.Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(not isinstance(v, jax.extend.core.Literal) and v in live for v in jaxpr.outvars)


def _stochastic(spec, data, hp) -> bool:
    """Whether a training-mode minibatch loss depends on the dropout key or updates model state."""
    from hsens_jax.engine.train import batch_loss

    params, stats = jax.eval_shape(lambda h: _init_params(spec, data, h), hp)
    if jax.tree.leaves(stats):
        return True
    x, y = data.x_train[:2], data.y_train[:2]
    jaxpr = jax.make_jaxpr(lambda k: batch_loss(spec, hp, jax.tree.map(jnp.zeros_like, params), stats, x, y,
                                                 jax.random.wrap_key_data(k))[0])(
        jax.random.key_data(jax.random.key(0)))
    live = set(jaxpr.jaxpr.invars)
    for eqn in jaxpr.jaxpr.eqns:
        if any(not isinstance(v, jax.extend.core.Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(not isinstance(v, jax.extend.core.Literal) and v in live for v in jaxpr.jaxpr.outvars)


def engine_implicit_gradient(spec: TrainSpec, data: TrainData, hp, key, wrt: tuple[str, ...], *,
                             objective="final_val_loss", **solver_options):
    """Implicit hypergradient at the end of the engine's training run (pure; jit/vmap-able).

    Trains ``spec.n_steps`` steps with :func:`hsens_jax.hypergrad.unrolled.final_state`
    (no derivative flows through training), then applies :func:`implicit_gradient` with
    :func:`engine_training_loss` as the inner objective and ``objective`` (see
    :func:`hsens_jax.hypergrad.unrolled.objective_value`) as the outer one.

    Args:
      wrt: names among :data:`IMPLICIT_HYPERPARAMETERS`.
      **solver_options: passed to :func:`implicit_gradient`.
    Returns:
      ``(value, grad, diverged, stationarity)``: the objective, a dict of raw
      derivatives, the divergence flag and ``||grad_theta L(theta_T)||``.
    """
    state = jax.lax.stop_gradient(final_state(spec, data, hp, key))
    x0 = {n: hp[n] for n in wrt}

    def inner(params, x):
        return engine_training_loss(spec, data, {**hp, **x}, params)

    def outer(params, x):
        return objective_value(spec, data, {**hp, **x}, state._replace(params=params), objective)

    grad, info = implicit_gradient(inner, outer, state.params, x0, **solver_options)
    value = objective_value(spec, data, hp, state, objective)
    return value, grad, state.diverged, info["stationarity"]
