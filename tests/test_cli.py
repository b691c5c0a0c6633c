import os
import subprocess
import sys

import numpy as np

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
