import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from hsens_jax.results import (
    ChunkRejectedWarning,
    NotARunDirectory,
    PartialResultsWarning,
    RunDirectory,
    RunDirectoryLocked,
    SettingsMismatch,
    SweepResult,
    fingerprint,
    load_results,
)
from hsens_jax.space import Categorical, Float, Space


def _result():
    space = Space([Float("learning_rate", 1e-3, 1, log=True), Categorical("optimizer", ["sgd", "adam"]),
                   Float("momentum", 0.1, 0.9, condition={"optimizer": "sgd"})])
    configs = {"learning_rate": np.array([0.01, 0.1, 0.5]), "optimizer": np.array([0.0, 1.0, 0.0]),
               "momentum": np.array([0.5, np.nan, 0.2])}
    metrics = {
        "final_val_loss": np.array([[0.5, 0.7], [0.2, 0.3], [np.nan, 1.0]]),
        "final_val_accuracy": np.array([[0.8, 0.7], [0.9, 0.95], [0.1, 0.2]]),
        "diverged": np.array([[False, False], [False, False], [True, False]]),
        "param_count": np.array([10, 20, 30]),
        "val_loss_curve": np.zeros((3, 2, 4)),
    }
    return SweepResult(space, configs, np.array([0, 1]), metrics, {"note": "unit test"})


def test_save_load_round_trip_and_open_formats(tmp_path):
    res = _result()
    res.save(tmp_path)
    back = load_results(tmp_path)
    for k in res.metrics:
        np.testing.assert_array_equal(back.metrics[k], res.metrics[k])
    np.testing.assert_array_equal(back.configs["momentum"], res.configs["momentum"])
    assert back.space.to_dict() == res.space.to_dict()
    assert json.loads((tmp_path / "meta.json").read_text())["note"] == "unit test"
    with np.load(tmp_path / "results.npz") as f:  # plain NumPy
        assert f["final_val_loss"].shape == (3, 2)
    pd = pytest.importorskip("pandas")
    csv = pd.read_csv(tmp_path / "results.csv")
    assert len(csv) == 6 and list(csv["optimizer"][:2]) == ["sgd", "sgd"]
    assert csv["momentum"].isna().sum() == 2  # inactive stays missing
    df = res.to_dataframe()
    assert df.shape[0] == 6 and set(df["optimizer"]) == {"sgd", "adam"}


def test_objective_best_and_table():
    res = _result()
    np.testing.assert_allclose(res.objective("final_val_loss"), [0.6, 0.25, 1.0])
    np.testing.assert_allclose(res.objective("final_val_loss", "max"), [0.7, 0.3, 1.0])
    assert list(res.best("final_val_loss", 2)) == [1, 0]
    assert list(res.best("final_val_accuracy", 1)) == [1]
    text = res.table(k=3)
    assert text.splitlines()[0].startswith("ranked by final_val_loss (minimize)")
    assert "adam" in text.splitlines()[3] and "50%" in text
    with pytest.raises(ValueError, match="unknown objective"):
        res.objective("loss")
    with pytest.raises(ValueError, match="curve"):
        res.objective("val_loss_curve")


def test_directions_come_from_the_record_not_the_name():
    res = _result()
    # a maximized metric whose name says nothing, and a minimized one named like a score
    res.metrics["val_f1"] = np.array([[0.2, 0.2], [0.9, 0.9], [0.5, 0.5]])
    res.metrics["accuracy_gap"] = np.array([[0.3, 0.3], [0.1, 0.1], [0.2, 0.2]])
    res.meta["directions"] = {"val_f1": "maximize", "accuracy_gap": "minimize"}
    assert res.direction("val_f1") == "maximize" and list(res.best("val_f1", 2)) == [1, 2]
    assert res.direction("accuracy_gap") == "minimize" and list(res.best("accuracy_gap", 1)) == [1]
    # a maximized metric selects what its negation selects when minimized
    res.metrics["neg_f1"] = -res.metrics["val_f1"]
    res.meta["directions"]["neg_f1"] = "minimize"
    assert list(res.best("val_f1", 3)) == list(res.best("neg_f1", 3))
    assert list(res.best("val_f1", 1, direction="minimize")) == [0]
    res.metrics["mystery"] = np.ones((3, 2))
    with pytest.raises(ValueError, match="no direction is recorded for 'mystery'"):
        res.best("mystery")
    with pytest.raises(ValueError, match="direction must be"):
        res.best("val_f1", direction="up")


