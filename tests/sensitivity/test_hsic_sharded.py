"""HSIC and the Sobol' bootstrap sharded over several devices equal their single-device results
(hsens_jax.sensitivity.hsic_sharded); the multi-process case is in tests/engine/test_distributed.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from hsens_jax.engine.distributed import estimator_devices
from hsens_jax.sensitivity.hsic import hsic

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

CASES = ["V_gamma", "U_perm", "conditional_perm", "target_max", "interactions", "sobol"]

SCRIPT = """
import sys, json, numpy as np, jax
jax.config.update("jax_num_cpu_devices", 3)
sys.path.insert(0, {here!r})
from _sharded_cases import run_cases
cases = json.loads({cases!r})
out = {{}}
for tag, devices in (("one", None), ("three", "all")):
    out.update({{f"{{tag}}:{{k}}": v for k, v in run_cases(cases, devices).items()}})
np.savez({path!r}, **out)
"""


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Every case on one device and on 3 (an odd ring; the process group of
    tests/engine/test_distributed.py has an even one), in float64."""
    path = tmp_path_factory.mktemp("sharded") / "cases.npz"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    code = SCRIPT.format(here=str(HERE), cases=json.dumps(CASES), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("case", CASES)
def test_sharded_estimators_equal_one_device(sharded, case):
    keys = [k.split(":", 1)[1] for k in sharded if k.startswith(f"one:{case}/")]
    assert keys
    for ring in ("three",):
        for k in keys:
            one, many = sharded[f"one:{k}"], sharded[f"{ring}:{k}"]
            if k.endswith("pvalue") and "perm" in k:  # the same permutations: the same counts
                np.testing.assert_array_equal(many, one, err_msg=f"{ring}:{k}")
            else:
                np.testing.assert_allclose(many, one, rtol=1e-9, atol=1e-13, equal_nan=True, err_msg=f"{ring}:{k}")


def _np_hsic(x, y, theta_x, theta_y, estimator):
    """Textbook HSIC of one input column (float64, O(n^2) matrices; Gretton et al. 2005, Song et al. 2012)."""
    K = np.exp(-0.5 * ((x[:, None] - x[None, :]) / theta_x) ** 2)
    L = np.exp(-0.5 * ((y[:, None] - y[None, :]) / theta_y) ** 2)
    n = len(x)
    if estimator == "V":
        H = np.eye(n) - 1.0 / n
        return np.trace(K @ H @ L @ H) / n**2
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ Kt @ Lt @ one) / (n * (n - 3))


def test_sharded_hsic_equals_the_textbook_formulas(sharded):
    sys.path.insert(0, str(HERE))
    from _sharded_cases import data

    X, Y = data()
    ty = np.std(Y, ddof=1)
    for case, estimator in (("V_gamma", "V"), ("U_perm", "U")):
        ref = [_np_hsic(X[:, j], Y, np.std(X[:, j], ddof=1), ty, estimator) for j in range(2)]
        np.testing.assert_allclose(sharded[f"three:{case}/hsic"][:2], ref, rtol=1e-9, err_msg=case)


def test_the_influential_inputs_are_found(sharded):
    p = sharded["three:U_perm/pvalue"]
    assert p[0] < 0.05 and p[1] < 0.05 and p[2] > 0.05


def test_devices_argument():
    assert estimator_devices(None) is None
    assert estimator_devices("all") is None  # one device, one process: the single-device path
    assert estimator_devices(jax.devices()) is None
    with pytest.raises(ValueError, match="devices must be None, 'all'"):
        estimator_devices("gpu")
    with pytest.raises(TypeError, match="sequence of JAX devices"):
        estimator_devices([0, 1])
    with pytest.raises(ValueError, match="twice"):
        estimator_devices([jax.devices()[0]] * 2)
    X = np.random.default_rng(1).uniform(size=(40, 2))
    a, b = hsic(X, X[:, 0]), hsic(X, X[:, 0], devices=jax.devices())
    np.testing.assert_array_equal(np.asarray(a.hsic), np.asarray(b.hsic))
    with pytest.raises(ValueError, match="devices must be None"):
        hsic(X, X[:, 0], devices="everything")
