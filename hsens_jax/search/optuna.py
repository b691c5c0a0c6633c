"""Batched Bayesian optimization through Optuna, and Optuna both ways.

* :func:`optimize`: an Optuna sampler (TPE by default, GP, CMA-ES, random, QMC) proposes
  ``batch_size`` configurations at a time (``study.ask``); one vectorized
  :func:`hsens_jax.run_sweep` call trains them all; their objective goes back with
  ``study.tell``. The engine sizes its programs from the space, so every batch after the first
  reuses the compiled programs (``batches[i]["compilations"]`` counts them). Conditional
  hyperparameters become Optuna's define-by-run parameters (:func:`suggest`: a child is
  suggested only where its condition holds).
* Storage: with a ``run_dir``, the study lives in ``RUN_DIR/study.db`` (Optuna's RDB storage
  on SQLite in write-ahead-log mode, which ``optuna-dashboard sqlite:///RUN_DIR/study.db``
  opens) beside the runs
  themselves (:class:`hsens_jax.results.RunDirectory`). A search killed at any point resumes
  when called again: trials told stay told; trials asked but not told (state RUNNING, their
  parameters already in the storage) are trained (their runs already on disk are not
  recomputed) and told, never asked again; the budget ``n_trials`` counts every trial of the
  study.
* :func:`to_optuna` turns a sweep into a study (one finished trial per configuration, with its
  parameters, objective and every scalar metric as user attributes), so that optuna-dashboard,
  ``optuna.visualization`` and ``optuna.importance`` work on hsens_jax sweeps;
  :func:`from_optuna` turns a study into a :class:`hsens_jax.results.SweepResult` that
  :func:`hsens_jax.analyze` reads (conditional parameters kept; an
  :class:`AdaptiveSamplingWarning` when the trials may come from an adaptive sampler).
* :class:`HsicImportanceEvaluator`: HSIC sensitivity as an Optuna importance evaluator,
  ``optuna.importance.get_param_importances(study, evaluator=HsicImportanceEvaluator())``.

A caveat on analysing searches: TPE, GP and CMA-ES concentrate their trials where the
objective is good, so the trials are not a sample of the space and HSIC indices computed from
them describe that biased sample (a hyperparameter the sampler fixed early looks unimportant).
Space-filling designs (random, Sobol, QMC) are what sensitivity analysis assumes.

Optuna is an optional dependency: ``pip install 'hsens_jax[search]'``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hsens_jax.results import SweepResult, check_direction
from hsens_jax.space import Bool, Categorical, Float, Int, Space

INSTALL = "pip install 'hsens_jax[search]'"
SAMPLERS = ("tpe", "gp", "cmaes", "random", "qmc")
"""Sampler names :func:`optimize` understands (or pass an ``optuna.samplers.BaseSampler``)."""
SPACE_FILLING = ("random", "qmc", "sobol", "halton", "lhs", "grid")
"""Designs whose trials are a sample of the space (no :class:`AdaptiveSamplingWarning`)."""
_ATTR = "hsens_"


class AdaptiveSamplingWarning(UserWarning):
    """The trials of a study may come from an adaptive sampler: HSIC indices are then biased."""


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(f"this needs Optuna, an optional dependency of hsens_jax: install it with {INSTALL} "
                          f"(or pip install optuna)") from None
    return optuna


# ----------------------------------------------------------------------------- spaces


def distributions(space: Space) -> dict[str, Any]:
    """The Optuna distribution of every hyperparameter of ``space`` (conditions aside):
    ``FloatDistribution`` / ``IntDistribution`` (with ``log``) and ``CategoricalDistribution``
    (a Bool as the choices ``(False, True)``)."""
    optuna = _optuna()
    d = optuna.distributions
    out = {}
    for p in space.params:
        if isinstance(p, Float):
            out[p.name] = d.FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            out[p.name] = d.IntDistribution(p.low, p.high, log=p.log)
        else:
            out[p.name] = d.CategoricalDistribution(tuple(p.choices))
    return out


def suggest(trial, space: Space) -> dict[str, Any]:
    """Ask ``trial`` (an ``optuna.Trial``) for a configuration of ``space``, define-by-run:
    hyperparameters in topological order, a conditional one only where its condition holds
    on the values suggested before it. Returns the configuration (inactive names absent)."""
    values: dict[str, Any] = {}
    cols: dict[str, np.ndarray] = {}
    active: dict[str, np.ndarray] = {}
    for name in space.topological_order:
        on = space.active_given_parents(name, cols, active) if space[name].condition else np.ones(1, bool)
        active[name] = on
        p = space[name]
        if not bool(on[0]):
            cols[name] = np.array([np.nan])
            continue
        if isinstance(p, Float):
            v = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            v = trial.suggest_int(name, p.low, p.high, log=p.log)
        else:
            v = trial.suggest_categorical(name, tuple(p.choices))
        values[name] = v
        cols[name] = np.array([space._encode_value(name, v)])
    return {n: values[n] for n in space.names if n in values}


def _sampler(sampler, seed: int, space: Space, batch_size: int):
    optuna = _optuna()
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler, type(sampler).__name__
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: choose one of {SAMPLERS}, or pass an optuna sampler")
    conditional = any(p.condition for p in space.params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sampler == "tpe":
            # constant liar: trials asked but not told yet count as bad, which spreads a batch out
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=conditional,
                                              constant_liar=True), "tpe"
        if sampler == "gp":
            try:
                import torch  # noqa: F401
            except ImportError:
                raise ImportError("sampler='gp' is Optuna's GPSampler, which needs PyTorch: pip install torch") from None
            return optuna.samplers.GPSampler(seed=seed), "gp"
        if sampler == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise ImportError(f"sampler='cmaes' is Optuna's CmaEsSampler, which needs the cmaes package: "
                                  f"{INSTALL} (or pip install cmaes)") from None
            # one CMA-ES generation per batch
            return optuna.samplers.CmaEsSampler(seed=seed, popsize=max(batch_size, 2),
                                                warn_independent_sampling=False), "cmaes"
        if sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed), "random"
        return optuna.samplers.QMCSampler(seed=seed, qmc_type="sobol", scramble=True), "qmc"


# ----------------------------------------------------------------------------- optimize


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns.

    Attributes:
      study: the ``optuna.Study``.
      result: a :class:`hsens_jax.results.SweepResult` with one configuration per trial that
        holds one, in trial-number order (with a ``run_dir``: every such trial of the study,
        those of earlier calls too; without: those this call trained).
      trial_numbers: (K,) the trial number of each configuration of ``result``.
      batches: one dict per batch this call trained: ``trials`` (numbers), ``resumed``
        (trials of a killed session finished in it), ``wall_s``, ``compilations`` (XLA
        compilations it triggered, see :mod:`hsens_jax.search.compilations`), ``best_value``.
      objective, direction: what was optimized.
    """

    study: Any
    result: SweepResult | None
    trial_numbers: np.ndarray
    batches: list[dict] = field(default_factory=list)
    objective: str = "final_val_loss"
    direction: str = "minimize"

    @property
    def best_trial(self):
        return self.study.best_trial

    @property
    def best_params(self) -> dict:
        return self.study.best_params

    @property
    def best_value(self) -> float:
        return self.study.best_value

    def table(self, k: int = 10) -> str:
        """The ``k`` best configurations so far (:meth:`SweepResult.table`)."""
        return self.result.table(self.objective, k=k, direction=self.direction)


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _storage_url(storage, run_dir) -> str | None:
    if storage is not None:
        return storage
    if run_dir is None:
        return None
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def _run_dir_storage(url: str):
    """The run directory's SQLite study in write-ahead-log mode with ``synchronous=NORMAL``: each of
    Optuna's many small commits (a parameter, a user attribute) then costs no fsync of its own
    (measured 8x faster), and a killed process still loses no committed transaction (only an
    operating-system crash may lose the last ones)."""
    optuna = _optuna()
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    event.listen(storage.engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA synchronous=NORMAL"))
    storage.engine.dispose()
    return storage


def _jsonable(v):
    return json.loads(json.dumps(v, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(f"{key!r} is new")
        elif key not in new:
            out.append(f"{key!r} is gone")
        elif old[key] != new[key]:
            out.append(f"{key!r}: {old[key]} -> {new[key]}")
    return out


def _check_study(study, space: Space, settings: dict, where: str) -> None:
    """Refuse a study run under another space or settings; record ours in a new one."""
    recorded = study.user_attrs
    ours = {"space": _jsonable(space.to_dict()), **_jsonable(settings)}
    if _ATTR + "space" in recorded:
        problems = []
        diff = _differences(recorded[_ATTR + "space"], ours["space"])
        if diff:
            problems.append("space: " + "; ".join(diff))
        for key, value in ours.items():
            if key != "space" and recorded.get(_ATTR + key) != value:
                problems.append(f"{key}: {recorded.get(_ATTR + key)!r} -> {value!r}")
        if problems:
            raise ValueError(f"{where} was run with other settings than these; {'; '.join(problems)}. Use another "
                             f"study_name (or run directory), or the settings it was run with")
        return
    dists = distributions(space)
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if name not in dists:
                raise ValueError(f"{where}: trial {trial.number} has parameter {name!r}, which is not in the space "
                                 f"({list(space.names)})")
            if dist != dists[name]:
                raise ValueError(f"{where}: trial {trial.number} samples {name!r} from {dist}, the space from "
                                 f"{dists[name]}")
    for key, value in ours.items():
        study.set_user_attr(_ATTR + key, value)


def _full_configuration(space: Space, params: Mapping[str, Any]) -> bool:
    try:
        space.encode([dict(params)])
    except (ValueError, TypeError):
        return False
    return True


def optimize(
    dataset,
    space: Space,
    *,
    n_trials: int,
    batch_size: int = 16,
    sampler: Any = "tpe",
    objective: str = "final_val_loss",
    direction: str | None = None,
    seed: int = 0,
    model: Any = "mlp",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    cv: int | None = None,
    run_dir=None,
    storage: Any = None,
    study_name: str | None = None,
    chunk_size: int | None = None,
    n_evals: int = 20,
    eval_batch_size: int = 512,
    group_by: Sequence[str] = (),
    patience=None,
    overwrite: bool = False,
    progress: bool = True,
    devices=None,
    callback: Callable[[OptimizeResult, dict], None] | None = None,
) -> OptimizeResult:
    """Optimize ``objective`` over ``space`` with an Optuna sampler, ``batch_size`` trials per
    vectorized training call (see the module docstring).

    Args:
      dataset, space, model, fixed, seeds, cv, n_evals, eval_batch_size, group_by, patience,
        devices: as in :func:`hsens_jax.run_sweep` (a trial's value is its configuration's
        ``objective`` averaged over seeds and folds).
      chunk_size: runs per compiled call; default: on a CPU
        :data:`~hsens_jax.engine.devices.CPU_CONFIGS_PER_CHUNK` configurations x seeds x folds,
        elsewhere a batch's runs (``batch_size`` x seeds x folds). Every chunk has this size (padded; ``run_sweep(..., fixed_chunks=True)``), so
        each program (one per batch size, training length or static hyperparameter) compiles
        once for the whole search, whichever of them a batch uses.
      n_trials: the budget: trials the study holds when done (those of earlier sessions of the
        same study included); at least ``batch_size``.
      batch_size: configurations asked, trained and told together.
      sampler: ``"tpe"`` (default; multivariate, with a constant liar that spreads a batch out),
        ``"gp"`` (needs PyTorch), ``"cmaes"`` (one generation per batch; categoricals are
        sampled at random), ``"random"``, ``"qmc"`` (scrambled Sobol), or an Optuna sampler.
      objective: a scalar metric of the sweep (``final_val_loss``, ``final_val_accuracy``,
        ``best_val_loss``, a user metric...).
      direction: ``"minimize"`` / ``"maximize"``; default: the objective's own.
      seed: the sampler's seed.
      run_dir: run directory of the trials' runs, and of the study (``study.db``) unless
        ``storage`` is given. Calling again with the same arguments resumes.
      storage: an Optuna storage (URL or object); default ``sqlite:///RUN_DIR/study.db``, or
        in memory without a run directory.
      study_name: default ``"hsens"``.
      overwrite: passed to :func:`hsens_jax.run_sweep` (a run directory of another sweep).
      progress: progress bars on stderr.
      callback: called after each batch with the result so far and the batch's record.

    Returns:
      :class:`OptimizeResult`.

    Raises:
      ImportError: Optuna (or the sampler's own dependency) is not installed, with the command
        that installs it.
      ValueError: a budget smaller than one batch, an unknown sampler or objective, a study in
        the storage that was run over another space or other settings.
    """
    from hsens_jax.engine.sweep import _dataset_fingerprint, plan_sweep, run_sweep
    from hsens_jax.search.compilations import compilations

    optuna = _optuna()
    n_trials = _positive_int("n_trials", n_trials)
    batch_size = _positive_int("batch_size", batch_size)
    if n_trials < batch_size:
        raise ValueError(f"the budget n_trials={n_trials} is smaller than one batch (batch_size={batch_size}): "
                         f"lower batch_size or raise n_trials")
    if not isinstance(space, Space):
        raise TypeError(f"space must be a hsens_jax.Space, got {type(space).__name__}")
    fixed = dict(fixed or {})
    probe = plan_sweep(dataset, space, space.sample(1, "random", seed=0), model=model, fixed=fixed, cv=cv,
                       n_evals=n_evals, eval_batch_size=eval_batch_size, group_by=tuple(group_by), patience=patience)
    if objective not in probe.directions:
        raise ValueError(f"objective {objective!r} is not a scalar metric of this sweep; choose one of "
                         f"{sorted(probe.directions)}")
    direction = check_direction(direction) if direction is not None else probe.directions[objective]
    the_sampler, sampler_name = _sampler(sampler, seed, space, batch_size)
    study_name = study_name or "hsens"
    url = _storage_url(storage, run_dir)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    the_storage = _run_dir_storage(url) if storage is None and url is not None else url
    study = optuna.create_study(storage=the_storage, sampler=the_sampler, study_name=study_name, direction=direction,
                                load_if_exists=True)
    where = f"study {study_name!r}" + (f" in {url}" if isinstance(url, str) else "")
    if study.direction.name.lower() != direction:
        raise ValueError(f"{where} {study.direction.name.lower()}s, but direction={direction!r} was asked")
    settings = {"objective": objective, "fixed": fixed, "seeds": [int(s) for s in seeds], "cv": cv,
                "model": probe.model.name, "dataset": _dataset_fingerprint(dataset), "design": sampler_name}
    _check_study(study, space, settings, where)

    design = {"kind": sampler_name, "study_name": study_name, "n_trials": n_trials, "batch_size": batch_size,
              "seed": seed}
    out = OptimizeResult(study, None, np.zeros(0, int), [], objective, direction)
    if chunk_size is None:  # CPU: a few configurations per call (a call lasts as long as its slowest run)
        from hsens_jax.engine.devices import CPU_CONFIGS_PER_CHUNK, on_cpu

        per_call = min(batch_size, CPU_CONFIGS_PER_CHUNK) if on_cpu(devices) else batch_size
        chunk_size = per_call * len(seeds) * (cv or 1)
    kwargs = dict(model=model, fixed=fixed, seeds=seeds, cv=cv, chunk_size=chunk_size, fixed_chunks=True,
                  n_evals=n_evals,
                  eval_batch_size=eval_batch_size, group_by=tuple(group_by), progress=progress, devices=devices,
                  design=design, patience=patience)
    running = optuna.trial.TrialState.RUNNING
    orphans = []
    for t in study.get_trials(deepcopy=False, states=(running,)):
        if _full_configuration(space, t.params):
            orphans.append(t)
        else:  # asked but killed before its configuration was complete: nothing to train
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.set_user_attr(f"{_ATTR}incomplete_trial_{t.number}", True)
    counted = lambda: sum(1 for t in study.get_trials(deepcopy=False)  # noqa: E731
                          if not study.user_attrs.get(f"{_ATTR}incomplete_trial_{t.number}"))
    accumulated: list[SweepResult] = []
    numbers_done: list[int] = []
    while True:
        # a trial of a killed session is told through a Trial object of its id (FrozenTrial keeps it)
        batch = [(t.number, dict(t.params), optuna.trial.Trial(study, t._trial_id)) for t in orphans[:batch_size]]
        resumed = len(batch)
        orphans = orphans[batch_size:]
        n_new = min(batch_size - len(batch), n_trials - counted()) if not orphans else 0
        for _ in range(max(n_new, 0)):
            trial = study.ask()
            batch.append((trial.number, suggest(trial, space), trial))
        if not batch:
            break
        c0, t0 = compilations()[0], time.perf_counter()
        if run_dir is not None:
            numbers, records = _study_configurations(study, space)
            configs = space.encode(records)
            result = run_sweep(dataset, space, configs, run_dir=run_dir, overwrite=overwrite, **kwargs)
            rows = {n: i for i, n in enumerate(numbers)}
            values = result.objective(objective)
            batch_values = [values[rows[n]] for n, _, _ in batch]
            out.result, out.trial_numbers = result, np.asarray(numbers)
            batch_rows = [rows[n] for n, _, _ in batch]
        else:
            configs = space.encode([p for _, p, _ in batch])
            result = run_sweep(dataset, space, configs, **kwargs)
            batch_values = list(result.objective(objective))
            batch_rows = list(range(len(batch)))
            accumulated.append(result)
            numbers_done += [n for n, _, _ in batch]
            out.result, out.trial_numbers = _concatenate(accumulated), np.asarray(numbers_done)
        for (number, _, trial), row, value in zip(batch, batch_rows, batch_values):
            _tell(study, trial, value, result, row, objective)
        record = {"trials": [n for n, _, _ in batch], "resumed": resumed, "wall_s": time.perf_counter() - t0,
                  "compilations": compilations()[0] - c0, "best_value": _best_value(study)}
        out.batches.append(record)
        if callback is not None:
            callback(out, record)
    if out.result is None and run_dir is not None and (Path(run_dir) / "results.npz").exists():
        from hsens_jax.results import load_results

        numbers, _ = _study_configurations(study, space)
        out.result, out.trial_numbers = load_results(run_dir), np.asarray(numbers)
    return out


def _best_value(study):
    try:
        return float(study.best_value)
    except ValueError:  # no completed trial yet
        return float("nan")


def _study_configurations(study, space: Space) -> tuple[list[int], list[dict]]:
    """Trial numbers and configurations of every trial that holds a full configuration."""
    numbers, records = [], []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if _full_configuration(space, t.params):
            numbers.append(t.number)
            records.append(dict(t.params))
    return numbers, records


_NOT_ATTRIBUTES = ("curve_steps", "group", "diverged_reason", "diverged_step", "stopped_step")


def _scalar_attrs(result: SweepResult, row: int) -> dict[str, Any]:
    """Every scalar metric of configuration ``row`` (mean over its runs; ``diverged`` and
    ``stopped``: the fraction of its runs), JSON-safe."""
    k = result.n_configs
    out = {}
    for name, arr in result.metrics.items():
        a = np.asarray(arr)
        if a.shape[:1] != (k,) or name.endswith("_curve") or name in _NOT_ATTRIBUTES:
            continue
        if a.ndim == 1:
            v = a[row]
        else:
            try:
                v = result.objective(name)[row]
            except ValueError:
                continue
        v = float(v)
        out[name] = v if math.isfinite(v) else repr(v)
    return out


def _tell(study, trial, value, result: SweepResult, row: int, objective: str) -> None:
    optuna = _optuna()
    for name, v in _scalar_attrs(result, row).items():
        trial.set_user_attr(name, v)
    runs = np.asarray(result.metrics[objective], float)[row].ravel()
    trial.set_user_attr(_ATTR + "runs", [float(v) if math.isfinite(v) else repr(float(v)) for v in runs])
    if math.isfinite(value):
        study.tell(trial, float(value))
    else:  # Optuna stores no NaN value: a diverged or missing objective fails the trial
        trial.set_user_attr(_ATTR + "value", repr(float(value)))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _concatenate(results: list[SweepResult]) -> SweepResult:
    if len(results) == 1:
        return results[0]
    first = results[-1]
    configs = {n: np.concatenate([r.configs[n] for r in results]) for n in first.configs}
    metrics = {n: np.concatenate([r.metrics[n] for r in results]) for n in first.metrics
               if all(n in r.metrics for r in results)}
    meta = dict(first.meta) | {"n_configs": len(next(iter(configs.values()))),
                               "wall_time": sum(r.meta.get("wall_time", 0.0) for r in results)}
    return SweepResult(first.space, configs, first.seeds, metrics, meta)


# ----------------------------------------------------------------------------- to / from Optuna


def to_optuna(result: SweepResult, storage: Any = None, study_name: str | None = None,
              objective: str = "final_val_loss", *, direction: str | None = None, overwrite: bool = False):
    """A study holding ``result``: one finished trial per configuration.

    Each trial has the configuration's active hyperparameters as parameters (the space's
    distributions: Float/Int with their bounds and log scale, Categorical and Bool as
    categorical choices), the configuration's ``objective`` averaged over its seeds and folds
    as value (``result.objective``), every scalar metric (averaged likewise) as a user
    attribute, the objective of each run in ``hsens_runs`` and the configuration's index in
    ``hsens_config``. A configuration whose objective is NaN (diverged everywhere, or not
    computed) becomes a FAIL trial (Optuna stores no NaN value) with ``hsens_value = "nan"``.
    The study records the space, objective and design in its user attributes, which
    :func:`from_optuna` reads back.

    Args:
      result: a sweep.
      storage: an Optuna storage URL or object (e.g. ``"sqlite:///study.db"``); None: in memory.
      study_name: default ``"hsens"``.
      objective: the metric that becomes the trials' value.
      direction: default: the objective's own (:meth:`SweepResult.direction`).
      overwrite: replace a study of that name in ``storage`` (default: refuse).

    Returns:
      The ``optuna.Study``. ``FanovaImportanceEvaluator``, ``PedAnovaImportanceEvaluator`` and
      :class:`HsicImportanceEvaluator` work on it.
    """
    optuna = _optuna()
    values = result.objective(objective)
    direction = check_direction(direction) if direction is not None else result.direction(objective)
    study_name = study_name or "hsens"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = storage
    if storage is not None:
        storage = optuna.storages.get_storage(storage)  # opened once (an RDB storage checks its schema)
        if study_name in [s.study_name for s in storage.get_all_studies()]:
            if not overwrite:
                raise ValueError(f"storage {where} already holds a study named {study_name!r}: pass another "
                                 f"study_name, or overwrite=True to replace it")
            optuna.delete_study(study_name=study_name, storage=storage)
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    design = dict(result.meta.get("design") or {})
    study.set_user_attr(_ATTR + "space", _jsonable(result.space.to_dict()))
    study.set_user_attr(_ATTR + "objective", objective)
    study.set_user_attr(_ATTR + "design", design.get("kind"))
    study.set_user_attr(_ATTR + "fixed", _jsonable(result.meta.get("fixed") or {}))
    dists = distributions(result.space)
    records = result.space.decode(result.configs)
    per_run = np.asarray(result.metrics[objective], float).reshape(result.n_configs, -1)
    trials = []
    for k, params in enumerate(records):
        attrs = _scalar_attrs(result, k)
        attrs[_ATTR + "config"] = k
        attrs[_ATTR + "runs"] = [float(v) if math.isfinite(v) else repr(float(v)) for v in per_run[k]]
        value = float(values[k])
        kw = dict(params=params, distributions={n: dists[n] for n in params}, user_attrs=attrs)
        if math.isfinite(value):
            trials.append(optuna.trial.create_trial(value=value, **kw))
        else:
            attrs[_ATTR + "value"] = repr(value)
            trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, **kw))
    study.add_trials(trials)
    return study


def _space_from_trials(trials, where: str) -> Space:
    """A space covering the trials' distributions, conditions inferred from which trials hold
    which parameters (a parameter present exactly where a discrete parent takes some values)."""
    optuna = _optuna()
    d = optuna.distributions
    order: list[str] = []
    merged: dict[str, Any] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            if name not in merged:
                order.append(name)
                merged[name] = dist
                continue
            old = merged[name]
            if type(old) is not type(dist):
                raise ValueError(f"{where}: parameter {name!r} is sampled from {old} and from {dist}")
            if isinstance(dist, d.CategoricalDistribution):
                merged[name] = d.CategoricalDistribution(tuple(dict.fromkeys(old.choices + dist.choices)))
            elif old.log != dist.log:
                raise ValueError(f"{where}: parameter {name!r} is sampled on a log scale and on a linear one")
            else:
                merged[name] = type(dist)(min(old.low, dist.low), max(old.high, dist.high), log=dist.log)
    present = {n: np.array([n in t.params for t in trials]) for n in order}
    params = []
    for name in order:
        dist = merged[name]
        condition = None
        if not present[name].all():
            condition = _infer_condition(name, trials, present, merged, where)
        if isinstance(dist, d.CategoricalDistribution):
            if any(c is None for c in dist.choices):
                raise ValueError(f"{where}: parameter {name!r} has the choice None, which a hsens_jax space cannot "
                                 f"hold; give from_optuna a space")
            if tuple(dist.choices) in ((False, True), (True, False)):
                params.append(Bool(name, condition=condition))
            else:
                params.append(Categorical(name, list(dist.choices), condition=condition))
        elif isinstance(dist, d.IntDistribution):
            params.append(Int(name, dist.low, dist.high if dist.high > dist.low else dist.low + 1, log=dist.log,
                              condition=condition))
        else:
            params.append(Float(name, dist.low, dist.high if dist.high > dist.low else dist.low + 1e-12,
                                log=dist.log, condition=condition))
    return Space(params)


def _infer_condition(name, trials, present, merged, where):
    optuna = _optuna()
    here = present[name]
    for parent, dist in merged.items():
        if parent == name or not isinstance(dist, (optuna.distributions.CategoricalDistribution,
                                                    optuna.distributions.IntDistribution)):
            continue
        if not present[parent][here].all() or not present[parent].any():
            continue
        with_parent = present[parent]
        inside = {t.params[parent] for t, h in zip(trials, here) if h}
        outside = {t.params[parent] for t, h, p in zip(trials, here, with_parent) if p and not h}
        if inside and not (inside & outside):
            return {parent: sorted(inside, key=repr)}
    raise ValueError(f"{where}: parameter {name!r} is present in only some trials, and no discrete parameter "
                     f"decides where (a condition hsens_jax can express); pass from_optuna a space")


def from_optuna(study, *, space: Space | None = None, objective: str | None = None, warn: bool = True,
                include_failed: bool = True) -> SweepResult:
    """A :class:`hsens_jax.results.SweepResult` of a study's trials, for :func:`hsens_jax.analyze`.

    One configuration per COMPLETE trial (and per FAIL trial that :func:`to_optuna` or
    :func:`optimize` wrote for a NaN objective, with ``include_failed``), in trial order, with
    one "seed": the trial's value is metric ``objective`` (shape (K, 1)); every numeric user
    attribute present in all of them becomes a metric too, and ``trial_number`` (K,).

    Args:
      study: an ``optuna.Study`` (single-objective, or multi-objective: metrics
        ``values_0, values_1...`` or the study's ``metric_names``).
      space: the space the trials were drawn from; default: the space recorded by hsens_jax in
        the study, else one built from the trials' distributions (a parameter absent from some
        trials gets the condition on a discrete parameter that decides where it is present;
        ValueError when there is none).
      objective: the value's metric name; default: the recorded objective, else ``"value"``.
      warn: issue an :class:`AdaptiveSamplingWarning` unless the trials are known to come from
        a space-filling design (random, QMC, Sobol, grid...), as adaptive samplers bias HSIC:
        known from the design hsens_jax recorded in the study, else from the ``Study`` object's
        sampler (a study loaded from storage gets Optuna's default TPE sampler, so it warns).
    """
    optuna = _optuna()
    where = f"study {study.study_name!r}"
    attrs = study.user_attrs
    recorded_space = attrs.get(_ATTR + "space")
    if space is None and recorded_space is not None:
        space = Space.from_dict(recorded_space)
    state = optuna.trial.TrialState
    trials = [t for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
              if t.state == state.COMPLETE
              or (include_failed and t.state == state.FAIL and _ATTR + "value" in t.user_attrs and t.params)]
    if not trials:
        raise ValueError(f"{where} has no completed trial")
    if space is None:
        space = _space_from_trials(trials, where)
    records = []
    for t in trials:
        unknown = [n for n in t.params if n not in space.names]
        if unknown:
            raise ValueError(f"{where}: trial {t.number} has parameter(s) {unknown}, not in the space "
                             f"{list(space.names)}")
        records.append(dict(t.params))
    try:
        configs = space.encode(records)
    except ValueError as e:
        raise ValueError(f"{where}: its trials do not fit the space: {e}") from None
    multi = len(study.directions) > 1
    if multi:
        names = list(getattr(study, "metric_names", None) or [f"values_{i}" for i in range(len(study.directions))])
    else:
        names = [objective or attrs.get(_ATTR + "objective") or "value"]
    k = len(trials)
    metrics: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        metrics[name] = np.array([[t.values[i] if t.values is not None else np.nan] for t in trials], float)
    directions = {n: d.name.lower() for n, d in zip(names, study.directions)}
    user = {}
    for key in dict.fromkeys(key for t in trials for key in t.user_attrs):
        if key.startswith(_ATTR) or key in metrics:
            continue
        col = [t.user_attrs.get(key) for t in trials]
        nums = [_number(v) for v in col]
        if all(v is not None for v in nums):
            user[key] = np.array(nums, float)[:, None]
    metrics.update(user)
    if any(t.state == state.FAIL for t in trials):
        metrics["diverged"] = np.array([[t.state == state.FAIL] for t in trials])
    metrics["trial_number"] = np.array([t.number for t in trials])
    known = {n: d for n, d in {**_builtin_directions(), **directions}.items() if n in metrics}
    design = attrs.get(_ATTR + "design")
    if design is None and isinstance(study.sampler, (optuna.samplers.RandomSampler, optuna.samplers.QMCSampler,
                                                     optuna.samplers.GridSampler)):
        design = type(study.sampler).__name__.replace("Sampler", "").lower()  # what this Study object samples
    if warn and design not in SPACE_FILLING:
        sampler = type(study.sampler).__name__
        said = f"were drawn by {design!r}" if design else \
            f"come from an unknown sampler (this Study object's sampler is {sampler})"
        warnings.warn(f"{where}: its trials {said}; adaptive samplers (TPE, GP, CMA-ES) concentrate trials where "
                      f"the objective is good, which biases HSIC sensitivity indices (a space-filling design is "
                      f"what they assume). Pass warn=False if the trials are a sample of the space",
                      AdaptiveSamplingWarning, stacklevel=2)
    meta = {"source": "optuna", "study_name": study.study_name, "directions": known, "n_configs": k,
            "n_seeds": 1, "design": {"kind": design or "optuna"}, "fixed": attrs.get(_ATTR + "fixed") or {},
            "space": space.to_dict()}
    return SweepResult(space, configs, np.array([0]), metrics, meta)


def _builtin_directions():
    from hsens_jax.results import BUILTIN_DIRECTIONS

    return dict(BUILTIN_DIRECTIONS)


def _number(v):
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, np.number)):
        return float(v)
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    return None


