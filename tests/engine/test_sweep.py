import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from hsens_jax.results import load_results
from hsens_jax.space import Categorical, Float, Int, Space
from hsens_jax.engine.sweep import run_sweep
from hsens_jax.engine.train import TrainSpec, hp_from_values, prepare_data, train

ROOT = Path(__file__).resolve().parents[2]

SPACE = Space([
    Float("learning_rate", 1e-3, 0.5, log=True),
    Categorical("optimizer", ["sgd", "momentum", "adam"]),
    Float("momentum", 0.5, 0.95, condition={"optimizer": "momentum"}),
    Int("width", 4, 16),
    Categorical("batch_size", [16, 48]),
])
FIXED = {"steps": 12, "depth": 1}


def _configs(n=6):
    return SPACE.sample(n, "random", seed=3)


def test_sweep_shapes_groups_and_agreement_with_single_training(small_digits, tmp_path):
    configs = _configs()
    res = run_sweep(small_digits, SPACE, configs, fixed=FIXED, seeds=[0, 5], chunk_size=4, n_evals=4,
                    progress=False, run_dir=tmp_path / "run")
    k = len(configs["width"])
    assert res.metrics["final_val_loss"].shape == (k, 2)
    assert res.metrics["val_loss_curve"].shape == (k, 2, 4)
    assert res.metrics["param_count"].shape == (k,)
    np.testing.assert_array_equal(res.metrics["param_count"], 64 * configs["width"] + configs["width"] + 10 * configs["width"] + 10)
    # one compiled program per batch size
    used = {[16, 48][int(c)] for c in configs["batch_size"]}
    assert {g["batch_size"] for g in res.meta["groups"]} == used and len(res.meta["groups"]) == len(used)
    # configuration 2, seed 5, trained on its own, gives the same numbers
    i = 2
    rec = SPACE.decode({n: c[i:i + 1] for n, c in configs.items()})[0]
    from hsens_jax.engine.builtin import sized_model

    group = res.meta["groups"][int(res.metrics["group"][i])]
    model = sized_model("mlp", group["max_width"], 1, 10, (8, 8, 1))
    spec = TrainSpec(model, "classification", rec["batch_size"], 12, small_digits.n_train,
                     optimizers=tuple(group["optimizers"]), n_evals=4)
    values = {k_: v for k_, v in rec.items() if k_ != "batch_size"} | {"depth": 1}
    one = jax.jit(lambda h: train(spec, prepare_data(small_digits), h, jax.random.key(5)))(hp_from_values(values, spec))
    np.testing.assert_allclose(res.metrics["val_loss_curve"][i, 1], one["val_loss_curve"], rtol=1e-5)
    # inactive hyperparameters stay NaN in what is saved
    loaded = load_results(tmp_path / "run")
    np.testing.assert_array_equal(np.isnan(loaded.configs["momentum"]), configs["optimizer"] != 1)
    np.testing.assert_array_equal(loaded.metrics["final_val_loss"], res.metrics["final_val_loss"])


def test_interrupted_sweep_resumes_to_the_same_results(small_digits, tmp_path):
    configs = _configs()
    kw = dict(fixed=FIXED, seeds=[0], chunk_size=2, n_evals=3, progress=False)
    full = run_sweep(small_digits, SPACE, configs, **kw)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(small_digits, SPACE, configs, run_dir=tmp_path, stop_after_chunks=2, **kw)
    assert len(list((tmp_path / "chunks").glob("*.npz"))) == 2
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "chunks").glob("*.npz")}
    resumed = run_sweep(small_digits, SPACE, configs, run_dir=tmp_path, **kw)
    for p in (tmp_path / "chunks").glob("*.npz"):  # finished chunks were not recomputed
        if p.name in mtimes:
            assert p.stat().st_mtime_ns == mtimes[p.name]
    for name in ("final_val_loss", "val_loss_curve", "train_curve", "diverged"):
        np.testing.assert_array_equal(resumed.metrics[name], full.metrics[name], err_msg=name)
    # a sweep with other settings is refused, not mixed in; naming what changed
    with pytest.raises(ValueError, match="fixed.steps: 12 -> 13"):
        run_sweep(small_digits, SPACE, configs, run_dir=tmp_path, **{**kw, "fixed": {**FIXED, "steps": 13}})


SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from hsens_jax.data import load_dataset
    from hsens_jax.space import Space
    from hsens_jax.engine.sweep import run_sweep
    sys.path.insert(0, {tests!r})
    from test_sweep import SPACE, FIXED, _configs
    import jax
    ds = load_dataset("digits", n_train=300, seed=0)
    res = run_sweep(ds, SPACE, _configs(8), fixed=FIXED, seeds=[0], chunk_size={chunk}, n_evals=3,
                    progress=False, run_dir={run_dir!r})
    print("DEVICES", len(jax.devices()))
""")


def _script(run_dir, chunk=2):
    return SCRIPT.format(tests=str(ROOT / "tests" / "engine"), run_dir=str(run_dir), chunk=chunk)


def test_killed_process_resumes(small_digits, tmp_path):
    """SIGKILL a sweep process once a chunk is on disk; the same command finishes it. While the
    first process writes, a second writer is refused with the holder's pid."""
    from hsens_jax.results import RunDirectoryLocked

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _script(tmp_path / "run")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = tmp_path / "run" / "chunks"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(chunks.glob("*.npz")):
        time.sleep(0.05)
    if proc.poll() is None:
        with pytest.raises(RunDirectoryLocked, match=f"process {proc.pid}"):
            run_sweep(small_digits, SPACE, _configs(8), fixed=FIXED, seeds=[0], chunk_size=2, n_evals=3,
                      progress=False, run_dir=tmp_path / "run")
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("*.npz")))
    assert done >= 1
    subprocess.run([sys.executable, "-c", _script(tmp_path / "run")], env=env, check=True, capture_output=True)
    resumed = load_results(tmp_path / "run")
    reference = run_sweep(small_digits, SPACE, _configs(8), fixed=FIXED, seeds=[0], chunk_size=2, n_evals=3,
                          progress=False)
    for name in ("final_val_loss", "val_loss_curve", "train_curve"):
        np.testing.assert_allclose(resumed.metrics[name], reference.metrics[name], rtol=1e-6, err_msg=name)
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["n_configs"] == 8


