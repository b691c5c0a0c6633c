"""Implicit differentiation: ridge regression in closed form, and the engine at convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.hypergrad.core import hypergradient
from hsens_jax.hypergrad.implicit import implicit_gradient
from hsens_jax.engine.builtin import sized_model
from hsens_jax.engine.train import TrainSpec

from .conftest import key0, runge_data

# ----------------------------------------------------------------------------- ridge regression, analytic


def _ridge_problem(seed=0, n=40, nv=30, d=5):
    rng = np.random.default_rng(seed)
    X, Xv = rng.standard_normal((n, d)), rng.standard_normal((nv, d))
    w = rng.standard_normal(d)
    y, yv = X @ w + 0.3 * rng.standard_normal(n), Xv @ w + 0.3 * rng.standard_normal(nv)
    return X, y, Xv, yv


def _ridge_numpy(X, y, Xv, yv, lam, c=0.0):
    """theta* = (X'X/n + lam I)^-1 X'y/n; Y = mean((Xv theta - yv)^2)/2 + c lam^2;
    dY/dlam = -g' (A + lam I)^-1 theta* + 2 c lam (textbook ridge sensitivity)."""
    n, d = X.shape
    M = X.T @ X / n + lam * np.eye(d)
    theta = np.linalg.solve(M, X.T @ y / n)
    r = Xv @ theta - yv
    g = Xv.T @ r / len(yv)
    return theta, 0.5 * np.mean(r ** 2) + c * lam ** 2, -g @ np.linalg.solve(M, theta) + 2 * c * lam


@pytest.mark.parametrize("solver", ["cg", "neumann"])
def test_ridge_closed_form(x64, solver):
    X, y, Xv, yv = _ridge_problem()
    lam, c = 0.3, 0.05
    theta, _, expected = _ridge_numpy(X, y, Xv, yv, lam, c)
    # the same derivative by central differences of the closed-form validation loss
    h = 1e-6
    fd = (_ridge_numpy(X, y, Xv, yv, lam + h, c)[1] - _ridge_numpy(X, y, Xv, yv, lam - h, c)[1]) / (2 * h)
    assert expected == pytest.approx(fd, rel=1e-7)

    def inner(p, hp):
        return 0.5 * jnp.mean((X @ p["w"] - y) ** 2) + 0.5 * hp["lam"] * jnp.sum(p["w"] ** 2)

    def outer(p, hp):
        return 0.5 * jnp.mean((Xv @ p["w"] - yv) ** 2) + c * hp["lam"] ** 2

    lmax = np.linalg.eigvalsh(X.T @ X / len(y)).max() + lam
    opts = {"neumann_lr": 1.0 / lmax, "neumann_steps": 3000} if solver == "neumann" else {}
    ig = jax.jit(lambda p, h: implicit_gradient(inner, outer, p, h, solver=solver, **opts))
    grad, info = ig({"w": jnp.asarray(theta)}, {"lam": jnp.asarray(lam)})
    assert float(grad["lam"]) == pytest.approx(expected, rel=1e-8 if solver == "cg" else 1e-6)
    assert float(info["stationarity"]) < 1e-12
    assert float(info["residual"]) < 1e-6

    # away from the minimum the stationarity diagnostic says so
    _, info = ig({"w": jnp.asarray(theta) + 0.1}, {"lam": jnp.asarray(lam)})
    assert float(info["stationarity"]) > 1e-3


def test_implicit_gradient_rejects_unknown_solver():
    with pytest.raises(ValueError, match="solver"):
        implicit_gradient(lambda p, h: 0.0, lambda p, h: 0.0, {"w": jnp.ones(2)}, {"a": jnp.ones(())}, solver="lu")


# ----------------------------------------------------------------------------- the engine at convergence

CONVERGED = TrainSpec(sized_model("mlp", 8, 1, 1, (1,), ("tanh",)), "regression", batch_size=80, n_steps=2000,
                      n_train=80, optimizers=("sgd",))
CONVERGED_VALUES = {"learning_rate": 0.5, "weight_decay": 0.02, "activation": "tanh", "optimizer": "sgd"}


def test_implicit_matches_unrolled_at_convergence(x64):
    """Full-batch gradient descent with L2 on a tanh MLP run to a stationary point: IFT = unrolled."""
    data = runge_data()
    imp = hypergradient(CONVERGED, data, CONVERGED_VALUES, key0(), ("weight_decay",), mode="implicit",
                        coordinates="raw")
    unr = hypergradient(CONVERGED, data, CONVERGED_VALUES, key0(), ("weight_decay",), mode="forward",
                        coordinates="raw")
    assert bool(imp.finite) and bool(unr.finite)
    assert float(imp.value) == pytest.approx(float(unr.value), rel=1e-12)
    assert float(imp.stationarity) < 1e-5
    g_imp, g_unr = float(imp.grad_raw["weight_decay"]), float(unr.grad_raw["weight_decay"])
    assert abs(g_imp - g_unr) < 1e-4 * abs(g_unr), (g_imp, g_unr)


@pytest.mark.parametrize("wrt, values, spec_kw, match", [
    (("learning_rate",), {}, {}, "only handles"),
    (("weight_decay",), {"optimizer": "adamw"}, {"optimizers": ("adamw",)}, "adamw"),
    (("label_smoothing",), {}, {}, "regression"),
    (("weight_decay",), {}, {"model": sized_model("mlp", 8, 1, 1, (1,), dropout=True)}, "deterministic"),
])
def test_implicit_refuses_what_it_cannot_do(wrt, values, spec_kw, match):
    kw = dict(model=sized_model("mlp", 8, 1, 1, (1,)), task="regression", batch_size=80, n_steps=5, n_train=80)
    kw.update(spec_kw)
    spec = TrainSpec(**kw)
    with jax.enable_x64(True):
        data = runge_data()
    with pytest.raises(ValueError, match=match):
        hypergradient(spec, data, values, key0(), wrt, mode="implicit")
