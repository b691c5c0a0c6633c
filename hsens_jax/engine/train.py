"""The training of one configuration: a pure step and a ``lax.scan`` loop, for any model.

Everything here is a pure function of ``(spec, data, hp, key)``:

* ``spec`` (:class:`TrainSpec`) is static and hashable: the model (:class:`hsens_jax.engine.Model`,
  as one program builds it), the task, the program's static hyperparameters, the engine
  optimizer's choices, batch size, number of steps. One compiled program serves every
  configuration sharing a spec.
* ``data`` (:class:`TrainData`) holds the training, validation (and test) arrays on device,
  and the cross-validation folds when there are several.
* ``hp`` is a dict of scalar arrays, the traced hyperparameters (categoricals as indices).
  Under ``jax.vmap`` each configuration carries its own; :func:`hp_from_values` builds it.
  The model, its loss, metrics and optimizer receive ``hp`` merged with the static values.
* ``key`` is the seed's PRNG key. ``jax.random.split(key, 3)`` gives an initialization key,
  a data-order key and a dropout key, so configurations trained with the same seed share
  their initial draws and minibatch order (common random numbers: differences between
  configurations are due to the hyperparameters, not to the noise).

Reproducing a run by hand (what the tests do): with ``init_key, order_key, dropout_key =
jax.random.split(key, 3)``, the variables are ``model.init(hp, init_key, x[:1], rng=init_key)``;
epoch ``e`` visits the training examples in the order
``counter_permutation(jax.random.fold_in(order_key, e), n_train)``
(:func:`hsens_jax.engine.counters.counter_permutation`), cut into ``n_train // batch_size``
batches (the incomplete last batch is dropped); step ``t`` (0-based, global) draws its dropout
noise from ``jax.random.fold_in(dropout_key, t)`` and applies the optimizer once.

Validation runs ``n_evals`` times, evenly spaced, the last at the final step, plus once at
initialization. Validation and test scores are the model's loss and metrics of each example
alone, averaged over the set (padding rows weigh nothing).

Cross-validation: with ``F`` folds, ``data`` holds the pool (training plus validation sets)
once, and each run reads its fold's rows through index tables (``fold``: an int per run,
vmapped like the seed). A fold's epoch is ``n_f // batch_size`` steps of its own ``n_f``
training examples; the permutation of a padded fold equals that of an unpadded one of the
same size, so a fold trained inside a cross-validated sweep equals the same fold trained alone.

Divergence (:data:`DIVERGENCE_REASONS`): a step that produces a non-finite loss or parameter
freezes the configuration's parameters and model state (the last finite ones) for the rest of
training (``"non_finite"``). At the end a run is also flagged when its final validation loss
is above :data:`BLOWUP` times its value at initialization (``"loss_blowup"``), or when both its
final validation loss and its final training loss are within :data:`CHANCE_TOLERANCE` of the
chance level or above it (``"chance_level"``: the loss of a model that learnt nothing: log C
for cross-entropy over C classes, the targets' variance for squared error, or the model's own
``chance_loss``; training loss that low rules out mere overfitting). ``diverged`` is any
flag; ``diverged_reason`` the first that fired in that order. None of this involves another
configuration: under ``vmap`` each configuration's arithmetic is independent.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hsens_jax.engine import optimizers as opt
from hsens_jax.engine.counters import counter_permutation
from hsens_jax.engine.model import Model, ModelError

DIVERGENCE_REASONS = ("", "non_finite", "loss_blowup", "chance_level")
"""``diverged_reason`` codes (0: not diverged)."""

BLOWUP = 10.0
"""A run whose final validation loss exceeds this multiple of its initial one is flagged."""

CHANCE_TOLERANCE = 0.01
"""A run whose final validation and training losses are both at least ``(1 - CHANCE_TOLERANCE)``
times the chance-level loss is flagged as stuck at chance level."""


@dataclass(frozen=True)
class Patience:
    """Early stopping of each run on its own, with scikit-learn's ``n_iter_no_change`` / ``tol``.

    At every check a run whose monitored value did not improve on its best by more than
    ``tol`` counts one more check without improvement (an improving check resets the
    count); when the count exceeds ``n_iter_no_change`` the run stops: its parameters stop
    moving and its final metrics are those of the stopped state (flag ``stopped``, step
    ``stopped_step``). Checks happen at the end of each epoch for ``monitor="train_loss"``
    (the epoch's mean minibatch loss, as ``MLPClassifier(early_stopping=False)``), and at each
    validation point for ``"val_loss"`` or ``"val_<metric>"`` (improvement in the metric's
    direction; ``MLPClassifier(early_stopping=True)`` monitors the validation accuracy once
    per epoch: set ``n_evals`` to the number of epochs). Under ``vmap`` the loop ends when
    every run of the program has stopped (a ``lax.while_loop``).
    """

    n_iter_no_change: int = 10
    tol: float = 1e-4
    monitor: str = "train_loss"

    def __post_init__(self):
        if isinstance(self.n_iter_no_change, bool) or not isinstance(self.n_iter_no_change, int) \
                or self.n_iter_no_change < 1:
            raise ValueError(f"n_iter_no_change must be a positive integer, got {self.n_iter_no_change!r}")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if self.monitor != "train_loss" and not self.monitor.startswith("val_"):
            raise ValueError(f"monitor must be 'train_loss', 'val_loss' or 'val_<metric>', got {self.monitor!r}")


@dataclass(frozen=True)
class TrainSpec:
    """Static description of one compiled training program.

    Attributes:
      model: the model as this program builds it (a :class:`~hsens_jax.engine.Model`; a
        built-in one sized by its ``plan``).
      task: ``"classification"`` or ``"regression"`` (the default loss and metrics).
      batch_size: examples per step.
      n_steps: optimizer steps.
      n_train: training-set size (with folds: the smallest fold's), for the epoch length.
      optimizers, schedules: names the engine optimizer's ``hp['optimizer']`` and
        ``hp['schedule']`` index (unused when the model brings its own optimizer).
      n_evals: validation points along training.
      eval_batch_size: validation examples per forward pass.
      static: the program's static hyperparameters, ``((name, value), ...)`` sorted.
      chance_loss: the chance-level validation loss (None: that criterion is off).
      patience: early stopping of each run (:class:`Patience`), or None.
      fold_n_train: with folds, each fold's training-set size (None: no folds, or not
        known). When every fold has the same number of steps per epoch, the epoch
        boundaries are one static schedule for all the runs of a program; otherwise each
        run's fold decides them (a per-run test: under ``vmap`` the epoch's new order is
        then drawn at every step and selected).
    """

    model: Model
    task: str
    batch_size: int
    n_steps: int
    n_train: int
    optimizers: tuple[str, ...] = ("adam",)
    schedules: tuple[str, ...] = ("constant",)
    n_evals: int = 20
    eval_batch_size: int = 512
    static: tuple = ()
    chance_loss: float | None = None
    patience: Patience | None = None
    fold_n_train: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if not 1 <= self.batch_size <= self.n_train:
            raise ValueError(
                f"batch_size={self.batch_size} must be between 1 and the training-set size {self.n_train}"
            )
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if isinstance(self.n_evals, bool) or not isinstance(self.n_evals, (int, np.integer)) or self.n_evals < 1:
            raise ValueError(f"n_evals must be a positive integer, got {self.n_evals!r}")
        if (isinstance(self.eval_batch_size, bool) or not isinstance(self.eval_batch_size, (int, np.integer))
                or self.eval_batch_size < 1):
            raise ValueError(f"eval_batch_size must be a positive integer, got {self.eval_batch_size!r}")
        if self.model.builtin_optimizer:
            for name, allowed, given in (("optimizer", opt.OPTIMIZERS, self.optimizers),
                                         ("schedule", opt.SCHEDULES, self.schedules)):
                bad = [g for g in given if g not in allowed]
                if bad or not given:
                    raise ValueError(f"unknown {name} {bad or given}; choose from {allowed}")
        object.__setattr__(self, "static", tuple(sorted(tuple(self.static), key=lambda kv: kv[0])))

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    @property
    def uniform_epochs(self) -> bool:
        """Whether every fold's epoch has :attr:`steps_per_epoch` steps (always, without folds)."""
        return self.fold_n_train is not None and len({n // self.batch_size for n in self.fold_n_train}) == 1

    @property
    def eval_every(self) -> int:
        return math.ceil(self.n_steps / min(self.n_evals, self.n_steps))

    @property
    def n_points(self) -> int:
        """Length of the recorded curves."""
        return math.ceil(self.n_steps / self.eval_every)


class TrainData(NamedTuple):
    """Device arrays of a data set.

    ``x_train``/``y_train``: the training set (with folds: the pool of training and
    validation examples); ``train_idx`` (F, n) int32 rows of each fold's training examples
    (padded) and ``train_n`` (F,) their numbers, or None without folds. ``x_val``/``y_val``:
    the validation set padded to whole evaluation batches (with folds: the pool), ``val_idx``
    (F, n_val) the rows of each fold's validation examples or None, ``val_weight`` 1 for real
    rows and 0 for padding ((n_val,) or (F, n_val)). ``x_test``/``y_test``/``test_weight``: the
    test set padded likewise (zero rows when there is none).
    """

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    val_weight: jax.Array
    train_idx: Any = None
    train_n: Any = None
    val_idx: Any = None
    x_test: Any = None
    y_test: Any = None
    test_weight: Any = None

    @property
    def n_folds(self) -> int:
        return 1 if self.train_idx is None else int(self.train_idx.shape[0])


def _pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), a.dtype)]) if n > len(a) else a


