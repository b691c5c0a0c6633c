"""Unrolled differentiation through the training loop of :mod:`hsens_jax.engine.train`.

The training run of one configuration is a composition of ``T = spec.n_steps`` steps
``theta_{t+1} = Phi_t(theta_t, lambda)`` (:func:`hsens_jax.engine.train.train_step`, i.e. the
engine's own optimizer step, learning-rate schedule, loss and divergence guard),
started from ``theta_0(lambda)`` (:func:`hsens_jax.engine.train.init_carry`) and scored by a
validation objective ``Y(theta_T, lambda)`` (by default
:func:`hsens_jax.engine.train.evaluate` on the final state, which is exactly the engine's
``final_val_loss`` since the last evaluation happens at the last step). A
hypergradient is ``dY/dlambda`` through all of it. Four ways to compute it:

``"reverse"``
    ``jax.grad`` through the ``lax.scan``: one forward pass that stores what the
    backward pass needs of every step, one backward pass (Maclaurin et al. 2015,
    Franceschi et al. 2017, "reverse-mode hypergradient"). Time ~2.5-3 training runs,
    memory O(T). By default (``adjoint="symmetric"``, :mod:`.adjoint`) a step's adjoint
    is a Hessian-vector product, and a step stores only its inputs and its minibatch
    gradient, not every intermediate of the network's passes.
``"checkpointed"``
    the same, with the loop cut into segments of ``s`` steps, each wrapped in
    ``jax.checkpoint``: only the state at segment boundaries is stored (T/s states) and
    a segment's steps are run again while its gradient is taken (s steps). Memory
    O(sqrt(T)) with the default segment (:func:`segment_for`: whole epochs, about a
    third of the memory-optimal ``sqrt(T B / R)``, B bytes of loop state and R stored
    per step), at the price of one extra forward pass (Griewank and Walther 2000; Chen
    et al. 2016).
``"forward"``
    the tangents ``dtheta_t/dlambda_i`` (one per hyperparameter) are carried along with
    the state, so memory does not depend on T (Franceschi et al. 2017, "forward-mode";
    Micaelli and Storkey 2021 for long horizons). Each step is linearized once
    (``jax.linearize``: the primal step runs once) and its linear map applied to the h
    tangents one by one (with h = 1: one ``jvp`` of the whole run). Cost ``1 + c h``
    training runs, ``c`` the cost of one tangent relative to a training step: measured
    0.12-0.54 at h = 1 and 0.36-0.82 at h = 2 on the digits MLP (T = 100..10000, two runs
    of benchmarks/bench_hypergrad.py);
    batching the h tangents instead (``jax.jacfwd``'s ``vmap`` of ``jvp``) measured
    ~1.25-1.3x slower on a CPU (batched small matrix products). Any directions, not only
    the coordinate axes: :func:`forward_directions`. Split over devices:
    :func:`sharded_forward_gradient` (each device trains and carries h / D tangents).
``"truncated"``
    reverse mode through the last ``k`` steps only; the first ``T - k`` steps are run
    with ``stop_gradient``. Cheap (memory O(k)) but *biased*: it ignores how lambda
    shaped the state reached at step ``T - k``. For the learning rate this is the
    short-horizon bias of Wu et al. (2018, "Understanding short-horizon bias in
    stochastic meta-optimization"): a truncated hypergradient favours smaller learning
    rates than the full one. ``k >= T`` is plain reverse mode.

Batches follow the engine exactly (the permutation of epoch ``e`` is drawn from the
data-order key folded with ``e``), so the function differentiated here is the training
run of :func:`hsens_jax.engine.train.train` and its value equals ``train(...)["final_val_loss"]``
(tested). The parts of :func:`hsens_jax.engine.train.step` not reused are bookkeeping the
objective does not need: the recorded curves (validation inside a ``lax.cond`` at every
evaluation step, which would make reverse mode store validation residuals at every step)
and the divergence freeze (``train_step(..., guard=False)``: no finiteness test of the
parameters and no select over the state, which in every pass, primal, tangent and
adjoint, cost about a third of a step; the run is identical while it stays finite, and a
non-finite loss still sets ``diverged``).

Everything here is a pure function of ``(spec, data, hp, key)``; ``spec`` is static.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.hypergrad.adjoint import ADJOINTS, symmetric_step
from hsens_jax.hypergrad.leaves import merge_float, split_float
from hsens_jax.engine.train import (
    TrainData,
    TrainSpec,
    TrainState,
    batch_indices,
    evaluate,
    full_hp,
    init_carry,
    train_step,
)

MODES = ("reverse", "checkpointed", "forward", "truncated", "implicit")
"""Ways to compute a hypergradient (``"implicit"`` lives in :mod:`.implicit`)."""

DIFFERENTIABLE = (
    "learning_rate", "momentum", "b1", "b2", "eps", "weight_decay", "rms_decay",
    "warmup", "final_lr_fraction", "label_smoothing", "init_scale",
)
"""The engine's and the built-in models' hyperparameters the training run depends on smoothly
(almost everywhere).

