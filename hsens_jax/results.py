"""Sweep results and the run directory that keeps them safe.

A run directory holds, in open formats that NumPy, pandas and any JSON reader load:

===================  ==========================================================
``meta.json``        what was run: the settings that decide results (space,
                     budget, data set, precision, devices, package versions...),
                     their fingerprint, and descriptive metadata
``configs.npz``      the design (the configs format of :mod:`hsens_jax.space`),
                     plus ``seeds`` (S,) and ``run_ids`` (K, S) or (K, S, F)
``chunks/*.npz``     one file per finished chunk of runs, written atomically;
                     each carries its runs' ids, the settings fingerprint and
                     its provenance (device, precision, host, time, version)
``chunks/rejected/`` chunks that failed validation, set aside (never deleted)
``results.npz``      every metric as an array, assembled when the sweep ends
``results.csv``      one row per (configuration, seed[, fold]): decoded and fixed
                     hyperparameters and scalar metrics
``.lock``            the advisory lock of the process writing the directory
===================  ==========================================================

Runs are identified by content: the sweep gives every run a ``run_id`` (a 64-bit hash of
the run's hyperparameter values, seed and fold, salted with the settings fingerprint), and
:meth:`RunDirectory.completed` says which ids are on disk already. A grown design (more
points, more seeds) therefore reuses what was computed, and a chunk of another sweep can
never be adopted.

Safety:

* Files are written to a temporary name (``.tmp-<pid>-...``) and renamed into place
  (``os.replace`` is atomic), so a process killed at any moment leaves a whole file or none.
* One writer at a time: :meth:`RunDirectory.open` takes an exclusive ``flock`` on ``.lock``
  (released by the kernel when the holder exits, even on SIGKILL) and refuses a second
  writer, naming the holder's pid and host.
* A sweep under different settings (another space, budget, data set, device count,
  precision, package versions...) is refused with the list of what changed, never mixed in.
* Every chunk is validated (fingerprint, keys, per-run shapes and dtypes, run ids) before
  its runs are trusted; a failing chunk is moved to ``chunks/rejected/`` and recomputed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsens_jax.space import Space

SCALARS = ("final_val_loss", "final_val_accuracy", "best_val_loss", "best_val_accuracy",
           "final_train_loss", "diverged", "diverged_step")
PER_CONFIG = ("param_count", "flops_per_example", "group", "group_wall_time")
CURVES = ("train_curve", "val_loss_curve", "val_accuracy_curve")

DIRECTIONS = ("minimize", "maximize")

DIVERGENCE_REASONS = ("", "non_finite", "loss_blowup", "chance_level")
"""Names of the codes in ``metrics["diverged_reason"]`` ((K, S) ints, 0 = not diverged). Runs
written before reasons were recorded have ``diverged`` only: readers treat its flagged runs as
``non_finite``."""

BUILTIN_DIRECTIONS = {
    "final_val_loss": "minimize", "best_val_loss": "minimize", "final_train_loss": "minimize",
    "test_loss": "minimize", "final_val_accuracy": "maximize", "best_val_accuracy": "maximize",
    "test_accuracy": "maximize", "param_count": "minimize", "flops_per_example": "minimize",
    "group_wall_time": "minimize",
}
"""Directions of the metrics the engine records for its built-in losses and metrics. A run
directory stores the direction of every objective it holds (``meta["directions"]``); this table
only serves run directories written before directions were recorded. Nothing is inferred from
a metric's name."""


