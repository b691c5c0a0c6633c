"""Benchmark: hsens_jax HSIC vs OpenTURNS on the same data, side by side in one process.

Data: n = 2000, d = 10 inputs uniform on [-pi, pi], Y = Ishigami(a=7, b=0.1) of the first three
inputs, seven inert inputs.  Gaussian kernels with bandwidth = std (ddof=1) on every input and on
the output (OpenTURNS: ``SquaredExponential`` with that scale).

Timed, for both: V-statistic indices + R2, V + R2 + asymptotic Gamma p-values (OpenTURNS from a
fresh estimator), permutation p-values (OpenTURNS with 50 permutations, ours with 1000; compared
per permutation), U-statistic indices + R2.  OpenTURNS and ours run interleaved in one process
(OT, ours x 5, OT, ours x 5, ...), best of the ``--repeats`` OpenTURNS runs and of the 5 x ``--repeats``
calls of ours, and the load average is recorded with each
row (the machine may be shared: compare ratios).  Ours: compilation (first call minus warm
call) and warm time, reported separately.  Also ours only: n = 2e4, d = 10, tiled.

First call of a fresh process (the task of issue 16: V + R2 + Gamma p-values, n = 2000,
d = 10, NumPy float64 inputs): child processes, alternating, ``--fresh`` times each:
ours with the persistent compilation cache off (truly cold), ours with a cache directory a
previous process filled (the persistent cache already holds the programs), and OpenTURNS'
first call in a fresh process.  The time is from just after the imports to the returned
result (JAX's backend start, tracing, lowering, cache loads and compilation included; with the
cache off, the native CPU kernel of hsens_jax.native is compiled too, about a second; this
process, which runs with the cache off, builds it before its timings, when it describes the
machine).

The Gamma and V-statistic tasks also run with ``HSENS_NATIVE=off`` (the pure-JAX programs),
interleaved with OpenTURNS the same way.

Usage::

    python benchmarks/bench_hsic.py [--quick] [--repeats 3] [--fresh 3] [--ot-perms 50] [--perms 1000]

Writes benchmarks/results/hsic_cpu.json and hsic_cpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# this process: no persistent cache, so that its first calls compile (the fresh-process rows
# measure the cache); the children set their own
os.environ.setdefault("HSENS_COMPILATION_CACHE", "off")

import jax  # noqa: E402

from hsens_jax.sensitivity.hsic import hsic  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import openturns as ot

        otv = ot.__version__
    except ImportError:  # pragma: no cover
        otv = None
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    from hsens_jax import native

    target = native.hsic_pass_target()
    return {
        "native_kernel": (f"used ({native._state['path'].name})" if target else
                          "unavailable: pure JAX"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "numpy": np.__version__,
        "openturns": otv,
        "load_average_at_start": load,
    }


def ishigami_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.pi, np.pi, size=(n, d))
    Y = np.sin(X[:, 0]) + 7.0 * np.sin(X[:, 1]) ** 2 + 0.1 * X[:, 2] ** 4 * np.sin(X[:, 0])
    return X, Y


def _block(res):
    jax.block_until_ready((res.hsic, res.r2, res.pvalue))
    return res


def time_ours(fn, repeats=3):
    """Returns (first_call_s, warm_s, result); compile = first - warm."""
    t0 = time.perf_counter()
    res = _block(fn())
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = _block(fn())
        warm.append(time.perf_counter() - t0)
    return first, min(warm), res


def time_pair(ot_fn, ours_fn, repeats=3):
    """OpenTURNS and ours interleaved (OT, ours x OURS_INNER, OT, ...), best of all runs of each.

    Returns (ot_best_s, ot_result, ours_first_call_s, ours_warm_best_s, ours_result, load):
    the first call of ours (compilation included) is made before the interleaved loop; the
    load average is recorded after the loop (the machine may be shared).
    """
    t0 = time.perf_counter()
    res = _block(ours_fn())
    first = time.perf_counter() - t0
    ot_t, ours_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ot_res = ot_fn()
        ot_t.append(time.perf_counter() - t0)
        for _ in range(OURS_INNER):  # ours is ~50x shorter: best of a few consecutive calls per slot
            t0 = time.perf_counter()
            res = _block(ours_fn())
            ours_t.append(time.perf_counter() - t0)
    return min(ot_t), ot_res, first, min(ours_t), res, os.getloadavg()


@contextlib.contextmanager
def pure_jax():
    """hsens_jax's pure-JAX programs instead of the native CPU kernel (hsens_jax.native)."""
    saved = os.environ.get("HSENS_NATIVE")
    os.environ["HSENS_NATIVE"] = "off"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["HSENS_NATIVE"]
        else:
            os.environ["HSENS_NATIVE"] = saved


