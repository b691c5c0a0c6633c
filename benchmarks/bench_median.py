"""Benchmark: the median-distance bandwidth (``median_bandwidth``) against NumPy.

Data: n x d standard normal inputs (d = 10), float64 (``jax_enable_x64``).  NumPy's
reference computes, per column, all ``n (n - 1) / 2`` distances (``scipy.spatial.distance.
pdist``) and their ``np.median``; ours (hsens_jax.sensitivity.kernels) selects the median
exactly without forming them.  The two alternate in this process (``--repeats`` rounds; best
of each) and must give identical values.  Optionally (``--old-source DIR``, e.g. a checkout of
the code before the change) the previous implementation, which sorted the distances with
JAX, is timed once at n = 2000 in a child process.

    python benchmarks/bench_median.py [--repeats 3] [--old-source DIR]

Writes benchmarks/results/median_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import scipy.spatial.distance  # noqa: E402

from hsens_jax.sensitivity.kernels import median_bandwidth  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
_OLD = """
import sys, time, numpy as np, jax
jax.config.update("jax_enable_x64", True)
from hsens_jax.sensitivity.kernels import median_bandwidth
X = np.random.default_rng(0).normal(size=(int(sys.argv[1]), 10))
t0 = time.perf_counter(); m = np.asarray(median_bandwidth(X)); print(time.perf_counter() - t0)
print(list(m))
"""


def numpy_median(X):
    return np.array([np.median(scipy.spatial.distance.pdist(X[:, [j]])) for j in range(X.shape[1])])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old-source", default=None)
    args = ap.parse_args()
    rows = []
    for n in (2000, 10_000):
        X = np.random.default_rng(0).normal(size=(n, 10))
        t_np, t_ours = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ref = numpy_median(X)
            t_np.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours = np.asarray(median_bandwidth(X))
            t_ours.append(time.perf_counter() - t0)
        row = {"n": n, "d": 10, "numpy_s": min(t_np), "ours_s": min(t_ours),
               "speedup": min(t_np) / min(t_ours), "identical": bool(np.array_equal(ref, ours)),
               "load_average": round(os.getloadavg()[0], 2)}
        if args.old_source and n == 2000:
            p = subprocess.run([sys.executable, "-c", _OLD, str(n)], capture_output=True, text=True,
                               cwd=args.old_source, env=dict(os.environ, PYTHONPATH=args.old_source, JAX_PLATFORMS="cpu",
                                        HSENS_COMPILATION_CACHE="off"), timeout=900)
            lines = p.stdout.strip().splitlines()
            row["previous_jax_sort_s"] = float(lines[0])
            row["previous_equal"] = bool(np.allclose(eval(lines[1].replace("np.float64", "")), ref,
                                                     rtol=0, atol=0))
        rows.append(row)
        print(json.dumps(row), flush=True)
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                       "numpy": np.__version__, "jax": jax.__version__}, "rows": rows}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "median_cpu.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    lines = ["# Median-distance bandwidth: hsens_jax vs NumPy (CPU)", "",
             f"{cpu}, {os.cpu_count()} cores, numpy {np.__version__}, jax {jax.__version__}; "
             "`python benchmarks/bench_median.py`. d = 10 standard normal columns, float64; NumPy: "
             "`np.median(pdist(x))` per column (all n (n - 1) / 2 distances); ours: exact selection "
             f"without forming them. Best of {args.repeats} alternating rounds.", "",
             "| n | NumPy (s) | ours (s) | speed-up | identical values | previous (JAX sort) (s) | load |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        prev = f"{r['previous_jax_sort_s']:.1f}" if "previous_jax_sort_s" in r else ""
        lines.append(f"| {r['n']} | {r['numpy_s']:.3f} | {r['ours_s']:.4f} | {r['speedup']:.0f}x | "
                     f"{r['identical']} | {prev} | {r['load_average']} |")
    with open(os.path.join(RESULTS, "median_cpu.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
