import json

import numpy as np
import pytest

from hsens_jax.analysis import analyze
from hsens_jax.cli import main
from hsens_jax.results import SweepResult
from hsens_jax.space import Categorical, Float, Int, Space

SPACE = Space([
    Float("learning_rate", 1e-4, 1.0, log=True),
    Categorical("optimizer", ["sgd", "momentum"]),
    Float("momentum", 0.0, 1.0, condition={"optimizer": "momentum"}),
    Int("width", 8, 64),
    Float("noise_knob", 0.0, 1.0),
])


def _fake_sweep(n=160, seed=0):
    """A sweep whose 'loss' depends on log-lr (and on momentum where active), whose
    parameter count depends on width only, and where noise_knob matters for nothing."""
    rng = np.random.default_rng(seed)
    configs = SPACE.sample(n, "random", seed=seed)
    u_lr = (np.log10(configs["learning_rate"]) + 4) / 4
    mom = np.nan_to_num(configs["momentum"])
    loss = (u_lr - 0.6) ** 2 + 0.3 * mom ** 2 + 0.01 * rng.normal(size=n)
    metrics = {
        "final_val_loss": np.stack([loss, loss + 0.001 * rng.normal(size=n)], 1),
        "diverged": np.zeros((n, 2), bool),
        "param_count": (configs["width"] * 75 + 10).astype(np.int64),
    }
    return SweepResult(SPACE, configs, np.array([0, 1]), metrics, {})


def _hsic_v_numpy(x, y):
    """Textbook V-statistic with Gaussian kernels (bandwidth = std, ddof=1), float64."""
    n = len(x)
    K = np.exp(-0.5 * ((x[:, None] - x[None]) / x.std(ddof=1)) ** 2)
    L = np.exp(-0.5 * ((y[:, None] - y[None]) / y.std(ddof=1)) ** 2)
    H = np.eye(n) - 1.0 / n
    return np.trace(K @ H @ L @ H) / n ** 2


def test_analysis_finds_what_matters_and_handles_conditionals():
    res = _fake_sweep()
    rep = analyze(res, ["final_val_loss", "param_count"], n_permutations=300, seed=1)
    names = list(rep.names)
    lr, mom, width, noise = (names.index(k) for k in ("learning_rate", "momentum", "width", "noise_knob"))
    assert rep.pvalue[0, lr] < 0.01 and rep.pvalue[0, noise] > 0.01
    assert rep.r2[0, lr] == max(rep.r2[0, j] for j in range(len(names)) if j != mom)
    assert rep.pvalue[0, mom] < 0.01  # on its own rows, momentum matters
    assert rep.pvalue[1, width] < 0.01 and rep.r2[1, width] == np.nanmax(rep.r2[1])
    # momentum is analysed on the configurations where it is active, and only there
    active = ~np.isnan(res.configs["momentum"])
    assert rep.n_used[0, mom] == active.sum() and rep.n_used[0, lr] == len(active)
    X = SPACE.normalize(res.configs, method="novello", seed=1)
    y = res.objective("final_val_loss")
    expected = _hsic_v_numpy(X[active, names.index("momentum")], y[active])
    np.testing.assert_allclose(rep.hsic[0, mom], expected, rtol=1e-4)


def test_goal_oriented_diverged_and_constant_objectives(tmp_path):
    res = _fake_sweep()
    res.metrics["final_val_loss"][:5] = np.nan
    res.metrics["diverged"][:5] = True
    rep = analyze(res, "final_val_loss", target=0.2, pvalue="permutation", n_permutations=200)
    assert rep.settings["target"] == 0.2 and np.isfinite(rep.r2).all()
    assert rep.n_used[0, 0] == len(res.seeds) * 0 + res.n_configs  # diverged kept, as the worst
    dropped = analyze(res, "final_val_loss", diverged="drop", pvalue=None)
    assert dropped.n_used[0, 0] == res.n_configs - 5 and np.isnan(dropped.pvalue).all()
    res.metrics["flat"] = np.ones((res.n_configs, 2))
    flat = analyze(res, "flat", pvalue="gamma")
    np.testing.assert_array_equal(flat.r2, 0) and np.testing.assert_array_equal(flat.pvalue, 1)
    files = rep.save(tmp_path)
    doc = json.loads(files[0].read_text())
    assert doc["names"] == list(SPACE.names) and len(doc["r2"][0]) == len(SPACE.names)
    ax = rep.plot()
    assert ax.get_title().startswith("Sensitivity")
    with pytest.raises(ValueError, match="target"):
        analyze(res, "final_val_loss", target=1.5)
    with pytest.raises(ValueError, match="diverged"):
        analyze(res, "final_val_loss", diverged="ignore")


