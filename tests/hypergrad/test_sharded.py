"""Forward mode with its tangent directions split over several devices, and directional
derivatives (:func:`forward_directions`)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.hypergrad import forward_directions, forward_gradient, hypergradient
from hsens_jax.engine.train import hp_from_values

from .conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, key0, runge_data

ROOT = Path(__file__).resolve().parents[2]

# The test process has one CPU device (tests/conftest.py); several need a fresh process.
SCRIPT = """
import json, jax
jax.config.update("jax_num_cpu_devices", {n_dev})
jax.config.update("jax_enable_x64", True)
from hsens_jax.hypergrad import hypergradient
from tests.hypergrad.conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, key0, runge_data
data = runge_data()
out = {{}}
for h in {hs}:
    wrt = RUNGE_WRT[:h]
    split = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), wrt, mode="forward", coordinates="raw")
    one = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), wrt, mode="forward", coordinates="raw",
                        devices=jax.devices()[:1])
    rev = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), wrt, mode="reverse", coordinates="raw")
    out[h] = dict(devices=len({{d for a in split.grad_raw.values() for d in a.devices()}}),
                  value=[float(r.value) for r in (split, one, rev)],
                  grad=[[float(r.grad_raw[n]) for n in wrt] for r in (split, one, rev)],
                  finite=bool(split.finite))
print("JSON" + json.dumps(out))
"""


def _run(n_dev, hs):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(n_dev=n_dev, hs=hs)], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    import json
    return {int(k): v for k, v in json.loads(out.split("JSON", 1)[1]).items()}


@pytest.mark.parametrize("n_dev, hs", [(2, (2, 3)), (3, (2,))])
def test_split_tangents_equal_one_device_and_reverse_mode(n_dev, hs):
    """h = 2 on 2 devices (one tangent each), h = 3 on 2 (two each, padded to 4: a zero
    direction is dropped), h = 2 on 3 (one device left out): float64, same values."""
    res = _run(n_dev, hs)
    for h in hs:
        r = res[h]
        assert r["finite"]
        assert r["devices"] == min(n_dev, h)  # the result came from a mesh of that many devices
        split, one, rev = (np.asarray(g) for g in r["grad"])
        assert split.shape == (h,)
        np.testing.assert_allclose(split, one, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(split, rev, rtol=1e-8, atol=1e-12)
        assert r["value"][0] == pytest.approx(r["value"][1], rel=1e-14)
        assert r["value"][0] == pytest.approx(r["value"][2], rel=1e-14)


def test_directional_derivatives_are_the_gradient_times_the_directions(x64):
    data = runge_data()
    hp = hp_from_values(RUNGE_VALUES, RUNGE_SPEC)
    wrt = RUNGE_WRT[:3]
    value, grad, _ = forward_gradient(RUNGE_SPEC, data, hp, key0(), wrt)
    g = np.array([float(grad[n]) for n in wrt])
    v = np.array([[1.0, 2.0, -0.5], [0.0, 0.0, 0.0], [0.3, -1.0, 4.0]])
    for rows in (v, v[2:]):  # several directions (one linearized scan) and one (a jvp)
        val, dy, _ = forward_directions(RUNGE_SPEC, data, hp, key0(), wrt, jnp.asarray(rows))
        assert float(val) == float(value)
        np.testing.assert_allclose(np.asarray(dy), rows @ g, rtol=1e-10, atol=1e-14)


def test_directions_of_the_wrong_shape_are_refused(x64):
    hp = hp_from_values(RUNGE_VALUES, RUNGE_SPEC)
    with pytest.raises(ValueError, match=r"directions: expected shape \(m, 2\), got \(3,\)"):
        forward_directions(RUNGE_SPEC, runge_data(), hp, key0(), RUNGE_WRT[:2], jnp.ones(3))


@pytest.mark.parametrize("devices, exc, match", [
    ([], ValueError, "non-empty sequence of jax devices"),
    ("cpu", ValueError, "non-empty sequence of jax devices"),
    (3, TypeError, "devices must be a sequence of jax devices or None, got int"),
])
def test_bad_devices_are_refused(devices, exc, match):
    with pytest.raises(exc, match=match):
        hypergradient(RUNGE_SPEC, runge_data(), RUNGE_VALUES, key0(), RUNGE_WRT[:2], mode="forward", devices=devices)


def test_one_device_given_as_a_device(x64):
    r = hypergradient(RUNGE_SPEC, runge_data(), RUNGE_VALUES, key0(), RUNGE_WRT[:2], mode="forward",
                      devices=jax.devices()[0])
    assert bool(r.finite)


MANY = """
import json, jax, numpy as np
jax.config.update("jax_num_cpu_devices", {n_dev})
jax.config.update("jax_enable_x64", True)
from hsens_jax.hypergrad import hypergradients
from tests.hypergrad.conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, key0, runge_data
data = runge_data()
n = 5
cfg = {{k: np.full(n, v, dtype=object if isinstance(v, str) else float) for k, v in RUNGE_VALUES.items()}}
cfg["learning_rate"] = np.geomspace(0.02, 0.3, n)
keys = jax.random.split(jax.random.PRNGKey(3), n)
out = {{}}
for name, key, chunk in (("shared", key0(), None), ("keys", keys, 2)):
    split = hypergradients(RUNGE_SPEC, data, cfg, key, RUNGE_WRT[:1], mode="reverse", chunk_size=chunk)
    one = hypergradients(RUNGE_SPEC, data, cfg, key, RUNGE_WRT[:1], mode="reverse", chunk_size=chunk,
                         devices=jax.devices()[:1])
    out[name] = dict(
                     shape=list(split.value.shape),
                     value=[np.asarray(r.value).tolist() for r in (split, one)],
                     grad=[np.asarray(r.grad_raw["learning_rate"]).tolist() for r in (split, one)])
print("JSON" + json.dumps(out))
"""


def test_configurations_split_over_devices_equal_one_device():
    """5 configurations on 2 devices (padded to 6), shared key and per-configuration keys
    in chunks of 2: the same values as on one device."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", MANY.format(n_dev=2)], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    import json
    res = json.loads(out.split("JSON", 1)[1])
    for name in ("shared", "keys"):
        r = res[name]
        assert r["shape"] == [5]
        np.testing.assert_allclose(r["value"][0], r["value"][1], rtol=1e-13)
        np.testing.assert_allclose(r["grad"][0], r["grad"][1], rtol=1e-11)
        assert len(set(np.round(r["grad"][0], 8))) == 5  # five different configurations
