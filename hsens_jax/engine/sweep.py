"""Vectorized, chunked, sharded and resumable hyperparameter sweeps of any model.

:func:`run_sweep` trains K configurations x S seeds (x F cross-validation folds) of a
:class:`~hsens_jax.engine.Model` (a user's Flax module, or the built-in MLP and CNN):

1. **Hyperparameters.** Every name of the space and of ``fixed`` is given to its reader
   (training loop, the engine's optimizer, the built-in loss, the model) and classified
   static or traced (:mod:`hsens_jax.engine.hyperparameters`, :mod:`hsens_jax.engine.model`).
   For a user's model the engine traces the model once (``jax.eval_shape``: nothing runs) to
   find the Int/Bool hyperparameters that must be static, to check the module's outputs, the
   loss and the metrics, and to refuse a hyperparameter nothing reads.
2. **Groups.** Configurations are grouped by what changes array shapes or loop lengths: batch
   size, training length (``epochs``/``steps``), the static hyperparameters, and any names in
   ``group_by``. Each group is one compiled program (``jit(vmap(train))``); inside it every
   traced hyperparameter varies per run. Programs are sized from the space, not from the
   configurations of the call (the built-ins' largest network is the space's largest; the
   engine optimizer's choices are the space's choices; chunks have a fixed set of shapes), so
   the next batch of a search, a grown design or a resumed run reuses them, in this process
   and, through the persistent compilation cache (:mod:`hsens_jax.compile_cache`), in the next.
3. **Chunks.** A group's runs still to compute are cut into chunks of ``chunk_size`` runs
   (fewer runs: the next power of two, so a handful of shapes serve every call), each one call
   of the group's program; padding runs repeat the last run and are discarded.
4. **Sharding.** A chunk's run axis is split over all local devices with ``jax.sharding`` (a
   1-D mesh named ``"runs"``); the data are replicated. On a CPU,
   :func:`hsens_jax.use_cpu_cores` (called first thing in a script; the ``hsens`` CLI calls it
   by default) makes one device per core, so that every core trains a share. In a process
   group (:mod:`hsens_jax.engine.distributed`: several hosts, or one process per GPU) the
   mesh spans the devices of every process: each process plans the same sweep, checks that
   the others planned the same one, and trains its devices' shards of every chunk; the
   chunk's results are gathered in every process and process 0 alone writes the run
   directory (the others never touch its files).
5. **Compilation ahead.** While a group trains, the next group's program compiles on a
   background thread (XLA compiles without holding the GIL).
6. **Persistence.** Each finished chunk is written to the run directory at once
   (:class:`hsens_jax.results.RunDirectory`), its runs identified by content (hyperparameter
   values, seed, fold, and the sweep's settings), so a re-run skips them, and a grown design
   (more configurations, more seeds) reuses them.

Batch size semantics: one step consumes ``batch_size`` examples; an epoch is
``n_train // batch_size`` steps (the remainder dropped, as a fresh order is drawn each epoch).
With ``epochs`` as the budget, larger batches therefore take fewer steps for the same number
of examples seen; with ``steps``, every batch size takes the same number of updates. With
cross-validation, an ``epochs`` budget counts epochs of the smallest fold.

Seeds: run (k, s) uses ``jax.random.key(seeds[s])`` for initialization, data order and
dropout, whatever the configuration (common random numbers); each fold of a run uses the same
key.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import platform
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import hsens_jax
from hsens_jax import executables
from hsens_jax.engine import distributed
from hsens_jax.engine import hyperparameters as hpm
from hsens_jax.engine.builtin import BUILTIN_MODELS, MaskedNet
from hsens_jax.engine.model import Model, ModelError, resolve as resolve_path
from hsens_jax.engine.train import TrainSpec, full_hp, prepare_data, train, train_batch
from hsens_jax.progress import Progress
from hsens_jax.results import RunDirectory, SweepResult, fingerprint
from hsens_jax.space import Space

_TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                  jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError)
_ARG = re.compile(r"argument hp\[['\"]([^'\"]+)['\"]\]")


def as_model(model) -> Model:
    """A :class:`Model` from ``"mlp"``/``"cnn"``, a Model, or an import path to a Model or a
    module factory (``"mypkg.models:make_model"``)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        if model.lower() in BUILTIN_MODELS:
            return BUILTIN_MODELS[model.lower()]()
        if ":" not in model and "." not in model:
            raise ValueError(f"model {model!r}: choose 'mlp', 'cnn', a hsens_jax.Model, or an import path "
                             f"'package.module:make_model'")
        obj = resolve_path(model, "model")
        return obj if isinstance(obj, Model) else Model(obj)
    if callable(model):
        return Model(model)
    raise TypeError(f"model must be 'mlp', 'cnn', a hsens_jax.Model or an import path, got {type(model).__name__}")


@dataclass
class Group:
    """One compiled program's share of a sweep."""

    key: tuple
    spec: TrainSpec
    configs: np.ndarray  # configuration indices
    static: dict = field(default_factory=dict)


@dataclass
class Plan:
    """Everything :func:`run_sweep` decided before training (see :func:`plan_sweep`)."""

    model: Model
    resolved: hpm.Resolved
    groups: list[Group]
    folds: list | None
    n_train: int
    dtype: Any
    group_of: np.ndarray
    param_count: np.ndarray
    flops: np.ndarray
    directions: dict[str, str]
    model_code: str


# ----------------------------------------------------------------------------- tracing checks


def _struct(a):
    return jax.ShapeDtypeStruct(np.shape(a), jnp.asarray(a).dtype)


