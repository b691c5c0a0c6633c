"""Sensitivity of a sweep's objectives to each hyperparameter (HSIC).

:func:`analyze` takes a finished sweep (:class:`hsens_jax.results.SweepResult`) and, for
every requested objective (validation loss, accuracy, parameter count, FLOPs...), returns
the HSIC and R2-HSIC index of every hyperparameter with an independence-test p-value:
the last stage of ``space -> design -> sweep -> results -> analysis``.

Inputs are normalized as in Novello et al. (2023) (:meth:`hsens_jax.space.Space.normalize`:
continuous min-max, log-scaled on the log scale, integer and categorical values jittered
uniformly inside their bin), so every kind of hyperparameter is handled by one Gaussian
kernel.

* **Conditional hyperparameters** are analysed on the configurations where they are
  active (``momentum`` only where ``optimizer == "momentum"``): hyperparameters sharing
  an activity pattern are analysed together on their rows; ``n_used`` says how many.
* **Diverged runs** keep their place in the analysis: by default their objective is
  replaced by the worst finite value of that objective (a diverging learning rate *is*
  a sensitivity); ``diverged="drop"`` removes them instead.
* **Goal-oriented analysis** (``target=q``): which hyperparameters decide whether a
  configuration is among the best fraction ``q`` (lowest loss; highest accuracy), with the
  indicator output and linear kernel of Novello et al. (2023) and their pooled-median
  bandwidth.

Reference: P. Novello, G. Poette, D. Lugato, P. M. Congedo, "Goal-oriented sensitivity
analysis of hyperparameters in deep learning", J. Sci. Comput. 94, 45 (2023).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from hsens_jax.results import SweepResult, _atomic_write, _to_csv
from hsens_jax.sensitivity.hsic import best_fraction, hsic, hsic_interactions

_MIN_ROWS = 8


def higher_is_better(objective: str) -> bool:
    """Accuracy-like objectives are maximized; losses, sizes and costs minimized."""
    return "accuracy" in objective


@dataclass
class SensitivityReport:
    """HSIC sensitivity of several objectives to each hyperparameter.

    Attributes:
      names: the d hyperparameters.
      objectives: the m objectives analysed.
      hsic, r2, pvalue: (m, d) arrays (NaN where an index could not be computed).
      n_used: (m, d) number of configurations each index used.
      interactions: ``{objective: (d, d) R2-HSIC of pairs}`` when asked (NaN for pairs
        involving conditional hyperparameters).
      settings: how the analysis was made.
    """

    names: tuple[str, ...]
    objectives: tuple[str, ...]
    hsic: np.ndarray
    r2: np.ndarray
    pvalue: np.ndarray
    n_used: np.ndarray
    interactions: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        rows = []
        for i, obj in enumerate(self.objectives):
            for j, name in enumerate(self.names):
                rows.append({"objective": obj, "hyperparameter": name, "hsic": float(self.hsic[i, j]),
                             "r2": float(self.r2[i, j]), "pvalue": float(self.pvalue[i, j]),
                             "n_used": int(self.n_used[i, j])})
        return rows

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame.from_records(self.records())

    def table(self, alpha: float = 0.05) -> str:
        """Plain-text table: hyperparameters ranked by R2-HSIC for each objective."""
        lines = []
        for i, obj in enumerate(self.objectives):
            goal = f", goal: best {self.settings['target']:.0%}" if self.settings.get("target") else ""
            lines.append(f"{obj}{goal}")
            width = max(len(n) for n in self.names)
            lines.append(f"  {'hyperparameter'.ljust(width)}  {'R2-HSIC':>8}  {'p-value':>8}  {'n':>5}")
            order = np.argsort(-np.nan_to_num(self.r2[i], nan=-np.inf))
            for j in order:
                p = self.pvalue[i, j]
                star = " *" if p == p and p < alpha else ""
                ptxt = "-" if p != p else f"{p:.3g}"
                lines.append(f"  {self.names[j].ljust(width)}  {self.r2[i, j]:8.4f}  {ptxt:>8}  "
                             f"{int(self.n_used[i, j]):5d}{star}")
            lines.append("")
        lines.append(f"(* p < {alpha}: the objective depends on the hyperparameter)")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike, stem: str = "sensitivity") -> list[Path]:
        """Write ``{stem}.json`` (everything) and ``{stem}.csv`` (one row per index) into ``path``."""
        path = Path(path)
        doc = {"names": list(self.names), "objectives": list(self.objectives), "hsic": self.hsic.tolist(),
               "r2": self.r2.tolist(), "pvalue": self.pvalue.tolist(), "n_used": self.n_used.tolist(),
               "interactions": {k: v.tolist() for k, v in self.interactions.items()}, "settings": self.settings}
        text = json.dumps(doc, indent=2).replace("NaN", "null")
        _atomic_write(path / f"{stem}.json", text)
        _atomic_write(path / f"{stem}.csv", _to_csv(self.records()))
        return [path / f"{stem}.json", path / f"{stem}.csv"]

    def plot(self, objective: str | None = None, *, metric: str = "r2", ax=None):
        """Bars of R2-HSIC (or HSIC) per hyperparameter with p-values; returns the Axes."""
        from types import SimpleNamespace

        from hsens_jax.plotting.hsic import plot_hsic

        i = 0 if objective is None else self.objectives.index(objective)
        res = SimpleNamespace(hsic=self.hsic[i], r2=self.r2[i], pvalue=self.pvalue[i])
        ax = plot_hsic(res, names=list(self.names), metric=metric, ax=ax)
        ax.set_title(f"Sensitivity of {self.objectives[i]}")
        return ax


def analyze(
    result: SweepResult,
    objectives: str | Sequence[str] = ("final_val_loss",),
    *,
    target: float | None = None,
    pvalue: str | None = "permutation",
    n_permutations: int = 1000,
    estimator: str = "V",
    reduce: str = "mean",
    diverged: str = "worst",
    interactions: bool = False,
    seed: int = 0,
) -> SensitivityReport:
    """HSIC of every hyperparameter of a sweep against one or more objectives.

    Args:
      result: a finished sweep.
      objectives: scalar metric names (``final_val_loss``, ``best_val_accuracy``,
        ``param_count``, ``flops_per_example``...), averaged over seeds with ``reduce``.
      target: None for global HSIC (Gaussian kernels, bandwidth = std, the OpenTURNS
        convention); a fraction ``q`` in (0, 1) for goal-oriented HSIC of the best
        ``q`` fraction (Novello et al. 2023: indicator output with a linear kernel,
        pooled-median input bandwidth).
      pvalue: ``"permutation"`` (default), ``"gamma"`` or None.
      n_permutations: permutations of the output for the permutation test.
      estimator: ``"V"`` or ``"U"`` (global analysis only).
      diverged: ``"worst"`` (replace non-finite objectives of diverged runs by the worst
        finite value) or ``"drop"``.
      interactions: also compute the (d, d) R2-HSIC of pairs of hyperparameters.
      seed: seed of the normalization jitter and of the permutations.

    Returns:
      :class:`SensitivityReport`.
    """
    objectives = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    if diverged not in ("worst", "drop"):
        raise ValueError(f"diverged must be 'worst' or 'drop', got {diverged!r}")
    if target is not None and not 0 < float(target) < 1:
        raise ValueError(f"target must be a fraction in (0, 1), got {target!r}")
    space = result.space
    names = tuple(space.names)
    X = np.asarray(space.normalize(result.configs, method="novello", seed=seed), float)
    m, d = len(objectives), len(names)
    out = {k: np.full((m, d), np.nan) for k in ("hsic", "r2", "pvalue")}
    n_used = np.zeros((m, d), int)
    inter: dict[str, np.ndarray] = {}
    key = jax.random.key(seed)
    masks = ~np.isnan(X)
    patterns: dict[bytes, list[int]] = {}
    for j in range(d):
        patterns.setdefault(masks[:, j].tobytes(), []).append(j)

    for i, obj in enumerate(objectives):
        y = np.array(result.objective(obj, reduce), float)
        finite = np.isfinite(y)
        if diverged == "worst" and not finite.all() and finite.any():
            y[~finite] = np.nanmin(y[finite]) if higher_is_better(obj) else np.nanmax(y[finite])
            finite = np.ones_like(finite)
        signed = -y if higher_is_better(obj) else y  # lower is better from here on
        for cols in patterns.values():
            rows = masks[:, cols[0]] & finite
            n = int(rows.sum())
            n_used[i, cols] = n
            ys = signed[rows]
            if n < _MIN_ROWS or np.ptp(ys) == 0:
                if n >= _MIN_ROWS:  # a constant objective depends on nothing
                    out["hsic"][i, cols], out["r2"][i, cols], out["pvalue"][i, cols] = 0.0, 0.0, 1.0
                continue
            res = _hsic(X[np.ix_(rows, cols)], ys, target, pvalue, n_permutations, estimator,
                        jax.random.fold_in(key, i))
            out["hsic"][i, cols] = np.asarray(res.hsic)
            out["r2"][i, cols] = np.asarray(res.r2)
            out["pvalue"][i, cols] = np.asarray(res.pvalue)
        if interactions:
            always = [j for j in range(d) if masks[:, j].all()]
            mat = np.full((d, d), np.nan)
            if len(always) >= 2 and finite.sum() >= _MIN_ROWS and np.ptp(signed[finite]) > 0:
                kw = dict(target=best_fraction(target), bandwidth="pooled_median", convention="novello2023") \
                    if target is not None else dict(bandwidth="std")
                sub = hsic_interactions(X[np.ix_(finite, always)], signed[finite], metric="r2", **kw)
                mat[np.ix_(always, always)] = np.asarray(sub)
            inter[obj] = mat
    settings = {"method": "hsic", "target": target, "pvalue": pvalue, "n_permutations": n_permutations,
                "estimator": "V" if target is not None else estimator, "reduce": reduce, "diverged": diverged,
                "normalization": "novello2023", "seed": seed,
                "bandwidth": "pooled_median" if target is not None else "std"}
    return SensitivityReport(names, objectives, out["hsic"], out["r2"], out["pvalue"], n_used, inter, settings)


def _hsic(X, y, target, pvalue, n_permutations, estimator, key):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if target is not None:
            if np.sum(y <= np.quantile(y, target)) in (0, len(y)):
                raise ValueError(f"target={target}: the best fraction is empty or everything")
            return hsic(X, y, estimator="V", bandwidth="pooled_median", target=best_fraction(target),
                        pvalue=pvalue, n_permutations=n_permutations, key=key, convention="novello2023")
        return hsic(X, y, estimator=estimator, bandwidth="std", pvalue=pvalue, n_permutations=n_permutations,
                    key=key)