def test_sharded_over_four_cpu_devices_equals_unsharded(small_digits, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"}
    out = subprocess.run([sys.executable, "-c", _script(tmp_path / "run", chunk=8)], env=env, check=True,
                         capture_output=True, text=True)
    assert "DEVICES 4" in out.stdout
    sharded = load_results(tmp_path / "run")
    assert sharded.meta["device"].startswith("4 x cpu")
    single = run_sweep(small_digits, SPACE, _configs(8), fixed=FIXED, seeds=[0], chunk_size=8, n_evals=3,
                       progress=False)
    for name in ("final_val_loss", "val_loss_curve", "train_curve"):
        np.testing.assert_allclose(sharded.metrics[name], single.metrics[name], rtol=1e-5, err_msg=name)
    # resuming under other conditions is refused, naming what changed, never mixed
    from hsens_jax.results import SettingsMismatch

    kw = dict(fixed=FIXED, seeds=[0], chunk_size=8, n_evals=3, progress=False, run_dir=tmp_path / "run")
    with pytest.raises(SettingsMismatch, match=r'(?s)devices: "4 x cpu" -> "1 x cpu".*--cpu-devices 4'):
        run_sweep(small_digits, SPACE, _configs(8), **kw)
    with jax.enable_x64(True), pytest.raises(SettingsMismatch, match=r'precision: "float32" -> "float64"'):
        run_sweep(small_digits, SPACE, _configs(8), devices=jax.devices()[:1], **kw)


def test_invalid_sweeps_are_rejected_with_the_culprit_named(small_digits, tmp_path):
    configs = _configs()
    with pytest.raises(ValueError, match="learnig_rate"):
        run_sweep(small_digits, Space([Float("learnig_rate", 0.1, 1)]), {"learnig_rate": np.array([0.5])},
                  fixed=FIXED, progress=False)
    with pytest.raises(ValueError, match="both in the space and fixed"):
        run_sweep(small_digits, SPACE, configs, fixed={**FIXED, "width": 3}, progress=False)
    with pytest.raises(ValueError, match="budget"):
        run_sweep(small_digits, SPACE, configs, fixed={"depth": 1}, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        big = Space([Categorical("batch_size", [100000])])
        run_sweep(small_digits, big, big.sample(2), fixed=FIXED, progress=False)
    with pytest.raises(ValueError, match="group_by"):
        run_sweep(small_digits, SPACE, configs, fixed=FIXED, group_by=["dropout"], progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        run_sweep(small_digits, SPACE, configs, fixed=FIXED, chunk_size=0, progress=False)
    with pytest.raises(ValueError, match="width"):
        bad = {**configs, "width": configs["width"] + 0.5}
        run_sweep(small_digits, SPACE, bad, fixed=FIXED, progress=False)
    for bad_args, match in (({"n_evals": 0}, "n_evals"), ({"n_evals": -1}, "n_evals"),
                            ({"eval_batch_size": 0}, "eval_batch_size"), ({"seeds": [0, 0]}, "duplicates"),
                            ({"cv": 1}, "cv")):
        with pytest.raises(ValueError, match=match):
            run_sweep(small_digits, SPACE, configs, fixed=FIXED, progress=False, **bad_args)
    for param, match in ((Float("dropout", 0.0, 1.5), r"'dropout': 1.5 is outside its valid range \[0, 1\)"),
                         (Float("learning_rate", -0.1, 0.1), r"'learning_rate': the space's low bound -0.1 is outside"),
                         (Int("width", 0, 8), "'width' must be a positive integer, got 0"),
                         (Float("momentum", 0.5, 1.2), r"'momentum': the space's high bound 1.2 is outside")):
        sp = Space([param])  # the space's bounds are checked, not only the drawn values
        with pytest.raises(ValueError, match=match):
            run_sweep(small_digits, sp, sp.sample(2, "random", seed=0), fixed=FIXED, progress=False)
    # a setting no configuration's optimizer reads is refused; read by only some, warned about
    sp = Space([Float("momentum", 0.5, 0.9)])
    with pytest.raises(ValueError, match="'momentum' has no effect.*condition"):
        run_sweep(small_digits, sp, sp.sample(2), fixed={**FIXED, "optimizer": "sgd"}, progress=False)
    from hsens_jax.engine.hyperparameters import HyperparameterWarning
    from hsens_jax.engine.sweep import plan_sweep

    sp = Space([Categorical("optimizer", ["sgd", "momentum"]), Float("momentum", 0.5, 0.9)])
    with pytest.warns(HyperparameterWarning, match="'momentum' has no effect in"):
        plan_sweep(small_digits, sp, {"optimizer": np.array([0.0, 1.0]), "momentum": np.array([0.6, 0.7])},
                   fixed=FIXED)
    with pytest.raises(ValueError, match="optimizer"):
        sp = Space([Categorical("optimizer", ["sgd", "lion"])])
        run_sweep(small_digits, sp, sp.sample(4), fixed=FIXED, progress=False)


def test_programs_of_one_depth_are_built_at_per_layer_sizes(small_digits):
    """hidden_layer_sizes of one depth: the program builds each layer at its own largest size
    (12x6, not 12x12) and trains the same numbers as the uniform masked program would."""
    space = Space([Categorical("hidden_layer_sizes", ["12,6", "8,4"]), Float("learning_rate", 1e-3, 1e-1, log=True)])
    configs = space.sample(4, "random", seed=1)
    res = run_sweep(small_digits, space, configs, fixed={"steps": 6}, n_evals=2, progress=False)
    (group,) = res.meta["groups"]
    assert group["layer_widths"] == [12, 6] and group["max_width"] == 12
    mixed = Space([Categorical("hidden_layer_sizes", ["12,6", "8"])])
    res = run_sweep(small_digits, mixed, {"hidden_layer_sizes": np.array([0.0, 1.0])}, fixed={"steps": 6},
                    n_evals=2, progress=False)
    assert res.meta["groups"][0]["layer_widths"] == []  # depths differ: uniform layers, depth masked


def test_group_by_depth_compiles_one_program_per_depth_sized_from_the_space(small_digits):
    """group_by=("depth",) with hidden_layer_sizes: one program per number of layers, each
    built at its depth's per-layer largest sizes among the space's choices (so that other
    configurations of the space reuse it), and the same numbers as one program per
    architecture."""
    space = Space([Categorical("hidden_layer_sizes", ["12,6", "8,4", "10", "6", "7,7"]),
                   Float("learning_rate", 1e-3, 1e-1, log=True)])
    configs = {"hidden_layer_sizes": np.array([0.0, 1.0, 2.0, 3.0]), "learning_rate": np.array([0.01, 0.03, 0.1, 0.05])}
    kw = dict(fixed={"steps": 6}, n_evals=2, progress=False)
    by_depth = run_sweep(small_digits, space, configs, group_by=("depth",), **kw)
    groups = by_depth.meta["groups"]
    assert len(groups) == 2 and sorted(g["layer_widths"] for g in groups) == [[10], [12, 7]]
    exact = run_sweep(small_digits, space, configs, group_by=("hidden_layer_sizes",), **kw)
    assert len(exact.meta["groups"]) == 4
    for key in ("final_val_loss", "final_train_loss"):
        np.testing.assert_allclose(by_depth.metrics[key], exact.metrics[key], rtol=2e-5)
    lr = Space([Float("learning_rate", 1e-3, 1e-1, log=True)])
    with pytest.raises(ValueError, match="group_by names 'depth'"):  # no hidden_layer_sizes to derive it from
        run_sweep(small_digits, lr, lr.sample(2, "random", seed=0), group_by=("depth",), **kw)


def test_next_group_compiles_in_the_background(small_digits, monkeypatch):
    """Programs are compiled on a background thread, the next group's while one trains, and
    the results are those of the groups run one at a time."""
    import threading

    import hsens_jax.engine.sweep as sweep_mod

    original = sweep_mod._compiled
    threads = []

    def recording(spec, folds):
        threads.append(threading.current_thread().name)
        return original(spec, folds)

    configs = _configs()
    reference = run_sweep(small_digits, SPACE, configs, fixed=FIXED, n_evals=2, progress=False)
    monkeypatch.setattr(sweep_mod, "_compiled", recording)
    from hsens_jax import executables

    executables._clear_memory_for_tests()  # compile again: the process keeps compiled programs
    res = run_sweep(small_digits, SPACE, configs, fixed=FIXED, n_evals=2, progress=False)
    assert len(res.meta["groups"]) == 2 and len(threads) == 2
    assert all(name.startswith("hsens-compile") for name in threads)
    np.testing.assert_array_equal(res.metrics["final_val_loss"], reference.metrics["final_val_loss"])


def test_a_second_batch_of_configurations_compiles_nothing(small_digits, compilations):
    """Programs are sized from the space: a new batch of configurations inside the same space
    (a search's next batch) reuses the compiled programs, whatever its widths and optimizers."""
    space = Space([Float("learning_rate", 1e-3, 0.3, log=True), Categorical("optimizer", ["sgd", "adam"]),
                   Int("width", 4, 32), Int("depth", 1, 2), Categorical("activation", ["relu", "tanh"])])
    kw = dict(fixed={"steps": 5}, n_evals=2, progress=False, chunk_size=8)
    first = space.sample(8, "random", seed=0)
    run_sweep(small_digits, space, first, **kw)
    second = space.sample(16, "random", seed=1)  # new widths (the largest may differ), new optimizers
    second = {n: c[8:] for n, c in second.items()}
    assert second["width"].max() != first["width"].max() or second["depth"].max() != first["depth"].max()
    with compilations() as c:
        res = run_sweep(small_digits, space, second, **kw)
    assert c.count == 0, f"{c.count} compilation(s) for a batch inside the same space"
    assert np.isfinite(res.metrics["final_val_loss"]).all()
