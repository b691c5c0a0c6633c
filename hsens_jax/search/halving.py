"""Successive halving, Hyperband and ASHA over a vectorized population of runs.

Every run of a population (configuration x seed x fold) is trained by the engine's own loop,
in segments: :func:`hsens_jax.engine.train.init_carry`, then
:func:`~hsens_jax.engine.train.advance` by ``segment`` steps at a time, then
:func:`~hsens_jax.engine.train.finalize`. A run trained to the full budget this way equals the
same run trained by :func:`hsens_jax.run_sweep` (the learning-rate schedule, the evaluation
points and the data order all follow the full budget; only the place where training pauses
changes). Between segments the carries of the runs still training are *compacted*: each call
gathers only them into chunks of ``chunk_size`` runs (fewer: the next power of two, the
engine's :func:`~hsens_jax.engine.sweep.chunk_shape`), so a stopped run costs no compute. One
compiled program per chunk shape serves every rung, bracket and wave (the segment length is
the greatest common divisor of every rung's step count).

Resources are in the unit of the budget: ``epochs`` or ``steps``, fixed (``fixed={"epochs":
27}``); the budget is the largest resource ``R``. Rungs are ``r, r*eta, r*eta**2, ...`` below
``R``, then ``R`` itself (:func:`rung_resources`); a resource in epochs is trained for
``ceil(epochs * steps_per_epoch)`` steps, as the engine counts a budget.

* :func:`successive_halving` (Jamieson and Talwalkar 2016): all configurations train to the
  first rung; at every rung but the last, of the ``n`` configurations there, the best
  ``max(1, n // eta)`` continue (ranked by ``objective`` at that rung, the mean over a
  configuration's seeds and folds, in its direction; NaN last; ties by configuration index);
  the survivors of the rung before last train to ``R``.
* :func:`hyperband` (Li et al. 2018): brackets ``s = s_max, ..., 0`` of successive halving
  with ``n_s = ceil((s_max + 1) / (s + 1) * eta**s)`` new configurations starting at resource
  ``R * eta**-s``; ``s_max = floor(log_eta(R / min_resource))``.
* :func:`asha` (Li et al. 2020, asynchronous successive halving) in waves: each wave fills
  ``wave`` slots with promotions first (from the top rung down: a configuration that
  completed rung ``k`` and is among the best ``n_k // eta`` of the ``n_k`` configurations
  that completed rung ``k`` so far moves to rung ``k + 1``), then new configurations (rung 0).
  It ends when every configuration has started and no promotion is left.

Stopped configurations keep the results of the state they stopped in (every metric of
:func:`hsens_jax.run_sweep`, their unreached curve points holding that state's scores) and
are flagged: ``stopped`` (per run, True for a run halted at a rung or stopped by
``patience``), ``stopped_step`` (its step count then, -1 if not stopped), ``rung`` (per
configuration, the last rung completed) and ``resource_steps`` (steps trained).
``meta["halving"]`` records every rung: its resource, the configurations there, their
scores and the ones kept.

References: K. Jamieson, A. Talwalkar, "Non-stochastic best arm identification and
hyperparameter optimization", AISTATS 2016; L. Li, K. Jamieson, G. DeSalvo, A. Rostamizadeh,
A. Talwalkar, "Hyperband: a novel bandit-based approach to hyperparameter optimization",
JMLR 18 (2018); L. Li, K. Jamieson, A. Rostamizadeh, E. Gonina, J. Ben-Tzur, M. Hardt,
B. Recht, A. Talwalkar, "A system for massively parallel hyperparameter tuning", MLSys 2020.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hsens_jax.engine import hyperparameters as hpm
from hsens_jax.engine.sweep import _device_description, chunk_shape, plan_sweep
from hsens_jax.engine.train import TrainSpec, advance, evaluate, finalize, init_carry, prepare_data
# The engine's own completion of a run that stopped early (unreached curve points hold the
# stopped state's scores); train() uses it for patience, halving for runs halted at a rung.
from hsens_jax.engine.train import _final_evaluation
from hsens_jax.progress import Progress
from hsens_jax.results import SweepResult, check_direction
from hsens_jax.space import Space

__all__ = ["Population", "asha", "hyperband", "rung_resources", "successive_halving"]


def rung_resources(min_resource: float, max_resource: float, eta: int) -> list[float]:
    """``[r, r*eta, r*eta**2, ...]`` below ``max_resource``, then ``max_resource``.

    >>> rung_resources(1, 27, 3)
    [1, 3, 9, 27]
    >>> rung_resources(2, 20, 3)
    [2, 6, 18, 20]
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, np.integer)) or eta < 2:
        raise ValueError(f"eta must be an integer >= 2, got {eta!r}")
    if not (isinstance(min_resource, (int, float, np.number)) and min_resource > 0):
        raise ValueError(f"min_resource must be a positive number, got {min_resource!r}")
    if not min_resource < max_resource:
        raise ValueError(f"min_resource={min_resource!r} must be smaller than the budget {max_resource!r} "
                         f"(the largest resource)")
    out, r = [], min_resource
    while r < max_resource:
        out.append(r)
        r = r * eta
    return out + [max_resource]