def test_cli_analyze_writes_tables_and_plots(tmp_path, capsys):
    res = _fake_sweep()
    res.save(tmp_path)
    assert main(["analyze", str(tmp_path), "--objective", "final_val_loss", "--permutations", "100",
                 "--interactions"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "R2-HSIC" in out
    for name in ("sensitivity.json", "sensitivity.csv", "sensitivity_final_val_loss.png",
                 "sensitivity_final_val_loss_interactions.png"):
        assert (tmp_path / name).exists(), name
    assert main(["analyze", str(tmp_path), "--objective", "no_such_metric"]) == 2


def _threshold_sweep(q=0.2, n=256):
    """Section 4.3 of Novello et al. (2023): x3 exists only where x2 > 0.6, and x4 only where, in
    addition, x3 < 0.5. Made-up losses (no training): every active-x3 run is worse than every other
    run (10 + ...), so the best fraction q of *all* runs holds none of x3's rows; on those rows the
    loss grows with x3 (and with x4 where x4 exists)."""
    from hsens_jax.space import Threshold

    space = Space([
        Float("x1", 0.0, 1.0),
        Float("x2", 0.0, 1.0),
        Float("x3", 0.0, 1.0, condition={"x2": {"gt": 0.6}}),
        Float("x4", 0.0, 1.0, condition={"x3": Threshold(lt=0.5)}),
    ])
    configs = space.sample(n, "random", seed=7)
    x3_rows = configs["x2"] > 0.6
    x4_rows = x3_rows & (np.nan_to_num(configs["x3"], nan=1.0) < 0.5)
    loss = np.where(x3_rows, 10.0 + np.nan_to_num(configs["x3"]) + 0.3 * np.nan_to_num(configs["x4"]),
                    configs["x1"])
    metrics = {"final_val_loss": loss[:, None], "diverged": np.zeros((n, 1), bool)}
    return SweepResult(space, configs, np.array([0]), metrics, {}), x3_rows, x4_rows, loss


def _direct_goal_hsic(x, y, q, settings):
    from hsens_jax.sensitivity.hsic import best_fraction, hsic

    return hsic(x[:, None], y, estimator=settings.get("estimator", "V"),
                bandwidth=settings.get("bandwidth", "pooled_median"), target=best_fraction(q),
                convention="novello2023")


def test_goal_oriented_index_of_a_threshold_conditional_hyperparameter():
    q = 0.2
    res, x3_rows, x4_rows, loss = _threshold_sweep(q)
    assert 60 < x3_rows.sum() < 140 and 20 < x4_rows.sum() < x3_rows.sum()
    # the best q of all runs lies outside x3's rows: a quantile not recomputed on them would
    # leave x3 an empty goal (index 0)
    assert not np.any(loss[x3_rows] <= np.quantile(loss, q))
    rep = analyze(res, "final_val_loss", target=q, pvalue="gamma")
    names = list(rep.names)
    for name, rows in (("x3", x3_rows), ("x4", x4_rows)):
        j = names.index(name)
        assert rep.n_used[0, j] == rows.sum(), name  # its active rows, and only those
        x = res.configs[name][rows]  # a Float on [0, 1]: its normalization is itself
        direct = _direct_goal_hsic(x, loss[rows], q, rep.settings)
        np.testing.assert_allclose(rep.hsic[0, j], np.asarray(direct.hsic)[0], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(rep.r2[0, j], np.asarray(direct.r2)[0], rtol=1e-5, err_msg=name)
    j3, j4 = names.index("x3"), names.index("x4")
    assert rep.r2[0, j3] > 0.2 and rep.pvalue[0, j3] < 1e-4  # inside its rows, x3 decides the goal
    assert rep.r2[0, j4] > 0.05 and rep.pvalue[0, j4] < 0.05
    assert rep.n_used[0, names.index("x1")] == res.n_configs


def test_global_index_of_a_threshold_conditional_hyperparameter_uses_its_rows():
    res, x3_rows, _, loss = _threshold_sweep()
    rep = analyze(res, "final_val_loss", pvalue=None)
    j3 = list(rep.names).index("x3")
    assert rep.n_used[0, j3] == x3_rows.sum()
    x = res.configs["x3"][x3_rows]
    np.testing.assert_allclose(rep.hsic[0, j3], _hsic_v_numpy(x, loss[x3_rows]), rtol=1e-4)