@dataclass
class SweepResult:
    """Everything a sweep produced, as NumPy arrays.

    Attributes:
      space: the search space.
      configs: the design, ``dict[str, (K,)]`` (NaN = inactive).
      seeds: the S seeds, (S,).
      metrics: ``dict[str, (K, S)]`` for :data:`SCALARS`, ``(K,)`` for :data:`PER_CONFIG`,
        ``(K, S, P)`` for :data:`CURVES` (NaN-padded), and ``curve_steps`` (K, P): the
        step (1-based) at which each curve point was recorded.
      meta: the run's metadata (see :mod:`hsens_jax.results`).
    """

    space: Space
    configs: dict[str, np.ndarray]
    seeds: np.ndarray
    metrics: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_configs(self) -> int:
        return len(next(iter(self.configs.values()))) if self.configs else 0

    def objective(self, name: str, reduce: str = "mean") -> np.ndarray:
        """A metric per configuration, (K,): averaged (or ``"median"``, ``"min"``, ``"max"``) over
        seeds, and over cross-validation folds when there are some (the CV score)."""
        if name not in self.metrics:
            raise ValueError(f"unknown objective {name!r}; available: {sorted(self.metrics)}")
        m = np.asarray(self.metrics[name], float)
        if m.ndim == 1:
            return m
        folds = self.n_folds
        if name in CURVES or name.endswith("_curve") or name == "curve_steps" or m.ndim != (3 if folds else 2):
            raise ValueError(f"{name!r} is a curve, not a scalar objective")
        return reduce_seeds(m.reshape(m.shape[0], -1), reduce)

    def records(self) -> list[dict[str, Any]]:
        """One dict per (configuration, seed[, fold]): hyperparameters and scalar metrics.

        Columns: ``config``, ``seed``, ``fold`` (only when the metrics have a fold axis, see
        :attr:`n_folds`), the decoded space hyperparameters (None where inactive), the fixed
        hyperparameters (``meta["fixed"]``), then every metric with one value per run
        ((K, S) or (K, S, F)) or per configuration ((K,)); curves are left out.
        """
        decoded = self.space.decode(self.configs)
        n_folds = self.n_folds
        run_shape = (self.n_configs, len(self.seeds)) + ((n_folds,) if n_folds else ())
        fixed = {n: v for n, v in dict(self.meta.get("fixed") or {}).items() if n not in self.space.names}
        columns = [n for n in _record_metric_order(self.metrics) if _is_record_metric(n, self.metrics[n], run_shape)]
        folds = range(n_folds) if n_folds else (None,)
        rows = []
        for k, hp in enumerate(decoded):
            hyper = {name: hp.get(name) for name in self.space.names} | fixed
            for s, seed in enumerate(self.seeds):
                for fold in folds:
                    row: dict[str, Any] = {"config": k, "seed": int(seed)}
                    if fold is not None:
                        row["fold"] = fold
                    row.update(hyper)
                    at = (k, s) if fold is None else (k, s, fold)
                    for m in columns:
                        arr = self.metrics[m]
                        row[m] = _py(arr[at[: np.ndim(arr)]])
                    rows.append(row)
        return rows

    @property
    def n_folds(self) -> int | None:
        """F when the per-run metrics have a fold axis, (K, S, F); None otherwise.

        Read from ``meta["n_folds"]`` when a metric has that axis, else inferred from a
        built-in scalar metric (:data:`SCALARS`) with three axes.
        """
        k, s = self.n_configs, len(self.seeds)
        f = self.meta.get("n_folds")
        if isinstance(f, int) and not isinstance(f, bool) and f >= 1:
            if any(np.shape(a) == (k, s, f) for a in self.metrics.values()):
                return f
            return None
        for name in SCALARS:
            shape = np.shape(self.metrics.get(name))
            if len(shape) == 3 and shape[:2] == (k, s):
                return int(shape[2])
        return None

    def to_dataframe(self):
        """The :meth:`records` as a pandas DataFrame (requires pandas)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_dataframe needs pandas: pip install pandas") from e
        return pd.DataFrame.from_records(self.records())

    def direction(self, name: str) -> str:
        """``"minimize"`` or ``"maximize"``: which way ``name`` improves.

        Read from the run's recorded directions (``meta["directions"]``, written by the
        engine from the model's metrics), else from :data:`BUILTIN_DIRECTIONS`.

        Raises:
          ValueError: ``name`` is not a metric of this result, or no direction is known for
            it (pass one explicitly where the caller accepts ``direction=``).
        """
        if name not in self.metrics:
            raise ValueError(f"unknown objective {name!r}; available: {sorted(self.metrics)}")
        known = {**BUILTIN_DIRECTIONS, **dict(self.meta.get("directions") or {})}
        if name not in known:
            raise ValueError(
                f"no direction is recorded for {name!r}: pass direction='minimize' or 'maximize'"
            )
        return known[name]

    def cv_results(self, metric: str = "final_val_accuracy", reduce: str = "mean") -> dict[str, Any]:
        """scikit-learn's ``cv_results_`` of a cross-validated sweep (``run_sweep(..., cv=k)``).

        Scores follow scikit-learn's convention, higher is better: a maximized metric is the
        score itself (``"score": metric``); a minimized one is negated (``"score": "neg_" +
        metric``, as ``neg_log_loss``). Each split's score is the metric of that fold reduced
        over seeds (``reduce``).

        Returns:
          a dict of (K,) arrays: ``params`` (a list of dicts of the space's hyperparameters),
          ``param_<name>``, ``split<i>_test_score``, ``mean_test_score``, ``std_test_score``
          (population standard deviation over folds, as scikit-learn), ``rank_test_score`` (1 =
          best, ties share the lowest rank, as scipy's ``rankdata(method="min")``), and ``score``
          (the name of what was scored).
        """
        from scipy.stats import rankdata

        folds = self.n_folds
        m = np.asarray(self.metrics.get(metric), float) if metric in self.metrics else None
        if m is None:
            raise ValueError(f"unknown metric {metric!r}; available: {sorted(self.metrics)}")
        if not folds or m.ndim != 3:
            raise ValueError("cv_results needs a cross-validated sweep (run_sweep(..., cv=k)); this one has no folds")
        sign = 1.0 if self.direction(metric) == "maximize" else -1.0
        per_fold = np.stack([reduce_seeds(m[:, :, f], reduce) for f in range(folds)], axis=1) * sign
        mean = per_fold.mean(axis=1)
        ranked = np.where(np.isnan(mean), -np.inf, mean)
        out: dict[str, Any] = {"params": self.space.decode(self.configs)}
        for name in self.space.names:
            out[f"param_{name}"] = np.array([row.get(name) for row in out["params"]], dtype=object)
        for f in range(folds):
            out[f"split{f}_test_score"] = per_fold[:, f]
        out["mean_test_score"] = mean
        out["std_test_score"] = per_fold.std(axis=1)
        out["rank_test_score"] = rankdata(-ranked, method="min").astype(np.int32)
        out["score"] = metric if sign > 0 else f"neg_{metric}"
        return out

    def best(self, objective: str = "final_val_loss", k: int = 10, direction: str | None = None):
        """Indices of the ``k`` best configurations by the seed-averaged ``objective``.

        ``direction`` (``"minimize"`` or ``"maximize"``) defaults to the objective's own
        (:meth:`direction`). Configurations whose objective is NaN come last.
        """
        direction = check_direction(direction) if direction is not None else self.direction(objective)
        values = self.objective(objective)
        signed = values if direction == "minimize" else -values
        order = np.argsort(np.where(np.isnan(values), np.inf, signed), kind="stable")
        return order[:k]

    def table(self, objective: str = "final_val_loss", k: int = 10, direction: str | None = None) -> str:
        """A plain-text table of the ``k`` best configurations by ``objective``.

        The first line names the metric the rows are ranked by and its direction (``direction``,
        default :meth:`direction`). Metric columns show the mean over a configuration's runs
        (seeds, and folds where there are any) ``± std`` when it has several; ``diverged`` is
        the fraction of its runs flagged as diverged. Configurations whose objective has no
        value yet (NaN with no diverged run: not computed) are left out, and a last line says
        how many.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k (--top) must be a positive integer, got {k!r}")
        direction = check_direction(direction) if direction is not None else self.direction(objective)
        values = self.objective(objective)
        n_configs = len(values)

        def per_run(name):  # (K, R): every run (seed, fold...) of each configuration
            m = np.asarray(self.metrics[name], float)
            return m.reshape(len(m), -1)

        flagged = (per_run("diverged") > 0).any(axis=1) if "diverged" in self.metrics \
            else np.zeros(n_configs, bool)
        missing = np.isnan(values) & ~flagged
        order = [i for i in self.best(objective, n_configs, direction) if not missing[i]][:k]
        idx = np.asarray(order, dtype=int)
        shown = [objective] + [m for m in ("final_val_loss", "final_val_accuracy", "param_count")
                               if m in self.metrics and m != objective]
        n_runs = per_run(objective).shape[1]

        def cell(name, i):
            m = per_run(name)
            mean = self.objective(name)[i]
            if np.isnan(mean):
                return "-"
            if m.shape[1] == 1 or np.isfinite(m[i]).sum() < 2:
                return f"{mean:.4g}"
            return f"{mean:.4g} ± {np.nanstd(m[i]):.2g}"

        decoded = self.space.decode({n: c[idx] for n, c in self.configs.items()})
        cols = ["rank"] + list(self.space.names) + shown + (["diverged"] if "diverged" in self.metrics else [])
        rows = []
        for r, (i, hp) in enumerate(zip(idx, decoded)):
            row = [str(r + 1)] + [_fmt(hp.get(n, "-")) for n in self.space.names]
            row += [cell(name, i) for name in shown]
            if "diverged" in self.metrics:
                frac = float(np.mean(per_run("diverged")[i] > 0))
                row.append(f"{frac:.0%}" if frac else "no")
            rows.append(row)
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
        line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
        spread = (f"; metrics: mean ± std over {n_runs} " + ("seeds" if np.ndim(self.metrics[objective]) == 2
                                                               else "runs (seeds x folds)")) if n_runs > 1 else ""
        lines = [f"ranked by {objective} ({direction}){spread}", line(cols), line(["-" * w for w in widths])]
        lines += [line(r) for r in rows]
        if missing.any():
            lines.append(f"({int(missing.sum())} of {n_configs} configurations have no {objective} yet "
                         f"(not computed): left out)")
        return "\n".join(lines)

    def to_optuna(self, storage=None, study_name: str | None = None, objective: str = "final_val_loss", **kwargs):
        """This sweep as an Optuna study, one finished trial per configuration (needs Optuna:
        ``pip install 'hsens_jax[search]'``); see :func:`hsens_jax.search.optuna.to_optuna`."""
        from hsens_jax.search.optuna import to_optuna

        return to_optuna(self, storage=storage, study_name=study_name, objective=objective, **kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``results.npz``, ``results.csv``, ``configs.npz`` and ``meta.json`` into ``path``.

        Saving into the run directory the result came from keeps what the directory knows of
        the sweep: the ``run_ids`` of ``configs.npz`` and, where this result's meta lacks them,
        the recorded ``settings``, ``fingerprint`` and ``chunk_schema`` (so the sweep can still
        be resumed or grown). Takes no lock: the sweep that holds it calls this.
        """
        store = RunDirectory(path)
        _refuse_regular_file(store.path)
        store.path.mkdir(parents=True, exist_ok=True)
        design = {**self.configs, "seeds": np.asarray(self.seeds)}
        meta = self.meta | {"space": self.space.to_dict(), "seeds": [int(s) for s in self.seeds]}
        recorded = _recorded_design(store.path / "configs.npz")
        if recorded is not None and _same_design(recorded, design):
            if "run_ids" in recorded:
                design["run_ids"] = recorded["run_ids"]
            old_meta = _read_json_or_none(store.path / "meta.json")
            if isinstance(old_meta, dict) and "settings" not in meta:
                meta |= {k: old_meta[k] for k in ("settings", "fingerprint", "chunk_schema") if k in old_meta}
        store.write_meta(meta)
        _atomic_savez(store.path / "configs.npz", design)
        _atomic_savez(store.path / "results.npz", {**self.metrics, "seeds": self.seeds})
        _atomic_write(store.path / "results.csv", _to_csv(self.records()))


def check_direction(direction) -> str:
    """``direction`` itself if it is ``"minimize"`` or ``"maximize"``, else a ValueError naming it."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    return direction


def load_results(path: str | os.PathLike, partial: bool = False) -> SweepResult:
    """Load a run directory back into a :class:`SweepResult`.

    Args:
      path: the run directory.
      partial: also accept an unfinished sweep. Without ``results.npz`` (the sweep was
        stopped, or is still running), the result is assembled from ``configs.npz``,
        ``meta.json`` and the valid chunks: metrics of shape (K, S) or (K, S, F) (curves with
        their trailing axis) as the chunks hold them, NaN for the runs not computed yet
        (integer and boolean metrics then become float64, so that a missing run is never
        read as 0 or False), a :class:`PartialResultsWarning` saying how many runs are
        missing, and ``meta["partial"] = {"computed_runs", "total_runs", "missing_runs"}``.
        Chunks that fail validation are skipped (not moved: a reader changes nothing).
        A readable ``results.npz`` is loaded as usual (a finished sweep is not partial); a
        damaged one is reported in a warning and the chunks are used instead.

    Raises:
      FileNotFoundError: ``path`` or its ``meta.json`` does not exist, or (``partial`` False)
        the sweep has not finished.
      NotARunDirectory: ``path`` is a regular file.
      ValueError: a damaged or incomplete file, named in the message.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    _refuse_regular_file(path)
    meta_file, results_file = path / "meta.json", path / "results.npz"
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file} not found: {path} is not a hsens_jax run directory")
    meta = _read_meta_file(meta_file)
    space = _space_from_meta(meta, meta_file)
    if results_file.exists():
        try:
            return _load_finished(path, meta, space)
        except ValueError as e:
            if not partial:
                raise
            warnings.warn(f"{e}; assembling the computed runs from {path / 'chunks'} instead",
                          PartialResultsWarning, stacklevel=2)
    elif not partial:
        raise FileNotFoundError(
            f"{results_file} not found: the sweep in {path} has not finished. Re-run the same command "
            f"to resume it, or load the runs computed so far with load_results({str(path)!r}, partial=True)"
        )
    return _load_partial(path, meta, space)


def _load_finished(path: Path, meta: dict, space: Space) -> SweepResult:
    design = _read_npz(path / "configs.npz")
    configs = _configs_from(design, space, path / "configs.npz")
    k = len(next(iter(configs.values()))) if configs else 0
    results_file = path / "results.npz"
    arrays = _read_npz(results_file, hint=(
        f"the computed runs are kept in {path / 'chunks'}: load_results(path, partial=True) assembles them, "
        "and re-running the sweep command rewrites the file"))
    if "seeds" not in arrays:
        raise ValueError(f"{results_file} has no 'seeds' array: it is not a hsens_jax results file")
    seeds = arrays.pop("seeds")
    for name, arr in arrays.items():
        if arr.ndim == 0 or arr.shape[0] != k:
            raise ValueError(
                f"{results_file}: metric {name!r} has shape {arr.shape}, but {path / 'configs.npz'} holds "
                f"{k} configurations; the two files belong to different sweeps (re-run the sweep command "
                "to rewrite the results)"
            )
    return SweepResult(space, configs, seeds, arrays, meta)


def _load_partial(path: Path, meta: dict, space: Space) -> SweepResult:
    meta_file, design_file = path / "meta.json", path / "configs.npz"
    fp = meta.get("fingerprint")
    if not isinstance(meta.get("settings"), dict) or not isinstance(fp, str):
        raise ValueError(
            f"{meta_file} records no settings fingerprint (the directory was written by an older hsens_jax "
            "or by SweepResult.save): its chunks cannot be checked, so no partial result is assembled"
        )
    if not design_file.exists():
        raise FileNotFoundError(
            f"{design_file} not found: the sweep in {path} stopped before writing its design; nothing to load yet"
        )
    design = _read_npz(design_file)
    configs = _configs_from(design, space, design_file)
    missing_keys = [n for n in ("seeds", "run_ids") if n not in design]
    if missing_keys:
        raise ValueError(f"{design_file} lacks {missing_keys}: it does not record the runs of the design, "
                         "so the chunks cannot be matched to it")
    seeds, run_ids = design["seeds"], design["run_ids"]
    k = len(next(iter(configs.values()))) if configs else 0
    if run_ids.dtype.kind not in "ui" or run_ids.ndim not in (2, 3) or run_ids.shape[:2] != (k, len(seeds)):
        raise ValueError(f"{design_file}: run_ids has shape {run_ids.shape} and dtype {run_ids.dtype}; expected "
                         f"integers of shape ({k}, {len(seeds)}) or ({k}, {len(seeds)}, F)")
    store = RunDirectory(path)
    schema = _schema_from_meta(meta.get("chunk_schema"))
    index, problems, schema = store._scan(fp, schema, set_aside=False)
    if problems:
        warnings.warn(_problems_text(problems, "ignored (a sweep re-run sets them aside and recomputes them)"),
                      ChunkRejectedWarning, stacklevel=3)
    metrics, found = store._gather(index, run_ids.astype(np.uint64), list(schema), schema, fill_missing=True)
    total, computed = int(run_ids.size), int(found.sum())
    if computed < total:
        warnings.warn(
            f"partial results in {path}: {total - computed} of {total} runs are not computed yet; their "
            "metrics are NaN (re-run the sweep command to finish it)", PartialResultsWarning, stacklevel=3)
    meta = meta | {"partial": {"computed_runs": computed, "total_runs": total, "missing_runs": total - computed}}
    if run_ids.ndim == 3:
        meta.setdefault("n_folds", int(run_ids.shape[2]))
    return SweepResult(space, configs, seeds, metrics, meta)


def reduce_seeds(m: np.ndarray, reduce: str = "mean") -> np.ndarray:
    """Combine a (K, S) metric over its seeds: ``mean``, ``median``, ``min`` or ``max`` (NaN-aware)."""
    fns = {"mean": np.nanmean, "median": np.nanmedian, "min": np.nanmin, "max": np.nanmax}
    if reduce not in fns:
        raise ValueError(f"reduce must be one of {sorted(fns)}, got {reduce!r}")
    with warnings.catch_warnings():  # an all-NaN row (every seed diverged) stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return fns[reduce](np.asarray(m, float), axis=1)


class NotARunDirectory(ValueError):
    """A path that cannot be a run directory (a regular file, or a folder holding foreign results)."""


class RunDirectoryLocked(ValueError):
    """Another process holds the run directory's lock. ``pid`` and ``host`` name it (None if unknown)."""

    def __init__(self, message: str, pid: int | None = None, host: str | None = None):
        super().__init__(message)
        self.pid, self.host = pid, host


class SettingsMismatch(ValueError):
    """The run directory holds a sweep run under other settings.

    ``differences`` lists ``(component path, old value, new value)``; a component absent on
    one side has the value :data:`ABSENT` there.
    """

    def __init__(self, message: str, differences: list[tuple[str, Any, Any]]):
        super().__init__(message)
        self.differences = differences


class ChunkRejectedWarning(UserWarning):
    """Chunks that failed validation: set aside (writer) or skipped (reader); their runs are recomputed."""


class PartialResultsWarning(UserWarning):
    """Results assembled from an unfinished sweep: some runs are missing."""


ABSENT = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""Marks a settings component present on one side of a :class:`SettingsMismatch` only."""

RESERVED_CHUNK_KEYS = ("run_ids", "fingerprint", "provenance")
"""Arrays every chunk file holds besides the metrics; no metric may use these names."""

DESIGN_KEYS = ("seeds", "run_ids")
"""Arrays ``configs.npz`` holds besides the hyperparameter columns."""

_CHUNK_NAME = re.compile(r"^(\d+)-")
_TEMP_NAME = re.compile(r"^\.tmp-(\d+)-([0-9a-f]{8})-")
_STALE_FOREIGN_TEMP_S = 3600.0
_RESULT_FILES = ("results.npz", "results.csv")


class RunDirectory:
    """The on-disk store of one sweep: settings, design, chunk files, results.

    A writer (the sweep) calls :meth:`open` (which locks the directory), then
    :meth:`write_design`, :meth:`completed`, :meth:`save_chunk` for each new chunk,
    :meth:`load_runs`, and :meth:`close` (or uses ``with RunDirectory(p).open(...) as d:``).
    Readers (:func:`load_results`) take no lock and change nothing.

    The lock is an ``fcntl.flock`` on ``PATH/.lock``: advisory (it binds only hsens_jax
    writers), released by the kernel when its holder exits however it exits, and honoured
    across machines on NFS (Linux emulates ``flock`` with NFS byte-range locks).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._fingerprint: str | None = None
        self._meta: dict | None = None
        self._schema: dict[str, tuple[tuple[int, ...], str]] | None = None
        self._cache: dict[str, dict[str, np.ndarray]] = {}
        self._provenance: dict[str, dict] = {}
        self._next_chunk = 1
        self._mutex = threading.Lock()  # save_chunk may be called from a writer thread

    # ---- paths and state

    @property
    def chunk_dir(self) -> Path:
        return self.path / "chunks"

    @property
    def rejected_dir(self) -> Path:
        return self.chunk_dir / "rejected"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @property
    def fingerprint(self) -> str | None:
        """The settings fingerprint taken by :meth:`open` (None before)."""
        return self._fingerprint

    @property
    def meta(self) -> dict | None:
        """What :meth:`open` wrote to ``meta.json`` (meta, settings, fingerprint, chunk schema)."""
        return None if self._meta is None else dict(self._meta)

    @property
    def is_open(self) -> bool:
        return self._fingerprint is not None and self._lock_fd is not None

    def read_meta(self) -> dict | None:
        """``meta.json`` as a dict, None if absent; ValueError naming the file if damaged."""
        f = self.path / "meta.json"
        return _read_meta_file(f) if f.exists() else None

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        _atomic_write(self.path / "meta.json", json.dumps(dict(meta), indent=2, default=_json_default))

    def recorded_except(self, settings: Mapping[str, Any], keys: Iterable[str]) -> dict | None:
        """The recorded values of the components ``keys`` when they are the only components
        in which the recorded settings differ from ``settings``; None otherwise (no sweep
        recorded, the same settings, or other differences). Reads ``meta.json`` only.

        A sweep resumed under ``allow_device_change`` keeps the recorded ``devices`` this way:
        its run ids and chunk fingerprints stay those of the chunks on disk.
        """
        try:
            recorded = (self.read_meta() or {}).get("settings")
        except ValueError:  # damaged: open() reports it
            return None
        if not isinstance(recorded, dict):
            return None
        keys = list(keys)
        new = _jsonable(settings, "settings")
        if any(k not in recorded or k not in new for k in keys) or all(
                _json_text(recorded[k]) == _json_text(new[k]) for k in keys):
            return None
        rest = lambda d: {k: v for k, v in d.items() if k not in keys}  # noqa: E731
        return {k: recorded[k] for k in keys} if fingerprint(rest(recorded)) == fingerprint(rest(new)) else None

    # ---- opening and closing

    def open(self, settings: Mapping[str, Any], meta: Mapping[str, Any], *, overwrite: bool = False) -> "RunDirectory":
        """Take the directory for writing a sweep; return ``self`` (a context manager).

        1. Lock: an exclusive, non-blocking ``flock`` on ``PATH/.lock``, which records the
           holder's pid, host and start time. Held by another process:
           :class:`RunDirectoryLocked` naming it.
        2. With the lock held, remove stale temporaries (``.tmp*``) in ``PATH`` and
           ``PATH/chunks``: those of dead processes on this host, of an older naming, or
           (written from another host) older than an hour. Lockless writers (e.g.
           ``SweepResult.save`` or an analysis writing into the directory) keep theirs.
        3. Compare ``settings`` (a JSON-able dict of named components that decide results:
           space, fixed values, model, budget, data set hash, evaluations, precision,
           devices, versions...) with those recorded. If they differ:
           :class:`SettingsMismatch` listing each differing component with its old and new
           value and how to proceed; with ``overwrite=True`` the old chunks (rejected ones
           too), ``configs.npz`` and results are deleted instead. ``overwrite`` discards
           only a sweep whose settings differ: the same settings resume.
        4. Write ``meta.json`` = ``meta | {"settings", "fingerprint"}`` atomically (keeping
           the recorded ``chunk_schema`` when the settings are the same).

        Args:
          settings: the components that decide results; their stable hash is the fingerprint.
          meta: descriptive metadata (not compared).
          overwrite: discard a sweep run under other settings instead of refusing.

        Raises:
          NotARunDirectory: ``PATH`` is a regular file, or a folder holding results files
            but no run directory.
          RunDirectoryLocked: another process writes the directory.
          SettingsMismatch: the directory holds a sweep with other settings.
          ValueError: ``meta.json`` is damaged (and ``overwrite`` is False); settings not JSON-able.
          TypeError: ``settings`` or ``meta`` is not a mapping.
        """
        if not isinstance(settings, Mapping):
            raise TypeError(f"settings must be a mapping of named components, got {type(settings).__name__}")
        if not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a mapping, got {type(meta).__name__}")
        settings = _jsonable(settings, "settings")
        fp = fingerprint(settings)
        _refuse_regular_file(self.path)
        self._refuse_foreign_directory()
        self.path.mkdir(parents=True, exist_ok=True)
        locked_here = self._lock_fd is None
        if locked_here:
            self._acquire_lock()
        try:
            self._remove_stale_temporaries()
            old = self._recorded_settings(overwrite)
            keep_schema = None
            if old is not None:
                old_settings, old_meta = old
                if old_settings is not None and fingerprint(old_settings) == fp:
                    keep_schema = old_meta.get("chunk_schema")
                elif not overwrite:
                    raise self._mismatch(old_settings, settings, fp, old_meta.get("fingerprint"))
                else:
                    self._discard_runs()
            self.chunk_dir.mkdir(exist_ok=True)
            new_meta = dict(meta) | {"settings": settings, "fingerprint": fp}
            if keep_schema is not None:
                new_meta["chunk_schema"] = keep_schema
            self.write_meta(new_meta)
        except BaseException:
            if locked_here:
                self.close()
            raise
        self._fingerprint, self._meta = fp, new_meta
        self._schema = _schema_from_meta(keep_schema)
        self._cache.clear()
        self._provenance.clear()
        self._next_chunk = self._last_chunk_number() + 1
        return self

    def close(self) -> None:
        """Release the lock (idempotent). The directory can be opened again afterwards."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            try:
                if _fcntl is not None:
                    _fcntl.flock(fd, _fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # ---- the design

    def write_design(self, configs: Mapping[str, np.ndarray], seeds: np.ndarray, run_ids: np.ndarray) -> None:
        """Write ``configs.npz``: the design (configs format), ``seeds`` (S,) and ``run_ids``.

        Rewritten atomically whenever the design grows. When the design differs from the one
        recorded, ``results.npz`` and ``results.csv`` (which describe the old design) are
        removed first; the runs themselves stay in the chunks.

        Args:
          configs: ``{name: (K,) float array}``.
          seeds: (S,) integers.
          run_ids: (K, S) or (K, S, F) unsigned 64-bit run ids (non-negative integers are cast).
        """
        self._require_open("write_design")
        design: dict[str, np.ndarray] = {}
        k = None
        for name, col in dict(configs).items():
            if name in DESIGN_KEYS:
                raise ValueError(f"write_design: a hyperparameter may not be named {name!r} "
                                 f"(configs.npz stores {list(DESIGN_KEYS)} beside the columns)")
            try:
                col = np.asarray(col, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"write_design: column {name!r} is not numeric") from None
            if col.ndim != 1 or (k is not None and len(col) != k):
                raise ValueError(f"write_design: column {name!r} has shape {col.shape}; every column must "
                                 f"have shape (K,){'' if k is None else f' with K = {k}'}")
            k = len(col)
            design[name] = col
        seeds = np.asarray(seeds)
        if seeds.ndim != 1 or seeds.dtype.kind not in "iu":
            raise ValueError(f"write_design: seeds must be a (S,) integer array, got shape {seeds.shape} "
                             f"and dtype {seeds.dtype}")
        run_ids = _as_run_ids(run_ids, "write_design: run_ids")
        if run_ids.ndim not in (2, 3) or (k is not None and run_ids.shape[0] != k) or run_ids.shape[1] != len(seeds):
            raise ValueError(f"write_design: run_ids has shape {run_ids.shape}; expected (K, S) or (K, S, F) "
                             f"with K = {k} configurations and S = {len(seeds)} seeds")
        design |= {"seeds": seeds, "run_ids": run_ids}
        recorded = _recorded_design(self.path / "configs.npz")
        if recorded is None or not _same_design(recorded, design):
            for name in _RESULT_FILES:
                (self.path / name).unlink(missing_ok=True)
        _atomic_savez(self.path / "configs.npz", design)

    # ---- chunks

    def completed(self, schema: Mapping[str, tuple[tuple[int, ...], str]]) -> dict[int, tuple[str, int]]:
        """Run ids already computed -> ``(chunk name, row)``.

        Reads every chunk file. A chunk is used only if it carries the current settings
        fingerprint, every key of ``schema`` with per-run shape ``schema[key][0]`` and dtype
        kind ``schema[key][1]`` (``'f'``, ``'i'``, ``'b'`` or ``'u'``), a 1-D unsigned
        ``run_ids`` array with one entry per row, every array with one row per run, and
        JSON provenance. Any other chunk (damaged or truncated files included) is moved to
        ``chunks/rejected/`` with a :class:`ChunkRejectedWarning` saying why; its runs are
        absent from the answer, so they are recomputed. A run id held by several chunks
        maps to the earliest chunk.

        The schema is recorded in ``meta.json`` (``chunk_schema``), so that
        :func:`load_results` can assemble a partial run, and :meth:`save_chunk` checks new
        chunks against it.
        """
        self._require_open("completed")
        schema = _check_schema(schema)
        self._schema = schema
        recorded = {k: [list(v[0]), v[1]] for k, v in schema.items()}
        if self._meta.get("chunk_schema") != recorded:
            self._meta = self._meta | {"chunk_schema": recorded}
            self.write_meta(self._meta)
        index, problems, _ = self._scan(self._fingerprint, schema, set_aside=True)
        if problems:
            warnings.warn(_problems_text(problems, f"set aside in {self.rejected_dir}; their runs will be recomputed"),
                          ChunkRejectedWarning, stacklevel=2)
        return index

    def save_chunk(self, run_ids: np.ndarray, arrays: Mapping[str, np.ndarray], provenance: Mapping[str, Any]) -> str:
        """Write one chunk atomically; return its name (fresh, never reused: ``NNNNNN-xxxxxxxx``).

        Args:
          run_ids: (n,) unsigned 64-bit ids of the chunk's runs.
          arrays: ``{key: (n, ...) array}`` of numeric or boolean dtype; checked against the
            schema of the last :meth:`completed` call (a chunk that would be rejected on the
            next resume is refused now).
          provenance: what computed the chunk (device description, precision, wall time...),
            stored as a JSON string; ``host``, ``pid``, ``time`` (UTC, ISO 8601) and
            ``hsens_jax`` (version) are added when absent.
        """
        self._require_open("save_chunk")
        run_ids = _as_run_ids(run_ids, "save_chunk: run_ids")
        if run_ids.ndim != 1 or len(run_ids) == 0:
            raise ValueError(f"save_chunk: run_ids must be a non-empty (n,) array, got shape {run_ids.shape}")
        n = len(run_ids)
        data: dict[str, np.ndarray] = {}
        for key, arr in dict(arrays).items():
            if key in RESERVED_CHUNK_KEYS:
                raise ValueError(f"save_chunk: {key!r} is reserved in chunk files ({list(RESERVED_CHUNK_KEYS)})")
            arr = np.asarray(arr)
            if arr.dtype.kind not in "fiub":
                raise ValueError(f"save_chunk: array {key!r} has dtype {arr.dtype}; chunks hold numbers and booleans")
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(f"save_chunk: array {key!r} has shape {arr.shape}; its leading axis must be the "
                                 f"chunk's {n} runs")
            data[key] = arr
        if self._schema is not None:
            problem = _schema_problem(data, n, self._schema)
            if problem:
                raise ValueError(f"save_chunk: {problem} (schema of completed())")
        if not isinstance(provenance, Mapping):
            raise TypeError(f"save_chunk: provenance must be a mapping, got {type(provenance).__name__}")
        prov = dict(provenance)
        for key, value in _default_provenance().items():
            prov.setdefault(key, value)
        prov_text = json.dumps(prov, default=_json_default, sort_keys=True)
        with self._mutex:
            name = f"{self._next_chunk:06d}-{secrets.token_hex(4)}"
            self._next_chunk += 1
        _atomic_savez(self.chunk_dir / f"{name}.npz", {
            **data, "run_ids": run_ids, "fingerprint": np.array(self._fingerprint), "provenance": np.array(prov_text),
        })
        self._cache[name] = {**data, "run_ids": run_ids, "fingerprint": np.array(self._fingerprint)}
        self._provenance[name] = json.loads(prov_text)
        return name

    def load_runs(self, index: Mapping[int, tuple[str, int]], run_ids: np.ndarray,
                  keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Gather the arrays of ``run_ids`` (any shape) from the chunks named in ``index``.

        Args:
          index: run id -> (chunk name, row), as :meth:`completed` returns it (extended
            with the names :meth:`save_chunk` returned).
          run_ids: an array of run ids of any shape, e.g. the design's (K, S) or (K, S, F).
          keys: the arrays to gather; default: the schema of the last :meth:`completed` call.

        Returns:
          ``{key: array of shape run_ids.shape + per-run shape}``.

        Raises:
          ValueError: a run id is not in ``index``, or an indexed chunk lacks a key.
        """
        run_ids = _as_run_ids(run_ids, "load_runs: run_ids")
        if keys is None:
            if self._schema is None:
                raise ValueError("load_runs: pass keys=..., or call completed(schema) first")
            keys = list(self._schema)
        arrays, _ = self._gather(index, run_ids, list(keys), self._schema, fill_missing=False)
        return arrays

    def provenance(self, name: str) -> dict:
        """The provenance recorded in chunk ``name`` (what computed it, where, when)."""
        if name not in self._provenance:
            self._read_chunk(self.chunk_dir / f"{name}.npz", name)
        return dict(self._provenance[name])

    # ---- internals

    def _require_open(self, what: str) -> None:
        if not self.is_open:
            raise RuntimeError(f"RunDirectory.{what}: open() the directory first (it takes the lock)")

    def _refuse_foreign_directory(self) -> None:
        if not self.path.is_dir():
            return
        ours = [n for n in ("meta.json", "chunks", ".lock") if (self.path / n).exists()]
        clobbered = [n for n in ("configs.npz",) + _RESULT_FILES if (self.path / n).exists()]
        if clobbered and not ours:
            raise NotARunDirectory(
                f"{self.path} is not a hsens_jax run directory (no meta.json) but holds {', '.join(clobbered)}, "
                "which a sweep would overwrite: choose another output directory"
            )

    def _acquire_lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        if _fcntl is None:  # pragma: no cover - platforms without fcntl (Windows)
            warnings.warn(f"cannot lock {self.lock_path} on this platform: make sure that no other process "
                          "writes this run directory", stacklevel=3)
        else:
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_json_or_none(self.lock_path)
                os.close(fd)
                raise _locked_error(self.path, holder if isinstance(holder, dict) else {}) from None
            except OSError as e:  # a file system without flock support
                warnings.warn(f"cannot lock {self.lock_path} ({e}): make sure that no other process writes "
                              "this run directory", stacklevel=3)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder).encode())
        self._lock_fd = fd

    def _remove_stale_temporaries(self) -> None:
        for folder in (self.path, self.chunk_dir):
            if not folder.is_dir():
                continue
            for tmp in folder.glob(".tmp*"):
                if tmp.is_file() and _is_stale_temporary(tmp):
                    tmp.unlink(missing_ok=True)

    def _recorded_settings(self, overwrite: bool) -> tuple[dict | None, dict] | None:
        """(recorded settings or None, recorded meta) of the sweep in the directory; None if none."""
        f = self.path / "meta.json"
        if not f.exists():
            return None
        try:
            old_meta = _read_meta_file(f)
        except ValueError as e:
            if overwrite:
                return None, {}
            raise ValueError(
                f"{e}. Cannot tell which sweep {self.path} holds. Chunks are checked one by one, so deleting "
                f"{f} loses no valid run; or pass overwrite=True (--overwrite) to discard the directory's runs, "
                "or choose another output directory"
            ) from None
        settings = old_meta.get("settings")
        return (settings if isinstance(settings, dict) else None), old_meta

    def _mismatch(self, old: dict | None, new: dict, fp: str, old_fp) -> SettingsMismatch:
        n_chunks = len(self._chunk_files())
        runs = f"{n_chunks} chunk file(s) of computed runs"
        if old is None:
            differences = [("settings", ABSENT, new)]
            lines = ["  - settings: not recorded (written by an older hsens_jax, or by SweepResult.save)"]
            same = []
        else:
            differences = list(_differences(old, new))
            lines = _difference_lines(differences) or [f"  - settings (fingerprint {old_fp} -> {fp})"]
            same = _same_condition_hints(old, new, differences)
        steps = []
        if same:
            steps.append("run under the same conditions as before: " + "; ".join(same))
        steps.append("choose another output directory")
        steps.append(f"pass overwrite=True (--overwrite) to discard the {runs} and start afresh")
        message = (
            f"{self.path} holds a sweep run under different settings; its runs would not be comparable with "
            "new ones:\n" + "\n".join(lines) + "\nTo proceed, do one of:\n" + "\n".join(f"  - {s}" for s in steps)
        )
        return SettingsMismatch(message, differences)

    def _discard_runs(self) -> None:
        for chunk in self._chunk_files():
            chunk.unlink(missing_ok=True)
        shutil.rmtree(self.rejected_dir, ignore_errors=True)
        for name in ("configs.npz",) + _RESULT_FILES:
            (self.path / name).unlink(missing_ok=True)

    def _chunk_files(self) -> list[Path]:
        if not self.chunk_dir.is_dir():
            return []
        files = [p for p in self.chunk_dir.iterdir()
                 if p.suffix == ".npz" and not p.name.startswith(".") and p.is_file()]
        return sorted(files, key=_chunk_order)

    def _last_chunk_number(self) -> int:
        names = [p.name for p in self._chunk_files()]
        if self.rejected_dir.is_dir():
            names += [p.name for p in self.rejected_dir.iterdir()]
        numbers = [int(m.group(1)) for m in map(_CHUNK_NAME.match, names) if m]
        return max(numbers, default=0)

    def _read_chunk(self, path: Path, name: str) -> dict[str, np.ndarray]:
        """The arrays of one chunk file (cached), its provenance parsed; raises on a damaged file."""
        if name in self._cache:
            return self._cache[name]
        arrays = _load_npz(path)
        prov = arrays.pop("provenance", None)
        if prov is None or prov.ndim != 0 or prov.dtype.kind != "U":
            raise ValueError("no provenance string")
        prov = json.loads(str(prov))
        if not isinstance(prov, dict):
            raise ValueError("provenance is not a JSON object")
        self._provenance[name] = prov
        return arrays

    def _scan(self, fp: str, schema: dict | None, *, set_aside: bool):
        """Validate every chunk: (index, [(name, reason)], schema).

        ``schema`` None: taken from the first chunk with the right fingerprint (readers of
        directories whose schema was never recorded).
        """
        index: dict[int, tuple[str, int]] = {}
        problems: list[tuple[str, str]] = []
        for path in self._chunk_files():
            name = path.stem
            try:
                arrays = self._read_chunk(path, name)
            except Exception as e:  # a damaged chunk is set aside and recomputed, never trusted
                reason = f"unreadable ({type(e).__name__}: {e})"
            else:
                if schema is None and _chunk_fingerprint(arrays) == fp:
                    schema = {k: (a.shape[1:], a.dtype.kind) for k, a in arrays.items()
                              if k not in RESERVED_CHUNK_KEYS and a.ndim >= 1}
                reason = _chunk_problem(arrays, fp, schema or {})
            if reason is not None:
                problems.append((name, reason))
                self._cache.pop(name, None)
                if set_aside:
                    self._set_aside(path)
                continue
            self._cache[name] = arrays
            for row, rid in enumerate(arrays["run_ids"].tolist()):
                index.setdefault(rid, (name, row))
        return index, problems, (schema or {})

    def _set_aside(self, path: Path) -> None:
        self.rejected_dir.mkdir(exist_ok=True)
        target = self.rejected_dir / path.name
        n = 1
        while target.exists():
            target = self.rejected_dir / f"{path.stem}.{n}{path.suffix}"
            n += 1
        os.replace(path, target)

    def _gather(self, index, run_ids: np.ndarray, keys: list[str], schema: dict | None, *, fill_missing: bool):
        """``({key: run_ids.shape + per-run shape}, found mask of run_ids.shape)``."""
        flat = run_ids.reshape(-1).tolist()
        where: dict[str, tuple[list[int], list[int]]] = {}
        found = np.zeros(len(flat), dtype=bool)
        for pos, rid in enumerate(flat):
            loc = index.get(rid)
            if loc is None:
                continue
            positions, rows = where.setdefault(loc[0], ([], []))
            positions.append(pos)
            rows.append(loc[1])
            found[pos] = True
        if not fill_missing and not found.all():
            missing = [flat[i] for i in np.flatnonzero(~found)[:3]]
            raise ValueError(f"load_runs: {int((~found).sum())} of {len(flat)} run ids are not in the index "
                             f"(e.g. {missing}): they have not been computed")
        chunks = {}
        for name in where:
            arrays = self._read_chunk(self.chunk_dir / f"{name}.npz", name)
            lacking = [k for k in keys if k not in arrays]
            if lacking:
                raise ValueError(f"chunk {name} has no array(s) {lacking}")
            rows = where[name][1]
            n_rows = len(arrays["run_ids"]) if "run_ids" in arrays else arrays[keys[0]].shape[0]
            if max(rows) >= n_rows:
                raise ValueError(f"load_runs: the index names row {max(rows)} of chunk {name}, which has {n_rows}")
            chunks[name] = arrays
        out: dict[str, np.ndarray] = {}
        for key in keys:
            parts = [chunks[name][key] for name in chunks]
            shapes = {a.shape[1:] for a in parts}
            if len(shapes) > 1:
                raise ValueError(f"load_runs: {key!r} has per-run shapes {sorted(shapes)} in different chunks")
            if parts:
                per_run, dtype = shapes.pop(), np.result_type(*parts)
            else:
                per_run, dtype = tuple((schema or {}).get(key, ((), "f"))[0]), np.dtype(np.float64)
            if fill_missing and not found.all() and dtype.kind not in "fc":
                dtype = np.dtype(np.float64)
            arr = np.full((len(flat),) + per_run, np.nan, dtype) if dtype.kind in "fc" else np.zeros(
                (len(flat),) + per_run, dtype)
            for name, (positions, rows) in where.items():
                arr[positions] = chunks[name][key][rows]
            out[key] = arr.reshape(run_ids.shape + per_run)
        return out, found.reshape(run_ids.shape)


def fingerprint(*parts: Any) -> str:
    """A short stable hash (16 hex digits = 64 bits) of JSON-able parts and NumPy arrays.

    Equal inputs give equal hashes in every process and on every machine (dict keys are
    sorted; arrays are hashed with their dtype and shape). ``int(fingerprint(...), 16)`` is
    a uint64.
    """
    h = hashlib.sha256()
    for part in parts:
        _update_hash(h, part)
    return h.hexdigest()[:16]


def _update_hash(h, obj):
    if isinstance(obj, np.ndarray):
        h.update(b"A" + obj.dtype.str.encode() + repr(obj.shape).encode() + b"\0")
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"D%d\0" % len(obj))
        for k in sorted(obj, key=str):
            h.update(json.dumps(str(k)).encode() + b"\0")
            _update_hash(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d\0" % len(obj))
        for v in obj:
            _update_hash(h, v)
    else:
        h.update(b"J" + json.dumps(obj, default=_json_default, sort_keys=True).encode() + b"\0")


# ----------------------------------------------------------------------------- chunk validation


def _check_schema(schema) -> dict[str, tuple[tuple[int, ...], str]]:
    if not isinstance(schema, Mapping):
        raise TypeError(f"schema must be a mapping {{key: (per-run shape, dtype kind)}}, got {type(schema).__name__}")
    out = {}
    for key, spec in schema.items():
        ok = (isinstance(key, str) and isinstance(spec, (tuple, list)) and len(spec) == 2
              and isinstance(spec[0], (tuple, list)) and spec[1] in ("f", "i", "b", "u")
              and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in spec[0]))
        if not ok:
            raise ValueError(f"schema[{key!r}] must be (per-run shape tuple, dtype kind 'f'|'i'|'b'|'u'), got {spec!r}")
        if key in RESERVED_CHUNK_KEYS:
            raise ValueError(f"schema: {key!r} is reserved in chunk files ({list(RESERVED_CHUNK_KEYS)})")
        out[key] = (tuple(int(d) for d in spec[0]), spec[1])
    return out


