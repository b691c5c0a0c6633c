"""The demo's sweep in a fresh process: cold (empty persistent compilation cache) and warm.

``hsens demo`` trains a Sobol design of 256 MLP configurations on the bundled digits
(two programs: one per batch size). Each scenario below is a fresh Python process running
the demo's sweep as the CLI does (one JAX device per core), timed from before ``import
hsens_jax`` to the results, with XLA's compile time read from JAX's monitoring events
(``/jax/core/compile/backend_compile_duration``, summed over every compilation, the background
compiler thread's included) and the persistent cache's hits counted:

* ``off``: persistent cache disabled (``HSENS_COMPILATION_CACHE=off``);
* ``cold``: a new, empty cache directory (the programs are compiled and written);
* ``warm``: the same directory again (the programs are read back: hsens_jax's executables,
  neither traced nor lowered; :mod:`hsens_jax.executables`);
* ``jax_cold`` and ``jax_warm``: the same two with hsens_jax's executables layer off
  (``HSENS_EXECUTABLE_CACHE=off``) in a directory of their own: JAX's persistent cache alone, as
  before that layer existed (every program traced and lowered, then XLA's compilation read back).

Besides XLA's compile time, each process reports its tracing and lowering time (JAX's
``jaxpr_trace_duration`` and ``jaxpr_to_mlir_module_duration`` events) and, from JAX's
compile log (``jax_log_compiles``), every program it compiled with its XLA compile time: the
``off`` rows list what each of the demo's programs costs to compile.

Scenarios alternate over the repeats (the machine is shared and noisy).

Usage: python benchmarks/bench_demo_cache.py [--repeats 3] [--n-configs 256] [--epochs 10] [--out benchmarks/results]
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
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, time
t0 = time.perf_counter()
import jax
from jax import monitoring
import logging, re
compile_s, hits, trace_s, lower_s = [0.0], [0], [0.0], [0.0]
programs = []
class Log(logging.Handler):
    def emit(self, record):
        m = re.match(r"Finished XLA compilation of (.+) in ([0-9.e-]+) sec", record.getMessage())
        if m:
            programs.append((m.group(1), float(m.group(2))))
jax.config.update("jax_log_compiles", True)
for name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler"):
    logging.getLogger(name).addHandler(Log())
    logging.getLogger(name).propagate = False
def duration(event, secs, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        compile_s[0] += secs
    elif event == "/jax/core/compile/jaxpr_trace_duration":
        trace_s[0] += secs
    elif event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
        lower_s[0] += secs
def event(name, **kw):
    if name == "/jax/compilation_cache/cache_hits":
        hits[0] += 1
monitoring.register_event_duration_secs_listener(duration)
monitoring.register_event_listener(event)
import hsens_jax as hs
from hsens_jax.cli import DEMO_SPACE
from hsens_jax.config import SweepConfig
hs.use_cpu_cores()
config = SweepConfig.from_dict({"data": {"name": "digits"}, "budget": {"epochs": EPOCHS},
                                "design": {"kind": "sobol", "n": N_CONFIGS, "seed": 0},
                                "sweep": {"chunk_size": 64}, "space": DEMO_SPACE}, source="bench")
result = hs.run_sweep(config.load_data(), config.space, config.make_design(), fixed=config.fixed,
                      chunk_size=64, progress=False)
total = time.perf_counter() - t0
from hsens_jax import executables
print("RESULT " + json.dumps({"total_s": total, "compile_s": compile_s[0], "cache_hits": hits[0],
                              "trace_s": trace_s[0], "lower_s": lower_s[0], "programs": programs,
                              "executables": executables.stats,
                              "groups": len(result.meta["groups"]), "sweep_s": result.meta["wall_time"]}))
"""