# ----------------------------------------------------------------------------- importance


def _evaluator_class():
    optuna = _optuna()
    from optuna.importance import BaseImportanceEvaluator

    class HsicImportanceEvaluator(BaseImportanceEvaluator):
        """HSIC sensitivity of the objective to each parameter, as an Optuna importance evaluator.

        ``optuna.importance.get_param_importances(study, evaluator=HsicImportanceEvaluator())``:
        the importance of a parameter is its R2-HSIC of the U-statistic (unbiased; Song et al.
        2012) between the parameter (normalized as in Novello et al. 2023) and the objective,
        computed by :func:`hsens_jax.analyze` on the trials where the parameter is active
        (conditional parameters included), negative estimates clipped to 0 and parameters with
        fewer than 8 trials at 0. ``get_param_importances`` then normalizes them to sum to 1.

        Args:
          target: None for global HSIC, or a fraction ``q`` in (0, 1): goal-oriented HSIC of
            being among the best ``q`` of the trials in the study's direction (Novello et al.
            2023; with ``get_param_importances(..., target=f)``, the best of ``f``'s values in
            the study's direction).
          seed: seed of the normalization's jitter of discrete parameters.
          warn: the :class:`AdaptiveSamplingWarning` of :func:`from_optuna`.
        """

        def __init__(self, *, target: float | None = None, seed: int = 0, warn: bool = True):
            self.target, self.seed, self.warn = target, seed, warn

        def evaluate(self, study, params=None, *, target=None):
            from hsens_jax.analysis import analyze

            result = from_optuna(study, warn=self.warn, include_failed=False)
            name = next(iter(result.metrics))
            if target is not None:
                trials = sorted((t for t in study.get_trials(deepcopy=False)
                                 if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.number)
                result.metrics[name] = np.array([[float(target(t))] for t in trials])
            elif len(study.directions) > 1:
                raise ValueError("a multi-objective study needs target=, e.g. target=lambda t: t.values[0]")
            direction = study.directions[0].name.lower()
            names = list(params) if params is not None else list(result.space.names)
            unknown = [p for p in names if p not in result.space.names]
            if unknown:
                raise ValueError(f"params {unknown} are not parameters of the study ({list(result.space.names)})")
            report = analyze(result, name, target=self.target, directions=direction, pvalue=None,
                             small_n=0, seed=self.seed)
            r2 = {n: float(v) for n, v in zip(report.names, report.r2_unbiased[0])}
            out = {n: max(0.0, r2[n]) if np.isfinite(r2[n]) else 0.0 for n in names}
            return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    return HsicImportanceEvaluator


_CLASSES: dict[str, type] = {}


def __getattr__(name: str):
    """``HsicImportanceEvaluator`` subclasses Optuna's evaluator, so it is built when first
    asked for (with a clear error when Optuna is missing)."""
    if name == "HsicImportanceEvaluator":
        if name not in _CLASSES:
            _CLASSES[name] = _evaluator_class()
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
