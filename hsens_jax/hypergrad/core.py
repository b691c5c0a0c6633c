"""Hypergradients of a validation objective with respect to training hyperparameters.

:func:`hypergradient` differentiates one configuration's training run (the engine of
:mod:`hsens_jax.engine.train`) by one of five modes (see :mod:`.unrolled` and
:mod:`.implicit`); :func:`hypergradients` does it at many configurations at once
(``vmap``, or ``lax.map`` in chunks), e.g. at every point of a sweep design.

Mode cheat sheet (T steps, h hyperparameters, D devices, one training run = 1; measured
on the digits MLP with Adam, h = 2, T = 100..10000, two runs of benchmarks/bench_hypergrad.py):

=================  ======================  ===================  =========================
mode               time                    memory               exact?
=================  ======================  ===================  =========================
``reverse``        ~1.7-3.0                O(T) states          yes
``checkpointed``   ~2.3-2.9 (+1 forward)   O(sqrt T) states     yes
``forward``        ~1 + (0.1..0.85) h/D    O(h/D) tangents      yes
``truncated``      ~1 + 2k/T               O(k)                 no: short-horizon bias
``implicit``       1 + CG iterations       O(1)                 only at a stationary point
=================  ======================  ===================  =========================

The default, ``"auto"``, is forward mode while each device carries at most three tangents
and checkpointed reverse mode beyond. With several devices (a CPU split into one device
per core by :func:`hsens_jax.use_cpu_cores`, as the CLI does, or several accelerators),
:func:`hypergradient` splits forward mode's tangents over them (each device trains the
configuration and carries its share: h = 2 on two CPU cores measured 1.49-1.65 training
runs instead of 1.71-2.64 on one device, two benchmark runs) and :func:`hypergradients`
splits the configurations.

Reverse modes pull adjoints back through each step with Hessian-vector products
(``adjoint="symmetric"``, :mod:`hsens_jax.hypergrad.adjoint`): checkpointed mode measured
2.27-2.89 training runs against 2.41-2.90 with JAX's own transpose of the step
(``adjoint="autodiff"``) in the same runs, and plain reverse mode 1.69-3.04 against
1.91-3.58 with 0.65x the memory (527 against 812 MiB at T = 10000).

float32 and reverse modes: backwards through Adam steps whose gradients are tiny, the
adjoint can grow exponentially (x8 per step measured on the digits MLP at lr = 2.9e-3,
with JAX's derivative of optax's Adam) in directions that never reach the objective,
overflow float32 and turn into NaN (``inf * 0``) while the derivative is finite; float64
postpones it (at x8 per step it would take ~340 steps to pass 1e308: an extrapolation,
not measured). :mod:`hsens_jax.engine.adam`'s derivative rule postpones it too (with the
engine's earlier batch order, that digits case went from NaN to finite at 50 steps). With
the counter-based batch order of :mod:`hsens_jax.engine.train` the case is finite at 30
steps (within 1e-4 of float64) and the weight-decay derivative overflows from 50 steps on
(measured at 50, 80, 120, 200 and 500; 30 and 500 tested). Forward mode's
tangents are the physical sensitivities of the state and stay bounded there (tested).

Non-finite hypergradients (long horizons, exploding learning rates) are detected per
configuration: ``finite`` is False when the objective or a derivative is NaN/inf or when
the engine flagged the run as diverged, and a :class:`HypergradientWarning` says how
many configurations are affected.

Singular and ill-conditioned points: ``adam``/``adamw`` divide by ``sqrt(v) + eps``; a
parameter whose gradient is exactly zero at every step (a masked unit when ``width <
max_width``, the weights of an input pixel that is always 0, as on the digits border)
keeps ``v = 0``, where the derivative of ``sqrt`` is infinite and a hypergradient would be
NaN (``0 * inf``). The engine's Adam puts ``eps_root = 1e-30`` under the root
(:mod:`hsens_jax.engine.optimizers`), so those hypergradients are finite (tested with
``weight_decay = 0`` and masked units). Near such points the
problem is ill-conditioned rather than singular: with batch norm and Adam's default
``eps = 1e-8``, a 10-step digits MLP gave forward and reverse hypergradients differing by
2e-3 relative in float64 and central differences that did not converge as the step
shrank; with ``eps = 1e-3`` forward and reverse agree to 1e-9 and central differences to
about 1e-8 (tests/hypergrad/test_unrolled.py).

References: Maclaurin, Duvenaud and Adams 2015 (reverse mode through SGD); Franceschi,
Donini, Frasconi and Pontil 2017 (forward and reverse hypergradients); Lorraine, Vicol
and Duvenaud 2020 (implicit function theorem); Micaelli and Storkey 2021 (forward mode
over long horizons); Wu, Ren, Liao and Grosse 2018 (short-horizon bias).
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.hypergrad.adjoint import ADJOINTS
from hsens_jax.hypergrad.coordinates import COORDINATES, log_scaled_names, natural_gradient
from hsens_jax.hypergrad.implicit import check_implicit, engine_implicit_gradient
from hsens_jax.hypergrad.unrolled import (MODES, OBJECTIVES, differentiable, sharded_forward_gradient,
                                          unrolled_gradient)
from hsens_jax.space import Space
from hsens_jax.engine.train import TrainData, TrainSpec, hp_from_values


class HypergradientWarning(RuntimeWarning):
    """Some hypergradients are NaN/inf or come from a diverged training run."""


class HypergradResult(NamedTuple):
    """A hypergradient (leading axis n for :func:`hypergradients`).

    Attributes:
      value: the objective Y (e.g. final validation loss).
      grad: dict ``name -> dY/d(coordinate)`` in the requested coordinates.
      grad_raw: dict ``name -> dY/dx``.
      grad_natural: dict ``name -> x dY/dx`` for log-scaled names, ``dY/dx`` otherwise.
      grad_norm: Euclidean norm of ``grad`` over the ``wrt`` names.
      finite: True when value and every derivative are finite and training did not diverge.
      diverged: the engine's divergence flag.
      stationarity: implicit mode: ``||grad_theta L(theta_T)||`` (0 at a stationary
        point); NaN for the unrolled modes.
    """

    value: jax.Array
    grad: dict
    grad_raw: dict
    grad_natural: dict
    grad_norm: jax.Array
    finite: jax.Array
    diverged: jax.Array
    stationarity: jax.Array


def _raw(spec, data, hp, key, *, wrt, mode, objective, checkpoint_every, truncate, solver_options,
         adjoint="symmetric"):
    """(value, raw gradient dict, diverged, stationarity) of one configuration (pure)."""
    if mode == "implicit":
        return engine_implicit_gradient(spec, data, hp, key, wrt, objective=objective, **dict(solver_options))
    value, grad_raw, diverged = unrolled_gradient(spec, data, hp, key, wrt, mode=mode, objective=objective,
                                                  checkpoint_every=checkpoint_every, truncate=truncate,
                                                  adjoint=adjoint)
    return value, grad_raw, diverged, jnp.full((), jnp.nan, value.dtype)


def _assemble(value, grad_raw, diverged, stationarity, hp, wrt, log_names, coordinates) -> HypergradResult:
    """Natural coordinates, norm and finite flag (works on scalars or on a leading batch axis)."""
    grad_natural = natural_gradient(grad_raw, hp, log_names)
    grad = grad_natural if coordinates == "natural" else grad_raw
    norm = jnp.sqrt(sum(grad[n] ** 2 for n in wrt))
    finite = jnp.isfinite(value) & ~diverged
    for n in wrt:
        finite = finite & jnp.isfinite(grad_raw[n])
    return HypergradResult(value, grad, grad_raw, grad_natural, norm, finite, diverged, stationarity)


def _pure(spec, data, hp, key, *, wrt, log_names, coordinates, **kw) -> HypergradResult:
    """One configuration's :class:`HypergradResult` (pure; jit/vmap-able)."""
    return _assemble(*_raw(spec, data, hp, key, wrt=wrt, **kw), hp, wrt, log_names, coordinates)


