"""The symmetric-Hessian adjoint of a training step against JAX's own transpose (float64)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.hypergrad.adjoint import has_batch_stats, symmetric_step
from hsens_jax.hypergrad.core import hypergradient, hypergradients
from hsens_jax.hypergrad.unrolled import unrolled_gradient
from hsens_jax.engine.builtin import sized_model
from hsens_jax.engine.train import TrainSpec, batch_indices, hp_from_values, init_carry, train_step

from .conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, digits_data, key0, runge_data

# digits, 2 hidden layers with dropout, label smoothing (a hyperparameter inside the loss)
DIGITS_SPEC = TrainSpec(sized_model("mlp", 12, 2, 10, (8, 8, 1), dropout=True), "classification", batch_size=25,
                        n_steps=12, n_train=200, optimizers=("adam", "momentum"))
DIGITS_VALUES = {"learning_rate": 3e-3, "weight_decay": 1e-3, "label_smoothing": 0.1, "dropout": 0.2,
                 "momentum": 0.9, "init_scale": 1.1}
DIGITS_WRT = ("learning_rate", "weight_decay", "label_smoothing", "init_scale", "b1", "momentum")


def _steps(spec, data, hp, n, step_fn):
    """``n`` engine steps from the initialization; returns (state, sum of the step losses)."""
    carry = init_carry(spec, data, hp, key0())
    state, perm, total = carry.state, carry.perm, 0.0
    for t in range(n):
        perm, idx, dkey = batch_indices(spec, carry.keys, perm, jnp.int32(t))
        state, loss = step_fn(spec, data, hp, state, idx, dkey, jnp.int32(t))
        total = total + loss
    return state, total


def _plain(spec, data, hp, state, idx, dkey, t):
    return train_step(spec, data, hp, state, idx, dkey, t, guard=False)


def _float_leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact)]


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_step_values_and_vjp_equal_autodiff(optimizer, x64):
    """Same state as the engine's lean step; the pullback of a random cotangent of the new state and
    of the loss, with respect to the old state and the hyperparameters, equals JAX's to rounding."""
    data = digits_data()
    spec = DIGITS_SPEC
    hp = hp_from_values({**DIGITS_VALUES, "optimizer": optimizer}, spec)
    state0, _ = jax.jit(lambda hp: _steps(spec, data, hp, 3, _plain))(hp)  # a state with moments
    perm = jax.random.permutation(key0(), spec.n_train)[: spec.batch_size]
    dkey, t = jax.random.PRNGKey(5), jnp.int32(3)
    fl = {k: v for k, v in hp.items() if jnp.issubdtype(v.dtype, jnp.inexact)}

    def run(step_fn):
        def f(state, fl):
            new, loss = step_fn(spec, data, {**hp, **fl}, state, perm, dkey, t)
            return (new.params, new.opt_state), loss

        out, pull = jax.vjp(f, state0, fl)
        leaves, treedef = jax.tree.flatten(out)
        rng = np.random.default_rng(0)
        ct = [jnp.asarray(rng.normal(size=a.shape)) if jnp.issubdtype(a.dtype, jnp.inexact)
              else np.zeros(a.shape, jax.dtypes.float0) for a in leaves]
        return out, pull(jax.tree.unflatten(treedef, ct))

    out_s, (ds_s, dh_s) = jax.jit(lambda: run(symmetric_step))()
    out_a, (ds_a, dh_a) = jax.jit(lambda: run(_plain))()
    for a, b in zip(_float_leaves(out_s), _float_leaves(out_a)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    grads_s = _float_leaves((ds_s.params, ds_s.opt_state))
    grads_a = _float_leaves((ds_a.params, ds_a.opt_state))
    assert max(np.max(np.abs(g)) for g in grads_a) > 1e-3  # a cotangent that reaches the state
    for a, b in zip(grads_s, grads_a):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10 * max(1.0, np.max(np.abs(b))))
    for k in fl:
        np.testing.assert_allclose(np.asarray(dh_s[k]), np.asarray(dh_a[k]), rtol=1e-9, atol=1e-12, err_msg=k)
    assert abs(float(dh_a["label_smoothing"])) > 1e-6  # the loss's own hyperparameter gets an adjoint


@pytest.mark.parametrize("mode,kw", [("reverse", {}), ("checkpointed", {"checkpoint_every": 5}),
                                     ("truncated", {"truncate": 7})])
def test_hypergradients_equal_autodiff(mode, kw, x64):
    """Whole-run hypergradients with the symmetric adjoint (the default) equal JAX's transpose."""
    data = digits_data()
    hp = hp_from_values({**DIGITS_VALUES, "optimizer": "adam"}, DIGITS_SPEC)

    def grad(adjoint):
        fn = jax.jit(lambda hp: unrolled_gradient(DIGITS_SPEC, data, hp, key0(), DIGITS_WRT, mode=mode,
                                                  adjoint=adjoint, **kw))
        return fn(hp)

    (v_s, g_s, _), (v_a, g_a, _) = grad("symmetric"), grad("autodiff")
    np.testing.assert_allclose(float(v_s), float(v_a), rtol=1e-13)  # the same training run
    for n in DIGITS_WRT:
        np.testing.assert_allclose(float(g_s[n]), float(g_a[n]), rtol=1e-9, atol=1e-12, err_msg=n)
    assert float(g_a["label_smoothing"]) != 0.0