OURS_INNER = 5
"""Consecutive calls of ours per interleaved slot (a single call right after a one-second
OpenTURNS run also pays for waking XLA's thread pool and refilling caches)."""


def child(which):
    """One fresh process: the first call of ``which`` ("ours" or "ot") on the gamma task."""
    X, Y = ishigami_data(2000, 10)
    if which == "ot":
        import openturns as ot

        t0 = time.perf_counter()
        theta = X.std(axis=0, ddof=1)
        cov = [ot.SquaredExponential([float(t)]) for t in theta] + [
            ot.SquaredExponential([float(Y.std(ddof=1))])]
        gv = ot.HSICEstimatorGlobalSensitivity(cov, ot.Sample(X), ot.Sample(Y[:, None]),
                                               ot.HSICVStat())
        np.array(gv.getHSICIndices())
        np.array(gv.getR2HSICIndices())
        np.array(gv.getPValuesAsymptotic())
        first = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        _block(hsic(X, Y, estimator="V", pvalue="gamma"))
        first = time.perf_counter() - t0
    print(json.dumps({"first_call_s": first}))


def fresh_rows(n_rounds):
    """Alternating fresh processes: ours cold, ours with a filled cache, OpenTURNS."""
    import subprocess
    import tempfile

    here = os.path.abspath(__file__)
    base = dict(os.environ, JAX_PLATFORMS="cpu")
    base.pop("JAX_COMPILATION_CACHE_DIR", None)

    def run(which, cache):
        env = dict(base, HSENS_COMPILATION_CACHE=cache)
        p = subprocess.run([sys.executable, here, "--child", which], capture_output=True,
                           text=True, env=env, timeout=600)
        if p.returncode:
            raise RuntimeError(p.stderr[-3000:])
        return json.loads(p.stdout.strip().splitlines()[-1])["first_call_s"]

    out = {"ours_cold": [], "ours_warm_cache": [], "openturns_first": [], "load": []}
    with tempfile.TemporaryDirectory() as cache:
        run("ours", cache)  # fills the cache
        for _ in range(n_rounds):
            out["ours_cold"].append(run("ours", "off"))
            out["ours_warm_cache"].append(run("ours", cache))
            out["openturns_first"].append(run("ot", "off"))
            out["load"].append(round(os.getloadavg()[0], 2))
            print(json.dumps({k: v[-1] for k, v in out.items()}), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=["ours", "ot"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--fresh", type=int, default=3,
                    help="rounds of fresh-process first calls (ours cold, ours with a filled "
                         "persistent cache, OpenTURNS)")
    ap.add_argument("--quick", action="store_true", help="skip the slow OpenTURNS U-statistic")
    ap.add_argument("--ot-perms", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (best of)")
    ap.add_argument("--perms", type=int, default=1000)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    import openturns as ot

    n, d = 2000, 10
    X, Y = ishigami_data(n, d)
    theta = X.std(axis=0, ddof=1)
    theta_y = Y.std(ddof=1)
    cov = [ot.SquaredExponential([float(t)]) for t in theta] + [ot.SquaredExponential([theta_y])]
    Xs, Ys = ot.Sample(X), ot.Sample(Y[:, None])
    rows = []
    out = {"machine": machine(), "n": n, "d": d, "rows": rows}

    def row(task, ot_s, ours_first, ours_warm, note="", ot_per=None, ours_per=None, load=None):
        r = {
            "task": task,
            "openturns_s": ot_s,
            "ours_first_call_s": ours_first,
            "ours_compile_s": None if ours_first is None else max(ours_first - ours_warm, 0.0),
            "ours_warm_s": ours_warm,
            "ratio_warm": None if ot_s is None else ot_s / ours_warm,
            "ratio_first_call": None if ot_s is None else ot_s / ours_first,
            "note": note,
            "load_average_after": None if load is None else [round(v, 2) for v in load],
        }
        if ot_per is not None:
            r.update(openturns_per_perm_s=ot_per, ours_per_perm_s=ours_per,
                     ratio_per_perm=ot_per / ours_per)
        rows.append(r)
        print(json.dumps(r), flush=True)

    # ---- V statistic + R2
    def ot_v():
        gv = ot.HSICEstimatorGlobalSensitivity(cov, Xs, Ys, ot.HSICVStat())
        return gv, np.array(gv.getHSICIndices()), np.array(gv.getR2HSICIndices())

    t_ot_v, (gv, ot_hv, ot_r2v), f, w, r, load = time_pair(
        ot_v, lambda: hsic(X, Y, estimator="V"), args.repeats)
    row("V-statistic HSIC + R2 (float32)", t_ot_v, f, w, load=load)
    with pure_jax():
        t_ot_v2, _, f, w, _, load = time_pair(ot_v, lambda: hsic(X, Y, estimator="V"), args.repeats)
    row("V-statistic HSIC + R2 (float32), pure JAX (HSENS_NATIVE=off)", t_ot_v2, f, w, load=load)
    with jax.enable_x64(True):
        f64, w64, r64 = time_ours(lambda: hsic(X, Y, estimator="V"))
    row("V-statistic HSIC + R2 (float64)", t_ot_v, f64, w64, load=os.getloadavg())
    out["agreement_V_float64_max_rel"] = float(np.max(np.abs(np.asarray(r64.hsic) / ot_hv - 1)))
    out["agreement_R2V_float64_max_rel"] = float(np.max(np.abs(np.asarray(r64.r2) / ot_r2v - 1)))
    out["float32_vs_float64_V_max_rel"] = float(
        np.max(np.abs(np.asarray(r.hsic, np.float64) / np.asarray(r64.hsic) - 1)))

    # ---- Gamma p-values (V): OpenTURNS from scratch (indices, R2 and p-values)
    def ot_g():
        gv = ot.HSICEstimatorGlobalSensitivity(cov, Xs, Ys, ot.HSICVStat())
        np.array(gv.getHSICIndices())
        np.array(gv.getR2HSICIndices())
        return np.array(gv.getPValuesAsymptotic())

    t_ot_g, ot_pg, f, w, r, load = time_pair(
        ot_g, lambda: hsic(X, Y, estimator="V", pvalue="gamma"), args.repeats)
    row("V + R2 + Gamma p-values (float32)", t_ot_g, f, w, load=load)
    with pure_jax():
        t_ot_g2, _, f2, w2, r2, load = time_pair(
            ot_g, lambda: hsic(X, Y, estimator="V", pvalue="gamma"), args.repeats)
    row("V + R2 + Gamma p-values (float32), pure JAX (HSENS_NATIVE=off)", t_ot_g2, f2, w2, load=load)
    out["native_vs_pure_jax_gamma_pvalue_max_abs"] = float(
        np.max(np.abs(np.asarray(r.pvalue, np.float64) - np.asarray(r2.pvalue, np.float64))))
    with jax.enable_x64(True):
        _, _, r64 = time_ours(lambda: hsic(X, Y, estimator="V", pvalue="gamma"), repeats=1)
    out["agreement_gamma_pvalue_float64_max_abs"] = float(
        np.max(np.abs(np.asarray(r64.pvalue) - ot_pg)))
    out["float32_vs_float64_gamma_pvalue_max_abs"] = float(
        np.max(np.abs(np.asarray(r.pvalue, np.float64) - np.asarray(r64.pvalue))))
    out["gamma_task"] = {"openturns_warm_best_s": t_ot_g, "ours_warm_best_s": w,
                         "ratio_warm": t_ot_g / w}
    if args.fresh:
        fr = fresh_rows(args.fresh)
        best = {k: min(v) for k, v in fr.items() if k != "load"}
        out["fresh_process"] = {
            "runs": fr, "best_s": best,
            "ratio_openturns_warm_over_ours_cold": t_ot_g / best["ours_cold"],
            "ratio_openturns_warm_over_ours_warm_cache": t_ot_g / best["ours_warm_cache"],
            "ratio_openturns_first_over_ours_cold": best["openturns_first"] / best["ours_cold"],
            "ratio_openturns_first_over_ours_warm_cache":
                best["openturns_first"] / best["ours_warm_cache"]}

    # ---- permutations (OpenTURNS: the p-value step of an estimator whose indices are known)
    gv.setPermutationSize(args.ot_perms)
    key = jax.random.key(0)

    def ot_p():
        gv.setPermutationSize(args.ot_perms)
        return np.array(gv.getPValuesPermutation())

    t_ot_p, ot_pp, f, w, r, load = time_pair(
        ot_p, lambda: hsic(X, Y, pvalue="permutation", n_permutations=args.perms, key=key),
        repeats=2)
    row(f"permutation p-values (OT {args.ot_perms}, ours {args.perms} perms, float32)", t_ot_p,
        f, w, ot_per=t_ot_p / args.ot_perms, ours_per=w / args.perms, load=load,
        note="ratios of total times are not comparable (different B); see ratio_per_perm")
    out["permutation_pvalues"] = {"openturns": ot_pp.tolist(), "ours": np.asarray(r.pvalue).tolist()}

    # ---- U statistic + R2
    f, w, r = time_ours(lambda: hsic(X, Y, estimator="U"))
    if args.quick:
        row("U-statistic HSIC + R2 (float32)", None, f, w, note="OpenTURNS skipped (--quick)")
    else:
        t0 = time.perf_counter()
        gu = ot.HSICEstimatorGlobalSensitivity(cov, Xs, Ys, ot.HSICUStat())
        ot_hu = np.array(gu.getHSICIndices())
        np.array(gu.getR2HSICIndices())
        t_ot_u = time.perf_counter() - t0
        row("U-statistic HSIC + R2 (float32)", t_ot_u, f, w, load=os.getloadavg())
        with jax.enable_x64(True):
            _, _, r64 = time_ours(lambda: hsic(X, Y, estimator="U"), repeats=1)
        out["agreement_U_float64_max_rel"] = float(np.max(np.abs(np.asarray(r64.hsic) / ot_hu - 1)))

    # ---- large n, tiled, ours only
    nb = 20000
    Xb, Yb = ishigami_data(nb, d, seed=1)
    f, w, r = time_ours(lambda: hsic(Xb, Yb, estimator="V", pvalue="gamma"), repeats=1)
    rows.append({"task": f"n={nb}, d={d}: V + R2 + Gamma p-values (float32), ours only",
                 "ours_first_call_s": f, "ours_compile_s": max(f - w, 0.0), "ours_warm_s": w,
                 "load_average_after": [round(v, 2) for v in os.getloadavg()],
                 "r2_first3": np.asarray(r.r2)[:3].tolist()})
    print(json.dumps(rows[-1]), flush=True)
    out["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "hsic_cpu.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    m = out["machine"]
    lines = [
        "# HSIC benchmark: hsens_jax vs OpenTURNS (CPU)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}, "
        f"jax {m['jax']} ({m['jax_backend']}), numpy {m['numpy']}, OpenTURNS {m['openturns']}. "
        f"Load average at start: {m['load_average_at_start']} (shared machine). "
        f"Native CPU kernel (hsens_jax.native): {m['native_kernel']}; the rows marked pure JAX "
        "run with it off.",
        "",
        f"Data: n = {n}, d = {d}, Ishigami (a=7, b=0.1) of the first 3 inputs, 7 inert inputs; "
        "Gaussian kernels, bandwidth = std (ddof=1). `python benchmarks/bench_hsic.py`.",
        "",
        "| task | OpenTURNS (s) | ours first call (s) | ours compile (s) | ours warm (s) | "
        "ratio warm | ratio incl. compile | per-perm OT (s) | per-perm ours (s) | ratio per perm | "
        "load avg after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v, p=4):
        return "" if v is None else (f"{v:.{p}g}" if isinstance(v, float) else str(v))

    for r in rows:
        lines.append("| " + " | ".join([
            r["task"], fmt(r.get("openturns_s")), fmt(r.get("ours_first_call_s")),
            fmt(r.get("ours_compile_s")), fmt(r.get("ours_warm_s")), fmt(r.get("ratio_warm"), 3),
            fmt(r.get("ratio_first_call"), 3), fmt(r.get("openturns_per_perm_s")),
            fmt(r.get("ours_per_perm_s")), fmt(r.get("ratio_per_perm"), 3),
            str(r.get("load_average_after") or "")]) + " |")
    if "fresh_process" in out:
        f = out["fresh_process"]
        b = f["best_s"]
        lines += ["", "First call of a fresh process, V + R2 + Gamma p-values (float32; best of "
                  f"{len(f['runs']['ours_cold'])} alternating rounds, load average "
                  f"{f['runs']['load']}):", "",
                  "| | seconds | OpenTURNS warm / this | OpenTURNS first call / this |",
                  "|---|---|---|---|",
                  f"| ours, persistent cache off (truly cold) | {b['ours_cold']:.3f} | "
                  f"{f['ratio_openturns_warm_over_ours_cold']:.1f} | "
                  f"{f['ratio_openturns_first_over_ours_cold']:.1f} |",
                  f"| ours, persistent cache holding the programs | {b['ours_warm_cache']:.3f} | "
                  f"{f['ratio_openturns_warm_over_ours_warm_cache']:.1f} | "
                  f"{f['ratio_openturns_first_over_ours_warm_cache']:.1f} |",
                  f"| OpenTURNS first call | {b['openturns_first']:.3f} | | |"]
    lines += ["", "Agreement (ours float64 vs OpenTURNS, same X and Y):", ""]
    for k in ("agreement_V_float64_max_rel", "agreement_R2V_float64_max_rel", "native_vs_pure_jax_gamma_pvalue_max_abs",
              "agreement_U_float64_max_rel", "agreement_gamma_pvalue_float64_max_abs",
              "float32_vs_float64_V_max_rel", "float32_vs_float64_gamma_pvalue_max_abs"):
        if k in out:
            lines.append(f"- {k}: {out[k]:.3g}")
    lines += ["", f"Permutation p-values: OpenTURNS {np.round(out['permutation_pvalues']['openturns'], 3).tolist()}, "
              f"ours {np.round(out['permutation_pvalues']['ours'], 3).tolist()}",
              "", f"Peak RSS of the whole run: {out['peak_rss_MB']:.0f} MB.", ""]
    with open(os.path.join(RESULTS, "hsic_cpu.md"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
