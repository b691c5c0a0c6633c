import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsens_jax.engine.devices import cpu_cores, use_cpu_cores

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import jax, jax.numpy as jnp
from hsens_jax.engine.devices import use_cpu_cores, cpu_cores
print("CORES", cpu_cores())
{before}
print("GOT", use_cpu_cores({n}), "DEVICES", len(jax.devices("cpu")))
print("AGAIN", use_cpu_cores(5))
"""


def _run(n="None", before="", flags=""):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **({"XLA_FLAGS": flags} if flags else {}))
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(n=n, before=before)], env=env, check=True,
                         capture_output=True, text=True).stdout
    words = out.split()
    return {w: int(words[i + 1]) for i, w in enumerate(words) if w in ("CORES", "GOT", "DEVICES", "AGAIN")}


def test_splits_the_cpu_into_the_devices_asked_for_then_keeps_them():
    r = _run(n="3")
    assert (r["GOT"], r["DEVICES"], r["AGAIN"]) == (3, 3, 3)
    r = _run()  # default: one per core this process may use
    assert r["GOT"] == r["DEVICES"] == r["CORES"] == r["AGAIN"] >= 1


def test_leaves_devices_already_chosen_alone():
    # by XLA_FLAGS
    r = _run(n="2", flags="--xla_force_host_platform_device_count=4")
    assert (r["GOT"], r["DEVICES"], r["AGAIN"]) == (4, 4, 4)
    # by a computation that came first: JAX's devices are fixed, no error
    r = _run(n="3", before="jnp.ones(2).block_until_ready()")
    assert (r["GOT"], r["DEVICES"], r["AGAIN"]) == (1, 1, 1)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "2"])
def test_rejects_a_bad_count_by_name(bad):
    with pytest.raises(ValueError, match="positive integer, got " + repr(bad).replace(".", r"\.")):
        use_cpu_cores(bad)


def test_cpu_cores_is_the_affinity_of_this_process():
    assert cpu_cores() == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def test_on_cpu_reads_the_devices_or_jaxs():
    import jax

    from hsens_jax.engine.devices import on_cpu

    assert on_cpu() and on_cpu(jax.devices()) and on_cpu(2)

    class Fake:
        platform = "gpu"

    assert not on_cpu([Fake()])