def _padded_size(n: int, eval_batch_size: int) -> int:
    bs = max(1, min(eval_batch_size, n))
    return n + (-n) % bs


def prepare_data(dataset, eval_batch_size: int = 512, dtype=None, folds=None) -> TrainData:
    """Move a :class:`hsens_jax.data.Dataset` to the device in the layout :func:`train` expects.

    Args:
      dataset: the data set.
      eval_batch_size: validation examples per forward pass (sets the padding).
      dtype: float dtype of the inputs (default: JAX's default float).
      folds: None, or F >= 2 ``(train_indices, val_indices)`` pairs over the pool
        ``concatenate([x_train, x_val])`` (:meth:`hsens_jax.data.Dataset.folds`).
    """
    dtype = dtype or jnp.zeros(()).dtype
    ydt = jnp.int32 if dataset.task == "classification" else dtype
    x_test = getattr(dataset, "x_test", None)
    if x_test is None:
        x_test = np.zeros((0, *dataset.x_train.shape[1:]), np.float32)
        y_test = np.zeros((0, *dataset.y_train.shape[1:]), dataset.y_train.dtype)
    else:
        y_test = dataset.y_test
    n_test = len(x_test)
    tpad = _padded_size(n_test, eval_batch_size) if n_test else 0
    test = (jnp.asarray(_pad_rows(x_test, tpad), dtype), jnp.asarray(_pad_rows(y_test, tpad), ydt),
            jnp.asarray(np.concatenate([np.ones(n_test), np.zeros(tpad - n_test)]), dtype))
    if folds is None:
        n_val = len(dataset.x_val)
        if n_val == 0:
            raise ValueError(f"data set {dataset.name!r} has an empty validation set")
        pad = _padded_size(n_val, eval_batch_size)
        return TrainData(
            jnp.asarray(dataset.x_train, dtype), jnp.asarray(dataset.y_train, ydt),
            jnp.asarray(_pad_rows(dataset.x_val, pad), dtype), jnp.asarray(_pad_rows(dataset.y_val, pad), ydt),
            jnp.asarray(np.concatenate([np.ones(n_val), np.zeros(pad - n_val)]), dtype),
            x_test=test[0], y_test=test[1], test_weight=test[2],
        )
    folds = [(np.asarray(tr, np.int64), np.asarray(va, np.int64)) for tr, va in folds]
    if len(folds) < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {len(folds)}")
    x_pool = jnp.asarray(np.concatenate([dataset.x_train, dataset.x_val]), dtype)
    y_pool = jnp.asarray(np.concatenate([dataset.y_train, dataset.y_val]), ydt)
    n_tr = max(len(tr) for tr, _ in folds)
    n_va = _padded_size(max(len(va) for _, va in folds), eval_batch_size)
    train_idx = np.stack([_pad_rows(tr, n_tr) for tr, _ in folds]).astype(np.int32)
    val_idx = np.stack([_pad_rows(va, n_va) for _, va in folds]).astype(np.int32)
    val_w = np.stack([np.arange(n_va) < len(va) for _, va in folds]).astype(float)
    return TrainData(x_pool, y_pool, x_pool, y_pool, jnp.asarray(val_w, dtype),
                     train_idx=jnp.asarray(train_idx), train_n=jnp.asarray([len(tr) for tr, _ in folds], jnp.int32),
                     val_idx=jnp.asarray(val_idx), x_test=test[0], y_test=test[1], test_weight=test[2])