# ----------------------------------------------------------------------------- run directories
# Synthetic sweeps: run ids, chunks and settings as the engine writes them, no training.

SPACE = Space([Float("learning_rate", 1e-3, 1.0, log=True), Categorical("optimizer", ["sgd", "adam"])])
SETTINGS = {
    "space": SPACE.to_dict(), "fixed": {"epochs": 2}, "model": "mlp", "dataset": "ab12cd34", "n_evals": 4,
    "precision": "float32", "devices": "2 x cpu",
    "versions": {"jax": "0.10.2", "flax": "0.12.8", "optax": "0.2.8", "hsens_jax": "0.1.0"},
}
META = {"space": SPACE.to_dict(), "fixed": {"epochs": 2}, "note": "synthetic"}
SCHEMA = {"final_val_loss": ((), "f"), "diverged": ((), "b"), "diverged_step": ((), "i"),
          "val_loss_curve": ((4,), "f")}
BIG = np.uint64(2**63)  # run ids are 64-bit hashes: ids above the int64 range must survive


def _design(k, s):
    """The first k configurations and s seeds of a fixed design; run ids depend on (k, s) only."""
    configs = {"learning_rate": np.geomspace(1e-3, 1.0, 8)[:k], "optimizer": (np.arange(8) % 2.0)[:k]}
    run_ids = BIG + (np.arange(k, dtype=np.uint64)[:, None] * np.uint64(100) + np.arange(s, dtype=np.uint64))
    return configs, np.arange(s), run_ids


def _arrays(ids):
    x = (ids - BIG).astype(np.float64)
    return {"final_val_loss": (x / 100).astype(np.float32), "diverged": x % 2 == 1,
            "diverged_step": x.astype(np.int64), "val_loss_curve": np.outer(x, np.arange(4)).astype(np.float32)}


def _sweep(path, k, s, chunks, settings=SETTINGS):
    """Open, write the design, save ``chunks`` (lists of (config, seed) pairs), close."""
    with RunDirectory(path).open(settings, META) as store:
        configs, seeds, run_ids = _design(k, s)
        store.write_design(configs, seeds, run_ids)
        store.completed(SCHEMA)
        names = [store.save_chunk(ids, _arrays(ids), {"device": "2 x cpu", "wall_time": 0.1})
                 for ids in (np.array([run_ids[c, j] for c, j in pairs]) for pairs in chunks)]
    return names