# ----------------------------------------------------------------------------- the population


class _Programs(NamedTuple):
    init: Any
    advance: Any
    finish: Any
    gather: Any
    scatter: Any


@functools.lru_cache(maxsize=64)
def _programs(spec: TrainSpec, folds: bool, segment: int) -> _Programs:
    """The jitted, vmapped programs of one spec (one compilation per chunk shape each)."""
    fold_axis = 0 if folds else None

    def init(data, hp, seed, fold):
        return init_carry(spec, data, hp, jax.random.key(seed), fold)

    def adv(data, hp, carry, t0):  # the new carry, and its validation scores (a rung may end here)
        carry = advance(spec, data, hp, carry, t0, segment)
        return carry, evaluate(spec, data, hp, carry.state, carry.fold)

    def finish(data, hp, carry, t_end):
        return finalize(spec, _final_evaluation(spec, data, hp, carry, t_end), data, hp)

    def gather(carry, idx):
        return jax.tree.map(lambda a: a[idx], carry)

    def scatter(carry, idx, part):
        # padded rows repeat the last run of a chunk: the same values are written twice
        return jax.tree.map(lambda a, b: a.at[idx].set(b), carry, part)

    return _Programs(
        init=jax.jit(jax.vmap(init, in_axes=(None, 0, 0, fold_axis))),
        advance=jax.jit(jax.vmap(adv, in_axes=(None, 0, 0, 0))),
        finish=jax.jit(jax.vmap(finish, in_axes=(None, 0, 0, 0))),
        gather=jax.jit(gather),
        scatter=jax.jit(scatter, donate_argnums=0),
    )