Not differentiable: categorical indices (``optimizer``, ``schedule``, ``activation``),
architecture (``width``, ``depth``, ``widths``: masks), ``batch_norm`` (a switch) and
``dropout`` (the keep mask ``u >= rate`` is piecewise constant in the rate). A user's model
adds its own traced float hyperparameters (:func:`differentiable`).
"""

_ENGINE_STRUCTURAL = ("optimizer", "schedule", "width", "depth", "widths", "activation", "batch_norm", "dropout")


def differentiable(spec: TrainSpec, hp) -> tuple[str, ...]:
    """The hyperparameters a hypergradient of ``spec``'s program may be taken with respect to:
    :data:`DIFFERENTIABLE` names the program uses, and a user's model's traced float
    hyperparameters (``hp`` entries of a floating dtype that no built-in reads structurally).
    Whether the training run depends smoothly on a user's hyperparameter is the model's
    business (a rate used in ``u >= rate``, say, has a zero derivative almost everywhere)."""
    from hsens_jax.engine.builtin import MaskedNet

    names = [n for n in DIFFERENTIABLE if n in hp]
    if not isinstance(spec.model, MaskedNet):
        names += [n for n, v in hp.items() if n not in DIFFERENTIABLE and n not in _ENGINE_STRUCTURAL
                  and jnp.issubdtype(jnp.result_type(v), jnp.floating)]
    return tuple(names)

OBJECTIVES = ("final_val_loss", "final_train_loss")
"""Named objectives: validation loss of the final state (the engine's
``final_val_loss``), or the full-batch training loss of the final state (without the
weight-decay term)."""


class LoopState(NamedTuple):
    """What the differentiated loop threads from step to step."""

    state: TrainState
    perm: jax.Array  # current epoch's permutation of the training set


def _step_fn(adjoint: str):
    if adjoint == "symmetric":
        return symmetric_step
    if adjoint == "autodiff":
        return functools.partial(train_step, guard=False)
    raise ValueError(f"adjoint={adjoint!r}: choose from {ADJOINTS}")


def _scan_steps(spec: TrainSpec, data: TrainData, hp, keys, loop: LoopState, t0, n: int,
                perm_ready: bool = False, adjoint: str = "autodiff") -> LoopState:
    """Steps ``t0, ..., t0 + n - 1`` (``t0`` may be traced, ``n`` static); the step index is
    carried rather than scanned over, so no array of length ``n`` is allocated.
    ``perm_ready``: ``loop.perm`` already is the permutation of step ``t0``'s epoch (not
    drawn again even if ``t0`` starts an epoch). ``adjoint``: see :func:`run_steps`."""
    first = jnp.asarray(t0, jnp.int32)
    step_fn = _step_fn(adjoint)

    def body(carry, _):
        loop, t = carry
        redraw = (t != first) if perm_ready else True
        perm, idx, dropout_key = batch_indices(spec, keys, loop.perm, t, redraw=redraw)
        state, _ = step_fn(spec, data, hp, loop.state, idx, dropout_key, t)
        return (LoopState(state, perm), t + 1), None

    return jax.lax.scan(body, (loop, first), None, length=n)[0][0]


def run_steps(spec: TrainSpec, data: TrainData, hp, keys, loop: LoopState, start: int, stop: int,
              checkpoint_every: int | None = None, adjoint: str = "autodiff") -> LoopState:
    """Run the engine's steps ``start, ..., stop - 1`` (Python ints) from ``loop``.

    Args:
      spec, data, hp: as in :func:`hsens_jax.engine.train.train`.
      keys: the (3,) keys of :func:`hsens_jax.engine.train.init_carry` (init, data order, dropout).
      loop: the state before step ``start``.
      checkpoint_every: None for one plain ``lax.scan``; an int ``s`` to cut the steps
        into segments of ``s`` (a shorter last segment takes the remainder), each under
        ``jax.checkpoint``, so reverse mode stores only segment-boundary states. The batch
        order of a segment's first step is drawn before the segment, outside the
        checkpoint: it is stored with the boundary state rather than drawn again when the
        segment is recomputed (with segments of whole epochs, see :func:`segment_for`,
        recomputation then draws no permutation at all when ``s`` is one epoch).
      adjoint: ``"autodiff"`` (the engine's step, differentiable in any mode) or
        ``"symmetric"`` (:func:`hsens_jax.hypergrad.adjoint.symmetric_step`: the same
        values, a cheaper reverse-mode derivative, no forward mode).
    Returns:
      the :class:`LoopState` after step ``stop - 1``.
    """
    n = stop - start
    if n <= 0:
        return loop
    scan = functools.partial(_scan_steps, spec, data, adjoint=adjoint)
    if checkpoint_every is None or checkpoint_every >= n:
        if checkpoint_every is None:
            return scan(hp, keys, loop, start, n)
        return jax.checkpoint(lambda l, h: scan(h, keys, l, start, n))(loop, hp)
    s = int(checkpoint_every)
    n_seg, r = divmod(n, s)
    segment = jax.checkpoint(lambda l, h, t0: scan(h, keys, l, t0, s, perm_ready=True), prevent_cse=False)

    def outer(l, t0):
        perm = batch_indices(spec, keys, l.perm, t0)[0]  # step t0's permutation, drawn once
        return segment(l._replace(perm=perm), hp, t0), None

    starts = jnp.arange(n_seg, dtype=jnp.int32) * s + start
    loop, _ = jax.lax.scan(outer, loop, starts)
    if r:
        loop = jax.checkpoint(lambda l, h: scan(h, keys, l, start + n_seg * s, r))(loop, hp)
    return loop


def default_segment(n_steps: int, state_to_residual: float = 1.0) -> int:
    """Checkpoint segment length ``s = ceil(sqrt(state_to_residual * n_steps))``.

    Checkpointing ``T`` steps in segments of ``s`` keeps ``T / s`` boundary states (``B``
    bytes each) and the residuals of one segment (``s`` steps of ``R`` bytes), so peak
    memory ``(T / s) B + s R`` is smallest at ``s = sqrt(T B / R)``: pass
    ``state_to_residual = B / R`` (see :func:`segment_for`); the default 1 gives the
    textbook ``ceil(sqrt(T))``. Either way memory is O(sqrt T) and the time is one extra
    forward pass (Griewank and Walther 2000; Chen et al. 2016).
    """
    return min(max(1, n_steps), max(1, math.ceil(math.sqrt(state_to_residual * n_steps))))


def _nbytes(tree) -> int:
    return sum(math.prod(a.shape) * _itemsize(a.dtype) for a in jax.tree.leaves(tree))


def _itemsize(dtype) -> int:
    """Bytes per element; a typed PRNG key (``jax.random.key``) counts its key data's bytes."""
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        data = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=dtype._impl)))
        return math.prod(data.shape) * jnp.dtype(data.dtype).itemsize
    return jnp.dtype(dtype).itemsize


