"""HSIC-based hyperparameter optimization against random search and TPE, at equal budget.

Novello et al. (2023) derive an optimization algorithm from goal-oriented HSIC that "yields
competitive and cost-effective" networks; its exact steps are not public. This is our reading of
it, modelled on the target-HSIC variable selection of Spagnol, Le Riche and Da Veiga (2019):

1. **Explore**: spend half of the budget B on a space-filling design of the full space (a Latin
   hypercube), train every configuration.
2. **Select**: goal-oriented HSIC of the best fraction q of the explored runs (``hs.analyze(...,
   target=q)``, permutation p-values); keep the hyperparameters whose index is significant
   (p < alpha), and at least the ``k_min`` strongest.
3. **Reduce**: fix every other hyperparameter: the *size knobs* (depth, width) at their cheapest
   value, the others at their value in the best explored configuration. Each kept numeric
   hyperparameter is restricted to the range its best-q configurations span (widened by 10% of
   its unit range on each side), each kept categorical to the choices they use.
4. **Exploit**: spend the other half of the budget on a Latin hypercube of the reduced space.

Baselines with the same budget B: random search (i.i.d. uniform configurations of the full
space) and Optuna's TPE (multivariate, grouped for the conditional space, batches of
``batch`` trials with the constant liar). Each method runs with 5 seeds; reported: the best
validation error against the number of evaluations (median and quartiles over seeds), the test
error and the size (parameters, FLOPs) of the network each method finally picks (the best by
validation error).

    python experiments/hsic_hpo.py [--quick] [--out DIR] [--data-dir DIR]

Quick mode optimizes the MLP of ``mnist.py`` on the bundled 8x8 digits (B = 48); full mode on
MNIST (B = 256).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from common import _fmt, _jsonable, add_derived, arguments, load_images, machine, setup_devices, Study
from mnist import mlp_space

import hsens_jax as hs
from hsens_jax import design, encoding
from hsens_jax.space import Bool, Categorical, Float, Int

SETTINGS = {
    "quick": dict(data="digits", budget=48, batch=8, q=0.2, alpha=0.1, k_min=2, seeds=5, epochs=5,
                  max_width=128, max_depth=3, batch_sizes=(32, 128)),
    "full": dict(data="mnist", budget=256, batch=32, q=0.1, alpha=0.05, k_min=2, seeds=5, epochs=10,
                 max_width=1024, max_depth=4, batch_sizes=(32, 64, 128, 256)),
}
METHODS = ("hsic", "random", "tpe")
SIZE_KNOBS = ("depth", "width")


def digits_with_test(seed: int = 0) -> hs.Dataset:
    """The bundled 8x8 digits, its 20% validation split halved into validation and test."""
    ds = hs.load_dataset("digits", val_fraction=0.4, seed=seed)
    half = len(ds.x_val) // 2
    return dataclasses.replace(ds, x_val=ds.x_val[:half], y_val=ds.y_val[:half], x_test=ds.x_val[half:],
                               y_test=ds.y_val[half:])


class Evaluator:
    """Trains batches of configurations with the engine (one training seed, fixed chunk shape so
    that every call reuses the compiled programs) and returns per-configuration outcomes."""

    def __init__(self, dataset, space, fixed, chunk_size):
        self.dataset, self.space, self.fixed, self.chunk_size = dataset, space, fixed, chunk_size
        self.n_trained, self.train_time = 0, 0.0
        self.study = Study(name="hpo", title="", dataset=dataset, data_note="", space=space, model="mlp",
                           model_note="", fixed=fixed, n_configs=0, error="final_val_accuracy",
                           test="test_accuracy", rationale={}, mode="")

    def __call__(self, configs) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = hs.run_sweep(self.dataset, self.space, configs, fixed=self.fixed, chunk_size=self.chunk_size,
                                  progress=False)
        self.train_time += time.perf_counter() - t0
        self.n_trained += result.n_configs
        add_derived(result, self.study)
        flagged = np.asarray(result.metrics["diverged"], bool)[:, 0]
        return {"result": result, "val": np.where(flagged, np.nan, result.objective("error")),
                "test": np.where(flagged, np.nan, result.objective("test_error")),
                "params": np.asarray(result.metrics["param_count"], float),
                "flops": np.asarray(result.metrics["flops_per_example"], float)}


def concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in ("val", "test", "params", "flops")}


def split(out, sizes):
    edges = np.cumsum([0] + list(sizes))
    return [{k: out[k][a:b] for k in ("val", "test", "params", "flops")} for a, b in zip(edges[:-1], edges[1:])]


# ----------------------------------------------------------------------------- the HSIC method


def select(result, q, alpha, k_min) -> tuple[list[str], hs.SensitivityReport]:
    """Hyperparameters whose goal-oriented HSIC (best q) is significant, at least the k_min strongest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = hs.analyze(result, ["error"], target=q, n_permutations=500)
    ranking = rep.ranking("error")
    p = {n: rep.pvalue[0, rep.names.index(n)] for n in rep.names}
    kept = [n for n in ranking if p[n] < alpha]
    for n in ranking:
        if len(kept) >= k_min:
            break
        if n not in kept:
            kept.append(n)
    return kept, rep