def test_regression_and_cnn(x64):
    """The Runge regression (SGD with momentum, cosine schedule: every differentiable
    hyperparameter) and a small CNN with max pooling."""
    data = runge_data()
    hp = hp_from_values(RUNGE_VALUES, RUNGE_SPEC)
    out = {a: jax.jit(lambda hp, a=a: unrolled_gradient(RUNGE_SPEC, data, hp, key0(), RUNGE_WRT, mode="reverse",
                                                        adjoint=a))(hp) for a in ("symmetric", "autodiff")}
    for n in RUNGE_WRT:
        np.testing.assert_allclose(float(out["symmetric"][1][n]), float(out["autodiff"][1][n]), rtol=1e-9, err_msg=n)

    digits = digits_data()
    spec = TrainSpec(sized_model("cnn", 4, 1, 10, (8, 8, 1)), "classification", batch_size=20, n_steps=6,
                     n_train=200, optimizers=("adam",))
    hp = hp_from_values({"learning_rate": 3e-3, "weight_decay": 1e-3}, spec)
    wrt = ("learning_rate", "weight_decay", "init_scale")
    out = {a: jax.jit(lambda hp, a=a: unrolled_gradient(spec, digits, hp, key0(), wrt, mode="reverse",
                                                        adjoint=a))(hp) for a in ("symmetric", "autodiff")}
    for n in wrt:
        np.testing.assert_allclose(float(out["symmetric"][1][n]), float(out["autodiff"][1][n]), rtol=1e-9, err_msg=n)


def test_batch_norm_falls_back_to_the_plain_step(x64):
    data = digits_data()
    spec = dataclasses.replace(DIGITS_SPEC, model=sized_model("mlp", 12, 1, 10, (8, 8, 1), batch_norm=True),
                               n_steps=4)
    hp = hp_from_values({**DIGITS_VALUES, "optimizer": "adam", "batch_norm": True}, spec)
    assert has_batch_stats(init_carry(spec, data, hp, key0()).state)
    assert not has_batch_stats(init_carry(DIGITS_SPEC, data, hp_from_values(DIGITS_VALUES, DIGITS_SPEC), key0()).state)
    g = {a: jax.jit(lambda hp, a=a: unrolled_gradient(spec, data, hp, key0(), ("learning_rate",), mode="reverse",
                                                      adjoint=a))(hp)[1]["learning_rate"]
         for a in ("symmetric", "autodiff")}
    assert float(g["symmetric"]) == float(g["autodiff"])


def test_less_memory_than_autodiff_in_reverse_mode():
    """XLA's peak temporary memory of plain reverse mode (T = 200, float32): the symmetric adjoint
    stores per step the step's inputs and gradient instead of every intermediate (measured
    10.7 against 14.8 MiB: 0.72; the autodiff adjoint's residuals include Adam's, which
    hsens_jax.engine.adam's derivative rule keeps small)."""
    data = digits_data()
    spec = TrainSpec(sized_model("mlp", 32, 1, 10, (8, 8, 1)), "classification", batch_size=64, n_steps=200,
                     n_train=200, optimizers=("adam",))
    hp = hp_from_values({"learning_rate": 1e-3, "weight_decay": 1e-4}, spec)

    def temp(adjoint):
        fn = jax.jit(lambda hp: unrolled_gradient(spec, data, hp, key0(), ("learning_rate",), mode="reverse",
                                                  adjoint=adjoint))
        return fn.lower(hp).compile().memory_analysis().temp_size_in_bytes

    assert temp("symmetric") < 0.8 * temp("autodiff")


def test_unknown_adjoint_is_named():
    data = runge_data()
    hp = hp_from_values(RUNGE_VALUES, RUNGE_SPEC)
    with pytest.raises(ValueError, match="adjoint='transpose'"):
        unrolled_gradient(RUNGE_SPEC, data, hp, key0(), ("learning_rate",), mode="reverse", adjoint="transpose")
    for fn in (hypergradient, hypergradients):
        with pytest.raises(ValueError, match="adjoint='hvp'"):
            fn(RUNGE_SPEC, data, RUNGE_VALUES, key0(), ("learning_rate",), mode="checkpointed", adjoint="hvp")


def test_public_api_passes_the_adjoint_through(x64):
    """``hypergradient``/``hypergradients(..., adjoint=...)``: both rules, the same numbers."""
    data = runge_data()
    one = {a: hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), ("learning_rate", "momentum"), mode="checkpointed",
                            coordinates="raw", adjoint=a).grad_raw for a in ("symmetric", "autodiff")}
    configs = {k: [v, v] for k, v in RUNGE_VALUES.items()}
    configs["learning_rate"] = [RUNGE_VALUES["learning_rate"], 0.1]
    many = hypergradients(RUNGE_SPEC, data, configs, key0(), ("learning_rate",),
                          mode="reverse", coordinates="raw", adjoint="autodiff").grad_raw["learning_rate"]
    for n in ("learning_rate", "momentum"):
        np.testing.assert_allclose(float(one["symmetric"][n]), float(one["autodiff"][n]), rtol=1e-9)
    np.testing.assert_allclose(float(many[0]), float(one["autodiff"]["learning_rate"]), rtol=1e-9)
