"""The HSIC-based optimization's reduction step, the TPE adapter and the trade-off helpers (no training)."""

import numpy as np
import pytest

import hsens_jax as hs
from hsens_jax import design, encoding
from common import pareto_front
from hsic_hpo import best_so_far, reduction, sample_reduced, suggest, value_at

SPACE = hs.Space([
    hs.Int("depth", 1, 3),
    hs.Int("width", 16, 128, log=True),
    hs.Categorical("optimizer", ["sgd", "momentum", "adam"]),
    hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
    hs.Float("learning_rate", 1e-4, 0.3, log=True),
    hs.Float("dropout", 0.0, 0.5),
])


def _explored(n=64, seed=0):
    configs = design.sample(SPACE, n, kind="sobol", seed=seed)
    lr = configs["learning_rate"]
    val = np.abs(np.log10(lr) + 2) + 0.1 * (configs["optimizer"] != 2) + 0.01 * configs["dropout"]
    return configs, val


def test_reduction_fixes_size_knobs_cheapest_and_others_at_the_best():
    configs, val = _explored()
    rules = reduction(SPACE, configs, val, kept=["learning_rate", "optimizer"], q=0.2, size_knobs=("depth", "width"))
    assert rules["fixed"]["depth"] == 0.0 and rules["fixed"]["width"] == 0.0
    best = int(np.argmin(val))
    u_best = encoding.to_unit(SPACE, configs)[best, SPACE.index("dropout")]
    assert rules["fixed"]["dropout"] == pytest.approx(u_best)
    top = val <= np.quantile(val, 0.2, method="lower")
    assert rules["choices"]["optimizer"] == sorted({int(v) for v in configs["optimizer"][top]})
    u_lr = encoding.to_unit(SPACE, configs)[top, SPACE.index("learning_rate")]
    lo, hi = rules["box"]["learning_rate"]
    assert lo == pytest.approx(max(0.0, u_lr.min() - 0.1)) and hi == pytest.approx(min(1.0, u_lr.max() + 0.1))


def test_sample_reduced_respects_the_rules():
    configs, val = _explored()
    rules = reduction(SPACE, configs, val, kept=["learning_rate", "optimizer"], q=0.2, size_knobs=("depth", "width"))
    new = sample_reduced(SPACE, rules, 32, seed=3)
    SPACE.validate(new)
    assert np.all(new["depth"] == 1) and np.all(new["width"] == 16)
    assert set(np.unique(new["optimizer"]).astype(int)) <= set(rules["choices"]["optimizer"])
    lo, hi = rules["box"]["learning_rate"]
    u = encoding.to_unit(SPACE, new)[:, SPACE.index("learning_rate")]
    assert np.all((u >= lo - 1e-12) & (u <= hi + 1e-12))
    assert len(np.unique(new["learning_rate"])) == 32
    np.testing.assert_array_equal(np.isnan(new["momentum"]), new["optimizer"] != 1)


def test_value_at_decodes_a_unit_coordinate():
    assert value_at(SPACE["width"], 0.0) == 16
    assert value_at(SPACE["optimizer"], 0.99) == "adam"
    assert value_at(SPACE["momentum"], 0.0) == pytest.approx(0.5)


def test_suggest_asks_only_active_hyperparameters():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    records = []
    for _ in range(30):
        trial = study.ask()
        rec = suggest(trial, SPACE)
        records.append(rec)
        assert set(trial.params) == set(rec)
        study.tell(trial, 0.0)
    configs = SPACE.encode(records)  # raises if an inactive value was given or an active one missed
    assert {r["optimizer"] for r in records} == {"sgd", "momentum", "adam"}
    assert all(("momentum" in r) == (r["optimizer"] == "momentum") for r in records)
    SPACE.validate(configs)


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(0)
    err, cost = rng.random(200), rng.integers(1, 50, 200).astype(float)
    err[5] = np.nan
    front = pareto_front(np.where(np.isnan(err), np.inf, err), cost)
    brute = [i for i in range(200) if np.isfinite(err[i]) and not any(
        (cost[j] <= cost[i] and err[j] < err[i]) or (cost[j] < cost[i] and err[j] <= err[i]) for j in range(200)
        if np.isfinite(err[j]))]
    assert sorted(front.tolist()) == sorted(brute)


def test_best_so_far_ignores_failures():
    np.testing.assert_array_equal(best_so_far(np.array([np.nan, 3.0, 4.0, 1.0, np.nan])),
                                  [np.inf, 3.0, 3.0, 1.0, 1.0])