_STATIC = ("spec", "wrt", "mode", "objective", "checkpoint_every", "truncate", "solver_options", "adjoint")


@partial(jax.jit, static_argnames=_STATIC)
def _one(spec, data, hp, key, **kw):
    return _raw(spec, data, hp, key, **kw)


@partial(jax.jit, static_argnames=_STATIC + ("devices",))
def _one_sharded(spec, data, hp, key, *, devices, wrt, objective, **_):
    """Forward mode with the tangent directions split over ``devices`` (a tuple)."""
    value, grad, diverged = sharded_forward_gradient(spec, data, hp, key, wrt, devices, objective=objective)
    return value, grad, diverged, jnp.full((), jnp.nan, value.dtype)


def _devices(devices) -> tuple:
    """``devices`` as a non-empty tuple of JAX devices (default: all local devices)."""
    if devices is None:
        return tuple(jax.local_devices())
    if isinstance(devices, jax.Device):
        devices = [devices]
    try:
        devices = tuple(devices)
    except TypeError:
        raise TypeError(f"devices must be a sequence of jax devices or None, got {type(devices).__name__}") from None
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad or not devices:
        raise ValueError(f"devices must be a non-empty sequence of jax devices (jax.devices()), got {devices!r}")
    return devices


@partial(jax.jit, static_argnames=_STATIC + ("chunk_size", "shared_key"))
def _many(spec, data, hp, key, *, chunk_size, shared_key, **kw):
    if shared_key:
        f = lambda h: _raw(spec, data, h, key, **kw)  # noqa: E731
        xs = hp
    else:
        f = lambda hk: _raw(spec, data, hk[0], hk[1], **kw)  # noqa: E731
        xs = (hp, key)
    if chunk_size is None:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=chunk_size)