def reduction(space, configs, val, kept, q, size_knobs) -> dict:
    """The reduced space as unit-cube rules: ``fixed`` {name: u}, ``box`` {name: (lo, hi)}, ``choices``
    {name: [indices]} (see the module docstring, step 3)."""
    U = encoding.to_unit(space, configs)
    finite = np.isfinite(val)
    top = finite & (val <= np.quantile(val[finite], q, method="lower"))
    best = int(np.nanargmin(val))
    fixed, box, choices = {}, {}, {}
    for j, p in enumerate(space.params):
        col = U[:, j]
        if p.name in kept:
            rows = top & ~np.isnan(col)
            if isinstance(p, (Categorical, Bool)):
                idx = sorted({int(v) for v in configs[p.name][rows]}) or list(range(p.n_values))
                choices[p.name] = idx
            elif rows.any():
                box[p.name] = (max(0.0, float(col[rows].min()) - 0.1), min(1.0, float(col[rows].max()) + 0.1))
        elif p.name in size_knobs:
            fixed[p.name] = 0.0
        else:
            active = ~np.isnan(col) & finite
            if not np.isnan(col[best]):
                fixed[p.name] = float(col[best])
            elif active.any():
                fixed[p.name] = float(col[active][np.argmin(val[active])])
            else:
                fixed[p.name] = 0.5
    return {"fixed": fixed, "box": box, "choices": choices}


def sample_reduced(space, rules, n, seed) -> dict:
    U = design.unit_sample(n, len(space), kind="lhs", seed=seed)
    for j, p in enumerate(space.params):
        if p.name in rules["fixed"]:
            U[:, j] = rules["fixed"][p.name]
        elif p.name in rules["box"]:
            lo, hi = rules["box"][p.name]
            U[:, j] = lo + U[:, j] * (hi - lo)
        elif p.name in rules["choices"]:
            idx = np.asarray(rules["choices"][p.name])
            pick = idx[np.minimum((U[:, j] * len(idx)).astype(int), len(idx) - 1)]
            U[:, j] = (pick + 0.5) / p.n_values
    return encoding.from_unit(space, np.clip(U, 0.0, 1.0))


# ----------------------------------------------------------------------------- TPE


def suggest(trial, space) -> dict:
    """One configuration from an Optuna trial, define-by-run: each hyperparameter is suggested
    only where its conditions hold (parents first)."""
    cols, active = {}, {}
    record = {}
    for name in space.topological_order:
        p = space[name]
        on = bool(space.active_given_parents(name, cols, active)[0]) if p.condition else True
        active[name] = np.array([on])
        cols[name] = np.array([np.nan])
        if not on:
            continue
        if isinstance(p, Float):
            v = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            v = trial.suggest_int(name, p.low, p.high, log=p.log)
        elif isinstance(p, Bool):
            v = trial.suggest_categorical(name, [False, True])
        else:
            v = trial.suggest_categorical(name, list(p.choices))
        record[name] = v
        cols[name] = np.array([float(p.index_of(v)) if isinstance(p, (Categorical, Bool)) else float(v)])
    return record


