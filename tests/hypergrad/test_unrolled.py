"""Unrolled hypergradients: finite differences, an independent NumPy trainer, mode agreement."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.engine.counters import counter_permutation
import pytest

from hsens_jax.hypergrad.core import hypergradient
from hsens_jax.hypergrad.unrolled import _depends, default_segment, unrolled_gradient
from hsens_jax.engine.train import hp_from_values, init_state, train

from .conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, digits_data, key0, runge_data

# ----------------------------------------------------------------------------- helpers


def central_fd(f, x0: dict, names, rel_step=1e-5):
    """Textbook central differences (f(x + h e_i) - f(x - h e_i)) / 2h, in float64 NumPy."""
    out = {}
    for n in names:
        x = float(x0[n])
        h = rel_step * max(abs(x), 1e-2)
        xp = dict(x0, **{n: np.float64(x + h)})
        xm = dict(x0, **{n: np.float64(x - h)})
        out[n] = (float(f(xp)) - float(f(xm))) / (2.0 * h)
    return out


def engine_value(spec, data, values, wrt):
    """The training function's objective; reuses the compiled reverse-mode program."""
    return hypergradient(spec, data, values, key0(), wrt, mode="reverse", coordinates="raw").value


def rel_err(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture(scope="module")
def runge_modes():
    """Objective and raw hypergradients of the Runge problem by every unrolled mode (float64)."""
    out = {}
    with jax.enable_x64(True):
        data = runge_data()
        for mode, kw in [("reverse", {}), ("checkpointed", {"checkpoint_every": 5}), ("forward", {})]:
            r = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), RUNGE_WRT, mode=mode, coordinates="raw", **kw)
            assert r.value.dtype == jnp.float64
            out[mode] = (float(r.value), {k: float(v) for k, v in r.grad_raw.items()}, bool(r.finite))
        hp = hp_from_values(RUNGE_VALUES, RUNGE_SPEC)
        out["fd"] = central_fd(lambda x: engine_value(RUNGE_SPEC, data, {**RUNGE_VALUES, **x}, RUNGE_WRT),
                               {n: float(hp[n]) for n in RUNGE_WRT}, RUNGE_WRT)
        out["train"] = float(jax.jit(lambda h: train(RUNGE_SPEC, data, h, key0())["final_val_loss"])(hp))
    return out


# ----------------------------------------------------------------------------- the engine's objective


def test_objective_is_the_engines_final_val_loss(runge_modes):
    value = runge_modes["reverse"][0]
    assert value == pytest.approx(runge_modes["train"], rel=1e-12)


@pytest.mark.parametrize("mode", ["reverse", "checkpointed", "forward"])
def test_matches_central_finite_differences(runge_modes, mode):
    value, grad, finite = runge_modes[mode]
    assert finite
    for n in RUNGE_WRT:
        assert rel_err(grad[n], runge_modes["fd"][n]) < 1e-4, (mode, n, grad[n], runge_modes["fd"][n])


def test_forward_equals_reverse_and_checkpointed_equals_plain(runge_modes):
    _, rev, _ = runge_modes["reverse"]
    for mode in ("forward", "checkpointed"):
        _, g, _ = runge_modes[mode]
        for n in RUNGE_WRT:
            assert g[n] == pytest.approx(rev[n], rel=1e-10, abs=1e-13), (mode, n)


# ----------------------------------------------------------------------------- independent NumPy trainer


def _numpy_lr(t, T, lr, warmup, a):
    """The documented schedule: linear warmup over warmup*T steps, then cosine to a*lr."""
    warm = warmup * T
    wf = min(max((t + 1) / warm, 0.0), 1.0) if warm > 0 else 1.0
    p = min(max((t - warm) / max(T - warm, 1.0), 0.0), 1.0)
    return lr * wf * (a + (1 - a) * 0.5 * (1 + math.cos(math.pi * p)))


