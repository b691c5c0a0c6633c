"""Sweep results and the run directory that keeps them safe.

A run directory holds, in open formats that NumPy, pandas and any JSON reader load:

===================  ==========================================================
``meta.json``        what was run: space, fixed hyperparameters, budget, seeds,
                     data set, package versions, device, wall times, fingerprint
``configs.npz``      the design (the configs format of :mod:`hsens_jax.space`)
``chunks/*.npz``     one file per finished chunk of runs, written atomically
``results.npz``      every metric as an array, assembled when the sweep ends
``results.csv``      one row per (configuration, seed): decoded hyperparameters
                     and scalar metrics
===================  ==========================================================

Chunks are written to a temporary name and renamed into place (``os.replace`` is
atomic), so a process killed at any moment leaves either a whole chunk or none.
Re-running the same sweep on the same directory skips the finished chunks; a
different sweep (another space, design, budget, data set...) is refused rather than
mixed in, by comparing fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
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
        """A metric per configuration, (K,): averaged (or ``"median"``, ``"min"``, ``"max"``) over seeds."""
        if name not in self.metrics:
            raise ValueError(f"unknown objective {name!r}; available: {sorted(self.metrics)}")
        m = np.asarray(self.metrics[name], float)
        if m.ndim == 1:
            return m
        if m.ndim != 2:
            raise ValueError(f"{name!r} is a curve, not a scalar objective")
        return reduce_seeds(m, reduce)

    def records(self) -> list[dict[str, Any]]:
        """One dict per (configuration, seed): decoded hyperparameters and scalar metrics."""
        decoded = self.space.decode(self.configs)
        rows = []
        for k, hp in enumerate(decoded):
            for s, seed in enumerate(self.seeds):
                row = {"config": k, "seed": int(seed)}
                for name in self.space.names:
                    row[name] = hp.get(name)
                for m in SCALARS:
                    if m in self.metrics:
                        row[m] = _py(self.metrics[m][k, s])
                for m in PER_CONFIG:
                    if m in self.metrics:
                        row[m] = _py(self.metrics[m][k])
                rows.append(row)
        return rows

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

    def save(self, path: str | os.PathLike) -> None:
        """Write ``results.npz``, ``results.csv``, ``configs.npz`` and ``meta.json`` into ``path``."""
        store = RunDirectory(path)
        store.path.mkdir(parents=True, exist_ok=True)
        store.write_meta(self.meta | {"space": self.space.to_dict(), "seeds": [int(s) for s in self.seeds]})
        _atomic_savez(store.path / "configs.npz", self.configs)
        _atomic_savez(store.path / "results.npz", {**self.metrics, "seeds": self.seeds})
        _atomic_write(store.path / "results.csv", _to_csv(self.records()))


def check_direction(direction) -> str:
    """``direction`` itself if it is ``"minimize"`` or ``"maximize"``, else a ValueError naming it."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    return direction


def load_results(path: str | os.PathLike) -> SweepResult:
    """Load a finished run directory back into a :class:`SweepResult`."""
    path = Path(path)
    meta_file, results_file = path / "meta.json", path / "results.npz"
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file} not found: {path} is not a hsens_jax run directory")
    if not results_file.exists():
        raise FileNotFoundError(
            f"{results_file} not found: the sweep in {path} has not finished; re-run the same command to resume it"
        )
    meta = json.loads(meta_file.read_text())
    space = Space.from_dict(meta["space"])
    with np.load(path / "configs.npz") as f:
        configs = {n: f[n] for n in space.names}
    with np.load(results_file) as f:
        metrics = {n: f[n] for n in f.files if n != "seeds"}
        seeds = f["seeds"]
    return SweepResult(space, configs, seeds, metrics, meta)


def reduce_seeds(m: np.ndarray, reduce: str = "mean") -> np.ndarray:
    """Combine a (K, S) metric over its seeds: ``mean``, ``median``, ``min`` or ``max`` (NaN-aware)."""
    fns = {"mean": np.nanmean, "median": np.nanmedian, "min": np.nanmin, "max": np.nanmax}
    if reduce not in fns:
        raise ValueError(f"reduce must be one of {sorted(fns)}, got {reduce!r}")
    with warnings.catch_warnings():  # an all-NaN row (every seed diverged) stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return fns[reduce](np.asarray(m, float), axis=1)


class RunDirectory:
    """The on-disk store of one sweep: metadata, design, chunk files, results."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def chunk_dir(self) -> Path:
        return self.path / "chunks"

    def read_meta(self) -> dict | None:
        f = self.path / "meta.json"
        return json.loads(f.read_text()) if f.exists() else None

    def write_meta(self, meta: dict) -> None:
        _atomic_write(self.path / "meta.json", json.dumps(meta, indent=2, default=_json_default))

    def open(self, fingerprint: str, meta: dict, configs: dict[str, np.ndarray], overwrite: bool = False) -> int:
        """Prepare the directory for a sweep; return the number of chunks already done.

        Raises:
          ValueError: the directory holds a different sweep (and ``overwrite`` is False).
        """
        old = self.read_meta()
        if old is not None and old.get("fingerprint") != fingerprint:
            if not overwrite:
                raise ValueError(
                    f"{self.path} holds a different sweep (fingerprint {old.get('fingerprint')} != "
                    f"{fingerprint}): choose another output directory, or pass overwrite=True "
                    f"(--overwrite) to discard it"
                )
            for f in self.chunk_dir.glob("*.npz"):
                f.unlink()
            for name in ("results.npz", "results.csv"):
                (self.path / name).unlink(missing_ok=True)
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.chunk_dir.glob(".tmp*"):
            stale.unlink()
        self.write_meta(meta | {"fingerprint": fingerprint})
        _atomic_savez(self.path / "configs.npz", configs)
        return len(list(self.chunk_dir.glob("*.npz")))

    def chunk_path(self, name: str) -> Path:
        return self.chunk_dir / f"{name}.npz"

    def load_chunk(self, name: str) -> dict[str, np.ndarray] | None:
        p = self.chunk_path(name)
        if not p.exists():
            return None
        try:
            with np.load(p) as f:
                return {k: f[k] for k in f.files}
        except Exception:  # a damaged chunk is recomputed, never trusted
            p.unlink(missing_ok=True)
            return None

    def save_chunk(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        _atomic_savez(self.chunk_path(name), arrays)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts and NumPy arrays."""
    h = hashlib.sha256()
    for part in parts:
        _update_hash(h, part)
    return h.hexdigest()[:16]


def _update_hash(h, obj):
    if isinstance(obj, np.ndarray):
        h.update(str(obj.dtype).encode() + str(obj.shape).encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        for k in sorted(obj):
            h.update(str(k).encode())
            _update_hash(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _update_hash(h, v)
        h.update(b"]")
    else:
        h.update(json.dumps(obj, default=_json_default, sort_keys=True).encode())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _user_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (mode 0600) the mode ``open()`` would: 0666 less the umask."""
    os.fchmod(fd, 0o666 & ~_umask())


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp")
    _user_mode(fd)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp", suffix=".npz")
    _user_mode(fd)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)


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
    return float(v)


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