def run_tpe(evaluate, space, budget, batch, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    parts = []
    while sum(len(p["val"]) for p in parts) < budget:
        n = min(batch, budget - sum(len(p["val"]) for p in parts))
        trials = [study.ask() for _ in range(n)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = [suggest(t, space) for t in trials]
        out = evaluate(space.encode(records))
        for t, v in zip(trials, out["val"]):
            if np.isfinite(v):
                study.tell(t, float(v))
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
        parts.append(out)
    return concat(parts)


# ----------------------------------------------------------------------------- main


def best_so_far(val: np.ndarray) -> np.ndarray:
    return np.fmin.accumulate(np.where(np.isfinite(val), val, np.inf))


def main(argv=None):
    args = arguments(__doc__.split("\n")[0], argv)
    st = SETTINGS[args.mode]
    device = setup_devices()
    out_dir = Path(args.out) / "hsic_hpo"
    out_dir.mkdir(parents=True, exist_ok=True)
    if st["data"] == "digits":
        ds, note = digits_with_test(), "scikit-learn's 8x8 digits: 60% train, 20% validation, 20% test"
    else:
        ds, note = load_images("mnist", n_train=50000, n_val=10000, n_test=None, data_dir=args.data_dir,
                               quick=False)
    space = mlp_space(st["max_width"], st["max_depth"], st["batch_sizes"])
    fixed = {"epochs": st["epochs"]}
    evaluate = Evaluator(ds, space, fixed, st["batch"])
    B, n1, seeds = st["budget"], st["budget"] // 2, list(range(st["seeds"]))
    t_start = time.perf_counter()
    runs: dict[str, list] = {m: [] for m in METHODS}
    selections = []

    print(f"[hsic_hpo] random search: {len(seeds)} x {B} configurations", file=sys.stderr)
    rs_configs = [design.sample(space, B, kind="random", seed=1000 + s) for s in seeds]
    rs = evaluate({n: np.concatenate([c[n] for c in rs_configs]) for n in space.names})
    runs["random"] = split(rs, [B] * len(seeds))

    print(f"[hsic_hpo] HSIC: explore {len(seeds)} x {n1}, select, exploit {len(seeds)} x {B - n1}", file=sys.stderr)
    explore_configs = [design.sample(space, n1, kind="lhs", seed=s) for s in seeds]
    explore_all = evaluate({n: np.concatenate([c[n] for c in explore_configs]) for n in space.names})
    explored = split(explore_all, [n1] * len(seeds))
    exploit_configs = []
    for s, cfg, part in zip(seeds, explore_configs, explored):
        result = explore_all["result"]
        rows = np.arange(s * n1, (s + 1) * n1)
        sub = dataclasses.replace(result, configs={n: v[rows] for n, v in result.configs.items()},
                                  metrics={n: (np.asarray(v)[rows] if np.ndim(v) else v)
                                           for n, v in result.metrics.items()})
        kept, rep = select(sub, st["q"], st["alpha"], st["k_min"])
        rules = reduction(space, cfg, part["val"], kept, st["q"], SIZE_KNOBS)
        selections.append({"seed": s, "kept": kept,
                           "pvalues": {n: float(rep.pvalue[0, rep.names.index(n)]) for n in rep.names},
                           "fixed": {n: value_at(space[n], u) for n, u in rules["fixed"].items()},
                           "box": rules["box"], "choices": {n: [space[n].choices[i] for i in v]
                                                            for n, v in rules["choices"].items()}})
        exploit_configs.append(sample_reduced(space, rules, B - n1, seed=100 + s))
    exploit_all = evaluate({n: np.concatenate([c[n] for c in exploit_configs]) for n in space.names})
    for part, ex in zip(explored, split(exploit_all, [B - n1] * len(seeds))):
        runs["hsic"].append({k: np.concatenate([part[k], ex[k]]) for k in part})

    print(f"[hsic_hpo] TPE: {len(seeds)} x {B} configurations in batches of {st['batch']}", file=sys.stderr)
    for s in seeds:
        runs["tpe"].append(run_tpe(evaluate, space, B, st["batch"], seed=s))
    wall = time.perf_counter() - t_start

    summary = summarize(runs, st, selections, note, device, wall, evaluate, args.mode)
    (out_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1, allow_nan=False))
    write_curves(runs, out_dir / "curves.csv")
    figure(runs, out_dir / "hsic_hpo.png", B, n1)
    (out_dir / "hsic_hpo.md").write_text(markdown(summary))
    print(f"[hsic_hpo] done in {wall:.0f} s -> {out_dir}", file=sys.stderr)
    return summary


def value_at(p, u: float):
    """The value of hyperparameter ``p`` at unit coordinate ``u`` (its condition ignored)."""
    alone = hs.Space([dataclasses.replace(p, condition=None)])
    return alone.decode(alone.from_unit(np.array([[u]])))[0][p.name]


def summarize(runs, st, selections, note, device, wall, evaluate, mode):
    final = {}
    for m in METHODS:
        rows = []
        for s, r in enumerate(runs[m]):
            k = int(np.nanargmin(np.where(np.isfinite(r["val"]), r["val"], np.inf)))
            rows.append({"seed": s, "best_val_error": float(r["val"][k]), "test_error": _none(r["test"][k]),
                         "param_count": int(r["params"][k]), "flops_per_example": float(r["flops"][k]),
                         "evaluation": k + 1, "diverged": int(np.sum(~np.isfinite(r["val"])))})
        final[m] = rows
    stats = {}
    for m, rows in final.items():
        stats[m] = {key: {"median": float(np.median([r[key] for r in rows if r[key] is not None])),
                          "q25": float(np.percentile([r[key] for r in rows if r[key] is not None], 25)),
                          "q75": float(np.percentile([r[key] for r in rows if r[key] is not None], 75))}
                    for key in ("best_val_error", "test_error", "param_count", "flops_per_example")}
    curves = {m: np.stack([best_so_far(r["val"]) for r in runs[m]]) for m in METHODS}
    checkpoints = sorted({st["budget"] // 4, st["budget"] // 2, 3 * st["budget"] // 4, st["budget"]})
    at = {m: {str(c): float(np.median(curves[m][:, c - 1])) for c in checkpoints} for m in METHODS}
    return {"mode": mode, "device": device, "machine": machine(), "data": note, "settings": st,
            "space": mlp_space(st["max_width"], st["max_depth"], st["batch_sizes"]).to_dict(),
            "final": final, "stats": stats, "median_best_at": at, "selections": selections,
            "wall_s": wall, "trainings": evaluate.n_trained, "training_wall_s": evaluate.train_time}


def _none(v):
    return None if not np.isfinite(v) else float(v)


def write_curves(runs, path):
    lines = ["method,seed,evaluation,val_error,best_val_error,test_error,param_count"]
    for m in METHODS:
        for s, r in enumerate(runs[m]):
            best = best_so_far(r["val"])
            for i in range(len(r["val"])):
                lines.append(f"{m},{s},{i + 1},{_csv(r['val'][i])},{_csv(best[i])},{_csv(r['test'][i])},"
                             f"{int(r['params'][i])}")
    path.write_text("\n".join(lines) + "\n")


def _csv(v):
    return "" if not np.isfinite(v) else f"{v:.6g}"


def figure(runs, path, budget, n1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(1, budget + 1)
    labels = {"hsic": "HSIC-based (ours)", "random": "random search", "tpe": "TPE (Optuna)"}
    for m, color in zip(METHODS, ("C3", "C0", "C2")):
        c = np.stack([best_so_far(r["val"]) for r in runs[m]])
        c = np.where(np.isfinite(c), c, np.nan)
        ax.plot(x, np.nanmedian(c, 0), color=color, label=labels[m])
        ax.fill_between(x, np.nanpercentile(c, 25, 0), np.nanpercentile(c, 75, 0), color=color, alpha=0.15)
        sizes = []
        for r in runs[m]:
            k = int(np.nanargmin(np.where(np.isfinite(r["val"]), r["val"], np.inf)))
            sizes.append((r["params"][k], r["test"][k]))
        sizes = np.array(sizes)
        ax2.scatter(sizes[:, 0], sizes[:, 1], color=color, label=labels[m])
    ax.axvline(n1, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best validation error so far")
    ax.set_title("median and quartiles over seeds (dotted: end of HSIC's exploration)", fontsize=9)
    ax.legend()
    ax2.set_xscale("log")
    ax2.xaxis.set_minor_formatter(plt.NullFormatter())  # minor-tick labels overlap on a narrow range
    ax2.set_xlabel("parameters of the chosen network")
    ax2.set_ylabel("its test error")
    ax2.set_title("the network each method picks (one point per seed)", fontsize=9)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown(s) -> str:
    st = s["settings"]
    labels = {"hsic": "HSIC-based (ours)", "random": "random search", "tpe": "TPE (Optuna)"}
    lines = ["### HSIC-based optimization against random search and TPE", "",
             f"*Mode: {s['mode']}, device: {s['device']}.* Data: {s['data']}. Model: the built-in MLP with the "
             f"space of the MNIST study (max width {st['max_width']}, depth up to {st['max_depth']}), "
             f"{st['epochs']} epochs. Budget B = {st['budget']} evaluations per method and seed, "
             f"{st['seeds']} seeds; HSIC: {st['budget'] // 2} explored (Latin hypercube), selection at "
             f"q = {st['q']}, alpha = {st['alpha']}, at least {st['k_min']} kept; TPE in batches of {st['batch']}. "
             f"{s['trainings']} trainings in {s['training_wall_s']:.0f} s (wall {s['wall_s']:.0f} s).", "",
             "| method | best validation error | test error of the pick | parameters of the pick | FLOPs / example |",
             "|---|---|---|---|---|"]
    for m in METHODS:
        a = s["stats"][m]
        cell = lambda k, d=3: f"{_fmt(a[k]['median'], d)} [{_fmt(a[k]['q25'], d)}, {_fmt(a[k]['q75'], d)}]"  # noqa: E731
        lines.append(f"| {labels[m]} | {cell('best_val_error')} | {cell('test_error')} | "
                     f"{cell('param_count', 3)} | {cell('flops_per_example', 3)} |")
    lines += ["", "Median [quartiles] over seeds. Median best validation error after n evaluations:", "",
              "| method | " + " | ".join(f"n = {c}" for c in s["median_best_at"]["hsic"]) + " |",
              "|---|" + "---|" * len(s["median_best_at"]["hsic"])]
    for m in METHODS:
        lines.append(f"| {labels[m]} | " + " | ".join(_fmt(v) for v in s["median_best_at"][m].values()) + " |")
    lines += ["", "What the HSIC method kept (significant goal-oriented HSIC, or the strongest) and fixed:", "",
              "| seed | kept | fixed |", "|---|---|---|"]
    for sel in s["selections"]:
        fixed = ", ".join(f"`{n}`={_fmt(v) if isinstance(v, float) else v}" for n, v in sel["fixed"].items())
        lines.append(f"| {sel['seed']} | {', '.join(f'`{n}`' for n in sel['kept'])} | {fixed} |")
    lines += ["", "![HSIC-based optimization](hsic_hpo/hsic_hpo.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