def child(cache: str, n_configs: int, epochs: float, executables: bool = True) -> dict:
    code = CHILD.replace("EPOCHS", repr(epochs)).replace("N_CONFIGS", str(n_configs))
    env = {**os.environ, "HSENS_COMPILATION_CACHE": cache, "PYTHONPATH": str(ROOT),
           "HSENS_EXECUTABLE_CACHE": "on" if executables else "off"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-configs", type=int, default=256)
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--from-json", help="rewrite the report from an earlier run's JSON (no new runs)")
    args = p.parse_args(argv)
    runs = {"off": [], "cold": [], "warm": [], "jax_cold": [], "jax_warm": []}
    if args.from_json:
        earlier = json.loads(Path(args.from_json).read_text())
        runs, args.repeats = earlier["runs"], earlier["repeats"]
        args.n_configs, args.epochs = earlier["n_configs"], earlier["epochs"]
    for _ in range(0 if args.from_json else args.repeats):
        runs["off"].append(child("off", args.n_configs, args.epochs))
        cache = tempfile.mkdtemp(prefix="hsens-bench-cache-")
        try:
            runs["cold"].append(child(cache, args.n_configs, args.epochs))
            runs["warm"].append(child(cache, args.n_configs, args.epochs))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        cache = tempfile.mkdtemp(prefix="hsens-bench-cache-")
        try:
            runs["jax_cold"].append(child(cache, args.n_configs, args.epochs, executables=False))
            runs["jax_warm"].append(child(cache, args.n_configs, args.epochs, executables=False))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        for k, v in runs.items():
            r = v[-1]
            print(f"{k:8s} total {r['total_s']:6.1f} s  compile {r['compile_s']:5.1f} s "
                  f"({r['compile_s'] / r['total_s']:.0%})  trace {r['trace_s']:.2f} s  lower {r['lower_s']:.2f} s  "
                  f"cache hits {r['cache_hits']}  executables {r['executables']}", flush=True)
    summary = {k: {"total_s_median": statistics.median(r["total_s"] for r in v),
                   "compile_s_median": statistics.median(r["compile_s"] for r in v),
                   "compile_share_median": statistics.median(r["compile_s"] / r["total_s"] for r in v),
                   "trace_lower_s_median": statistics.median(r["trace_s"] + r["lower_s"] for r in v)}
               for k, v in runs.items()}
    doc = {"benchmark": "hsens demo's sweep in a fresh process, persistent compilation cache off/cold/warm",
           "n_configs": args.n_configs, "epochs": args.epochs, "repeats": args.repeats, "machine": describe("jax", "flax", "optax", "numpy"),
           "runs": runs, "summary": summary}
    if args.from_json:
        doc["machine"] = earlier["machine"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_cache_cpu.json").write_text(json.dumps(doc, indent=2))
    lines = ["# The demo's sweep in a fresh process: persistent compilation cache off, cold, warm", "",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores, load {doc['machine']['load_1min']:.1f} "
             f"(1-min average at the end). {args.n_configs} configurations, {args.epochs:g} epochs, "
             f"{args.repeats} alternating repeats; medians. `cold`/`warm`: hsens_jax's default (JAX's persistent cache "
             f"and hsens_jax's executables); `jax_cold`/`jax_warm`: JAX's persistent cache alone "
             f"(`HSENS_EXECUTABLE_CACHE=off`, what a fresh process did before the executables layer).", "",
             "| cache | total (s) | XLA compile (s) | compile share | tracing + lowering (s) |",
             "| --- | --- | --- | --- | --- |"]
    for k, v in summary.items():
        lines.append(f"| {k} | {v['total_s_median']:.1f} | {v['compile_s_median']:.1f} | "
                     f"{v['compile_share_median']:.0%} | {v['trace_lower_s_median']:.2f} |")
    lines += ["", "Programs compiled with the cache off (the repeat of median total time; XLA's own compile time, from JAX's compile log; "
              "programs under 0.05 s summed):", "", "| program | XLA compile (s) |", "| --- | --- |"]
    off = sorted(runs["off"], key=lambda r: r["total_s"])
    progs = off[len(off) // 2]["programs"]
    small = [t for _, t in progs if t < 0.05]
    for name, t in sorted((p for p in progs if p[1] >= 0.05), key=lambda p: -p[1]):
        lines.append(f"| {name} | {t:.2f} |")
    lines.append(f"| {len(small)} others | {sum(small):.2f} |")
    (out / "demo_cache_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
