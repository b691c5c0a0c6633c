"""Masking is exact: a small network inside a large masked program equals the small network alone."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.engine.builtin import sized_model, conv_same, counter_uniform, elementwise_normal
from hsens_jax.engine.train import TrainSpec, hp_from_values, prepare_data, train


def _spec(ds, kind, width, depth, steps=30, **model):
    m = sized_model(kind, width, depth, ds.output_dim, tuple(ds.input_shape), **model)
    return TrainSpec(m, ds.task, batch_size=32, n_steps=steps, n_train=ds.n_train, n_evals=5)


@pytest.mark.parametrize("x_shape, k_shape", [((2, 7, 5, 3), (3, 3, 3, 4)), ((1, 6, 6, 2), (5, 3, 2, 1)),
                                              ((3, 1, 4, 1), (3, 3, 1, 2))])
def test_conv_same_equals_xla_convolution_float64(x_shape, k_shape):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x, k = rng.normal(size=x_shape), rng.normal(size=k_shape)
        ref = jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(k), (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        out = conv_same(jnp.asarray(x), jnp.asarray(k))
        assert out.shape == ref.shape and out.dtype == jnp.float64
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
        # vmapped over per-configuration kernels (the sweep's case), and its gradient
        ks = rng.normal(size=(3, *k_shape))
        conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        g = jax.vmap(jax.grad(lambda k: jnp.sum(jnp.tanh(conv_same(jnp.asarray(x), k)))))(jnp.asarray(ks))
        g_ref = jax.vmap(jax.grad(lambda k: jnp.sum(jnp.tanh(conv(jnp.asarray(x), k)))))(jnp.asarray(ks))
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_conv_same_rejects_even_kernels():
    with pytest.raises(ValueError, match="odd kernel size, got 2x3"):
        conv_same(jnp.zeros((1, 4, 4, 1)), jnp.zeros((2, 3, 1, 1)))


def test_elementwise_normal_is_shape_independent_and_normal():
    key = jax.random.key(3)
    big = elementwise_normal(key, (3, 3, 40, 50))
    small = elementwise_normal(key, (3, 3, 7, 11))
    np.testing.assert_array_equal(big[..., :7, :11], small)
    x = np.asarray(elementwise_normal(key, (300, 300))).ravel()
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    from scipy import stats

    assert stats.kstest(x[:20000], "norm").pvalue > 1e-3
    u = np.asarray(counter_uniform(key, jnp.arange(100000)))
    assert 0 < u.min() and u.max() < 1 and stats.kstest(u, "uniform").pvalue > 1e-3


CASES = [
    ("mlp", {}, {"width": 12, "depth": 2}),
    ("mlp", {"dropout": True, "batch_norm": True, "activations": ("relu", "tanh")},
     {"width": 9, "depth": 2, "dropout": 0.2, "batch_norm": 1.0, "activation": "tanh", "init_scale": 1.3}),
    ("cnn", {"batch_norm": True}, {"width": 3, "depth": 1, "batch_norm": 1.0}),
]


def _big_and_alone(ds, kind, model, values, key):
    data = prepare_data(ds)
    w, d = values["width"], values["depth"]
    big = _spec(ds, kind, 2 * w + 5, d + 1, **model)
    alone = _spec(ds, kind, w, d, **model)
    out_big = jax.jit(lambda h: train(big, data, h, key))(hp_from_values(values, big))
    out_alone = jax.jit(lambda h: train(alone, data, h, key))(hp_from_values(values, alone))
    return out_big, out_alone, (big, data)


@pytest.mark.parametrize("kind,model,values", CASES)
def test_masked_training_equals_alone_float64(small_digits, kind, model, values):
    """A width-w, depth-d network trained inside a (max_width, max_depth) masked program
    equals the network built at exactly (w, d): to 1e-10 relative in float64 (the masked
    units add exact zeros; only the order of floating-point sums may differ)."""
    with jax.enable_x64(True):
        out_big, out_alone, _ = _big_and_alone(small_digits, kind, model, values, jax.random.key(7))
        assert out_big["val_loss_curve"].dtype == jnp.float64
        for name in ("train_curve", "val_loss_curve", "val_accuracy_curve"):
            np.testing.assert_allclose(out_big[name], out_alone[name], rtol=1e-10, err_msg=name)


def test_masked_training_equals_alone_float32(small_digits):
    """In float32 the same holds to 1e-4 relative (rounding differences of reassociated
    sums, amplified a little by training); and the test can fail: the same program at
    full width gives a different result."""
    kind, model, values = CASES[0]
    key = jax.random.key(7)
    out_big, out_alone, (big, data) = _big_and_alone(small_digits, kind, model, values, key)
    for name in ("train_curve", "val_loss_curve", "val_accuracy_curve"):
        np.testing.assert_allclose(out_big[name], out_alone[name], rtol=1e-4, atol=1e-6, err_msg=name)
    full = jax.jit(lambda h: train(big, data, h, key))(hp_from_values({**values, "width": 2 * 12 + 5}, big))
    assert not np.allclose(full["val_loss_curve"], out_alone["val_loss_curve"], rtol=1e-3)


def test_parameter_count_and_flops_match_the_built_network(small_digits):
    ds = small_digits
    for kind, bn in (("mlp", False), ("mlp", True), ("cnn", False)):
        for widths in ([16], [16, 8], [5, 7, 9]):
            depth = len(widths)
            m = sized_model(kind, max(widths), depth, 10, tuple(ds.input_shape), batch_norm=bn)
            spec = TrainSpec(m, "classification", 32, 1, ds.n_train)
            hp = hp_from_values({"hidden_layer_sizes": ",".join(map(str, widths))}, spec)
            # a network built exactly at this size (per-layer sizes): count its parameters
            exact = sized_model(kind, max(widths), depth, 10, tuple(ds.input_shape), batch_norm=bn,
                              layer_widths=tuple(widths))
            # shapes only (jax.eval_shape traces the initialization without running it)
            params = jax.eval_shape(lambda: exact.module_instance().init({"params": jax.random.key(0)},
                                                                jnp.zeros((1, *ds.input_shape)), hp)["params"])
            n = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
            assert m.count_parameters(np.array(widths, float), depth, bn) == n
            w = np.array(widths, float)
            k = 1 if kind == "mlp" else 9
            fan_in = np.concatenate([[64 if kind == "mlp" else 1], w[:-1]])
            expected = np.sum(k * fan_in * w + w) + (2 * w.sum() if bn else 0) + w[-1] * 10 + 10
            assert m.count_parameters(w, depth, bn) == expected
            flops = 2 * (np.sum(fan_in * w) * (1 if kind == "mlp" else 64 * 9) + w[-1] * 10)
            assert m.count_flops(w, depth) == flops


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_per_layer_sizes_equal_the_uniform_masked_program_float64(small_digits, kind):
    """A program built with layer_widths=(w1, w2) trains the (w1, w2) network exactly as
    the uniform max-width masked program does (1e-10 relative in float64), including
    narrower configurations masked inside it."""
    ds = small_digits
    sizes = (9, 5) if kind == "mlp" else (4, 3)
    uniform = _spec(ds, kind, max(sizes), 2, activations=("relu", "tanh"))
    per_layer = _spec(ds, kind, max(sizes), 2, activations=("relu", "tanh"), layer_widths=sizes)
    values = {"hidden_layer_sizes": np.array([f"{sizes[0]},{sizes[1]}", f"{sizes[0] - 2},{sizes[1] - 1}"], dtype=object),
              "activation": np.array(["tanh", "relu"])}
    with jax.enable_x64(True):
        data = prepare_data(ds)
        key = jax.random.key(11)
        run = lambda spec: jax.jit(jax.vmap(lambda h: train(spec, data, h, key)))(hp_from_values(values, spec))
        a, b = run(uniform), run(per_layer)
        for name in ("train_curve", "val_loss_curve", "val_accuracy_curve"):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-10, err_msg=name)
        params = per_layer.model.module_instance().init({"params": key}, data.x_train[:1], hp_from_values(
            {"hidden_layer_sizes": "9,5" if kind == "mlp" else "4,3"}, per_layer))["params"]
        prefix = "hidden" if kind == "mlp" else "conv"
        assert params[f"{prefix}_1"]["kernel"].shape[-2:] == sizes


def test_per_layer_sizes_reject_configurations_that_do_not_fit(small_digits):
    spec = _spec(small_digits, "mlp", 10, 2, layer_widths=(10, 4))
    with pytest.raises(ValueError, match="hidden layer 1 asks for 6 units"):
        hp_from_values({"hidden_layer_sizes": "10,6"}, spec)
    with pytest.raises(ValueError, match="depth 1"):
        hp_from_values({"hidden_layer_sizes": np.array(["10,4", "8"], dtype=object)}, spec)
    with pytest.raises(ValueError, match="layer_widths"):
        sized_model("mlp", 10, 2, 10, (64,), layer_widths=(10,))
    with pytest.raises(ValueError, match="layer_widths"):
        sized_model("mlp", 10, 2, 10, (64,), layer_widths=(8, 4))
    # equal sizes keep depth masking
    uniform = _spec(small_digits, "mlp", 10, 2, layer_widths=(10, 10))
    hp_from_values({"hidden_layer_sizes": np.array(["10,4", "8"], dtype=object)}, uniform)


def test_model_spec_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        sized_model("rnn", 8, 1, 10, (8, 8, 1))
    with pytest.raises(ValueError, match="activation"):
        sized_model("mlp", 8, 1, 10, (64,), activations=("swish2",))
    with pytest.raises(ValueError, match="max_width"):
        sized_model("mlp", 0, 1, 10, (64,))
    with pytest.raises(ValueError, match="image"):
        sized_model("cnn", 8, 1, 10, (64,))