def segment_for(spec: TrainSpec, data: TrainData, hp, key, adjoint: str = "symmetric") -> int:
    """Checkpoint segment for this problem: about a third of the memory-optimal one, in whole epochs.

    The memory optimum ``s*`` is :func:`default_segment` with ``B / R`` measured: ``B`` the
    size of the loop state (parameters, optimizer state, batch order), ``R`` the size of
    what reverse mode keeps for one step under ``adjoint`` (see :func:`run_steps`), both
    read off the traced program (``jax.eval_shape``; nothing is run).

    When ``s*`` is at least half an epoch, the segment is instead the whole number of
    epochs nearest ``s* / 3`` (at least one). Segments then start at epoch starts, whose
    permutations :func:`run_steps` draws once, in the forward sweep, instead of again in
    the recomputation (drawing a permutation sorts the training set: a large part of a
    short epoch's cost), and a segment's stored steps stay in cache during its backward
    pass. The price is memory: at most ~2.4x the optimum ``2 sqrt(T B R)`` (with the
    rounding to epochs), still O(sqrt T).

    Measured on the digits MLP with Adam (22 steps per epoch, float32, T = 10000,
    symmetric adjoint; 2-core CPU): segments of 11, 22, 44, 66 and 110 steps took 2.70,
    2.61, 2.87, 3.10 and 3.15 training runs and 31, 16, 10, 8.6 and 8.9 MiB; this rule
    picks 22 (``B / R`` = 0.63: ``s*`` = 80). Defaults there: 8, 22 and 22 steps at
    T = 100, 1000 and 10000 (with ``adjoint="autodiff"``, ``B / R`` = 0.21: 5, 22, 22).
    """
    spec1 = spec

    def sizes(hp, key):
        carry = init_carry(spec1, data, hp, key)
        loop = LoopState(carry.state, carry.perm)
        _, pullback = jax.vjp(lambda l, h: _scan_steps(spec1, data, h, carry.keys, l, 0, 1, adjoint=adjoint),
                              loop, hp)
        return loop, pullback

    shape = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype)  # noqa: E731
    loop, pullback = jax.eval_shape(sizes, jax.tree.map(shape, hp), shape(key))
    s = default_segment(spec.n_steps, _nbytes(loop) / max(1, _nbytes(pullback)))
    spe = spec.steps_per_epoch
    if 2 * s >= spe and spe < spec.n_steps:  # whole epochs, about a third of the optimum
        s = min(spec.n_steps, spe * max(1, round(s / (3 * spe))))
    return s


