"""Run every experiment of the reproduction, then build the write-up (``paper/build.py``).

    python experiments/reproduce.py --quick      # minutes on a 2-core CPU: reduced settings
    python experiments/reproduce.py --full       # the paper-scale settings, for a GPU

The toy studies of sections 4.1-4.3 (``toys.py``) run complete in both modes (``--spread 5``:
under a minute on a 2-core CPU), in their own process (they compute in float64); then the neural-network studies (``mnist.py``, ``fashion_mnist.py``,
``cifar10.py``, ``runge.py``, ``bateman.py``), the HSIC-based optimization (``hsic_hpo.py``) and the
throughput comparison (``throughput.py``) run in this process, one after the other, so that the
estimators' compiled programs serve every study (``--isolate`` runs each in its own process
instead). Each is the same as ``python experiments/NAME.py --quick|--full --out DIR``. A failing
experiment is reported and the others still run; the exit status is 1 if any failed. ``--only
NAME ...`` runs a subset. Timings go to ``DIR/reproduce.json``; ``paper/build.py`` then rebuilds
``paper/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOYS_SPREAD = 5
"""``toys.py --spread``: independent draws behind the spread of its estimates (toys.py's own runs use 5)."""
EXPERIMENTS = ("toys", "mnist", "fashion_mnist", "cifar10", "runge", "bateman", "hsic_hpo", "throughput")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced settings (minutes on a 2-core CPU)")
    mode.add_argument("--full", action="store_true", help="paper-scale settings (for a GPU)")
    p.add_argument("--out", default=str(HERE / "results"), help="results directory (default experiments/results)")
    p.add_argument("--data-dir", default=None, help="root of the downloaded data sets")
    p.add_argument("--only", nargs="+", choices=EXPERIMENTS, help="run only these experiments")
    p.add_argument("--no-paper", action="store_true", help="do not rebuild paper/README.md")
    p.add_argument("--isolate", action="store_true", help="run every experiment in its own process")
    p.add_argument("--settings", action="store_true",
                   help="print the quick and full settings of every experiment as a Markdown table, run nothing")
    args = p.parse_args(argv)
    if args.settings:
        print(settings_markdown())
        return 0
    if not (args.quick or args.full):
        p.error("one of --quick, --full (or --settings) is required")
    flag = "--quick" if args.quick else "--full"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    timings, failed = {}, []
    for name in args.only or EXPERIMENTS:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"[reproduce] {name}: {script.name} is not in this checkout; skipped", file=sys.stderr)
            timings[name] = {"skipped": f"{script.name} not present"}
            continue
        if name == "toys":  # complete (under a minute on a 2-core CPU) in both modes, as its committed results
            argv = ["--spread", str(TOYS_SPREAD), "--out", args.out]
        else:
            argv = [flag, "--out", args.out] + (["--data-dir", args.data_dir] if args.data_dir else [])
        print(f"[reproduce] {name}.py {' '.join(argv)}", file=sys.stderr)
        t0 = time.perf_counter()
        if name == "toys" or args.isolate:
            rc = subprocess.call([sys.executable, str(script)] + argv, env=env, cwd=ROOT)
        else:
            rc = run_here(name, argv)
        timings[name] = {"seconds": time.perf_counter() - t0, "returncode": rc}
        if rc != 0:
            failed.append(name)
            print(f"[reproduce] {name} FAILED (exit status {rc})", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.json").write_text(json.dumps({"mode": "quick" if args.quick else "full", "timings": timings,
                                                    "failed": failed}, indent=1))
    if not args.no_paper:
        subprocess.call([sys.executable, str(ROOT / "paper" / "build.py"), "--results", args.out], env=env, cwd=ROOT)
    total = sum(t.get("seconds", 0) for t in timings.values())
    ran = [n for n, t in timings.items() if "seconds" in t]
    print(f"[reproduce] {len(ran) - len(failed)} of {len(ran)} experiments succeeded in {total:.0f} s"
          + (f"; failed: {failed}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def settings_markdown() -> str:
    """The ``SETTINGS`` of every experiment that has them (``quick`` and ``full``), one row each,
    as the Markdown table that ``experiments/README.md`` includes (``--settings`` prints it)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))

    def value(v):
        if isinstance(v, dict):
            return f"({cell(v)})"
        if isinstance(v, tuple):
            return "/".join(map(str, v))
        return "all" if v is None else str(v)

    def cell(d):
        return ", ".join(f"{k}={value(v)}" for k, v in d.items())

    lines = ["| script | --quick | --full |", "|---|---|---|"]
    for name in EXPERIMENTS:
        settings = getattr(importlib.import_module(name), "SETTINGS", None)
        if settings is not None:
            lines.append(f"| `{name}.py` | {cell(settings['quick'])} | {cell(settings['full'])} |")
    return "\n".join(lines)


def run_here(name: str, argv: list[str]) -> int:
    """``experiments/NAME.py``'s ``main(argv)`` in this process; 0, or 1 after printing the traceback."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        importlib.import_module(name).main(argv)
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    except Exception:  # noqa: BLE001 - one failing experiment must not stop the others
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
