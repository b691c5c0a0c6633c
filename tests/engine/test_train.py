import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.engine.builtin import sized_model
from hsens_jax.engine.builtin import parse_layer_sizes
from hsens_jax.engine.optimizers import SCHEDULES
from hsens_jax.engine.train import (Patience, TrainSpec, hp_from_values, learning_rate_at, prepare_data, train,
                                    train_batch)


def _spec(ds, **kw):
    model = sized_model("mlp", kw.pop("max_width", 16), kw.pop("max_depth", 2), ds.output_dim, tuple(ds.input_shape),
                      activations=kw.pop("activations", ("relu",)))
    return TrainSpec(model, ds.task, **{"batch_size": 32, "n_steps": 25, "n_train": ds.n_train, "n_evals": 5, **kw})


VALUES = {
    "learning_rate": np.array([0.3, 0.01, 0.05, 1e-3]),
    "optimizer": np.array(["sgd", "adam", "momentum", "adam"]),
    "width": np.array([16.0, 5.0, 9.0, 12.0]),
    "depth": np.array([1.0, 2.0, 2.0, 1.0]),
    "activation": np.array(["relu", "tanh", "tanh", "relu"]),
}


def test_vmapped_equals_sequential(small_digits):
    """K configurations x 2 seeds in one jit(vmap(train)) equal K*2 separate trainings of
    the same configurations with the same seeds: to 1e-5 relative in float32."""
    ds = small_digits
    data = prepare_data(ds)
    spec = _spec(ds, optimizers=("sgd", "momentum", "adam"), activations=("relu", "tanh"))
    k = len(VALUES["learning_rate"])
    seeds = [0, 1]
    hp = hp_from_values({n: np.repeat(v, 2) for n, v in VALUES.items()}, spec)
    keys = jax.vmap(jax.random.key)(jnp.array(seeds * k))
    batched = jax.jit(jax.vmap(lambda h, kk: train(spec, data, h, kk)))(hp, keys)
    single = jax.jit(lambda h, kk: train(spec, data, h, kk))
    for r in range(2 * k):
        one = single(jax.tree.map(lambda a: a[r], hp), jax.random.key(seeds[r % 2]))
        for name in ("val_loss_curve", "train_curve", "final_val_accuracy"):
            np.testing.assert_allclose(batched[name][r], one[name], rtol=1e-5, atol=1e-6, err_msg=f"{name} run {r}")
    # different configurations really differ, and different seeds too
    assert len(np.unique(np.round(np.asarray(batched["final_val_loss"]), 5))) == 2 * k