def _schema_from_meta(recorded) -> dict | None:
    if not isinstance(recorded, Mapping):
        return None
    try:
        return _check_schema(recorded)
    except (TypeError, ValueError):
        return None


def _chunk_fingerprint(arrays) -> str | None:
    fp = arrays.get("fingerprint")
    if fp is None or fp.ndim != 0 or fp.dtype.kind != "U":
        return None
    return str(fp)


def _schema_problem(arrays: Mapping[str, np.ndarray], n: int, schema: Mapping) -> str | None:
    for key, (shape, kind) in schema.items():
        if key not in arrays:
            return f"missing array {key!r}"
        a = arrays[key]
        if a.shape != (n,) + tuple(shape):
            return f"array {key!r} has shape {a.shape}, expected {(n,) + tuple(shape)}"
        if a.dtype.kind != kind:
            return f"array {key!r} has dtype {a.dtype} (kind {a.dtype.kind!r}), expected kind {kind!r}"
    return None


def _chunk_problem(arrays: Mapping[str, np.ndarray], fp: str, schema: Mapping) -> str | None:
    """Why a chunk cannot be trusted, or None."""
    found = _chunk_fingerprint(arrays)
    if found is None:
        return "no settings fingerprint"
    if found != fp:
        return f"settings fingerprint {found} is not this sweep's {fp}"
    ids = arrays.get("run_ids")
    if ids is None:
        return "no run_ids array"
    if ids.ndim != 1 or ids.dtype != np.uint64:
        return f"run_ids has shape {ids.shape} and dtype {ids.dtype}, expected (n,) uint64"
    n = len(ids)
    for key, a in arrays.items():
        if key in RESERVED_CHUNK_KEYS:
            continue
        if a.ndim == 0 or a.shape[0] != n:
            return f"array {key!r} has shape {a.shape} but the chunk has {n} run ids"
        if a.dtype.kind not in "fiub":
            return f"array {key!r} has dtype {a.dtype}"
    return _schema_problem(arrays, n, schema)


