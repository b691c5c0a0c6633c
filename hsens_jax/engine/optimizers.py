"""The engine's built-in optimizer: one optax optimizer whose kind, every numeric setting and
the learning-rate schedule are hyperparameters.

A model that brings no optimizer of its own (:class:`hsens_jax.engine.Model` with
``optimizer=None``, the built-in MLP and CNN among them) is trained with this one; its
hyperparameters are :data:`HYPERPARAMETERS`, with :data:`DEFAULTS`.

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

Adam and AdamW are :mod:`hsens_jax.engine.adam`'s: optax's values and state, with a derivative
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

from hsens_jax.engine.adam import adam, adamw

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
"""Names :func:`make_optimizer` understands."""

_EPS_ROOT = 1e-30
"""Added under Adam's square root: a parameter whose gradient is always exactly zero (a
masked unit, a constant input pixel) keeps a zero second moment, where sqrt has an
infinite derivative; hypergradients through it would be 0 * inf = NaN. The shift changes
training by ~1e-15 relative."""

HYPERPARAMETERS = ("learning_rate", "momentum", "b1", "b2", "eps", "weight_decay", "rms_decay")
"""Numeric optimizer hyperparameters, each a scalar per configuration."""

SCHEDULES = ("constant", "cosine", "linear", "exponential")
"""Learning-rate schedules. With ``p`` the fraction of post-warmup training done and
``a = final_lr_fraction``: constant 1, cosine ``a + (1-a)(1+cos(pi p))/2``, linear
``1 - (1-a) p``, exponential ``a ** p``. A linear warmup over the first
``warmup * n_steps`` steps multiplies all of them."""

DEFAULTS = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "rms_decay": 0.9,
    "schedule": "constant",
    "warmup": 0.0,
    "final_lr_fraction": 0.0,
}
"""Every hyperparameter of the built-in optimizer and schedule, with its default."""

CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}
"""The built-in optimizer's categorical hyperparameters and their names (traced as indices)."""

USED_BY = {
    "momentum": ("momentum", "nesterov"),
    "b1": ("adam", "adamw"),
    "b2": ("adam", "adamw"),
    "eps": ("adam", "adamw", "rmsprop"),
    "rms_decay": ("rmsprop",),
}
"""Settings that only some optimizers read (the others read every setting of :data:`DEFAULTS`)."""

BOUNDS = {
    "learning_rate": (0.0, None, False),
    "momentum": (0.0, 1.0, False),
    "b1": (0.0, 1.0, True),
    "b2": (0.0, 1.0, True),
    "eps": (0.0, None, False),
    "weight_decay": (0.0, None, False),
    "rms_decay": (0.0, 1.0, True),
    "warmup": (0.0, 1.0, False),
    "final_lr_fraction": (0.0, 1.0, False),
}
"""Valid ranges ``(low, high, high excluded)`` of numeric settings (low included): a negative
learning rate or a momentum above 1 is refused before anything is trained."""


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


def learning_rate_at(schedules: tuple[str, ...], n_steps: int, hp, t) -> jax.Array:
    """Learning rate at step ``t`` (0-based) under the configuration's schedule.

    ``schedules``: the names ``hp["schedule"]`` indexes; ``n_steps``: the run's length (static).
    """
    total = n_steps
    lr = hp["learning_rate"]
    t = jnp.asarray(t, lr.dtype)
    warm = hp["warmup"] * total
    warm_factor = jnp.where(warm > 0, jnp.clip((t + 1) / jnp.maximum(warm, 1e-12), 0.0, 1.0), 1.0)
    p = jnp.clip((t - warm) / jnp.maximum(total - warm, 1.0), 0.0, 1.0)
    a = hp["final_lr_fraction"]
    shapes = {
        "constant": lambda: jnp.ones_like(p),
        "cosine": lambda: a + (1 - a) * 0.5 * (1 + jnp.cos(jnp.pi * p)),
        "linear": lambda: 1 - (1 - a) * p,
        "exponential": lambda: jnp.power(jnp.maximum(a, 1e-30), p),
    }
    if len(schedules) == 1:
        decay = shapes[schedules[0]]()
    else:
        decay = jnp.select([hp["schedule"] == i for i in range(len(schedules))], [shapes[s]() for s in schedules])
    return lr * warm_factor * decay


def builtin_optimizer(optimizers: tuple[str, ...], hp) -> optax.GradientTransformation:
    """:func:`make_optimizer` over ``optimizers`` with a configuration's values ``hp``."""
    return make_optimizer(optimizers, choice=hp["optimizer"], **{h: hp[h] for h in HYPERPARAMETERS})
