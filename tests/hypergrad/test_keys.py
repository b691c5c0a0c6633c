"""Every public hypergradient entry point takes both kinds of PRNG key: ``jax.random.key``
(typed, what the examples create; here) and the legacy ``jax.random.PRNGKey`` (uint32 data;
the other hypergradient tests use it throughout)."""

import warnings

import jax
import numpy as np
import pytest  # noqa: F401

import hsens_jax as hs
from hsens_jax.hypergrad import hypergradient, hypergradient_descent, hypergradient_dgsm, hypergradients

VALUES = {"learning_rate": 0.05, "weight_decay": 1e-3, "width": 8, "depth": 1, "steps": 4, "batch_size": 32,
          "optimizer": "sgd"}
WRT = ("learning_rate", "weight_decay")


@pytest.fixture(scope="module")
def program():
    return hs.engine.program(hs.load_dataset("digits", n_train=200), VALUES)


def test_checkpointed_mode_with_a_typed_key(program):
    """Checkpointed mode sized its segments from the loop state's bytes, which failed on typed
    keys ('Cannot interpret key<fry> as a data type'); a typed key now gives the legacy key's result."""
    spec, data = program
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = hypergradient(spec, data, VALUES, jax.random.key(0), WRT, mode="checkpointed", coordinates="raw")
        ref = hypergradient(spec, data, VALUES, jax.random.PRNGKey(0), WRT, mode="reverse", coordinates="raw")
    for n in WRT:
        np.testing.assert_allclose(float(got.grad_raw[n]), float(ref.grad_raw[n]), rtol=1e-4)


def test_batched_entry_points_with_typed_keys(program):
    spec, data = program
    key = jax.random.key(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many = hypergradients(spec, data, {"learning_rate": [0.05, 0.1]}, key, WRT, mode="checkpointed")
        assert np.asarray(many.value).shape == (2,)
        traj = hypergradient_descent(spec, data, VALUES, key, ("learning_rate",), n_iters=1, mode="checkpointed")
        assert np.asarray(traj.values["learning_rate"]).shape[0] == 2
        space = hs.Space([hs.Float("learning_rate", 0.01, 0.1, log=True)])
        dgsm = hypergradient_dgsm(spec, data, space, key, n=2, fixed={k: v for k, v in VALUES.items()
                                                                      if k in ("weight_decay", "optimizer")})
        assert np.isfinite(np.asarray(dgsm.nu)).all()
