import os
import subprocess
import sys

import numpy as np
import pytest

from hsens_jax.cli import main
from hsens_jax.results import load_results


def test_help_everywhere():
    for args in ([], ["sweep"], ["demo"], ["show"]):
        out = subprocess.run([sys.executable, "-m", "hsens_jax.cli", *args, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: hsens" in out.stdout


def _small_config(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f"""
[data]
name = "digits"
n_train = 200
[budget]
steps = 6
[design]
kind = "sobol"
n = 4
[sweep]
output = "{tmp_path / 'run'}"
n_evals = 2
[fixed]
width = 8
depth = 1
[space.learning_rate]
type = "float"
low = 0.001
high = 0.5
log = true
[space.optimizer]
type = "categorical"
choices = ["sgd", "adam"]
""")
    return cfg


def test_sweep_command_end_to_end_and_show(tmp_path, capsys):
    cfg = _small_config(tmp_path)
    assert main(["sweep", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Best configurations" in out and "results.npz" in out
    res = load_results(tmp_path / "run")
    assert res.metrics["final_val_loss"].shape == (4, 1) and np.isfinite(res.metrics["final_val_loss"]).all()
    assert main(["show", str(tmp_path / "run"), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "ranked by final_val_loss (minimize)" and len(lines) == 5


def test_optimize_prints_the_best_configurations_after_each_batch_and_resumes(tmp_path, capsys):
    pytest.importorskip("optuna")
    with pytest.raises(SystemExit) as exit_help:
        main(["optimize", "--help"])
    assert exit_help.value.code == 0 and "usage: hsens optimize" in capsys.readouterr().out
    cfg = _small_config(tmp_path)
    text = cfg.read_text().replace('kind = "sobol"\nn = 4', 'kind = "tpe"\nn = 8\nbatch = 4\nseed = 1')
    cfg.write_text(text)
    assert main(["optimize", str(cfg), "--no-progress", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "batch 1: trials 0-3" in out and "batch 2: trials 4-7" in out and "(0 compilations)" in out
    assert out.count("ranked by final_val_loss (minimize)") == 2 and "Best of 8 trials" in out
    assert (tmp_path / "run" / "study.db").exists() and load_results(tmp_path / "run").n_configs == 8
    assert main(["sweep", str(cfg), "--no-progress"]) == 0  # a search config: resumed, nothing left to train
    assert "already holds 8 trials" in capsys.readouterr().out
    assert main(["optimize", str(cfg), "--trials", "3", "--batch", "4"]) == 2
    assert "n_trials=3 is smaller than one batch" in capsys.readouterr().err
    sobol = _small_config(tmp_path)
    assert main(["optimize", str(sobol)]) == 2
    assert "kind = 'sobol' is a design, not a search" in capsys.readouterr().err


def test_sweep_splits_the_cpu_into_devices(tmp_path):
    """--cpu-devices N: the runs of each chunk are sharded over N CPU devices (in a fresh process,
    as JAX fixes its devices at its first computation)."""
    cfg = _small_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-m", "hsens_jax.cli", "sweep", str(cfg), "--no-progress", "--cpu-devices", "2",
                          "--output", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "(2 x cpu" in out.stdout
    res = load_results(tmp_path / "two")
    assert res.meta["device"].startswith("2 x cpu") and np.isfinite(res.metrics["final_val_loss"]).all()


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.toml"), "--cpu-devices", "0"]) == 2
    assert "--cpu-devices must be >= 1, got 0" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nname = "digits"\n[budget]\nsteps = 3\n[space.lr]\ntype = "float"\nlow = 1\nhigh = 2\n')
    assert main(["sweep", str(bad), "--no-progress", "--output", str(tmp_path / "o")]) == 2
    assert "'lr'" in capsys.readouterr().err
    assert main(["show", str(tmp_path)]) == 2


def test_demo_runs_end_to_end_small(tmp_path, capsys):
    """The README's main command, shrunk: sweep, best-configurations table, HSIC analysis, plots."""
    out_dir = tmp_path / "demo"
    assert main(["demo", "--n-configs", "16", "--epochs", "1", "--output", str(out_dir), "--permutations", "50",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Best configurations" in out and "R2-HSIC" in out and "learning_rate" in out
    for name in ("results.npz", "results.csv", "meta.json", "sensitivity.json", "sensitivity_final_val_loss.png"):
        assert (out_dir / name).exists(), name
    # a second run resumes from the saved chunks instead of training again
    assert main(["demo", "--n-configs", "16", "--epochs", "1", "--output", str(out_dir), "--permutations", "50",
                 "--no-progress", "--no-plot"]) == 0


def _hand_built_run(path, n=64):
    """A saved run without training: the loss depends on the learning rate, `val_f1` is a
    maximized score whose direction the run records, `mystery` has no recorded direction."""
    from hsens_jax.results import SweepResult
    from hsens_jax.space import Categorical, Float, Space

    space = Space([Float("learning_rate", 1e-4, 1.0, log=True), Categorical("optimizer", ["sgd", "adam"]),
                   Float("dropout", 0.0, 0.5)])
    configs = space.sample(n, "random", seed=0)
    rng = np.random.default_rng(0)
    u = (np.log10(configs["learning_rate"]) + 4) / 4
    loss = (u - 0.6)[:, None] ** 2 + 0.05 * rng.normal(size=(n, 2))
    metrics = {"final_val_loss": loss, "val_f1": 1 - loss, "mystery": loss.copy(),
               "diverged": np.zeros((n, 2), bool), "param_count": np.full(n, 100)}
    metrics["diverged"][:3] = True
    metrics["diverged_reason"] = np.where(metrics["diverged"], 2, 0).astype(np.int8)
    metrics["final_val_loss"][:3] = metrics["val_f1"][:3] = 1e5  # blown up: finite, flagged
    metrics["final_val_loss"][3:7] = metrics["val_f1"][3:7] = np.nan  # not computed yet
    SweepResult(space, configs, np.array([0, 1]), metrics, {"directions": {"val_f1": "maximize"}}).save(path)
    return path


def test_show_names_the_ranking_metric_its_direction_and_the_spread(tmp_path, capsys):
    run = _hand_built_run(tmp_path / "run")
    assert main(["show", str(run), "--objective", "val_f1", "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "ranked by val_f1 (maximize); metrics: mean ± std over 2 seeds"
    assert len(lines) == 3 + 3 + 1 and "±" in lines[3]
    assert lines[-1] == "(4 of 64 configurations have no val_f1 yet (not computed): left out)"
    best = float(lines[3].split()[4])
    assert main(["show", str(run), "--objective", "val_f1", "--direction", "minimize", "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("ranked by val_f1 (minimize)") and float(lines[3].split()[4]) < best
    assert main(["show", str(run), "--objective", "mystery"]) == 2
    assert "no direction is recorded for 'mystery'" in capsys.readouterr().err
    assert main(["show", str(run), "--top", "-1"]) == 2
    assert "--top must be >= 1, got -1" in capsys.readouterr().err


def test_analyze_estimator_pvalue_direction_and_a_partial_run(tmp_path, capsys):
    import json

    run = _hand_built_run(tmp_path / "run")
    assert main(["analyze", str(run), "--objective", "mystery", "--target", "0.25", "--direction", "maximize",
                 "--estimator", "V", "--pvalue", "gamma", "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert "mystery (maximize), goal: best 25%" in captured.out
    assert "R2-HSIC(U)" in captured.out and "R2-HSIC(V)" in captured.out and "Gamma" in captured.out
    doc = json.loads((run / "sensitivity_target0.25.json").read_text())
    assert doc["settings"]["estimator"] == "V" and doc["settings"]["pvalue"] == "gamma"
    assert doc["directions"] == {"mystery": "maximize"}
    # a partial run: the configurations not computed yet are left out, and the report says so
    with pytest.warns(UserWarning, match="val_f1: 4 of 64 configurations have no value yet"):
        assert main(["analyze", str(run), "--objective", "val_f1", "--pvalue", "none", "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert "left out: 4 of 64 configurations have no value yet" in captured.out
    assert "diverged: 6 of 128 runs (6 loss_blowup): ranked last" in captured.out
    rows = [line.split() for line in captured.out.splitlines() if line.startswith("  learning_rate")]
    assert rows[0][2] == "-"  # no p-value asked
    with pytest.warns(UserWarning, match="no value yet"):
        assert main(["analyze", str(run), "--objective", "val_f1", "--diverged", "clip", "--cap", "0.5",
                     "--pvalue", "none", "--no-plot"]) == 0
    assert "clipped to 0.5" in capsys.readouterr().out
    assert main(["analyze", str(run), "--objective", "mystery", "--target", "0.25", "--no-plot"]) == 2
    assert "--direction mystery=maximize" in capsys.readouterr().err
    assert main(["analyze", str(run), "--direction", "up", "--no-plot"]) == 2
    assert "direction must be 'minimize' or 'maximize'" in capsys.readouterr().err


def test_sweep_a_user_model_from_a_toml_file_with_cross_validation(tmp_path, capsys):
    """[model] module = "package.module:factory" (found next to the configuration file), with its
    own metric and direction; [sweep] cv = 2."""
    (tmp_path / "mymodels.py").write_text(
        "import flax.linen as nn, jax.numpy as jnp\n"
        "class Net(nn.Module):\n"
        "    width: int\n"
        "    @nn.compact\n"
        "    def __call__(self, x, train=False):\n"
        "        return nn.Dense(10)(jnp.tanh(nn.Dense(self.width)(x.reshape(x.shape[0], -1))))\n"
        "def make_model(hp):\n"
        "    return Net(hp['width'])\n"
        "def metrics(outputs, batch, hp):\n"
        "    return {'top1': jnp.mean(jnp.argmax(outputs, -1) == batch['y'])}\n")
    config = tmp_path / "sweep.toml"
    config.write_text(
        '[data]\nname = "digits"\nn_train = 200\n\n'
        '[model]\nmodule = "mymodels:make_model"\nmetrics = "mymodels:metrics"\ndirections = { top1 = "maximize" }\n\n'
        '[budget]\nsteps = 4\n\n[design]\nkind = "random"\nn = 3\n\n'
        f'[sweep]\ncv = 2\noutput = "{tmp_path / "run"}"\n\n'
        '[fixed]\nwidth = 6\n\n'
        '[space.learning_rate]\ntype = "float"\nlow = 0.001\nhigh = 0.1\nlog = true\n')
    from hsens_jax.cli import main as cli_main

    assert cli_main(["sweep", str(config), "--no-progress"]) == 0
    res = load_results(tmp_path / "run")
    assert res.metrics["final_val_top1"].shape == (3, 1, 2) and res.direction("final_val_top1") == "maximize"
    assert res.meta["model"] == "make_model" and res.meta["n_folds"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("mymodels:make_model", "mymodels:nope"))
    assert cli_main(["sweep", str(bad), "--no-progress", "--output", str(tmp_path / "run2")]) == 2
    assert "no attribute 'nope'" in capsys.readouterr().err


def test_compilation_cache_option(tmp_path, monkeypatch):
    from hsens_jax import compile_cache

    assert main(["--compilation-cache", str(tmp_path / "cc"), "show", str(tmp_path / "missing")]) == 2
    assert compile_cache.compilation_cache_dir() == (tmp_path / "cc")
    assert main(["--compilation-cache", "off", "show", str(tmp_path / "missing")]) == 2
    assert compile_cache.compilation_cache_dir() is None
    compile_cache.enable_compilation_cache(os.environ["HSENS_COMPILATION_CACHE"])  # the session's again


def test_show_and_analyze_work_on_a_partial_run(small_digits, tmp_path, capsys):
    from hsens_jax.engine.sweep import run_sweep
    from hsens_jax.space import Float, Space

    space = Space([Float("learning_rate", 1e-3, 0.5, log=True), Float("dropout", 0.0, 0.5)])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(small_digits, space, space.sample(40, "sobol"), fixed={"steps": 3, "width": 8, "depth": 1},
                  n_evals=1, chunk_size=16, progress=False, run_dir=tmp_path, stop_after_chunks=2)
    with pytest.warns(UserWarning, match="8 of 40 runs are not computed"):
        assert main(["show", str(tmp_path), "--top", "3"]) == 0
    assert "final_val_loss" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="not computed"):
        assert main(["analyze", str(tmp_path), "--pvalue", "none", "--no-plot"]) == 0
    assert "learning_rate" in capsys.readouterr().out
