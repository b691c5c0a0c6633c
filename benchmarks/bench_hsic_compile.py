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
    print(json.dumps({"import_s": t_import, "first_call_s": first, "first_call_cpu_s": first_cpu,
                      "warm_s": min(warm),
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
    with open(os.path.join(RESULTS, "hsic_compile_cpu.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
