"""Wall time of ``python experiments/toys.py`` (sections 4.1-4.3 of Novello et al. 2023).

Runs the full script (and ``--quick``) ``--repeats`` times as a user would, each in a fresh
process with the persistent compilation cache off (the truly cold case) and once more with a
cache directory filled by a previous run; records the wall time, the script's own section
times and the load average.

    python benchmarks/bench_toys.py [--repeats 2]

Writes benchmarks/results/toys_cpu.{json,md}.
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
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def run(args, cache):
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, JAX_PLATFORMS="cpu", HSENS_COMPILATION_CACHE=cache)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "toys.py"), *args,
                            "--out", out], capture_output=True, text=True, env=env, timeout=900)
        wall = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(p.stderr[-3000:])
        res = json.load(open(os.path.join(out, "toys.json")))
    return {"args": " ".join(args) or "(full)", "cache": "off" if cache == "off" else "filled",
            "wall_s": wall, "sections_s": res["seconds"], "load": round(os.getloadavg()[0], 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(a.repeats):
            for args in ([], ["--quick"]):
                rows.append(run(args, "off"))
                print(json.dumps(rows[-1]), flush=True)
        run([], cache)  # fills the cache
        rows.append(run([], cache))
        print(json.dumps(rows[-1]), flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "toys_cpu.json"), "w") as fh:
        json.dump(rows, fh, indent=2)
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    lines = ["# experiments/toys.py: wall time (CPU)", "",
             f"{cpu}, {os.cpu_count()} cores; `python benchmarks/bench_toys.py`: each row a fresh "
             "process running `python experiments/toys.py [--quick]` (imports, draws, every "
             "estimate, files written), float64.", "",
             "| run | persistent cache | wall (s) | 4.1 (s) | 4.2 (s) | 4.3 (s) | load |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["sections_s"]
        lines.append(f"| {r['args']} | {r['cache']} | {r['wall_s']:.1f} | {s['4.1']:.1f} | "
                     f"{s['4.2']:.1f} | {s['4.3']:.1f} | {r['load']} |")
    with open(os.path.join(RESULTS, "toys_cpu.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