def _probe(spec: TrainSpec, data, hp_example: dict, reads: set | None = None):
    """Trace (never run) one configuration's initialization, training step and evaluation.

    Returns ``(param_shapes, outputs_struct, scores)``; raises whatever the model's code raises.
    """
    import sys

    tr = sys.modules["hsens_jax.engine.train"]
    log = reads if reads is not None else set()

    def fn(hp):
        key = jax.random.key(0)
        state = tr.init_state(spec, data, hp, key)
        idx = jnp.arange(spec.batch_size)
        x = data.x_train[idx]
        out, _ = spec.model.apply({"params": state.params, **state.batch_stats}, x, tr.full_hp(spec, hp), train=True,
                                  rng=key)
        batch = {"x": x, "y": data.y_train[idx]}
        loss = tr._loss(spec, out, batch, tr.full_hp(spec, hp))
        metrics = tr._metrics(spec, out, batch, tr.full_hp(spec, hp))
        new_state, _ = tr.train_step(spec, data, hp, state, idx, key, 0)
        scores = tr.evaluate(spec, data, hp, new_state)
        return state.params, out, loss, metrics, scores

    with tr.recording_reads(log):
        params, out, loss, metrics, scores = jax.eval_shape(fn, jax.tree.map(_struct, hp_example))
    leaves = jax.tree.leaves(out)
    for leaf in leaves:
        if not leaf.shape or leaf.shape[0] != spec.batch_size:
            raise ModelError(
                f"the model's outputs must have the batch as leading axis: a batch of {spec.batch_size} examples "
                f"gave an output of shape {tuple(leaf.shape)}")
    return params, out, metrics


def _check_outputs(spec: TrainSpec, out, n_out: int) -> None:
    """The built-in losses need logits/values of shape (batch, n_out)."""
    if not spec.model.uses_builtin_loss(spec.task):
        return
    leaves = jax.tree.leaves(out)
    if len(leaves) != 1 or tuple(leaves[0].shape) != (spec.batch_size, n_out):
        shapes = [tuple(leaf.shape) for leaf in leaves]
        what = "logits" if spec.task == "classification" else "predictions"
        raise ModelError(
            f"the model returned outputs of shape {shapes[0] if len(shapes) == 1 else shapes}; the built-in "
            f"{spec.task} loss needs {what} of shape (batch, {n_out}) = {(spec.batch_size, n_out)}: fix the "
            f"module's output layer, or give the model a loss of its own")


def _culprit(error: Exception, candidates) -> str | None:
    m = _ARG.search(str(error))
    if m and m.group(1) in candidates:
        return m.group(1)
    return None


def _is_tracer_error(e: Exception) -> bool:
    return isinstance(e, _TRACER_ERRORS) or (
        isinstance(e, TypeError) and ("Tracer" in str(e) or "concrete value" in str(e) or "unhashable" in str(e)))


def _find_static(model: Model, make_spec, data, hp_example, resolved, space) -> tuple[list[str], Any]:
    """Promote to static the Int/Bool hyperparameters the model needs concrete (see
    :mod:`hsens_jax.engine.model`); returns ``(new static names, probe result)``."""
    added: list[str] = []
    hp = dict(hp_example)
    for _ in range(len(hp) + 1):
        spec = make_spec(added)
        try:
            return added, _probe(spec, data, {k: v for k, v in hp.items() if k not in added})
        except Exception as e:  # noqa: BLE001 - translated below
            if not _is_tracer_error(e):
                raise
            traced_now = [n for n in resolved.traced if n not in added]
            name = _culprit(e, traced_now)
            if name is None:
                name = _search_culprit(make_spec, data, hp, added, traced_now, resolved)
            if name is None:
                raise ModelError(
                    f"the model cannot be traced with its traced hyperparameters ({', '.join(traced_now)}): a value "
                    f"is needed in Python where it is traced. Mark the hyperparameter it comes from static "
                    f"(Model(static=(...))). JAX said: {_first_line(e)}") from e
            kind = resolved.traced.get(name)
            typ = type(space[name]).__name__ if space is not None and name in space.names else kind
            if not model.auto_static or kind not in ("int", "bool") or name in model.traced:
                advice = ("mark it static: Model(static=('%s',)), which compiles one program per value" % name
                          if kind in ("int", "bool", "index") else
                          "a Float cannot be static (every value would compile a program of its own): "
                          "pass it where a traced value works (for dropout, hsens_jax.engine.Dropout)")
                raise ModelError(
                    f"hyperparameter {name!r} ({typ}) is used where JAX needs a concrete Python value (array "
                    f"shapes, Python control flow or conversions), but it is traced (vmapped) in the sweep: "
                    f"{advice}. JAX said: {_first_line(e)}") from e
            added.append(name)
    raise ModelError("could not find which hyperparameters the model needs static")  # pragma: no cover


def _search_culprit(make_spec, data, hp, added, candidates, resolved):
    for name in candidates:
        if resolved.traced.get(name) not in ("int", "bool"):
            continue
        try:
            _probe(make_spec(added + [name]), data, {k: v for k, v in hp.items() if k not in added + [name]})
            return name
        except Exception:  # noqa: BLE001
            continue
    return None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _source_hash(*objs) -> str:
    h = hashlib.sha256()
    for obj in objs:
        if obj is None:
            continue
        target = getattr(obj, "__wrapped__", obj)
        try:
            src = inspect.getsource(target)
        except (TypeError, OSError):
            src = getattr(target, "__qualname__", repr(type(target)))
        h.update(src.encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- planning


def _check_args(seeds, chunk_size, n_evals, eval_batch_size, cv):
    def positive_int(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")

    positive_int("chunk_size", chunk_size)
    positive_int("n_evals", n_evals)
    positive_int("eval_batch_size", eval_batch_size)
    try:
        seeds = np.asarray(list(seeds))
    except TypeError:
        raise ValueError(f"seeds must be a list of integers, got {seeds!r}") from None
    if seeds.ndim != 1 or len(seeds) == 0 or seeds.dtype.kind not in "iu":
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds.tolist()!r}")
    if len(set(seeds.tolist())) != len(seeds):
        raise ValueError(f"seeds contain duplicates: {seeds.tolist()}")
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2):
        raise ValueError(f"cv must be None or an integer >= 2 (the number of folds), got {cv!r}")
    return seeds.astype(np.int64)


