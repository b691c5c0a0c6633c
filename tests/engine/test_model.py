"""The model interface: a user's Flax module swept by the one engine (issue: open the engine)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hsens_jax as hs
from hsens_jax.engine.counters import counter_permutation
from hsens_jax.engine.model import ModelError
from hsens_jax.engine.sweep import plan_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]


class Net(nn.Module):
    """A user's MLP: static width, traced dropout rate and init scale."""

    width: int
    dropout: float = 0.0
    scale: float = 1.0
    n_out: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        scaled = lambda k, s, d=jnp.float32: self.scale * init(k, s, d)  # noqa: E731
        x = jnp.tanh(nn.Dense(self.width, kernel_init=scaled)(x.reshape(x.shape[0], -1)))
        x = hs.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.n_out)(x)


def make_net(hp):
    return Net(hp["width"], hp["dropout"], hp["scale"])


def adamw(hp):
    return optax.adamw(hp["learning_rate"], weight_decay=hp["weight_decay"])


def smoothed_ce(outputs, batch, hp):
    return optax.softmax_cross_entropy(
        outputs, optax.smooth_labels(jax.nn.one_hot(batch["y"], 10, dtype=outputs.dtype), hp["smoothing"])).mean()


def f1_metrics(outputs, batch, hp):
    acc = jnp.mean((jnp.argmax(outputs, -1) == batch["y"]).astype(outputs.dtype))
    return {"acc": acc, "neg_acc": -acc}


USER = hs.Model(make_net, loss=smoothed_ce, metrics=f1_metrics, optimizer=adamw,
                directions={"acc": "maximize", "neg_acc": "minimize"})

SPACE = hs.Space([
    hs.Float("learning_rate", 1e-3, 0.1, log=True),
    hs.Float("weight_decay", 1e-5, 1e-2, log=True),
    hs.Float("dropout", 0.0, 0.5),
    hs.Float("scale", 0.5, 2.0),
    hs.Float("smoothing", 0.0, 0.2),
    hs.Categorical("width", [6, 10]),
])

SPACE1 = hs.Space([p for p in SPACE.params if p.name != "width"])  # one program


def _hand_update(width):
    """One plain optax step of the user's network of ``width`` units (jitted once per width)."""

    @jax.jit
    def update(p, s, hp, xb, yb, key):
        module = make_net({**hp, "width": width})

        def loss_fn(p):
            return smoothed_ce(module.apply({"params": p}, xb, train=True, rngs={"dropout": key}), {"y": yb}, hp)

        u, s = adamw(hp).update(jax.grad(loss_fn)(p), s, p)
        return optax.apply_updates(p, u), s

    return update


