"""Vectorized, chunked, sharded and resumable hyperparameter sweeps.

:func:`run_sweep` trains K configurations x S seeds of one model family:

1. **Groups.** Configurations are grouped by what changes array shapes or loop
   lengths: batch size and training length (``epochs``/``steps``), plus any
   hyperparameters named in ``group_by``. Each group is one compiled program; inside
   it, everything else (optimizer kind and settings, schedule, width, depth,
   activation, dropout, batch norm, init scale, label smoothing) varies per run by
   masking and selection (see :mod:`hsens_jax.models`, :mod:`hsens_jax.optimizers`).
   Masking spends the compute of the group's largest network on every run; naming
   ``width`` or ``hidden_layer_sizes`` in ``group_by`` trades compilations for
   exactly sized programs.
2. **Chunks.** A group's runs are cut into chunks of ``chunk_size`` runs, each one
   ``jit(vmap(train))`` call, so memory stays bounded; the last chunk is padded (with
   copies of its last run, discarded) so every chunk reuses one compilation.
3. **Sharding.** A chunk's run axis is split over all local devices with
   ``jax.sharding`` (a 1-D mesh named ``"runs"``); the data are replicated. On a CPU,
   :func:`hsens_jax.use_cpu_cores` (called first thing in a script; the ``hsens`` CLI
   calls it by default) makes one device per core, so that every core trains a share.
4. **Compilation ahead.** While a group trains, the next group's program compiles on a
   background thread (XLA compiles without holding the GIL): on an accelerator, or a CPU
   with a core to spare, the compilation of every group but the first is hidden.
5. **Persistence.** Each finished chunk is written to the run directory at once
   (:mod:`hsens_jax.results`); a re-run of the same sweep skips it.

Batch size semantics: one step consumes ``batch_size`` examples; an epoch is
``n_train // batch_size`` steps (the remainder dropped, as a fresh permutation is
drawn each epoch). With ``epochs`` as the budget, larger batches therefore take
fewer steps for the same number of examples seen; with ``steps``, every batch size
takes the same number of updates.

Seeds: run (k, s) uses ``jax.random.key(seeds[s])`` for initialization, data order
and dropout, whatever the configuration (common random numbers).
"""

from __future__ import annotations

import functools
import math
import platform
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import hsens_jax
from hsens_jax.models import ACTIVATIONS, ModelSpec
from hsens_jax.optimizers import OPTIMIZERS
from hsens_jax.progress import Progress
from hsens_jax.results import CURVES, RunDirectory, SweepResult, fingerprint
from hsens_jax.space import Space
from hsens_jax.train import (
    HYPERPARAMETERS,
    SCHEDULES,
    TrainSpec,
    hp_from_values,
    parse_layer_sizes,
    prepare_data,
    train,
)

ENGINE_HYPERPARAMETERS = tuple(HYPERPARAMETERS) + ("batch_size", "epochs", "steps")
"""Every name a space or ``fixed`` may use."""

_NAMED = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "activation": tuple(ACTIVATIONS)}
_DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class _Group:
    key: tuple
    spec: TrainSpec
    runs: np.ndarray  # run indices r = k * S + s


