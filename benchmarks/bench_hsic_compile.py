"""Where the first call of ``hsic`` goes: tracing, lowering, XLA compilation, cache loads.

Each measurement is one fresh Python process (``-m`` of this file with ``--child``) that
imports hsens_jax from ``--source`` (a checkout: this one by default, e.g. ``/work/main``
for the code before a change) and calls ``hsic(X, Y, pvalue="gamma")`` on NumPy float64
inputs, n = 2000, d = 10 (the Ishigami data of ``bench_hsic.py``), then the same call warm.
JAX's monitoring events give, per jitted function, the time spent tracing
(``jaxpr_trace_duration``), lowering to StableHLO (``jaxpr_to_mlir_module_duration``) and in
XLA's compiler or loading from the persistent cache (``backend_compile_duration``).  Modes:

* ``cold``: persistent compilation cache off (``HSENS_COMPILATION_CACHE=off`` and no JAX
  cache directory): the truly cold first call;
* ``warm-cache``: the cache directory filled by a previous process: a new process whose
  persistent cache already holds the programs.

    python benchmarks/bench_hsic_compile.py [--source DIR] [--repeats 3] [--label NAME]

Appends to benchmarks/results/hsic_compile_cpu.json and rewrites hsic_compile_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def child(pvalue):
    t_start = time.perf_counter()
    import collections

    import numpy as np
    from jax import monitoring

    per = collections.defaultdict(lambda: collections.defaultdict(float))
    counts = collections.Counter()

    def on_duration(event, duration, **kw):
        name = kw.get("fun_name", "?")
        per[event.rsplit("/", 1)[-1]][name] += duration

    def on_event(event, **kw):
        counts[event.rsplit("/", 1)[-1]] += 1

    monitoring.register_event_duration_secs_listener(on_duration)
    monitoring.register_event_listener(on_event)
    from hsens_jax.sensitivity.hsic import hsic
    import jax

    t_import = time.perf_counter() - t_start
    rng = np.random.default_rng(0)
    X = rng.uniform(-np.pi, np.pi, size=(2000, 10))
    Y = np.sin(X[:, 0]) + 7.0 * np.sin(X[:, 1]) ** 2 + 0.1 * X[:, 2] ** 4 * np.sin(X[:, 0])
    t0 = time.perf_counter()
    c0 = time.process_time()
    r = hsic(X, Y, pvalue=pvalue)
    jax.block_until_ready((r.hsic, r.r2, r.pvalue))
    first = time.perf_counter() - t0
    first_cpu = time.process_time() - c0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        r = hsic(X, Y, pvalue=pvalue)
        jax.block_until_ready((r.hsic, r.r2, r.pvalue))
        warm.append(time.perf_counter() - t0)
    # warm call: host-side preparation, the jitted program (dispatch + run), the rest
    import importlib

    H = importlib.import_module("hsens_jax.sensitivity.hsic")
    kw = dict(estimator="V", bandwidth="std", output_bandwidth=None, target=None,
              conditional=None, pvalue=pvalue, n_permutations=1, key=None, kernel=None,
              convention=None)
    prep_t, run_t = [float("nan")], [float("nan")]
    if hasattr(H, "_padded"):  # this code's internals (not those of older checkouts)
        for _ in range(5):
            t0 = time.perf_counter()
            prep = H._prepare(X, Y, **kw)
            t1 = time.perf_counter()
            res, pv, _ = H._run(prep, estimator="V", pvalue=pvalue, n_permutations=1, key=None,
                                tile_size=None, pvalue_convention="conservative",
                                perm_chunk=None, bucket=True)
            jax.block_until_ready((res["hsic"], res["r2"], pv))
            t2 = time.perf_counter()
            prep_t.append(t1 - t0)
            run_t.append(t2 - t1)
        prep_t, run_t = prep_t[1:], run_t[1:]
    # the arithmetic floor: d n^2 / 2 Gaussian kernel entries, summed (one exp each)
    import jax.numpy as jnp
    from jax import lax

    Xs = (X / X.std(0, ddof=1)).astype(np.float32)

    @jax.jit
    def floor(xs):
        def body(acc, i):
            xi = lax.dynamic_slice_in_dim(xs, i * 200, 200, 0)
            diff = xi.T[:, :, None] - xs.T[:, None, :]
            return acc + jnp.sum(jnp.exp(-0.5 * diff * diff), axis=(1, 2)), None
        return lax.scan(body, jnp.zeros(xs.shape[1], xs.dtype), jnp.arange(10))[0]

    floor(Xs).block_until_ready()
    fl = []
    for _ in range(5):
        t0 = time.perf_counter()
        floor(Xs).block_until_ready()
        fl.append((time.perf_counter() - t0) / 2)  # all n^2 pairs computed: half is the floor
    print(json.dumps({"import_s": t_import, "first_call_s": first, "first_call_cpu_s": first_cpu,
                      "warm_s": min(warm), "warm_prepare_s": min(prep_t), "warm_run_s": min(run_t),
                      "floor_s": min(fl),
                      "phases": {k: dict(v) for k, v in per.items()}, "events": dict(counts)}))


def run_child(source, env_extra, pvalue):
    env = dict(os.environ, PYTHONPATH=source, JAX_PLATFORMS="cpu", **env_extra)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--pvalue", pvalue],
                       capture_output=True, text=True, env=env, timeout=600)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarize(res):
    ph = res["phases"]
    out = {"first_call_s": res["first_call_s"], "first_call_cpu_s": res["first_call_cpu_s"],
           "warm_s": res["warm_s"]}
    for key, event in (("trace_s", "jaxpr_trace_duration"), ("lower_s", "jaxpr_to_mlir_module_duration"),
                       ("compile_or_load_s", "backend_compile_duration")):
        vals = ph.get(event, {})
        out[key] = sum(vals.values())
        out[key + "_core"] = sum(v for k, v in vals.items() if "core" in k)
    out["programs"] = len(ph.get("backend_compile_duration", {}))
    for k in ("warm_prepare_s", "warm_run_s", "floor_s"):
        if k in res:
            out[k] = res[k]
    out["cache_hits"] = res["events"].get("cache_hits", 0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--source", default=os.path.dirname(HERE))
    ap.add_argument("--label", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pvalue", default="gamma")
    args = ap.parse_args()
    if args.child:
        child(None if args.pvalue == "none" else args.pvalue)
        return
    label = args.label or os.path.abspath(args.source)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for mode in ("cold", "warm-cache"):
            env = {"HSENS_COMPILATION_CACHE": "off"} if mode == "cold" else \
                {"HSENS_COMPILATION_CACHE": cache}
            if mode == "warm-cache":
                run_child(args.source, env, args.pvalue)  # fills the cache
            for _ in range(args.repeats):
                s = summarize(run_child(args.source, env, args.pvalue))
                s.update(mode=mode, label=label, load=os.getloadavg()[0])
                rows.append(s)
                print(json.dumps(s), flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "hsic_compile_cpu.json")
    old = json.load(open(path)) if os.path.exists(path) else []
    old = [r for r in old if not (r["label"] == label and r.get("pvalue", "gamma") == args.pvalue)]
    for r in rows:
        r["pvalue"] = args.pvalue
    allrows = old + rows
    with open(path, "w") as fh:
        json.dump(allrows, fh, indent=2)
    lines = ["# First call of hsic: where the time goes (CPU)", "",
             "`python benchmarks/bench_hsic_compile.py --source DIR --label NAME`: one fresh "
             "process per row, `hsic(X, Y, pvalue=...)`, n = 2000, d = 10, NumPy float64 inputs "
             "(float32 compute). Times from JAX's monitoring events, summed over the programs; "
             "`core`: the estimator's jitted programs only. Best (minimum) of the repeats per "
             "mode; the machine is shared (load = 1-min load average at the row).", "",
             "| code | p-value | mode | first call (s) | first call CPU (s) | trace (s) | lower (s) | "
             "XLA compile or cache load (s) | of which core (s) | programs | cache hits | warm call (s) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in allrows:
        groups.setdefault((r["label"], r.get("pvalue", "gamma"), r["mode"]), []).append(r)
    for (lab, pv, mode), rs in groups.items():
        b = min(rs, key=lambda r: r["first_call_s"])
        lines.append(f"| {lab} | {pv} | {mode} | {b['first_call_s']:.3f} | {b['first_call_cpu_s']:.3f} | "
                     f"{b['trace_s']:.3f} | {b['lower_s']:.3f} | {b['compile_or_load_s']:.3f} | "
                     f"{b['compile_or_load_s_core']:.3f} | {b['programs']} | {b['cache_hits']} | "
                     f"{min(r['warm_s'] for r in rs) * 1e3:.1f} ms | {b['load']:.1f} |")
    lines += ["", "Warm call, where the time goes (best of 5, same process): host-side preparation "
              "(input checks, conversion, bandwidths), the jitted program (dispatch, run, Gamma "
              "survival function on the host) and, for scale, the arithmetic floor: the d n^2 / 2 "
              "Gaussian kernel entries alone (exp and sum, one XLA loop).", "",
              "| code | p-value | warm call (ms) | preparation (ms) | program (ms) | floor (ms) |",
              "|---|---|---|---|---|---|"]
    for (lab, pv, mode), rs in groups.items():
        rs = [r for r in rs if "warm_run_s" in r]
        if mode != "cold" or not rs:
            continue
        lines.append(f"| {lab} | {pv} | {min(r['warm_s'] for r in rs) * 1e3:.1f} | "
                     f"{min(r['warm_prepare_s'] for r in rs) * 1e3:.2f} | "
                     f"{min(r['warm_run_s'] for r in rs) * 1e3:.1f} | "
                     f"{min(r['floor_s'] for r in rs) * 1e3:.1f} |")
    with open(os.path.join(RESULTS, "hsic_compile_cpu.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
