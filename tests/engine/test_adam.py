"""hsens_jax.engine.adam: optax's Adam(W) values, with its own (exact) derivative."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hsens_jax.engine.adam import adam, adam_step, adamw

SETTINGS = dict(b1=0.85, b2=0.99, eps=1e-7, eps_root=1e-30)


def _pair(name, lr=0.05, weight_decay=0.01, **kw):
    kw = {**SETTINGS, **kw}
    if name == "adam":
        return adam(lr, **kw), optax.adam(lr, **kw)
    return adamw(lr, weight_decay=weight_decay, **kw), optax.adamw(lr, weight_decay=weight_decay, **kw)


def _params(dtype):
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(5, 3)), dtype), "b": jnp.asarray(rng.normal(size=(3,)), dtype)}


def _loss(p):
    return jnp.sum(jnp.sin(p["w"]) ** 2) + jnp.sum((p["b"] - 0.5) ** 4) + jnp.sum(p["w"] @ p["b"])


def _trajectory(tx, params, steps=12):
    state = tx.init(params)
    for _ in range(steps):
        upd, state = tx.update(jax.grad(_loss)(params), state, params)
        params = optax.apply_updates(params, upd)
    return params, state


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("x64", [False, True])
def test_values_and_state_equal_optax(name, x64):
    """12 steps: the same parameters and state as optax's, to rounding (XLA fuses the two
    programs a little differently: one-ulp differences), compiled or op by op."""
    with jax.enable_x64(x64):
        ours, ref = _pair(name)
        params = _params(jnp.float64 if x64 else jnp.float32)
        ours_out = jax.jit(lambda p: _trajectory(ours, p))(params)
        ref_out = jax.jit(lambda p: _trajectory(ref, p))(params)
        assert jax.tree.structure(ours_out) == jax.tree.structure(ref_out)
        for a, b in zip(jax.tree.leaves(ours_out), jax.tree.leaves(ref_out)):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-14 if x64 else 2e-6, atol=1e-15 if x64 else 1e-7)
        eager = _trajectory(ours, params)
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(ref_out)):
            np.testing.assert_allclose(a, b, rtol=1e-12 if x64 else 2e-5, atol=1e-12 if x64 else 1e-6)


def _optax_formula(mu, nu, c1, c2, eps, eps_root, lr, params, weight_decay):
    """The textbook step, written independently, differentiated by JAX."""
    u = (mu / c1) / (jnp.sqrt(nu / c2 + eps_root) + eps)
    if params is not None:
        u = u + weight_decay * params
    return -lr * u


@pytest.mark.parametrize("decoupled", [False, True])
def test_derivative_in_every_argument_equals_autodiff_float64(decoupled):
    """The custom rule's jvp and vjp equal JAX's derivative of the formula, in all nine
    arguments (moments, bias corrections, eps, eps_root, learning rate, params, decay)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        shape = (4, 3)
        mu = jnp.asarray(rng.normal(size=shape))
        nu = jnp.asarray(rng.uniform(0.01, 2.0, size=shape))
        args = [mu, nu, jnp.asarray(0.3), jnp.asarray(0.05), jnp.asarray(1e-3), jnp.asarray(1e-4),
                jnp.asarray(0.02)]
        args += [jnp.asarray(rng.normal(size=shape)), jnp.asarray(0.1)] if decoupled else [None, None]
        tans = [None if a is None else jnp.asarray(rng.normal(size=np.shape(a))) for a in args]
        y, dy = jax.jvp(adam_step, args, tans)
        y_ref, dy_ref = jax.jvp(_optax_formula, args, tans)
        np.testing.assert_allclose(y, y_ref, rtol=1e-15)
        np.testing.assert_allclose(dy, dy_ref, rtol=1e-12, atol=1e-15)
        # reverse mode: the transpose of the same rule
        ct = jnp.asarray(rng.normal(size=shape))
        grads = jax.vjp(adam_step, *args)[1](ct)
        grads_ref = jax.vjp(_optax_formula, *args)[1](ct)
        for a, b in zip(grads, grads_ref):
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)
        # and both against a central finite difference along the tangent
        h = 1e-6
        plus = adam_step(*[None if a is None else a + h * t for a, t in zip(args, tans)])
        minus = adam_step(*[None if a is None else a - h * t for a, t in zip(args, tans)])
        np.testing.assert_allclose(dy, (plus - minus) / (2 * h), rtol=1e-6, atol=1e-9)


def _optimizer(lib, lr, b1, b2, eps, weight_decay=None):
    if weight_decay is None:
        return lib.adam(lr, b1=b1, b2=b2, eps=eps, eps_root=1e-30)
    return lib.adamw(lr, b1=b1, b2=b2, eps=eps, eps_root=1e-30, weight_decay=weight_decay)


def _final_params_jacobian(lib, name, dtype, how):
    """d(params after 12 steps) / d(lr, b1, b2, eps[, weight decay]), compiled."""
    hps = {"lr": 0.05, "b1": 0.85, "b2": 0.99, "eps": 1e-3}
    if name == "adamw":
        hps["weight_decay"] = 0.01
    hps = {k: jnp.asarray(v, dtype) for k, v in hps.items()}

    def final(h):
        tx = _optimizer(lib, **h)

        def step(carry, _):
            params, state = carry
            upd, state = tx.update(jax.grad(_loss)(params), state, params)
            return (optax.apply_updates(params, upd), state), None

        params = _params(dtype)
        return jax.lax.scan(step, (params, tx.init(params)), None, length=12)[0][0]

    return jax.jit(how(final))(hps)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_hyperparameter_derivatives_through_training(name):
    """Forward and reverse mode through 12 steps, with respect to every hyperparameter:
    equal to JAX's derivative of optax's optimizer in float64 (1e-10), and in float32
    within 1e-4 of that (relative to each derivative's largest entry), no further from it
    than optax's own float32 derivative is (within 3x: rounding differs, accuracy not)."""
    import hsens_jax.engine.adam as ours

    with jax.enable_x64(True):
        truth = _final_params_jacobian(optax, name, jnp.float64, jax.jacfwd)
        for how in (jax.jacfwd, jax.jacrev):
            got = _final_params_jacobian(ours, name, jnp.float64, how)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(truth)):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        truth = jax.tree.map(np.asarray, truth)
    ref32 = _final_params_jacobian(optax, name, jnp.float32, jax.jacfwd)
    for how in (jax.jacfwd, jax.jacrev):
        got = _final_params_jacobian(ours, name, jnp.float32, how)
        for h in truth["w"]:
            scale = max(np.abs(truth[k][h]).max() for k in truth)
            err = max(np.abs(got[k][h] - truth[k][h]).max() for k in truth) / scale
            ref_err = max(np.abs(ref32[k][h] - truth[k][h]).max() for k in truth) / scale
            assert err < 1e-4, (h, err)
            assert err <= 3 * ref_err + 1e-6, (h, err, ref_err)


def test_adamw_without_params_names_them():
    tx = adamw(0.1)
    p = _params(jnp.float32)
    with pytest.raises(ValueError, match="params"):
        tx.update(p, tx.init(p))