def _reinject(state: TrainState, hp) -> TrainState:
    """Put ``hp``'s (differentiable) values back into the optimizer state's hyperparameters.

    The optax ``inject_hyperparams`` state stores momentum, betas, eps, weight decay...
    at initialization; after a ``stop_gradient`` they must be re-read from ``hp`` so the
    differentiated steps still depend on them.
    """
    opt = state.opt_state
    if not hasattr(opt, "hyperparams"):  # a model's own optimizer is rebuilt from hp at every step
        return state
    hyper = {k: (jnp.asarray(hp[k]).astype(v.dtype) if k in hp else v) for k, v in opt.hyperparams.items()}
    return state._replace(opt_state=opt._replace(hyperparams=hyper))


def final_state(spec: TrainSpec, data: TrainData, hp, key, *, checkpoint_every: int | None = None,
                truncate: int | None = None, adjoint: str = "autodiff") -> TrainState:
    """The engine's :class:`~hsens_jax.engine.train.TrainState` after ``spec.n_steps`` steps.

    Args:
      spec, data, hp, key: as in :func:`hsens_jax.engine.train.train` (same key -> same
        initialization, batch order and dropout noise).
      checkpoint_every: segment length for ``jax.checkpoint`` (see :func:`run_steps`),
        or None.
      truncate: None, or ``k``: derivatives flow only through the last ``k`` steps (the
        first ``T - k`` steps and the initialization see ``stop_gradient(hp)``).
      adjoint: the differentiation rule of the differentiated steps (see :func:`run_steps`).
    Returns:
      the final training state (params, batch stats, optimizer state, divergence flags).
    """
    T = spec.n_steps
    cut = 0 if truncate is None else max(0, T - int(truncate))
    hp_init = jax.lax.stop_gradient(hp) if cut > 0 else hp
    carry = init_carry(spec, data, hp_init, key)
    loop = LoopState(carry.state, carry.perm)
    if cut > 0:
        loop = run_steps(spec, data, hp_init, carry.keys, loop, 0, cut)
        loop = jax.lax.stop_gradient(loop)
        loop = loop._replace(state=_reinject(loop.state, hp))
    loop = run_steps(spec, data, hp, carry.keys, loop, cut, T, checkpoint_every, adjoint)
    return loop.state


def _interleave(on, a, off, b):
    """The list with ``a[k]`` at position ``on[k]`` and ``b[k]`` at position ``off[k]``."""
    out = [None] * (len(on) + len(off))
    for i, v in zip(on, a):
        out[i] = v
    for i, v in zip(off, b):
        out[i] = v
    return out


def _depends(fn, n_out, *args):
    """Which of the first ``n_out`` outputs of ``fn(*args)`` depend on any input.

    A conservative data-flow pass over ``fn``'s jaxpr: an equation's outputs depend on the
    inputs when any of its operands does (constants and literals never do).
    """
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    live = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, jax.extend.core.Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return [not isinstance(v, jax.extend.core.Literal) and v in live for v in jaxpr.outvars[:n_out]]


