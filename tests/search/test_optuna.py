import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from hsens_jax.analysis import analyze  # noqa: E402
from hsens_jax.engine.sweep import run_sweep  # noqa: E402
from hsens_jax.results import SweepResult  # noqa: E402
from hsens_jax.search import optuna as hso  # noqa: E402
from hsens_jax.space import Bool, Categorical, Float, Int, Space  # noqa: E402

from .conftest import FIXED, N_EVALS, SPACE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_batches_after_the_first_compile_nothing_and_tell_the_sweeps_values(small_digits):
    res = hso.optimize(small_digits, SPACE, n_trials=12, batch_size=4, fixed=FIXED, n_evals=N_EVALS, seed=1,
                       progress=False)
    assert [len(b["trials"]) for b in res.batches] == [4, 4, 4]
    assert [b["compilations"] for b in res.batches[1:]] == [0, 0]
    trials = sorted(res.study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(12)) == res.trial_numbers.tolist()
    for t in trials:  # define-by-run: momentum exists exactly where the optimizer is momentum
        assert ("momentum" in t.params) == (t.params["optimizer"] == "momentum")
    # each told value is the configuration's objective, which a sweep of the same configurations reproduces
    configs = SPACE.encode([t.params for t in trials])
    again = run_sweep(small_digits, SPACE, configs, fixed=FIXED, n_evals=N_EVALS, progress=False, chunk_size=4)
    expected = again.objective("final_val_loss")
    told = np.array([t.value if t.value is not None else np.nan for t in trials])
    np.testing.assert_allclose(told, expected, rtol=1e-6)
    assert res.best_value == np.nanmin(told)
    assert trials[0].user_attrs["final_val_accuracy"] == pytest.approx(again.objective("final_val_accuracy")[0],
                                                                       rel=1e-6)


def test_cmaes_batches_are_generations(small_digits):
    pytest.importorskip("cmaes")
    res = hso.optimize(small_digits, SPACE, n_trials=8, batch_size=4, sampler="cmaes", fixed=FIXED, n_evals=N_EVALS,
                       progress=False)
    assert len(res.study.trials) == 8 and all(t.state.name == "COMPLETE" for t in res.study.trials)
    assert res.result.n_configs == 8


_KILLED = """
import os, signal, sys
sys.path.insert(0, {root!r})
import jax
jax.config.update("jax_num_cpu_devices", 1)
from hsens_jax.data import load_dataset
from hsens_jax.results import RunDirectory
from hsens_jax.search.optuna import optimize
from tests.search.conftest import FIXED, N_EVALS, SPACE

saved = [0]
original = RunDirectory.save_chunk
def save_then_die(self, *args, **kwargs):
    out = original(self, *args, **kwargs)
    saved[0] += 1
    if saved[0] == 3:  # the first chunk of the second batch is on disk: killed in the middle of it
        os.kill(os.getpid(), signal.SIGKILL)
    return out
RunDirectory.save_chunk = save_then_die
data = load_dataset("digits", n_train=300, seed=0)
optimize(data, SPACE, n_trials=16, batch_size=8, fixed=FIXED, n_evals=N_EVALS, chunk_size=4, run_dir={run!r},
         seed=3, progress=False)
"""


