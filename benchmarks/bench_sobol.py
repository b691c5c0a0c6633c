"""Benchmark: hsens_jax Sobol' indices vs SALib on the same Saltelli design and outputs.

G-function, d = 10 (a = [0, 1, 4.5, 9, 99, 99, 99, 99, 99, 99]), n = 2^14 base rows,
first/total/second order, 1000 bootstrap resamples; SALib ``analyze(problem, Y,
calc_second_order=True, num_resamples=1000)`` (parallel=False, its default). Both sides get
the same bootstrap resample indices, so the numbers must agree to round-off (float64).

    python benchmarks/bench_sobol.py [--log2n 14] [--resamples 1000]

Writes benchmarks/results/sobol_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from importlib.metadata import version  # noqa: E402

from hsens_jax.sensitivity.sobol import sobol_design, sobol_indices  # noqa: E402
from hsens_jax.sensitivity.test_functions import g_function, g_function_indices  # noqa: E402


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log2n", type=int, default=14)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from SALib.analyze import sobol as salib_sobol

    n, R, d = 2 ** args.log2n, args.resamples, 10
    a = np.array([0, 1, 4.5, 9, 99, 99, 99, 99, 99, 99], dtype=float)
    bounds = np.array([[0.0, 1.0]] * d)
    problem = {"num_vars": d, "names": [f"x{i + 1}" for i in range(d)], "bounds": bounds.tolist()}
    X = sobol_design(bounds, n, second_order=True, seed=1)
    with jax.enable_x64(True):
        Y = np.asarray(g_function(jax.numpy.asarray(X), a))
    seed = 12345
    r = np.random.default_rng(seed).integers(n, size=(n, R))  # what SALib draws with seed=12345

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    S = salib_sobol.analyze(problem, Y, calc_second_order=True, num_resamples=R, seed=seed)
    t_salib = time.perf_counter() - t0
    print(f"SALib analyze: {t_salib:.2f} s")

    rows = {}
    for label, x64 in (("float64", True), ("float32", False)):
        with jax.enable_x64(x64):
            kw = dict(second_order=True, n_bootstrap=R, resample_indices=r.T)
            t0 = time.perf_counter()
            res = sobol_indices(Y, d, **kw)
            t_first = time.perf_counter() - t0
            warm = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = sobol_indices(Y, d, **kw)
                warm.append(time.perf_counter() - t0)
            t_warm = float(np.median(warm))
            sobol_indices(Y, d, second_order=True, n_bootstrap=R, seed=0)  # compile the own-draws path
            t0 = time.perf_counter()
            sobol_indices(Y, d, second_order=True, n_bootstrap=R, seed=1)  # own jax.random draws
            t_own = time.perf_counter() - t0
        diffs = {k: float(np.nanmax(np.abs(np.asarray(S[k]) - getattr(res, k))))
                 for k in ("S1", "ST", "S2", "S1_conf", "ST_conf", "S2_conf")}
        rows[label] = dict(first_call_s=t_first, compile_s=t_first - t_warm, warm_s=t_warm,
                           warm_own_resamples_s=t_own, speedup_warm=t_salib / t_warm,
                           speedup_first_call=t_salib / t_first, max_abs_diff_vs_salib=diffs)
        print(f"hsens_jax {label}: first call {t_first:.3f} s, warm {t_warm:.3f} s "
              f"-> {t_salib / t_warm:.1f}x (first call {t_salib / t_first:.1f}x); "
              f"max |diff| vs SALib {max(diffs.values()):.2e}")

    load_after = os.getloadavg()
    exact = g_function_indices(a)
    err = {"S1": float(np.max(np.abs(S["S1"] - exact["S1"]))), "ST": float(np.max(np.abs(S["ST"] - exact["ST"])))}
    meta = {
        "machine": {"cpu_model": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_1_5_15_before": list(load_before), "load_average_1_5_15_after": list(load_after)},
        "versions": {"jax": jax.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "SALib": version("SALib")},
        "problem": {"function": "G-function", "a": a.tolist(), "d": d, "n_base": n,
                    "n_evals": int(Y.size), "second_order": True, "n_bootstrap": R},
        "salib_s": t_salib,
        "hsens_jax": rows,
        "error_vs_analytic": err,
    }
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(here, exist_ok=True)
    with open(os.path.join(here, "sobol_cpu.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    lines = [
        "# Sobol' indices: hsens_jax vs SALib (CPU)",
        "",
        f"Machine: {meta['machine']['cpu_model']}, {meta['machine']['cores']} cores; "
        f"jax {jax.__version__}, numpy {np.__version__}, SALib {version('SALib')}, scipy {scipy.__version__}. "
        f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after (other processes "
        "share the cores when it exceeds the core count; both sides are affected alike).",
        "",
        f"G-function, d = {d}, n = 2^{args.log2n} base rows ({Y.size} evaluations, second order), "
        f"{R} bootstrap resamples, same resample indices on both sides.",
        "",
        "| implementation | first call (s) | compile (s) | warm (s) | warm, own jax.random resamples (s) "
        "| speed-up (warm) | speed-up (first call) | max abs diff vs SALib |",
        "|---|---|---|---|---|---|---|---|",
        f"| SALib 1.6 analyze (parallel=False) | {t_salib:.2f} | - | {t_salib:.2f} | - | 1.0x | 1.0x | 0 |",
    ]
    for label, row in rows.items():
        lines.append(f"| hsens_jax {label} | {row['first_call_s']:.3f} | {row['compile_s']:.3f} | "
                     f"{row['warm_s']:.3f} | {row['warm_own_resamples_s']:.3f} | "
                     f"{row['speedup_warm']:.1f}x | {row['speedup_first_call']:.1f}x | "
                     f"{max(row['max_abs_diff_vs_salib'].values()):.1e} |")
    lines += ["", "Speed-up = SALib time / hsens_jax time (same process, same design, outputs and "
              "resample indices); compile = first call - warm.", "",
              f"Error of the estimates vs analytic values: max |S1 - S1*| = {err['S1']:.4f}, "
              f"max |ST - ST*| = {err['ST']:.4f}.", ""]
    with open(os.path.join(here, "sobol_cpu.md"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
