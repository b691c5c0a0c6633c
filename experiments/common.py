"""Shared machinery of the neural-network studies reproducing Novello et al. (2023).

Each study script (``mnist.py``, ``fashion_mnist.py``, ``cifar10.py``, ``runge.py``,
``bateman.py``) builds a :class:`Study` (data, search space, model, budget, and the reasons for
each choice) and calls :func:`run_study`, which

1. trains a scrambled-Sobol design of the space with :func:`hsens_jax.run_sweep` (one vectorized
   program per batch size), recording for every run its error, parameter count, forward FLOPs
   and training time;
2. analyses the error with :func:`hsens_jax.analyze`: global HSIC and goal-oriented HSIC of the
   best 10% and 20% (Novello et al. 2023), permutation p-values and pairwise interactions
   (HSIC-ANOVA), conditional hyperparameters on the rows where they are active; the same for
   the cost (parameters, FLOPs, time per run);
3. computes the authors' own estimator (``convention="novello2023"``, ``bandwidth="max"``) of
   the goal-oriented index;
4. cross-checks the rankings with Optuna's fANOVA and PED-ANOVA on the same runs;
5. writes everything under ``OUT/<study>/``: ``runs.csv`` (one row per run), ``hsic_*.json|csv``,
   ``importance.csv``, ``summary.json``, ``<study>.md`` (the tables the write-up includes) and
   PNG figures.

Time per run: the engine measures the wall time of each compiled program's chunks (its
*group*: configurations sharing a batch size and training length), compilation of the group's
program included; a run's time is its group's wall time divided by the number of runs in the
group (runs of a group train together, vectorized, so no single run has a time of its own).

Nothing here types a number into a result: every table is computed from the runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python experiments/NAME.py`: use this checkout's hsens_jax
    sys.path.insert(0, str(ROOT))
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import hsens_jax as hs  # noqa: E402
from hsens_jax import design  # noqa: E402
from hsens_jax.space import Bool, Float, Int  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
"""Default output directory of every experiment."""

QUANTILES = (0.1, 0.2)
"""Goal-oriented analyses: the best 10% and 20% of the runs (the paper's toy section 4.3 uses
q = 0.1; PED-ANOVA's default is 0.1; 0.2 as a robustness check)."""


# ----------------------------------------------------------------------------- command line


def arguments(description: str, argv=None, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    """``--quick`` / ``--full`` (default full), ``--out DIR``, ``--data-dir DIR``, ``--quiet``."""
    p = argparse.ArgumentParser(description=description)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small settings: minutes on a 2-core CPU")
    mode.add_argument("--full", action="store_true", help="paper-scale settings, for a GPU (the default)")
    p.add_argument("--out", default=str(RESULTS), help=f"results directory (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--data-dir", default=None,
                   help="root of the downloaded data sets (default $HSENS_DATA, else ~/.cache/hsens_jax)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    return args


def setup_devices() -> str:
    """One JAX device per CPU core (as the ``hsens`` command line does), before JAX starts;
    returns a description of the devices."""
    import jax

    hs.use_cpu_cores()  # before JAX computes anything; it affects only the CPU platform
    devices = jax.devices()
    if devices[0].platform == "cpu":
        return f"CPU, {len(devices)} device(s) = cores ({platform.machine()})"
    return f"{len(devices)} x {devices[0].device_kind}"


def machine() -> dict[str, Any]:
    import jax

    return {"platform": platform.platform(), "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


# ----------------------------------------------------------------------------- data


class DataUnavailable(RuntimeError):
    """A data set's files are missing (the message says how to fetch them)."""


def load_images(name: str, *, n_train: int | None, n_val: int, n_test: int | None, data_dir=None,
                quick: bool, pool: int = 1, seed: int = 0) -> tuple[hs.Dataset, str]:
    """MNIST / Fashion-MNIST / CIFAR-10 with ``n_train`` training and ``n_val`` validation images
    drawn from the training files (stratified), the first ``n_test`` test images, and images
    average-pooled ``pool x pool`` (``pool=2``: 28x28 -> 14x14).

    In quick mode, missing MNIST / Fashion-MNIST files fall back to the bundled 8x8 digits
    (a message says so and how to fetch the real files); CIFAR-10 and full mode raise
    :class:`DataUnavailable`. Returns ``(dataset, note)``; the note describes what was loaded.
    """
    fetch = {"mnist": "mnist", "fashion_mnist": "fashion-mnist", "cifar10": "cifar10"}[name]
    total = None if n_train is None else n_train + n_val
    try:
        full = hs.load_dataset(name, data_dir=data_dir, n_train=total, val_fraction=n_val / (total or 60000),
                               seed=seed)
    except FileNotFoundError as e:
        how = f"`hsens data fetch {fetch}`" + ("" if data_dir is None else f" --dir {data_dir}")
        if quick and name != "cifar10":
            print(f"[{name}] data files not found: falling back to the bundled 8x8 digits. Fetch the real data "
                  f"with {how} ({e})", file=sys.stderr)
            ds = hs.load_dataset("digits", seed=seed)
            return ds, (f"**scikit-learn's 8x8 digits stand in for {name}** (its files were not found; "
                        f"{how} fetches them): {ds.n_train} train / {ds.n_val} validation images, no test split")
        raise DataUnavailable(f"{name}: data files not found; fetch them with {how}. ({e})") from None
    ds = full
    if n_test is not None and ds.x_test is not None:
        ds = dataclasses.replace(ds, x_test=ds.x_test[:n_test], y_test=ds.y_test[:n_test])
    if pool > 1:
        ds = dataclasses.replace(ds, x_train=_pool(ds.x_train, pool), x_val=_pool(ds.x_val, pool),
                                 x_test=None if ds.x_test is None else _pool(ds.x_test, pool))
    shape = "x".join(str(s) for s in ds.input_shape)
    note = (f"{name}: {ds.n_train} train / {ds.n_val} validation images (stratified from the training files), "
            f"{0 if ds.x_test is None else len(ds.x_test)} test images, {shape}"
            + (f" (average-pooled {pool}x{pool})" if pool > 1 else ""))
    return ds, note


def _pool(x: np.ndarray, k: int) -> np.ndarray:
    n, h, w, c = x.shape
    return x[:, : h - h % k, : w - w % k].reshape(n, h // k, k, w // k, k, c).mean((2, 4)).astype(np.float32)


# ----------------------------------------------------------------------------- the study


@dataclasses.dataclass
class Study:
    """One neural-network sensitivity study.

    Attributes:
      name: directory and file stem (``"mnist"``).
      title: heading in the write-up.
      dataset, data_note: the data, and a sentence describing it.
      space: the search space; ``rationale``: ``{hyperparameter: why this range}``.
      model: ``"mlp"`` or an :class:`hsens_jax.Model`; ``model_note`` describes it.
      fixed: values outside the space (the budget among them).
      n_configs: design size (scrambled Sobol, a power of two); ``seeds``: training seeds.
      error: the validation metric analysed (``"final_val_accuracy"`` or ``"final_val_mse"``);
        the study's *error* is ``1 - accuracy`` or the MSE.
      test: the test metric (``"test_accuracy"``, ``"test_mse"``) or None.
      n_evals: validation evaluations along each training run (the curves' length).
      size_knobs: hyperparameters that set the network's size (cheapest value = ``low``).
      mode: ``"quick"`` or ``"full"``; ``paper``: what the paper states about this study.
      n_permutations: permutations behind every HSIC p-value.
    """

    name: str
    title: str
    dataset: Any
    data_note: str
    space: hs.Space
    model: Any
    model_note: str
    fixed: dict
    n_configs: int
    error: str
    test: str | None
    rationale: dict[str, str]
    mode: str
    seeds: tuple = (0,)
    chunk_size: int = 256
    n_evals: int = 20
    size_knobs: tuple = ()
    paper: str = ""
    budget_note: str = ""
    n_permutations: int = 1000


def error_arrays(result: hs.SweepResult, study: Study) -> tuple[np.ndarray, np.ndarray | None]:
    """``(validation error (K, S), test error (K, S) or None)``: 1 - accuracy, or the MSE."""
    def err(name):
        m = np.asarray(result.metrics[name], float)
        return 1.0 - m if name.endswith("accuracy") else m

    return err(study.error), (err(study.test) if study.test and study.test in result.metrics else None)


def add_derived(result: hs.SweepResult, study: Study) -> None:
    """Add ``error``, ``test_error`` (K, S), ``error_rank`` (K, S: the rank of the configuration's
    seed-mean error, diverged configurations tied last, as HSIC sees it) and ``time_per_run`` (K,)
    to ``result.metrics``, with their directions (minimize)."""
    val, test = error_arrays(result, study)
    result.metrics["error"] = val
    if test is not None:
        result.metrics["test_error"] = test
    group = np.asarray(result.metrics["group"], int)
    runs_per_config = len(result.seeds)
    sizes = np.bincount(group) * runs_per_config
    result.metrics["time_per_run"] = np.asarray(result.metrics["group_wall_time"], float) / sizes[group]
    result.metrics["error_rank"] = np.broadcast_to(_ranked_objective(result, "error")[:, None], val.shape).copy()
    directions = dict(result.meta.get("directions") or {})
    directions.update(error="minimize", error_rank="minimize", test_error="minimize", time_per_run="minimize")
    result.meta["directions"] = directions


def study_main(doc: str, build, argv=None) -> dict[str, Any]:
    """The ``main`` of a study script: its arguments (described by the first line of ``doc``),
    the devices, then :func:`run_study` on ``build(args)``."""
    args = arguments(doc.split("\n")[0], argv)
    device = setup_devices()
    return run_study(build(args), args, device=device)


def run_study(study: Study, args, *, device: str) -> dict[str, Any]:
    """Sweep, analyse, cross-check and write one study (see the module docstring); returns the summary."""
    out = Path(args.out) / study.name
    out.mkdir(parents=True, exist_ok=True)
    print(f"[{study.name}] {study.n_configs} configurations x {len(study.seeds)} seed(s); {study.data_note}",
          file=sys.stderr)
    configs = design.sample(study.space, study.n_configs, kind="sobol", seed=0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hs.engine.HyperparameterWarning)
        result = hs.run_sweep(study.dataset, study.space, configs, model=study.model, fixed=study.fixed,
                              seeds=study.seeds, chunk_size=study.chunk_size, n_evals=study.n_evals,
                              progress=not args.quiet,
                              design={"kind": "sobol", "n": study.n_configs, "seed": 0})
    sweep_wall = time.perf_counter() - t0
    add_derived(result, study)
    write_runs(result, out / "runs.csv")

    t1 = time.perf_counter()
    reports = sensitivity_reports(result, out, n_permutations=study.n_permutations)
    t2 = time.perf_counter()
    authors = authors_indices(result, "error")
    t3 = time.perf_counter()
    importances = optuna_importances(result, "error_rank")
    t4 = time.perf_counter()
    analysis_wall = t4 - t1
    analysis_parts = {"hsic": t2 - t1, "authors": t3 - t2, "optuna": t4 - t3}
    tradeoff = tradeoff_table(result)
    figures = make_figures(result, reports, tradeoff, out, study)

    n_runs = result.n_configs * len(result.seeds)
    summary = {
        "study": study.name, "title": study.title, "mode": study.mode, "device": device, "machine": machine(),
        "data": study.data_note, "model": study.model_note, "budget": study.budget_note, "paper": study.paper,
        "fixed": {k: _jsonable(v) for k, v in study.fixed.items()},
        "space": study.space.to_dict(), "rationale": study.rationale, "size_knobs": list(study.size_knobs),
        "n_configs": result.n_configs, "seeds": [int(s) for s in result.seeds], "n_runs": n_runs,
        "timing": {"sweep_wall_s": sweep_wall, "group_wall_s": [float(t) for t in result.meta["group_wall_times"]],
                   "n_groups": len(result.meta["group_wall_times"]),
                   "runs_per_minute": n_runs / (sweep_wall / 60.0), "analysis_wall_s": analysis_wall,
                   "analysis_parts_s": analysis_parts,
                   "measured": "sweep wall time from the run_sweep call to its return (planning, compilation "
                               "and training of every group); time_per_run = group wall time / runs of the group"},
        "diverged_runs": int(np.sum(np.asarray(result.metrics["diverged"], bool))),
        "hsic": {label: _report_rows(rep) for label, rep in reports.items()},
        "authors": authors, "importances": importances, "tradeoff": tradeoff, "figures": figures,
    }
    summary["agreement"] = rank_agreement(summary)
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1, allow_nan=False))
    (out / f"{study.name}.md").write_text(study_markdown(summary))
    print(f"[{study.name}] done: sweep {sweep_wall:.1f} s ({summary['timing']['runs_per_minute']:.0f} runs/min on "
          f"{device}), analysis {analysis_wall:.1f} s -> {out}", file=sys.stderr)
    return summary


# ----------------------------------------------------------------------------- runs table


def write_runs(result: hs.SweepResult, path: Path) -> None:
    """One row per (configuration, seed): hyperparameters, errors, size, FLOPs, time, divergence."""
    space = result.space
    decoded = space.decode(result.configs)
    keep = ["error", "test_error", "final_val_loss", "param_count", "flops_per_example", "time_per_run",
            "diverged", "diverged_reason"]
    rows = []
    for k, hp in enumerate(decoded):
        for s, seed in enumerate(result.seeds):
            row = {"config": k, "seed": int(seed)}
            row.update({n: hp.get(n, "") for n in space.names})
            for name in keep:
                if name not in result.metrics:
                    continue
                m = np.asarray(result.metrics[name])
                v = m[k] if m.ndim == 1 else m[k, s]
                row[name] = _scalar(v)
            rows.append(row)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _scalar(v):
    v = np.asarray(v).item()
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return v


# ----------------------------------------------------------------------------- sensitivity


def sensitivity_reports(result: hs.SweepResult, out: Path, n_permutations: int = 1000) -> dict[str, hs.SensitivityReport]:
    """Global and goal-oriented HSIC of the error (interactions included), and global HSIC of the
    cost; each saved as ``hsic_<label>.json|csv``.

    Diverged runs are ranked last (``diverged="rank"``). Where that leaves a goal-oriented index
    undefined (on some hyperparameter's active runs at least a fraction 1 - q of the runs are tied
    last, so "the best q" is all of them), that analysis is redone with the diverged runs dropped,
    and its settings say so (``settings["diverged"] == "drop"``, ``settings["fallback"]``).
    """
    reports = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reports["global"] = hs.analyze(result, ["error"], interactions=True, n_permutations=n_permutations)
        for q in QUANTILES:
            try:
                rep = hs.analyze(result, ["error"], target=q, interactions=True, n_permutations=n_permutations)
            except ValueError as e:
                if "best fraction is empty or everything" not in str(e):
                    raise
                rep = hs.analyze(result, ["error"], target=q, interactions=True, n_permutations=n_permutations,
                                 diverged="drop")
                rep.settings["fallback"] = (f"with diverged runs ranked last the best {q:.0%} was undefined on some "
                                            f"hyperparameter's active runs ({e}); diverged runs dropped instead")
            reports[f"q{q:g}"] = rep
        reports["cost"] = hs.analyze(result, ["param_count", "flops_per_example", "time_per_run"],
                                     n_permutations=n_permutations)
    for label, rep in reports.items():
        rep.save(out, stem=f"hsic_{label}")
    return reports


def _report_rows(rep: hs.SensitivityReport) -> dict[str, Any]:
    out = {}
    for i, obj in enumerate(rep.objectives):
        main = {rep.names[j]: {"r2_unbiased": float(rep.r2_unbiased[i, j]), "pvalue": float(rep.pvalue[i, j]),
                               "hsic": float(rep.hsic[i, j]), "n": int(rep.n_used[i, j]),
                               "small_n": bool(rep.small(obj)[j])} for j in range(len(rep.names))}
        pairs = [{"pair": [rep.names[a], rep.names[b]], "interaction": float(rep.interaction_parts[obj][a, b]),
                  "r2_pair": float(rep.interactions[obj][a, b]), "n": int(rep.interaction_n[obj][a, b])}
                 for a, b in rep.pairs(obj)]
        out[obj] = {"ranking": rep.ranking(obj), "main": main, "pairs": pairs, "runs": rep.runs.get(obj, {}),
                    "target": rep.settings.get("target"), "diverged": rep.settings.get("diverged"),
                    "fallback": rep.settings.get("fallback")}
    return out


def _ranked_objective(result: hs.SweepResult, objective: str) -> np.ndarray:
    """Per-configuration objective, mean over seeds, with configurations that have a diverged run
    placed after every other (their value replaced by a rank beyond the others'), as ``analyze``'s
    default ``diverged="rank"`` does."""
    y = result.objective(objective)
    flagged = np.asarray(result.metrics["diverged"], bool).reshape(result.n_configs, -1).any(axis=1)
    ranks = np.argsort(np.argsort(np.where(flagged | ~np.isfinite(y), np.inf, y), kind="stable"), kind="stable")
    return np.where(flagged | ~np.isfinite(y), result.n_configs, ranks).astype(float)


def authors_indices(result: hs.SweepResult, objective: str, seed: int = 0) -> dict[str, Any]:
    """Goal-oriented HSIC with the authors' estimator (Novello et al. 2023's ``hsic.py``):
    ``hsic(X, Y, target=best_fraction(q), convention="novello2023", bandwidth="max")`` on the
    Novello-normalized hyperparameters, each conditional hyperparameter on its active rows with
    the quantile recomputed there. An index that is undefined (the best q of a hyperparameter's
    active runs is all of them, through ties) is NaN and listed in ``undefined``."""
    from hsens_jax.sensitivity.hsic import best_fraction, hsic

    space = result.space
    X = np.asarray(space.normalize(result.configs, method="novello", seed=seed), float)
    y = _ranked_objective(result, objective)
    masks = ~np.isnan(X)
    out: dict[str, Any] = {"objective": objective, "estimator": "V (the authors' q^2 MMD^2)", "bandwidth": "max",
                           "values": {}}

    def index(j, q):
        rows = masks[:, j]
        if rows.sum() < 8:
            return float("nan")
        r = hsic(X[rows][:, [j]], y[rows], estimator="V", bandwidth="max", target=best_fraction(q),
                 convention="novello2023")
        return float(np.asarray(r.hsic)[0])

    failed = []
    for q in QUANTILES:
        vals = {}
        for j, name in enumerate(space.names):
            try:
                vals[name] = index(j, q)
            except ValueError as e:  # e.g. the best q of the active runs is all of them (ties)
                vals[name] = float("nan")
                failed.append(f"{name} at q = {q:g}: {e}")
        out["values"][f"q{q:g}"] = vals
    if failed:
        out["undefined"] = failed
    return out


# ----------------------------------------------------------------------------- optuna cross-check


def optuna_study(result: hs.SweepResult, objective: str):
    """The runs as a finished Optuna study: one trial per configuration, value = ``objective``
    averaged over seeds (configurations with a diverged run get the worst value of the others).

    Uses :func:`hsens_jax.search.optuna.to_optuna` when the installed hsens_jax has it, else the
    experiments' own conversion (:func:`_records_to_study`)."""
    try:
        from hsens_jax.search.optuna import to_optuna
    except ImportError:
        return _records_to_study(result, objective), "experiments.common._records_to_study"
    return to_optuna(result, storage=None, study_name=None, objective=objective), "hsens_jax.search.optuna.to_optuna"


def optuna_distributions(space: hs.Space) -> dict[str, Any]:
    """Optuna distributions of a space's hyperparameters."""
    import optuna

    out = {}
    for p in space.params:
        if isinstance(p, Float):
            out[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            out[p.name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Bool):
            out[p.name] = optuna.distributions.CategoricalDistribution([False, True])
        else:
            out[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices))
    return out


def _records_to_study(result: hs.SweepResult, objective: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = result.space
    dists = optuna_distributions(space)
    y = result.objective(objective)
    flagged = np.asarray(result.metrics["diverged"], bool).reshape(result.n_configs, -1).any(axis=1)
    worst = np.nanmax(np.where(flagged, np.nan, y)) if np.any(~flagged & np.isfinite(y)) else 1.0
    study = optuna.create_study(direction="minimize")
    trials = []
    for k, hp in enumerate(space.decode(result.configs)):
        value = float(worst) if (flagged[k] or not np.isfinite(y[k])) else float(y[k])
        params = {n: v for n, v in hp.items() if n in dists}
        trials.append(optuna.trial.create_trial(params=params, distributions={n: dists[n] for n in params},
                                                value=value))
    study.add_trials(trials)
    return study


def optuna_importances(result: hs.SweepResult, objective: str) -> dict[str, Any]:
    """fANOVA (global) and PED-ANOVA (best q, for each q of :data:`QUANTILES`) importances of the
    hyperparameters present in every trial (Optuna assesses only those: conditional ones are left
    out), normalized to sum to 1. The studies pass ``error_rank``, the output HSIC analyses (rank
    of the error, diverged runs last): fANOVA's variance decomposition of raw errors would be
    dominated by a few huge ones (a diverging MSE), which HSIC's rank transform does not see."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, via = optuna_study(result, objective)
    out: dict[str, Any] = {"via": via, "objective": objective}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["fanova"] = dict(optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0)))
        for q in QUANTILES:
            out[f"ped_anova_q{q:g}"] = dict(optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=q)))
    return out


def rank_agreement(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Spearman correlation of HSIC's ranking with fANOVA's (global) and PED-ANOVA's (goal q) on
    the hyperparameters both assess, and whether their top-3 sets agree."""
    from scipy.stats import spearmanr

    imp = summary["importances"]
    pairs = [("global", "fanova")] + [(f"q{q:g}", f"ped_anova_q{q:g}") for q in QUANTILES]
    out = {}
    for hsic_label, opt_label in pairs:
        main = summary["hsic"][hsic_label]["error"]["main"]
        theirs = imp.get(opt_label, {})
        names = [n for n in theirs if n in main and np.isfinite(main[n]["r2_unbiased"])]
        if len(names) < 3:
            continue
        a = np.array([main[n]["r2_unbiased"] for n in names])
        b = np.array([theirs[n] for n in names])
        rho = float(spearmanr(a, b).statistic)
        top_a = set(np.array(names)[np.argsort(-a)[:3]])
        top_b = set(np.array(names)[np.argsort(-b)[:3]])
        out[f"{hsic_label}~{opt_label}"] = {"spearman": rho, "n": len(names), "top3_overlap": len(top_a & top_b)}
    return out


# ----------------------------------------------------------------------------- accuracy / cost


def pareto_front(error: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the configurations no other beats on both error and cost (sorted by cost)."""
    order = np.lexsort((error, cost))
    front, best = [], np.inf
    for i in order:
        if np.isfinite(error[i]) and error[i] < best:
            front.append(int(i))
            best = error[i]
    return np.array(front, int)


def tradeoff_table(result: hs.SweepResult) -> dict[str, Any]:
    """The best configuration by validation error, the Pareto front of (test error, parameters),
    and the smallest network within 1 point (classification) or a factor 2 (regression, MSE) of
    the best validation error."""
    val = result.objective("error")
    test = result.objective("test_error") if "test_error" in result.metrics else val
    flagged = np.asarray(result.metrics["diverged"], bool).reshape(result.n_configs, -1).any(axis=1)
    val = np.where(flagged, np.nan, val)
    test = np.where(flagged, np.nan, test)
    params = np.asarray(result.metrics["param_count"], float)
    flops = np.asarray(result.metrics["flops_per_example"], float)
    time_run = np.asarray(result.metrics["time_per_run"], float)
    decoded = result.space.decode(result.configs)

    def row(k):
        return {"config": int(k), "val_error": _f(val[k]), "test_error": _f(test[k]), "param_count": int(params[k]),
                "flops_per_example": _f(flops[k]), "time_per_run_s": _f(time_run[k]),
                "hyperparameters": {n: _jsonable(v) for n, v in decoded[k].items()}}

    if not np.any(np.isfinite(val)):
        return {"best": None, "pareto": [], "small": None}
    best = int(np.nanargmin(val))
    front = pareto_front(np.where(np.isfinite(test), test, np.inf), params)
    regression = "final_val_accuracy" not in result.metrics
    tol_note = "within a factor 2 of the best validation MSE" if regression else \
        "within 1 point of the best validation error"
    limit = val[best] * 2.0 if regression else val[best] + 0.01
    near = np.where(np.isfinite(val) & (val <= limit))[0]
    small = int(near[np.argmin(params[near])])
    return {"best": row(best), "pareto": [row(k) for k in front], "small": row(small), "small_rule": tol_note,
            "regression": bool(regression)}


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


# ----------------------------------------------------------------------------- figures


def make_figures(result, reports, tradeoff, out: Path, study: Study) -> dict[str, str]:
    """HSIC bars (global, q=0.1, q=0.2), the interaction heat map (q=0.1) and the accuracy/cost
    scatter, as PNG files in ``out``; returns ``{figure: file name}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    fig, axes = plt.subplots(1, 3, figsize=(19, 4.6))
    for ax, label in zip(axes, ["global"] + [f"q{q:g}" for q in QUANTILES]):
        reports[label].plot("error", ax=ax)
        ax.set_title(f"{study.title}: " + ("global HSIC" if label == "global" else f"goal: best {label[1:]}"),
                     fontsize=9)
    fig.tight_layout()
    files["hsic"] = f"{study.name}_hsic.png"
    fig.savefig(out / files["hsic"], dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    reports[f"q{QUANTILES[0]:g}"].plot_interactions("error", ax=ax)
    fig.tight_layout()
    files["interactions"] = f"{study.name}_interactions.png"
    fig.savefig(out / files["interactions"], dpi=80)
    plt.close(fig)

    test = result.objective("test_error") if "test_error" in result.metrics else result.objective("error")
    flagged = np.asarray(result.metrics["diverged"], bool).reshape(result.n_configs, -1).any(axis=1)
    params = np.asarray(result.metrics["param_count"], float)
    t = np.asarray(result.metrics["time_per_run"], float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ok = ~flagged & np.isfinite(test)
    sc = ax.scatter(params[ok], test[ok], c=t[ok], s=14, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="training time per run (s)")
    front = [r["config"] for r in tradeoff.get("pareto", [])]
    if front:
        ax.plot(params[front], test[front], "r-", lw=1, label="Pareto front")
        ax.legend()
    ax.set_xscale("log")
    if tradeoff.get("regression"):
        ax.set_yscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(("test" if "test_error" in result.metrics else "validation") + " error")
    ax.set_title(f"{study.title}: error against size ({int(flagged.sum())} diverged runs not shown)", fontsize=9)
    fig.tight_layout()
    files["tradeoff"] = f"{study.name}_tradeoff.png"
    fig.savefig(out / files["tradeoff"], dpi=80)
    plt.close(fig)
    return files


# ----------------------------------------------------------------------------- markdown


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if a >= 1 else f"{v:.{digits}f}"


def _p(v) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f}" + ("*" if v < 0.05 else "")


def describe_param(p) -> tuple[str, str, str]:
    """(type, range or choices, condition) of a hyperparameter, for tables."""
    if isinstance(p, Float):
        kind, rng = "float" + (" (log)" if p.log else ""), f"[{p.low:g}, {p.high:g}]"
    elif isinstance(p, Int):
        kind, rng = "int" + (" (log)" if p.log else ""), f"{{{p.low}..{p.high}}}"
    elif isinstance(p, Bool):
        kind, rng = "bool", "{False, True}"
    else:
        kind, rng = "categorical", "{" + ", ".join(str(c) for c in p.choices) + "}"
    cond = ""
    if p.condition:
        parts = []
        for parent, test in p.condition.items():
            if isinstance(test, hs.Threshold):
                parts.append(test.describe(parent))
            else:
                parts.append(f"{parent} in {{{', '.join(str(v) for v in test)}}}")
        cond = " and ".join(parts)
    return kind, rng, cond


def space_table(space: hs.Space, rationale: Mapping[str, str]) -> list[str]:
    lines = ["| hyperparameter | type | range / choices | active when | why |", "|---|---|---|---|---|"]
    for p in space.params:
        kind, rng, cond = describe_param(p)
        lines.append(f"| `{p.name}` | {kind} | {rng} | {cond or 'always'} | {rationale.get(p.name, '')} |")
    return lines


_LABELS = {"global": "global", "fanova": "fANOVA", **{f"q{q:g}": f"best {q:.0%}" for q in QUANTILES},
           **{f"ped_anova_q{q:g}": f"PED-ANOVA {q:.0%}" for q in QUANTILES}}


def study_markdown(summary: Mapping[str, Any]) -> str:
    """The study's section of the write-up (every number from ``summary``)."""
    s = summary
    space = hs.Space.from_dict(s["space"])
    t = s["timing"]
    lines = [f"### {s['title']}", ""]
    lines.append(f"*Mode: {s['mode']} ({'CPU, reduced settings' if s['mode'] == 'quick' else 'paper-scale settings'}),"
                 f" device: {s['device']}.*")
    lines.append("")
    lines += [f"- **Data**: {s['data']}", f"- **Model**: {s['model']}", f"- **Budget**: {s['budget']}",
              f"- **Design**: {s['n_configs']} configurations (scrambled Sobol, seed 0) x {len(s['seeds'])} "
              f"training seed(s) = {s['n_runs']} runs, {s['diverged_runs']} of them flagged diverged "
              f"(ranked last by the analyses).",
              f"- **Time**: sweep {t['sweep_wall_s']:.1f} s wall ({t['n_groups']} compiled programs, compilation "
              f"included) = {t['runs_per_minute']:.0f} runs per minute; analyses {t['analysis_wall_s']:.1f} s."]
    if s.get("paper"):
        lines.append(f"- **Paper**: {s['paper']}")
    lines += ["", "Search space (every choice is ours; the paper's spaces are not public):", ""]
    lines += space_table(space, s["rationale"])
    lines += ["", "Fixed: " + ", ".join(f"`{k}` = {v}" for k, v in s["fixed"].items()) + ".", ""]

    g = s["hsic"]["global"]["error"]["main"]
    qs = [s["hsic"][f"q{q:g}"]["error"]["main"] for q in QUANTILES]
    imp = s["importances"]
    auth = s["authors"].get("values", {})
    order = s["hsic"][f"q{QUANTILES[0]:g}"]["error"]["ranking"]
    head = ("| hyperparameter | n | global R2-HSIC | p | " + " | ".join(f"best {q:.0%} R2-HSIC | p" for q in QUANTILES)
            + " | fANOVA | " + " | ".join(f"PED-ANOVA {q:.0%}" for q in QUANTILES)
            + " | " + " | ".join(f"authors' HSIC {q:.0%}" for q in QUANTILES) + " |")
    lines += ["Sensitivity of the validation error (R2-HSIC of the U-statistic, permutation p-values, * p < 0.05; "
              "conditional hyperparameters on the runs where they are active, n; rows in the order of the "
              f"best-{QUANTILES[0]:.0%} ranking; fANOVA and PED-ANOVA: Optuna's importances, normalized, on the "
              "hyperparameters present in every run; authors' HSIC: the goal-oriented index of Novello et al.'s "
              f"estimator, bandwidth `{s['authors'].get('bandwidth', '-')}`):", "", head,
              "|" + "---|" * (head.count("|") - 1)]
    for name in order:
        cells = [f"`{name}`", str(g[name]["n"]) + (" (small n)" if g[name]["small_n"] else ""),
                 _fmt(g[name]["r2_unbiased"]), _p(g[name]["pvalue"])]
        for qm in qs:
            cells += [_fmt(qm[name]["r2_unbiased"]), _p(qm[name]["pvalue"])]
        cells.append(_fmt(imp.get("fanova", {}).get(name)))
        cells += [_fmt(imp.get(f"ped_anova_q{q:g}", {}).get(name)) for q in QUANTILES]
        cells += [_fmt(auth.get(f"q{q:g}", {}).get(name)) for q in QUANTILES]
        lines.append("| " + " | ".join(cells) + " |")
    for q in QUANTILES:
        fb = s["hsic"][f"q{q:g}"]["error"].get("fallback")
        if fb:
            lines += ["", f"Best {q:.0%}: {fb}."]
    if s["agreement"]:
        lines += ["", "Agreement of the rankings (Spearman correlation over the hyperparameters both methods assess; "
                      "top-3 overlap):", ""]
        lines += ["| HSIC ranking | compared with | Spearman | hyperparameters | top-3 in common |", "|---|---|---|---|---|"]
        for key, a in s["agreement"].items():
            left, right = key.split("~")
            lines.append(f"| {_LABELS.get(left, left)} | {_LABELS.get(right, right)} | {a['spearman']:.2f} | {a['n']} | "
                         f"{a['top3_overlap']} of 3 |")
    lines += ["", "Strongest interactions (second-order HSIC-ANOVA index S_ij, main effects removed):", "",
              "| goal | pair | S_ij | R2-HSIC of the pair | n |", "|---|---|---|---|---|"]
    for label in ["global"] + [f"q{q:g}" for q in QUANTILES]:
        for pair in s["hsic"][label]["error"]["pairs"][:3]:
            lines.append(f"| {_LABELS[label]} | `{pair['pair'][0]}` x `{pair['pair'][1]}` | {_fmt(pair['interaction'])} | "
                         f"{_fmt(pair['r2_pair'])} | {pair['n']} |")
    cost = s["hsic"]["cost"]
    lines += ["", "What the cost depends on (global R2-HSIC, top three):", ""]
    for obj, label in (("param_count", "parameters"), ("flops_per_example", "FLOPs per example"),
                       ("time_per_run", "training time per run")):
        main = cost[obj]["main"]
        top = [n for n in cost[obj]["ranking"] if np.isfinite(main[n]["r2_unbiased"])][:3]
        lines.append(f"- {label}: " + ", ".join(f"`{n}` {_fmt(main[n]['r2_unbiased'])}" for n in top))
    tr = s["tradeoff"]
    if tr.get("best"):
        lines += ["", "Accuracy against cost (diverged runs left out):", "",
                  "| configuration | validation error | test error | parameters | FLOPs / example | s / run |",
                  "|---|---|---|---|---|---|"]
        rows = [("best validation error", tr["best"]), (f"smallest {tr['small_rule']}", tr["small"])]
        rows += [(f"Pareto front #{i + 1}", r) for i, r in enumerate(tr["pareto"][:6])]
        for label, r in rows:
            lines.append(f"| {label} (#{r['config']}) | {_fmt(r['val_error'])} | {_fmt(r['test_error'])} | "
                         f"{r['param_count']:,} | {_fmt(r['flops_per_example'])} | {_fmt(r['time_per_run_s'])} |")
        lines += ["", "Best configuration: " + ", ".join(f"`{k}`={_fmt(v) if isinstance(v, float) else v}"
                                                         for k, v in tr["best"]["hyperparameters"].items()) + "."]
    f = s["figures"]
    lines += ["", f"![HSIC]({s['study']}/{f['hsic']})", "", f"![interactions]({s['study']}/{f['interactions']})",
              "", f"![trade-off]({s['study']}/{f['tradeoff']})", ""]
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