def dataset_folds(dataset, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, validation) index pairs over the pool ``concatenate([x_train, x_val])``:
    the data set's own :meth:`folds` (stratified for classification), scikit-learn's folds."""
    if hasattr(dataset, "folds"):
        return [(np.asarray(a), np.asarray(b)) for a, b in dataset.folds(k)]
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.concatenate([dataset.y_train, dataset.y_val])
    splitter = StratifiedKFold(k) if dataset.task == "classification" else KFold(k)
    try:
        return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y if dataset.task == "classification" else None)]
    except ValueError as e:
        raise ValueError(f"cv={k}: {e}") from None


def _budget(values, n_train):
    k = len(next(iter(values.values())))
    batch = values.get("batch_size", np.full(k, hpm.LOOP["batch_size"], dtype=object))
    try:
        batch = np.asarray(batch, float)
    except (TypeError, ValueError):
        raise ValueError(f"batch_size must be an integer, got {batch[0]!r}") from None
    bad = (batch < 1) | (batch != np.round(batch)) | (batch > n_train)
    if np.any(bad):
        raise ValueError(f"batch_size={batch[bad][0]:g} must be an integer between 1 and the training-set size "
                         f"{n_train}")
    epochs, steps = values.get("epochs"), values.get("steps")
    epochs = None if epochs is None or epochs[0] is None else np.asarray(epochs, float)
    steps = None if steps is None or steps[0] is None else np.asarray(steps, float)
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one training budget: `epochs` or `steps` (fixed or in the space)")
    spe = np.floor(n_train / batch)
    n_steps = np.ceil(epochs * spe) if epochs is not None else steps
    if np.any(~np.isfinite(n_steps)) or np.any(n_steps < 1) or np.any(n_steps != np.round(n_steps)):
        raise ValueError("the training budget must give at least one whole step per configuration")
    return batch.astype(int), n_steps.astype(int)


def plan_sweep(dataset, space: Space | None, configs: Mapping[str, np.ndarray] | None, *, model="mlp", fixed=None,
               cv=None, n_evals: int = 20, group_by: Sequence[str] = (), eval_batch_size: int = 512, dtype=None,
               traced: Sequence[str] = (), patience=None) -> Plan:
    """Resolve the hyperparameters, find the static ones, and size one program per group.

    Nothing is trained or compiled (a user's model is traced once per group with
    ``jax.eval_shape``). See :func:`run_sweep` for the arguments.
    """
    model = as_model(model)
    task = dataset.task
    dtype = dtype or jnp.zeros(()).dtype
    resolved = hpm.resolve(model, task, space, configs, fixed, tuple(traced))
    model.validate(resolved.values, resolved.explicit, space)
    if space is not None:
        hpm.check_relevance(resolved, model, space, configs)
    derived = {}  # group_by names the model derives from others (the built-in MLP's "depth")
    for name in group_by:
        if name not in resolved.values or name not in resolved.explicit:
            key = model.group_key(name, resolved.values, resolved.explicit)
            if key is None:
                raise ValueError(f"group_by names {name!r}, which is neither in the space nor fixed")
            derived[name] = key
    k = len(next(iter(resolved.values.values()))) if resolved.values else 1
    folds = dataset_folds(dataset, int(cv)) if cv is not None else None
    n_train = min(len(tr) for tr, _ in folds) if folds else dataset.n_train
    batch, n_steps = _budget(resolved.values, n_train)
    data = prepare_data(dataset, eval_batch_size, dtype, folds)
    chance = model.chance_level(task, dataset)
    is_builtin = isinstance(model, MaskedNet)

    def make_spec(rows, extra_static=(), sized=None):
        static = {n: hpm._hashable(resolved.values[n][rows[0]]) for n in resolved.static + list(extra_static)
                  if n not in hpm.LOOP}
        return TrainSpec(
            model=sized if sized is not None else model, task=task, batch_size=int(batch[rows[0]]),
            n_steps=int(n_steps[rows[0]]), n_train=n_train,
            optimizers=resolved.choices.get("optimizer", ("adam",)),
            schedules=resolved.choices.get("schedule", ("constant",)),
            n_evals=n_evals, eval_batch_size=eval_batch_size, static=tuple(static.items()), chance_loss=chance,
            patience=patience, fold_n_train=tuple(len(tr) for tr, _ in folds) if folds else None)

    grouped = set(group_by) | set(resolved.static)
    # static hyperparameters a user's model needs, found by tracing the first configuration
    reads: set = set()
    if not is_builtin:
        row = np.array([0])
        hp0 = hpm.encode(resolved, row, model, resolved.choices, dtype)
        hp0 = {n: a[0] for n, a in hp0.items()}
        added, _ = _find_static(model, lambda extra: make_spec(row, extra), data, hp0, resolved, space)
        for name in added:
            resolved.static.append(name)
            del resolved.traced[name]
            grouped.add(name)

    keys = [tuple([int(batch[i]), int(n_steps[i])]
                  + [repr(hpm._hashable(derived[n][i] if n in derived else resolved.values[n][i]))
                     for n in sorted(grouped - set(hpm.LOOP))])
            for i in range(k)]
    groups: list[Group] = []
    group_of = np.zeros(k, int)
    param_count = np.zeros(k, np.int64)
    flops = np.zeros(k, float)
    metric_names: set = set()
    for gi, key in enumerate(dict.fromkeys(keys)):
        members = np.array([i for i in range(k) if keys[i] == key])
        group_of[members] = gi
        sub = {n: v[members] for n, v in resolved.values.items()}
        sized = model.plan(sub, space, grouped, dataset)
        spec = make_spec(members, sized=sized)
        static = dict(spec.static)
        if is_builtin:
            param_count[members] = sized.parameter_count(_model_values(resolved, members), static)
            flops[members] = sized.flops_per_example(_model_values(resolved, members), static)
            metric_names |= {"accuracy"} if task == "classification" else set()
        else:
            hp = hpm.encode(resolved, members[:1], sized, resolved.choices, dtype)
            hp = {n: a[0] for n, a in hp.items()}
            reads_g: set = set()
            try:
                params, out, metrics = _probe(spec, data, hp, reads_g)
            except ModelError:
                raise
            except Exception as e:
                if _is_tracer_error(e):
                    raise ModelError(f"group {static}: the model cannot be traced: {_first_line(e)}") from e
                raise
            reads |= reads_g
            _check_outputs(spec, out, dataset.output_dim)
            for name in metrics:
                model.metric_direction(name)
            metric_names |= set(metrics)
            param_count[members] = model.parameter_count(sub, static, params)
            flops[members] = model.flops_per_example(sub, static, _forward_flops(spec, data, hp))
        groups.append(Group(key, spec, members, static))
    if not is_builtin:
        _check_reads(resolved, reads, space, fixed)
    directions = _directions(model, task, metric_names, getattr(dataset, "x_test", None) is not None)
    code = _source_hash(model.module, model.loss, model.metrics, model.optimizer) if not is_builtin else "builtin"
    return Plan(model, resolved, groups, folds, n_train, dtype, group_of, param_count, flops, directions, code)


def _model_values(resolved, rows):
    return {n: resolved.values[n][rows] for n, kind in resolved.traced.items() if kind == "model"}


def _forward_flops(spec: TrainSpec, data, hp) -> float:
    """XLA's count of floating-point operations of one example's forward pass (nothing compiled)."""
    from hsens_jax.engine.train import init_state

    try:
        state = jax.eval_shape(lambda h: init_state(spec, data, h, jax.random.key(0)), jax.tree.map(_struct, hp))
        x = jax.ShapeDtypeStruct((1, *data.x_train.shape[1:]), data.x_train.dtype)
        fn = jax.jit(lambda p, s, x, h: spec.model.apply({"params": p, **s}, x, full_hp(spec, h), train=False)[0])
        cost = fn.lower(state.params, state.batch_stats, x, jax.tree.map(_struct, hp)).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", np.nan)) if cost else float("nan")
    except Exception:  # noqa: BLE001 - cost analysis is best effort; NaN says it is unknown
        return float("nan")


def _check_reads(resolved, reads, space, fixed):
    engine = {"loop", "optimizer", "loss"}
    unread = [n for n in resolved.explicit if resolved.reader.get(n) not in engine and n not in reads]
    if unread:
        where = "space" if space is not None and set(unread) & set(space.names) else "fixed values"
        raise ModelError(
            f"hyperparameter(s) {sorted(unread)} of the {where} are never read by the model's module factory, "
            f"loss, metrics or optimizer: remove them, or read them as hp[name]")


def _directions(model: Model, task: str, metric_names, has_test: bool) -> dict[str, str]:
    out = {n: "minimize" for n in ("final_val_loss", "best_val_loss", "initial_val_loss", "final_train_loss",
                                   "param_count", "flops_per_example", "group_wall_time")}
    if has_test:
        out["test_loss"] = "minimize"
    for m in sorted(metric_names):
        d = model.metric_direction(m)
        for prefix in ("final_val", "best_val") + (("test",) if has_test else ()):
            out[f"{prefix}_{m}"] = d
    return out


# ----------------------------------------------------------------------------- running


def program(dataset, values: Mapping[str, Any], *, model: Any = "mlp", traced: Sequence[str] | None = None,
            n_evals: int = 20, eval_batch_size: int = 512, dtype=None):
    """The training program of one configuration: ``(spec, data)`` for :func:`hsens_jax.engine.train.train`,
    :func:`hsens_jax.engine.train.hp_from_values` and :mod:`hsens_jax.hypergrad`.

    Args:
      dataset: a :class:`hsens_jax.data.Dataset`.
      values: every hyperparameter the configuration sets, the budget included
        (``{"learning_rate": 0.05, "epochs": 3, ...}``).
      model: as in :func:`run_sweep`.
      traced: names of a user's model to keep traced (differentiable); default: every
        float value. The engine optimizer's and built-in models' names are traced anyway.
    """
    values = dict(values)
    model = as_model(model)
    if traced is None:
        traced = tuple(n for n, v in values.items()
                       if isinstance(v, (float, np.floating)) and not isinstance(v, bool))
    plan = plan_sweep(dataset, None, None, model=model, fixed=values, n_evals=n_evals,
                      eval_batch_size=eval_batch_size, dtype=dtype, traced=tuple(traced))
    spec = plan.groups[0].spec
    return spec, prepare_data(dataset, eval_batch_size, plan.dtype)


@functools.lru_cache(maxsize=64)
def _compiled(spec: TrainSpec, folds: bool):
    """One jitted program per spec, reused by every chunk and every later sweep in the process."""
    return jax.jit(partial(train_batch, spec))


def chunk_shape(n_runs: int, chunk_size: int, n_devices: int, fixed: bool = False) -> int:
    """Runs per call for ``n_runs`` pending runs: ``chunk_size``, or the next power of two below
    it, rounded up to a multiple of the device count (a fixed set of shapes: compile once).
    ``fixed``: always ``chunk_size`` (one shape, whatever ``n_runs``)."""
    size = chunk_size if n_runs >= chunk_size or fixed else min(chunk_size,
                                                                 1 << max(0, math.ceil(math.log2(n_runs))))
    return math.ceil(size / n_devices) * n_devices


def _dataset_fingerprint(dataset) -> str:
    arrays = {n: np.asarray(getattr(dataset, n)) for n in ("x_train", "y_train", "x_val", "y_val")}
    if getattr(dataset, "x_test", None) is not None:
        arrays.update(x_test=np.asarray(dataset.x_test), y_test=np.asarray(dataset.y_test))
    return fingerprint(dataset.name, dataset.task, arrays)


def _device_description(devices) -> str:
    d = devices[0]
    kind = getattr(d, "device_kind", d.platform)
    cpu = platform.processor() or platform.machine()
    n_proc = len({dev.process_index for dev in devices})
    return (f"{len(devices)} x {d.platform}:{kind}" + (f" ({cpu})" if d.platform == "cpu" else "")
            + (f" in {n_proc} processes" if n_proc > 1 else ""))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import flax
    import optax

    try:
        jaxlib = version("jaxlib")
    except PackageNotFoundError:  # pragma: no cover - jaxlib always accompanies jax
        jaxlib = "unknown"
    return {"hsens_jax": hsens_jax.__version__, "jax": jax.__version__, "jaxlib": jaxlib,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _json(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def run_ids(settings_fp: str, resolved: hpm.Resolved, seeds: np.ndarray, n_folds: int) -> np.ndarray:
    """(K, S) or (K, S, F) uint64 identities of the runs: a hash of each run's hyperparameter
    values, seed, fold and the sweep's settings fingerprint."""
    names = sorted(resolved.values)
    k = len(resolved.values[names[0]]) if names else 1
    out = np.zeros((k, len(seeds), max(n_folds, 1)), np.uint64)
    for i in range(k):
        row = json.dumps([[n, _json(resolved.values[n][i])] for n in names], default=str)
        base = hashlib.sha256((settings_fp + row).encode())
        for s, seed in enumerate(seeds):
            for f in range(max(n_folds, 1)):
                h = base.copy()
                h.update(f"|{int(seed)}|{f}".encode())
                out[i, s, f] = np.frombuffer(h.digest()[:8], np.uint64)[0]
    return out if n_folds > 1 else out[..., 0]


