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
