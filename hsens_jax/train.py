"""The training of one configuration: a pure step and a ``lax.scan`` loop.

Everything here is a pure function of ``(spec, data, hp, key)``:

* ``spec`` (:class:`TrainSpec`) is static and hashable: model family, task, the
  optimizer / schedule / activation names configurations choose from, batch size,
  number of steps. One compiled program serves every configuration sharing a spec.
* ``data`` (:class:`TrainData`) holds the training and validation arrays on device.
* ``hp`` is a dict of scalar arrays, one per name in :data:`HYPERPARAMETERS`
  (categoricals as indices into the spec's name tuples). Under ``jax.vmap`` each
  configuration carries its own; :func:`hp_from_values` builds it.
* ``key`` is the seed's PRNG key. It is split into an initialization key, a data-order
  key and a dropout key, so configurations trained with the same seed share their
  initial draws and minibatch order (common random numbers: differences between
  configurations are due to the hyperparameters, not to the noise).

:func:`train` runs ``spec.n_steps`` steps and returns the recorded metrics.
:func:`init_carry`, :func:`step` and :func:`finalize` are its pieces, exposed so that
:mod:`hsens_jax.hypergrad` differentiates this very loop (with its own segmentation
and checkpointing) rather than a second implementation.

Batches: each epoch draws a fresh permutation of the training set and cuts it into
``n_train // batch_size`` batches (the incomplete last batch is dropped); one step is
one batch. Validation runs ``n_evals`` times, evenly spaced, the last at the final step.

Divergence: when a step produces a non-finite loss or parameter, the configuration's
parameters and batch statistics are frozen (the last finite ones, though their loss may
overflow) for the rest of training and flagged (``diverged``, ``diverged_step``);
its recorded losses may then be inf or NaN, and analyses must treat the flag. This involves no other configuration: under
``vmap`` each configuration's arithmetic is independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hsens_jax.models import ACTIVATIONS, ModelSpec
from hsens_jax.optimizers import OPTIMIZERS, make_optimizer

SCHEDULES = ("constant", "cosine", "linear", "exponential")
"""Learning-rate schedules. With ``p`` the fraction of post-warmup training done and
``a = final_lr_fraction``: constant 1, cosine ``a + (1-a)(1+cos(pi p))/2``, linear
``1 - (1-a) p``, exponential ``a ** p``. A linear warmup over the first
``warmup * n_steps`` steps multiplies all of them."""

HYPERPARAMETERS: dict[str, Any] = {
    # optimizer
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "rms_decay": 0.9,
    # schedule
    "schedule": "constant",
    "warmup": 0.0,
    "final_lr_fraction": 0.0,
    # loss
    "label_smoothing": 0.0,
    # model
    "width": 64,
    "depth": 2,
    "hidden_layer_sizes": None,
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "init_scale": 1.0,
}
"""Every per-configuration hyperparameter the engine understands, with its default."""

CATEGORICAL = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "activation": tuple(ACTIVATIONS)}
"""Hyperparameters whose values are names, and the names allowed."""

STATIC_HYPERPARAMETERS = {"batch_size": 64, "epochs": None, "steps": None}
"""Hyperparameters that change array shapes or loop lengths: a sweep compiles one
program per distinct combination of them (see :mod:`hsens_jax.sweep`)."""


@dataclass(frozen=True)
class TrainSpec:
    """Static description of one compiled training program.

    Attributes:
      model: the model family at its largest size.
      task: ``"classification"`` (softmax cross-entropy, accuracy) or ``"regression"``
        (mean squared error; accuracy is NaN).
      batch_size: examples per step.
      n_steps: optimizer steps.
      n_train: training-set size (for the epoch length).
      optimizers, schedules: names a configuration's ``hp['optimizer']`` and
        ``hp['schedule']`` index.
      n_evals: validation points along training.
      eval_batch_size: validation examples per forward pass.
    """

    model: ModelSpec
    task: str
    batch_size: int
    n_steps: int
    n_train: int
    optimizers: tuple[str, ...] = ("adam",)
    schedules: tuple[str, ...] = ("constant",)
    n_evals: int = 20
    eval_batch_size: int = 512

    def __post_init__(self):
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if not 1 <= self.batch_size <= self.n_train:
            raise ValueError(
                f"batch_size={self.batch_size} must be between 1 and the training-set size {self.n_train}"
            )
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        for name, allowed, given in (("optimizer", OPTIMIZERS, self.optimizers), ("schedule", SCHEDULES, self.schedules)):
            bad = [g for g in given if g not in allowed]
            if bad or not given:
                raise ValueError(f"unknown {name} {bad or given}; choose from {allowed}")

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    @property
    def eval_every(self) -> int:
        return math.ceil(self.n_steps / min(self.n_evals, self.n_steps))

    @property
    def n_points(self) -> int:
        """Length of the recorded curves."""
        return math.ceil(self.n_steps / self.eval_every)


class TrainData(NamedTuple):
    """Device arrays of a data set; the validation set is padded to whole eval batches."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    val_weight: jax.Array  # 1 for real validation examples, 0 for padding


