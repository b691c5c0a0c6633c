"""The model interface: the one door through which a model enters the engine.

A :class:`Model` tells the engine how to build, train and score a Flax (linen) module
from a configuration's hyperparameters::

    import flax.linen as nn
    import hsens_jax as hs

    class Net(nn.Module):
        width: int
        dropout: float            # may be a traced value: see Dropout below
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
            x = hs.engine.Dropout(self.dropout)(x, deterministic=not train)
            return nn.Dense(10)(x)

    model = hs.Model(lambda hp: Net(hp["width"], hp["dropout"]), static=("width",))

What the engine asks of a model
-------------------------------
``module(hp) -> flax.linen.Module``
    A factory called with the configuration's hyperparameters ``hp`` (a dict). *Static*
    hyperparameters (those that change array shapes or Python control flow: widths, depth,
    kernel sizes, number of heads...) arrive as Python values; every other hyperparameter
    arrives as a JAX scalar that may be traced (under ``vmap`` each configuration carries
    its own). The module's ``__call__(x, ...)`` takes a batch of inputs ``x`` of shape
    ``(batch, *input_shape)`` and returns outputs with the batch as leading axis (an array
    or a pytree of arrays). A ``train``, ``training``, ``is_training`` or ``deterministic``
    keyword of ``__call__`` is set by the engine (training mode during optimizer steps,
    evaluation mode for validation and test). Collections other than ``"params"`` returned by
    ``init`` (``"batch_stats"``...) are the module's state: mutable during training steps,
    kept between steps, read-only in evaluation. Dropout and other noise draw from the
    ``"dropout"`` RNG stream (one key per step, see :mod:`hsens_jax.engine.train`).
``loss(outputs, batch, hp) -> scalar``
    The training loss of a minibatch ``batch = {"x": x, "y": y}``: a mean over its examples
    plus anything that does not depend on the batch. Defaults: softmax cross-entropy with
    ``hp["label_smoothing"]`` (classification), mean squared error (regression). Validation
    and test losses are the loss of each example alone, averaged over the set (for a mean
    over examples, exactly the loss of the whole set).
``metrics(outputs, batch, hp) -> dict[str, scalar]``
    Extra scores, averaged over examples like the loss. Default: ``{"accuracy"}`` for
    classification, none for regression. Every metric has a *direction*: built-in metrics
    know theirs; a user's metrics declare it (``directions={"f1": "maximize"}``). Nothing is
    inferred from a metric's name.
``optimizer(hp) -> optax.GradientTransformation`` (optional)
    Built from traced hyperparameters at every step. Default: the engine's own optimizer
    (:mod:`hsens_jax.engine.optimizers`: ``optimizer`` in sgd, momentum, nesterov, adam,
    adamw, rmsprop, with ``learning_rate``, ``momentum``, ``b1``, ``b2``, ``eps``,
    ``weight_decay``, ``rms_decay``, ``schedule``, ``warmup``, ``final_lr_fraction``).

Static and traced hyperparameters
---------------------------------
The engine compiles one program per distinct combination of static values (a *group*,
together with batch size and training length) and vmaps over everything else. A
hyperparameter is static when

1. it is named in ``static=``; or
2. it is a :class:`~hsens_jax.space.Categorical` of the space (or a fixed value that is not a
   number), unless named in ``traced=`` (then the model receives the choice's index as an
   int32 scalar); or
3. ``auto_static=True`` (the default), it is an ``Int`` or ``Bool`` of the space, and the
   model cannot be traced with it traced: the engine traces the model once per sweep
   (``jax.eval_shape``, nothing runs) and, on a tracer error, finds the hyperparameters that
   must be concrete.

A ``Float`` is never made static automatically (every value would compile its own program):
a model that needs one concrete gets an error naming it. Traced values: ``Float`` as a
float scalar of the data's precision, ``Int`` as int32, ``Bool`` as bool.

Flax's ``nn.Dropout`` needs a concrete rate (it tests ``rate == 0`` in Python); the engine's
:class:`Dropout` takes a traced one.

Built-in models (:mod:`hsens_jax.engine.builtin`) implement the same interface through the
hooks below (``plan``, ``encode``, ``init``, ``apply``, ``parameter_count``,
``flops_per_example``), which a user model need not touch.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

DIRECTIONS = ("minimize", "maximize")

BUILTIN_METRIC_DIRECTIONS = {"accuracy": "maximize"}
"""Directions of the metrics the engine provides itself."""

TRAIN_KEYWORDS = ("train", "training", "is_training", "deterministic")
"""Keywords of a module's ``__call__`` the engine sets (``deterministic`` as ``not train``)."""


