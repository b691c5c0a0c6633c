"""hyperopt's TPE against hsens_jax.optimize (Optuna's TPE, batches trained in one vectorized
call) on the classic hyperopt example, 5 seeds each, side by side in one process per seed.

The example: MLPClassifier(max_iter=300, random_state=42) on make_classification(n_samples=1000,
random_state=42), the objective the mean 3-fold cross-validated accuracy, the space
hidden_layer_sizes in {(50,), (100,), (50, 50), (100, 50)}, activation in {relu, tanh}, solver in
{adam, sgd}, learning_rate_init log-uniform on [1e-4, 1e-1], alpha log-uniform on [1e-5, 1e-1],
batch_size in {32, 64, 128, 256}; ``fmin(objective, space, algo=tpe.suggest, max_evals=20)``.

hsens_jax searches the same space in the engine's names (``solver`` -> ``optimizer`` adam or
nesterov with momentum 0.9, ``learning_rate_init`` -> ``learning_rate``), except that the L2
penalty is the engine's ``weight_decay`` (scikit-learn's ``alpha / batch_size``), searched
log-uniform on [1e-5, 1e-1] / 128 (alpha over the middle batch size) instead of ``alpha`` itself;
the same folds (StratifiedKFold(3) over the data in order), 300 epochs, scikit-learn's stopping
rule (tol=1e-4 on the training loss, n_iter_no_change=10: MLPClassifier's defaults); batches of
10 trials (the first 10 are TPE's random start-up trials in both libraries: hyperopt's
tpe.suggest draws its first 20 at random).

Per seed, one worker process: hyperopt's fmin (max_evals=20), hsens_jax.optimize (n_trials=20),
then hsens_jax.optimize again with hyperopt's wall time as its budget (batches until the time is
spent), the order of the first two alternating between seeds. JAX's persistent compilation
cache (a directory of the benchmark's own, given to JAX before hsens_jax starts, which then uses
it as is) is empty for the first seed's worker (a fresh process compiles everything) and warm for the others.

Usage: python benchmarks/bench_search_hyperopt.py [--seeds 5] [--max-iter 300] [--tag cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_search_sklearn import _load, start_worker  # noqa: E402

SIZES = [(50,), (100,), (50, 50), (100, 50)]
BATCHES = [32, 64, 128, 256]


class _OutOfTime(Exception):
    pass


def run_hyperopt(X, y, seed: int, max_iter: int, max_evals: int = 20):
    import numpy as np
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe
    from sklearn.model_selection import cross_val_score
    from sklearn.neural_network import MLPClassifier

    space = {
        "hidden_layer_sizes": hp.choice("hidden_layer_sizes", SIZES),
        "activation": hp.choice("activation", ["relu", "tanh"]),
        "solver": hp.choice("solver", ["adam", "sgd"]),
        "learning_rate_init": hp.loguniform("learning_rate_init", np.log(1e-4), np.log(1e-1)),
        "alpha": hp.loguniform("alpha", np.log(1e-5), np.log(1e-1)),
        "batch_size": hp.choice("batch_size", BATCHES),
    }

    def objective(params):
        clf = MLPClassifier(max_iter=max_iter, random_state=42, **params)
        score = cross_val_score(clf, X, y, cv=3, scoring="accuracy").mean()
        return {"loss": -score, "status": STATUS_OK}

    trials = Trials()
    t0 = time.perf_counter()
    fmin(objective, space, algo=tpe.suggest, max_evals=max_evals, trials=trials, rstate=np.random.default_rng(seed),
         show_progressbar=False)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "best_score": -min(trials.losses()), "evaluations": len(trials.trials)}


def run_hsens(X, y, seed: int, max_iter: int, n_trials: int, time_budget: float | None = None):
    import hsens_jax as hs
    from hsens_jax.engine.train import Patience
    from hsens_jax.search.compilations import compilations

    data = hs.Dataset.from_arrays(X[:-1], y[:-1], x_val=X[-1:], y_val=y[-1:])  # the pool is X, in order
    space = hs.Space([
        hs.Categorical("hidden_layer_sizes", [",".join(map(str, s)) for s in SIZES]),
        hs.Categorical("activation", ["relu", "tanh"]),
        hs.Categorical("optimizer", ["adam", "nesterov"]),
        hs.Float("learning_rate", 1e-4, 1e-1, log=True),
        hs.Float("weight_decay", 1e-5 / 128, 1e-1 / 128, log=True),
        hs.Categorical("batch_size", BATCHES),
    ])
    fixed = {"epochs": max_iter, "momentum": 0.9, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    t0 = time.perf_counter()
    c0 = compilations()

    def stop_when_spent(res, record):
        if time_budget is not None and time.perf_counter() - t0 >= time_budget:
            raise _OutOfTime

    import warnings

    from hsens_jax.engine.hyperparameters import HyperparameterWarning

    warnings.simplefilter("ignore", HyperparameterWarning)  # momentum is read by nesterov only
    from hsens_jax.search.optuna import optimize

    import optuna

    storage = optuna.storages.InMemoryStorage()
    try:
        res = optimize(data, space, n_trials=n_trials, batch_size=10, sampler="tpe", seed=seed,
                       objective="final_val_accuracy", fixed=fixed, seeds=(42,), cv=3, n_evals=1,
                       patience=Patience(10, 1e-4), storage=storage, progress=False, callback=stop_when_spent)
        study = res.study
    except _OutOfTime:
        study = optuna.load_study(study_name="hsens", storage=storage)
    wall = time.perf_counter() - t0
    c1 = compilations()
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "FAIL")]
    return {"wall_s": wall, "best_score": float(study.best_value), "evaluations": len(done),
            "compilations": c1[0] - c0[0], "compile_s": c1[1] - c0[1]}


def worker(cache: str, seed: int, order: list[str], max_iter: int) -> dict:
    X, y, out = start_worker(cache)
    for tool in order:
        out[tool] = run_hyperopt(X, y, seed, max_iter) if tool == "hyperopt" else run_hsens(X, y, seed, max_iter, 20)
    out["hsens_jax_at_hyperopt_time"] = run_hsens(X, y, seed, max_iter, 10_000, time_budget=out["hyperopt"]["wall_s"])
    out["load_after"] = _load()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--tag", default=None)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--order", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.cache, args.seed, args.order.split(","), args.max_iter)), flush=True)
        return
    cache = Path(tempfile.mkdtemp(prefix="hsens-bench-cache-"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    runs = []
    for seed in range(args.seeds):
        order = ["hyperopt", "hsens_jax"] if seed % 2 == 0 else ["hsens_jax", "hyperopt"]
        cmd = [sys.executable, __file__, "--worker", "--cache", str(cache), "--seed", str(seed), "--order",
               ",".join(order), "--max-iter", str(args.max_iter)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
        rec = json.loads(line[0][len("RESULT "):]) | {"seed": seed, "order": order,
                                                     "cache": "empty" if seed == 0 else "warm"}
        runs.append(rec)
        h, o, t = rec["hsens_jax"], rec["hyperopt"], rec["hsens_jax_at_hyperopt_time"]
        print(f"seed {seed} ({rec['cache']} cache): hyperopt {o['wall_s']:.1f} s best {o['best_score']:.4f}; "
              f"hsens_jax 20 trials {h['wall_s']:.1f} s best {h['best_score']:.4f} ({h['compilations']} compilations, "
              f"{h['compile_s']:.1f} s): {o['wall_s'] / h['wall_s']:.2f}x; in hyperopt's time {t['evaluations']} "
              f"trials, best {t['best_score']:.4f}; load {rec['load_before']} -> {rec['load_after']}", flush=True)
        write(runs, args)
    shutil.rmtree(cache, ignore_errors=True)
    out = write(runs, args)
    print(f"wrote the search_hyperopt results under {out}")


def write(runs, args):
    """The results so far (rewritten after every seed: a stopped benchmark keeps its finished seeds)."""
    ratios = [r["hyperopt"]["wall_s"] / r["hsens_jax"]["wall_s"] for r in runs]
    mean = lambda key, tool: statistics.mean(r[tool][key] for r in runs)  # noqa: E731
    summary = {"ratios": ratios, "median_ratio": statistics.median(ratios),
               "mean_best_hyperopt": mean("best_score", "hyperopt"), "mean_best_hsens_jax": mean("best_score", "hsens_jax"),
               "mean_evaluations_at_hyperopt_time": mean("evaluations", "hsens_jax_at_hyperopt_time"),
               "mean_best_at_hyperopt_time": mean("best_score", "hsens_jax_at_hyperopt_time")}
    tag = args.tag or ("cpu" if runs[0]["machine"]["device_kind"].lower().startswith("cpu") else "gpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"search_hyperopt_{tag}.json").write_text(json.dumps({"max_iter": args.max_iter, "runs": runs,
                                                                  "summary": summary}, indent=2))
    m = runs[0]["machine"]
    lines = [f"# hyperopt TPE vs hsens_jax.optimize (Optuna TPE, batches of 10), the classic example ({tag})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['n_devices']} JAX device(s); JAX {m['jax']}. Shared "
             f"machine: load averages before and after each worker in the table.", "",
             "| seed | cache | hyperopt 20 evals (s) | best | hsens_jax 20 trials (s) | best | compilations (s) | "
             "ratio | trials in hyperopt's time | best then | load before -> after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        h, o, t = r["hsens_jax"], r["hyperopt"], r["hsens_jax_at_hyperopt_time"]
        lines.append(f"| {r['seed']} | {r['cache']} | {o['wall_s']:.1f} | {o['best_score']:.4f} | {h['wall_s']:.1f} | "
                     f"{h['best_score']:.4f} | {h['compilations']} ({h['compile_s']:.1f}) | "
                     f"{o['wall_s'] / h['wall_s']:.2f}x | {t['evaluations']} | {t['best_score']:.4f} | "
                     f"{r['load_before']} -> {r['load_after']} |")
    lines += ["", f"- Seeds finished: {len(runs)} of the {args.seeds} asked (max_iter={args.max_iter}).",
              f"- Same 20 evaluations: median ratio **{summary['median_ratio']:.2f}x**; mean best CV accuracy "
                  f"hyperopt {summary['mean_best_hyperopt']:.4f}, hsens_jax {summary['mean_best_hsens_jax']:.4f} "
                  f"({summary['mean_best_hsens_jax'] - summary['mean_best_hyperopt']:+.4f}).",
              f"- In hyperopt's wall time: hsens_jax completes {summary['mean_evaluations_at_hyperopt_time']:.0f} "
              f"trials on average, mean best {summary['mean_best_at_hyperopt_time']:.4f}."]
    (out / f"search_hyperopt_{tag}.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    main()
