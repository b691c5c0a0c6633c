"""Shared tiny problems for the hypergradient tests (float64 inside each test)."""

import functools

import jax
import pytest

from hsens_jax.data import load_dataset
from hsens_jax.engine.builtin import sized_model
from hsens_jax.engine.train import TrainSpec, prepare_data

# Runge regression, one tanh layer of 8 units, SGD with momentum, cosine schedule with warmup,
# minibatches of 16 in the engine's fixed (seeded) order: 5 steps per epoch, 24 steps.
RUNGE_SPEC = TrainSpec(sized_model("mlp", 8, 1, 1, (1,), ("tanh",)), "regression", batch_size=16, n_steps=24,
                       n_train=80, optimizers=("momentum",), schedules=("cosine",))
RUNGE_VALUES = {"learning_rate": 0.2, "momentum": 0.8, "weight_decay": 1e-3, "warmup": 0.1,
                "final_lr_fraction": 0.1, "init_scale": 1.2, "optimizer": "momentum", "schedule": "cosine",
                "activation": "tanh"}
RUNGE_WRT = ("learning_rate", "momentum", "weight_decay", "warmup", "final_lr_fraction", "init_scale")


@functools.lru_cache(maxsize=None)
def _runge():
    return load_dataset("runge", n=100)


@functools.lru_cache(maxsize=None)
def _digits():
    return load_dataset("digits", n_train=200)


def runge_data():
    """TrainData of the Runge set in the current default dtype (call inside enable_x64)."""
    return prepare_data(_runge())


def digits_data():
    return prepare_data(_digits())


def key0():
    return jax.random.PRNGKey(0)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