def _hand_trained(ds, hp, seed, steps, batch_size, updates={}):  # noqa: B006 - a per-process jit cache
    """The user's own plain optax loop, with the engine's documented keys and batch order."""
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    module = make_net(hp)
    k_init, k_order, k_drop = jax.random.split(jax.random.key(seed), 3)
    params = module.init({"params": k_init, "dropout": k_init}, x[:1], train=False)["params"]
    state = adamw(hp).init(params)
    spe = ds.n_train // batch_size
    update = updates.setdefault(hp["width"], _hand_update(hp["width"]))
    traced = {k: v for k, v in hp.items() if k != "width"}

    for t in range(steps):
        if t % spe == 0:
            perm = counter_permutation(jax.random.fold_in(k_order, t // spe), ds.n_train)
        idx = perm[(t % spe) * batch_size:(t % spe + 1) * batch_size]
        params, state = update(params, state, traced, x[idx], y[idx], jax.random.fold_in(k_drop, t))
    out = module.apply({"params": params}, jnp.asarray(ds.x_val), train=False)
    per_example = optax.softmax_cross_entropy(
        out, optax.smooth_labels(jax.nn.one_hot(jnp.asarray(ds.y_val), 10, dtype=out.dtype), hp["smoothing"]))
    return float(per_example.mean()), float(jnp.mean(jnp.argmax(out, -1) == jnp.asarray(ds.y_val)))


def test_sweep_of_a_user_module_equals_its_plain_optax_loop_float64(small_digits):
    """Same initialization, batch order and dropout keys: the engine's vmapped sweep equals the
    user's own loop to 1e-5 (float64); a maximized metric ranks like its negation minimized."""
    configs = SPACE.sample(4, "random", seed=2)
    assert len(set(configs["width"])) == 2
    with jax.enable_x64(True):
        res = run_sweep(small_digits, SPACE, configs, model=USER, fixed={"steps": 14, "batch_size": 32},
                        seeds=[0, 3], n_evals=2, progress=False)
        assert res.meta["static"] == ["width"]
        assert len(res.meta["groups"]) == 2
        for k in (0, 3):
            row = SPACE.decode({n: c[k:k + 1] for n, c in configs.items()})[0]
            hp = {n: (jnp.float64(v) if isinstance(v, float) else v) for n, v in row.items()}
            for s, seed in enumerate((0, 3)):
                loss, acc = _hand_trained(small_digits, hp, seed, 14, 32)
                np.testing.assert_allclose(res.metrics["final_val_loss"][k, s], loss, rtol=1e-5)
                np.testing.assert_allclose(res.metrics["final_val_acc"][k, s], acc, rtol=1e-5)
    assert res.direction("final_val_acc") == "maximize" and res.direction("final_val_neg_acc") == "minimize"
    assert list(res.best("final_val_acc", 4)) == list(res.best("final_val_neg_acc", 4))
    assert res.metrics["param_count"].tolist() == [64 * w + w + w * 10 + 10 for w in
                                                   np.array([6, 10])[configs["width"].astype(int)]]
    assert np.all(res.metrics["flops_per_example"] > 2 * 64 * 6)


class Blocks(nn.Module):
    blocks: int
    channels: int
    bias: bool

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        for _ in range(self.blocks):
            x = jnp.tanh(nn.Dense(self.channels)(x))
        return nn.Dense(10)(x) + jnp.where(self.bias, 0.1, 0.0)


def test_static_hyperparameters_split_groups_as_documented(small_digits):
    """Static: the loop's batch size and budget, declared names, Categoricals, and the Ints the
    model needs concrete (found by tracing); a Bool used as a value and every Float stay traced."""
    space = hs.Space([hs.Float("learning_rate", 1e-3, 0.1, log=True), hs.Int("blocks", 1, 2),
                      hs.Categorical("channels", [3, 5]), hs.Bool("bias"), hs.Int("copies", 1, 3),
                      hs.Categorical("batch_size", [16, 32])])
    model = hs.Model(lambda hp: Blocks(hp["blocks"], hp["channels"], hp["bias"] & (hp["copies"] > 0)))
    configs = space.sample(24, "random", seed=0)
    plan = plan_sweep(small_digits, space, configs, model=model, fixed={"steps": 3})
    assert sorted(set(plan.resolved.static) - {"batch_size", "steps"}) == ["blocks", "channels"]
    assert set(plan.resolved.traced) >= {"learning_rate", "bias", "copies"}
    keys = {(int(configs["blocks"][i]), int(configs["channels"][i]), int(configs["batch_size"][i]))
            for i in range(24)}
    assert len(plan.groups) == len(keys)
    for g in plan.groups:
        rows = g.configs
        assert len({(int(configs["blocks"][i]), int(configs["channels"][i]), int(configs["batch_size"][i]))
                    for i in rows}) == 1
        assert set(g.static) == {"blocks", "channels"}
    # declaring a name static splits by it too; a Float can never be static automatically
    declared = hs.Model(model.module, static=("copies",))
    plan2 = plan_sweep(small_digits, space, configs, model=declared, fixed={"steps": 3})
    assert "copies" in plan2.resolved.static and len(plan2.groups) > len(plan.groups)


def test_bad_user_code_gets_errors_naming_the_culprit(small_digits):
    space = hs.Space([hs.Float("learning_rate", 1e-3, 0.1, log=True), hs.Int("width", 4, 8)])
    configs = space.sample(2, "random", seed=0)
    plan = lambda model, sp=space, cf=configs: plan_sweep(small_digits, sp, cf, model=model, fixed={"steps": 2})  # noqa

    class Wrong(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(3)(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))

    with pytest.raises(ModelError, match=r"outputs of shape \(64, 3\).*\(batch, 10\)"):
        plan(hs.Model(lambda hp: Wrong(hp["width"])))
    with pytest.raises(ModelError, match="loss returned an array of shape"):
        plan(hs.Model(lambda hp: Net(hp["width"]), loss=lambda o, b, hp: o.sum(-1)))
    with pytest.raises(ModelError, match="metric 'f1'.*no direction"):
        plan(hs.Model(lambda hp: Net(hp["width"]), metrics=lambda o, b, hp: {"f1": o.mean()}))
    with pytest.raises(ModelError, match="cannot import module 'no_such_pkg"):
        plan("no_such_pkg.models:make_model")
    with pytest.raises(ModelError, match="no attribute 'nope'"):
        plan("examples.resnet_digits:nope")
    with pytest.raises(ModelError, match="factory .* returned int"):
        plan(hs.Model(lambda hp: 3))

    class FlaxDropout(nn.Module):
        rate: float

        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(10)(nn.Dropout(self.rate)(x.reshape(x.shape[0], -1), deterministic=not train))

    rate_space = hs.Space([hs.Float("rate", 0.0, 0.5)])
    with pytest.raises(ModelError, match=r"'rate' \(Float\).*hsens_jax.engine.Dropout"):
        plan(hs.Model(lambda hp: FlaxDropout(hp["rate"])), rate_space, rate_space.sample(2, "random"))
    with pytest.raises(ModelError, match=r"\['lr'\].*never read"):
        sp = hs.Space([hs.Int("width", 4, 8), hs.Float("lr", 0.1, 1.0)])
        plan(hs.Model(lambda hp: Net(hp["width"])), sp, sp.sample(2, "random"))
    with pytest.raises(ValueError, match="'rate' is conditional.*default"):
        sp = hs.Space([hs.Bool("drop"), hs.Float("rate", 0.0, 0.5, condition={"drop": True}), hs.Int("width", 4, 8)])
        plan(hs.Model(lambda hp: Net(hp["width"], hp["rate"])), sp, sp.sample(4, "random"))


def test_user_module_divergence_is_isolated_and_resume_reuses_runs(small_digits, tmp_path):
    space = hs.Space([hs.Float("learning_rate", 1e-2, 1e38, log=True)])
    configs = {"learning_rate": np.array([0.5, 1e38, 0.3, 1.0])}
    model = hs.Model(lambda hp: Net(8), optimizer=lambda hp: optax.sgd(hp["learning_rate"]))
    kw = dict(model=model, fixed={"steps": 10, "batch_size": 32}, n_evals=2, progress=False, chunk_size=2)
    full = run_sweep(small_digits, space, configs, **kw)
    assert full.metrics["diverged"][:, 0].tolist() == [False, True, False, False]
    assert full.metrics["diverged_reason"][1, 0] == 1  # non-finite
    alone = run_sweep(small_digits, space, {"learning_rate": configs["learning_rate"][[0, 2]]}, **kw)
    np.testing.assert_allclose(full.metrics["final_val_loss"][[0, 2]], alone.metrics["final_val_loss"], rtol=1e-6)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(small_digits, space, configs, run_dir=tmp_path, stop_after_chunks=1, **kw)
    resumed = run_sweep(small_digits, space, configs, run_dir=tmp_path, **kw)
    assert resumed.meta["new_chunks"] == 1
    np.testing.assert_array_equal(resumed.metrics["final_val_loss"], full.metrics["final_val_loss"])


SHARDED = textwrap.dedent("""
    import sys, json, numpy as np, jax
    sys.path.insert(0, {here!r})
    from test_model import USER, SPACE1
    from hsens_jax.data import load_dataset
    from hsens_jax.engine.sweep import run_sweep
    ds = load_dataset("digits", n_train=300, seed=0)
    res = run_sweep(ds, SPACE1, SPACE1.sample(5, "random", seed=1), model=USER,
                    fixed={{"steps": 6, "batch_size": 32, "width": 6}}, n_evals=2, progress=False, chunk_size=4)
    print(json.dumps({{"devices": len(jax.devices()), "loss": res.metrics["final_val_loss"].tolist()}}))
""")


def test_user_module_sharded_over_two_devices_equals_one(small_digits):
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", SHARDED.format(here=str(Path(__file__).parent))], env=env,
                         check=True, capture_output=True, text=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2
    single = run_sweep(small_digits, SPACE1, SPACE1.sample(5, "random", seed=1), model=USER,
                       fixed={"steps": 6, "batch_size": 32, "width": 6}, n_evals=2, progress=False, chunk_size=4)
    np.testing.assert_allclose(np.array(got["loss"]), single.metrics["final_val_loss"], rtol=1e-5)


def test_three_fold_cv_equals_three_single_fold_sweeps(small_digits):
    """cv=3 vectorizes the folds; each fold's scores equal a sweep on that fold alone; the
    summary follows scikit-learn's cv_results_."""
    space = hs.Space([hs.Float("learning_rate", 1e-3, 0.1, log=True), hs.Categorical("optimizer", ["sgd", "adam"])])
    configs = space.sample(3, "random", seed=4)
    kw = dict(fixed={"steps": 9, "batch_size": 32, "width": 8, "depth": 1}, n_evals=3, progress=False)
    cv = run_sweep(small_digits, space, configs, cv=3, seeds=[0, 1], **kw)
    assert cv.metrics["final_val_loss"].shape == (3, 2, 3) and cv.n_folds == 3
    for f in range(3):
        alone = run_sweep(small_digits.fold(f, 3), space, configs, seeds=[0, 1], **kw)
        np.testing.assert_allclose(cv.metrics["final_val_loss"][:, :, f], alone.metrics["final_val_loss"], rtol=1e-5)
        np.testing.assert_allclose(cv.metrics["final_val_accuracy"][:, :, f], alone.metrics["final_val_accuracy"],
                                   rtol=1e-5)
    table = cv.cv_results("final_val_accuracy")
    per_fold = cv.metrics["final_val_accuracy"].mean(axis=1)
    np.testing.assert_allclose(table["mean_test_score"], per_fold.mean(1))
    np.testing.assert_allclose(table["std_test_score"], per_fold.std(1))
    np.testing.assert_allclose(table["split2_test_score"], per_fold[:, 2])
    assert table["rank_test_score"][np.argmax(per_fold.mean(1))] == 1
    loss_table = cv.cv_results("final_val_loss")
    assert loss_table["score"] == "neg_final_val_loss" and np.all(loss_table["mean_test_score"] < 0)
    np.testing.assert_allclose(cv.objective("final_val_loss"), cv.metrics["final_val_loss"].mean(axis=(1, 2)))


@pytest.mark.parametrize("name", ["resnet_digits", "bateman_physics"])
def test_examples_sweep_analyse_and_differentiate(name):
    """The README's user models: each swept, analysed with HSIC and its hypergradient taken."""
    import importlib

    example = importlib.import_module(f"examples.{name}")
    if name == "resnet_digits":  # one program here (static splitting: test_static_hyperparameters_...)
        space = hs.Space([p for p in example.SPACE.params if p.name not in ("blocks", "channels")])
        result, report, grad = example.run(n_configs=8, epochs=2, n_train=300, space=space,
                                           fixed={"blocks": 1, "channels": 4})
        assert set(result.meta["static"]) == {"blocks", "channels"}
        wrt = ("learning_rate", "weight_decay", "label_smoothing")
    else:
        space = hs.Space([p for p in example.SPACE.params if p.name not in ("width", "depth")])
        result, report, grad = example.run(n_configs=8, epochs=2, n=300, space=space, fixed={"width": 16, "depth": 1})
        assert "final_val_residual" in result.metrics and result.direction("final_val_mse") == "minimize"
        wrt = ("learning_rate", "physics_weight")
    assert np.isfinite(result.metrics["final_val_loss"]).all()
    assert report.r2.shape[1] == len(result.space.names)
    assert set(grad.grad) == set(wrt) and all(np.isfinite(float(v)) for v in grad.grad.values())


def test_a_test_split_is_evaluated_at_the_end_and_reported(small_digits):
    """With a test split equal to the validation set, the test scores equal the final validation
    scores; they carry directions too."""
    ds = hs.Dataset.from_arrays(small_digits.x_train, small_digits.y_train, x_val=small_digits.x_val,
                                y_val=small_digits.y_val, x_test=small_digits.x_val, y_test=small_digits.y_val)
    space = hs.Space([hs.Float("learning_rate", 1e-3, 0.1, log=True)])
    res = run_sweep(ds, space, space.sample(3, "random", seed=0), fixed={"steps": 4, "width": 8, "depth": 1},
                    n_evals=1, progress=False)
    np.testing.assert_allclose(res.metrics["test_loss"], res.metrics["final_val_loss"], rtol=1e-6)
    np.testing.assert_allclose(res.metrics["test_accuracy"], res.metrics["final_val_accuracy"], rtol=1e-6)
    assert res.direction("test_accuracy") == "maximize" and res.meta["dataset"]["n_test"] == len(ds.x_test)
