"""scikit-learn's GridSearchCV(n_jobs=-1) against hsens_jax.search.sklearn.GridSearchCV on the
grid of the classic example, side by side in one process.

The grid: hidden_layer_sizes in {(50,), (100,), (50, 50), (100, 50)}, activation in {relu, tanh},
solver in {adam, sgd}, learning_rate_init in {1e-3, 1e-2, 1e-1}; MLPClassifier(max_iter=300,
random_state=42) on make_classification(n_samples=1000, random_state=42), cv=3: 48 candidates x 3
folds, then the refit of the best on all the data (GridSearchCV's default, in both timings). The
code is the example's, with only the import line of GridSearchCV changed; the inputs are the
NumPy arrays it makes. Both sides stop each fit with scikit-learn's rule (tol=1e-4 on the training
loss, n_iter_no_change=10: MLPClassifier's defaults); hsens_jax maps every parameter as its module
docstring states (initialization, binary output layer and the incomplete last batch differ).

Each measurement is one worker process that imports everything, splits the CPU into one JAX
device per core (``hsens_jax.use_cpu_cores()``), then fits both searches one after the other
(the order alternates between workers) and reports each ``fit`` call's wall time. Two states of
JAX's persistent compilation cache: "empty" (a new cache directory: every program compiles, the
first call of a fresh process) and "warm" (the directory the previous worker filled: a fresh
process that compiles nothing). The cache is JAX's persistent cache in a directory of the
benchmark's own (``jax_compilation_cache_dir``, every program cached), given to JAX before
hsens_jax starts, which then uses it as is. Rounds alternate empty and warm workers.

Usage: python benchmarks/bench_search_sklearn.py [--rounds 3] [--max-iter 300] [--tag cpu] [--out DIR]
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
from machine import describe  # noqa: E402

GRID = {
    "hidden_layer_sizes": [(50,), (100,), (50, 50), (100, 50)],
    "activation": ["relu", "tanh"],
    "solver": ["adam", "sgd"],
    "learning_rate_init": [0.001, 0.01, 0.1],
}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine() -> dict:
    """:func:`machine.describe` plus the JAX devices the search runs on."""
    import jax

    out = describe("jax", "sklearn")
    out.update(device_kind=jax.devices()[0].device_kind, n_devices=len(jax.devices()))
    return out


def start_worker(cache: str) -> tuple:
    """A worker process's set-up, shared with ``bench_search_hyperopt.py``: hsens_jax's own cache
    settings in the benchmark's directory (as a user gets them), one JAX device per core, the
    example's data. Returns ``(X, y, record)``, the record holding import time, machine and load."""
    t_start = time.perf_counter()
    import warnings

    import hsens_jax as hs

    hs.enable_compilation_cache(cache)
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning

    hs.use_cpu_cores()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X, y = make_classification(n_samples=1000, random_state=42)
    return X, y, {"import_s": time.perf_counter() - t_start, "machine": machine(), "load_before": _load()}