@partial(jax.jit, static_argnames=_STATIC + ("chunk_size", "shared_key", "devices"))
def _many_sharded(spec, data, hp, key, *, chunk_size, shared_key, devices, **kw):
    """:func:`_many` with the configurations split over ``devices`` (n a multiple of their number)."""
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(devices), ("configs",))
    cfg = PartitionSpec("configs")

    def local(hp, key):
        return _many(spec, data, hp, key, chunk_size=chunk_size, shared_key=shared_key, **kw)

    return jax.shard_map(local, mesh=mesh, in_specs=(cfg, PartitionSpec() if shared_key else cfg),
                         out_specs=cfg, check_vma=False)(hp, key)


def _pad(tree, n_pad):
    """Each leaf's leading axis extended to ``n_pad`` by repeating its last entry."""
    def pad(a):
        extra = n_pad - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def _optimizer_names(values, spec) -> set:
    if not spec.model.builtin_optimizer:
        return {None}
    v = values.get("optimizer", None)
    if v is None:
        return {spec.optimizers[0]}
    arr = np.asarray(v).ravel()
    if arr.dtype.kind in "USO":
        return {str(a) for a in arr}
    return {spec.optimizers[int(i)] for i in arr if 0 <= int(i) < len(spec.optimizers)}


def _check(spec, data, values, wrt, mode, objective, checkpoint_every, truncate, coordinates, space, log_scaled,
           adjoint="symmetric"):
    if adjoint not in ADJOINTS:
        raise ValueError(f"adjoint={adjoint!r}: choose from {ADJOINTS}")
    if not isinstance(spec, TrainSpec):
        raise TypeError(f"spec must be a hsens_jax.engine.train.TrainSpec, got {type(spec).__name__}")
    if not isinstance(data, TrainData):
        raise TypeError(f"data must be a hsens_jax.engine.train.TrainData (see prepare_data), got {type(data).__name__}")
    if not isinstance(values, Mapping):
        raise TypeError(f"values must be a dict of hyperparameter values, got {type(values).__name__}")
    if isinstance(wrt, str):
        wrt = (wrt,)
    wrt = tuple(wrt)
    if not wrt:
        raise ValueError("wrt is empty: name at least one hyperparameter to differentiate")
    if len(set(wrt)) != len(wrt):
        raise ValueError(f"wrt={wrt} has duplicates")
    if "label_smoothing" in wrt and spec.task != "classification":
        raise ValueError("wrt: label_smoothing has no effect on a regression task")
    hp = hp_from_values(dict(values), spec, dtype=data.x_train.dtype)
    allowed = differentiable(spec, hp)
    bad = [n for n in wrt if n not in allowed]
    if bad:
        static = [n for n in bad if n in dict(spec.static)]
        why = f" ({static} are static in this program)" if static else ""
        raise ValueError(f"wrt: {bad} cannot be differentiated{why}; differentiable hyperparameters: {allowed}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose from {('auto',) + MODES}")
    if not (callable(objective) or objective in OBJECTIVES):
        raise ValueError(f"objective={objective!r}: choose from {OBJECTIVES} or pass a callable")
    if coordinates not in COORDINATES:
        raise ValueError(f"coordinates={coordinates!r}: choose from {COORDINATES}")
    if checkpoint_every is not None:
        if mode not in ("checkpointed", "truncated"):
            raise ValueError(f"checkpoint_every applies to mode='checkpointed' or 'truncated', not {mode!r}")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        checkpoint_every = int(checkpoint_every)
    if mode == "truncated":
        if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)) or truncate < 1:
            raise ValueError(f"mode='truncated' needs truncate = number of final steps (a positive integer), got {truncate!r}")
        truncate = int(truncate)
    elif truncate is not None:
        raise ValueError(f"truncate applies to mode='truncated' only, not {mode!r}")
    if mode == "implicit":
        for name in _optimizer_names(values, spec):
            check_implicit(spec, wrt, name, data, hp)
    log_names = tuple(n for n in log_scaled_names(space, log_scaled) if n in wrt)
    return wrt, checkpoint_every, truncate, log_names