def test_settings_mismatch_names_what_changed_and_overwrite_discards(tmp_path):
    _sweep(tmp_path, 3, 2, [[(0, 0), (0, 1)]])
    (tmp_path / "results.npz").write_bytes(b"old results")
    changes = {
        "devices": ({"devices": "1 x cpu"}, ['devices: "2 x cpu" -> "1 x cpu"', "--cpu-devices 2"]),
        "precision": ({"precision": "float64"}, ['precision: "float32" -> "float64"', "without JAX_ENABLE_X64"]),
        "versions": ({"versions": {**SETTINGS["versions"], "jax": "0.9.0"}},
                     ['versions.jax: "0.10.2" -> "0.9.0"', "pip install jax==0.10.2"]),
        "space": ({"space": Space([Float("learning_rate", 1e-3, 10.0, log=True),
                                   Categorical("optimizer", ["sgd", "adam"])]).to_dict()},
                  ["space.learning_rate.high: 1.0 -> 10.0", "the same space as before"]),
    }
    for component, (change, expected) in changes.items():
        with pytest.raises(SettingsMismatch) as info:
            RunDirectory(tmp_path).open(SETTINGS | change, META)
        message = str(info.value)
        for text in expected:
            assert text in message, (component, message)
        assert "another output directory" in message and "--overwrite" in message and "1 chunk file" in message
        assert [d[0].split(".")[0] for d in info.value.differences] == [component]
    both = SETTINGS | changes["devices"][0] | changes["precision"][0]
    with pytest.raises(SettingsMismatch) as info:
        RunDirectory(tmp_path).open(both, META)
    assert "- devices: " in str(info.value) and "- precision: " in str(info.value)
    # a refused open loses nothing and releases the lock
    assert len(list((tmp_path / "chunks").glob("0*.npz"))) == 1 and (tmp_path / "results.npz").exists()
    with RunDirectory(tmp_path).open(SETTINGS, META) as store:
        assert len(store.completed(SCHEMA)) == 2
    with RunDirectory(tmp_path).open(both, META, overwrite=True) as store:
        assert store.completed(SCHEMA) == {}
        assert json.loads((tmp_path / "meta.json").read_text())["settings"]["precision"] == "float64"
    assert list((tmp_path / "chunks").iterdir()) == [] and not (tmp_path / "results.npz").exists()
    assert not (tmp_path / "configs.npz").exists()
    # a directory written without settings (older version) is not silently adopted
    (tmp_path / "meta.json").write_text(json.dumps({"space": SPACE.to_dict(), "fingerprint": "abc"}))
    with pytest.raises(SettingsMismatch, match="not recorded"):
        RunDirectory(tmp_path).open(SETTINGS, META)


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_invalid_chunks_are_set_aside_and_recomputed(tmp_path):
    (name,) = _sweep(tmp_path, 4, 2, [[(0, 0), (0, 1)]])
    chunks = tmp_path / "chunks"
    good = dict(np.load(chunks / f"{name}.npz"))
    fp = str(good["fingerprint"])

    def bad(chunk, first, **changes):
        ids = BIG + np.arange(first, first + 2, dtype=np.uint64)
        arrays = {**_arrays(ids), "run_ids": ids, "fingerprint": np.array(fp), "provenance": good["provenance"]}
        arrays.update(changes)
        _write_npz(chunks / f"{chunk}.npz", **{k: v for k, v in arrays.items() if v is not None})

    bad("000101-missingkey", 100, diverged=None)
    bad("000102-wrongshape", 200, val_loss_curve=np.zeros((2, 5), np.float32))
    bad("000103-wrongdtype", 300, final_val_loss=np.zeros(2, np.int64))
    bad("000104-foreign", 400, fingerprint=np.array("0123456789abcdef"))
    bad("000105-noids", 500, run_ids=None)
    bad("000106-idlength", 600, run_ids=BIG + np.arange(600, 603, dtype=np.uint64))
    bad("000107-oldformat", 700, fingerprint=None)
    data = (chunks / f"{name}.npz").read_bytes()
    (chunks / "000108-truncated.npz").write_bytes(data[: len(data) // 2])
    (chunks / "000109-notazip.npz").write_bytes(b"corrupt")

    with RunDirectory(tmp_path).open(SETTINGS, META) as store:
        with pytest.warns(ChunkRejectedWarning) as caught:
            index = store.completed(SCHEMA)
        assert sorted(index) == [int(BIG), int(BIG) + 1]  # only the valid chunk's runs
        text = "\n".join(str(w.message) for w in caught if w.category is ChunkRejectedWarning)
        for reason in ("missing array 'diverged'", "has shape (2, 5), expected (2, 4)", "expected kind 'f'",
                       "is not this sweep's", "no run_ids", "chunk has 3 run ids", "no settings fingerprint",
                       "unreadable"):
            assert reason in text, reason
        rejected = sorted(p.name for p in (chunks / "rejected").iterdir())
        assert len(rejected) == 9 and "000108-truncated.npz" in rejected  # set aside, not deleted
        assert sorted(p.name for p in chunks.glob("*.npz")) == [f"{name}.npz"]
        # a chunk that would be rejected on the next resume is refused when written
        ids = BIG + np.arange(800, 802, dtype=np.uint64)
        with pytest.raises(ValueError, match="missing array 'diverged_step'"):
            store.save_chunk(ids, {k: v for k, v in _arrays(ids).items() if k != "diverged_step"}, {})
        with pytest.raises(ValueError, match="'run_ids' is reserved"):
            store.save_chunk(ids, {**_arrays(ids), "run_ids": ids}, {})
        with pytest.raises(ValueError, match="leading axis"):
            store.save_chunk(ids, {**_arrays(ids), "final_val_loss": np.zeros(3, np.float32)}, {})
        new = store.save_chunk(ids, _arrays(ids), {"device": "2 x cpu"})
        assert new > "000109" and store.provenance(new)["device"] == "2 x cpu"
        assert {"host", "pid", "time", "hsens_jax"} <= set(store.provenance(new))
    with RunDirectory(tmp_path).open(SETTINGS, META) as store, warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to reject
        assert len(store.completed(SCHEMA)) == 4


def test_grown_design_reuses_computed_runs_and_load_runs_gathers_any_shape(tmp_path):
    _sweep(tmp_path, 2, 1, [[(0, 0), (1, 0)]])
    (tmp_path / "results.npz").write_bytes(b"results of the small design")
    (tmp_path / "results.csv").write_text("config\n")
    with RunDirectory(tmp_path).open(SETTINGS, META) as store:
        configs, seeds, run_ids = _design(5, 3)  # more points, more seeds
        store.write_design(configs, seeds, run_ids)
        assert not (tmp_path / "results.npz").exists() and not (tmp_path / "results.csv").exists()
        index = store.completed(SCHEMA)
        assert set(index) == {int(run_ids[0, 0]), int(run_ids[1, 0])}
        todo = [(c, j) for c in range(5) for j in range(3) if int(run_ids[c, j]) not in index]
        assert len(todo) == 13
        ids = np.array([run_ids[c, j] for c, j in todo])
        name = store.save_chunk(ids, _arrays(ids), {})
        index.update({int(r): (name, i) for i, r in enumerate(ids)})
        got = store.load_runs(index, run_ids)
        assert got["final_val_loss"].shape == (5, 3) and got["val_loss_curve"].shape == (5, 3, 4)
        for key, expected in _arrays(run_ids.ravel()).items():
            np.testing.assert_array_equal(got[key].reshape(expected.shape), expected)
            assert got[key].dtype == expected.dtype
        assert store.load_runs(index, run_ids[:, :1].T, keys=["diverged"])["diverged"].shape == (1, 5)
        assert store.load_runs(index, run_ids[2, 1])["val_loss_curve"].shape == (4,)
        with pytest.raises(ValueError, match="1 of 1 run ids are not in the index"):
            store.load_runs(index, np.array([7], np.uint64))
    with pytest.raises(ValueError, match="hyperparameter may not be named 'seeds'"):
        with RunDirectory(tmp_path).open(SETTINGS, META) as store:
            store.write_design({"seeds": np.zeros(5)}, seeds, run_ids)
    with pytest.raises(RuntimeError, match="open"):
        RunDirectory(tmp_path).save_chunk(ids, _arrays(ids), {})


def _lock_holder(path):
    """A child process that opens ``path``, leaves a temporary it is writing, then waits."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from hsens_jax.results import RunDirectory, _temporary
        store = RunDirectory({str(path)!r}).open({{"model": "mlp"}}, {{}})
        _temporary(Path({str(path)!r}) / "chunks" / "000001-abcd.npz")
        _temporary(Path({str(path)!r}) / "meta.json")
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    return proc


def test_second_writer_is_refused_and_a_killed_writers_temporaries_are_cleaned(tmp_path):
    holder = _lock_holder(tmp_path)
    sleeper = subprocess.Popen(["sleep", "30"])  # a live process that writes without the lock
    try:
        temporaries = sorted(tmp_path.glob(".tmp-*")) + sorted((tmp_path / "chunks").glob(".tmp-*"))
        assert len(temporaries) == 2
        with pytest.raises(RunDirectoryLocked) as info:
            RunDirectory(tmp_path).open({"model": "mlp"}, {})
        assert info.value.pid == holder.pid and f"process {holder.pid}" in str(info.value)
        assert f"kill {holder.pid}" in str(info.value)
        assert all(t.exists() for t in temporaries)  # the live writer's files are untouched
        live = tmp_path / f".tmp-{sleeper.pid}-{_host_tag()}-x-results.csv"
        live.write_text("half")
        legacy = tmp_path / "chunks" / ".tmpk2j3h4.npz"  # the naming of older versions
        legacy.write_bytes(b"half")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with RunDirectory(tmp_path).open({"model": "mlp"}, {}) as store:  # the kernel released the lock
            assert store.is_open
        assert not any(t.exists() for t in temporaries) and not legacy.exists()
        assert live.exists()
    finally:
        for p in (holder, sleeper):
            p.kill()
            p.wait()


def _host_tag():
    from hsens_jax.results import _HOST_TAG

    return _HOST_TAG


def test_lock_within_one_process_and_release(tmp_path):
    first = RunDirectory(tmp_path).open(SETTINGS, META)
    with pytest.raises(RunDirectoryLocked, match="this process"):
        RunDirectory(tmp_path).open(SETTINGS, META)
    first.close()
    RunDirectory(tmp_path).open(SETTINGS, META).close()
    holder = json.loads((tmp_path / ".lock").read_text())
    assert holder["pid"] == os.getpid() and {"host", "started"} <= set(holder)


def test_partial_results_with_a_warning(tmp_path):
    _sweep(tmp_path, 3, 2, [[(0, 0), (1, 1)], [(2, 0)]])
    with pytest.raises(FileNotFoundError, match=r"has not finished.*partial=True"):
        load_results(tmp_path)
    with pytest.warns(PartialResultsWarning, match="3 of 6 runs are not computed yet"):
        res = load_results(tmp_path, partial=True)
    assert res.meta["partial"] == {"computed_runs": 3, "total_runs": 6, "missing_runs": 3}
    loss = res.metrics["final_val_loss"]
    assert loss.shape == (3, 2) and res.metrics["val_loss_curve"].shape == (3, 2, 4)
    computed = np.array([[True, False], [False, True], [True, False]])
    np.testing.assert_array_equal(np.isnan(loss), ~computed)
    np.testing.assert_allclose(loss[computed], [0.0, 1.01, 2.0], rtol=1e-6)
    div = res.metrics["diverged"]  # a missing run is NaN, never False
    assert div.dtype == np.float64 and np.isnan(div[~computed]).all() and list(div[computed]) == [0, 1, 0]
    np.testing.assert_array_equal(res.configs["learning_rate"], _design(3, 2)[0]["learning_rate"])
    assert list(res.seeds) == [0, 1] and res.meta["note"] == "synthetic"
    np.testing.assert_allclose(res.objective("final_val_loss"), [0.0, 1.01, 2.0], rtol=1e-6)
    rows = res.records()
    assert len(rows) == 6 and rows[0]["epochs"] == 2  # fixed hyperparameters are columns


def test_partial_results_with_folds_and_records(tmp_path):
    configs, seeds, run_ids = _design(2, 2)
    run_ids = run_ids[..., None] * np.uint64(1) + np.arange(3, dtype=np.uint64) * np.uint64(10_000)
    with RunDirectory(tmp_path).open(SETTINGS, META) as store:
        store.write_design(configs, seeds, run_ids)
        store.completed(SCHEMA)
        ids = run_ids.ravel()[:-1]
        store.save_chunk(ids, _arrays(ids), {})
    with pytest.warns(PartialResultsWarning, match="1 of 12 runs"):
        res = load_results(tmp_path, partial=True)
    assert res.metrics["final_val_loss"].shape == (2, 2, 3) and res.n_folds == 3
    assert res.metrics["val_loss_curve"].shape == (2, 2, 3, 4)
    rows = res.records()
    assert len(rows) == 12 and [r["fold"] for r in rows[:4]] == [0, 1, 2, 0]
    assert [r["seed"] for r in rows[:4]] == [0, 0, 0, 1] and "val_loss_curve" not in rows[0]
    assert rows[5]["final_val_loss"] == pytest.approx(float((run_ids[0, 1, 2] - BIG)) / 100, rel=1e-6)
    assert np.isnan(rows[-1]["final_val_loss"]) and rows[-1]["optimizer"] == "adam"


def test_records_and_csv_carry_fixed_hyperparameters_and_folds(tmp_path):
    res = _result()
    res.meta["fixed"] = {"epochs": 3, "activation": "tanh", "learning_rate": 0.5}  # a space name stays the space's
    res.save(tmp_path)
    pd = pytest.importorskip("pandas")
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv["epochs"]) == [3] * 6 and set(csv["activation"]) == {"tanh"}
    assert list(csv["learning_rate"][::2]) == [0.01, 0.1, 0.5] and "fold" not in csv
    assert list(csv.columns[:6]) == ["config", "seed", "learning_rate", "optimizer", "momentum", "epochs"]
    folded = _result()
    folded.metrics = {"final_val_loss": np.arange(12.0).reshape(3, 2, 2), "param_count": np.array([10, 20, 30]),
                      "val_loss_curve": np.zeros((3, 2, 2, 4))}
    rows = folded.records()
    assert len(rows) == 12 and rows[3] == {**rows[3], "config": 0, "seed": 1, "fold": 1, "final_val_loss": 3.0,
                                           "param_count": 10}


def test_damaged_files_are_named(tmp_path):
    res = _result()
    res.save(tmp_path)
    results = tmp_path / "results.npz"
    data = results.read_bytes()
    results.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"results\.npz is damaged or truncated.*partial=True"):
        load_results(tmp_path)
    results.write_bytes(data)
    (tmp_path / "meta.json").write_text('{"space": {"lr": ')
    with pytest.raises(ValueError, match=r"meta\.json is damaged: not valid JSON"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match=r"meta\.json is damaged.*deleting"):
        RunDirectory(tmp_path).open(SETTINGS, META)
    res.save(tmp_path)
    _write_npz(tmp_path / "configs.npz", learning_rate=np.zeros(3))
    with pytest.raises(ValueError, match=r"configs\.npz lacks the column\(s\) \['optimizer', 'momentum'\]"):
        load_results(tmp_path)
    _write_npz(tmp_path / "configs.npz", **{n: np.zeros(2) for n in res.space.names})
    with pytest.raises(ValueError, match=r"results\.npz: metric 'final_val_loss' has shape \(3, 2\)"):
        load_results(tmp_path)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(NotARunDirectory, match="notes.txt is an existing file"):
        load_results(a_file)
    with pytest.raises(NotARunDirectory, match="notes.txt is an existing file"):
        RunDirectory(a_file).open(SETTINGS, META)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a hsens_jax run directory"):
        load_results(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("mine\n")
    with pytest.raises(NotARunDirectory, match="holds results.csv"):
        RunDirectory(foreign).open(SETTINGS, META)
    assert (foreign / "results.csv").read_text() == "mine\n" and not (foreign / ".lock").exists()


def test_a_finished_sweep_saved_in_place_can_still_grow(tmp_path):
    _sweep(tmp_path, 2, 2, [[(0, 0), (0, 1), (1, 0), (1, 1)]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every run is computed: no warning
        res = load_results(tmp_path, partial=True)
    assert res.meta["partial"]["missing_runs"] == 0
    res.meta = {k: v for k, v in res.meta.items() if k not in ("settings", "fingerprint", "chunk_schema")}
    res.save(tmp_path)  # what the sweep does at its end
    with np.load(tmp_path / "configs.npz") as f:
        np.testing.assert_array_equal(f["run_ids"], _design(2, 2)[2])
    assert json.loads((tmp_path / "meta.json").read_text())["fingerprint"] == fingerprint(SETTINGS)
    with RunDirectory(tmp_path).open(SETTINGS, META) as store:
        assert len(store.completed(SCHEMA)) == 4
    np.testing.assert_array_equal(load_results(tmp_path).metrics["final_val_loss"], res.metrics["final_val_loss"])


def test_fingerprints_are_stable_and_unambiguous():
    assert fingerprint({"a": np.arange(3)}) != fingerprint({"a": np.arange(4)})
    assert fingerprint([1, "x"]) == fingerprint((1, "x"))
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    assert fingerprint([1, 23]) != fingerprint([12, 3])
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [1], "b": 2})
    assert fingerprint(np.zeros(2, np.float32)) != fingerprint(np.zeros(2, np.float64))
    assert int(fingerprint("x"), 16) < 2**64 and len(fingerprint("x")) == 16


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _result().save(tmp_path / "saved")
        _sweep(tmp_path / "swept", 2, 1, [[(0, 0)]])
    finally:
        os.umask(old)
    for name in ("results.csv", "results.npz", "configs.npz", "meta.json"):
        assert stat.S_IMODE((tmp_path / "saved" / name).stat().st_mode) == 0o644, name
    swept = [tmp_path / "swept" / n for n in ("meta.json", "configs.npz", ".lock")]
    swept += list((tmp_path / "swept" / "chunks").glob("*.npz"))
    assert len(swept) == 4
    for f in swept:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_table_names_its_ranking_shows_spreads_and_leaves_out_missing_runs():
    res = _result()
    res.metrics["val_f1"] = np.array([[0.2, 0.4], [0.9, 0.7], [0.5, 0.5]])
    res.meta["directions"] = {"val_f1": "maximize"}
    lines = res.table("val_f1", k=3).splitlines()
    assert lines[0] == "ranked by val_f1 (maximize); metrics: mean ± std over 2 seeds"
    assert lines[1].split()[4:7] == ["val_f1", "final_val_loss", "final_val_accuracy"]
    assert "0.8 ± 0.1" in lines[3] and "0.3 ± 0.1" in lines[5]  # best first, spread over seeds
    assert res.table("val_f1", k=1, direction="minimize").splitlines()[3].split()[1] == "0.01"
    res.metrics["val_f1"][1] = np.nan  # not computed yet (not flagged)
    text = res.table("val_f1", k=3)
    assert len(text.splitlines()) == 3 + 2 + 1
    assert text.splitlines()[-1] == "(1 of 3 configurations have no val_f1 yet (not computed): left out)"
    del res.metrics["param_count"]  # a user model need not record what the built-ins do
    assert "param_count" not in res.table("val_f1")
    with pytest.raises(ValueError, match="k .*positive"):
        res.table(k=0)