class _Reads(dict):
    """A hyperparameter dict that records the names user code reads (see :func:`recording_reads`)."""

    def __init__(self, d, log):
        super().__init__(d)
        self._log = log

    def __getitem__(self, k):
        self._log.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self._log.add(k)
        return super().get(k, default)

    def __contains__(self, k):
        self._log.add(k)
        return super().__contains__(k)


_READS: contextvars.ContextVar = contextvars.ContextVar("hsens_jax_hp_reads", default=None)


@contextlib.contextmanager
def recording_reads(log: set):
    """Within the block (this thread only), add to ``log`` every hyperparameter name that the
    model's code reads from the ``hp`` it receives."""
    token = _READS.set(log)
    try:
        yield log
    finally:
        _READS.reset(token)


def full_hp(spec: TrainSpec, hp) -> dict:
    """``hp`` (traced values) merged with the program's static values: what user code receives."""
    merged = {**hp, **dict(spec.static)}
    log = _READS.get()
    return merged if log is None else _Reads(merged, log)


def hp_from_values(values: dict[str, Any], spec: TrainSpec, dtype=None) -> dict[str, jax.Array]:
    """Traced hyperparameters of ``spec``'s program from plain values (scalars, or arrays of a
    common leading shape; categoricals as names or indices), completed with defaults.

    Static hyperparameters of the program (``spec.static``) must not be given, or must equal
    the program's value. For a built-in model every name must be one it or the engine knows.
    """
    from hsens_jax.engine.hyperparameters import LOOP, readers

    dtype = dtype or jnp.zeros(()).dtype
    model = spec.model
    known = readers(model, spec.task)
    static = dict(spec.static)
    if model.known_hyperparameters() is not None:
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}; known: {sorted(known)}")
    for name, v in values.items():
        if name in static and not isinstance(v, np.ndarray) and v != static[name]:
            raise ValueError(f"hyperparameter {name!r} is static in this program ({static[name]!r}); got {v!r}")
    vals = {n: d for n, (who, d) in known.items() if who != "loop" and d is not None and n not in static}
    vals.update({n: d for n, d in model.program_defaults().items() if n not in static})
    for name in opt.CHOICES:  # a default the program cannot choose falls back to its first choice
        table = spec.optimizers if name == "optimizer" else spec.schedules
        if name in vals and name not in values and vals[name] not in table:
            vals[name] = table[0]
    vals.update({n: v for n, v in values.items() if n not in static and n not in LOOP})
    builtin_names = set(model.known_hyperparameters() or ())
    given = {n: v for n, v in values.items() if n in vals}
    sizes = given.get("hidden_layer_sizes")
    shapes = {np.shape(v) for n, v in given.items() if not isinstance(v, str) and n != "hidden_layer_sizes"}
    if sizes is not None and not isinstance(sizes, (str, tuple, int)):
        shapes.add(np.shape(np.asarray(sizes, dtype=object)))
    if len(shapes) > 1:
        raise ValueError(f"hyperparameter arrays have different shapes: {sorted(shapes)}")
    shape = shapes.pop() if shapes else ()
    n = int(np.prod(shape)) if shape else 1
    flat = lambda v: np.array([v] * n, dtype=object) if isinstance(v, (str, tuple)) or np.ndim(v) == 0 \
        else np.asarray(v, dtype=object).reshape(n)  # noqa: E731
    out: dict[str, Any] = {}
    model_vals = {}
    for name, v in vals.items():
        if name in builtin_names:
            model_vals[name] = flat(v)
        elif name in opt.CHOICES:
            table = spec.optimizers if name == "optimizer" else spec.schedules
            col = flat(v)
            idx = []
            for c in col:
                if isinstance(c, str):
                    if c not in table:
                        raise ValueError(f"{name}={c!r} is not among this program's choices {table}")
                    idx.append(table.index(c))
                else:
                    idx.append(int(c))
            out[name] = jnp.asarray(np.array(idx, np.int32).reshape(shape))
        else:
            a = np.broadcast_to(np.asarray(v), shape)
            if a.dtype.kind == "b":
                out[name] = jnp.asarray(a)
            elif a.dtype.kind in "iu" and name not in opt.DEFAULTS:
                out[name] = jnp.asarray(a, jnp.int32)
            else:
                out[name] = jnp.asarray(a, dtype)
    if model_vals:
        enc = model.encode(model_vals, static, np.dtype(jnp.zeros((), dtype).dtype))
        for name, a in enc.items():
            out[name] = jnp.asarray(a.reshape(shape + a.shape[1:]))
    return out


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any  # the model's other collections ({"batch_stats": ...}), {} if none
    opt_state: Any
    diverged: jax.Array
    diverged_step: jax.Array