def prepare_data(dataset, eval_batch_size: int = 512, dtype=None) -> TrainData:
    """Move a :class:`hsens_jax.data.Dataset` to the device in the layout :func:`train` expects."""
    dtype = dtype or jnp.zeros(()).dtype
    n_val = len(dataset.x_val)
    if n_val == 0:
        raise ValueError(f"data set {dataset.name!r} has an empty validation set")
    bs = min(eval_batch_size, n_val)
    pad = (-n_val) % bs
    x_val = np.concatenate([dataset.x_val, np.zeros((pad, *dataset.x_val.shape[1:]), dataset.x_val.dtype)])
    y_val = np.concatenate([dataset.y_val, np.zeros((pad, *dataset.y_val.shape[1:]), dataset.y_val.dtype)])
    weight = np.concatenate([np.ones(n_val), np.zeros(pad)])
    ydt = jnp.int32 if dataset.task == "classification" else dtype
    return TrainData(
        jnp.asarray(dataset.x_train, dtype),
        jnp.asarray(dataset.y_train, ydt),
        jnp.asarray(x_val, dtype),
        jnp.asarray(y_val, ydt),
        jnp.asarray(weight, dtype),
    )


def hp_from_values(values: dict[str, Any], spec: TrainSpec, dtype=None) -> dict[str, jax.Array]:
    """Complete ``values`` with defaults and encode names as indices into ``spec``'s tuples.

    Args:
      values: hyperparameter values (scalars or arrays of a common leading shape);
        categoricals may be given as names or already as indices.
    Architecture: ``width`` and ``depth`` give ``depth`` hidden layers of ``width`` units;
    ``hidden_layer_sizes`` (strings such as ``"100,50"``, or tuples) overrides both with
    per-layer widths, as in scikit-learn's ``MLPClassifier``.

    Returns:
      A dict with every key of :data:`HYPERPARAMETERS` except ``hidden_layer_sizes``,
      plus ``widths`` of shape (..., max_depth): float arrays except the integer indices
      ``optimizer``, ``schedule``, ``activation``.
    """
    dtype = dtype or jnp.zeros(()).dtype
    unknown = set(values) - set(HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {sorted(HYPERPARAMETERS)}")
    values = dict(values)
    sizes = values.pop("hidden_layer_sizes", None)
    shapes = {np.shape(v) for v in values.values() if not isinstance(v, str)}
    if sizes is not None:
        widths, depth = _parse_layer_sizes(sizes, spec.model.max_depth)
        shapes.add(depth.shape)
    if len(shapes) > 1:
        raise ValueError(f"hyperparameter arrays have different shapes: {sorted(shapes)}")
    shape = shapes.pop() if shapes else ()
    tables = {"optimizer": spec.optimizers, "schedule": spec.schedules, "activation": spec.model.activations}
    out = {}
    for name, default in HYPERPARAMETERS.items():
        if name == "hidden_layer_sizes":
            continue
        if name in tables and name not in values and default not in tables[name]:
            default = tables[name][0]
        v = values.get(name, default)
        if name in tables:
            v = _index_of(name, v, tables[name])
            out[name] = jnp.broadcast_to(jnp.asarray(v, jnp.int32), shape)
        else:
            out[name] = jnp.broadcast_to(jnp.asarray(v, dtype), shape)
    if sizes is not None:
        out["widths"] = jnp.broadcast_to(jnp.asarray(widths, dtype), shape + (spec.model.max_depth,))
        out["depth"] = jnp.broadcast_to(jnp.asarray(depth, dtype), shape)
        out["width"] = out["widths"][..., 0]
    else:
        out["widths"] = jnp.broadcast_to(out["width"][..., None], shape + (spec.model.max_depth,))
    _check_layer_widths(spec.model, out)
    return out


def _check_layer_widths(model: ModelSpec, hp) -> None:
    """Configurations must fit a program built with per-layer sizes (``model.layer_widths``)."""
    if not model.layer_widths:
        return
    widths = np.asarray(hp["widths"])
    depth = np.asarray(hp["depth"])
    active = np.arange(model.max_depth) < depth[..., None]
    too_wide = active & (widths > np.asarray(model.layer_widths))
    if np.any(too_wide):
        layer = int(np.nonzero(too_wide)[-1][0])
        raise ValueError(
            f"hidden layer {layer} asks for {widths[too_wide][0]:g} units but this program builds it "
            f"with {model.layer_widths[layer]} (layer_widths={model.layer_widths})"
        )
    if model.full_depth_only and np.any(depth != model.max_depth):
        raise ValueError(
            f"depth {np.asarray(depth)[depth != model.max_depth].ravel()[0]:g}: a program with unequal "
            f"layer_widths={model.layer_widths} trains only networks of depth {model.max_depth}"
        )


def parse_layer_sizes(value) -> tuple[int, ...]:
    """``"100,50"`` / ``"100-50"`` / ``(100, 50)`` / ``100`` -> ``(100, 50)``."""
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    if isinstance(value, str):
        parts = [p for p in value.replace("-", ",").replace("x", ",").replace(" ", "").strip("()").split(",") if p]
        try:
            sizes = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"hidden_layer_sizes {value!r} is not a list of integers such as '100,50'") from None
    else:
        sizes = tuple(int(v) for v in value)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden_layer_sizes {value!r} must list at least one positive width")
    return sizes


