import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hsens_jax.engine.optimizers import OPTIMIZERS, make_optimizer

HP = dict(learning_rate=0.05, momentum=0.8, b1=0.85, b2=0.99, eps=1e-7, weight_decay=0.01, rms_decay=0.95)

REFERENCE = {
    "sgd": lambda: optax.chain(optax.add_decayed_weights(0.01), optax.sgd(0.05)),
    "momentum": lambda: optax.chain(optax.add_decayed_weights(0.01), optax.sgd(0.05, momentum=0.8)),
    "nesterov": lambda: optax.chain(optax.add_decayed_weights(0.01), optax.sgd(0.05, momentum=0.8, nesterov=True)),
    "adam": lambda: optax.chain(optax.add_decayed_weights(0.01), optax.adam(0.05, b1=0.85, b2=0.99, eps=1e-7)),
    "adamw": lambda: optax.adamw(0.05, b1=0.85, b2=0.99, eps=1e-7, weight_decay=0.01),
    "rmsprop": lambda: optax.chain(optax.add_decayed_weights(0.01), optax.rmsprop(0.05, decay=0.95, eps=1e-7)),
}


def _run(tx, steps=15):
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
    target = jnp.array([0.2, 0.1, -0.4])

    def loss(p):
        return jnp.sum((p["w"] - target) ** 2 * jnp.array([1.0, 3.0, 0.5])) + (p["b"] - 1.0) ** 2

    state = tx.init(params)
    for _ in range(steps):
        g = jax.grad(loss)(params)
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
    return params


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_selected_optimizer_equals_optax_reference(name):
    """Choosing optimizer i among all of them gives exactly optax's own optimizer."""
    ours = _run(make_optimizer(OPTIMIZERS, choice=OPTIMIZERS.index(name), **HP))
    ref = _run(REFERENCE[name]())
    for k in ours:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-6, atol=1e-7)


def test_single_optimizer_and_vmapped_choice():
    single = _run(make_optimizer(("adam",), choice=0, **HP))
    ref = _run(REFERENCE["adam"]())
    np.testing.assert_allclose(single["w"], ref["w"], rtol=1e-6)

    # a batch of configurations, each with its own optimizer and learning rate
    def run_one(choice, lr):
        return _run(make_optimizer(("sgd", "adam"), choice=choice, **{**HP, "learning_rate": lr}), steps=5)

    out = jax.vmap(run_one)(jnp.array([0, 1]), jnp.array([0.05, 0.05]))
    np.testing.assert_allclose(out["w"][0], _run(REFERENCE["sgd"](), 5)["w"], rtol=1e-6)
    np.testing.assert_allclose(out["w"][1], _run(REFERENCE["adam"](), 5)["w"], rtol=1e-6)


def test_errors_name_the_culprit():
    with pytest.raises(ValueError, match="lion"):
        make_optimizer(("sgd", "lion"), choice=0, **HP)
    with pytest.raises(ValueError, match="empty"):
        make_optimizer((), choice=0, **HP)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer(("sgd",), choice=0, **{k: v for k, v in HP.items() if k != "momentum"})
