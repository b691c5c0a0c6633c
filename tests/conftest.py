import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests train tiny networks for a few steps: XLA's compile time dominates their run
# time, and its backend optimizations buy nothing there. (Numerics are unaffected.)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_digits():
    """300 digits examples (240 train / 60 validation): fast and offline."""
    from hsens_jax.data import load_dataset

    return load_dataset("digits", n_train=300, seed=0)
