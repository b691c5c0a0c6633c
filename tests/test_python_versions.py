"""The package keeps to the Python versions pyproject.toml claims (no 3.11-only syntax or
standard-library module without a fallback), checked statically with vermin when installed."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_requires_python_matches_the_code():
    claimed = re.search(r'requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    if shutil.which("vermin") is None:
        pytest.skip("vermin is not installed (pip install vermin)")
    out = subprocess.run(["vermin", "--no-tips", "--eval-annotations", f"-t={claimed}-", "--violations",
                          str(ROOT / "hsens_jax"), str(ROOT / "examples")], capture_output=True, text=True)
    assert out.returncode == 0 and "not met" not in out.stdout, out.stdout + out.stderr
    found = re.search(r"Minimum required versions: (3\.\d+)", out.stdout)
    assert found is None or tuple(map(int, found.group(1).split("."))) <= tuple(map(int, claimed.split("."))), \
        out.stdout