def run_sweep(
    dataset,
    space: Space,
    configs: Mapping[str, np.ndarray],
    *,
    model: Any = "mlp",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    cv: int | None = None,
    chunk_size: int = 256,
    n_evals: int = 20,
    group_by: Sequence[str] = (),
    eval_batch_size: int = 512,
    run_dir=None,
    overwrite: bool = False,
    progress: bool = True,
    devices=None,
    design: Mapping[str, Any] | None = None,
    stop_after_chunks: int | None = None,
    patience=None,
    fixed_chunks: bool = False,
    allow_device_change: bool = False,
) -> SweepResult:
    """Train every configuration of ``configs`` with every seed (and fold); return the results.

    Args:
      dataset: a :class:`hsens_jax.data.Dataset`.
      space: the search space ``configs`` was drawn from.
      configs: the design, K configurations in the configs format of :mod:`hsens_jax.space`.
      model: ``"mlp"``, ``"cnn"``, a :class:`hsens_jax.Model`, or an import path
        ``"package.module:make_model"`` (a module factory, or a Model).
      fixed: values of hyperparameters that are not in the space, e.g.
        ``{"optimizer": "adam", "epochs": 10}``. The budget (``epochs`` or ``steps``) must be
        given here or in the space.
      seeds: S distinct integer seeds; every configuration is trained once per seed.
      cv: None, or k >= 2: k-fold cross-validation over the training and validation sets
        pooled (stratified for classification; scikit-learn's folds), a vectorized axis like
        the seeds. Metrics then have a fold axis (K, S, k).
      chunk_size: runs per compiled call (bounds memory).
      n_evals: validation points along training (curve length).
      group_by: hyperparameters to compile separately (a built-in model then sizes each
        program for its own values instead of masking); with the built-in MLP's
        ``hidden_layer_sizes``, ``"depth"`` compiles one program per number of hidden layers,
        each sized for its depth's widths (masked within it).
      eval_batch_size: validation examples per forward pass.
      run_dir: directory for incremental results; re-running resumes, a grown design reuses.
      overwrite: discard a different sweep found in ``run_dir``.
      progress: show progress on stderr.
      devices: devices to shard over (default: all local devices; in a process group formed
        by :func:`hsens_jax.engine.distributed.initialize`, every device of every process).
      design: description of how ``configs`` were made, stored in the metadata.
      stop_after_chunks: compute at most this many new chunks, then raise
        ``KeyboardInterrupt`` (used to test resumption; the run directory keeps them).
      patience: early stopping of each run (:class:`hsens_jax.engine.train.Patience`, with
        scikit-learn's ``n_iter_no_change``/``tol`` semantics), or None. Stopped runs keep the
        results of the state they stopped in; ``stopped`` and ``stopped_step`` say which.
      fixed_chunks: every chunk holds ``chunk_size`` runs (padded), whatever the number of
        runs: one program per group for every call, as a search's batches want (their groups
        hold a different number of runs each time; by default each number rounds up to its own
        power of two, and a new one compiles a program).
      allow_device_change: resume ``run_dir`` although it was computed on another number of
        devices (another process count, ``--cpu-devices``...), which is refused by default
        because results then differ in their last bits (see :mod:`hsens_jax.engine.devices`).
        The device count is then no longer a setting of the sweep but a property of each
        chunk: recorded in its provenance and listed in ``meta["chunk_devices"]`` (which
        chunks and how many runs came from which devices).

    Returns:
      A :class:`hsens_jax.results.SweepResult`: scalar metrics (K, S) (or (K, S, F)), curves
      with a trailing axis of ``n_evals``, per-configuration ``param_count``,
      ``flops_per_example``, ``group``, ``group_wall_time``, ``curve_steps``; ``meta`` records
      the settings, defaults, groups, data split, directions of every objective and timings.
    """
    from hsens_jax.compile_cache import ensure_compilation_cache

    ensure_compilation_cache()
    seeds = _check_args(seeds, chunk_size, n_evals, eval_batch_size, cv)
    if not isinstance(space, Space):
        raise TypeError(f"space must be a hsens_jax.Space, got {type(space).__name__}")
    missing = [n for n in space.names if n not in configs]
    if missing:
        raise ValueError(f"configs lack column(s) {missing} of the space")
    configs = {n: np.asarray(configs[n], float) for n in space.names}
    fixed = dict(fixed or {})
    t_start = time.perf_counter()
    bar = Progress(None, desc="sweep", enabled=progress and distributed.is_leader())
    bar.note("planning")
    plan = plan_sweep(dataset, space, configs, model=model, fixed=fixed, cv=cv, n_evals=n_evals,
                      group_by=tuple(group_by), eval_batch_size=eval_batch_size, patience=patience)
    k, s = len(next(iter(configs.values()))), len(seeds)
    n_folds = len(plan.folds) if plan.folds else 1
    devices = list(devices or distributed.default_devices())
    n_dev = len(devices)
    # several processes: every one plans this sweep and trains its devices' shards of each chunk
    multi = len({d.process_index for d in devices}) > 1
    mesh = Mesh(np.array(devices), ("runs",))
    run_sharding = NamedSharding(mesh, PartitionSpec("runs"))
    replicated = NamedSharding(mesh, PartitionSpec())
    precision = str(jnp.dtype(plan.dtype))
    m = plan.model
    settings = {
        "model": {"name": m.name, "kind": getattr(m, "kind", "user"), "code": plan.model_code,
                  "static": list(m.static), "traced": list(m.traced), "loss": getattr(m.loss, "__qualname__", None),
                  "metrics": getattr(m.metrics, "__qualname__", None),
                  "optimizer": getattr(m.optimizer, "__qualname__", None)},
        "space": space.to_dict(), "fixed": {n: _json(v) for n, v in fixed.items()},
        "dataset": _dataset_fingerprint(dataset), "n_evals": n_evals, "eval_batch_size": eval_batch_size,
        "group_by": list(group_by), "cv": cv, "precision": precision,
        "patience": None if patience is None else dict(patience.__dict__),
        "devices": f"{n_dev} x {devices[0].platform}", "versions": _versions(),
    }
    if multi:
        distributed.check_agreement("sweep", {
            **{f"settings.{name}": value for name, value in settings.items()},
            "design": {n: configs[n] for n in space.names}, "seeds": np.asarray(seeds),
            "chunk_size": chunk_size, "stop_after_chunks": stop_after_chunks, "run_dir": run_dir is not None,
            "allow_device_change": bool(allow_device_change), "overwrite": bool(overwrite)})
    if allow_device_change and run_dir is not None:
        # resuming on other devices: keep the devices recorded by the sweep's first launch as
        # its setting (so run ids and chunk fingerprints stay those on disk); each chunk's own
        # devices are in its provenance
        recorded = distributed.on_leader(lambda: RunDirectory(run_dir).recorded_except(settings, ("devices",)),
                                         "read the run directory", share=True)
        if recorded:
            settings["devices"] = recorded["devices"]
    settings_fp = fingerprint(settings)
    ids = run_ids(settings_fp, plan.resolved, seeds, n_folds)
    ids3 = ids if n_folds > 1 else ids[..., None]
    groups = plan.groups
    split = {"n_train": dataset.n_train, "n_val": dataset.n_val,
             "n_test": 0 if getattr(dataset, "x_test", None) is None else len(dataset.x_test),
             "split": getattr(dataset, "split", None), "source": getattr(dataset, "source", None)}
    if plan.folds:
        split["folds"] = {"k": n_folds, "train_sizes": [len(tr) for tr, _ in plan.folds],
                          "val_sizes": [len(va) for _, va in plan.folds], "kind": "StratifiedKFold"
                          if dataset.task == "classification" else "KFold"}
    meta = {
        "fixed": {n: _json(v) for n, v in fixed.items()}, "model": m.name, "model_kind": getattr(m, "kind", "user"),
        "seeds": seeds.tolist(), "cv": cv, "n_folds": n_folds if n_folds > 1 else None, "chunk_size": chunk_size, "n_evals": n_evals,
        "eval_batch_size": eval_batch_size, "group_by": list(group_by), "design": dict(design or {}),
        "dataset": {"name": dataset.name, "task": dataset.task, "input_shape": list(dataset.input_shape),
                    "output_dim": dataset.output_dim, **split},
        "versions": settings["versions"], "device": _device_description(devices), "precision": precision,
        "processes": len({d.process_index for d in devices}),
        "n_configs": k, "n_seeds": s, "space": space.to_dict(),
        "static": sorted(set(plan.resolved.static) - set(hpm.LOOP)),
        "traced": sorted(plan.resolved.traced),
        "defaults": {n: _json(plan.resolved.values[n][0]) for n in plan.resolved.values
                     if n not in plan.resolved.explicit},
        "directions": plan.directions,
        "divergence": {"blowup": __import__("hsens_jax.engine.train", fromlist=["BLOWUP"]).BLOWUP,
                       "chance_tolerance": __import__("hsens_jax.engine.train", fromlist=["x"]).CHANCE_TOLERANCE,
                       "chance_loss": groups[0].spec.chance_loss},
        "groups": [_group_meta(g, s, n_folds) for g in groups],
    }
    store = None
    done: dict = {}
    schema = None
    prepared = prepare_data(dataset, eval_batch_size, plan.dtype, plan.folds)
    data = jax.tree.map(lambda a: distributed.put(a, replicated), prepared) if multi else \
        jax.device_put(prepared, replicated)
    if run_dir is not None:  # process 0 alone takes the run directory (lock, settings, design, chunks)
        store = distributed.on_leader(lambda: RunDirectory(run_dir).open(settings, meta, overwrite=overwrite),
                                      "open the run directory")
    try:
        # a run directory checks its chunks against the schema (and records it) before anything
        # trains; in memory, the first chunk's outputs give it (no separate trace of the training)
        schema = _schema(groups[0].spec, data, plan, n_evals) if run_dir is not None else None

        def take_chunks():
            store.write_design(configs, seeds, ids)
            return store.completed(schema)

        if run_dir is not None:
            done = distributed.on_leader(take_chunks, "read the run directory's chunks") or {}
        return _run(plan, groups, data, configs, seeds, ids3, n_folds, done, store, schema, meta, space,
                    chunk_size, n_dev, run_sharding, bar, stop_after_chunks, t_start, k, s, n_evals,
                    fixed_chunks, multi=multi, run_dir=run_dir)
    finally:
        if store is not None:
            store.close()


