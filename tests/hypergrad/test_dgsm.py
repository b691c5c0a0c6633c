"""DGSM from hypergradients: textbook estimator, SALib, and the unit-cube chain rule."""

import math

import numpy as np
import pytest
from SALib.analyze import dgsm as salib_dgsm
from SALib.sample import finite_diff

from hsens_jax.hypergrad.core import hypergradient
from hsens_jax.hypergrad.dgsm import dgsm_from_gradients, hypergradient_dgsm
from hsens_jax.space import Categorical, Float, Space

from .conftest import RUNGE_SPEC, RUNGE_WRT, key0, runge_data


def _f(X):
    """Analytic test function on [0,1]x[1,3]x[-1,2]: Y = sin(2 x0) + x1^2 x2 + 0.1 x2^3."""
    return np.sin(2 * X[:, 0]) + X[:, 1] ** 2 * X[:, 2] + 0.1 * X[:, 2] ** 3


def _grad(X):
    return np.stack([2 * np.cos(2 * X[:, 0]), 2 * X[:, 1] * X[:, 2], X[:, 1] ** 2 + 0.3 * X[:, 2] ** 2], axis=1)


def test_dgsm_from_gradients_matches_salib():
    bounds = [[0.0, 1.0], [1.0, 3.0], [-1.0, 2.0]]
    problem = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": bounds}
    X = finite_diff.sample(problem, 256, delta=1e-7, seed=1)
    Y = _f(X)
    ref = salib_dgsm.analyze(problem, X, Y, seed=1)
    base = X[::4]
    width = np.array([b[1] - b[0] for b in bounds])
    nu, nu_se, normalized, bound = dgsm_from_gradients(_grad(base) * width, _f(base))
    np.testing.assert_allclose(nu / width ** 2, ref["vi"], rtol=1e-5)
    np.testing.assert_allclose(bound, ref["dgsm"], rtol=1e-5)
    # textbook NumPy
    G = _grad(base) * width
    np.testing.assert_allclose(nu, np.mean(G ** 2, axis=0), rtol=1e-14)
    np.testing.assert_allclose(nu_se, np.std(G ** 2, axis=0, ddof=1) / math.sqrt(len(G)), rtol=1e-14)
    np.testing.assert_allclose(normalized, nu / nu.sum(), rtol=1e-14)
    assert normalized.sum() == pytest.approx(1.0)


def test_dgsm_bound_dominates_total_index_of_an_additive_function():
    """Y = sum a_i u_i on U[0,1]^3: S_tot_i = a_i^2 / sum a^2 and nu_i / (pi^2 Var Y) = (12/pi^2) S_tot_i."""
    a = np.array([1.0, 2.0, 0.5])
    U = np.random.default_rng(0).random((200_000, 3))
    Y = U @ a
    nu, _, normalized, bound = dgsm_from_gradients(np.tile(a, (len(U), 1)), Y)
    np.testing.assert_allclose(nu, a ** 2)
    s_tot = a ** 2 / np.sum(a ** 2)
    np.testing.assert_allclose(bound, 12 / np.pi ** 2 * s_tot, rtol=0.01)
    assert np.all(bound >= s_tot)


def test_dgsm_from_gradients_checks_shapes():
    with pytest.raises(ValueError, match="unit_gradients"):
        dgsm_from_gradients(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="at least 2"):
        dgsm_from_gradients(np.ones((1, 2)), np.ones(1))


SPACE = Space([Float("learning_rate", 0.05, 0.5, log=True), Float("momentum", 0.5, 0.9),
               Float("weight_decay", 1e-4, 1e-2, log=True), Float("warmup", 0.05, 0.2),
               Float("final_lr_fraction", 0.05, 0.5), Float("init_scale", 0.8, 1.5),
               Categorical("schedule", ["cosine"])])
FIXED = {"optimizer": "momentum", "activation": "tanh"}


def test_hypergradient_dgsm_on_training(x64):
    data = runge_data()
    res = hypergradient_dgsm(RUNGE_SPEC, data, SPACE, key0(), n=3, design="random", fixed=FIXED, mode="forward")
    assert res.names == RUNGE_WRT
    assert res.unit_gradients.shape == (3, 6) and res.finite.all()
    # each row is the hypergradient of that configuration, mapped by the chain rule
    i = 2
    values = {**FIXED, "schedule": "cosine", **{k: float(res.configs[k][i]) for k in RUNGE_WRT}}
    one = hypergradient(RUNGE_SPEC, data, values, key0(), RUNGE_WRT, mode="forward", coordinates="raw")
    assert res.Y[i] == pytest.approx(float(one.value), rel=1e-12)
    for j, n in enumerate(RUNGE_WRT):
        p = SPACE[n]
        scale = math.log(p.high / p.low) * values[n] if p.log else p.high - p.low
        assert res.raw_gradients[i, j] == pytest.approx(float(one.grad_raw[n]), rel=1e-9)
        assert res.unit_gradients[i, j] == pytest.approx(scale * float(one.grad_raw[n]), rel=1e-9)
    nu, nu_se, normalized, bound = dgsm_from_gradients(res.unit_gradients, res.Y)
    np.testing.assert_allclose(res.nu, nu)
    np.testing.assert_allclose(res.total_upper_bound, bound)
    np.testing.assert_array_equal(res.bounds[0], [0.05, 0.5])
    np.testing.assert_array_equal(res.log, [True, False, True, False, False, False])
    # the sensitivity module's DGSM, fed the unit-cube hypergradients, gives the same indices
    from hsens_jax.sensitivity import dgsm_indices

    d = len(RUNGE_WRT)
    via_sensitivity = dgsm_indices(res.unit_gradients, res.Y, np.tile([0.0, 1.0], (d, 1)), names=RUNGE_WRT)
    np.testing.assert_allclose(via_sensitivity.vi, res.nu, rtol=1e-12)
    np.testing.assert_allclose(via_sensitivity.dgsm, res.total_upper_bound, rtol=1e-12)


def test_hypergradient_dgsm_checks_arguments():
    with pytest.raises(TypeError, match="space"):
        hypergradient_dgsm(RUNGE_SPEC, runge_data(), {"learning_rate": 1}, key0())
    with pytest.raises(ValueError, match="not a Float"):
        hypergradient_dgsm(RUNGE_SPEC, runge_data(), SPACE, key0(), wrt=("schedule",))
    with pytest.raises(ValueError, match="also a hyperparameter"):
        hypergradient_dgsm(RUNGE_SPEC, runge_data(), SPACE, key0(), fixed={"momentum": 0.5})
    with pytest.raises(ValueError, match="no continuous"):
        hypergradient_dgsm(RUNGE_SPEC, runge_data(), Space([Float("dropout", 0.0, 0.5)]), key0())
