"""What a benchmark ran on: CPU model, cores, load, Python and package versions (for results files)."""

from __future__ import annotations

import importlib
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(*packages: str) -> dict:
    """The machine and the versions of ``packages`` (those importable), with the 1-minute load."""
    out = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
           "python": platform.python_version(),
           "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    for name in packages:
        try:
            out[name] = importlib.import_module(name).__version__
        except (ImportError, AttributeError):
            out[name] = None
    return out