def _parse_layer_sizes(values, max_depth):
    arr = np.asarray(values, dtype=object)
    flat = [parse_layer_sizes(v) for v in arr.ravel()] if arr.ndim else [parse_layer_sizes(values)]
    if max(len(s) for s in flat) > max_depth:
        raise ValueError(f"hidden_layer_sizes has more layers than the model's max_depth={max_depth}")
    widths = np.array([list(s) + [0] * (max_depth - len(s)) for s in flat], float)
    depth = np.array([len(s) for s in flat], float)
    shape = arr.shape if arr.ndim else ()
    return widths.reshape(shape + (max_depth,)), depth.reshape(shape)


def _index_of(name, v, table):
    if isinstance(v, str):
        if v not in table:
            raise ValueError(f"{name}={v!r} is not among this program's choices {table}")
        return table.index(v)
    arr = np.asarray(v)
    if arr.dtype.kind in "USO":
        bad = [x for x in arr.ravel() if x not in table]
        if bad:
            raise ValueError(f"{name}={bad[0]!r} is not among this program's choices {table}")
        return np.vectorize(table.index, otypes=[np.int32])(arr)
    return arr


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any
    diverged: jax.Array
    diverged_step: jax.Array


class Record(NamedTuple):
    """What the loop records while it runs (all per configuration)."""

    train_loss_sum: jax.Array
    train_loss_count: jax.Array
    train_curve: jax.Array  # (n_points,) mean training loss over each evaluation period
    val_loss_curve: jax.Array  # (n_points,)
    val_acc_curve: jax.Array  # (n_points,)
    best_val_loss: jax.Array
    best_val_acc: jax.Array


class Carry(NamedTuple):
    state: TrainState
    perm: jax.Array
    record: Record
    keys: jax.Array  # (3,) keys: init, data order, dropout


