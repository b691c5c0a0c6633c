"""What the search tests share: one space and budget, so that their compiled programs are shared
too (a compilation costs seconds here, a trained batch a fraction of one)."""

import pytest

from hsens_jax.space import Categorical, Float, Int, Space

SPACE = Space([
    Float("learning_rate", 1e-3, 0.3, log=True),
    Categorical("optimizer", ["sgd", "momentum", "adam"]),
    Float("momentum", 0.5, 0.95, condition={"optimizer": "momentum"}),
    Int("width", 4, 8),
])
FIXED = {"epochs": 3, "depth": 1, "batch_size": 32}
N_EVALS = 3


@pytest.fixture
def space():
    return SPACE
