import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_digits():
    """300 digits examples (240 train / 60 validation): fast and offline."""
    from hsens_jax.data import load_dataset

    return load_dataset("digits", n_train=300, seed=0)