def _optimizer(spec: TrainSpec, hp):
    return make_optimizer(
        spec.optimizers,
        learning_rate=hp["learning_rate"],
        momentum=hp["momentum"],
        b1=hp["b1"],
        b2=hp["b2"],
        eps=hp["eps"],
        weight_decay=hp["weight_decay"],
        rms_decay=hp["rms_decay"],
        choice=hp["optimizer"],
    )


def learning_rate_at(spec: TrainSpec, hp, t) -> jax.Array:
    """Learning rate at step ``t`` (0-based) under the configuration's schedule."""
    total = spec.n_steps
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
    if len(spec.schedules) == 1:
        decay = shapes[spec.schedules[0]]()
    else:
        decay = jnp.select([hp["schedule"] == i for i in range(len(spec.schedules))],
                           [shapes[s]() for s in spec.schedules])
    return lr * warm_factor * decay


def _forward(spec, hp, params, batch_stats, x, train, dropout_key=None):
    model = spec.model.module()
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
        out, updates = model.apply(variables, x, hp, train=True, rngs={"dropout": dropout_key},
                                   mutable=["batch_stats"])
        return out, updates["batch_stats"]
    return model.apply(variables, x, hp, train=False), batch_stats


def loss_fn(spec: TrainSpec, hp, outputs, y, weight=None):
    """Per-example loss: smoothed softmax cross-entropy, or squared error summed over outputs."""
    if spec.task == "classification":
        n = outputs.shape[-1]
        ls = hp["label_smoothing"]
        target = jax.nn.one_hot(y, n, dtype=outputs.dtype) * (1 - ls) + ls / n
        return optax.softmax_cross_entropy(outputs, target)
    y = y.reshape(outputs.shape)
    return jnp.mean((outputs - y) ** 2, axis=-1)


def init_state(spec: TrainSpec, data: TrainData, hp, key) -> TrainState:
    """Initial parameters, batch statistics and optimizer state of one configuration."""
    variables = spec.model.module().init({"params": key}, data.x_train[:1], hp, train=False)
    params = variables["params"]
    # flax keeps running statistics in float32 whatever the model's dtype: follow the data's
    batch_stats = jax.tree.map(lambda a: a.astype(data.x_train.dtype), variables.get("batch_stats", {}))
    opt_state = _optimizer(spec, hp).init(params)
    return TrainState(params, batch_stats, opt_state, jnp.zeros((), bool), jnp.full((), -1, jnp.int32))


def init_carry(spec: TrainSpec, data: TrainData, hp, key) -> Carry:
    """Everything :func:`step` threads through the loop, at step 0."""
    keys = jax.random.split(key, 3)
    state = init_state(spec, data, hp, keys[0])
    dt = data.x_val.dtype
    nan = jnp.full((spec.n_points,), jnp.nan, dt)
    record = Record(jnp.zeros((), dt), jnp.zeros((), dt), nan, nan, nan,
                    jnp.full((), jnp.inf, dt), jnp.full((), -jnp.inf, dt))
    perm = jnp.zeros((spec.n_train,), jnp.int32)
    return Carry(state, perm, record, keys)