class Record(NamedTuple):
    """What the loop records while it runs (all per configuration)."""

    train_loss_sum: jax.Array
    train_loss_count: jax.Array
    train_curve: jax.Array  # (n_points,) mean training loss over each evaluation period
    val_curves: dict  # {"loss": (n_points,), metric: (n_points,)}
    best: dict  # best value of each over the evaluations, by its direction
    initial: dict  # the evaluation at initialization


class Stopping(NamedTuple):
    """Early-stopping bookkeeping of one run (see :class:`Patience`)."""

    best: jax.Array  # best monitored value so far (lower is better: maximized metrics negated)
    count: jax.Array  # checks without improvement
    stopped: jax.Array
    stopped_step: jax.Array
    epoch_sum: jax.Array  # training loss summed over the current epoch
    epoch_n: jax.Array


class Carry(NamedTuple):
    state: TrainState
    perm: jax.Array
    record: Record
    keys: jax.Array  # (3,) keys: init, data order, dropout
    fold: jax.Array = 0
    stop: Stopping | None = None


def _optimizer(spec: TrainSpec, hp):
    if spec.model.builtin_optimizer:
        return opt.builtin_optimizer(spec.optimizers, hp)
    tx = spec.model.optimizer(full_hp(spec, hp))
    if not isinstance(tx, optax.GradientTransformation):
        raise ModelError(f"the model's optimizer factory returned {type(tx).__name__}, "
                         "not an optax.GradientTransformation")
    return tx


def learning_rate_at(spec: TrainSpec, hp, t) -> jax.Array:
    """Learning rate of the engine's optimizer at step ``t`` (0-based) under the schedule."""
    return opt.learning_rate_at(spec.schedules, spec.n_steps, hp, t)


def _loss(spec: TrainSpec, outputs, batch, hp):
    loss = spec.model.loss_fn(spec.task)(outputs, batch, hp)
    if jnp.ndim(loss) != 0:
        raise ModelError(f"the model's loss returned an array of shape {jnp.shape(loss)}: it must return a scalar "
                         "(the mean over the batch's examples)")
    return loss


def _metrics(spec: TrainSpec, outputs, batch, hp) -> dict:
    m = spec.model.metrics_fn(spec.task)(outputs, batch, hp)
    if not isinstance(m, dict):
        raise ModelError(f"the model's metrics returned {type(m).__name__}: it must return a dict of scalars")
    for name, v in m.items():
        if not isinstance(name, str) or jnp.ndim(v) != 0:
            raise ModelError(f"the model's metric {name!r} has shape {jnp.shape(v)}: metrics must be scalars")
        if name == "loss":
            raise ModelError("the model's metrics may not be named 'loss' (the loss is recorded already)")
    return m


def _init_variables(spec: TrainSpec, data: TrainData, hp, key):
    variables = spec.model.init(full_hp(spec, hp), key, data.x_train[:1], rng=key)
    # Flax creates parameters and running statistics in float32 by default (param_dtype),
    # whatever the data's precision: they follow the data's, so that a float64 sweep trains in
    # float64 and the optimizer's state keeps one dtype through the loop
    dt = data.x_train.dtype
    variables = jax.tree.map(lambda a: a.astype(dt) if jnp.issubdtype(a.dtype, jnp.floating) else a, dict(variables))
    params = variables.pop("params", {})
    return params, variables


def init_state(spec: TrainSpec, data: TrainData, hp, key) -> TrainState:
    """Initial parameters, model state and optimizer state of one configuration."""
    params, state = _init_variables(spec, data, hp, key)
    opt_state = _optimizer(spec, hp).init(params)
    return TrainState(params, state, opt_state, jnp.zeros((), bool), jnp.full((), -1, jnp.int32))


