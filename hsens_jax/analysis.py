"""Sensitivity of a sweep's objectives to each hyperparameter (HSIC).

:func:`analyze` takes a sweep (:class:`hsens_jax.results.SweepResult`) and, for every requested
objective (validation loss, accuracy, a user metric, parameter count...), returns the R2-HSIC
index of every hyperparameter with its independence-test p-value and the number of
configurations it used: the last stage of ``space -> design -> sweep -> results -> analysis``.

Inputs are normalized as in Novello et al. (2023) (:meth:`hsens_jax.space.Space.normalize`:
continuous min-max, log-scaled on the log scale, integer and categorical values jittered
uniformly inside their bin), so every kind of hyperparameter is handled by one Gaussian kernel.

* **Directions.** Every objective is minimized or maximized: :meth:`SweepResult.direction`
  (the run's record), or ``directions=`` here. Nothing is inferred from a metric's name. A
  direction is needed to place diverged runs and for goal-oriented analysis; global HSIC is
  unchanged when the objective is negated.
* **Rankings use an unbiased index**: the R2-HSIC of the U-statistic (Song et al. 2012),
  ``HSIC_U(X, Y) / sqrt(HSIC_U(X, X) HSIC_U(Y, Y))``, whose mean under independence is 0 at
  every n. The V-statistic is biased upward at small n (measured mean under independence, one
  uniform input and a normal output, 200 replicates: 0.18 at n = 11, 0.105 at n = 20, 0.033
  at n = 64, 0.008 at n = 256; the U-statistic: -0.015, -0.003, -0.000, -0.000), so a
  conditional hyperparameter scored on few rows would outrank real effects. Indices from fewer
  than ``small_n`` configurations (default 30) are marked "small n" and ranked after the
  others: the U index is unbiased but noisy there (measured 95% quantile under independence:
  0.23 at n = 11, 0.15 at n = 20, 0.084 at n = 30, 0.057 at n = 50, 0.026 at n = 100; one
  pure-noise hyperparameter on 11 rows reached 0.77). Every index is shown with its n and
  p-value.
* **Conditional hyperparameters** are analysed on the configurations where they are active
  (``momentum`` only where ``optimizer == "momentum"``); ``n_used`` says how many.
* **Diverged runs** (``metrics["diverged"]``, with the reason in ``metrics["diverged_reason"]``:
  non-finite, loss blow-up, stuck at chance level) enter an index in one of three ways, chosen
  by ``diverged=``, whatever their recorded value (a blown-up loss is finite and huge):
  ``"rank"`` (default), ``"clip"`` or ``"drop"``; see :func:`analyze`.
* **Missing runs** (NaN objective, not flagged: a partial run not computed yet) are left out,
  with a warning that says how many.
* **Goal-oriented analysis** (``target=q``): which hyperparameters decide whether a
  configuration is among the best fraction ``q`` of its objective (in its direction), with
  the indicator output and linear kernel of Novello et al. (2023) and their pooled-median
  bandwidth.
* **Interactions** (``interactions=True``): for each pair of hyperparameters active together,
  the R2-HSIC (U) of the pair with a product kernel, and the pair's second-order HSIC-ANOVA
  index (:mod:`hsens_jax.sensitivity.hsic_anova`): the part of the dependence on the pair that
  neither hyperparameter shows alone, main effects removed.

References: P. Novello, G. Poette, D. Lugato, P. M. Congedo, "Goal-oriented sensitivity
analysis of hyperparameters in deep learning", J. Sci. Comput. 94, 45 (2023); L. Song et al.,
"Feature selection via dependence maximization", JMLR 13 (2012); S. Da Veiga, "Kernel-based
ANOVA decomposition and Shapley effects", arXiv:2101.05487 (2021).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from hsens_jax.results import DIVERGENCE_REASONS, SweepResult, _atomic_write, _to_csv, check_direction
from hsens_jax.sensitivity.hsic import best_fraction, hsic, hsic_interactions
from hsens_jax.sensitivity.hsic_anova import hsic_anova

_MIN_ROWS = 8
SMALL_N = 30
"""Indices from fewer configurations than this are marked "small n" (see the module docstring)."""
DIVERGED_TREATMENTS = ("rank", "clip", "drop")
PVALUES = ("permutation", "gamma", None)
_RANKED_BY = "R2-HSIC of the U-statistic (unbiased HSIC, Song et al. 2012)"
_INTERACTION = ("second-order HSIC-ANOVA index S_ij = HSIC_ij / HSIC_total (Da Veiga 2021; V-statistic, "
                "empirically centred kernels): the dependence on the pair that neither shows alone")


@dataclass
class SensitivityReport:
    """HSIC sensitivity of several objectives to each hyperparameter.

    Attributes:
      names: the d hyperparameters.
      objectives: the m objectives analysed.
      hsic, r2, pvalue: (m, d) arrays of the chosen estimator (``settings["estimator"]``; NaN
        where an index could not be computed).
      n_used: (m, d) number of configurations each index used.
      r2_unbiased: (m, d) R2-HSIC of the U-statistic, the index every ranking uses (equal to
        ``r2`` when the estimator is ``"U"``).
      interactions: ``{objective: (d, d)}`` R2-HSIC (U) of pairs with a product kernel (diagonal:
        the first-order ``r2_unbiased``), when asked; NaN for pairs never active together.
      interaction_parts: ``{objective: (d, d)}`` second-order HSIC-ANOVA indices (main effects
        removed), NaN diagonal.
      interaction_n: ``{objective: (d, d)}`` configurations each pair used.
      directions: ``{objective: "minimize" | "maximize" | None}`` (None: not recorded and not
        needed).
      runs: ``{objective: {...}}`` bookkeeping: configurations, analysed, missing (not computed),
        dropped, flagged_configurations, flagged_runs, runs, reasons (flagged runs per reason).
      settings: how the analysis was made.
    """

    names: tuple[str, ...]
    objectives: tuple[str, ...]
    hsic: np.ndarray
    r2: np.ndarray
    pvalue: np.ndarray
    n_used: np.ndarray
    r2_unbiased: np.ndarray | None = None
    interactions: dict[str, np.ndarray] = field(default_factory=dict)
    interaction_parts: dict[str, np.ndarray] = field(default_factory=dict)
    interaction_n: dict[str, np.ndarray] = field(default_factory=dict)
    directions: dict[str, str | None] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.r2_unbiased is None:
            self.r2_unbiased = np.asarray(self.r2, float).copy()

    def _row(self, objective) -> int:
        if objective is None:
            return 0
        if objective not in self.objectives:
            raise ValueError(f"objective {objective!r} is not in this report; it has {list(self.objectives)}")
        return self.objectives.index(objective)

    def order(self, objective: str | None = None) -> np.ndarray:
        """Indices of the hyperparameters, most influential first: by ``r2_unbiased``, the
        indices computed on fewer than ``settings["small_n"]`` configurations after the others
        (too noisy to rank against them), those that could not be computed (NaN) last."""
        r = np.asarray(self.r2_unbiased[self._row(objective)], float)
        group = np.where(np.isnan(r), 2, np.where(self.small(objective), 1, 0))
        return np.lexsort((np.where(np.isnan(r), 0.0, -r), group))

    def ranking(self, objective: str | None = None) -> list[str]:
        """Hyperparameter names, most influential first (the order of :meth:`table` and :meth:`plot`)."""
        return [self.names[j] for j in self.order(objective)]

    def small(self, objective: str | None = None) -> np.ndarray:
        """(d,) bool: indices computed on fewer than ``settings["small_n"]`` configurations."""
        n = self.n_used[self._row(objective)]
        return (n > 0) & (n < self.settings.get("small_n", SMALL_N))

    def pairs(self, objective: str | None = None) -> list[tuple[int, int]]:
        """Pairs ``(i, j)``, ``i < j``, with an interaction index, largest HSIC-ANOVA index first
        (pairs from fewer than ``settings["small_n"]`` configurations after the others)."""
        obj = self.objectives[self._row(objective)]
        part = self.interaction_parts.get(obj)
        if part is None:
            return []
        d = len(self.names)
        small_n = self.settings.get("small_n", SMALL_N)
        cand = [(i, j) for i in range(d) for j in range(i + 1, d) if np.isfinite(part[i, j])]
        return sorted(cand, key=lambda p: (bool(self.interaction_n[obj][p] < small_n), -part[p]))

    def records(self) -> list[dict[str, Any]]:
        """One dict per index: first-order rows (``kind="main"``), then pairs (``kind="pair"``)."""
        rows = []
        for i, obj in enumerate(self.objectives):
            small = self.small(obj)
            for rank, j in enumerate(self.order(obj), start=1):
                rows.append({"objective": obj, "direction": self.directions.get(obj) or "", "kind": "main",
                             "hyperparameter": self.names[j], "partner": "", "rank": rank,
                             "r2_unbiased": float(self.r2_unbiased[i, j]), "r2": float(self.r2[i, j]),
                             "hsic": float(self.hsic[i, j]), "pvalue": float(self.pvalue[i, j]),
                             "n_used": int(self.n_used[i, j]), "small_n": bool(small[j]),
                             "interaction": float("nan")})
            for a, b in self.pairs(obj):
                rows.append({"objective": obj, "direction": self.directions.get(obj) or "", "kind": "pair",
                             "hyperparameter": self.names[a], "partner": self.names[b], "rank": "",
                             "r2_unbiased": float(self.interactions[obj][a, b]), "r2": float("nan"),
                             "hsic": float("nan"), "pvalue": float("nan"),
                             "n_used": int(self.interaction_n[obj][a, b]),
                             "small_n": bool(self.interaction_n[obj][a, b] < self.settings.get("small_n", SMALL_N)),
                             "interaction": float(self.interaction_parts[obj][a, b])})
        return rows

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame.from_records(self.records())

    def title(self, objective: str | None = None) -> str:
        """``"final_val_loss (minimize), goal: best 10%"``: the objective, its direction, the goal."""
        obj = self.objectives[self._row(objective)]
        direction = self.directions.get(obj)
        target = self.settings.get("target")
        return obj + (f" ({direction})" if direction else "") + (f", goal: best {target:.0%}" if target else "")

    def table(self, alpha: float = 0.05, max_pairs: int = 10) -> str:
        """Plain-text tables: hyperparameters ranked by ``r2_unbiased``, with p-value and n.

        Rows computed on fewer than ``settings["small_n"]`` configurations are marked
        ``small n``; the strongest ``max_pairs`` interactions follow when they were computed,
        then how diverged and missing runs entered the analysis.
        """
        estimator = self.settings.get("estimator", "U")
        small_n = self.settings.get("small_n", SMALL_N)
        width = max([len("hyperparameter"), *(len(n) for n in self.names)])
        lines = []
        for i, obj in enumerate(self.objectives):
            lines.append(self.title(obj))
            head = f"  {'hyperparameter'.ljust(width)}  {'R2-HSIC(U)':>10}"
            if estimator != "U":
                head += f"  {'R2-HSIC(' + estimator + ')':>10}"
            lines.append(head + f"  {'p-value':>8}  {'n':>5}")
            small = self.small(obj)
            for j in self.order(obj):
                p = self.pvalue[i, j]
                row = f"  {self.names[j].ljust(width)}  {_num(self.r2_unbiased[i, j], 10)}"
                if estimator != "U":
                    row += f"  {_num(self.r2[i, j], 10)}"
                row += f"  {'-' if np.isnan(p) else f'{p:.3g}':>8}  {int(self.n_used[i, j]):5d}"
                marks = (["*"] if p == p and p < alpha else []) + (["small n"] if small[j] else [])
                lines.append(row + ("  " + " ".join(marks) if marks else ""))
            pairs = self.pairs(obj)[:max_pairs]
            if pairs:
                labels = [f"{self.names[a]} x {self.names[b]}" for a, b in pairs]
                pw = max(len("pair"), *(len(s) for s in labels))
                lines.append("  interactions (HSIC-ANOVA S_ij, main effects removed; R2-HSIC(U) of the pair):")
                lines.append(f"  {'pair'.ljust(pw)}  {'S_ij':>8}  {'R2 pair':>8}  {'n':>5}")
                for (a, b), label in zip(pairs, labels):
                    n = int(self.interaction_n[obj][a, b])
                    lines.append(f"  {label.ljust(pw)}  {_num(self.interaction_parts[obj][a, b], 8)}  "
                                 f"{_num(self.interactions[obj][a, b], 8)}  {n:5d}"
                                 + ("  small n" if n < small_n else ""))
            lines += [f"  {note}" for note in self._notes(obj)]
            lines.append("")
        lines.append(f"Ranked by the {_RANKED_BY}; p-values: {self.settings.get('pvalue') or 'none'}"
                     + (f" ({estimator}-statistic)" if self.settings.get("pvalue") else "") + ".")
        lines.append(f"* p < {alpha}: the objective depends on the hyperparameter. small n: fewer than "
                     f"{small_n} configurations, the index is noisy.")
        return "\n".join(lines)

    def _notes(self, obj) -> list[str]:
        info = self.runs.get(obj, {})
        notes = []
        if info.get("flagged_runs"):
            reasons = ", ".join(f"{v} {k}" for k, v in info.get("reasons", {}).items())
            how = {"rank": "ranked last (objective rank-transformed, diverged runs tied last)",
                   "clip": f"clipped to {info.get('cap', float('nan')):.4g}",
                   "drop": f"dropped ({info.get('dropped', 0)} configurations with no run left)"}
            notes.append(f"diverged: {info['flagged_runs']} of {info['runs']} runs ({reasons}): "
                         f"{how[self.settings.get('diverged', 'rank')]}")
        if info.get("missing"):
            notes.append(f"left out: {info['missing']} of {info['configurations']} configurations have no "
                         f"value yet (not computed)")
        return notes

    def save(self, path: str | os.PathLike, stem: str = "sensitivity") -> list[Path]:
        """Write ``{stem}.json`` (everything) and ``{stem}.csv`` (one row per index, pairs included)."""
        path = Path(path)
        doc = {"names": list(self.names), "objectives": list(self.objectives), "hsic": self.hsic.tolist(),
               "r2": self.r2.tolist(), "r2_unbiased": np.asarray(self.r2_unbiased).tolist(),
               "pvalue": self.pvalue.tolist(), "n_used": self.n_used.tolist(),
               "small_n": [self.small(o).tolist() for o in self.objectives],
               "ranking": {o: self.ranking(o) for o in self.objectives},
               "interactions": {k: v.tolist() for k, v in self.interactions.items()},
               "interaction_parts": {k: v.tolist() for k, v in self.interaction_parts.items()},
               "interaction_n": {k: v.tolist() for k, v in self.interaction_n.items()},
               "directions": self.directions, "runs": self.runs, "settings": self.settings}
        text = json.dumps(_json_safe(doc), indent=2, allow_nan=False)
        _atomic_write(path / f"{stem}.json", text)
        _atomic_write(path / f"{stem}.csv", _to_csv(self.records()))
        return [path / f"{stem}.json", path / f"{stem}.csv"]

    def plot(self, objective: str | None = None, *, metric: str = "r2_unbiased", ax=None, alpha: float = 0.05):
        """Bars per hyperparameter in the order of :meth:`table`, p-values above, n in the labels.

        ``metric``: ``"r2_unbiased"`` (the ranking index, default), ``"r2"`` or ``"hsic"`` (of
        the chosen estimator). Returns the Axes.
        """
        from types import SimpleNamespace

        from hsens_jax.plotting.hsic import plot_hsic

        if metric not in ("r2_unbiased", "r2", "hsic"):
            raise ValueError(f"metric must be 'r2_unbiased', 'r2' or 'hsic', got {metric!r}")
        i = self._row(objective)
        estimator = "U" if metric == "r2_unbiased" else self.settings.get("estimator", "U")
        values = {"r2_unbiased": self.r2_unbiased, "r2": self.r2, "hsic": self.hsic}[metric][i]
        res = SimpleNamespace(hsic=values, r2=values, pvalue=self.pvalue[i])
        ax = plot_hsic(res, names=list(self.names), metric="hsic" if metric == "hsic" else "r2", ax=ax,
                       alpha=alpha, order=self.order(objective), n=self.n_used[i],
                       small_n=self.settings.get("small_n", SMALL_N))
        ax.set_ylabel(f"{'HSIC' if metric == 'hsic' else 'R2-HSIC'} ({estimator}-statistic)")
        ax.set_title(f"Sensitivity of {self.title(objective)}")
        return ax

    def plot_interactions(self, objective: str | None = None, *, part: str = "interaction", ax=None):
        """Heat map of the pairs: ``part="interaction"`` (second-order HSIC-ANOVA indices, main
        effects removed) or ``"pair"`` (R2-HSIC (U) of the pair, main effects included)."""
        from hsens_jax.plotting.hsic import plot_interactions

        obj = self.objectives[self._row(objective)]
        if obj not in self.interactions:
            raise ValueError(f"no interactions for {obj!r}: analyze(..., interactions=True) computes them")
        if part not in ("interaction", "pair"):
            raise ValueError(f"part must be 'interaction' or 'pair', got {part!r}")
        order = self.order(obj)
        mat = (self.interaction_parts if part == "interaction" else self.interactions)[obj][np.ix_(order, order)]
        label = "HSIC-ANOVA S_ij" if part == "interaction" else "R2-HSIC (U) of the pair"
        what = "Interactions, main effects removed" if part == "interaction" else "Pairs of hyperparameters"
        return plot_interactions(mat, [self.names[j] for j in order], ax=ax, label=label,
                                 title=f"{what}\n{self.title(obj)}")


def analyze(
    result: SweepResult,
    objectives: str | Sequence[str] = ("final_val_loss",),
    *,
    target: float | None = None,
    directions: str | Mapping[str, str] | None = None,
    pvalue: str | None = "permutation",
    n_permutations: int = 1000,
    estimator: str = "U",
    reduce: str = "mean",
    diverged: str = "rank",
    cap: float | None = None,
    interactions: bool = False,
    small_n: int = SMALL_N,
    seed: int = 0,
) -> SensitivityReport:
    """HSIC of every hyperparameter of a sweep against one or more objectives.

    Args:
      result: a sweep (a partial one too: configurations without a value yet are left out).
      objectives: metric names (``final_val_loss``, ``best_val_accuracy``, ``param_count``, a
        user metric...), combined over seeds (and folds) with ``reduce``.
      target: None for global HSIC (Gaussian kernels, bandwidth = std, the OpenTURNS
        convention); a fraction ``q`` in (0, 1) for goal-oriented HSIC of the best ``q``
        fraction in each objective's direction (Novello et al. 2023: indicator output with a
        linear kernel, pooled-median input bandwidth).
      directions: ``"minimize"`` / ``"maximize"`` for every objective, or
        ``{objective: direction}``; default: the run's record (:meth:`SweepResult.direction`).
        Needed for ``target`` and to place diverged runs; a ValueError names the objective when
        none is known.
      pvalue: ``"permutation"`` (default), ``"gamma"`` or None.
      n_permutations: permutations of the output for the permutation test.
      estimator: ``"U"`` (default) or ``"V"``: the estimator of ``hsic``, ``r2`` and the
        p-values. Rankings always use the unbiased U-statistic R2 (``r2_unbiased``).
      reduce: ``"mean"``, ``"median"``, ``"min"`` or ``"max"`` over a configuration's runs.
      diverged: how runs flagged in ``metrics["diverged"]`` enter the indices, applied per run
        before ``reduce``, whatever value the run recorded:

        * ``"rank"`` (default): the objective is replaced by its rank among the analysed
          configurations, flagged runs counted as the worst value possible, so a configuration
          with a flagged run (under ``reduce="mean"``) is tied last. Chosen as the default
          because a diverging configuration *is* a sensitivity (dropping it hides the
          hyperparameter that caused it), because it needs no arbitrary cap (a blown-up loss is
          finite but may be 1e5 times the others, and would otherwise dominate the kernel of the
          output), and because the index then does not change under monotone transformations of
          the objective (loss or log-loss give the same index).
        * ``"clip"``: flagged runs take the value ``cap`` (default: the worst value of the
          unflagged runs), and no unflagged value is worse than ``cap``; raw values otherwise.
        * ``"drop"``: flagged runs are removed; a configuration with no run left is left out.
      cap: the clipping value of ``diverged="clip"``, in the objective's units.
      interactions: also compute, for every pair of hyperparameters active together, the
        R2-HSIC (U) of the pair and its second-order HSIC-ANOVA index (main effects removed).
      small_n: indices from fewer configurations are marked "small n" and ranked after the
        others (0: rank every index by its value).
      seed: seed of the normalization jitter and of the permutations.

    Returns:
      :class:`SensitivityReport`.
    """
    objectives = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    if not objectives:
        raise ValueError("objectives is empty: name at least one metric")
    if diverged not in DIVERGED_TREATMENTS:
        raise ValueError(f"diverged must be one of {DIVERGED_TREATMENTS}, got {diverged!r}")
    if cap is not None and diverged != "clip":
        raise ValueError(f"cap={cap!r} is the clipping value of diverged='clip', not of diverged={diverged!r}")
    if cap is not None and not np.isfinite(cap):
        raise ValueError(f"cap must be a finite number, got {cap!r}")
    if target is not None and not (isinstance(target, (int, float)) and 0 < float(target) < 1):
        raise ValueError(f"target must be a fraction in (0, 1), got {target!r}")
    if estimator not in ("U", "V"):
        raise ValueError(f"estimator must be 'U' or 'V', got {estimator!r}")
    if pvalue not in PVALUES:
        raise ValueError(f"pvalue must be 'permutation', 'gamma' or None, got {pvalue!r}")
    for obj in objectives:
        result.objective(obj, reduce)  # unknown names and curves get their error here
    given = _given_directions(directions, objectives)
    space = result.space
    names = tuple(space.names)
    X = np.asarray(space.normalize(result.configs, method="novello", seed=seed), float)
    m, d = len(objectives), len(names)
    out = {k: np.full((m, d), np.nan) for k in ("hsic", "r2", "pvalue", "r2u")}
    n_used = np.zeros((m, d), int)
    report_dirs: dict[str, str | None] = {}
    runs: dict[str, dict[str, Any]] = {}
    pair_r2: dict[str, np.ndarray] = {}
    pair_part: dict[str, np.ndarray] = {}
    pair_n: dict[str, np.ndarray] = {}
    key = jax.random.key(seed)
    masks = ~np.isnan(X)
    patterns: dict[bytes, list[int]] = {}
    for j in range(d):
        patterns.setdefault(masks[:, j].tobytes(), []).append(j)
    kernel = dict(bandwidth="pooled_median", target=best_fraction(target)) if target is not None \
        else dict(bandwidth="std")

    for i, obj in enumerate(objectives):
        direction = _direction_getter(result, obj, given)
        if target is not None:
            direction(f"target={target} (the best fraction)")
        y, info = _objective_values(result, obj, reduce, diverged, cap, direction)
        report_dirs[obj] = direction(None)
        runs[obj] = info
        if info["missing"]:
            warnings.warn(f"{obj}: {info['missing']} of {info['configurations']} configurations have no value "
                          f"yet (runs not computed): left out of the analysis", stacklevel=2)
        valid = ~np.isnan(y)

        def output(rows):
            ys = y[rows]
            if report_dirs[obj] == "maximize":
                ys = -ys  # lower is better from here on
            return _ranks(ys) if diverged == "rank" else ys

        for cols in patterns.values():
            rows = masks[:, cols[0]] & valid
            n = int(rows.sum())
            n_used[i, cols] = n
            if n < _MIN_ROWS:
                continue
            ys = output(rows)
            if np.ptp(ys) == 0:  # a constant objective depends on nothing
                out["hsic"][i, cols] = out["r2"][i, cols] = out["r2u"][i, cols] = 0.0
                out["pvalue"][i, cols] = 1.0 if pvalue else np.nan
                continue
            if target is not None and np.sum(ys <= np.quantile(ys, target)) in (0, n):
                raise ValueError(f"{obj}: target={target}: the best fraction is empty or everything")
            (out["hsic"][i, cols], out["r2"][i, cols], out["pvalue"][i, cols],
             out["r2u"][i, cols]) = _indices(X[np.ix_(rows, cols)], ys, estimator, pvalue, n_permutations,
                                             jax.random.fold_in(key, i), kernel)
        if interactions:
            pair_r2[obj], pair_part[obj], pair_n[obj] = _interactions(
                X, masks, patterns, valid, output, kernel, target, out["r2u"][i])
    settings = {"method": "hsic", "target": target, "pvalue": pvalue, "n_permutations": n_permutations,
                "estimator": estimator, "ranked_by": "r2_unbiased: " + _RANKED_BY, "reduce": reduce,
                "diverged": diverged, "cap": cap, "small_n": int(small_n), "min_rows": _MIN_ROWS,
                "normalization": "novello2023", "seed": seed,
                "bandwidth": "pooled_median" if target is not None else "std",
                "interactions": _INTERACTION if interactions else None}
    return SensitivityReport(names, objectives, out["hsic"], out["r2"], out["pvalue"], n_used, out["r2u"],
                             pair_r2, pair_part, pair_n, report_dirs, runs, settings)


def _given_directions(directions, objectives) -> dict[str, str]:
    if directions is None:
        return {}
    if isinstance(directions, str):
        return {obj: check_direction(directions) for obj in objectives}
    if not isinstance(directions, Mapping):
        raise TypeError(f"directions must be 'minimize', 'maximize' or a dict {{objective: direction}}, "
                        f"got {type(directions).__name__}")
    unknown = sorted(set(directions) - set(objectives))
    if unknown:
        raise ValueError(f"directions names {unknown}, which are not among the objectives {list(objectives)}")
    return {obj: check_direction(v) for obj, v in directions.items()}


def _direction_getter(result, obj, given):
    """``direction(why)``: the objective's direction; with ``why`` it must be known (else a
    ValueError saying what needs it), without it None when unknown."""
    def direction(why):
        if obj in given:
            return given[obj]
        try:
            return result.direction(obj)
        except ValueError:
            if why is None:
                return None
            raise ValueError(f"{obj}: {why} needs the objective's direction, and none is recorded: pass "
                             f"directions={{{obj!r}: 'minimize' or 'maximize'}} "
                             f"(hsens analyze --direction {obj}=maximize)") from None
    return direction


def _match(a: np.ndarray, shape: tuple, what: str, reduce_extra) -> np.ndarray:
    """``a`` brought to ``shape``: trailing axes (folds) added by broadcasting or reduced."""
    if a.shape == shape:
        return a
    if shape[:a.ndim] == a.shape:
        return np.broadcast_to(a.reshape(a.shape + (1,) * (len(shape) - a.ndim)), shape)
    if a.shape[:len(shape)] == shape:
        return reduce_extra(a, axis=tuple(range(len(shape), a.ndim)))
    raise ValueError(f"metrics[{what!r}] has shape {a.shape}, which does not match the objective's {shape}")


def _objective_values(result, obj, reduce, treatment, cap, direction):
    """(K,) values of ``obj`` with flagged runs treated, and the bookkeeping of the report."""
    raw = np.asarray(result.metrics[obj], float)
    n_configs = raw.shape[0]
    info = {"configurations": n_configs, "runs": int(raw.size), "flagged_runs": 0, "flagged_configurations": 0,
            "reasons": {}, "missing": 0, "dropped": 0}
    if raw.ndim == 1:  # a property of the configuration (size, cost), not of its training runs
        y = np.asarray(result.objective(obj, reduce), float)
        info["missing"] = int(np.isnan(y).sum())
        info["analysed"] = n_configs - info["missing"]
        return y, info
    if "diverged" in result.metrics:
        div = _match(np.asarray(result.metrics["diverged"]) > 0, raw.shape, "diverged", np.any)
        codes = result.metrics.get("diverged_reason")
        codes = np.ones(raw.shape, int) if codes is None else \
            np.maximum(_match(np.nan_to_num(np.asarray(codes, float)).astype(int),  # runs not computed: NaN
                              raw.shape, "diverged_reason", np.max), 1)
    else:
        div, codes = np.zeros(raw.shape, bool), np.ones(raw.shape, int)
    flagged = div | np.isinf(raw)
    if flagged.any():
        info["flagged_runs"] = int(flagged.sum())
        info["flagged_configurations"] = int(flagged.reshape(n_configs, -1).any(1).sum())
        for c in np.unique(codes[flagged]):
            label = DIVERGENCE_REASONS[c] if 0 < c < len(DIVERGENCE_REASONS) else f"code {c}"
            info["reasons"][label] = int(np.sum(codes[flagged] == c))
    treated = np.where(flagged, np.nan, raw)
    if treatment == "clip" and (flagged.any() or cap is not None):
        sense = direction("placing diverged runs (diverged='clip')")
        clean = raw[~flagged & np.isfinite(raw)]
        worst = cap if cap is not None else (np.nan if clean.size == 0 else
                                             clean.max() if sense == "minimize" else clean.min())
        info["cap"] = float(worst)
        if np.isfinite(worst):
            treated = np.where(flagged, worst, treated)
            treated = np.minimum(treated, worst) if sense == "minimize" else np.maximum(treated, worst)
    elif treatment == "rank" and flagged.any():
        sense = direction("placing diverged runs last (diverged='rank')")
        treated = np.where(flagged, np.inf if sense == "minimize" else -np.inf, treated)
    y = np.asarray(replace(result, metrics={**result.metrics, obj: treated}).objective(obj, reduce), float)
    flagged_cfg = flagged.reshape(n_configs, -1).any(1)
    info["missing"] = int(np.sum(np.isnan(y) & ~flagged_cfg))
    info["dropped"] = int(np.sum(np.isnan(y) & flagged_cfg))
    info["analysed"] = int(np.sum(~np.isnan(y)))
    return y, info


def _ranks(y: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``y`` (ties, the infinite values of diverged runs included, averaged)."""
    from scipy.stats import rankdata

    return rankdata(y, method="average").astype(float)