def evaluate(spec: TrainSpec, data: TrainData, hp, state: TrainState):
    """Validation (loss, accuracy) of a state; accuracy is NaN for regression."""
    n = data.x_val.shape[0]
    bs = min(spec.eval_batch_size, n)
    xs = data.x_val.reshape(n // bs, bs, *data.x_val.shape[1:])
    ys = data.y_val.reshape(n // bs, bs, *data.y_val.shape[1:])
    ws = data.val_weight.reshape(n // bs, bs)

    def one(batch):
        x, y, w = batch
        out, _ = _forward(spec, hp, state.params, state.batch_stats, x, train=False)
        loss = jnp.sum(loss_fn(spec, hp, out, y) * w)
        if spec.task == "classification":
            correct = jnp.sum((jnp.argmax(out, -1) == y) * w)
        else:
            correct = jnp.zeros((), out.dtype)
        return loss, correct

    if xs.shape[0] == 1:  # one batch: no loop to compile
        losses, corrects = jax.tree.map(lambda a: a[None], one((xs[0], ys[0], ws[0])))
    else:
        losses, corrects = jax.lax.map(one, (xs, ys, ws))
    total = jnp.sum(data.val_weight)
    acc = jnp.sum(corrects) / total if spec.task == "classification" else jnp.full((), jnp.nan, total.dtype)
    return jnp.sum(losses) / total, acc


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def batch_loss(spec: TrainSpec, hp, params, batch_stats, x, y, dropout_key):
    """Mean training loss on one minibatch, in training mode: ``(loss, new batch statistics)``.

    ``x``: (batch, *input_shape) inputs, ``y``: (batch,) labels or (batch, outputs)
    targets; dropout draws from ``dropout_key``; batch norm normalizes with the batch's
    statistics and returns updated running statistics. The function
    :func:`train_step` differentiates with respect to ``params``.
    """
    out, new_stats = _forward(spec, hp, params, batch_stats, x, True, dropout_key)
    return jnp.mean(loss_fn(spec, hp, out, y)), new_stats


def optimizer_update(spec: TrainSpec, hp, params, opt_state, grads, t):
    """The configuration's optimizer applied to ``grads`` at step ``t``: ``(params, opt_state)``.

    The learning rate is the schedule's value at ``t`` (:func:`learning_rate_at`); the
    other optimizer hyperparameters are those injected in ``opt_state``.
    """
    opt = _optimizer(spec, hp)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": learning_rate_at(spec, hp, t)})
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def train_step(spec: TrainSpec, data: TrainData, hp, state: TrainState, batch_idx, dropout_key, t, *,
               guard: bool = True):
    """One optimizer step on the examples ``batch_idx``; returns (new state, training loss).

    With ``guard`` (the training loop's setting), a step whose loss or new parameters are
    not finite leaves the parameters and batch statistics unchanged and marks the state
    diverged; a diverged state's parameters are never updated again (its optimizer state
    is not kept: it is never read again). ``guard=False`` is the same step without that bookkeeping (no finiteness
    test of the parameters, no selection over the state): identical results while training
    stays finite, and the flags record the first non-finite loss only. Hypergradients
    (:mod:`hsens_jax.hypergrad`) differentiate this lean step, whose guard would otherwise
    cost a select per parameter array in every pass.
    """
    x = data.x_train[batch_idx]
    y = data.y_train[batch_idx]
    (loss, new_stats), grads = jax.value_and_grad(batch_loss, argnums=2, has_aux=True)(
        spec, hp, state.params, state.batch_stats, x, y, dropout_key)
    params, opt_state = optimizer_update(spec, hp, state.params, state.opt_state, grads, t)
    if not guard:
        first = ~state.diverged & ~jnp.isfinite(loss)
        return TrainState(params, new_stats, opt_state, state.diverged | first,
                          jnp.where(first, jnp.asarray(t, jnp.int32), state.diverged_step)), loss
    ok = jnp.isfinite(loss) & _all_finite(params) & ~state.diverged
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    # The optimizer state is not frozen: a diverged configuration's parameters never move
    # again, so its moments are never read, and selecting them too (several arrays the size
    # of the parameters) cost 27% of the run time of the demo's largest program.
    return TrainState(
        keep(params, state.params),
        keep(new_stats, state.batch_stats),
        opt_state,
        state.diverged | ~ok,
        jnp.where(ok | state.diverged, state.diverged_step, jnp.asarray(t, jnp.int32)),
    ), jnp.where(ok, loss, jnp.nan)


def batch_indices(spec: TrainSpec, keys, perm, t, redraw=True):
    """The examples and dropout key of step ``t``: ``(perm, batch_idx, dropout_key)``.

    ``keys`` are the (init, data order, dropout) keys of :func:`init_carry`; ``perm`` is the
    current epoch's permutation, redrawn (from the data-order key and the epoch) at the
    first step of each epoch. ``redraw=False`` (a bool, possibly traced) keeps ``perm`` at
    an epoch's first step too: for callers that already hold that epoch's permutation
    (checkpointed hypergradients draw it once, outside the recomputed segment).
    """
    spe = spec.steps_per_epoch
    epoch, pos = t // spe, t % spe
    perm = jax.lax.cond(
        (pos == 0) if redraw is True else (pos == 0) & redraw,
        lambda: jax.random.permutation(jax.random.fold_in(keys[1], epoch), spec.n_train).astype(jnp.int32),
        lambda: perm,
    )
    batch_idx = jax.lax.dynamic_slice(perm, (pos * spec.batch_size,), (spec.batch_size,))
    return perm, batch_idx, jax.random.fold_in(keys[2], t)


def step(spec: TrainSpec, data: TrainData, hp, carry: Carry, t) -> Carry:
    """Loop body at step ``t``: new permutation at epoch starts, a train step, maybe a validation."""
    perm, batch_idx, dropout_key = batch_indices(spec, carry.keys, carry.perm, t)
    state, loss = train_step(spec, data, hp, carry.state, batch_idx, dropout_key, t)

    rec = carry.record
    finite = jnp.isfinite(loss)
    rec = rec._replace(
        train_loss_sum=rec.train_loss_sum + jnp.where(finite, loss, 0.0),
        train_loss_count=rec.train_loss_count + finite,
    )

    def do_eval(rec):
        val_loss, val_acc = evaluate(spec, data, hp, state)
        i = t // spec.eval_every
        mean_train = jnp.where(rec.train_loss_count > 0, rec.train_loss_sum / jnp.maximum(rec.train_loss_count, 1), jnp.nan)
        return Record(
            jnp.zeros_like(rec.train_loss_sum),
            jnp.zeros_like(rec.train_loss_count),
            rec.train_curve.at[i].set(mean_train),
            rec.val_loss_curve.at[i].set(val_loss),
            rec.val_acc_curve.at[i].set(val_acc),
            jnp.fmin(rec.best_val_loss, val_loss),
            jnp.fmax(rec.best_val_acc, val_acc),
        )

    is_eval = ((t + 1) % spec.eval_every == 0) | (t == spec.n_steps - 1)
    rec = jax.lax.cond(is_eval, do_eval, lambda r: r, rec)
    return Carry(state, perm, rec, carry.keys)


def finalize(spec: TrainSpec, carry: Carry) -> dict[str, jax.Array]:
    """The metrics of a finished run (see :data:`METRICS`)."""
    rec = carry.record
    last = spec.n_points - 1
    return {
        "final_val_loss": rec.val_loss_curve[last],
        "final_val_accuracy": rec.val_acc_curve[last],
        "best_val_loss": rec.best_val_loss,
        "best_val_accuracy": rec.best_val_acc if spec.task == "classification" else jnp.full_like(rec.best_val_acc, jnp.nan),
        "final_train_loss": rec.train_curve[last],
        "diverged": carry.state.diverged,
        "diverged_step": carry.state.diverged_step,
        "train_curve": rec.train_curve,
        "val_loss_curve": rec.val_loss_curve,
        "val_accuracy_curve": rec.val_acc_curve,
    }


METRICS = ("final_val_loss", "final_val_accuracy", "best_val_loss", "best_val_accuracy",
           "final_train_loss", "diverged", "diverged_step")
"""Scalar metrics recorded per configuration and seed; curves are recorded too."""

CURVES = ("train_curve", "val_loss_curve", "val_accuracy_curve")


def train(spec: TrainSpec, data: TrainData, hp, key) -> dict[str, jax.Array]:
    """Train one configuration for ``spec.n_steps`` steps with ``lax.scan``.

    Vectorize with ``jax.vmap(train, in_axes=(None, None, 0, 0))`` over hp dicts and
    keys (``spec`` is static: close over it or use ``functools.partial``).

    Returns:
      A dict of scalars (:data:`METRICS`) and curves of length ``spec.n_points``
      (:data:`CURVES`).
    """
    carry = init_carry(spec, data, hp, key)
    carry, _ = jax.lax.scan(lambda c, t: (step(spec, data, hp, c, t), None), carry,
                            jnp.arange(spec.n_steps, dtype=jnp.int32))
    return finalize(spec, carry)