def _chunk_order(path: Path):
    m = _CHUNK_NAME.match(path.name)
    return (0, int(m.group(1)), path.name) if m else (1, 0, path.name)


def _problems_text(problems: list[tuple[str, str]], outcome: str, show: int = 10) -> str:
    lines = [f"  - {name}: {reason}" for name, reason in problems[:show]]
    if len(problems) > show:
        lines.append(f"  - ... and {len(problems) - show} more")
    return f"{len(problems)} chunk(s) failed validation and were {outcome}:\n" + "\n".join(lines)


def _as_run_ids(run_ids, what: str) -> np.ndarray:
    a = np.asarray(run_ids)
    if a.dtype.kind == "u":
        return a.astype(np.uint64, copy=False)
    if a.dtype.kind == "i" and (a.size == 0 or a.min() >= 0):
        return a.astype(np.uint64)
    raise ValueError(f"{what} must be non-negative integers (uint64), got dtype {a.dtype}")


def _default_provenance() -> dict[str, Any]:
    import hsens_jax

    return {"host": socket.gethostname(), "pid": os.getpid(),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hsens_jax": getattr(hsens_jax, "__version__", "unknown")}


# ----------------------------------------------------------------------------- settings


def _jsonable(obj, where: str):
    """``obj`` as plain JSON types (dict with str keys, list, str, int, float, bool, None)."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"{where}: {type(obj).__name__} value {obj!r} is not JSON-able; settings must be "
                    "JSON values (describe objects by name or hash)")


def _json_text(v) -> str:
    return json.dumps(v, sort_keys=True, default=_json_default)


def _differences(old, new, where: str = ""):
    """(path, old, new) for every differing leaf of two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{where}.{key}" if where else str(key)
            if key not in new:
                yield sub, old[key], ABSENT
            elif key not in old:
                yield sub, ABSENT, new[key]
            elif _json_text(old[key]) != _json_text(new[key]):
                yield from _differences(old[key], new[key], sub)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and where:
        for i, (a, b) in enumerate(zip(old, new)):
            if _json_text(a) != _json_text(b):
                yield from _differences(a, b, f"{where}[{i}]")
    else:
        yield where, old, new


def _brief(v, width: int = 60) -> str:
    text = _json_text(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _difference_lines(differences, per_component: int = 6) -> list[str]:
    lines, shown = [], {}
    for where, old, new in differences:
        component = re.split(r"[.\[]", where, maxsplit=1)[0]
        shown[component] = shown.get(component, 0) + 1
        if shown[component] > per_component:
            continue
        if old is ABSENT:
            lines.append(f"  - {where}: added ({_brief(new)})")
        elif new is ABSENT:
            lines.append(f"  - {where}: removed (was {_brief(old)})")
        else:
            lines.append(f"  - {where}: {_brief(old)} -> {_brief(new)}")
    for component, count in shown.items():
        if count > per_component:
            lines.append(f"  - ... and {count - per_component} more difference(s) in {component}")
    return lines


def _same_condition_hints(old: dict, new: dict, differences) -> list[str]:
    components = list(dict.fromkeys(re.split(r"[.\[]", w, maxsplit=1)[0] for w, _, _ in differences))
    hints = []
    if "devices" in components:
        before = old.get("devices")
        m = re.match(r"\s*(\d+)\s*x\s*cpu", str(before))
        hints.append(f"the same devices ({before}, counted over all processes)"
                     + (f", e.g. --cpu-devices {m.group(1)} (hsens_jax.use_cpu_cores({m.group(1)})) in one process"
                        if m else "")
                     + ", or pass allow_device_change=True (--allow-device-change) to resume on these devices (results "
                       "may then differ in their last bits between chunks; meta.json lists each chunk's devices)")
    if "precision" in components:
        before = old.get("precision")
        hints.append({"float64": "JAX_ENABLE_X64=1 (float64), as before",
                      "float32": "without JAX_ENABLE_X64 (float32), as before"}.get(before, f"precision {before}"))
    if "versions" in components:
        pins = [f"{pkg}=={ver}" for pkg, ver in (old.get("versions") or {}).items()
                if isinstance(ver, str) and ver != (new.get("versions") or {}).get(pkg) and pkg != "python"]
        hints.append("the same package versions" + (f" (pip install {' '.join(pins)})" if pins else ""))
    others = [c for c in components if c not in ("devices", "precision", "versions")]
    if others:
        hints.append(f"the same {', '.join(others)} as before")
    return hints


# ----------------------------------------------------------------------------- files


def _locked_error(path: Path, holder: dict) -> RunDirectoryLocked:
    pid, host, started = holder.get("pid"), holder.get("host"), holder.get("started")
    if not isinstance(pid, int):
        who = "another process (its pid is not recorded yet)"
        pid = None
    elif pid == os.getpid() and host == socket.gethostname():
        who = f"this process (pid {pid}): another RunDirectory on the same path is open; close() it first"
    else:
        where = f" on {host}" if host else ""
        elsewhere = " (another machine)" if host and host != socket.gethostname() else ""
        who = f"process {pid}{where}{elsewhere}" + (f", since {started}" if started else "")
    message = (
        f"{path} is being written by {who}. Two writers would compute the same runs twice and could mix "
        "sweeps. Wait for it to finish, or stop it" + (f" (kill {pid})" if pid and pid != os.getpid() else "")
        + " and re-run the same command to resume; or choose another output directory. The lock is "
        f"released when its holder exits, however it exits ({path / '.lock'})."
    )
    return RunDirectoryLocked(message, pid, host if isinstance(host, str) else None)


def _refuse_regular_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise NotARunDirectory(f"{path} is an existing file, not a run directory: choose a directory path")


def _read_json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_meta_file(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged: not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is damaged: not UTF-8 text") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is damaged: a JSON {type(meta).__name__}, not an object")
    return meta


def _space_from_meta(meta: dict, meta_file: Path) -> Space:
    space, settings = meta.get("space"), meta.get("settings")
    if space is None and isinstance(settings, dict):
        space = settings.get("space")
    if space is None:
        raise ValueError(f"{meta_file} has no 'space' entry: it does not describe a hsens_jax sweep")
    try:
        return Space.from_dict(space)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{meta_file}: its 'space' entry is invalid ({e})") from None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles); the file is closed even when it is damaged."""
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _read_npz(path: Path, hint: str = "") -> dict[str, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found" + (f"; {hint}" if hint else ""))
    try:
        return _load_npz(path)
    except Exception as e:  # BadZipFile, EOFError, ValueError, zlib.error...: all mean a damaged file
        raise ValueError(f"{path} is damaged or truncated ({type(e).__name__}: {e})"
                         + (f"; {hint}" if hint else "")) from None


def _configs_from(design: dict[str, np.ndarray], space: Space, path: Path) -> dict[str, np.ndarray]:
    missing = [n for n in space.names if n not in design]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing} of the space recorded in meta.json")
    configs = {n: design[n] for n in space.names}
    lengths = {n: c.shape for n, c in configs.items() if c.ndim != 1}
    if lengths or len({len(c) for c in configs.values()}) > 1:
        raise ValueError(f"{path}: the columns must all have shape (K,), got "
                         f"{ {n: c.shape for n, c in configs.items()} }")
    return configs


def _recorded_design(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        return _load_npz(path)
    except Exception:  # unreadable: treated as a different design
        return None


def _same_design(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Same columns and seeds (and run ids, where both record them)."""
    keys_a, keys_b = set(a), set(b)
    if not ("run_ids" in keys_a and "run_ids" in keys_b):
        keys_a.discard("run_ids")
        keys_b.discard("run_ids")
    if keys_a != keys_b:
        return False
    return all(np.shape(a[k]) == np.shape(b[k]) and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
               for k in keys_a)


_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``: ``.tmp-<pid>-<host tag>-<random>-<name>``, user mode."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{os.getpid()}-{_HOST_TAG}-", suffix=f"-{path.name}")
    _user_mode(fd)
    return fd, tmp


def _is_stale_temporary(path: Path) -> bool:
    """A temporary whose writer cannot be alive (run with the lock held)."""
    m = _TEMP_NAME.match(path.name)
    if m is None:
        return True  # an older naming: only lock holders wrote those
    pid, host = int(m.group(1)), m.group(2)
    if host != _HOST_TAG:
        try:
            return path.stat().st_mtime < datetime.datetime.now().timestamp() - _STALE_FOREIGN_TEMP_S
        except FileNotFoundError:
            return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _user_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (mode 0600) the mode ``open()`` would: 0666 less the umask."""
    os.fchmod(fd, 0o666 & ~_umask())


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _py(v):
    v = np.asarray(v)
    if v.dtype == bool:
        return bool(v)
    if v.dtype.kind in "iu":
        return int(v)
    if v.dtype.kind in "USO":
        return str(v)
    return float(v)


def _record_metric_order(metrics: Mapping[str, np.ndarray]) -> list[str]:
    builtin = [n for n in SCALARS + PER_CONFIG if n in metrics]
    return builtin + [n for n in metrics if n not in builtin]


def _is_record_metric(name: str, arr, run_shape: tuple[int, ...]) -> bool:
    """One value per run or per configuration (a prefix of the run shape), and not a curve."""
    if name in CURVES or name == "curve_steps" or name.endswith(("_curve", "_curves")):
        return False
    shape = np.shape(arr)
    return 1 <= len(shape) <= len(run_shape) and shape == run_shape[: len(shape)]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _to_csv(rows: list[dict]) -> str:
    import csv
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None
