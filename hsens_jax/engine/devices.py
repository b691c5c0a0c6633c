"""One JAX device per CPU core, so that a sweep's runs shard across the cores.

On a CPU, JAX exposes a single device by default. One XLA program then uses several cores
only inside its larger operations, and a sweep of many small networks keeps about one core
busy. With the CPU split into one JAX device per core, :func:`hsens_jax.run_sweep` shards
every chunk's runs over the devices (see :mod:`hsens_jax.engine.sweep`) and each core trains its
share. The ``hsens`` command line does this by default (``--cpu-devices``). Measured on a
2-core AMD EPYC, three runs each, interleaved: the sweep of ``hsens demo`` (256 MLPs on the
digits) took 21.7-23.8 s on two CPU devices and 25.3-28.5 s on one.

JAX fixes its devices at its first computation, so :func:`use_cpu_cores` must run before
anything is computed: at the top of a script, after ``import jax``.

Reproducibility: each device compiles the program for its share of a chunk, so a
different number of devices changes array shapes and hence the rounding of float sums.
Results are reproducible for a given number of devices. Configurations whose training is
chaotic (very large learning rates, for instance) amplify such last-bit differences.
"""

from __future__ import annotations

import os

import jax

_FLAG = "xla_force_host_platform_device_count"


def cpu_cores() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def use_cpu_cores(n: int | None = None) -> int:
    """Ask JAX for ``n`` CPU devices (default: one per core this process may use).

    Leaves JAX as it is, and returns the number of CPU devices it has or will have, when
    that number was already chosen: by ``XLA_FLAGS`` (``--xla_force_host_platform_device_count``),
    by an earlier ``jax.config.update("jax_num_cpu_devices", ...)``, or by a computation
    that already initialized JAX's devices.

    Args:
      n: CPU devices wanted, >= 1; ``None`` for one per core.

    Returns:
      The number of CPU devices JAX uses.

    Raises:
      ValueError: ``n`` is not a positive integer.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"the number of CPU devices must be a positive integer, got {n!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in flags.split():
        if flag.lstrip("-").startswith(_FLAG + "="):
            return int(flag.split("=", 1)[1])
    chosen = jax.config.jax_num_cpu_devices
    if chosen is not None and chosen > 0:
        return int(chosen)
    want = cpu_cores() if n is None else n
    try:
        jax.config.update("jax_num_cpu_devices", want)
    except RuntimeError:  # JAX has computed something already: its devices are fixed
        return len(jax.devices("cpu"))
    return want


CPU_CONFIGS_PER_CHUNK = 2
"""Configurations per compiled call that searches with early stopping use by default on a CPU
(times their seeds and folds).

A vectorized chunk trains until its slowest run stops, and on a CPU a chunk's time grows with
its runs; on a GPU extra runs are nearly free. Measured on 2 CPU cores (the classic
``GridSearchCV`` grid, 48 candidates x 3 folds, warm caches, one run each): chunks of 6 runs
(2 candidates x 3 folds) took 5.9 s, of 4 runs 6.1 s, of 12 7.3 s, of 18 7.9 s, whole programs
(36 runs) 8.3-9.0 s."""


def on_cpu(devices=None) -> bool:
    """Whether ``devices`` (default: JAX's) are CPU devices."""
    import jax

    try:
        platform = (jax.devices() if devices is None else list(devices))[0].platform
    except (TypeError, AttributeError, IndexError):  # a device count, a name...: JAX's devices
        platform = jax.devices()[0].platform
    return platform == "cpu"