def numpy_train_val_loss(x, base, batches, xtr, ytr, xva, yva, T, x_early=None, t_switch=0):
    """float64 NumPy: 1-hidden-layer tanh MLP, MSE, L2 + SGD with heavy-ball momentum (optax order).

    ``base``: initial kernels at init_scale = 1 (biases start at 0); ``batches``: index arrays.
    ``x_early``: hyperparameters of the initialization and of steps ``t < t_switch`` (default ``x``).
    """
    x_late = x
    x = x if x_early is None else x_early
    K0, K1 = base[0] * x["init_scale"], base[1] * x["init_scale"]
    b0, b1 = np.zeros(K0.shape[1]), np.zeros(K1.shape[1])
    params = [K0, b0, K1, b1]
    mom = [np.zeros_like(p) for p in params]
    for t in range(T):
        if t == t_switch:
            x = x_late
        X, Y = xtr[batches[t]], ytr[batches[t]]
        K0, b0, K1, b1 = params
        a = np.tanh(X @ K0 + b0)
        out = a @ K1 + b1
        dout = 2.0 * (out - Y) / (X.shape[0] * out.shape[1])
        dz = (dout @ K1.T) * (1.0 - a ** 2)
        grads = [X.T @ dz, dz.sum(0), a.T @ dout, dout.sum(0)]
        lr_t = _numpy_lr(t, T, x["learning_rate"], x["warmup"], x["final_lr_fraction"])
        for i in range(4):
            g = grads[i] + x["weight_decay"] * params[i]
            mom[i] = g + x["momentum"] * mom[i]
            params[i] = params[i] - lr_t * mom[i]
    K0, b0, K1, b1 = params
    out = np.tanh(xva @ K0 + b0) @ K1 + b1
    return float(np.mean((out - yva) ** 2))


