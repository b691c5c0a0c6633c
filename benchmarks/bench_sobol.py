"""Benchmark: hsens_jax Sobol' indices vs SALib on the same Saltelli design and outputs.

G-function, d = 10 (a = [0, 1, 4.5, 9, 99, 99, 99, 99, 99, 99]), n = 2^14 base rows,
first/total/second order, 1000 bootstrap resamples; SALib ``analyze(problem, Y,
calc_second_order=True, num_resamples=1000)`` (parallel=False, its default). Both sides get
the same bootstrap resample indices, so the numbers must agree to round-off (float64).

SALib and ours alternate in one process (SALib, then ours five times, ``--repeats`` times;
best of each), the load average is recorded.  First calls of fresh processes (children,
alternating, ``--fresh`` rounds): ours with the persistent compilation cache off (truly cold)
and with a cache directory a previous process filled, in float64 and float32; the time runs
from just after the imports (the outputs and resample indices already in memory) to the
returned result.

    python benchmarks/bench_sobol.py [--log2n 14] [--resamples 1000] [--repeats 2] [--fresh 3]

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
# this process: no persistent cache, so that its first calls compile (the fresh-process rows
# measure the cache); the children set their own
os.environ.setdefault("HSENS_COMPILATION_CACHE", "off")
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


def problem_data(log2n, R):
    n, d = 2 ** log2n, 10
    a = np.array([0, 1, 4.5, 9, 99, 99, 99, 99, 99, 99], dtype=float)
    bounds = np.array([[0.0, 1.0]] * d)
    X = sobol_design(bounds, n, second_order=True, seed=1)
    with jax.enable_x64(True):
        Y = np.asarray(g_function(jax.numpy.asarray(X), a))
    r = np.random.default_rng(12345).integers(n, size=(n, R))  # what SALib draws with seed=12345
    return n, d, a, bounds, Y, r


def child(precision, log2n, R):
    """One fresh process: the first call of sobol_indices, as the benchmark times it."""
    n, d, a, bounds, Y, r = problem_data(log2n, R)
    with jax.enable_x64(precision == "float64"):
        t0 = time.perf_counter()
        sobol_indices(Y, d, second_order=True, n_bootstrap=R, resample_indices=r.T)
        first = time.perf_counter() - t0
    print(json.dumps({"first_call_s": first}))


def fresh_rows(n_rounds, log2n, R):
    import subprocess
    import tempfile

    here = os.path.abspath(__file__)
    base = dict(os.environ, JAX_PLATFORMS="cpu")
    base.pop("JAX_COMPILATION_CACHE_DIR", None)

    def run(precision, cache):
        p = subprocess.run([sys.executable, here, "--child", precision, "--log2n", str(log2n),
                            "--resamples", str(R)], capture_output=True, text=True,
                           env=dict(base, HSENS_COMPILATION_CACHE=cache), timeout=600)
        if p.returncode:
            raise RuntimeError(p.stderr[-3000:])
        return json.loads(p.stdout.strip().splitlines()[-1])["first_call_s"]

    out = {f"{pr}_{mode}": [] for pr in ("float64", "float32") for mode in ("cold", "warm_cache")}
    out["load"] = []
    with tempfile.TemporaryDirectory() as cache:
        run("float64", cache)
        run("float32", cache)  # the cache now holds both programs
        for _ in range(n_rounds):
            for pr in ("float64", "float32"):
                out[f"{pr}_cold"].append(run(pr, "off"))
                out[f"{pr}_warm_cache"].append(run(pr, cache))
            out["load"].append(round(os.getloadavg()[0], 2))
            print(json.dumps({k: v[-1] for k, v in out.items()}), flush=True)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log2n", type=int, default=14)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2, help="SALib runs, alternating with ours")
    p.add_argument("--fresh", type=int, default=3, help="rounds of fresh-process first calls")
    p.add_argument("--child", choices=["float64", "float32"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.log2n, args.resamples)
        return
    from SALib.analyze import sobol as salib_sobol

    R = args.resamples
    n, d, a, bounds, Y, r = problem_data(args.log2n, R)
    problem = {"num_vars": d, "names": [f"x{i + 1}" for i in range(d)], "bounds": bounds.tolist()}
    seed = 12345

    load_before = os.getloadavg()
    kw = dict(second_order=True, n_bootstrap=R, resample_indices=r.T)
    firsts = {}
    for label, x64 in (("float64", True), ("float32", False)):  # first calls of this process
        with jax.enable_x64(x64):
            t0 = time.perf_counter()
            sobol_indices(Y, d, **kw)
            firsts[label] = time.perf_counter() - t0
    salib_t, warm = [], {"float64": [], "float32": []}
    for _ in range(args.repeats):  # alternating: SALib, then ours five times per precision
        t0 = time.perf_counter()
        S = salib_sobol.analyze(problem, Y, calc_second_order=True, num_resamples=R, seed=seed)
        salib_t.append(time.perf_counter() - t0)
        print(f"SALib analyze: {salib_t[-1]:.2f} s", flush=True)
        for label, x64 in (("float64", True), ("float32", False)):
            with jax.enable_x64(x64):
                for _ in range(5):
                    t0 = time.perf_counter()
                    sobol_indices(Y, d, **kw)
                    warm[label].append(time.perf_counter() - t0)
    t_salib = min(salib_t)

    rows = {}
    for label, x64 in (("float64", True), ("float32", False)):
        with jax.enable_x64(x64):
            res = sobol_indices(Y, d, **kw)
            t_first = firsts[label]
            t_warm = float(np.min(warm[label]))
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
    fresh = fresh_rows(args.fresh, args.log2n, R) if args.fresh else None
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
        "salib_runs_s": salib_t,
        "hsens_jax": rows,
        "fresh_process": None if fresh is None else {
            "runs": fresh, "best_s": {k: min(v) for k, v in fresh.items() if k != "load"},
            "speedup": {k: t_salib / min(v) for k, v in fresh.items() if k != "load"}},
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
              f"resample indices; best of {len(salib_t)} SALib runs {[round(v, 1) for v in salib_t]}, "
              "each followed by five calls of ours per precision); compile = first call - warm "
              "(the first calls of this process, made before SALib ran).", ""]
    if fresh is not None:
        fb = meta["fresh_process"]["best_s"]
        lines += [f"First call of a fresh process (best of {len(fresh['load'])} alternating rounds, "
                  f"load average {fresh['load']}):", "",
                  "| precision | persistent cache | first call (s) | speed-up vs SALib |", "|---|---|---|---|"]
        for pr in ("float64", "float32"):
            for mode, txt in (("cold", "off (truly cold)"), ("warm_cache", "holding the program")):
                v = fb[f"{pr}_{mode}"]
                lines.append(f"| {pr} | {txt} | {v:.3f} | {t_salib / v:.1f}x |")
        lines.append("")
    lines += [
              f"Error of the estimates vs analytic values: max |S1 - S1*| = {err['S1']:.4f}, "
              f"max |ST - ST*| = {err['ST']:.4f}.", ""]
    with open(os.path.join(here, "sobol_cpu.md"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