def _tangent(x0, row):
    """The tangent dict ``{name: row[i]}`` (each cast to its hyperparameter's dtype)."""
    return {n: row[i].astype(jnp.result_type(x0[n])) for i, n in enumerate(x0)}


def forward_directions(spec: TrainSpec, data: TrainData, hp, key, wrt: tuple[str, ...], directions, *,
                       objective="final_val_loss"):
    """Forward-mode directional derivatives of the objective: ``(value, dY, diverged)``.

    Args:
      spec, data, hp, key: as in :func:`hsens_jax.engine.train.train`.
      wrt: the k hyperparameter names spanning the directions.
      directions: ``(m, k)`` array; row ``j`` is a direction ``v_j`` in the space of the
        ``wrt`` values (raw coordinates, in ``wrt`` order).
      objective: see :func:`objective_value`.
    Returns:
      the objective, ``(m,)`` derivatives ``dY = J v_j`` (``J = dY/d(wrt)``), and the
      engine's divergence flag. With the identity, ``dY`` is the gradient.

    The tangents ``d theta_t / d v_j`` are carried through the same ``lax.scan`` as the
    state, one per direction, for the floating leaves of the loop state that depend on
    ``lambda`` (parameters, batch statistics, optimizer moments, the injected
    hyperparameters in ``wrt``: found once by a data-flow pass over the step's jaxpr, so
    that constants such as Adam's betas carry no tangent). Per step, ``jax.linearize`` of
    the engine's step runs the primal once and its linear map is applied to each of the
    ``m`` tangents (on a CPU, m separate small products are faster than one batched
    product: ``jax.jacfwd``'s ``vmap`` of ``jvp`` measured ~1.25-1.3x slower at m = 2).
    With m = 1, one ``jvp`` of the whole run (measured ~20% faster than the loop).
    Memory: the state plus m tangents, whatever T. Franceschi et al. 2017, Micaelli and
    Storkey 2021.
    """
    x0 = {n: hp[n] for n in wrt}
    directions = jnp.asarray(directions)
    if directions.ndim != 2 or directions.shape[1] != len(wrt):
        raise ValueError(f"directions: expected shape (m, {len(wrt)}), got {directions.shape}")
    if directions.shape[0] == 1:  # one tangent: forward mode through the whole run (a batch of
        # one jvp, as jax.jacfwd does: measured faster than a plain jvp)
        f = unrolled_objective(spec, data, hp, key, wrt, objective=objective)

        def jvp(row):
            (value, diverged), (dy, _) = jax.jvp(f, (x0,), (_tangent(x0, row),))
            return dy, (value, diverged)

        dy, (value, diverged) = jax.vmap(jvp, out_axes=(0, None))(directions)
        return value, dy, diverged
    basis = [_tangent(x0, row) for row in directions]
    box = {}

    def init(x):
        c = init_carry(spec, data, {**hp, **x}, key)
        fl, other, box["meta"] = split_float(LoopState(c.state, c.perm))
        return fl, (other, c.keys)

    fl, lin, (other, keys) = jax.linearize(init, x0, has_aux=True)
    meta = box["meta"]
    n_fl = len(fl)

    def step_fn(fl, x, other, t):
        loop = merge_float(fl, other, meta)
        perm, idx, dropout_key = batch_indices(spec, keys, loop.perm, t)
        state, _ = train_step(spec, data, {**hp, **x}, loop.state, idx, dropout_key, t, guard=False)
        new_fl, new_other, _ = split_float(LoopState(state, perm))
        return new_fl, new_other

    # leaves with a tangent: those the initialization makes depend on x, closed under a step
    t0 = jnp.zeros((), jnp.int32)
    active = _depends(lambda x: init(x)[0], n_fl, x0)
    while True:
        on = [i for i in range(n_fl) if active[i]]
        off = [i for i in range(n_fl) if not active[i]]
        fo = [fl[i] for i in off]
        dep = _depends(lambda fa, x: step_fn(_interleave(on, fa, off, fo), x, other, t0)[0],
                       n_fl, [fl[i] for i in on], x0)
        grown = [a or b for a, b in zip(active, dep)]
        if grown == active:
            break
        active = grown
    tans = [[lin(e)[i] for i in on] for e in basis]

    def body(carry, _):
        fa, fo, other, tans, t = carry

        def f(fa, x):
            new_fl, new_other = step_fn(_interleave(on, fa, off, fo), x, other, t)
            return [new_fl[i] for i in on], ([new_fl[i] for i in off], new_other)

        new_fa, lin, (new_fo, new_other) = jax.linearize(f, fa, x0, has_aux=True)
        return (new_fa, new_fo, new_other, [lin(tn, e) for tn, e in zip(tans, basis)], t + 1), None

    carry = ([fl[i] for i in on], fo, other, tans, t0)
    (fa, fo, other, tans, _), _ = jax.lax.scan(body, carry, None, length=spec.n_steps)
    state = merge_float(_interleave(on, fa, off, fo), other, meta).state

    def obj(fa, x):
        return objective_value(spec, data, {**hp, **x},
                               merge_float(_interleave(on, fa, off, fo), other, meta).state, objective)

    value, lin = jax.linearize(obj, fa, x0)
    return value, jnp.stack([lin(tn, e) for tn, e in zip(tans, basis)]), state.diverged