def _group_meta(g: Group, s: int, n_folds: int) -> dict:
    spec = g.spec
    out = {"batch_size": spec.batch_size, "n_steps": spec.n_steps, "n_runs": int(len(g.configs) * s * n_folds),
           "static": {k: _json(v) for k, v in g.static.items()}, "key": [_json(v) for v in g.key],
           "optimizers": list(spec.optimizers)}
    if isinstance(spec.model, MaskedNet):
        out.update(max_width=spec.model.max_width, max_depth=spec.model.max_depth,
                   layer_widths=list(spec.model.layer_widths), activations=list(spec.model.activations))
    return out


def _schema(spec: TrainSpec, data, plan: Plan, n_evals: int) -> dict:
    """Per-run shapes and dtype kinds of what a chunk stores (curves padded to ``n_evals``)."""
    hp = hpm.encode(plan.resolved, plan.groups[0].configs[:1], spec.model, plan.resolved.choices, plan.dtype)
    hp = jax.tree.map(_struct, {n: a[0] for n, a in hp.items()})
    key = (spec, n_evals, executables.signature((data, hp)))
    if key not in _SCHEMAS:  # tracing the whole training takes seconds: once per program and process
        def compute():
            out = jax.eval_shape(lambda h: train(spec, data, h, jax.random.key(0), 0), hp)
            return {n: ((n_evals,) if n.endswith("_curve") else tuple(a.shape), np.dtype(a.dtype).kind)
                    for n, a in out.items()}

        # and once per program across processes (a plain dict, beside the compiled programs)
        _SCHEMAS[key] = executables.memo("sweep.schema", (executables.stable_repr(spec), n_evals), (data, hp),
                                         compute)
    return dict(_SCHEMAS[key])