class Population:
    """Runs of one compiled program, trained in segments, only the runs asked for computed.

    Args:
      spec: the program (:class:`hsens_jax.engine.train.TrainSpec`); its ``n_steps`` is the
        full budget, which fixes the schedule and the evaluation points.
      data: :class:`hsens_jax.engine.train.TrainData` on the device.
      hp: traced hyperparameters of every run, ``{name: (R, ...) array}``.
      seeds: (R,) integer seed of each run (``jax.random.key(seed)``, as the sweep).
      folds: (R,) fold of each run, or None without cross-validation.
      segment: steps per call of the training program (every target must be a multiple).
      chunk_size: runs per call at most (fewer runs: the next power of two).
      devices: devices to shard each chunk's runs over (default: all local devices).

    ``steps`` (R,) counts the steps each run has trained; :meth:`scores` are the validation
    scores of each run's current state (computed by the training program after each segment).
    """

    def __init__(self, spec: TrainSpec, data, hp: Mapping[str, Any], seeds, folds=None, *, segment: int,
                 chunk_size: int = 256, devices=None):
        if spec.n_steps % segment:
            raise ValueError(f"segment={segment} must divide the budget of {spec.n_steps} steps")
        self.spec, self.data, self.segment, self.chunk_size = spec, data, int(segment), int(chunk_size)
        self.hp = {n: np.asarray(a) for n, a in hp.items()}
        self.seeds = np.asarray(seeds)
        self.n_runs = len(self.seeds)
        self.folds = None if folds is None else np.asarray(folds, np.int32)
        self.steps = np.zeros(self.n_runs, np.int64)
        self._scores: dict[str, np.ndarray] = {}
        self.programs = _programs(spec, folds is not None, self.segment)
        devices = list(devices or jax.local_devices())
        self.n_devices = len(devices)
        self._runs = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
        self.carry = None
        self._init()

    def _chunks(self, runs: np.ndarray):
        """``(runs of the chunk, padded indices)`` covering ``runs``."""
        size = chunk_shape(len(runs), self.chunk_size, self.n_devices)
        for start in range(0, len(runs), size):
            chunk = runs[start:start + size]
            yield chunk, np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk))])

    def _put(self, tree):
        return jax.device_put(tree, self._runs)

    def _hp(self, idx):
        return self._put({n: a[idx] for n, a in self.hp.items()})

    def _init(self):
        parts, rows = [], []
        for chunk, idx in self._chunks(np.arange(self.n_runs)):
            fold = None if self.folds is None else self._put(jnp.asarray(self.folds[idx]))
            parts.append(self.programs.init(self.data, self._hp(idx), self._put(jnp.asarray(self.seeds[idx])), fold))
            rows.append(len(chunk))
        self.carry = jax.tree.map(lambda *a: jnp.concatenate([x[:n] for x, n in zip(a, rows)]), *parts)

    def stopped(self, runs) -> np.ndarray:
        """Whether each of ``runs`` was stopped by its patience (False without one)."""
        if self.carry.stop is None:
            return np.zeros(len(runs), bool)
        return np.asarray(self.carry.stop.stopped)[np.asarray(runs)]

    def advance_to(self, runs, targets) -> None:
        """Train each of ``runs`` until it has ``targets`` steps (a number or one per run; multiples
        of ``segment``), or until its patience stops it. Runs reaching their target (or stopping)
        leave the chunks of the next segment."""
        runs = np.asarray(runs, np.int64)
        targets = np.broadcast_to(np.asarray(targets, np.int64), runs.shape)
        if np.any(targets % self.segment) or np.any(targets > self.spec.n_steps):
            raise ValueError(f"targets {sorted(set(targets.tolist()))} must be multiples of the segment "
                             f"({self.segment} steps) up to the budget ({self.spec.n_steps} steps)")
        goal = dict(zip(runs.tolist(), targets.tolist()))
        pending = runs[(self.steps[runs] < targets) & ~self.stopped(runs)]
        while len(pending):
            for chunk, idx in self._chunks(pending):
                jidx = jnp.asarray(idx)
                part = self._put(self.programs.gather(self.carry, jidx))
                t0 = self._put(jnp.asarray(self.steps[idx], jnp.int32))
                part, scores = self.programs.advance(self.data, self._hp(idx), part, t0)
                self.carry = self.programs.scatter(self.carry, jidx, part)
                for name, a in scores.items():
                    self._scores.setdefault(name, np.full(self.n_runs, np.nan))[chunk] = np.asarray(a)[: len(chunk)]
            self.steps[pending] += self.segment
            want = np.array([goal[r] for r in pending.tolist()])
            pending = pending[(self.steps[pending] < want) & ~self.stopped(pending)]

    def _map(self, fn, runs, *extra) -> dict[str, np.ndarray]:
        runs = np.asarray(runs, np.int64)
        out: dict[str, list] = {}
        for chunk, idx in self._chunks(runs):
            jidx = jnp.asarray(idx)
            part = self._put(self.programs.gather(self.carry, jidx))
            args = [self._put(jnp.asarray(e[idx], jnp.int32)) for e in extra]
            res = fn(self.data, self._hp(idx), part, *args)
            for name, a in res.items():
                out.setdefault(name, []).append(np.asarray(a)[: len(chunk)])
        return {n: np.concatenate(v) for n, v in out.items()}

    def scores(self, runs) -> dict[str, np.ndarray]:
        """Validation loss and metrics of ``runs`` in their current state, ``{name: (len(runs),)}``
        (NaN for a run not trained yet)."""
        runs = np.asarray(runs, np.int64)
        return {name: a[runs] for name, a in self._scores.items()}

    def finish(self, runs) -> dict[str, np.ndarray]:
        """The engine's final metrics of ``runs`` (:func:`hsens_jax.engine.train.finalize`), each in
        the state it is in: a run short of the budget counts as stopped there."""
        return self._map(self.programs.finish, runs, self.steps)