def worker(cache: str, order: list[str], max_iter: int) -> dict:
    X, y, out = start_worker(cache)
    from sklearn.model_selection import GridSearchCV as SkGridSearchCV
    from sklearn.neural_network import MLPClassifier

    from hsens_jax.search.compilations import compilations
    from hsens_jax.search.sklearn import GridSearchCV

    for tool in order:
        cls = GridSearchCV if tool == "hsens_jax" else SkGridSearchCV
        grid = cls(MLPClassifier(max_iter=max_iter, random_state=42), GRID, cv=3, n_jobs=-1)
        c0 = compilations()
        t0 = time.perf_counter()
        grid.fit(X, y)
        wall = time.perf_counter() - t0
        c1 = compilations()
        rec = {"fit_s": wall, "best_score": float(grid.best_score_), "best_params": str(grid.best_params_),
               "refit_s": float(grid.refit_time_), "train_accuracy_of_best": float(grid.score(X, y))}
        if tool == "hsens_jax":
            rec.update(compilations=c1[0] - c0[0], compile_s=c1[1] - c0[1], search_s=grid._search_time,
                       best_n_iter=grid.best_estimator_.n_iter_)
        out[tool] = rec
    out["load_after"] = _load()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--tag", default=None, help="result file suffix (default: the JAX platform)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--order", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.cache, args.order.split(","), args.max_iter)), flush=True)
        return
    cache = Path(tempfile.mkdtemp(prefix="hsens-bench-cache-"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    runs = []
    for r in range(args.rounds):
        for state in ("empty", "warm"):
            if state == "empty":
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir()
            order = ["hsens_jax", "sklearn"] if (r + (state == "warm")) % 2 == 0 else ["sklearn", "hsens_jax"]
            cmd = [sys.executable, __file__, "--worker", "--cache", str(cache), "--order", ",".join(order),
                   "--max-iter", str(args.max_iter)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
            rec = json.loads(line[0][len("RESULT "):]) | {"round": r, "cache": state, "order": order,
                                                         "process_s": time.perf_counter() - t0}
            runs.append(rec)
            h, s = rec["hsens_jax"], rec["sklearn"]
            print(f"round {r} cache {state:5s} order {'/'.join(order)}: hsens_jax {h['fit_s']:.1f} s "
                  f"({h['compilations']} compilations, {h['compile_s']:.1f} s; score {h['best_score']:.4f}), "
                  f"sklearn {s['fit_s']:.1f} s (score {s['best_score']:.4f}): {s['fit_s'] / h['fit_s']:.2f}x; "
                  f"load {rec['load_before']} -> {rec['load_after']}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    summary = {}
    for state in ("empty", "warm"):
        sel = [x for x in runs if x["cache"] == state]
        ratios = [x["sklearn"]["fit_s"] / x["hsens_jax"]["fit_s"] for x in sel]
        summary[state] = {
            "hsens_jax_fit_s": [x["hsens_jax"]["fit_s"] for x in sel], "sklearn_fit_s": [x["sklearn"]["fit_s"] for x in sel],
            "ratios": ratios, "median_ratio": statistics.median(ratios),
            "hsens_jax_best_score": sel[0]["hsens_jax"]["best_score"], "sklearn_best_score": sel[0]["sklearn"]["best_score"],
            "hsens_jax_best_params": sel[0]["hsens_jax"]["best_params"], "sklearn_best_params": sel[0]["sklearn"]["best_params"],
            "compilations": [x["hsens_jax"]["compilations"] for x in sel],
            "compile_s": [x["hsens_jax"]["compile_s"] for x in sel],
            "loads": [x["load_before"] + x["load_after"] for x in sel],
        }
    tag = args.tag or ("cpu" if runs[0]["machine"]["device_kind"].lower().startswith("cpu") else "gpu")
    result = {"benchmark": "classic GridSearchCV grid, 48 candidates x 3 folds + refit", "max_iter": args.max_iter,
              "machine": runs[0]["machine"], "runs": runs, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"search_sklearn_{tag}.json").write_text(json.dumps(result, indent=2))
    m = runs[0]["machine"]
    lines = [f"# GridSearchCV grid: hsens_jax.search.sklearn vs scikit-learn ({tag})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['n_devices']} JAX device(s) ({m['device_kind']}); "
             f"JAX {m['jax']}, scikit-learn {m['sklearn']}. Shared machine: the load averages (1, 5, 15 min) before "
             f"and after each worker are in the table.", "",
             f"The classic example's grid (48 candidates x 3 folds, max_iter={args.max_iter}, then the refit), "
             f"`fit` wall time of each search in the same worker process, order alternating; both stop each fit "
             f"by scikit-learn's rule (tol=1e-4 on the training loss, n_iter_no_change=10).", "",
             "| round | cache | hsens_jax fit (s) | compilations (s) | sklearn fit (s) | ratio | load before -> after |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for x in runs:
        h, s = x["hsens_jax"], x["sklearn"]
        lines.append(f"| {x['round']} | {x['cache']} | {h['fit_s']:.1f} | {h['compilations']} ({h['compile_s']:.1f}) | "
                     f"{s['fit_s']:.1f} | {s['fit_s'] / h['fit_s']:.2f}x | {x['load_before']} -> {x['load_after']} |")
    lines += [""]
    for state, label in (("empty", "fresh process, empty compilation cache"), ("warm", "fresh process, warm cache")):
        sm = summary[state]
        lines.append(f"- {label}: median ratio **{sm['median_ratio']:.2f}x** (ratios "
                     f"{', '.join(f'{v:.2f}' for v in sm['ratios'])}).")
    sm = summary["empty"]
    lines += [f"- Best CV accuracy: hsens_jax {sm['hsens_jax_best_score']:.4f} ({sm['hsens_jax_best_params']}), "
              f"scikit-learn {sm['sklearn_best_score']:.4f} ({sm['sklearn_best_params']}); difference "
              f"{sm['hsens_jax_best_score'] - sm['sklearn_best_score']:+.4f}."]
    (out / f"search_sklearn_{tag}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'search_sklearn_{tag}.json'} and .md")


if __name__ == "__main__":
    main()