def _eval_rows(spec: TrainSpec, hp, state: TrainState, x_pool, y_pool, idx, weight):
    """Weighted sums of per-example loss and metrics over rows ``idx`` of the pool (or the
    pool's own rows when ``idx`` is None), in batches of ``spec.eval_batch_size``."""
    n = weight.shape[0]
    bs = min(spec.eval_batch_size, n)
    nb = n // bs
    hpf = full_hp(spec, hp)
    variables = {"params": state.params, **state.batch_stats}
    loss_fn = spec.model.loss_fn(spec.task)
    metrics_fn = spec.model.metrics_fn(spec.task)

    def per_example(out, batch):
        def one(o, b):
            o1 = jax.tree.map(lambda a: a[None], o)
            b1 = jax.tree.map(lambda a: a[None], b)
            return {"loss": loss_fn(o1, b1, hpf), **metrics_fn(o1, b1, hpf)}

        return jax.vmap(one)(out, batch)

    def one_batch(b):
        if idx is None:
            x = jax.lax.dynamic_slice_in_dim(x_pool, b * bs, bs)
            y = jax.lax.dynamic_slice_in_dim(y_pool, b * bs, bs)
        else:
            rows = jax.lax.dynamic_slice_in_dim(idx, b * bs, bs)
            x, y = x_pool[rows], y_pool[rows]
        w = jax.lax.dynamic_slice_in_dim(weight, b * bs, bs)
        out, _ = spec.model.apply(variables, x, hpf, train=False)
        scores = per_example(out, {"x": x, "y": y})
        return {k: jnp.sum(v.astype(w.dtype) * w) for k, v in scores.items()}

    if nb == 1:  # one batch: no loop to compile
        sums = one_batch(0)
    else:
        sums = jax.tree.map(lambda a: jnp.sum(a, 0), jax.lax.map(one_batch, jnp.arange(nb)))
    total = jnp.sum(weight)
    return {k: v / total for k, v in sums.items()}


def evaluate(spec: TrainSpec, data: TrainData, hp, state: TrainState, fold=0) -> dict:
    """Validation scores of a state: ``{"loss": ..., metric: ...}`` (means over examples)."""
    if data.val_idx is None:
        return _eval_rows(spec, hp, state, data.x_val, data.y_val, None, data.val_weight)
    return _eval_rows(spec, hp, state, data.x_val, data.y_val, data.val_idx[fold], data.val_weight[fold])


def evaluate_test(spec: TrainSpec, data: TrainData, hp, state: TrainState) -> dict:
    """Test-set scores of a state (the data set's own test split)."""
    return _eval_rows(spec, hp, state, data.x_test, data.y_test, None, data.test_weight)


def init_carry(spec: TrainSpec, data: TrainData, hp, key, fold=0) -> Carry:
    """Everything :func:`step` threads through the loop, at step 0 (with the evaluation at
    initialization)."""
    keys = jax.random.split(key, 3)
    state = init_state(spec, data, hp, keys[0])
    fold = jnp.asarray(0 if fold is None else fold, jnp.int32)
    initial = evaluate(spec, data, hp, state, fold)
    dt = data.x_val.dtype
    nan = jnp.full((spec.n_points,), jnp.nan, dt)
    directions = {k: _direction(spec, k) for k in initial}
    best = {k: jnp.full((), jnp.inf if d == "minimize" else -jnp.inf, dt) for k, d in directions.items()}
    record = Record(jnp.zeros((), dt), jnp.zeros((), dt), nan, {k: nan for k in initial}, best,
                    {k: v.astype(dt) for k, v in initial.items()})
    perm = jnp.zeros((data.x_train.shape[0] if data.train_idx is None else data.train_idx.shape[1],), jnp.int32)
    stop = None
    if spec.patience is not None:
        zero = jnp.zeros((), dt)
        stop = Stopping(jnp.full((), jnp.inf, dt), jnp.zeros((), jnp.int32), jnp.zeros((), bool),
                        jnp.full((), -1, jnp.int32), zero, zero)
    return Carry(state, perm, record, keys, fold, stop)


def _direction(spec: TrainSpec, name: str) -> str:
    return "minimize" if name == "loss" else spec.model.metric_direction(name)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def batch_loss(spec: TrainSpec, hp, params, batch_stats, x, y, dropout_key):
    """Mean training loss on one minibatch, in training mode: ``(loss, new model state)``.

    ``x``: (batch, *input_shape) inputs, ``y``: (batch,) labels or (batch, outputs) targets;
    dropout draws from ``dropout_key``; batch norm normalizes with the batch's statistics
    and returns updated running statistics. :func:`train_step` differentiates it with
    respect to ``params``.
    """
    hpf = full_hp(spec, hp)
    out, new_state = spec.model.apply({"params": params, **batch_stats}, x, hpf, train=True, rng=dropout_key)
    return _loss(spec, out, {"x": x, "y": y}, hpf), new_state