def test_train_batch_with_patience_equals_vmapped_train(small_digits):
    """The sweep's program (train_batch) decides patience's early exit for the whole batch, its
    step counter unbatched; its results equal jax.vmap(train)'s, where the counter is batched."""
    ds = small_digits
    data = prepare_data(ds)
    spec = _spec(ds, optimizers=("sgd", "momentum", "adam"), activations=("relu", "tanh"), n_steps=70,
                 patience=Patience(n_iter_no_change=1, tol=0.1))
    hp = hp_from_values(VALUES, spec)
    keys = jax.vmap(jax.random.key)(jnp.arange(len(VALUES["width"])))
    batch = jax.jit(lambda h, k: train_batch(spec, data, h, k))(hp, keys)
    vmapped = jax.jit(jax.vmap(lambda h, k: train(spec, data, h, k)))(hp, keys)
    assert set(batch) == set(vmapped)
    for name in batch:
        np.testing.assert_allclose(np.asarray(batch[name], float), np.asarray(vmapped[name], float), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    stopped = np.asarray(batch["stopped"])
    assert stopped.any() and not stopped.all()  # the loop ran on after some runs stopped
    assert np.all(np.asarray(batch["stopped_step"])[stopped] < spec.n_steps - 1)


@pytest.mark.parametrize("optimizer, huge", [("sgd", 1e9), ("adam", 1e37)])
def test_divergence_is_frozen_flagged_and_isolated(small_digits, optimizer, huge):
    ds = small_digits
    data = prepare_data(ds)
    spec = _spec(ds, optimizers=(optimizer,))
    lrs = np.array([0.1, huge, 0.05]) * (0.01 if optimizer == "adam" else 1)
    lrs[1] = huge
    fn = jax.jit(jax.vmap(lambda h, kk: train(spec, data, h, kk), in_axes=(0, None)))
    out = fn(hp_from_values({"learning_rate": lrs, "optimizer": optimizer}, spec), jax.random.key(0))
    assert list(np.asarray(out["diverged"])) == [False, True, False]
    assert int(out["diverged_step"][1]) >= 0 and int(out["diverged_step"][0]) == -1
    assert np.isfinite(np.asarray(out["final_val_loss"])[[0, 2]]).all()
    # frozen: parameters stop changing once the flag is raised (its curve is constant from then)
    curve = np.asarray(out["val_loss_curve"])[1]
    first = int(out["diverged_step"][1]) // spec.eval_every + 1
    np.testing.assert_array_equal(curve[first:], curve[-1])
    # the healthy configurations are bit for bit what they are beside a healthy neighbour
    # (same program, same batch width), and within float32 rounding what they are alone
    calm = fn(hp_from_values({"learning_rate": np.array([lrs[0], 0.02, lrs[2]]), "optimizer": optimizer}, spec),
              jax.random.key(0))
    alone = fn(hp_from_values({"learning_rate": lrs[[0, 2]], "optimizer": optimizer}, spec), jax.random.key(0))
    for name in ("val_loss_curve", "train_curve"):
        np.testing.assert_array_equal(np.asarray(out[name])[[0, 2]], np.asarray(calm[name])[[0, 2]])
        np.testing.assert_allclose(np.asarray(out[name])[[0, 2]], np.asarray(alone[name]), rtol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_learning_rate_schedules_match_their_formulas(small_digits, schedule):
    spec = _spec(small_digits, n_steps=100, schedules=SCHEDULES)
    hp = hp_from_values({"learning_rate": 0.2, "schedule": schedule, "warmup": 0.1, "final_lr_fraction": 0.05}, spec)
    t = np.arange(100)
    got = np.asarray(jax.vmap(lambda s: learning_rate_at(spec, hp, s))(jnp.asarray(t)))
    warm = np.clip((t + 1) / 10.0, 0, 1)
    p = np.clip((t - 10.0) / 90.0, 0, 1)
    a = 0.05
    shape = {"constant": np.ones_like(p), "cosine": a + (1 - a) * 0.5 * (1 + np.cos(np.pi * p)),
             "linear": 1 - (1 - a) * p, "exponential": a ** p}[schedule]
    np.testing.assert_allclose(got, 0.2 * warm * shape, rtol=1e-5)


def test_regression_task_trains_and_reports_mse():
    from hsens_jax.data import load_dataset

    ds = load_dataset("runge", n=400)
    data = prepare_data(ds)
    spec = _spec(ds, batch_size=40, n_steps=150, activations=("tanh",), max_width=32)
    out = jax.jit(lambda h: train(spec, data, h, jax.random.key(0)))(
        hp_from_values({"learning_rate": 0.01, "activation": "tanh", "width": 32}, spec))
    curve = np.asarray(out["val_loss_curve"])
    assert "final_val_accuracy" not in out  # regression: the loss (MSE) is the score
    assert curve[-1] < 0.5 * curve[0]  # it learns
    y = np.asarray(ds.y_val)
    assert float(out["final_val_loss"]) < np.var(y)  # better than predicting the mean


def test_hp_errors_and_layer_sizes(small_digits):
    spec = _spec(small_digits, max_depth=3)
    with pytest.raises(ValueError, match="learnig_rate"):
        hp_from_values({"learnig_rate": 0.1}, spec)
    with pytest.raises(ValueError, match="'rmsprop'"):
        hp_from_values({"optimizer": "rmsprop"}, spec)
    with pytest.raises(ValueError, match="different shapes"):
        hp_from_values({"learning_rate": np.ones(3), "width": np.ones(2)}, spec)
    with pytest.raises(ValueError, match="batch_size"):
        TrainSpec(spec.model, "classification", batch_size=10_000, n_steps=5, n_train=small_digits.n_train)
    with pytest.raises(ValueError, match="task"):
        TrainSpec(spec.model, "ranking", batch_size=10, n_steps=5, n_train=100)
    assert parse_layer_sizes("100,50") == (100, 50) and parse_layer_sizes((3,)) == (3,) and parse_layer_sizes(7) == (7,)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        parse_layer_sizes("ten")
    hp = hp_from_values({"hidden_layer_sizes": np.array(["8,4", "6", "5,5,5"], dtype=object)}, spec)
    np.testing.assert_array_equal(hp["widths"], [[8, 4, 0], [6, 0, 0], [5, 5, 5]])
    np.testing.assert_array_equal(hp["depth"], [2, 1, 3])


def test_a_diverging_step_keeps_the_last_finite_parameters(small_digits):
    """The guard at the level of one step: parameters and batch statistics are kept, the flag
    and the step are set, the loss is reported as NaN; a diverged state never moves again."""
    from hsens_jax.engine.train import init_state, train_step

    ds = small_digits
    data = prepare_data(ds)
    spec = _spec(ds, optimizers=("adam",))
    hp = hp_from_values({"learning_rate": 1e37, "optimizer": "adam"}, spec)
    state = init_state(spec, data, hp, jax.random.key(0))
    idx = jnp.arange(spec.batch_size)
    step = jax.jit(lambda s, t: train_step(spec, data, hp, s, idx, jax.random.key(1), t))
    history = [state]
    for t in range(6):
        history.append(step(history[-1], t)[0])
    flags = [bool(s.diverged) for s in history]
    assert flags[-1] and not flags[0]
    first = flags.index(True)  # the state after the first non-finite step
    assert int(history[-1].diverged_step) == first - 1
    for s in history[first:]:
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(history[first - 1].params)):
            np.testing.assert_array_equal(a, b)
        assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(s.params))
    assert np.isnan(float(step(history[-1], 6)[1]))


