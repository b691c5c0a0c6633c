import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

# One CPU device in the test process, whatever runs first: the CLI splits the CPU into one
# device per core when it is the first to compute (hsens_jax.engine.devices), and the in-process CLI
# tests must not change the devices of the tests after them. Multi-device runs are tested
# in subprocesses.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", 1)
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_digits():
    """300 digits examples (240 train / 60 validation): fast and offline."""
    from hsens_jax.data import load_dataset

    return load_dataset("digits", n_train=300, seed=0)