def optimizer_update(spec: TrainSpec, hp, params, opt_state, grads, t):
    """The configuration's optimizer applied to ``grads`` at step ``t``: ``(params, opt_state)``.

    With the engine's optimizer the learning rate is the schedule's value at ``t``
    (:func:`learning_rate_at`), the other settings those injected in ``opt_state``; a
    model's own optimizer is rebuilt from ``hp`` and applied as it is.
    """
    tx = _optimizer(spec, hp)
    if spec.model.builtin_optimizer:
        opt_state = opt_state._replace(
            hyperparams={**opt_state.hyperparams, "learning_rate": learning_rate_at(spec, hp, t)})
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def train_step(spec: TrainSpec, data: TrainData, hp, state: TrainState, batch_idx, dropout_key, t, *,
               guard: bool = True, active=None):
    """One optimizer step on the examples ``batch_idx`` (rows of ``data.x_train``); returns
    (new state, training loss).

    With ``guard`` (the training loop's setting), a step whose loss or new parameters are
    not finite leaves the parameters and model state unchanged and marks the state
    diverged; a diverged state's parameters are never updated again (its optimizer state
    is not kept: it is never read again). ``guard=False`` is the same step without that
    bookkeeping (no finiteness test of the parameters, no selection over the state):
    identical results while training stays finite, and the flags record the first
    non-finite loss only. Hypergradients (:mod:`hsens_jax.hypergrad`) differentiate this
    lean step, whose guard would otherwise cost a select per parameter array in every pass.
    ``active`` (a bool, with ``guard``): False leaves the state as it is (a stopped run).
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
    moving = ok if active is None else ok & active
    # The optimizer state is not frozen: a diverged configuration's parameters never move
    # again, so its moments are never read, and selecting them too (several arrays the size
    # of the parameters) cost 27% of the run time of the demo's largest program.
    return TrainState(
        jax.tree.map(lambda a, b: jnp.where(moving, a, b), params, state.params),
        jax.tree.map(lambda a, b: jnp.where(moving, a, b), new_stats, state.batch_stats),
        opt_state,
        state.diverged | ~ok,
        jnp.where(ok | state.diverged, state.diverged_step, jnp.asarray(t, jnp.int32)),
    ), jnp.where(ok, loss, jnp.nan)


def batch_indices(spec: TrainSpec, keys, perm, t, redraw=True, data: TrainData | None = None, fold=0):
    """The examples and dropout key of step ``t``: ``(perm, batch_idx, dropout_key)``.

    ``keys`` are the (init, data order, dropout) keys of :func:`init_carry`; ``perm`` is the
    current epoch's order of the training set, redrawn (from the data-order key and the
    epoch) at the first step of each epoch. ``redraw=False`` (a bool, possibly traced) keeps
    ``perm`` at an epoch's first step too: for callers that already hold that epoch's order
    (checkpointed hypergradients draw it once, outside the recomputed segment). ``batch_idx``
    are rows of ``data.x_train``; with folds (``data`` given, ``fold`` the run's fold) they
    are the fold's rows of the pool.
    """
    folds = data is not None and data.train_idx is not None
    if folds:
        n_real = data.train_n[fold]
        spe = spec.steps_per_epoch if spec.uniform_epochs else jnp.maximum(n_real // spec.batch_size, 1)
    else:
        n_real, spe = None, spec.steps_per_epoch
    epoch, pos = t // spe, t % spe
    n = perm.shape[0]
    perm = jax.lax.cond(
        (pos == 0) if redraw is True else (pos == 0) & redraw,
        lambda: counter_permutation(jax.random.fold_in(keys[1], epoch), n, n_real),
        lambda: perm,
    )
    batch_idx = jax.lax.dynamic_slice(perm, (pos * spec.batch_size,), (spec.batch_size,))
    if folds:
        batch_idx = data.train_idx[fold][batch_idx]
    return perm, batch_idx, jax.random.fold_in(keys[2], t)


def _check(stop: Stopping, value, patience: Patience, t, do) -> Stopping:
    """One patience check of ``value`` (lower is better) when ``do``."""
    worse = ~(value < stop.best - patience.tol)  # NaN counts as no improvement
    count = jnp.where(do, jnp.where(worse, stop.count + 1, 0), stop.count)
    best = jnp.where(do, jnp.fmin(stop.best, value), stop.best)
    halt = do & ~stop.stopped & (count > patience.n_iter_no_change)
    return stop._replace(best=best, count=count, stopped=stop.stopped | halt,
                         stopped_step=jnp.where(halt, jnp.asarray(t, jnp.int32), stop.stopped_step))


def step(spec: TrainSpec, data: TrainData, hp, carry: Carry, t) -> Carry:
    """Loop body at step ``t``: new order at epoch starts, a train step, maybe a validation."""
    perm, batch_idx, dropout_key = batch_indices(spec, carry.keys, carry.perm, t, data=data, fold=carry.fold)
    stop = carry.stop
    state, loss = train_step(spec, data, hp, carry.state, batch_idx, dropout_key, t,
                             active=None if stop is None else ~stop.stopped)
    pat = spec.patience
    if stop is not None:
        stop = stop._replace(epoch_sum=stop.epoch_sum + jnp.where(jnp.isfinite(loss), loss, jnp.inf),
                             epoch_n=stop.epoch_n + 1)
        if pat.monitor == "train_loss":
            if data.train_idx is None or spec.uniform_epochs:
                spe = spec.steps_per_epoch
            else:
                spe = jnp.maximum(data.train_n[carry.fold] // spec.batch_size, 1)
            end = (t + 1) % spe == 0
            stop = _check(stop, stop.epoch_sum / jnp.maximum(stop.epoch_n, 1), pat, t, end)
            stop = stop._replace(epoch_sum=jnp.where(end, 0.0, stop.epoch_sum),
                                 epoch_n=jnp.where(end, 0.0, stop.epoch_n))

    rec = carry.record
    finite = jnp.isfinite(loss)
    rec = rec._replace(
        train_loss_sum=rec.train_loss_sum + jnp.where(finite, loss, 0.0),
        train_loss_count=rec.train_loss_count + finite,
    )

    def do_eval(rec):
        scores = evaluate(spec, data, hp, state, carry.fold)
        i = t // spec.eval_every
        mean_train = jnp.where(rec.train_loss_count > 0, rec.train_loss_sum / jnp.maximum(rec.train_loss_count, 1),
                               jnp.nan)
        best = {k: (jnp.fmin if _direction(spec, k) == "minimize" else jnp.fmax)(rec.best[k], scores[k].astype(
            rec.best[k].dtype)) for k in rec.best}
        return Record(
            jnp.zeros_like(rec.train_loss_sum),
            jnp.zeros_like(rec.train_loss_count),
            rec.train_curve.at[i].set(mean_train),
            {k: rec.val_curves[k].at[i].set(scores[k]) for k in rec.val_curves},
            best,
            rec.initial,
        )

    is_eval = ((t + 1) % spec.eval_every == 0) | (t == spec.n_steps - 1)
    rec = jax.lax.cond(is_eval, do_eval, lambda r: r, rec)
    if stop is not None and pat.monitor != "train_loss":
        key = pat.monitor[len("val_"):]
        if key not in rec.val_curves:
            raise ValueError(f"patience monitor {pat.monitor!r}: the run records {sorted(rec.val_curves)}")
        value = rec.val_curves[key][t // spec.eval_every]
        value = value if _direction(spec, key) == "minimize" else -value
        stop = _check(stop, value, pat, t, is_eval)
    return Carry(state, perm, rec, carry.keys, carry.fold, stop)


def _name(key: str, prefix: str) -> str:
    return f"{prefix}_{key}"


def finalize(spec: TrainSpec, carry: Carry, data: TrainData | None = None, hp=None) -> dict[str, jax.Array]:
    """The metrics of a finished run.

    Scalars: ``final_val_loss``, ``best_val_loss``, ``initial_val_loss``,
    ``final_train_loss``, ``final_val_<m>`` and ``best_val_<m>`` for each metric ``m``,
    ``test_loss`` and ``test_<m>`` when the data set has a test split (needs ``data`` and
    ``hp``), ``diverged``, ``diverged_step``, ``diverged_reason``. Curves (n_points,):
    ``train_curve``, ``val_loss_curve``, ``val_<m>_curve``.
    """
    rec = carry.record
    last = spec.n_points - 1
    out = {"final_train_loss": rec.train_curve[last], "train_curve": rec.train_curve}
    for k, curve in rec.val_curves.items():
        out[_name(k, "final_val")] = curve[last]
        out[_name(k, "best_val")] = rec.best[k]
        out[f"val_{k}_curve"] = curve
    out["initial_val_loss"] = rec.initial["loss"]
    if data is not None and data.x_test is not None and data.x_test.shape[0] > 0:
        for k, v in evaluate_test(spec, data, hp, carry.state).items():
            out[_name(k, "test")] = v
    final, first = out["final_val_loss"], rec.initial["loss"]
    non_finite = carry.state.diverged | ~jnp.isfinite(final)
    blowup = jnp.isfinite(first) & (first > 0) & (final > BLOWUP * first)
    if spec.chance_loss is not None:
        level = (1 - CHANCE_TOLERANCE) * spec.chance_loss
        chance = (final >= level) & (out["final_train_loss"] >= level)
    else:
        chance = jnp.zeros((), bool)
    reason = jnp.where(non_finite, 1, jnp.where(blowup, 2, jnp.where(chance, 3, 0))).astype(jnp.int32)
    out["diverged"] = reason > 0
    out["diverged_reason"] = reason
    out["diverged_step"] = jnp.where(non_finite, carry.state.diverged_step,
                                     jnp.where(reason > 0, spec.n_steps - 1, -1)).astype(jnp.int32)
    if carry.stop is not None:
        out["stopped"] = carry.stop.stopped
        out["stopped_step"] = carry.stop.stopped_step
    return out


def advance(spec: TrainSpec, data: TrainData, hp, carry: Carry, t0, n: int) -> Carry:
    """Steps ``t0, ..., t0 + n - 1`` of a run from ``carry`` (``t0`` may be traced, ``n`` static).

    ``init_carry``, then ``advance`` over consecutive segments, then :func:`finalize` equals
    :func:`train` (without a patience's early exit): a run can be trained in rungs, its
    carry kept between them (successive halving continues only the survivors' carries).
    """
    first = jnp.asarray(t0, jnp.int32)
    return jax.lax.scan(lambda c, i: (step(spec, data, hp, c, first + i), None), carry,
                        jnp.arange(n, dtype=jnp.int32))[0]


def train(spec: TrainSpec, data: TrainData, hp, key, fold=0) -> dict[str, jax.Array]:
    """Train one configuration for ``spec.n_steps`` steps with ``lax.scan``.

    Vectorize with ``jax.vmap(train, in_axes=(None, None, 0, 0))`` over hp dicts and keys
    (``spec`` is static: close over it or use ``functools.partial``); with folds, also over
    ``fold``.

    Returns:
      A dict of scalars and curves of length ``spec.n_points`` (see :func:`finalize`).
    """
    carry = init_carry(spec, data, hp, key, fold)
    if spec.patience is None:
        carry, _ = jax.lax.scan(lambda c, t: (step(spec, data, hp, c, t), None), carry,
                                jnp.arange(spec.n_steps, dtype=jnp.int32))
    else:  # ends when the run stops (under vmap: when every run of the program has)
        def body(ct):
            c, t = ct
            return step(spec, data, hp, c, t), t + 1

        carry, t_end = jax.lax.while_loop(lambda ct: (ct[1] < spec.n_steps) & ~ct[0].stop.stopped, body,
                                          (carry, jnp.zeros((), jnp.int32)))
        carry = _final_evaluation(spec, data, hp, carry, t_end)
    return finalize(spec, carry, data, hp)


def train_batch(spec: TrainSpec, data: TrainData, hp, keys, fold=None) -> dict[str, jax.Array]:
    """``jax.vmap(train)`` over a batch of runs (``hp`` and ``keys`` with a leading run axis;
    ``fold`` (R,) or None): the sweep's compiled programs.

    With patience, the loop's exit is decided for the whole batch, outside ``vmap``, so that
    its step counter stays one unbatched scalar. (Under ``vmap`` a ``while_loop`` whose
    predicate differs per run batches its whole carry, the step counter included, and every
    ``lax.cond`` of the step on it, a new epoch's permutation or a validation point, then runs
    both branches at every step: 16 digits MLPs of 300 steps took 0.58-0.64 s so, against
    0.14-0.15 s here and 0.13 s without patience; 2-core CPU, shared.) As under ``vmap``, a run that has stopped
    keeps its parameters and its record (curves, training-loss sums) from then on and finishes
    at its own step count: the results equal ``jax.vmap(train)``'s.
    """
    fold_axis = None if fold is None else 0
    if spec.patience is None:
        return jax.vmap(lambda h, k, f: train(spec, data, h, k, f), in_axes=(0, 0, fold_axis))(hp, keys, fold)
    carry = jax.vmap(lambda h, k, f: init_carry(spec, data, h, k, f), in_axes=(0, 0, fold_axis))(hp, keys, fold)
    batched_step = jax.vmap(lambda h, c, t: step(spec, data, h, c, t), in_axes=(0, 0, None))

    def body(state):
        c, t, ends = state
        done = c.stop.stopped
        new = batched_step(hp, c, t)  # a stopped run's parameters do not move (step's `active`)
        keep = lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
        return new._replace(record=jax.tree.map(keep, c.record, new.record)), t + 1, jnp.where(done, ends, t + 1)

    # Runs stop at the end of an epoch when the training loss is monitored: the exit is then
    # decided once per epoch (an inner loop of one epoch's steps), not after every step (on
    # several devices, each test of the runs' flags is a reduction across them).
    spe = spec.steps_per_epoch
    per_epoch = (spec.patience.monitor == "train_loss" and spe > 1 and spec.n_steps % spe == 0
                 and (data.train_idx is None or spec.uniform_epochs))
    if per_epoch:
        def epoch_body(state):
            c, t, ends = jax.lax.fori_loop(0, spe, lambda i, st: body(st), state)
            return c, t, ends

        loop_body = epoch_body
    else:
        loop_body = body
    carry, _, t_end = jax.lax.while_loop(lambda st: (st[1] < spec.n_steps) & ~jnp.all(st[0].stop.stopped),
                                         loop_body,
                                         (carry, jnp.zeros((), jnp.int32), jnp.zeros(keys.shape[:1], jnp.int32)))
    finish = lambda h, c, t: finalize(spec, _final_evaluation(spec, data, h, c, t), data, h)  # noqa: E731
    return jax.vmap(finish)(hp, carry, t_end)


def _final_evaluation(spec: TrainSpec, data: TrainData, hp, carry: Carry, t_end) -> Carry:
    """A run that stopped early (at step ``t_end``): the curve points it did not reach hold its
    stopped state's validation scores (and the training loss since its last point), so that its
    final metrics are those of the state it stopped in."""

    def fill(rec):
        scores = evaluate(spec, data, hp, carry.state, carry.fold)
        n_done = t_end // spec.eval_every
        reached = jnp.arange(spec.n_points) < n_done
        prev = rec.train_curve[jnp.maximum(n_done - 1, 0)]
        partial = rec.train_loss_sum / jnp.maximum(rec.train_loss_count, 1)
        train_fill = jnp.where(rec.train_loss_count > 0, partial, prev)
        best = {k: (jnp.fmin if _direction(spec, k) == "minimize" else jnp.fmax)(rec.best[k], scores[k].astype(
            rec.best[k].dtype)) for k in rec.best}
        return rec._replace(train_curve=jnp.where(reached, rec.train_curve, train_fill),
                            val_curves={k: jnp.where(reached, c, scores[k]) for k, c in rec.val_curves.items()},
                            best=best)

    return carry._replace(record=jax.lax.cond(t_end < spec.n_steps, fill, lambda r: r, carry.record))
