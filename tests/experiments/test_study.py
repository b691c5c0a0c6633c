"""Smoke tests of the experiments' machinery: a tiny study on the digits end to end, the data
fallbacks, the skipped CIFAR-10 study, reproduce.py's bookkeeping and the write-up builder."""

import argparse
import importlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

import hsens_jax as hs
from common import DataUnavailable, Study, load_images, run_study

ROOT = Path(__file__).resolve().parents[2]


def _load_build():
    spec = importlib.util.spec_from_file_location("paper_build", ROOT / "paper" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_writes_every_table_and_figure_with_derived_quantities(tmp_path):
    """A 16-configuration study on the digits end to end (one test, so that parallel workers do not
    each train it): the quick settings of notebooks/01_space_sweep_hsic, so that the notebook's test
    finds the programs compiled here in the session's compilation cache."""
    out = tmp_path
    ds = hs.load_dataset("digits")
    space = hs.Space([
        hs.Float("learning_rate", 1e-3, 1.0, log=True),
        hs.Categorical("optimizer", ["sgd", "momentum"]),
        hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        hs.Float("weight_decay", 1e-6, 1e-2, log=True),
        hs.Int("width", 8, 32, log=True),
        hs.Int("depth", 1, 2),
        hs.Categorical("activation", ["relu", "tanh"]),
    ])
    study = Study(name="tiny", title="Tiny digits study", dataset=ds, data_note="digits", space=space, model="mlp",
                  model_note="built-in MLP", fixed={"epochs": 2, "batch_size": 64}, n_configs=16,
                  error="final_val_accuracy", test=None, rationale={"width": "a size knob"}, mode="quick",
                  size_knobs=("depth", "width"), n_permutations=100)
    summary = run_study(study, argparse.Namespace(out=str(out), quiet=True), device="test")
    d = out / "tiny"
    for name in ("runs.csv", "summary.json", "tiny.md", "hsic_global.json", "hsic_q0.1.csv", "hsic_q0.2.json",
                 "hsic_cost.json", "tiny_hsic.png", "tiny_interactions.png", "tiny_tradeoff.png"):
        assert (d / name).is_file(), name
    s = json.loads((d / "summary.json").read_text())
    names = {"learning_rate", "optimizer", "momentum", "weight_decay", "width", "depth", "activation"}
    assert s["n_runs"] == 16 and s["timing"]["runs_per_minute"] > 0
    assert set(s["hsic"]["global"]["error"]["main"]) == names
    assert 0 < s["hsic"]["global"]["error"]["main"]["momentum"]["n"] < 16  # scored where active only
    assert set(s["importances"]["fanova"]) == names - {"momentum"}  # Optuna: only those present in every run
    assert s["hsic"]["q0.1"]["error"]["pairs"]  # interactions computed and tabulated
    import csv

    rows = list(csv.DictReader(open(d / "runs.csv")))
    assert len(rows) == 16
    for r in rows:  # `depth` hidden layers of `width` units between 64 inputs and 10 classes
        w, depth = int(r["width"]), int(r["depth"])
        assert int(r["param_count"]) == 65 * w + (depth - 1) * (w + 1) * w + (w + 1) * 10
    best = s["tradeoff"]["best"]
    assert best["param_count"] == int(rows[best["config"]]["param_count"])
    md = (d / "tiny.md").read_text()
    assert "| `learning_rate` |" in md and "![HSIC](tiny/tiny_hsic.png)" in md

    # the error and each run's time are derived from the metrics
    groups = summary["timing"]["group_wall_s"]
    assert np.isclose(sum(float(r["time_per_run"]) for r in rows), sum(groups))  # each group's time shared out
    assert all(0.0 <= float(r["error"]) <= 1.0 for r in rows if r["error"])


def test_paper_build_includes_results_and_placeholders(tmp_path):
    out = tmp_path / "results"
    build = _load_build()
    (out / "mnist").mkdir(parents=True)
    (out / "mnist" / "mnist.md").write_text("### MNIST\n\n![HSIC](mnist/mnist_hsic.png)\n")
    (out / "mnist" / "hsic_global.json").write_text(json.dumps({"settings": {"n_permutations": 250, "target": None}}))
    (out / "mnist" / "hsic_q0.3.json").write_text(json.dumps({"settings": {"n_permutations": 250, "target": 0.3}}))
    text = build.build(out, tmp_path / "README.md", benchmarks=tmp_path / "no-benchmarks")
    assert "produced by `python experiments/toys.py`" in text  # no toys.md: the placeholder
    assert "*Not run yet*: produced by `python benchmarks/bench_median.py`" in text
    assert "\n### MNIST\n" in text  # study sections nest under the write-up's headings
    assert "(250 permutations)" in text and "(q = 0.3)" in text  # the Methods state the reports' settings
    assert f"]({Path(os.path.relpath(out, tmp_path)).as_posix()}/mnist/mnist_hsic.png)" in text  # relinked
    assert "*Not run yet*: produced by `python experiments/runge.py`" in text
    (out / "toys.md").write_text("# Toys\n\n| quantity | published | ours |\n|---|---|---|\n| HSIC(X1) | 0.015358 | 0.015358 |\n")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "median_cpu.md").write_text("# Median bandwidth\n\n| n | NumPy (s) | ours (s) |\n|---|---|---|\n| 2000 | 0.43 | 0.02 |\n")
    text = build.build(out, tmp_path / "README.md", benchmarks=bench)
    assert "| HSIC(X1) | 0.015358 | 0.015358 |" in text and "\n### Toys\n" in text
    assert "\n### Median bandwidth\n" in text and "| 2000 | 0.43 | 0.02 |" in text
    assert "produced by `python benchmarks/bench_toys.py`" in text


def test_image_data_fall_back_to_digits_in_quick_mode_only(tmp_path, capsys):
    ds, note = load_images("mnist", n_train=100, n_val=20, n_test=10, data_dir=tmp_path, quick=True)
    assert ds.name == "digits" and "hsens data fetch mnist" in note
    assert "falling back" in capsys.readouterr().err
    with pytest.raises(DataUnavailable, match="hsens data fetch fashion-mnist"):
        load_images("fashion_mnist", n_train=100, n_val=20, n_test=10, data_dir=tmp_path, quick=False)


def test_cifar10_without_files_is_skipped_and_recorded(tmp_path):
    reproduce = importlib.import_module("reproduce")
    rc = reproduce.main(["--quick", "--only", "cifar10", "--out", str(tmp_path), "--data-dir", str(tmp_path / "none"),
                         "--no-paper"])
    assert rc == 0
    assert "Not run" in (tmp_path / "cifar10" / "cifar10.md").read_text()
    rep = json.loads((tmp_path / "reproduce.json").read_text())
    assert rep["timings"]["cifar10"]["returncode"] == 0 and rep["failed"] == []


def test_readme_states_the_settings_the_scripts_use():
    reproduce = importlib.import_module("reproduce")
    readme = (ROOT / "experiments" / "README.md").read_text()
    block = readme.split("<!-- settings: begin -->\n", 1)[1].split("\n<!-- settings: end -->", 1)[0]
    assert block == reproduce.settings_markdown()
