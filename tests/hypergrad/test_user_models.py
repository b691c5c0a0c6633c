"""Hypergradients through a user's model: its own loss hyperparameters, and the engine's optimizer
settings, in every mode, against central finite differences in float64."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hsens_jax as hs
from hsens_jax.data import Dataset
from hsens_jax.hypergrad.core import hypergradient
from hsens_jax.hypergrad.unrolled import unrolled_objective
from hsens_jax.engine.train import hp_from_values


class Tanh(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10)(jnp.tanh(nn.Dense(self.width)(x.reshape(x.shape[0], -1))))


def tempered_loss(outputs, batch, hp):
    """Cross-entropy of tempered logits plus a penalty on the logits' size: two loss hyperparameters."""
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs / hp["temperature"], batch["y"]).mean()
    return ce + hp["penalty"] * jnp.mean(outputs ** 2)


MODEL = hs.Model(lambda hp: Tanh(hp["width"]), loss=tempered_loss)
VALUES = {"learning_rate": 0.05, "momentum": 0.8, "optimizer": "momentum", "temperature": 1.3, "penalty": 0.02,
          "width": 4, "steps": 5, "batch_size": 20}
WRT = ("learning_rate", "temperature", "penalty")


def _central(spec, data, values, key, wrt, h=1e-5):
    hp = hp_from_values(values, spec)
    f = jax.jit(lambda x: unrolled_objective(spec, data, hp, key, wrt)(x)[0])
    x0 = {n: hp[n] for n in wrt}
    out = {}
    for n in wrt:
        step = h * max(1.0, abs(float(x0[n])))
        out[n] = (float(f({**x0, n: x0[n] + step})) - float(f({**x0, n: x0[n] - step}))) / (2 * step)
    return out


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        ds = hs.load_dataset("digits", n_train=80)
        spec, data = hs.engine.program(ds, VALUES, model=MODEL)
        yield spec, data, _central(spec, data, VALUES, jax.random.key(0), WRT)


@pytest.mark.parametrize("mode", ["reverse", "checkpointed", "forward"])
def test_every_unrolled_mode_equals_finite_differences(problem, mode):
    """(Truncated mode is reverse mode over the last k steps: model-agnostic, tested in
    test_unrolled.py.)"""
    spec, data, fd = problem
    assert dict(spec.static)["width"] == 4  # the Int read as a Python value: static
    with jax.enable_x64(True):
        g = hypergradient(spec, data, VALUES, jax.random.key(0), WRT, mode=mode, coordinates="raw")
    for n in WRT:
        assert float(g.grad_raw[n]) == pytest.approx(fd[n], rel=1e-5, abs=1e-9), (mode, n)


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1)(x)


def ridge_loss(outputs, batch, hp):
    return 0.5 * jnp.mean((outputs - batch["y"]) ** 2) + 0.5 * hp["ridge"] * jnp.mean(outputs ** 2)


def test_implicit_mode_on_a_user_loss_hyperparameter_at_convergence():
    """A user's penalty weight enters the training loss: at a stationary point (full-batch
    gradient descent on a convex problem, trained to convergence) the implicit hypergradient
    equals central differences of the trained validation loss."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4))
    y = x @ rng.standard_normal(4) + 0.3 * rng.standard_normal(60)
    xv = rng.standard_normal((30, 4))
    yv = xv @ rng.standard_normal(4) * 0.5
    with jax.enable_x64(True):
        ds = Dataset.from_arrays(x, y, task="regression", x_val=xv, y_val=yv)
        values = {"learning_rate": 0.3, "ridge": 0.2, "optimizer": "sgd", "steps": 600, "batch_size": 60}
        model = hs.Model(lambda hp: Linear(), loss=ridge_loss)
        spec, data = hs.engine.program(ds, values, model=model)
        g = hypergradient(spec, data, values, jax.random.key(0), ("ridge",), mode="implicit", coordinates="raw")
        fd = _central(spec, data, values, jax.random.key(0), ("ridge",), h=1e-4)
        assert float(g.stationarity) < 1e-8
        assert float(g.grad_raw["ridge"]) == pytest.approx(fd["ridge"], rel=1e-5)
        # a hyperparameter of the optimizer only does not move the stationary point: refused
        with pytest.raises(ValueError, match="learning_rate.*do not"):
            hypergradient(spec, data, values, jax.random.key(0), ("learning_rate",), mode="implicit")