def test_divergence_criteria_are_recorded(small_digits):
    """Finite runs are flagged too: a loss blowing up past BLOWUP x its initial value, and a run
    stuck at the chance level (log C) on both training and validation sets; the reason is kept."""
    import optax

    import sys

    import hsens_jax as hs
    from hsens_jax.engine.sweep import run_sweep

    tr_mod = sys.modules["hsens_jax.engine.train"]
    # gradient *ascent* (optax.scale by +lr) blows the loss up, finitely; lr = 0 learns nothing
    space = hs.Space([hs.Float("lr", 0.0, 5.0)])
    model = hs.Model(lambda hp: _TinyNet(), optimizer=lambda hp: optax.scale(hp["lr"]), name="ascent")
    descent = hs.Model(lambda hp: _TinyNet(), optimizer=lambda hp: optax.sgd(hp["lr"]), name="descent")
    kw = dict(fixed={"steps": 40, "batch_size": 32}, n_evals=2, progress=False)
    up = run_sweep(small_digits, space, {"lr": np.array([5.0])}, model=model, **kw)
    down = run_sweep(small_digits, space, {"lr": np.array([0.0, 0.5])}, model=descent, **kw)
    assert up.metrics["diverged_reason"][0, 0] == 2  # loss_blowup
    assert up.metrics["final_val_loss"][0, 0] > tr_mod.BLOWUP * up.metrics["initial_val_loss"][0, 0]
    assert np.isfinite(up.metrics["final_val_loss"][0, 0])
    assert down.metrics["diverged_reason"][:, 0].tolist() == [3, 0]  # lr = 0: chance level; lr = 0.5 learns
    assert down.metrics["diverged"][:, 0].tolist() == [True, False]
    assert tr_mod.DIVERGENCE_REASONS[3] == "chance_level"


