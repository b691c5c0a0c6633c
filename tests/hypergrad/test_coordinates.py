"""Natural (log) and unit-cube coordinates of hypergradients."""

import math

import numpy as np
import pytest

from hsens_jax.hypergrad.coordinates import DEFAULT_LOG_SCALED, log_scaled_names, natural_gradient, unit_gradient
from hsens_jax.hypergrad.core import hypergradient
from hsens_jax.space import Categorical, Float, Space

from .conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, key0, runge_data

SPACE = Space([Float("learning_rate", 1e-3, 1.0, log=True), Float("momentum", 0.0, 0.95),
               Float("weight_decay", 1e-6, 1e-1, log=True), Categorical("optimizer", ["sgd", "momentum"])])


def test_log_scaled_names():
    assert log_scaled_names() == DEFAULT_LOG_SCALED
    assert log_scaled_names(SPACE) == ("learning_rate", "weight_decay")
    assert log_scaled_names(SPACE, ["momentum"]) == ("momentum",)
    with pytest.raises(TypeError, match="log_scaled"):
        log_scaled_names(log_scaled="learning_rate")
    with pytest.raises(TypeError, match="space"):
        log_scaled_names(space={"learning_rate": 1})


def test_natural_is_x_times_raw():
    g = {"learning_rate": np.array([2.0, -1.0]), "momentum": np.array([0.5, 3.0])}
    x = {"learning_rate": np.array([0.1, 0.01]), "momentum": np.array([0.9, 0.5])}
    nat = natural_gradient(g, x, ["learning_rate"])
    np.testing.assert_allclose(nat["learning_rate"], [0.2, -0.01])
    np.testing.assert_array_equal(nat["momentum"], g["momentum"])


def test_natural_is_the_derivative_in_log_coordinates():
    """d/dlog(x) of Y(x) = x^2 sin(x) by central differences in log x equals x * Y'(x)."""
    x, h = 0.7, 1e-6
    y = lambda v: v ** 2 * math.sin(v)  # noqa: E731
    raw = 2 * x * math.sin(x) + x ** 2 * math.cos(x)
    fd_log = (y(math.exp(math.log(x) + h)) - y(math.exp(math.log(x) - h))) / (2 * h)
    assert natural_gradient({"a": raw}, {"a": x}, ["a"])["a"] == pytest.approx(fd_log, rel=1e-8)


def test_unit_gradient_is_the_chain_rule_through_from_unit():
    """dY/du by central differences through Space.from_unit equals unit_gradient of the raw derivative."""
    space = Space([Float("learning_rate", 1e-3, 1.0, log=True), Float("momentum", 0.0, 0.95)])
    a, b = 0.3, -1.7
    Y = lambda c: a * np.log(c["learning_rate"]) ** 2 + b * np.sin(3 * c["momentum"])  # noqa: E731
    U = np.array([[0.3, 0.6], [0.8, 0.1]])
    c = space.from_unit(U)
    raw = {"learning_rate": 2 * a * np.log(c["learning_rate"]) / c["learning_rate"],
           "momentum": 3 * b * np.cos(3 * c["momentum"])}
    got = unit_gradient(raw, c, space)
    h = 1e-6
    for j, name in enumerate(space.names):
        E = np.zeros_like(U)
        E[:, j] = h
        fd = (Y(space.from_unit(U + E)) - Y(space.from_unit(U - E))) / (2 * h)
        np.testing.assert_allclose(got[name], fd, rtol=1e-6)
    with pytest.raises(ValueError, match="optimizer"):
        unit_gradient({"optimizer": 1.0}, {"optimizer": 0.0}, SPACE)


def test_hypergradient_natural_equals_raw_times_x(x64):
    data = runge_data()
    r = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), RUNGE_WRT, mode="reverse", coordinates="raw")
    n = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), RUNGE_WRT, mode="reverse", space=SPACE)
    for name in RUNGE_WRT:
        x = RUNGE_VALUES[name]
        expect = x * float(r.grad_raw[name]) if name in ("learning_rate", "weight_decay") else float(r.grad_raw[name])
        assert float(n.grad[name]) == pytest.approx(expect, rel=1e-14)
        assert float(n.grad_natural[name]) == float(n.grad[name])
        assert float(r.grad[name]) == float(r.grad_raw[name])
    assert float(n.grad_norm) == pytest.approx(math.sqrt(sum(float(n.grad[k]) ** 2 for k in RUNGE_WRT)), rel=1e-14)
    assert float(r.grad_norm) == pytest.approx(math.sqrt(sum(float(r.grad[k]) ** 2 for k in RUNGE_WRT)), rel=1e-14)
