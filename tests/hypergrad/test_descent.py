"""Hypergradient descent on the learning rate and weight decay."""

import math

import jax
import numpy as np
import pytest

from hsens_jax.hypergrad.core import hypergradient
from hsens_jax.hypergrad.descent import hypergradient_descent
from hsens_jax.engine.builtin import sized_model
from hsens_jax.space import Float, Space
from hsens_jax.engine.train import TrainSpec

from .conftest import digits_data, key0

DIGITS = TrainSpec(sized_model("mlp", 16, 1, 10, (8, 8, 1), ("tanh",)), "classification", batch_size=32, n_steps=30,
                   n_train=160, optimizers=("sgd",))
START = {"learning_rate": 0.01, "weight_decay": 1e-3, "optimizer": "sgd", "activation": "tanh"}
SPACE = Space([Float("learning_rate", 1e-3, 0.05, log=True), Float("weight_decay", 1e-5, 1e-1, log=True)])


@pytest.fixture(scope="module")
def trajectory():
    with jax.enable_x64(True):
        data = digits_data()
        assert data.x_train.shape[0] == DIGITS.n_train
        tr = hypergradient_descent(DIGITS, data, START, key0(), n_iters=6, meta_lr=20.0, max_step=0.5, space=SPACE)
        first = hypergradient(DIGITS, data, START, key0(), ("learning_rate", "weight_decay"), mode="forward",
                              space=SPACE)
    return tr, first


def test_descent_lowers_the_validation_loss(trajectory):
    tr, _ = trajectory
    assert tr.objective.shape == (7,) and tr.finite.all()
    assert tr.objective[-1] < tr.objective[0] - 0.05
    assert tr.best_objective == tr.objective.min()
    assert tr.best["learning_rate"] == tr.values["learning_rate"][np.argmin(tr.objective)]


def test_steps_are_clipped_log_space_gradient_steps_inside_the_bounds(trajectory):
    tr, first = trajectory
    assert tr.objective[0] == pytest.approx(float(first.value), rel=1e-12)
    for n in ("learning_rate", "weight_decay"):
        assert tr.grads[n][0] == pytest.approx(float(first.grad_natural[n]), rel=1e-9)
        p = SPACE[n]
        for k in range(6):
            z = math.log(tr.values[n][k]) + np.clip(-20.0 * tr.grads[n][k], -0.5, 0.5)
            z = min(max(z, math.log(p.low)), math.log(p.high))
            assert tr.values[n][k + 1] == pytest.approx(math.exp(z), rel=1e-10)
    # the learning rate climbs to the space's upper bound and stays there
    assert tr.values["learning_rate"][-1] == pytest.approx(0.05, rel=1e-12)


def test_descent_checks_arguments():
    data = digits_data()
    with pytest.raises(ValueError, match="weight_decay"):
        hypergradient_descent(DIGITS, data, {**START, "weight_decay": 0.0}, key0())
    with pytest.raises(ValueError, match="meta_lr"):
        hypergradient_descent(DIGITS, data, START, key0(), meta_lr=-1.0)
    with pytest.raises(ValueError, match="n_iters"):
        hypergradient_descent(DIGITS, data, START, key0(), n_iters=-1)
    with pytest.raises(ValueError, match="implicit"):
        hypergradient_descent(DIGITS, data, START, key0(), mode="implicit")
