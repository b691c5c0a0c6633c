"""Design-based estimators driven by real trainings through the sweep engine."""

import numpy as np

from hsens_jax.objective import sweep_objective
from hsens_jax.sensitivity import one_at_a_time, sobol
from hsens_jax.space import Categorical, Float, Int, Space

SPACE = Space([
    Float("learning_rate", 1e-3, 0.5, log=True),
    Categorical("optimizer", ["sgd", "adam"]),
    Int("width", 4, 16),
])
FIXED = {"steps": 15, "depth": 1, "batch_size": 32}


def test_one_at_a_time_trains_every_variation_in_one_sweep(small_digits):
    f = sweep_objective(small_digits, SPACE, fixed=FIXED, objective=["final_val_loss", "param_count"])
    base = {"learning_rate": 0.05, "optimizer": "sgd", "width": 8}
    res = one_at_a_time(f, SPACE, base, n_points=3)
    swept = f.last_result
    assert swept.meta["n_configs"] == 3 + 2 + 13  # every variation (all 13 widths), in one call
    # parameter count depends on width only: zero spread for the others
    spread = np.asarray(res.range)
    names = list(res.names) if hasattr(res, "names") else list(SPACE.names)
    assert spread[names.index("width"), 1] > 0
    assert spread[names.index("learning_rate"), 1] == 0 and spread[names.index("optimizer"), 1] == 0
    assert spread[names.index("learning_rate"), 0] > 0


def test_sobol_over_a_space_of_trainings(small_digits):
    f = sweep_objective(small_digits, SPACE, fixed=FIXED, objective="param_count")
    res = sobol(f, SPACE, 8, seed=1)
    # parameter count is a function of width alone: its indices carry all the variance
    S1, ST = np.asarray(res.S1), np.asarray(res.ST)
    assert ST[2] > 0.5 and S1[2] > 0.5
    # f(AB_i) == f(A) exactly for the others: zero up to float32 rounding of the centring
    np.testing.assert_allclose(ST[:2], 0, atol=1e-6)
    np.testing.assert_allclose(S1[:2], 0, atol=1e-6)
