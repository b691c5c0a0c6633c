"""The experiments' user-written models: masking, counting hooks, the physics-informed loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import (BatemanNet, PerLayerMLP, ResidualCNN, bateman_pinn_loss, bateman_rate_matrix, cnn_counts,
                    mlp_counts, regression_loss)
from hsens_jax.data import bateman_solution


def _live_parameters(make_module, x, settings):
    """For each settings tuple, the parameters with a nonzero gradient of ``sum(sin(module(x)))``.

    The parameters are random normal draws of the shapes ``init`` gives (running ``init`` itself,
    eagerly or compiled, costs seconds and adds nothing: a masked unit's gradient is zero whatever
    its value). The architecture knobs are traced (as the engine traces them), so one compiled
    program serves every setting."""
    shapes = jax.eval_shape(lambda: make_module(*map(jnp.asarray, settings[0])).init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x))
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    variables = jax.tree.unflatten(treedef, [jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    @jax.jit
    def grads(params, *knobs):
        module = make_module(*knobs)
        loss = lambda p: jnp.sum(jnp.sin(module.apply({"params": p, **rest}, x, train=False)))  # noqa: E731
        return jax.grad(loss)(params)

    return [sum(int(np.count_nonzero(np.asarray(g))) for g in jax.tree.leaves(grads(params, *map(jnp.asarray, k))))
            for k in settings]


def test_per_layer_mlp_counts_are_the_parameters_that_learn():
    """Masked units and skipped layers get exactly zero gradient; the counting hook counts the rest."""
    settings = [(1, 3, 7, 2), (2, 5, 2, 6), (3, 4, 6, 1)]
    x = jax.random.normal(jax.random.key(2), (16, 5))
    live = _live_parameters(lambda d, w1, w2, w3: PerLayerMLP(max_width=8, max_depth=3, n_out=2, activations=("tanh",),
                                                              depth=d, widths=(w1, w2, w3)), x, settings)
    count = mlp_counts(5, 2, 3)
    for (depth, *widths), n_live in zip(settings, live):
        values = {"depth": np.array([depth], object), **{f"width_{l + 1}": np.array([w], object)
                                                         for l, w in enumerate(widths)}}
        params, flops = count(values)
        assert n_live == params[0]
        active = [5] + list(widths[:depth])
        assert flops[0] == 2 * (sum(a * b for a, b in zip(active[:-1], active[1:])) + widths[depth - 1] * 2)


def test_residual_cnn_counts_are_the_parameters_that_learn():
    settings = [(3, 0), (2, 1), (4, 1)]
    x = jax.random.normal(jax.random.key(3), (2, 3, 3, 2))
    live = _live_parameters(lambda c, b: ResidualCNN(max_channels=4, max_blocks=1, n_out=3, activations=("elu",),
                                                     channels=c, blocks=b), x, settings)
    count = cnn_counts((3, 3, 2), 3)
    for (channels, blocks), n_live in zip(settings, live):
        params, flops = count({"channels": np.array([channels], object), "blocks": np.array([blocks], object)})
        assert n_live == params[0]
        assert flops[0] == 2 * 9 * (9 * 2 * channels + 2 * blocks * 9 * channels ** 2) + 2 * channels * 3


def test_masked_mlp_ignores_inactive_layers_and_units():
    """Two configurations that differ only in an inactive layer's width give the same outputs."""
    x = jax.random.normal(jax.random.key(4), (8, 3))
    a = PerLayerMLP(max_width=6, max_depth=3, n_out=1, activations=("relu", "tanh"), activation=1, depth=2,
                    widths=(4, 3, 6))
    b = PerLayerMLP(max_width=6, max_depth=3, n_out=1, activations=("relu", "tanh"), activation=1, depth=2,
                    widths=(4, 3, 1))
    c = PerLayerMLP(max_width=6, max_depth=3, n_out=1, activations=("relu", "tanh"), activation=1, depth=3,
                    widths=(4, 3, 6))
    variables = jax.jit(a.init)(jax.random.key(0), x)
    ya, yb, yc = jax.jit(lambda v: (a.apply(v, x), b.apply(v, x), c.apply(v, x)))(variables)
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(ya, yc)


def test_bateman_net_derivative_and_pinn_residual():
    """BatemanNet's dN/dt is the derivative of its network in t; the residual vanishes on the exact solution."""
    inner = PerLayerMLP(max_width=8, max_depth=2, n_out=3, activations=("tanh",), depth=2, widths=(8, 8))
    net = BatemanNet(inner, h=1e-3)
    x = jnp.asarray(np.random.default_rng(0).uniform(0.1, 2.0, (6, 4)), jnp.float32)
    tangent = jnp.zeros_like(x).at[:, -1].set(1.0)

    @jax.jit
    def both(x):
        variables = net.init(jax.random.key(0), x)
        _, exact = jax.jvp(lambda z: inner.apply({"params": variables["params"]["net"]}, z), (x,), (tangent,))
        return net.apply(variables, x), exact

    out, exact = both(x)
    np.testing.assert_allclose(out["dudt"], exact, rtol=2e-2, atol=2e-3)

    rng = np.random.default_rng(1)
    rates, t = rng.uniform(0.1, 2.0, (32, 3)), rng.uniform(0.0, 5.0, 32)
    n = bateman_solution(rates, t)
    dndt = np.einsum("bij,bj->bi", np.asarray(bateman_rate_matrix(jnp.asarray(rates))), n)
    batch = {"x": jnp.asarray(np.c_[rates, t]), "y": jnp.asarray(n)}
    exact_outputs = {"y": jnp.asarray(n), "dudt": jnp.asarray(dndt)}
    assert float(bateman_pinn_loss(exact_outputs, batch, {"physics": True, "physics_weight": 1.0})) < 1e-12
    wrong = {"y": jnp.asarray(n), "dudt": jnp.zeros_like(jnp.asarray(dndt))}
    on = float(bateman_pinn_loss(wrong, batch, {"physics": True, "physics_weight": 0.5}))
    off = float(bateman_pinn_loss(wrong, batch, {"physics": False, "physics_weight": 0.5}))
    np.testing.assert_allclose(on, 0.5 * np.mean(dndt ** 2), rtol=1e-5)
    assert off == 0.0


def test_regression_loss_switches_between_mse_and_mae():
    out, y = jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [0.0]])
    assert float(regression_loss(out, {"y": y}, {"loss": jnp.int32(0)})) == pytest.approx(5.0)
    assert float(regression_loss(out, {"y": y}, {"loss": jnp.int32(1)})) == pytest.approx(2.0)