def engine_values(space: Space, configs: Mapping[str, np.ndarray], fixed: Mapping[str, Any] | None = None):
    """Per-configuration values of every engine hyperparameter a sweep sets.

    Space columns are decoded (names for categoricals); an inactive entry takes the
    ``fixed`` value, else the engine default (the value is irrelevant to an inactive
    hyperparameter, but the program needs a number). Returns ``dict[str, (K,) array]``.
    """
    fixed = dict(fixed or {})
    unknown = [n for n in list(space.names) + list(fixed) if n not in ENGINE_HYPERPARAMETERS]
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown}: the training engine understands {sorted(ENGINE_HYPERPARAMETERS)}"
        )
    both = set(space.names) & set(fixed)
    if both:
        raise ValueError(f"hyperparameter(s) {sorted(both)} are both in the space and fixed")
    space.validate(dict(configs))
    k = len(next(iter(configs.values()))) if configs else 0
    defaults = {**HYPERPARAMETERS, "batch_size": _DEFAULT_BATCH_SIZE, "epochs": None, "steps": None}
    out: dict[str, np.ndarray] = {}
    for name in space.names:
        col = space.decode_column(name, configs[name])
        fill = fixed.get(name, defaults[name])
        col = np.array([fill if v is None else v for v in col], dtype=object)
        out[name] = col
    for name, value in fixed.items():
        out[name] = np.array([value] * k, dtype=object)
    for name, col in out.items():
        if name in _NAMED:
            bad = sorted({str(v) for v in col if v not in _NAMED[name]})
            if bad:
                raise ValueError(f"{name} value(s) {bad} unknown; choose from {_NAMED[name]}")
            out[name] = col.astype(str)
        elif name == "hidden_layer_sizes":
            out[name] = np.array([",".join(map(str, parse_layer_sizes(v))) for v in col], dtype=object)
        elif name in ("epochs", "steps") and all(v is None for v in col):
            continue
        else:
            try:
                out[name] = col.astype(float)
            except (TypeError, ValueError):
                raise ValueError(f"hyperparameter {name!r} must be numeric, got values like {col[0]!r}") from None
    return out


def _architecture(values, k):
    if "hidden_layer_sizes" in values:
        sizes = [parse_layer_sizes(v) for v in values["hidden_layer_sizes"]]
        depth = np.array([len(s) for s in sizes], float)
        max_depth = int(depth.max())
        widths = np.array([list(s) + [0] * (max_depth - len(s)) for s in sizes], float)
        return widths, depth
    width = values.get("width", np.full(k, float(HYPERPARAMETERS["width"])))
    depth = values.get("depth", np.full(k, float(HYPERPARAMETERS["depth"])))
    max_depth = int(depth.max())
    return np.repeat(width[:, None], max_depth, 1), depth


def _check_architecture(widths, depth):
    if np.any(depth < 1) or np.any(depth != np.round(depth)):
        raise ValueError("hyperparameter 'depth' must be a positive integer")
    active = np.arange(widths.shape[1]) < depth[:, None]
    w = widths[active]
    if np.any(w < 1) or np.any(w != np.round(w)):
        raise ValueError("hyperparameter 'width' must be a positive integer")


def _ordered(names, table):
    used = set(names)
    return tuple(n for n in table if n in used)


