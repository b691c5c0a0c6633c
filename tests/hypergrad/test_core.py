"""Vectorized hypergradients, NaN/divergence detection and argument checking."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.hypergrad.core import HypergradientWarning, hypergradient, hypergradients

from .conftest import RUNGE_SPEC, RUNGE_VALUES, RUNGE_WRT, key0, runge_data

CONFIGS = {"learning_rate": np.array([0.2, 0.05, 1e150]), "momentum": np.array([0.8, 0.5, 0.9]),
           "weight_decay": np.array([1e-3, 1e-2, 0.0])}


def _values(i):
    return {**RUNGE_VALUES, **{k: float(v[i]) for k, v in CONFIGS.items()}}


def _cfgs():
    base = {k: v for k, v in RUNGE_VALUES.items() if k not in CONFIGS}
    return {**{k: np.full(3, v, dtype=object if isinstance(v, str) else float) for k, v in base.items()}, **CONFIGS}


def test_vmapped_equals_per_configuration_and_flags_the_diverged_one(x64):
    data = runge_data()
    with pytest.warns(HypergradientWarning, match=r"1 of 3 configuration\(s\) \(configurations \[2\]\); 1 of them diverged"):
        many = hypergradients(RUNGE_SPEC, data, _cfgs(), key0(), RUNGE_WRT, mode="forward")
    assert many.value.shape == (3,) and many.grad["learning_rate"].shape == (3,)
    np.testing.assert_array_equal(np.asarray(many.finite), [True, True, False])
    np.testing.assert_array_equal(np.asarray(many.diverged), [False, False, True])
    for i in range(2):
        one = hypergradient(RUNGE_SPEC, data, _values(i), key0(), RUNGE_WRT, mode="forward")
        assert float(many.value[i]) == pytest.approx(float(one.value), rel=1e-12)
        for n in RUNGE_WRT:
            assert float(many.grad[n][i]) == pytest.approx(float(one.grad[n]), rel=1e-9, abs=1e-14), n
            assert float(many.grad_raw[n][i]) == pytest.approx(float(one.grad_raw[n]), rel=1e-9, abs=1e-14), n
        assert float(many.grad_norm[i]) == pytest.approx(float(one.grad_norm), rel=1e-9)


def test_per_configuration_keys_in_chunks(x64):
    data = runge_data()
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    with pytest.warns(HypergradientWarning):
        many = hypergradients(RUNGE_SPEC, data, _cfgs(), keys, RUNGE_WRT, mode="forward", chunk_size=3)
    for i in range(2):
        one = hypergradient(RUNGE_SPEC, data, _values(i), keys[i], RUNGE_WRT, mode="forward")
        assert float(many.value[i]) == pytest.approx(float(one.value), rel=1e-12)
        for n in RUNGE_WRT:
            assert float(many.grad_raw[n][i]) == pytest.approx(float(one.grad_raw[n]), rel=1e-9, abs=1e-14), n
    # a different key is a different run
    assert float(many.value[0]) != pytest.approx(float(hypergradient(
        RUNGE_SPEC, data, _values(0), key0(), RUNGE_WRT, mode="forward").value), rel=1e-6)


def test_divergence_is_detected_and_warned(x64):
    with pytest.warns(HypergradientWarning, match="1 of 1 configuration"):
        r = hypergradient(RUNGE_SPEC, runge_data(), {**RUNGE_VALUES, "learning_rate": 1e150}, key0(), RUNGE_WRT,
                          mode="reverse")
    assert bool(r.diverged) and not bool(r.finite)


def test_nan_objective_is_detected(x64):
    """A NaN without divergence (here a NaN objective) is flagged too."""
    nan_objective = lambda spec, data, hp, state: jnp.log(-jnp.abs(hp["learning_rate"]))  # noqa: E731
    with pytest.warns(HypergradientWarning, match="0 of them diverged"):
        r = hypergradient(RUNGE_SPEC, runge_data(), RUNGE_VALUES, key0(), ("learning_rate",), mode="truncated",
                          truncate=1, objective=nan_objective)
    assert not bool(r.finite) and not bool(r.diverged)


def test_finite_results_do_not_warn(x64):
    with warnings.catch_warnings():
        warnings.simplefilter("error", HypergradientWarning)
        r = hypergradient(RUNGE_SPEC, runge_data(), RUNGE_VALUES, key0(), RUNGE_WRT, mode="reverse")
    assert bool(r.finite)


@pytest.mark.parametrize("kw, exc, match", [
    ({"wrt": ("width",)}, ValueError, "width"),
    ({"wrt": ("dropout",)}, ValueError, "dropout"),
    ({"wrt": ()}, ValueError, "wrt is empty"),
    ({"wrt": ("learning_rate", "learning_rate")}, ValueError, "duplicates"),
    ({"mode": "backprop"}, ValueError, "mode"),
    ({"objective": "accuracy"}, ValueError, "objective"),
    ({"coordinates": "log"}, ValueError, "coordinates"),
    ({"mode": "forward", "checkpoint_every": 4}, ValueError, "checkpoint_every"),
    ({"mode": "checkpointed", "checkpoint_every": 0}, ValueError, "checkpoint_every"),
    ({"mode": "truncated"}, ValueError, "truncate"),
    ({"mode": "reverse", "truncate": 3}, ValueError, "truncate"),
])
def test_bad_arguments_raise(kw, exc, match):
    kw = {"wrt": ("learning_rate",), **kw}
    with pytest.raises(exc, match=match):
        hypergradient(RUNGE_SPEC, runge_data(), RUNGE_VALUES, key0(), **kw)


def test_bad_inputs_raise():
    data = runge_data()
    with pytest.raises(TypeError, match="spec"):
        hypergradient("spec", data, {}, key0())
    with pytest.raises(TypeError, match="data"):
        hypergradient(RUNGE_SPEC, (1, 2), {}, key0())
    with pytest.raises(TypeError, match="values"):
        hypergradient(RUNGE_SPEC, data, [0.1], key0())
    with pytest.raises(ValueError, match="one configuration"):
        hypergradient(RUNGE_SPEC, data, {"learning_rate": [0.1, 0.2]}, key0())
    with pytest.raises(ValueError, match=r"configs\['learning_rate'\] has NaN"):
        hypergradients(RUNGE_SPEC, data, {"learning_rate": [0.1, np.nan]}, key0(), ("learning_rate",))
    with pytest.raises(ValueError, match="2 keys for 3"):
        hypergradients(RUNGE_SPEC, data, {"learning_rate": [0.1, 0.2, 0.3]}, jax.random.split(key0(), 2))
    with pytest.raises(ValueError, match="chunk_size"):
        hypergradients(RUNGE_SPEC, data, {"learning_rate": [0.1, 0.2]}, key0(), chunk_size=0)


def test_auto_mode_is_forward_for_few_tangents_per_device():
    from hsens_jax.hypergrad.core import AUTO_FORWARD_TANGENTS, _resolve_mode

    assert AUTO_FORWARD_TANGENTS == 3
    assert _resolve_mode("auto", "learning_rate", None, 1) == "forward"
    assert _resolve_mode("auto", ("a", "b", "c"), None, 1) == "forward"
    assert _resolve_mode("auto", ("a", "b", "c", "d"), None, 1) == "checkpointed"
    assert _resolve_mode("auto", ("a", "b", "c", "d"), None, 2) == "forward"  # two tangents per device
    assert _resolve_mode("auto", ("a",), 8, 1) == "checkpointed"  # a segment length asks for checkpointing
    assert _resolve_mode("reverse", ("a",), None, 4) == "reverse"


def test_float32_adjoint_overflow_is_explained_and_auto_mode_avoids_it():
    """Digits MLP, Adam, lr = 2.9e-3, weight decay 2.9e-4, float32. Backwards through the
    steps the adjoint of a hidden bias's Adam moment grows exponentially and, at 500 steps,
    overflows float32 (inf * 0 = NaN) in the weight-decay derivative, which is finite;
    forward mode's tangents stay bounded (float32 within 3e-4 of float64). At 30 steps
    reverse mode is finite (within 1e-4 of float64)."""
    from hsens_jax.data import load_dataset
    from hsens_jax.engine.builtin import sized_model
    from hsens_jax.engine.train import TrainSpec, prepare_data

    ds = load_dataset("digits")
    values = {"learning_rate": 2.9e-3, "weight_decay": 2.9e-4, "optimizer": "adam"}
    wrt = ("learning_rate", "weight_decay")
    data = prepare_data(ds)
    with jax.enable_x64(True):
        data64 = prepare_data(ds)
    for n_steps in (30, 500):
        spec = TrainSpec(sized_model("mlp", 32, 1, 10, (8, 8, 1)), "classification", batch_size=64,
                         n_steps=n_steps, n_train=ds.n_train, optimizers=("adam",))
        with jax.enable_x64(True):
            ref = hypergradient(spec, data64, values, key0(), wrt, mode="forward", coordinates="raw")
        if n_steps == 500:
            with pytest.warns(HypergradientWarning, match=r"overflow of the adjoint.*mode='forward'"):
                rev = hypergradient(spec, data, values, key0(), wrt, mode="checkpointed", coordinates="raw")
            assert not bool(rev.finite) and not bool(rev.diverged)
            assert np.isnan(float(rev.grad_raw["weight_decay"]))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", HypergradientWarning)
                rev = hypergradient(spec, data, values, key0(), wrt, mode="checkpointed", coordinates="raw")
            for n in wrt:
                assert float(rev.grad_raw[n]) == pytest.approx(float(ref.grad_raw[n]), rel=1e-4)
        with warnings.catch_warnings():
            warnings.simplefilter("error", HypergradientWarning)
            auto = hypergradient(spec, data, values, key0(), wrt, coordinates="raw")  # auto: forward
        for n in wrt:  # measured: 1.5e-4 for the learning rate at 500 steps, float32 against float64
            assert float(auto.grad_raw[n]) == pytest.approx(float(ref.grad_raw[n]), rel=1e-4 if n_steps < 500 else 3e-4)
