"""What JAX's persistent compilation cache saves, program by program (the numbers behind the
settings of ``hsens_jax.compile_cache``).

Two fresh processes run the same work: the first with an empty cache directory (every
program compiled and written: ``jax_persistent_cache_min_compile_time_secs = 0``), the second
with that directory (every program loaded).  Work: a few eager ``jax.numpy`` operations (the
smallest programs there are), ``hsic(X, Y, pvalue="gamma")`` at n = 2000, d = 10 and
``sobol_indices`` at n = 2^14, d = 10, second order, 1000 resamples.  Per program: XLA's
compile time (first process), the time to get it from the cache (second process, JAX's
``backend_compile_duration`` event, which then measures the load), and the entry's size.

    python benchmarks/bench_compile_cache.py

Writes benchmarks/results/compile_cache_cpu.{json,md}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import collections, json, os, sys, time
import numpy as np
from jax import monitoring
per = collections.defaultdict(float)
monitoring.register_event_duration_secs_listener(
    lambda e, d, **kw: per.__setitem__(kw.get("fun_name", "?"), per[kw.get("fun_name", "?")] + d)
    if e.endswith("backend_compile_duration") else None)
import jax, jax.numpy as jnp
import hsens_jax.compile_cache as cc
cc.MIN_COMPILE_TIME_SECS = 0.0
cc.enable_compilation_cache(sys.argv[1])
from hsens_jax.sensitivity.hsic import hsic
from hsens_jax.sensitivity.sobol import sobol_indices
x = jnp.arange(1000.0)
jax.block_until_ready((jnp.cumsum(x), jnp.sort(x), x * 2.0 + 1.0))
rng = np.random.default_rng(0)
X = rng.uniform(-np.pi, np.pi, size=(2000, 10))
jax.block_until_ready(hsic(X, np.sin(X[:, 0]) + 7 * np.sin(X[:, 1]) ** 2, pvalue="gamma").pvalue)
Y = rng.normal(size=2 ** 14 * 22)
sobol_indices(Y, 10, second_order=True, n_bootstrap=1000)
print(json.dumps(dict(per)))
"""


def main():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        runs = []
        for _ in range(2):
            p = subprocess.run([sys.executable, "-c", _CHILD, cache], capture_output=True, text=True,
                               env=env, timeout=600)
            if p.returncode:
                raise RuntimeError(p.stderr[-3000:])
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        sizes = {}
        for f in os.listdir(cache):
            if f.startswith("jit_") and f.endswith("-cache"):
                name = "jit(" + f[4:].rsplit("-", 2)[0] + ")"
                sizes[name] = sizes.get(name, 0) + os.path.getsize(os.path.join(cache, f))
    rows = []
    for name in sorted(runs[0], key=lambda k: -runs[0][k]):
        rows.append({"program": name, "compile_s": runs[0][name], "load_s": runs[1].get(name),
                     "entry_bytes": sizes.get(name)})
    load = os.getloadavg()[0]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "compile_cache_cpu.json"), "w") as fh:
        json.dump({"rows": rows, "load_average": load}, fh, indent=2)
    lines = ["# Persistent compilation cache: compile time against load time, per program", "",
             f"`python benchmarks/bench_compile_cache.py` (load average {load:.1f}): two fresh "
             "processes, the first compiling and writing every program, the second loading them. "
             "Sizes: the compressed cache entries (all entries of that name summed).", "",
             "| program | XLA compile (s) | load from the cache (s) | entry (kB) |", "|---|---|---|---|"]
    for r in rows:
        ld = "" if r["load_s"] is None else f"{r['load_s']:.4f}"
        kb = "" if r["entry_bytes"] is None else f"{r['entry_bytes'] / 1024:.0f}"
        lines.append(f"| {r['program']} | {r['compile_s']:.4f} | {ld} | {kb} |")
    with open(os.path.join(RESULTS, "compile_cache_cpu.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