class ModelError(ValueError):
    """A model (its module, loss, metrics or optimizer) does not fit the engine; the message names what."""


def resolve(path: str, what: str = "object") -> Any:
    """The object named by an import path ``"package.module:attribute"`` (or ``"package.module.attribute"``).

    Raises:
      ModelError: the path is malformed, the module cannot be imported, or has no such attribute.
    """
    if not isinstance(path, str) or not path:
        raise ModelError(f"{what}: expected an import path such as 'mypkg.models:make_model', got {path!r}")
    if ":" in path:
        mod_name, _, attr = path.partition(":")
    else:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr:
        raise ModelError(f"{what} {path!r}: expected 'package.module:attribute'")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelError(f"{what} {path!r}: cannot import module {mod_name!r} ({e})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{what} {path!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- built-in losses


def cross_entropy(outputs, batch, hp):
    """Mean softmax cross-entropy of logits ``(batch, C)`` against int labels, smoothed by
    ``hp["label_smoothing"]`` (0 if absent): target ``(1 - ls) one_hot + ls / C``."""
    n = outputs.shape[-1]
    ls = hp.get("label_smoothing", 0.0)
    target = jax.nn.one_hot(batch["y"], n, dtype=outputs.dtype) * (1 - ls) + ls / n
    return jnp.mean(optax.softmax_cross_entropy(outputs, target))


def mean_squared_error(outputs, batch, hp):
    """Mean over examples of the squared error averaged over the output columns."""
    y = batch["y"].reshape(outputs.shape)
    return jnp.mean((outputs - y) ** 2)


def accuracy(outputs, batch, hp):
    """Fraction of examples whose largest logit is the label."""
    return {"accuracy": jnp.mean((jnp.argmax(outputs, -1) == batch["y"]).astype(outputs.dtype))}


def no_metrics(outputs, batch, hp):
    return {}


LOSSES = {"cross_entropy": cross_entropy, "mse": mean_squared_error}
"""Built-in losses by name."""


class Dropout(nn.Module):
    """Inverted dropout whose ``rate`` may be a traced value (a hyperparameter under ``vmap``).

    ``u >= rate`` keeps a unit (``u`` uniform from the ``"dropout"`` stream), scaled by
    ``1 / (1 - rate)``; ``rate = 0`` keeps everything, exactly. ``deterministic=True`` is the
    identity.
    """

    rate: Any

    @nn.compact
    def __call__(self, x, deterministic: bool = False):
        if deterministic:
            return x
        rate = jnp.asarray(self.rate, x.dtype)
        u = jax.random.uniform(self.make_rng("dropout"), x.shape, x.dtype)
        return jnp.where(u >= rate, x / (1.0 - rate), jnp.zeros_like(x))


# ----------------------------------------------------------------------------- the interface


def _train_keyword(module: nn.Module) -> str | None:
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return None
    for name in TRAIN_KEYWORDS:
        if name in params:
            return name
    return None


def _mode_kwargs(module: nn.Module, train: bool) -> dict:
    kw = _train_keyword(module)
    if kw is None:
        return {}
    return {kw: (not train) if kw == "deterministic" else train}


@dataclass(frozen=True, eq=False)
class Model:
    """A Flax model the engine can sweep, train and differentiate through.

    Args:
      module: ``module(hp) -> flax.linen.Module``, a module instance (no hyperparameters in
        it), or an import path ``"package.module:make_model"`` to such a factory.
      loss: ``loss(outputs, batch, hp) -> scalar``, ``"cross_entropy"``, ``"mse"``, an import
        path, or None for the task's default.
      metrics: ``metrics(outputs, batch, hp) -> dict[str, scalar]``, an import path, or None for
        the task's default (accuracy for classification, none for regression).
      directions: ``{metric: "minimize" | "maximize"}`` for every metric ``metrics`` returns
        (required for a user's metrics; the loss is minimized).
      optimizer: ``optimizer(hp) -> optax.GradientTransformation``, an import path, or None
        for the engine's optimizer choice.
      static: hyperparameters that must be static (shape-changing).
      traced: categorical hyperparameters the model reads as traced indices (int32) rather
        than as static values.
      defaults: default values of hyperparameters the model reads, used where a sweep sets
        neither a value nor a fixed value, and where a conditional hyperparameter is inactive.
      chance_loss: the validation loss of a model that learnt nothing (for the divergence
        criterion "stuck at chance level"); None: known for the built-in losses (log C for
        cross-entropy, the targets' variance for MSE), off for a user's loss.
      auto_static: detect Int/Bool hyperparameters that must be static (see the module docs).
      rngs: names of the RNG streams the module draws from (each gets its own key per step).
      name: a label recorded with results.
    """

    module: Any
    loss: Any = None
    metrics: Any = None
    directions: Mapping[str, str] = field(default_factory=dict, compare=False)
    optimizer: Any = None
    static: Sequence[str] = ()
    traced: Sequence[str] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)
    chance_loss: Any = None
    auto_static: bool = True
    rngs: Sequence[str] = ("dropout",)
    name: str | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        module = resolve(self.module, "model module") if isinstance(self.module, str) else self.module
        if isinstance(module, nn.Module):
            instance = module
            module = lambda hp: instance  # noqa: E731
        elif not callable(module):
            raise ModelError(f"model module must be a callable hp -> flax.linen.Module, a Module or an import "
                             f"path; got {type(module).__name__}")
        set_("module", module)
        loss = self.loss
        if isinstance(loss, str):
            loss = LOSSES[loss] if loss in LOSSES else resolve(loss, "model loss")
        if loss is not None and not callable(loss):
            raise ModelError(f"model loss must be callable (outputs, batch, hp) -> scalar, got {loss!r}")
        set_("loss", loss)
        metrics = resolve(self.metrics, "model metrics") if isinstance(self.metrics, str) else self.metrics
        if metrics is not None and not callable(metrics):
            raise ModelError(f"model metrics must be callable (outputs, batch, hp) -> dict, got {metrics!r}")
        set_("metrics", metrics)
        opt = resolve(self.optimizer, "model optimizer") if isinstance(self.optimizer, str) else self.optimizer
        if opt is not None and not callable(opt):
            raise ModelError(f"model optimizer must be callable hp -> optax.GradientTransformation, got {opt!r}")
        set_("optimizer", opt)
        for attr in ("static", "traced", "rngs"):
            value = getattr(self, attr)
            if isinstance(value, str):
                value = (value,)
            value = tuple(value)
            if not all(isinstance(v, str) and v for v in value):
                raise ModelError(f"model {attr} must be a list of hyperparameter names, got {value!r}")
            set_(attr, value)
        both = set(self.static) & set(self.traced)
        if both:
            raise ModelError(f"hyperparameter(s) {sorted(both)} are both static and traced")
        directions = dict(self.directions or {})
        for k, v in directions.items():
            if v not in DIRECTIONS:
                raise ModelError(f"direction of metric {k!r} must be 'minimize' or 'maximize', got {v!r}")
        set_("directions", directions)
        set_("defaults", dict(self.defaults or {}))
        if self.name is None:
            set_("name", getattr(module, "__qualname__", type(module).__name__))

    # ---- what the engine reads

    @property
    def builtin_optimizer(self) -> bool:
        """Whether the engine's optimizer choice trains this model."""
        return self.optimizer is None

    def known_hyperparameters(self) -> dict[str, Any] | None:
        """The hyperparameters the model reads, with defaults; None when free-form (a user's model)."""
        return None

    def loss_fn(self, task: str) -> Callable:
        if self.loss is not None:
            return self.loss
        return cross_entropy if task == "classification" else mean_squared_error

    def uses_builtin_loss(self, task: str) -> bool:
        return self.loss is None or self.loss in LOSSES.values()

    def metrics_fn(self, task: str) -> Callable:
        if self.metrics is not None:
            return self.metrics
        return accuracy if task == "classification" else no_metrics

    def metric_direction(self, name: str) -> str:
        if name in self.directions:
            return self.directions[name]
        if self.metrics is None and name in BUILTIN_METRIC_DIRECTIONS:
            return BUILTIN_METRIC_DIRECTIONS[name]
        raise ModelError(f"metric {name!r} returned by the model's metrics has no direction: declare it, e.g. "
                         f"Model(..., directions={{{name!r}: 'maximize'}})")

    def chance_level(self, task: str, dataset) -> float | None:
        """Validation loss of an untrained model, or None when unknown (see ``chance_loss``)."""
        if self.chance_loss is not None:
            return float(self.chance_loss(dataset) if callable(self.chance_loss) else self.chance_loss)
        loss = self.loss_fn(task)
        if loss is cross_entropy:
            return math.log(dataset.output_dim)
        if loss is mean_squared_error:
            y = np.concatenate([np.asarray(dataset.y_train, float), np.asarray(dataset.y_val, float)])
            return float(np.mean(np.var(y.reshape(len(y), -1), axis=0)))
        return None

    # ---- hooks (built-in models override them)

    def validate(self, values: Mapping[str, np.ndarray], explicit, space) -> None:
        """Check the sweep's values of the model's hyperparameters before anything is built
        (``explicit``: the names the space or ``fixed`` set). A user's model: nothing to check."""

    def group_key(self, name: str, values: Mapping[str, np.ndarray], explicit) -> np.ndarray | None:
        """The program-splitting value of each configuration for a ``group_by`` name the sweep
        does not set itself but the model derives (``(K,)`` array), or None: ``name`` is not
        one. A user's model derives none."""
        return None

    def plan(self, values: Mapping[str, np.ndarray], space, grouped, dataset) -> "Model":
        """The model as one program compiles it, from the group's configurations ``values``
        (``dict[str, (K,) object array]``), the space, the names that split programs
        (``grouped``) and the data set. A user's model is the same for every program."""
        return self

    def encode(self, values: Mapping[str, np.ndarray], static: Mapping[str, Any], dtype) -> dict[str, np.ndarray]:
        """Per-run arrays of the model's own traced hyperparameters (a user's model: none
        beyond the generic encoding of :mod:`hsens_jax.engine.hyperparameters`)."""
        return {}

    def program_defaults(self) -> dict[str, Any]:
        """Defaults that depend on how this program was built (a sized built-in: its size)."""
        return {}

    def build(self, hp) -> nn.Module:
        module = self.module(hp)
        if not isinstance(module, nn.Module):
            raise ModelError(f"model module factory {self.name!r} returned {type(module).__name__}, "
                             "not a flax.linen.Module")
        return module

    def _rngs(self, key):
        if key is None:
            return {}
        if len(self.rngs) == 1:
            return {self.rngs[0]: key}
        return {name: jax.random.fold_in(key, i) for i, name in enumerate(self.rngs)}

    def init(self, hp, key, x, rng=None) -> dict:
        """Variables (``{"params": ..., other collections...}``) for inputs like ``x``."""
        module = self.build(hp)
        return module.init({"params": key, **self._rngs(rng if rng is not None else key)}, x,
                           **_mode_kwargs(module, False))

    def apply(self, variables, x, hp, *, train: bool, rng=None):
        """``(outputs, new_state)``; ``new_state`` holds the non-parameter collections (updated
        in training mode)."""
        module = self.build(hp)
        state = {k: v for k, v in variables.items() if k != "params"}
        kw = _mode_kwargs(module, train)
        rngs = self._rngs(rng) if train else {}
        if train and state:
            out, updates = module.apply(variables, x, rngs=rngs, mutable=list(state), **kw)
            return out, {**state, **updates}
        return module.apply(variables, x, rngs=rngs, **kw), state

    def parameter_count(self, values: Mapping[str, np.ndarray], static: Mapping[str, Any],
                        param_shapes) -> np.ndarray:
        """Trainable parameters per configuration (K,): those of the group's built network."""
        k = len(next(iter(values.values()))) if values else 1
        n = sum(math.prod(a.shape) for a in jax.tree.leaves(param_shapes))
        return np.full(k, n, np.int64)

    def flops_per_example(self, values, static, forward_flops: float) -> np.ndarray:
        """Floating-point operations of one example's forward pass per configuration (K,),
        from XLA's cost analysis of the group's evaluation program."""
        k = len(next(iter(values.values()))) if values else 1
        return np.full(k, float(forward_flops))