def _plan(dataset, values, seeds, model, group_by, n_evals, eval_batch_size, budget_defaults):
    k = len(next(iter(values.values()))) if values else 1
    s = len(seeds)
    n_train = dataset.n_train
    batch = values.get("batch_size", np.full(k, float(budget_defaults.get("batch_size") or _DEFAULT_BATCH_SIZE)))
    if np.any(batch < 1) or np.any(batch != np.round(batch)) or np.any(batch > n_train):
        bad = batch[(batch < 1) | (batch != np.round(batch)) | (batch > n_train)][0]
        raise ValueError(f"batch_size={bad:g} must be an integer between 1 and the training-set size {n_train}")
    epochs, steps = values.get("epochs"), values.get("steps")
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one training budget: `epochs` or `steps` (fixed or in the space)")
    spe = n_train // batch
    n_steps = np.ceil(epochs * spe) if epochs is not None else steps
    if np.any(n_steps < 1) or np.any(n_steps != np.round(n_steps)):
        raise ValueError("the training budget must give at least one whole step per configuration")
    widths, depth = _architecture(values, k)
    _check_architecture(widths, depth)
    for name in group_by:
        if name not in values:
            raise ValueError(f"group_by names {name!r}, which is neither in the space nor fixed")
    keys = [tuple([int(batch[i]), int(n_steps[i])] + [str(values[n][i]) for n in group_by]) for i in range(k)]
    groups = []
    for key in dict.fromkeys(keys):
        members = np.array([i for i in range(k) if keys[i] == key])
        sub = {n: v[members] for n, v in values.items()}
        dropout = "dropout" in sub and bool(np.any(sub["dropout"] > 0))
        bn = "batch_norm" in sub and bool(np.any(sub["batch_norm"] > 0))
        max_depth = int(depth[members].max())
        # one depth for the whole group: build each layer at its own largest size
        layer_widths = (tuple(int(w) for w in widths[members][:, :max_depth].max(0))
                        if np.all(depth[members] == max_depth) else ())
        mspec = ModelSpec(
            kind=model,
            max_width=int(widths[members].max()),
            max_depth=max_depth,
            layer_widths=layer_widths,
            n_out=dataset.output_dim,
            input_shape=tuple(dataset.input_shape),
            activations=_ordered(sub.get("activation", [HYPERPARAMETERS["activation"]]), tuple(ACTIVATIONS)),
            dropout=dropout,
            batch_norm=bn,
        )
        spec = TrainSpec(
            model=mspec,
            task=dataset.task,
            batch_size=key[0],
            n_steps=key[1],
            n_train=n_train,
            optimizers=_ordered(sub.get("optimizer", [HYPERPARAMETERS["optimizer"]]), OPTIMIZERS),
            schedules=_ordered(sub.get("schedule", [HYPERPARAMETERS["schedule"]]), SCHEDULES),
            n_evals=n_evals,
            eval_batch_size=eval_batch_size,
        )
        runs = (members[:, None] * s + np.arange(s)[None, :]).ravel()
        groups.append(_Group(key, spec, runs))
    return groups, widths, depth


@functools.lru_cache(maxsize=64)
def _compiled(spec: TrainSpec):
    """One jitted program per spec, reused by every chunk and every later sweep in the process."""
    return jax.jit(jax.vmap(partial(train, spec), in_axes=(None, 0, 0)))


def _dataset_fingerprint(dataset) -> str:
    arrays = {n: np.asarray(getattr(dataset, n)) for n in ("x_train", "y_train", "x_val", "y_val")}
    return fingerprint(dataset.name, dataset.task, arrays)


def _device_description(devices) -> str:
    d = devices[0]
    kind = getattr(d, "device_kind", d.platform)
    cpu = platform.processor() or platform.machine()
    return f"{len(devices)} x {d.platform}:{kind}" + (f" ({cpu})" if d.platform == "cpu" else "")