def test_a_killed_search_resumes_without_losing_or_repeating_trials(small_digits, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "killed_search.py"
    script.write_text(_KILLED.format(root=str(ROOT), run=str(run)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    storage = f"sqlite:///{run / 'study.db'}"
    before = optuna.load_study(study_name="hsens", storage=storage)
    states = {t.number: t.state.name for t in before.trials}
    assert states == {n: "COMPLETE" if n < 8 else "RUNNING" for n in range(16)}
    params_before = {t.number: t.params for t in before.trials}
    assert len(list((run / "chunks").glob("*.npz"))) == 3

    res = hso.optimize(small_digits, SPACE, n_trials=16, batch_size=8, fixed=FIXED, n_evals=N_EVALS, chunk_size=4,
                       run_dir=run, seed=3, progress=False)
    after = sorted(res.study.trials, key=lambda t: t.number)
    assert [t.number for t in after] == list(range(16))  # nothing asked again, nothing lost
    assert all(t.state.name == "COMPLETE" for t in after)
    assert {t.number: t.params for t in after} == params_before
    assert res.batches[0]["resumed"] == 8 and res.batches[0]["trials"] == list(range(8, 16))
    assert len(res.batches) == 1
    assert len(list((run / "chunks").glob("*.npz"))) == 4  # only the chunk the kill prevented was trained
    assert res.result.n_configs == 16 and res.trial_numbers.tolist() == list(range(16))
    np.testing.assert_allclose([t.value for t in after], res.result.objective("final_val_loss"), rtol=1e-6)
    # a finished search called again trains nothing
    again = hso.optimize(small_digits, SPACE, n_trials=16, batch_size=8, fixed=FIXED, n_evals=N_EVALS, chunk_size=4,
                         run_dir=run, seed=3, progress=False)
    assert again.batches == [] and len(again.study.trials) == 16 and again.result.n_configs == 16


def _synthetic_result(n=40, seed=0):
    """A sweep result built by hand (no training): the objective depends on the learning rate,
    a little on the width, not at all on the rest; one configuration diverged everywhere."""
    space = Space([
        Float("learning_rate", 1e-4, 1.0, log=True),
        Categorical("optimizer", ["sgd", "momentum"]),
        Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        Int("width", 8, 64),
        Bool("batch_norm"),
    ])
    configs = space.sample(n, "random", seed=seed)
    rng = np.random.default_rng(seed)
    lr = np.log10(configs["learning_rate"])
    base = (lr + 2) ** 2 + 0.1 * configs["width"] / 64
    runs = base[:, None] + 0.01 * rng.standard_normal((n, 2))
    runs[3] = np.nan
    metrics = {"final_val_loss": runs, "final_val_accuracy": 1 - runs / 10,
               "diverged": np.isnan(runs), "param_count": (configs["width"] * 10).astype(np.int64)}
    meta = {"directions": {"final_val_loss": "minimize", "final_val_accuracy": "maximize",
                           "param_count": "minimize"}, "design": {"kind": "random"}, "fixed": {"epochs": 5}}
    return SweepResult(space, configs, np.array([0, 7]), metrics, meta)


def test_to_optuna_then_from_optuna_round_trips_params_and_values_exactly(tmp_path):
    result = _synthetic_result()
    storage = f"sqlite:///{tmp_path / 'rt.db'}"
    study = result.to_optuna(storage, "rt")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert len(trials) == result.n_configs
    assert trials[3].state.name == "FAIL" and trials[0].state.name == "COMPLETE"
    assert trials[0].user_attrs["param_count"] == result.metrics["param_count"][0]
    assert trials[0].user_attrs["hsens_runs"] == result.metrics["final_val_loss"][0].tolist()
    loaded = optuna.load_study(study_name="rt", storage=storage)  # through SQLite
    back = hso.from_optuna(loaded)
    assert back.space == result.space  # conditional hyperparameters kept
    for name in result.space.names:
        np.testing.assert_array_equal(back.configs[name], result.configs[name])  # NaN where inactive too
    np.testing.assert_array_equal(back.metrics["final_val_loss"][:, 0], result.objective("final_val_loss"))
    np.testing.assert_array_equal(back.metrics["final_val_accuracy"][:, 0], result.objective("final_val_accuracy"))
    assert back.metrics["diverged"][:, 0].tolist() == [i == 3 for i in range(result.n_configs)]
    assert back.direction("final_val_loss") == "minimize"
    with pytest.raises(ValueError, match="already holds a study named 'rt'"):
        hso.to_optuna(result, storage, "rt")
    assert len(hso.to_optuna(result, storage, "rt", overwrite=True).trials) == result.n_configs


def test_optunas_importance_evaluators_and_the_hsic_one_work_on_a_converted_sweep():
    result = _synthetic_result(n=60, seed=1)
    study = hso.to_optuna(result)
    evaluators = [optuna.importance.FanovaImportanceEvaluator(seed=0), optuna.importance.PedAnovaImportanceEvaluator(),
                  hso.HsicImportanceEvaluator()]
    for evaluator in evaluators:
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
        assert max(imp, key=imp.get) == "learning_rate", (type(evaluator).__name__, imp)
    # the HSIC evaluator is analyze's R2-HSIC (U) on the completed trials, clipped at 0, normalized
    raw = hso.HsicImportanceEvaluator().evaluate(study)
    complete = hso.from_optuna(study, include_failed=False)
    report = analyze(complete, "final_val_loss", pvalue=None, small_n=0)
    for name, r2 in zip(report.names, report.r2_unbiased[0]):
        assert raw[name] == pytest.approx(max(0.0, r2) if np.isfinite(r2) else 0.0)
    normalized = optuna.importance.get_param_importances(study, evaluator=hso.HsicImportanceEvaluator())
    assert sum(normalized.values()) == pytest.approx(1.0)
    # target= as Optuna's evaluators take it
    by_attr = hso.HsicImportanceEvaluator().evaluate(study, target=lambda t: t.user_attrs["param_count"])
    assert max(by_attr, key=by_attr.get) == "width"


def test_from_optuna_reads_a_foreign_studys_conditions_and_warns_about_adaptive_samplers():
    def objective(trial):
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        x = trial.suggest_float("x", -3, 3)
        if kind == "b":
            y = trial.suggest_int("y", 1, 9, log=True)
            return x ** 2 + y
        return x ** 2

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hso.AdaptiveSamplingWarning)
        result = hso.from_optuna(study)  # a random sampler: no warning
    assert isinstance(result.space["y"], Int) and result.space["y"].log
    assert result.space["y"].condition == {"kind": ("b",)}
    kinds = [t.params["kind"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert np.array_equal(np.isnan(result.configs["y"]), np.array([k != "b" for k in kinds]))
    report = analyze(result, "value", directions="minimize", pvalue=None, small_n=0)
    assert report.ranking()[0] == "x"

    tpe = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    tpe.optimize(objective, n_trials=12)
    with pytest.warns(hso.AdaptiveSamplingWarning, match="biases HSIC"):
        hso.from_optuna(tpe)

    def unconditioned(trial):
        x = trial.suggest_float("x", 0, 1)
        return trial.suggest_float("z", 0, 1) if x > 0.5 else x

    odd = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    odd.optimize(unconditioned, n_trials=10)
    with pytest.raises(ValueError, match="'z' is present in only some trials"):
        hso.from_optuna(odd)


def test_bad_input_is_refused_before_anything_is_written(small_digits, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="n_trials=3 is smaller than one batch \\(batch_size=4\\)"):
        hso.optimize(small_digits, SPACE, n_trials=3, batch_size=4, fixed=FIXED, run_dir=run, progress=False)
    with pytest.raises(ValueError, match="sampler 'bayes'"):
        hso.optimize(small_digits, SPACE, n_trials=4, batch_size=4, sampler="bayes", fixed=FIXED, run_dir=run)
    with pytest.raises(ValueError, match="objective 'val_f1'"):
        hso.optimize(small_digits, SPACE, n_trials=4, batch_size=4, objective="val_f1", fixed=FIXED, run_dir=run)
    assert not run.exists()

    # a study in the storage that was run over another space
    run.mkdir()
    storage = f"sqlite:///{run / 'study.db'}"
    other = Space([Float("learning_rate", 1e-4, 0.3, log=True), Categorical("optimizer", ["sgd", "adam"]),
                   Int("width", 4, 8)])
    study = optuna.create_study(storage=storage, study_name="hsens")
    study.set_user_attr("hsens_space", other.to_dict())
    with pytest.raises(ValueError, match="other settings.*'learning_rate'.*'momentum' is new.*'optimizer'"):
        hso.optimize(small_digits, SPACE, n_trials=4, batch_size=4, fixed=FIXED, run_dir=run, progress=False)
    # a foreign study (no record of a space) whose trials sample a parameter otherwise
    foreign = optuna.create_study(storage=storage, study_name="foreign")
    foreign.enqueue_trial({"learning_rate": 0.01})
    foreign.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1.0, log=True), n_trials=1)
    with pytest.raises(ValueError, match="trial 0 samples 'learning_rate' from FloatDistribution"):
        hso.optimize(small_digits, SPACE, n_trials=4, batch_size=4, fixed=FIXED, run_dir=run, study_name="foreign",
                     progress=False)
    assert len(optuna.load_study(study_name="hsens", storage=storage).trials) == 0
    assert not (run / "chunks").exists() and not (run / "meta.json").exists()

    # Optuna missing: the error says how to install the extra
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'hsens_jax\[search\]'"):
        hso.optimize(small_digits, SPACE, n_trials=4, batch_size=4, fixed=FIXED, run_dir=tmp_path / "other")
    with pytest.raises(ImportError, match=r"hsens_jax\[search\]"):
        hso.to_optuna(_synthetic_result())
    assert not (tmp_path / "other").exists()


def test_gp_sampler_needs_pytorch_or_runs():
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs PyTorch"):
            hso._sampler("gp", 0, SPACE, 4)
    else:  # pragma: no cover - PyTorch is not a test dependency
        sampler, name = hso._sampler("gp", 0, SPACE, 4)
        assert name == "gp" and isinstance(sampler, optuna.samplers.GPSampler)


def test_a_batch_without_the_optimizers_that_read_a_fixed_setting_is_not_refused(small_digits):
    """A search's batch may draw only adam while momentum is fixed for the space's nesterov: a
    warning, not the error of a sweep where no optimizer of the space reads it."""
    from hsens_jax.engine.hyperparameters import HyperparameterWarning
    from hsens_jax.engine.sweep import plan_sweep

    space = Space([Categorical("optimizer", ["adam", "nesterov"]), Float("learning_rate", 1e-3, 0.1, log=True)])
    only_adam = {"optimizer": np.zeros(3), "learning_rate": np.full(3, 0.01)}
    fixed = {"momentum": 0.9, "epochs": 1}
    with pytest.warns(HyperparameterWarning, match="'momentum' has no effect in 3 of 3"):
        plan_sweep(small_digits, space, only_adam, fixed=fixed)
    no_reader = Space([Categorical("optimizer", ["adam", "sgd"]), Float("learning_rate", 1e-3, 0.1, log=True)])
    with pytest.raises(ValueError, match="'momentum' has no effect"):
        plan_sweep(small_digits, no_reader, only_adam, fixed=fixed)
