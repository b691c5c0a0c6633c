import json

import numpy as np
import pytest

from hsens_jax.results import RunDirectory, SweepResult, fingerprint, load_results
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


def test_run_directory_errors_and_atomic_chunks(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a hsens_jax run directory"):
        load_results(tmp_path)
    store = RunDirectory(tmp_path)
    assert store.open("abc", {"x": 1}, {"a": np.zeros(2)}) == 0
    store.save_chunk("g000-c00000", {"runs": np.arange(3)})
    (store.chunk_dir / ".tmpjunk.npz").write_bytes(b"half a file")
    (store.chunk_dir / "g000-c00001.npz").write_bytes(b"corrupt")
    assert store.open("abc", {"x": 1}, {"a": np.zeros(2)}) == 2
    assert not (store.chunk_dir / ".tmpjunk.npz").exists()
    assert store.load_chunk("g000-c00001") is None  # damaged: recomputed, never trusted
    np.testing.assert_array_equal(store.load_chunk("g000-c00000")["runs"], np.arange(3))
    with pytest.raises(ValueError, match="different sweep"):
        store.open("zzz", {}, {})
    assert store.open("zzz", {}, {}, overwrite=True) == 0
    with pytest.raises(FileNotFoundError, match="has not finished"):
        load_results(tmp_path)
    assert fingerprint({"a": np.arange(3)}) != fingerprint({"a": np.arange(4)})
    assert fingerprint([1, "x"]) == fingerprint([1, "x"])


def test_files_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        _result().save(tmp_path)
    finally:
        os.umask(old)
    for name in ("results.csv", "results.npz", "configs.npz", "meta.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


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