# ----------------------------------------------------------------------------- shared set-up


@dataclass
class _Setup:
    plan: Any
    spec: TrainSpec
    data: Any
    configs: dict
    seeds: np.ndarray
    n_folds: int
    score_key: str
    direction: str
    unit: str
    budget: float
    steps_per_unit: int
    dataset: dict


def _score_key(objective: str, metric_names) -> str:
    for prefix in ("final_val_", "val_"):
        if objective.startswith(prefix) and objective[len(prefix):] in metric_names:
            return objective[len(prefix):]
    allowed = [f"final_val_{m}" for m in sorted(metric_names)]
    raise ValueError(f"objective {objective!r}: halving ranks runs by a validation score at each rung; "
                     f"choose one of {allowed}")


def _setup(dataset, space, configs, *, model, fixed, seeds, cv, n_evals, eval_batch_size, patience, objective,
           direction) -> _Setup:
    if not isinstance(space, Space):
        raise TypeError(f"space must be a hsens_jax.Space, got {type(space).__name__}")
    fixed = dict(fixed or {})
    in_space = [n for n in ("epochs", "steps") if n in space.names]
    if in_space:
        raise ValueError(f"{in_space[0]!r} is in the space, but halving spends it as the resource: fix the "
                         f"budget instead (fixed={{'{in_space[0]}': ...}})")
    units = [n for n in ("epochs", "steps") if n in fixed]
    if len(units) != 1:
        raise ValueError("give the largest resource as the budget: exactly one of fixed['epochs'] or "
                         "fixed['steps']")
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or len(seeds) == 0 or seeds.dtype.kind not in "iu" or len(set(seeds.tolist())) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, got {seeds.tolist()}")
    configs = {n: np.asarray(configs[n], float) for n in space.names}
    plan = plan_sweep(dataset, space, configs, model=model, fixed=fixed, cv=cv, n_evals=n_evals,
                      eval_batch_size=eval_batch_size, patience=patience)
    if len(plan.groups) != 1:
        keys = [g.key for g in plan.groups[:3]]
        raise ValueError(f"halving trains one compiled program, but these configurations need {len(plan.groups)} "
                         f"(their batch size or static hyperparameters differ: groups {keys}...); fix those "
                         f"hyperparameters, or run one search per value")
    spec = plan.groups[0].spec
    data = prepare_data(dataset, eval_batch_size, plan.dtype, plan.folds)
    metric_names = {k[len("final_val_"):] for k in plan.directions if k.startswith("final_val_")}
    key = _score_key(objective, metric_names)
    name = f"final_val_{key}"
    direction = check_direction(direction) if direction is not None else plan.directions[name]
    unit = units[0]
    described = {"name": dataset.name, "task": dataset.task, "input_shape": list(dataset.input_shape),
                 "output_dim": dataset.output_dim, "n_train": dataset.n_train, "n_val": dataset.n_val}
    return _Setup(plan, spec, data, configs, seeds, len(plan.folds) if plan.folds else 1, key, direction, unit,
                  float(fixed[unit]), spec.steps_per_epoch if unit == "epochs" else 1, described)


def _to_steps(setup: _Setup, resource: float) -> int:
    steps = math.ceil(resource * setup.steps_per_unit - 1e-9) if setup.unit == "epochs" else resource
    if steps != int(steps) or steps < 1:
        raise ValueError(f"resource {resource!r} {setup.unit} is not a whole number of steps (>= 1)")
    return int(steps)


