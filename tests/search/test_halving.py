import numpy as np
import pytest

from hsens_jax.engine.sweep import run_sweep
from hsens_jax.search.halving import asha, hyperband, hyperband_brackets, rung_resources, successive_halving

from .conftest import FIXED, N_EVALS, SPACE

SEEDS = (0, 1)


def test_rungs_and_brackets_follow_the_papers():
    assert rung_resources(1, 27, 3) == [1, 3, 9, 27]
    assert rung_resources(2, 20, 3) == [2, 6, 18, 20]
    # Li et al. (2018), Table 1: R = 81, eta = 3
    assert hyperband_brackets(1, 81, 3) == [(81, 1.0), (34, 3.0), (15, 9.0), (8, 27.0), (5, 81.0)]
    with pytest.raises(ValueError, match="eta must be an integer >= 2"):
        rung_resources(1, 9, 1)
    with pytest.raises(ValueError, match="min_resource=9 must be smaller than the budget"):
        rung_resources(9, 9, 3)


def test_successive_halving_keeps_the_documented_survivors_whose_results_equal_a_sweep(small_digits):
    configs = SPACE.sample(6, "random", seed=5)
    res = successive_halving(small_digits, SPACE, configs, min_resource=1, eta=3, fixed=FIXED, seeds=SEEDS,
                             n_evals=N_EVALS, chunk_size=1, progress=False)
    rungs = res.meta["halving"]["rungs"]
    assert [r["steps"] for r in rungs] == [7, 21]  # 1 and 3 epochs of 240 // 32 = 7 steps
    # rung 0 scores every configuration after one epoch: a sweep of one epoch gives the same states
    # (constant learning rate, the same data order), so its final validation loss is the rung's score
    one_epoch = run_sweep(small_digits, SPACE, configs, fixed={**FIXED, "epochs": 1}, seeds=SEEDS, n_evals=1,
                          chunk_size=4, progress=False)
    np.testing.assert_allclose(rungs[0]["scores"], one_epoch.objective("final_val_loss"), rtol=1e-5)
    # the documented survivors: the best 6 // 3 = 2 by that score
    best = np.argsort(one_epoch.objective("final_val_loss"), kind="stable")[:2]
    assert rungs[0]["kept"] == best.tolist() and rungs[1]["configs"] == sorted(best.tolist())
    survivors, halted = np.array(sorted(best)), np.setdiff1d(np.arange(6), best)
    assert res.metrics["rung"].tolist() == [1 if i in survivors else 0 for i in range(6)]
    assert res.metrics["resource_steps"].tolist() == [21 if i in survivors else 7 for i in range(6)]
    assert res.metrics["stopped"][halted].all() and not res.metrics["stopped"][survivors].any()
    assert (res.metrics["stopped_step"][halted] == 7).all() and (res.metrics["stopped_step"][survivors] == -1).all()
    # a survivor's results equal the same configuration trained alone to the full budget
    alone = run_sweep(small_digits, SPACE, {n: c[survivors] for n, c in configs.items()}, fixed=FIXED, seeds=SEEDS,
                      n_evals=N_EVALS, chunk_size=4, progress=False)
    for name in ("final_val_loss", "final_val_accuracy", "best_val_loss", "final_train_loss", "initial_val_loss",
                 "val_loss_curve", "train_curve", "diverged"):
        np.testing.assert_allclose(np.asarray(res.metrics[name][survivors], float),
                                   np.asarray(alone.metrics[name], float), rtol=1e-5, atol=1e-7, err_msg=name)
    # a halted run keeps the results of the state it stopped in
    np.testing.assert_allclose(res.metrics["final_val_loss"][halted], one_epoch.metrics["final_val_loss"][halted],
                               rtol=1e-5)


def _replay_asha(scores, n_configs, n_rungs, eta, wave):
    """ASHA's rule, written again from the recorded rung scores (lower is better)."""
    rung = np.full(n_configs, -1)
    waves, started = [], 0
    while True:
        jobs = []
        for k in range(n_rungs - 2, -1, -1):
            done = [c for c in range(n_configs) if rung[c] >= k]
            top = sorted(done, key=lambda c: (scores[k][c], c))[: len(done) // eta]
            jobs += [[c, k + 1] for c in top if rung[c] == k][: wave - len(jobs)]
        while len(jobs) < wave and started < n_configs:
            jobs.append([started, 0])
            started += 1
        if not jobs:
            return waves
        for c, r in jobs:
            rung[c] = r
        waves.append(jobs)


def test_asha_promotes_the_best_of_each_rung_in_waves(small_digits):
    res = asha(small_digits, SPACE, n_configs=7, min_resource=1, eta=3, wave=3, fixed=FIXED, n_evals=N_EVALS,
               chunk_size=1, progress=False)
    h = res.meta["halving"]
    scores = np.array([[np.inf if v is None else v for v in row] for row in h["scores"]])
    assert h["waves"] == _replay_asha(scores, 7, 2, 3, 3)
    promoted = sorted(c for w in h["waves"] for c, r in w if r == 1)
    assert len(promoted) >= 2 and res.metrics["rung"].tolist() == [1 if c in promoted else 0 for c in range(7)]
    assert res.metrics["stopped"][:, 0].tolist() == [c not in promoted for c in range(7)]


def test_hyperband_runs_its_brackets(small_digits):
    res = hyperband(small_digits, SPACE, min_resource=1, eta=3, fixed=FIXED, n_evals=N_EVALS, chunk_size=1,
                    progress=False)
    brackets = res.meta["halving"]["brackets"]
    assert [(b["n"], b["min_resource"]) for b in brackets] == hyperband_brackets(1, 3, 3) == [(3, 1.0), (2, 3.0)]
    assert res.metrics["bracket"].tolist() == [0, 0, 0, 1, 1]
    assert res.metrics["rung"].tolist()[:3].count(1) == 1  # bracket 0 keeps one of three
    assert res.metrics["resource_steps"].tolist()[3:] == [21, 21]  # bracket 1 trains its two to the budget


def test_halving_refuses_what_it_cannot_do(small_digits):
    configs = SPACE.sample(3, "random", seed=0)
    with pytest.raises(ValueError, match="exactly one of fixed\\['epochs'\\] or fixed\\['steps'\\]"):
        successive_halving(small_digits, SPACE, configs, min_resource=1, fixed={"depth": 1}, progress=False)
    with pytest.raises(ValueError, match="objective 'param_count'.*final_val_loss"):
        successive_halving(small_digits, SPACE, configs, min_resource=1, fixed=FIXED, objective="param_count")
    from hsens_jax.space import Categorical, Space

    two_programs = Space(list(SPACE.params) + [Categorical("batch_size", [16, 32])])
    mixed = two_programs.sample(4, "random", seed=1)
    mixed["batch_size"] = np.array([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="need 2"):
        successive_halving(small_digits, two_programs, mixed, min_resource=1, fixed={"epochs": 3, "depth": 1})