@functools.lru_cache(maxsize=None)
def numpy_problem():
    """Initial kernels, batch order and data of the Runge problem, as float64 NumPy."""
    spec = RUNGE_SPEC
    with jax.enable_x64(True):
        data = runge_data()
        keys = jax.random.split(key0(), 3)
        hp1 = hp_from_values({**RUNGE_VALUES, "init_scale": 1.0}, spec)
        p = jax.jit(lambda h, k: init_state(spec, data, h, k).params)(hp1, keys[0])
        base = [np.asarray(p["hidden_0"]["kernel"]), np.asarray(p["output"]["kernel"])]
        spe = spec.n_train // spec.batch_size
        epochs = jnp.arange(spec.n_steps // spe + 1)
        # the engine's documented order: epoch e visits counter_permutation(fold_in(order_key, e), n)
        perms = np.asarray(jax.jit(jax.vmap(lambda e: counter_permutation(jax.random.fold_in(keys[1], e),
                                                                          spec.n_train)))(epochs))
    batches = [perms[t // spe][(t % spe) * spec.batch_size:(t % spe + 1) * spec.batch_size] for t in range(spec.n_steps)]
    arrs = [np.asarray(a, np.float64).reshape(len(a), -1) for a in (data.x_train, data.y_train, data.x_val, data.y_val)]
    return base, batches, arrs


def test_against_independent_numpy_trainer(runge_modes):
    base, batches, arrs = numpy_problem()
    x0 = {n: float(v) for n, v in RUNGE_VALUES.items() if n in RUNGE_WRT}

    def f(x):
        return numpy_train_val_loss({k: float(v) for k, v in x.items()}, base, batches, *arrs, RUNGE_SPEC.n_steps)

    assert f(x0) == pytest.approx(runge_modes["reverse"][0], rel=1e-10)
    fd = central_fd(f, x0, RUNGE_WRT)
    grad = runge_modes["reverse"][1]
    for n in RUNGE_WRT:
        assert rel_err(grad[n], fd[n]) < 1e-4, (n, grad[n], fd[n])


# ----------------------------------------------------------------------------- truncated


def test_truncated_is_the_gradient_through_the_last_k_steps(x64):
    """Truncated mode = FD of the NumPy run whose first T-k steps (and init) use the fixed values."""
    spec, k = RUNGE_SPEC, 8
    r = hypergradient(spec, runge_data(), RUNGE_VALUES, key0(), RUNGE_WRT, mode="truncated", truncate=k,
                      coordinates="raw")
    base, batches, arrs = numpy_problem()
    x0 = {n: float(v) for n, v in RUNGE_VALUES.items() if n in RUNGE_WRT}

    def g(x):
        return numpy_train_val_loss({a: float(b) for a, b in x.items()}, base, batches, *arrs, spec.n_steps,
                                    x_early=x0, t_switch=spec.n_steps - k)

    assert g(x0) == pytest.approx(float(r.value), rel=1e-10)
    fd = central_fd(g, x0, RUNGE_WRT)
    for n in RUNGE_WRT:
        if n == "init_scale":  # enters only at step 0: no truncated derivative
            assert float(r.grad_raw[n]) == 0.0 and fd[n] == 0.0
        else:
            assert rel_err(float(r.grad_raw[n]), fd[n]) < 1e-4, (n, float(r.grad_raw[n]), fd[n])


def test_truncated_is_biased_compared_with_full(runge_modes, x64):
    r = hypergradient(RUNGE_SPEC, runge_data(), RUNGE_VALUES, key0(), RUNGE_WRT, mode="truncated", truncate=8,
                      coordinates="raw")
    full = runge_modes["reverse"][1]["learning_rate"]
    assert abs(float(r.grad_raw["learning_rate"]) - full) > 1e-3 * abs(full)


def test_default_segment():
    assert default_segment(100) == 10 and default_segment(101) == 11 and default_segment(1) == 1


# ----------------------------------------------------------------------------- classification with Adam


def test_adam_classification_matches_finite_differences(x64):
    """Digits, Adam, label smoothing: every optimizer hyperparameter against central differences."""
    from hsens_jax.engine.builtin import sized_model
    from hsens_jax.engine.train import TrainSpec

    data = digits_data()
    spec = TrainSpec(sized_model("mlp", 16, 1, 10, (8, 8, 1), ("tanh",)), "classification", batch_size=32,
                     n_steps=12, n_train=data.x_train.shape[0], optimizers=("adam",))
    values = {"learning_rate": 0.01, "b1": 0.9, "b2": 0.99, "eps": 1e-3, "label_smoothing": 0.1,
              "weight_decay": 1e-3, "activation": "tanh"}
    wrt = ("learning_rate", "b1", "b2", "eps", "label_smoothing", "weight_decay")
    r = hypergradient(spec, data, values, key0(), wrt, mode="reverse", coordinates="raw")
    assert bool(r.finite)
    fd = central_fd(lambda x: engine_value(spec, data, {**values, **x}, wrt), values, wrt)
    for n in wrt:
        assert rel_err(float(r.grad_raw[n]), fd[n]) < 1e-4, (n, float(r.grad_raw[n]), fd[n])


# ----------------------------------------------------------------------------- memory


def test_memory_checkpointed_and_forward_far_below_reverse(x64):
    """XLA's peak temporary memory at T = 1024: checkpointed O(sqrt T), forward O(1), reverse O(T)."""
    import dataclasses

    from hsens_jax.hypergrad.core import _one

    data = runge_data()
    hp = hp_from_values(RUNGE_VALUES, RUNGE_SPEC)

    def temp(T, mode, seg=None):
        spec = dataclasses.replace(RUNGE_SPEC, n_steps=T)
        lowered = _one.lower(spec, data, hp, key0(), wrt=("learning_rate",), mode=mode, objective="final_val_loss",
                             checkpoint_every=seg, truncate=None, solver_options=())
        return lowered.compile().memory_analysis().temp_size_in_bytes

    # reverse stores what the adjoint of each of the 1024 steps needs (its inputs and minibatch
    # gradient, with the default symmetric adjoint), checkpointing that for 32 boundary states and
    # 32 steps, forward mode one state and its tangents (the benchmark shows it flat from T=100 to 10000)
    rev, ckpt, fwd = temp(1024, "reverse"), temp(1024, "checkpointed", 32), temp(1024, "forward")
    assert ckpt < rev / 8
    assert fwd < rev / 50


# ----------------------------------------------------------------------------- the lean step and the segment length


def test_unguarded_step_is_the_guarded_step_while_finite_and_flags_the_first_nan(x64):
    """``train_step(guard=False)`` (what the hypergradients differentiate) equals the engine's guarded
    step bit for bit on a finite run, and records the first non-finite loss as the divergence step."""
    from hsens_jax.engine.train import batch_indices, init_carry, train_step

    data = runge_data()

    @functools.partial(jax.jit, static_argnums=1)
    def steps(hp, guard):
        carry = init_carry(RUNGE_SPEC, data, hp, key0())
        state, perm = carry.state, carry.perm
        for t in range(8):
            perm, idx, dkey = batch_indices(RUNGE_SPEC, carry.keys, perm, jnp.int32(t))
            state, _ = train_step(RUNGE_SPEC, data, hp, state, idx, dkey, jnp.int32(t), guard=guard)
        return state

    def run(values, guard):
        return steps(hp_from_values(values, RUNGE_SPEC), guard)

    a, b = run(RUNGE_VALUES, True), run(RUNGE_VALUES, False)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not bool(b.diverged) and int(b.diverged_step) == -1
    bad = run({**RUNGE_VALUES, "learning_rate": 1e150}, False)
    guarded = run({**RUNGE_VALUES, "learning_rate": 1e150}, True)
    assert bool(bad.diverged) and bool(guarded.diverged)
    # the lean step flags the first non-finite loss, which comes no earlier than the guard's
    # first non-finite loss or parameter
    assert int(bad.diverged_step) >= int(guarded.diverged_step) >= 0


def test_segment_for_is_the_default_and_saves_memory(x64):
    """``segment_for`` (from the measured sizes of the loop state and of one step's residuals) is
    the default segment, and XLA's peak temporary memory with it is within its documented 2.4x of
    the best segment (Runge: 5 steps per epoch), for both adjoints."""
    import dataclasses

    from hsens_jax.hypergrad.core import _one
    from hsens_jax.hypergrad.unrolled import segment_for

    data = runge_data()
    spec = dataclasses.replace(RUNGE_SPEC, n_steps=1024)
    hp = hp_from_values(RUNGE_VALUES, spec)
    assert default_segment(1024, 0.25) == 16 and default_segment(1024, 1e-9) == 1 and default_segment(5, 100.0) == 5

    def temp(seg, adjoint):
        fn = jax.jit(lambda hp: unrolled_gradient(spec, data, hp, key0(), ("learning_rate",), mode="checkpointed",
                                                  checkpoint_every=seg, adjoint=adjoint))
        return fn.lower(hp).compile().memory_analysis().temp_size_in_bytes

    for adjoint in ("symmetric", "autodiff"):
        s = segment_for(spec, data, hp, key0(), adjoint)
        assert s % 5 == 0 and 5 <= s < 32  # whole epochs, shorter than sqrt(T)
        best = min(temp(seg, adjoint) for seg in (10, 20, 32))
        assert temp(s, adjoint) <= 2.4 * best
    # the default of the checkpointed mode is segment_for with the symmetric adjoint
    def temp_one(seg):
        lowered = _one.lower(spec, data, hp, key0(), wrt=("learning_rate",), mode="checkpointed",
                             objective="final_val_loss", checkpoint_every=seg, truncate=None, solver_options=())
        return lowered.compile().memory_analysis().temp_size_in_bytes

    assert temp_one(None) == temp_one(segment_for(spec, data, hp, key0(), "symmetric"))


@pytest.mark.parametrize("seg", [5, 7, 10])
def test_checkpointed_segments_aligned_or_not_equal_plain_reverse(seg, x64):
    """Segments of whole epochs (5 steps here: the permutation is drawn outside the checkpoint),
    of 7 (epoch starts inside segments) and 10, each with a shorter last segment: all equal plain
    reverse mode."""
    data = runge_data()
    wrt = ("learning_rate", "weight_decay")
    rev = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), wrt, mode="reverse", coordinates="raw")
    ck = hypergradient(RUNGE_SPEC, data, RUNGE_VALUES, key0(), wrt, mode="checkpointed", checkpoint_every=seg,
                       coordinates="raw")
    assert float(ck.value) == pytest.approx(float(rev.value), rel=1e-13)
    for n in wrt:
        assert float(ck.grad_raw[n]) == pytest.approx(float(rev.grad_raw[n]), rel=1e-10, abs=1e-13), n


def test_depends_is_a_conservative_data_flow_pass():
    """forward mode carries tangents only for the state leaves that depend on the inputs."""
    f = lambda a, b: (a * 2.0, jnp.ones(3), b + 1.0, jnp.sin(a) * b, 0.5)  # noqa: E731
    assert _depends(f, 5, 1.0, 2.0) == [True, False, True, True, False]
    # a value that flows through a higher-order primitive is live if any operand is
    g = lambda a, c: (jax.lax.cond(c > 0, lambda: a, lambda: 2.0 * a), jnp.float32(c))  # noqa: E731
    assert _depends(g, 2, jnp.ones(2), 1) == [True, True]
    assert _depends(lambda a: (jnp.zeros(2) + 3.0, a), 1, jnp.ones(2)) == [False]


def test_forward_equals_reverse_with_batch_norm_dropout_and_adam(x64):
    """The forward mode's per-step tangents cover every state leaf that depends on the
    hyperparameters (batch-norm statistics, Adam moments), with dropout noise in the steps."""
    from hsens_jax.engine.builtin import sized_model
    from hsens_jax.engine.train import TrainSpec

    data = digits_data()
    spec = TrainSpec(sized_model("mlp", 16, 2, 10, (8, 8, 1), ("relu",), dropout=True, batch_norm=True),
                     "classification", batch_size=32, n_steps=10, n_train=data.x_train.shape[0],
                     optimizers=("adam",))
    # eps = 1e-3: with Adam's default 1e-8, batch norm makes some gradients nearly zero and the
    # hypergradient ill-conditioned (finite differences stop converging; see hypergrad.core)
    values = {"learning_rate": 0.01, "b1": 0.8, "eps": 1e-3, "weight_decay": 1e-3, "dropout": 0.2,
              "batch_norm": True, "init_scale": 0.9}
    wrt = ("learning_rate", "b1", "weight_decay", "init_scale")
    rev = hypergradient(spec, data, values, key0(), wrt, mode="reverse", coordinates="raw")
    fwd = hypergradient(spec, data, values, key0(), wrt, mode="forward", coordinates="raw")
    assert bool(rev.finite) and bool(fwd.finite)
    assert float(fwd.value) == pytest.approx(float(rev.value), rel=1e-12)
    for n in wrt:
        assert float(fwd.grad_raw[n]) == pytest.approx(float(rev.grad_raw[n]), rel=1e-9, abs=1e-12), n


def test_adam_with_masked_units_and_no_weight_decay_is_finite():
    """Masked units and the digits' always-zero border pixels get exactly zero gradients, so
    Adam's second moment stays 0; eps_root under the square root keeps hypergradients finite."""
    from hsens_jax.engine.builtin import sized_model
    from hsens_jax.engine.train import TrainSpec

    data = digits_data()
    spec = TrainSpec(sized_model("mlp", 16, 1, 10, (8, 8, 1)), "classification", batch_size=32, n_steps=10,
                     n_train=data.x_train.shape[0], optimizers=("adam",))
    values = {"learning_rate": 0.01, "weight_decay": 0.0, "width": 8}
    out = {m: hypergradient(spec, data, values, key0(), ("learning_rate", "b1"), mode=m, coordinates="raw")
           for m in ("reverse", "forward")}
    for r in out.values():
        assert bool(r.finite)
    for n in ("learning_rate", "b1"):
        assert float(out["forward"].grad_raw[n]) == pytest.approx(float(out["reverse"].grad_raw[n]), rel=1e-4)