_SCHEMAS: dict = {}


def _executable(spec: TrainSpec, folds: bool, data, hp, keys, fold):
    """The compiled program of ``spec`` for these arguments, traced, lowered and compiled once per
    process (:func:`hsens_jax.executables.compiled` keeps it): the next chunk, sweep or search batch
    of the same shapes skips all three (a search's batches otherwise spent seconds tracing and
    lowering programs they already had). Kept across processes too when the spec has a stable
    repr (the built-in models; a user's model object is kept in this process only)."""
    return executables.compiled(_compiled(spec, folds), "sweep.train_batch", (data, hp, keys, fold),
                                key=(executables.stable_repr(spec), folds))


def _run(plan, groups, data, configs, seeds, ids3, n_folds, done, store, schema, meta, space, chunk_size, n_dev,
         run_sharding, bar, stop_after_chunks, t_start, k, s, n_evals, fixed_chunks=False, *, multi=False,
         run_dir=None):
    total_runs = k * s * n_folds
    results: dict[str, np.ndarray] = {}

    def allocate(schema):
        for name, (shape, kind) in schema.items():
            dt = {"f": np.float64 if plan.dtype == jnp.float64 else np.float32, "b": bool, "i": np.int32,
                  "u": np.uint32}[kind]
            results[name] = np.full((total_runs,) + shape, np.nan if kind == "f" else (-1 if kind == "i" else 0), dt)

    if schema is not None:
        allocate(schema)
    flat_ids = ids3.reshape(-1)
    computed = np.zeros(total_runs, bool)
    if done:
        have = np.array([int(i) in done for i in flat_ids])
        if have.any():
            loaded = store.load_runs(done, flat_ids[have])
            for name in results:
                if name in loaded:
                    results[name][have] = loaded[name]
            computed |= have
    if multi and run_dir is not None:  # process 0 read the chunks: every process starts from them
        computed, results = distributed.broadcast((computed, results), "sharing the runs found on disk")
        computed, results = np.array(computed, bool), {n: np.array(a) for n, a in results.items()}
    advice = (f"The chunks finished so far are saved in {run_dir}: re-launch the same command to resume (on another "
              "number of processes or devices, with --allow-device-change / allow_device_change=True)"
              if run_dir is not None else "")
    chunk_names = {rid: loc[0] for rid, loc in done.items()} if store is not None else {}
    group_time = np.zeros(len(groups))
    bar.reset(total=int(sum(len(g.configs) * s * n_folds * g.spec.n_steps for g in groups)),
              unit="steps", rate_label="runs/s")
    bar.update(int(sum(g.spec.n_steps * np.sum(computed.reshape(k, s, n_folds)[g.configs]) for g in groups)),
               int(computed.sum()))
    n_new = [0]

    def pending(group):
        runs = (group.configs[:, None, None] * s * n_folds + np.arange(s)[None, :, None] * n_folds
                + np.arange(n_folds)[None, None, :]).ravel()
        return runs[~computed[runs]]

    def inputs(group, runs, size):
        idx = np.concatenate([runs, np.repeat(runs[-1:], size - len(runs))])
        cfg, rest = idx // (s * n_folds), idx % (s * n_folds)
        seed_idx, fold = rest // n_folds, rest % n_folds
        hp = hpm.encode(plan.resolved, cfg, group.spec.model, plan.resolved.choices, plan.dtype)
        keys = jax.vmap(jax.random.key)(jnp.asarray(seeds[seed_idx]))
        put = (lambda a: distributed.put(a, run_sharding)) if multi else \
            (lambda a: jax.device_put(a, run_sharding))  # noqa: E731
        return put(hp), put(keys), (put(jnp.asarray(fold, jnp.int32)) if n_folds > 1 else None)

    compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsens-compile")
    compiling: dict[tuple, Future] = {}

    def compile_for(gi, size):
        key = (gi, size)
        if key in compiling:
            return compiling[key]
        group = groups[gi]
        runs = pending(group)
        if len(runs) == 0:
            return None
        hp, keys, fold = inputs(group, runs[:1], size)
        x64 = plan.dtype == jnp.float64  # jax.enable_x64 is thread-local: carry it to the compiler thread

        def compile_program():
            with jax.enable_x64(x64):
                return _executable(group.spec, n_folds > 1, data, hp, keys, fold)

        compiling[key] = compiler.submit(compile_program)
        return compiling[key]

    def first_size(gi):
        runs = pending(groups[gi])
        return chunk_shape(len(runs), chunk_size, n_dev, fixed_chunks) if len(runs) else None

    try:
        for gi, group in enumerate(groups):
            runs = pending(group)
            if len(runs) == 0:
                continue
            size = chunk_shape(len(runs), chunk_size, n_dev, fixed_chunks)
            for start in range(0, len(runs), size):
                chunk = runs[start:start + size]
                this = size  # the last chunk is padded: one program per group
                if stop_after_chunks is not None and n_new[0] >= stop_after_chunks:
                    raise KeyboardInterrupt(f"stopped after {n_new[0]} new chunk(s), as asked")
                hp, keys, fold = inputs(group, chunk, this)
                t0 = time.perf_counter()
                future = compile_for(gi, this)
                if not future.done():
                    bar.note(f"compiling group {gi + 1}/{len(groups)}")
                fn = future.result()
                nxt = gi + 1
                while nxt < len(groups) and first_size(nxt) is None:
                    nxt += 1
                if nxt < len(groups):
                    compile_for(nxt, first_size(nxt))
                bar.note(f"group {gi + 1}/{len(groups)}")
                bar.expect(len(chunk) * group.spec.n_steps, len(chunk))
                out = jax.block_until_ready(fn(data, hp, keys, fold))
                if multi:  # every process gets the whole chunk (one collective step)
                    out = distributed.gather(out, f"gathering chunk {n_new[0] + 1} of group {gi + 1}", advice)
                wall = time.perf_counter() - t0
                if not results:  # no schema given: the first chunk's per-run shapes and kinds
                    allocate({name: ((n_evals,) if name.endswith("_curve") else tuple(np.shape(a)[1:]),
                                     np.dtype(a.dtype).kind) for name, a in out.items()})
                arrays = {}
                for name, a in out.items():
                    a = np.asarray(a)[: len(chunk)]
                    if name.endswith("_curve") and a.shape[1] < n_evals:
                        a = np.concatenate([a, np.full((len(chunk), n_evals - a.shape[1]), np.nan, a.dtype)], 1)
                    arrays[name] = a
                    results[name][chunk] = a
                computed[chunk] = True
                group_time[gi] += wall
                if store is not None:
                    name = store.save_chunk(flat_ids[chunk], arrays,
                                            {"device": meta["device"], "precision": meta["precision"],
                                             "wall_time": wall, "group": gi, "hostname": platform.node(),
                                             "time": time.time(), "n_devices": n_dev,
                                             "processes": meta["processes"]})
                    chunk_names.update(dict.fromkeys(flat_ids[chunk].tolist(), name))
                n_new[0] += 1
                bar.update(len(chunk) * group.spec.n_steps, len(chunk))
    finally:
        # Joined, not abandoned: a program still compiling for a later group when a chunk raises
        # (or the user interrupts) must not go on compiling and writing the persistent cache
        # behind the caller's back while the caller compiles other programs.
        compiler.shutdown(wait=True, cancel_futures=True)
        bar.close()

    lead = (k, s, n_folds) if n_folds > 1 else (k, s)
    metrics = {name: arr.reshape(lead + arr.shape[1:]) for name, arr in results.items()}
    curve_steps = np.full((k, n_evals), np.nan)
    for g in groups:
        spec = g.spec
        pts = np.minimum(np.arange(1, spec.n_points + 1) * spec.eval_every, spec.n_steps)
        curve_steps[g.configs, : spec.n_points] = pts
    metrics["param_count"] = plan.param_count
    metrics["flops_per_example"] = plan.flops
    metrics["group"] = plan.group_of
    metrics["group_wall_time"] = group_time[plan.group_of]
    metrics["curve_steps"] = curve_steps
    meta["wall_time"] = time.perf_counter() - t_start
    meta["group_wall_times"] = group_time.tolist()
    meta["new_chunks"] = n_new[0]
    if run_dir is not None:
        meta["chunk_devices"] = distributed.on_leader(lambda: _chunk_devices(store, chunk_names, flat_ids),
                                                      "list the chunks' devices", share=True)
    result = SweepResult(space, configs, seeds, metrics, meta)
    if store is not None:
        result.save(store.path)
    return result


def _chunk_devices(store, chunk_names: dict, run_ids: np.ndarray) -> list[dict]:
    """Which chunks (and how many of the design's runs) each device description computed,
    from the chunks' provenance: a sweep resumed on other devices says what came from where."""
    by_device: dict[str, dict] = {}
    for rid in run_ids.tolist():
        name = chunk_names.get(rid)
        if name is None:
            continue
        device = str(store.provenance(name).get("device", "unknown"))
        entry = by_device.setdefault(device, {"device": device, "chunks": {}, "runs": 0})
        entry["runs"] += 1
        entry["chunks"][name] = None
    out = [dict(e, chunks=sorted(e["chunks"])) for e in by_device.values()]
    return sorted(out, key=lambda e: e["chunks"][:1])