class _TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def test_patience_follows_scikit_learns_rule(small_digits):
    """Per-run early stopping: with one curve point per epoch, the step a run stops at is the one
    scikit-learn's rule (count checks not improving the best by tol, stop when the count exceeds
    n_iter_no_change) gives on that run's epoch losses; a stopped run keeps its stopped state."""
    from functools import partial

    from hsens_jax.engine.train import Patience

    ds = small_digits
    data = prepare_data(ds)
    spe = ds.n_train // 32
    epochs = 30
    base = _spec(ds, optimizers=("sgd",), n_steps=epochs * spe, n_evals=epochs)
    spec = TrainSpec(base.model, ds.task, 32, epochs * spe, ds.n_train, optimizers=("sgd",), n_evals=epochs,
                     patience=Patience(n_iter_no_change=2, tol=0.02))
    hp = hp_from_values({"learning_rate": np.array([1e-4, 0.02, 0.3]), "optimizer": "sgd"}, spec)
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    run = lambda s: jax.jit(jax.vmap(partial(train, s), in_axes=(None, 0, 0, None)))(data, hp, keys, None)  # noqa
    free, early = run(base), run(spec)
    for r in range(3):
        losses = np.asarray(free["train_curve"][r])  # the epoch means of the unstopped run
        best, count, stop_epoch = np.inf, 0, None
        for e, value in enumerate(losses):
            count = count + 1 if value > best - 0.02 else 0
            best = min(best, value)
            if count > 2:
                stop_epoch = e
                break
        if stop_epoch is None:
            assert not bool(early["stopped"][r])
            np.testing.assert_allclose(early["final_val_loss"][r], free["final_val_loss"][r], rtol=1e-5)
        else:
            assert bool(early["stopped"][r]) and int(early["stopped_step"][r]) == (stop_epoch + 1) * spe - 1
            curve = np.asarray(early["val_loss_curve"][r])
            np.testing.assert_allclose(curve[: stop_epoch + 1], np.asarray(free["val_loss_curve"][r])[: stop_epoch + 1],
                                       rtol=1e-5)
            np.testing.assert_allclose(curve[stop_epoch + 1:], curve[stop_epoch], rtol=1e-6)  # frozen from then on
    assert len(set(np.asarray(early["stopped_step"]).tolist())) > 1  # each run on its own


def _sorts_outside_conds(jaxpr) -> int:
    """``sort`` equations of ``jaxpr`` and its sub-jaxprs, not counting those inside a ``cond``."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "sort":
            count += 1
        if eqn.primitive.name == "cond":
            continue
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _sorts_outside_conds(sub)
    return count


def test_folds_of_equal_epochs_draw_each_order_once_per_epoch(small_digits):
    """With folds, the epoch boundaries decide when a run's data order is redrawn (a sort).
    When every fold has the same number of steps per epoch (``TrainSpec.fold_n_train``), the
    boundary is one static schedule: the redraw stays inside a ``cond`` taken once per epoch.
    Without it, each run's fold decides, the ``cond`` turns into a select under ``vmap`` and
    the sort runs at every step (2.3 of the 3 s of a grid search's smallest program). Both
    programs give the same results."""
    from hsens_jax.engine.sweep import dataset_folds

    ds = small_digits
    folds = dataset_folds(ds, 3)
    sizes = tuple(len(tr) for tr, _ in folds)
    data = prepare_data(ds, folds=folds)
    n = len(VALUES["width"])
    fold = jnp.arange(n) % 3
    keys = jax.vmap(jax.random.key)(jnp.arange(n))
    out = {}
    for name, fold_sizes in (("static", sizes), ("per_run", None)):
        spec = _spec(ds, n_train=min(sizes), n_steps=40, fold_n_train=fold_sizes,
                     optimizers=("sgd", "momentum", "adam"), activations=("relu", "tanh"),
                     patience=Patience(n_iter_no_change=2, tol=0.0))
        assert spec.uniform_epochs == (fold_sizes is not None)
        hp = hp_from_values(VALUES, spec)
        fn = lambda h, k, f: train_batch(spec, data, h, k, f)  # noqa: E731
        sorts = _sorts_outside_conds(jax.make_jaxpr(fn)(hp, keys, fold).jaxpr)
        assert (sorts == 0) if name == "static" else (sorts >= 1), (name, sorts)
        out[name] = jax.jit(fn)(hp, keys, fold)
    for key in out["static"]:
        np.testing.assert_array_equal(np.asarray(out["static"][key]), np.asarray(out["per_run"][key]), err_msg=key)
    # folds whose epochs differ keep the per-run schedule
    assert not _spec(ds, batch_size=50, fold_n_train=(149, 150, 151)).uniform_epochs
    assert _spec(ds, batch_size=50, fold_n_train=(150, 151, 199)).uniform_epochs