def _versions() -> dict[str, str]:
    import flax
    import optax

    from importlib.metadata import PackageNotFoundError, version

    try:
        jaxlib = version("jaxlib")
    except PackageNotFoundError:  # pragma: no cover - jaxlib always accompanies jax
        jaxlib = "unknown"
    return {"hsens_jax": hsens_jax.__version__, "jax": jax.__version__, "jaxlib": jaxlib,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def run_sweep(
    dataset,
    space: Space,
    configs: Mapping[str, np.ndarray],
    *,
    model: str = "mlp",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
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
) -> SweepResult:
    """Train every configuration of ``configs`` with every seed; return the results.

    Args:
      dataset: a :class:`hsens_jax.data.Dataset`.
      space: the search space ``configs`` was drawn from.
      configs: the design, K configurations in the configs format of
        :mod:`hsens_jax.space`.
      model: ``"mlp"`` or ``"cnn"``.
      fixed: values of engine hyperparameters that are not in the space, e.g.
        ``{"optimizer": "adam", "epochs": 10}``. The budget (``epochs`` or ``steps``)
        must be given here or in the space.
      seeds: S integer seeds; every configuration is trained once per seed.
      chunk_size: runs per compiled call (bounds memory).
      n_evals: validation points along training (curve length).
      group_by: hyperparameters to compile separately instead of masking.
      eval_batch_size: validation examples per forward pass.
      run_dir: directory for incremental results; re-running resumes.
      overwrite: discard a different sweep found in ``run_dir``.
      progress: show a progress bar on stderr.
      devices: devices to shard over (default: all local devices).
      design: description of how ``configs`` were made, stored in the metadata.
      stop_after_chunks: compute at most this many new chunks, then raise
        ``KeyboardInterrupt`` (used to test resumption; the run directory keeps them).

    Returns:
      A :class:`hsens_jax.results.SweepResult` with metrics of shape (K, S).
    """
    configs = {n: np.asarray(configs[n], float) for n in space.names} if set(space.names) <= set(configs) else configs
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    seeds = np.asarray(list(seeds), dtype=np.int64)
    if seeds.ndim != 1 or len(seeds) == 0:
        raise ValueError("seeds must be a non-empty list of integers")
    values = engine_values(space, configs, fixed)
    k, s = len(next(iter(configs.values()))), len(seeds)
    groups, widths, depth = _plan(dataset, values, seeds, model, tuple(group_by), n_evals, eval_batch_size, dict(fixed or {}))
    devices = list(devices or jax.local_devices())
    mesh = Mesh(np.array(devices), ("runs",))
    run_sharding = NamedSharding(mesh, PartitionSpec("runs"))
    replicated = NamedSharding(mesh, PartitionSpec())

    fp = fingerprint(
        space.to_dict(), {n: configs[n] for n in space.names}, dict(fixed or {}), seeds, model, chunk_size,
        n_evals, list(group_by), eval_batch_size, _dataset_fingerprint(dataset), hsens_jax.__version__,
    )
    meta = {
        "fixed": dict(fixed or {}), "model": model, "seeds": seeds.tolist(), "chunk_size": chunk_size,
        "n_evals": n_evals, "group_by": list(group_by), "design": dict(design or {}),
        "dataset": {"name": dataset.name, "task": dataset.task, "n_train": dataset.n_train, "n_val": dataset.n_val,
                    "input_shape": list(dataset.input_shape), "output_dim": dataset.output_dim},
        "versions": _versions(), "device": _device_description(devices), "n_configs": k, "n_seeds": s,
        "space": space.to_dict(),
        "groups": [{"batch_size": g.spec.batch_size, "n_steps": g.spec.n_steps, "n_runs": int(len(g.runs)),
                    "max_width": g.spec.model.max_width, "max_depth": g.spec.model.max_depth,
                    "layer_widths": list(g.spec.model.layer_widths),
                    "optimizers": list(g.spec.optimizers), "key": list(g.key)} for g in groups],
    }
    store = RunDirectory(run_dir) if run_dir is not None else None
    if store is not None:
        store.open(fp, meta, {n: configs[n] for n in space.names}, overwrite=overwrite)

    data = jax.device_put(prepare_data(dataset, eval_batch_size), replicated)
    n_dev = len(devices)
    total_steps = sum(len(g.runs) * g.spec.n_steps for g in groups)
    bar = Progress(total_steps, desc="sweep", enabled=progress)
    results: dict[str, np.ndarray] = {}
    group_time = np.zeros(len(groups))
    new_chunks = 0
    t_start = time.perf_counter()

    def chunks_of(group):
        cs = min(chunk_size, len(group.runs))
        return [group.runs[ci * cs:(ci + 1) * cs] for ci in range(math.ceil(len(group.runs) / cs))], cs

    def chunk_inputs(group, runs, cs):
        padded = math.ceil(cs / n_dev) * n_dev
        idx = np.concatenate([runs, np.repeat(runs[-1:], padded - len(runs))])
        cfg, seed_idx = idx // s, idx % s
        hp = hp_from_values({n: v[cfg] for n, v in values.items() if n not in ("batch_size", "epochs", "steps")},
                            group.spec)
        keys = jax.vmap(jax.random.key)(jnp.asarray(seeds[seed_idx]))
        return jax.device_put(hp, run_sharding), jax.device_put(keys, run_sharding)

    def stored(gi, ci, runs):
        chunk = store.load_chunk(f"g{gi:03d}-c{ci:05d}") if store is not None else None
        return chunk if chunk is not None and np.array_equal(chunk.get("runs"), runs) else None

    # Compile the next group's program in a background thread while this group trains
    # (XLA compiles without the GIL; on one device the two overlap almost for free).
    compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsens-compile")
    compiling: dict[int, Future] = {}

    def compile_ahead(gi):
        if gi >= len(groups) or gi in compiling:
            return
        group = groups[gi]
        chunk_runs, cs = chunks_of(group)
        first = next((ci for ci, runs in enumerate(chunk_runs) if stored(gi, ci, runs) is None), None)
        if first is None:
            return  # everything of that group is on disk already
        hp, keys = chunk_inputs(group, chunk_runs[first], cs)
        compiling[gi] = compiler.submit(lambda: _compiled(group.spec).lower(data, hp, keys).compile())

    def _run_group(gi, group):
        nonlocal new_chunks
        chunk_runs, cs = chunks_of(group)
        fn = None
        for ci, runs in enumerate(chunk_runs):
            name = f"g{gi:03d}-c{ci:05d}"
            chunk = stored(gi, ci, runs)
            if chunk is None:
                if stop_after_chunks is not None and new_chunks >= stop_after_chunks:
                    bar.close()
                    raise KeyboardInterrupt(f"stopped after {new_chunks} new chunk(s), as asked")
                hp, keys = chunk_inputs(group, runs, cs)
                t0 = time.perf_counter()
                if fn is None:
                    compile_ahead(gi)
                    fn = compiling.pop(gi).result()
                    compile_ahead(gi + 1)
                out = fn(data, hp, keys)
                out = jax.tree.map(lambda a: np.asarray(a)[: len(runs)], jax.block_until_ready(out))
                chunk = {**out, "runs": runs, "wall_time": np.asarray(time.perf_counter() - t0)}
                if store is not None:
                    store.save_chunk(name, chunk)
                new_chunks += 1
            group_time[gi] += float(chunk["wall_time"])
            for key, arr in chunk.items():
                if key in ("runs", "wall_time"):
                    continue
                if key not in results:
                    shape = (k * s,) + arr.shape[1:] if key not in CURVES else (k * s, n_evals)
                    results[key] = np.full(shape, np.nan if arr.dtype.kind == "f" else 0, arr.dtype)
                if key in CURVES:
                    results[key][runs, : arr.shape[1]] = arr
                else:
                    results[key][runs] = arr
            bar.update(len(runs) * group.spec.n_steps, len(runs))

    try:
        for gi, group in enumerate(groups):
            _run_group(gi, group)
    finally:
        compiler.shutdown(wait=False, cancel_futures=True)
    bar.close()

    metrics: dict[str, np.ndarray] = {}
    for key, arr in results.items():
        metrics[key] = arr.reshape((k, s) + arr.shape[1:])
    group_of = np.zeros(k, int)
    curve_steps = np.full((k, n_evals), np.nan)
    for gi, g in enumerate(groups):
        cfgs = np.unique(g.runs // s)
        group_of[cfgs] = gi
        pts = np.minimum(np.arange(1, g.spec.n_points + 1) * g.spec.eval_every, g.spec.n_steps)
        curve_steps[cfgs, : g.spec.n_points] = pts
    ref = groups[0].spec.model
    bn = values.get("batch_norm", np.zeros(k))
    metrics["param_count"] = ModelSpec(**{**ref.__dict__}).parameter_count(widths, depth, bn).astype(np.int64)
    metrics["flops_per_example"] = ref.flops_per_example(widths, depth)
    metrics["group"] = group_of
    metrics["group_wall_time"] = group_time[group_of]
    metrics["curve_steps"] = curve_steps
    meta["wall_time"] = time.perf_counter() - t_start
    meta["group_wall_times"] = group_time.tolist()
    meta["fingerprint"] = fp
    result = SweepResult(space, {n: configs[n] for n in space.names}, seeds, metrics, meta)
    if store is not None:
        result.save(store.path)
    return result