def _population(setup: _Setup, rows: np.ndarray, segment: int, chunk_size: int, devices) -> Population:
    s, f = len(setup.seeds), setup.n_folds
    runs = np.arange(len(rows) * s * f)
    cfg = rows[runs // (s * f)]
    hp = hpm.encode(setup.plan.resolved, cfg, setup.spec.model, setup.plan.resolved.choices, setup.plan.dtype)
    seeds = setup.seeds[(runs // f) % s]
    folds = runs % f if f > 1 else None
    return Population(setup.spec, setup.data, hp, seeds, folds, segment=segment, chunk_size=chunk_size,
                      devices=devices)


def _runs_of(configs: np.ndarray, per_config: int) -> np.ndarray:
    return (np.asarray(configs)[:, None] * per_config + np.arange(per_config)[None, :]).ravel()


def _config_scores(pop: Population, configs, per_config: int, key: str) -> np.ndarray:
    """The validation score ``key`` of each configuration: the mean over its runs (seeds, folds)."""
    values = pop.scores(_runs_of(configs, per_config))[key].reshape(len(configs), per_config)
    return np.mean(values.astype(float), axis=1)


def _best(configs: np.ndarray, scores: np.ndarray, n: int, direction: str) -> np.ndarray:
    signed = scores if direction == "minimize" else -scores
    order = np.lexsort((configs, np.where(np.isnan(signed), np.inf, signed)))
    return configs[order[:n]]


def _result(setup: _Setup, pop: Population, rows_of_pop: np.ndarray, space: Space, rung: np.ndarray,
            halted: np.ndarray, history: dict, n_evals: int, t_start: float, devices, method: str,
            extra_meta=None) -> SweepResult:
    """A :class:`SweepResult` of the population (configurations ``rows_of_pop`` of the setup)."""
    s, f = len(setup.seeds), setup.n_folds
    per = s * f
    k = len(rows_of_pop)
    runs = np.arange(k * per)
    out = pop.finish(runs)
    metrics: dict[str, np.ndarray] = {}
    lead = (k, s, f) if f > 1 else (k, s)
    for name, a in out.items():
        if name.endswith("_curve") and a.shape[1] < n_evals:
            a = np.concatenate([a, np.full((len(a), n_evals - a.shape[1]), np.nan, a.dtype)], 1)
        metrics[name] = a.reshape(lead + a.shape[1:])
    halted_runs = np.repeat(halted, per)
    patience_stopped = np.asarray(out["stopped"]) if "stopped" in out else np.zeros(len(runs), bool)
    stopped = halted_runs | patience_stopped
    steps = pop.steps[runs]
    stopped_step = np.where(patience_stopped, np.asarray(out.get("stopped_step", np.full(len(runs), -1))),
                            np.where(halted_runs, steps, -1))
    metrics["stopped"] = stopped.reshape(lead)
    metrics["stopped_step"] = stopped_step.astype(np.int32).reshape(lead)
    metrics["rung"] = rung.astype(np.int32)
    metrics["resource_steps"] = steps.reshape(k, per).max(axis=1)
    plan = setup.plan
    metrics["param_count"] = plan.param_count[rows_of_pop]
    metrics["flops_per_example"] = plan.flops[rows_of_pop]
    metrics["group"] = np.zeros(k, int)
    wall = time.perf_counter() - t_start
    metrics["group_wall_time"] = np.full(k, wall)
    spec = setup.spec
    curve_steps = np.full((k, n_evals), np.nan)
    curve_steps[:, : spec.n_points] = np.minimum(np.arange(1, spec.n_points + 1) * spec.eval_every, spec.n_steps)
    metrics["curve_steps"] = curve_steps
    configs = {n: c[rows_of_pop] for n, c in setup.configs.items()}
    fixed = {n: _py(v[0]) for n, v in plan.resolved.values.items()
             if n in plan.resolved.explicit and n not in space.names}
    meta = {
        "fixed": fixed, "model": plan.model.name, "seeds": setup.seeds.tolist(),
        "cv": None if f == 1 else f, "n_folds": f if f > 1 else None, "n_evals": n_evals,
        "dataset": setup.dataset,
        "device": _device_description(jax.local_devices()[: pop.n_devices]),
        "space": space.to_dict(), "directions": dict(plan.directions), "n_configs": k, "n_seeds": s,
        "design": {"kind": method, **(extra_meta or {})},
        "halving": history, "wall_time": wall,
    }
    return SweepResult(space, configs, setup.seeds, metrics, meta)


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def _check_common(chunk_size):
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _halve(pop: Population, setup: _Setup, configs: np.ndarray, rung_steps: list[int], eta: int, rung: np.ndarray,
           halted: np.ndarray, bar: Progress, label: str) -> list[dict]:
    """Successive halving of ``configs`` (population rows) over ``rung_steps``; returns the rung records."""
    per = len(setup.seeds) * setup.n_folds
    alive = np.asarray(configs)
    records = []
    for i, steps in enumerate(rung_steps):
        bar.note(f"{label}rung {i + 1}/{len(rung_steps)}: {len(alive)} configurations to {steps} steps")
        pop.advance_to(_runs_of(alive, per), steps)
        rung[alive] = i
        scores = _config_scores(pop, alive, per, setup.score_key)
        last = i == len(rung_steps) - 1
        keep = alive if last else _best(alive, scores, max(1, len(alive) // eta), setup.direction)
        halted[np.setdiff1d(alive, keep)] = True
        records.append({"rung": i, "steps": int(steps), "configs": alive.tolist(),
                        "scores": [None if np.isnan(v) else float(v) for v in scores], "kept": keep.tolist()})
        alive = np.sort(keep)
    return records


def _segment(all_rung_steps: Sequence[int]) -> int:
    return functools.reduce(math.gcd, [int(s) for s in all_rung_steps])


def successive_halving(
    dataset,
    space: Space,
    configs: Mapping[str, np.ndarray],
    *,
    min_resource: float,
    eta: int = 3,
    objective: str = "final_val_loss",
    direction: str | None = None,
    model: Any = "mlp",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    cv: int | None = None,
    chunk_size: int = 256,
    n_evals: int = 20,
    eval_batch_size: int = 512,
    patience=None,
    devices=None,
    run_dir=None,
    progress: bool = True,
) -> SweepResult:
    """Successive halving of the configurations ``configs`` (see the module docstring).

    Args:
      dataset, space, configs, model, seeds, cv, chunk_size, n_evals, eval_batch_size,
        patience, devices: as in :func:`hsens_jax.run_sweep`. Every configuration must fit one
        compiled program (the same batch size and static hyperparameters).
      fixed: fixed hyperparameters; the budget ``epochs`` or ``steps`` here is the largest
        resource ``R``.
      min_resource: the first rung's resource, in the budget's unit.
      eta: the halving rate (an integer >= 2): the best ``1/eta`` of each rung continue.
      objective: the validation score that ranks configurations at each rung
        (``final_val_loss`` or ``final_val_<metric>``; its value at the rung).
      direction: ``"minimize"`` / ``"maximize"`` (default: the objective's own).
      run_dir: if given, the result is saved there (:meth:`SweepResult.save`) when done.
      progress: show progress notes on stderr.

    Returns:
      A :class:`hsens_jax.results.SweepResult` of every configuration (halted ones with the
      results of their last rung; flags ``stopped``, ``stopped_step``, ``rung``,
      ``resource_steps``; ``meta["halving"]``).
    """
    _check_common(chunk_size)
    t_start = time.perf_counter()
    setup = _setup(dataset, space, configs, model=model, fixed=fixed, seeds=seeds, cv=cv, n_evals=n_evals,
                   eval_batch_size=eval_batch_size, patience=patience, objective=objective, direction=direction)
    resources = rung_resources(min_resource, setup.budget, eta)
    rung_steps = _steps_of(setup, resources)
    k = len(next(iter(setup.configs.values())))
    bar = Progress(None, desc="halving", enabled=progress)
    try:
        pop = _population(setup, np.arange(k), _segment(rung_steps), chunk_size, devices)
        rung, halted = np.full(k, -1), np.zeros(k, bool)
        records = _halve(pop, setup, np.arange(k), rung_steps, eta, rung, halted, bar, "")
    finally:
        bar.close()
    history = {"method": "successive_halving", "eta": eta, "objective": objective, "direction": setup.direction,
               "unit": setup.unit, "resources": resources, "rungs": records}
    result = _result(setup, pop, np.arange(k), space, rung, halted, history, n_evals, t_start, devices,
                     "successive_halving", {"eta": eta, "min_resource": min_resource})
    if run_dir is not None:
        result.save(run_dir)
    return result


def _steps_of(setup: _Setup, resources) -> list[int]:
    steps = [_to_steps(setup, r) for r in resources]
    if len(set(steps)) != len(steps):
        raise ValueError(f"rungs {resources} {setup.unit} give the step counts {steps}: two rungs train the same "
                         f"number of steps; choose a larger min_resource")
    return steps


def hyperband_brackets(min_resource: float, max_resource: float, eta: int) -> list[tuple[int, float]]:
    """Hyperband's brackets ``[(n_s, r_s) for s = s_max, ..., 0]``: ``n_s`` configurations starting
    at resource ``r_s = R * eta**-s`` (Li et al. 2018, algorithm 1).

    >>> hyperband_brackets(1, 27, 3)
    [(27, 1.0), (12, 3.0), (6, 9.0), (4, 27.0)]
    """
    rung_resources(min_resource, max_resource, eta)  # checks the arguments
    s_max = 0
    while max_resource / eta ** (s_max + 1) >= min_resource * (1 - 1e-12):
        s_max += 1
    return [(math.ceil((s_max + 1) / (s + 1) * eta ** s), max_resource / eta ** s) for s in range(s_max, -1, -1)]


def hyperband(
    dataset,
    space: Space,
    *,
    min_resource: float,
    eta: int = 3,
    design: str = "random",
    seed: int = 0,
    objective: str = "final_val_loss",
    direction: str | None = None,
    model: Any = "mlp",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    cv: int | None = None,
    chunk_size: int = 256,
    n_evals: int = 20,
    eval_batch_size: int = 512,
    patience=None,
    devices=None,
    run_dir=None,
    progress: bool = True,
) -> SweepResult:
    """Hyperband: brackets of successive halving (see the module docstring and
    :func:`hyperband_brackets`) over configurations drawn from ``space`` by ``design``
    (:func:`hsens_jax.design.make`, ``seed``). Arguments as :func:`successive_halving`.

    The result holds every configuration of every bracket, in bracket order, with the
    per-configuration metric ``bracket`` (0 for the most exploratory) besides the flags of
    :func:`successive_halving`.
    """
    from hsens_jax import design as design_mod

    _check_common(chunk_size)
    t_start = time.perf_counter()
    fixed = dict(fixed or {})
    unit = "epochs" if "epochs" in fixed else "steps"
    if unit not in fixed:
        raise ValueError("give the largest resource as the budget: exactly one of fixed['epochs'] or fixed['steps']")
    brackets = hyperband_brackets(min_resource, float(fixed[unit]), eta)
    total = sum(n for n, _ in brackets)
    configs = design_mod.make(space, design, n=total, seed=seed)
    setup = _setup(dataset, space, configs, model=model, fixed=fixed, seeds=seeds, cv=cv, n_evals=n_evals,
                   eval_batch_size=eval_batch_size, patience=patience, objective=objective, direction=direction)
    plans = []
    for n, r in brackets:
        plans.append(_steps_of(setup, rung_resources(r, setup.budget, eta) if r < setup.budget else [setup.budget]))
    segment = _segment([s for steps in plans for s in steps])
    bar = Progress(None, desc="hyperband", enabled=progress)
    rung, halted, bracket = np.full(total, -1), np.zeros(total, bool), np.zeros(total, int)
    records = []
    try:
        pop = _population(setup, np.arange(total), segment, chunk_size, devices)
        start = 0
        for b, ((n, r), steps) in enumerate(zip(brackets, plans)):
            rows = np.arange(start, start + n)
            bracket[rows] = b
            recs = _halve(pop, setup, rows, steps, eta, rung, halted, bar, f"bracket {b + 1}/{len(brackets)}, ")
            records.append({"bracket": b, "n": n, "min_resource": r, "rungs": recs})
            start += n
    finally:
        bar.close()
    history = {"method": "hyperband", "eta": eta, "objective": objective, "direction": setup.direction,
               "unit": setup.unit, "brackets": records}
    result = _result(setup, pop, np.arange(total), space, rung, halted, history, n_evals, t_start, devices,
                     "hyperband", {"eta": eta, "min_resource": min_resource, "design": design, "seed": seed})
    result.metrics["bracket"] = bracket
    if run_dir is not None:
        result.save(run_dir)
    return result


def asha(
    dataset,
    space: Space,
    *,
    n_configs: int,
    min_resource: float,
    eta: int = 3,
    wave: int = 16,
    design: str = "random",
    seed: int = 0,
    objective: str = "final_val_loss",
    direction: str | None = None,
    model: Any = "mlp",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    cv: int | None = None,
    chunk_size: int = 256,
    n_evals: int = 20,
    eval_batch_size: int = 512,
    patience=None,
    devices=None,
    run_dir=None,
    progress: bool = True,
) -> SweepResult:
    """Asynchronous successive halving in waves of ``wave`` jobs (see the module docstring):
    ``n_configs`` configurations drawn from ``space`` by ``design`` (``seed``). Other arguments
    as :func:`successive_halving`. ``meta["halving"]["waves"]`` lists each wave's jobs
    ``(configuration, rung)``."""
    from hsens_jax import design as design_mod

    _check_common(chunk_size)
    for name, v in (("n_configs", n_configs), ("wave", wave)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    t_start = time.perf_counter()
    configs = design_mod.make(space, design, n=n_configs, seed=seed)
    setup = _setup(dataset, space, configs, model=model, fixed=fixed, seeds=seeds, cv=cv, n_evals=n_evals,
                   eval_batch_size=eval_batch_size, patience=patience, objective=objective, direction=direction)
    resources = rung_resources(min_resource, setup.budget, eta)
    rung_steps = _steps_of(setup, resources)
    per = len(setup.seeds) * setup.n_folds
    rung = np.full(n_configs, -1)
    promoted = np.zeros(n_configs, bool)  # moved beyond its last completed rung
    scores = np.full((len(rung_steps), n_configs), np.nan)
    waves, started = [], 0
    bar = Progress(None, desc="asha", enabled=progress)
    try:
        pop = _population(setup, np.arange(n_configs), _segment(rung_steps), chunk_size, devices)
        while True:
            jobs: list[tuple[int, int]] = []
            for k in range(len(rung_steps) - 2, -1, -1):
                done = np.nonzero(rung >= k)[0]
                top = _best(done, scores[k, done], len(done) // eta, setup.direction)
                for c in top:
                    if rung[c] == k and not promoted[c] and len(jobs) < wave:
                        jobs.append((int(c), k + 1))
                        promoted[c] = True
            while len(jobs) < wave and started < n_configs:
                jobs.append((started, 0))
                started += 1
            if not jobs:
                break
            bar.note(f"wave {len(waves) + 1}: {len(jobs)} jobs ({started}/{n_configs} configurations started)")
            cfg = np.array([c for c, _ in jobs])
            target = np.array([rung_steps[r] for _, r in jobs])
            pop.advance_to(_runs_of(cfg, per), np.repeat(target, per))
            for c, r in jobs:
                rung[c] = r
                promoted[c] = False
            for r in sorted({r for _, r in jobs}):
                members = np.array([c for c, rr in jobs if rr == r])
                scores[r, members] = _config_scores(pop, members, per, setup.score_key)
            waves.append([[c, r] for c, r in jobs])
    finally:
        bar.close()
    halted = rung < len(rung_steps) - 1
    history = {"method": "asha", "eta": eta, "objective": objective, "direction": setup.direction,
               "unit": setup.unit, "resources": resources, "rung_steps": rung_steps, "waves": waves,
               "scores": [[None if np.isnan(v) else float(v) for v in row] for row in scores]}
    result = _result(setup, pop, np.arange(n_configs), space, rung, halted, history, n_evals, t_start, devices,
                     "asha", {"eta": eta, "min_resource": min_resource, "design": design, "seed": seed,
                              "wave": wave})
    if run_dir is not None:
        result.save(run_dir)
    return result