def _indices(X, y, estimator, pvalue, n_permutations, key, kernel):
    """(hsic, r2, pvalue) of ``estimator`` and the U-statistic R2, each (g,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = hsic(X, y, estimator=estimator, pvalue=pvalue, n_permutations=n_permutations, key=key, **kernel)
        r2u = res.r2 if estimator == "U" else hsic(X, y, estimator="U", **kernel).r2
    return tuple(np.asarray(a, float) for a in (res.hsic, res.r2, res.pvalue, r2u))


def _interactions(X, masks, patterns, valid, output, kernel, target, first_order):
    """(d, d) R2-HSIC (U) of pairs, their HSIC-ANOVA second-order indices and the rows used.

    Each pair is analysed on the configurations where both hyperparameters are active: for the
    rows of each activity pattern, every hyperparameter active on all of them joins the
    analysis, and the pairs involving the pattern's own hyperparameters are kept.
    """
    d = X.shape[1]
    r2 = np.full((d, d), np.nan)
    part = np.full((d, d), np.nan)
    used = np.zeros((d, d), int)
    np.fill_diagonal(r2, first_order)
    for cols in patterns.values():
        rows = masks[:, cols[0]] & valid
        active = [j for j in range(d) if masks[rows, j].all()]
        todo = [(a, b) for a in active for b in active if a < b and (a in cols or b in cols) and not used[a, b]]
        if not todo or rows.sum() < _MIN_ROWS:
            continue
        ys = output(rows)
        for a, b in todo:
            used[a, b] = used[b, a] = rows.sum()
        if np.ptp(ys) == 0:
            for a, b in todo:
                r2[a, b] = r2[b, a] = part[a, b] = part[b, a] = 0.0
            continue
        local = {j: k for k, j in enumerate(active)}
        Xl = X[np.ix_(rows, active)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pr2 = np.asarray(hsic_interactions(Xl, ys, pairs=[(local[a], local[b]) for a, b in todo],
                                               metric="r2", estimator="U", **kernel))
        anova = hsic_anova(Xl, ys, bandwidth=kernel["bandwidth"],
                           target=best_fraction(target) if target is not None else None)
        for a, b in todo:
            r2[a, b] = r2[b, a] = pr2[local[a], local[b]]
            part[a, b] = part[b, a] = anova.second[local[a], local[b]]
    return r2, part, used


def _json_safe(obj):
    """JSON-able copy of ``obj``: NaN and infinities become null (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _num(x, width: int) -> str:
    return f"{'-' if not np.isfinite(x) else f'{x:.4f}':>{width}}"