AUTO_FORWARD_TANGENTS = 3
"""``mode="auto"`` picks forward mode while each device carries at most this many tangents
(``ceil(h / D)``), checkpointed reverse mode beyond: forward costs ``1 + c ceil(h / D)``
training runs (one device, T = 100..10000: c = 0.12-0.54 at h = 1 and 0.36-0.82 at h = 2
measured, benchmarks/bench_hypergrad.py), checkpointed 2.3-2.9. At T = 1000 on one
device, forward and checkpointed both took 2.89 training runs with h = 3 tangents, and
3.52 against 3.29 with h = 4. Up to the crossover forward mode is preferred: its tangents
do not overflow float32 (see the module docstring)."""


def _resolve_mode(mode, wrt, checkpoint_every, n_devices) -> str:
    """The mode ``"auto"`` stands for (see :data:`AUTO_FORWARD_TANGENTS`); other modes as given."""
    if mode != "auto":
        return mode
    if checkpoint_every is not None:
        return "checkpointed"
    h = 1 if isinstance(wrt, str) else len(tuple(wrt))
    return "forward" if -(-h // max(1, n_devices)) <= AUTO_FORWARD_TANGENTS else "checkpointed"


def _warn(finite, diverged, mode=None):
    finite = np.asarray(finite)
    if finite.all():
        return
    bad = np.flatnonzero(~finite.ravel())
    n_div = int(np.asarray(diverged).ravel()[bad].sum())
    where = "" if finite.ndim == 0 else f" (configurations {bad[:10].tolist()}{'...' if len(bad) > 10 else ''})"
    hint = ("Lower the learning rate, shorten the horizon (mode='truncated') or inspect result.finite."
            if n_div else
            "Without divergence this usually is a singular derivative, e.g. Adam's sqrt(v) at v = 0 for "
            "parameters whose gradient is exactly zero (masked units, constant inputs) when weight_decay = 0, "
            "or a NaN objective.")
    if not n_div and mode in ("reverse", "checkpointed", "truncated"):
        hint += (f" With mode={mode!r} it can also be an overflow of the adjoint: backwards through Adam steps "
                 "whose gradients are tiny it can grow exponentially (measured: x8 per step) in directions that do "
                 "not reach the objective, past float32's range, while the derivative is finite. mode='forward' "
                 "(its tangents stay bounded there) or float64 (jax.config.update('jax_enable_x64', True)) then "
                 "gives it.")
    warnings.warn(
        f"hypergradient is not finite for {len(bad)} of {finite.size} configuration(s){where}; "
        f"{n_div} of them diverged during training. {hint}",
        HypergradientWarning, stacklevel=3)


def hypergradient(spec: TrainSpec, data: TrainData, values: Mapping[str, Any], key,
                  wrt=("learning_rate", "weight_decay"), *, mode: str = "auto",
                  objective: str | Callable = "final_val_loss", checkpoint_every: int | None = None,
                  truncate: int | None = None, coordinates: str = "natural", space: Space | None = None,
                  log_scaled=None, solver_options: Mapping[str, Any] | None = None,
                  devices=None, adjoint: str = "symmetric") -> HypergradResult:
    """Hypergradient of one configuration's objective after training.

    Args:
      spec: the static :class:`~hsens_jax.engine.train.TrainSpec` (model, steps, batch size...).
      data: :class:`~hsens_jax.engine.train.TrainData` from :func:`~hsens_jax.engine.train.prepare_data`.
      values: hyperparameter values of the configuration (defaults filled in by
        :func:`~hsens_jax.engine.train.hp_from_values`; scalars).
      key: PRNG key of the seed (initialization, batch order, dropout), as for ``train``.
      wrt: hyperparameters to differentiate with respect to, among
        :func:`~hsens_jax.hypergrad.unrolled.differentiable` (the engine's smooth settings, and a
        user's model's traced float hyperparameters).
      mode: ``"auto"`` (default), ``"reverse"``, ``"checkpointed"``, ``"forward"``,
        ``"truncated"`` or ``"implicit"`` (see the module docstring). ``"auto"`` is
        ``"forward"`` while each device carries at most
        :data:`AUTO_FORWARD_TANGENTS` tangents (``ceil(len(wrt) / len(devices))``), else
        ``"checkpointed"`` (also when ``checkpoint_every`` is given): the cheaper of the
        two, and forward mode's tangents do not overflow float32 where a reverse-mode
        adjoint can (see :class:`HypergradientWarning`).
      objective: ``"final_val_loss"`` (default; equals ``train(...)["final_val_loss"]``),
        ``"final_train_loss"``, or ``f(spec, data, hp, state) -> scalar``.
      checkpoint_every: segment length of the checkpointed loop (default
        :func:`~hsens_jax.hypergrad.unrolled.segment_for`: the memory-optimal
        ``ceil(sqrt(n_steps * B / R))`` for state size B and per-step residual size R);
        with ``"truncated"``, optional checkpointing of the
        differentiated tail.
      truncate: ``"truncated"`` mode: number of final steps differentiated through.
      coordinates: ``"natural"`` (``x dY/dx`` = ``dY/dlog x`` for log-scaled names) or
        ``"raw"`` (``dY/dx``): what ``grad`` and ``grad_norm`` use; both are returned.
      space, log_scaled: which names are log-scaled: the space's ``Float(log=True)``
        parameters, or explicit names; default
        :data:`~hsens_jax.hypergrad.coordinates.DEFAULT_LOG_SCALED`.
      solver_options: implicit mode: options of
        :func:`~hsens_jax.hypergrad.implicit.implicit_gradient` (solver, maxiter, tol,
        damping, neumann_steps, neumann_lr).
      devices: ``"forward"`` mode with several ``wrt``: the devices its tangent
        directions are split over (:func:`~hsens_jax.hypergrad.unrolled.sharded_forward_gradient`:
        each device trains the configuration and carries its share of the tangents, so
        the wall time is that of ``ceil(h / D)`` tangents instead of h). Default: all local
        devices (one, on a CPU, unless :func:`hsens_jax.use_cpu_cores` made one per
        core, as the CLI does). Other modes run on the default device.
      adjoint: reverse modes' rule through a training step: ``"symmetric"`` (default:
        Hessian-vector products, storing per step only its inputs and minibatch gradient;
        :mod:`hsens_jax.hypergrad.adjoint`) or ``"autodiff"`` (JAX's transpose of the
        step, storing its intermediates). The same hypergradient to rounding; models with
        batch norm always use ``"autodiff"``.
    Returns:
      a :class:`HypergradResult` of scalars (dicts keyed by ``wrt``).
    Warns:
      HypergradientWarning: the result is not finite (or training diverged).

    References:
      Maclaurin et al. 2015; Franceschi et al. 2017; Lorraine et al. 2020; Micaelli and
      Storkey 2021; Wu et al. 2018 (see the module docstring).
    """
    devices = _devices(devices)
    mode = _resolve_mode(mode, wrt, checkpoint_every, len(devices))
    wrt, checkpoint_every, truncate, log_names = _check(spec, data, values, wrt, mode, objective, checkpoint_every,
                                                        truncate, coordinates, space, log_scaled, adjoint)
    hp = hp_from_values(dict(values), spec, dtype=data.x_train.dtype)
    if hp["learning_rate"].ndim != 0:
        raise ValueError("values: hypergradient takes one configuration (scalars); use hypergradients for many")
    kw = dict(wrt=wrt, mode=mode, objective=objective, checkpoint_every=checkpoint_every, truncate=truncate,
              solver_options=tuple(sorted((solver_options or {}).items())), adjoint=adjoint)
    if mode == "forward" and len(wrt) > 1 and len(devices) > 1:
        raw = _one_sharded(spec, data, hp, key, devices=devices[:len(wrt)], **kw)
    else:
        raw = _one(spec, data, hp, key, **kw)
    res = _assemble(*raw, hp, wrt, log_names, coordinates)
    _warn(res.finite, res.diverged, mode)
    return res


def hypergradients(spec: TrainSpec, data: TrainData, configs: Mapping[str, Any], key,
                   wrt=("learning_rate", "weight_decay"), *, mode: str = "auto",
                   objective: str | Callable = "final_val_loss", checkpoint_every: int | None = None,
                   truncate: int | None = None, coordinates: str = "natural", space: Space | None = None,
                   log_scaled=None, solver_options: Mapping[str, Any] | None = None,
                   chunk_size: int | None = None, devices=None, adjoint: str = "symmetric") -> HypergradResult:
    """Hypergradients at ``n`` configurations at once (vectorized with ``jax.vmap``).

    Args:
      configs: dict ``name -> (n,) values`` (e.g. a sweep design from
        :meth:`hsens_jax.space.Space.sample`); categoricals as names or indices.
      key: one key (shared by all configurations: common random numbers, so differences
        are due to the hyperparameters) or ``n`` keys (shape (n,) typed keys or (n, 2)
        raw keys), one per configuration.
      chunk_size: None to vmap all ``n`` at once; an int to process them in chunks of
        that size (``lax.map`` with ``batch_size``) and bound memory (per device).
      devices: the devices the configurations are split over (``jax.shard_map``; ``n`` is
        padded to a multiple of their number by repeating the last configuration, whose
        copies are dropped). Default: all local devices (one, on a CPU, unless
        :func:`hsens_jax.use_cpu_cores` made one per core, as the CLI does). Results do
        not depend on the split.
      other arguments: as :func:`hypergradient`.
    Returns:
      a :class:`HypergradResult` whose arrays have a leading axis of length n.
    Warns:
      HypergradientWarning: naming the configurations whose result is not finite.

    References:
      as :func:`hypergradient`; local sensitivities at the points of a design, whose mean
      squares are DGSM (Sobol and Kucherenko 2009; see :mod:`hsens_jax.hypergrad.dgsm`).
    """
    mode = _resolve_mode(mode, wrt, checkpoint_every, 1)  # configurations, not tangents, are split over devices
    wrt, checkpoint_every, truncate, log_names = _check(spec, data, configs, wrt, mode, objective, checkpoint_every,
                                                        truncate, coordinates, space, log_scaled, adjoint)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    for n in wrt:
        if n in configs:
            col = np.asarray(configs[n], dtype=float)
            if np.isnan(col).any():
                raise ValueError(f"configs[{n!r}] has NaN (inactive) entries; a hypergradient needs a value")
    hp = hp_from_values(dict(configs), spec, dtype=data.x_train.dtype)
    if hp["learning_rate"].ndim != 1:
        raise ValueError(f"configs: expected 1-d columns of one length n, got shape {hp['learning_rate'].shape}")
    n = hp["learning_rate"].shape[0]
    is_typed = hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not is_typed:
        key = jnp.asarray(key)
    shared = key.ndim == (0 if is_typed else 1)
    if not shared and key.shape[0] != n:
        raise ValueError(f"key: {key.shape[0]} keys for {n} configurations")
    devices = _devices(devices)[:n]
    kw = dict(wrt=wrt, mode=mode, objective=objective, checkpoint_every=checkpoint_every, truncate=truncate,
              solver_options=tuple(sorted((solver_options or {}).items())), adjoint=adjoint,
              chunk_size=None if chunk_size is None else int(chunk_size), shared_key=shared)
    if len(devices) > 1:
        n_pad = -(-n // len(devices)) * len(devices)
        raw = _many_sharded(spec, data, _pad(hp, n_pad), key if shared else _pad(key, n_pad), devices=devices, **kw)
        raw = jax.tree.map(lambda a: a[:n], raw)
    else:
        raw = _many(spec, data, hp, key, **kw)
    res = _assemble(*raw, hp, wrt, log_names, coordinates)
    _warn(res.finite, res.diverged, mode)
    return res