def forward_gradient(spec: TrainSpec, data: TrainData, hp, key, wrt: tuple[str, ...], *,
                     objective="final_val_loss"):
    """Forward-mode hypergradient: ``(value, grad, diverged)`` as :func:`unrolled_gradient`.

    :func:`forward_directions` along the ``h = len(wrt)`` coordinate axes: time ``1 + c h``
    training runs, ``c`` the cost of one tangent relative to a training step; memory the
    state plus h tangents, whatever T. Equals reverse mode (tested). To spread the h
    tangents over several devices, see :func:`sharded_forward_gradient`.
    """
    x0 = {n: hp[n] for n in wrt}
    eye = jnp.eye(len(wrt), dtype=jnp.result_type(*x0.values()))
    value, dy, diverged = forward_directions(spec, data, hp, key, wrt, eye, objective=objective)
    return value, {n: dy[i] for i, n in enumerate(wrt)}, diverged


def sharded_forward_gradient(spec: TrainSpec, data: TrainData, hp, key, wrt: tuple[str, ...], devices, *,
                             objective="final_val_loss"):
    """Forward-mode hypergradient with the h tangent directions split over ``devices``.

    Each of the ``D = len(devices)`` devices trains the configuration (the primal,
    replicated) and carries ``ceil(h / D)`` of the tangents (:func:`forward_directions`
    on its rows of the identity, zero-padded to a multiple of D), all at once under
    ``jax.shard_map``: the wall time is about that of ``1 + c ceil(h / D)`` training runs
    instead of ``1 + c h``, for D times the work. Worth it when devices would otherwise
    idle: one configuration on a multi-core CPU split into one device per core
    (:func:`hsens_jax.use_cpu_cores`), or on several accelerators. The derivatives equal
    :func:`forward_gradient`'s (tested).

    Args:
      devices: a sequence of at least one device; at most h of them are used.
      other arguments: as :func:`forward_gradient`.
    Returns:
      ``(value, grad, diverged)`` as :func:`unrolled_gradient`.
    """
    from jax.sharding import Mesh, PartitionSpec

    h = len(wrt)
    devices = list(devices)[:h]
    n_dev = len(devices)
    if n_dev == 0:
        raise ValueError("sharded_forward_gradient: devices is empty")
    x0 = {n: hp[n] for n in wrt}
    rows = -(-h // n_dev) * n_dev
    eye = jnp.eye(rows, h, dtype=jnp.result_type(*x0.values()))  # rows past h are zero: discarded
    mesh = Mesh(np.array(devices), ("directions",))

    def local(rows):
        value, dy, diverged = forward_directions(spec, data, hp, key, wrt, rows, objective=objective)
        return value[None], dy, diverged[None]

    value, dy, diverged = jax.shard_map(local, mesh=mesh, in_specs=PartitionSpec("directions"),
                                        out_specs=PartitionSpec("directions"), check_vma=False)(eye)
    return value[0], {n: dy[i] for i, n in enumerate(wrt)}, diverged[0]


def full_train_loss(spec: TrainSpec, data: TrainData, hp, params, batch_stats=None) -> jax.Array:
    """Mean training loss over the whole training set at ``params`` (no weight decay).

    Deterministic (evaluation mode: no dropout, batch norm with running statistics).
    """
    variables = {"params": params, **({} if batch_stats is None else batch_stats)}
    hpf = full_hp(spec, hp)
    out, _ = spec.model.apply(variables, data.x_train, hpf, train=False)
    return spec.model.loss_fn(spec.task)(out, {"x": data.x_train, "y": data.y_train}, hpf)


def objective_value(spec: TrainSpec, data: TrainData, hp, state: TrainState,
                    objective: str | Callable[..., Any] = "final_val_loss") -> jax.Array:
    """Scalar objective of a final state.

    Args:
      objective: ``"final_val_loss"`` (:func:`hsens_jax.engine.train.evaluate`'s loss),
        ``"final_train_loss"`` (:func:`full_train_loss`), or a callable
        ``objective(spec, data, hp, state) -> scalar``.
    """
    if callable(objective):
        return jnp.asarray(objective(spec, data, hp, state))
    if objective == "final_val_loss":
        return evaluate(spec, data, hp, state)["loss"]
    if objective == "final_train_loss":
        return full_train_loss(spec, data, hp, state.params, state.batch_stats)
    raise ValueError(f"objective={objective!r}: choose from {OBJECTIVES} or pass a callable")


def unrolled_objective(spec: TrainSpec, data: TrainData, hp, key, wrt: tuple[str, ...], *,
                       objective="final_val_loss", checkpoint_every=None, truncate=None, adjoint="autodiff"):
    """``f(x) -> (Y, diverged)`` with ``x`` a dict of the ``wrt`` hyperparameters.

    The other entries of ``hp`` are held fixed. ``f`` is what :func:`unrolled_gradient`
    differentiates and what the tests difference numerically.
    """

    def f(x):
        h = {**hp, **x}
        state = final_state(spec, data, h, key, checkpoint_every=checkpoint_every, truncate=truncate,
                            adjoint=adjoint)
        return objective_value(spec, data, h, state, objective), state.diverged

    return f


def unrolled_gradient(spec: TrainSpec, data: TrainData, hp, key, wrt: tuple[str, ...], *,
                      mode: str = "checkpointed", objective="final_val_loss",
                      checkpoint_every: int | None = None, truncate: int | None = None,
                      adjoint: str = "symmetric"):
    """Hypergradient through the unrolled training run (pure; jit/vmap-able).

    Args:
      spec, data, hp, key: as in :func:`hsens_jax.engine.train.train`; ``hp`` from
        :func:`hsens_jax.engine.train.hp_from_values` (scalars: one configuration).
      wrt: names among :func:`differentiable` of the program.
      mode: ``"reverse"``, ``"checkpointed"``, ``"forward"`` or ``"truncated"``.
      objective: see :func:`objective_value`.
      checkpoint_every: segment length (``"checkpointed"``: default
        :func:`segment_for`, memory-optimal; ``"truncated"``: optional).
      truncate: number of final steps differentiated through (``"truncated"`` only).
      adjoint: reverse modes' rule through a step: ``"symmetric"`` (default: Hessian-vector
        products, :mod:`hsens_jax.hypergrad.adjoint`; the plain rule with batch norm) or
        ``"autodiff"`` (JAX's transpose of the step). Same result to rounding.
    Returns:
      ``(value, grad, diverged)``: the objective, a dict ``name -> dY/dname`` (raw
      coordinates), and the engine's divergence flag.

    References:
      Maclaurin et al. 2015 (reverse); Franceschi et al. 2017 (forward and reverse);
      Chen et al. 2016 (sqrt(T) checkpointing); Wu et al. 2018 (truncation bias).
    """
    x0 = {n: hp[n] for n in wrt}
    _step_fn(adjoint)  # validates it
    if mode == "checkpointed":
        checkpoint_every = checkpoint_every or segment_for(spec, data, hp, key, adjoint)
    elif mode in ("reverse", "forward"):
        checkpoint_every = None
    f = unrolled_objective(spec, data, hp, key, wrt, objective=objective,
                           checkpoint_every=checkpoint_every,
                           truncate=truncate if mode == "truncated" else None, adjoint=adjoint)
    if mode == "forward":
        value, grad, diverged = forward_gradient(spec, data, hp, key, wrt, objective=objective)
    elif mode in ("reverse", "checkpointed", "truncated"):
        (value, diverged), grad = jax.value_and_grad(f, has_aux=True)(x0)
    else:
        raise ValueError(f"mode={mode!r}: unrolled modes are 'reverse', 'checkpointed', 'forward', 'truncated'")
    return value, grad, diverged
