"""One optax optimizer whose kind, and every numeric setting, is a hyperparameter.

A sweep trains configurations that use different optimizers inside one compiled
program. :func:`make_optimizer` returns an ``optax.inject_hyperparams`` transformation
whose hyperparameters (``learning_rate``, ``momentum``, ``b1``, ``b2``, ``eps``,
``weight_decay``, ``rms_decay`` and the integer ``choice``) live in the optimizer state,
so under ``jax.vmap`` every configuration carries its own values.

When a sweep uses several optimizers, every optimizer in ``names`` is updated at each
step and the update of the chosen one is selected (``jnp.select``); the states of the
others evolve but are never used. The price is one extra optimizer update per
additional choice, small next to a forward and backward pass. With a single optimizer
no selection happens at all.

Adam and AdamW are :mod:`hsens_jax.adam`'s: optax's values and state, with a derivative
rule that keeps forward-mode hypergradients fused (fewer kernels per step).

Weight decay: ``adamw`` decays weights decoupled from the gradient (Loshchilov and
Hutter 2019); every other optimizer adds ``weight_decay * params`` to the gradient
(classical L2 regularization).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from hsens_jax.adam import adam, adamw

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
"""Names :func:`make_optimizer` understands."""

_EPS_ROOT = 1e-30
"""Added under Adam's square root: a parameter whose gradient is always exactly zero (a
masked unit, a constant input pixel) keeps a zero second moment, where sqrt has an
infinite derivative; hypergradients through it would be 0 * inf = NaN. The shift changes
training by ~1e-15 relative."""

HYPERPARAMETERS = ("learning_rate", "momentum", "b1", "b2", "eps", "weight_decay", "rms_decay")
"""Numeric optimizer hyperparameters, each a scalar per configuration."""


def _single(name: str, learning_rate, momentum, b1, b2, eps, weight_decay, rms_decay):
    l2 = optax.add_decayed_weights(weight_decay)
    if name == "sgd":
        return optax.chain(l2, optax.sgd(learning_rate))
    if name == "momentum":
        return optax.chain(l2, optax.sgd(learning_rate, momentum=momentum))
    if name == "nesterov":
        return optax.chain(l2, optax.sgd(learning_rate, momentum=momentum, nesterov=True))
    if name == "adam":
        return optax.chain(l2, adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=_EPS_ROOT))
    if name == "adamw":
        return adamw(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=_EPS_ROOT, weight_decay=weight_decay)
    if name == "rmsprop":
        return optax.chain(l2, optax.rmsprop(learning_rate, decay=rms_decay, eps=eps))
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")


def _selecting(names: tuple[str, ...]):
    def factory(learning_rate, momentum, b1, b2, eps, weight_decay, rms_decay, choice):
        args = (learning_rate, momentum, b1, b2, eps, weight_decay, rms_decay)
        transforms = [_single(n, *args) for n in names]
        if len(transforms) == 1:
            return transforms[0]

        def init(params):
            return tuple(t.init(params) for t in transforms)

        def update(updates, state, params=None):
            outs = [t.update(updates, s, params) for t, s in zip(transforms, state)]
            picks = [choice == i for i in range(len(names))]
            chosen = jax.tree.map(
                lambda *u: jnp.select(picks, u), *[o[0] for o in outs]
            )
            return chosen, tuple(o[1] for o in outs)

        return optax.GradientTransformation(init, update)

    return factory


def make_optimizer(names: Sequence[str], **hyperparameters) -> optax.GradientTransformation:
    """The optimizer of a sweep group, with injected hyperparameters.

    Args:
      names: the optimizers a configuration may choose from (static), a subset of
        :data:`OPTIMIZERS`. ``hyperparameters['choice']`` indexes this tuple.
      **hyperparameters: scalars (or arrays traced under ``vmap``) for every name in
        :data:`HYPERPARAMETERS` and ``choice``.

    Returns:
      An ``optax.inject_hyperparams`` transformation; its state's ``hyperparams`` dict
      holds the values, and the learning rate may be replaced there at each step to
      apply a schedule.
    """
    names = tuple(names)
    if not names:
        raise ValueError("make_optimizer: `names` is empty")
    for n in names:
        if n not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {n!r}; choose from {OPTIMIZERS}")
    missing = [h for h in HYPERPARAMETERS + ("choice",) if h not in hyperparameters]
    if missing:
        raise ValueError(f"make_optimizer: missing hyperparameters {missing}")
    kwargs = {h: hyperparameters[h] for h in HYPERPARAMETERS + ("choice",)}
    return optax.inject_hyperparams(_selecting(names))(**kwargs)
