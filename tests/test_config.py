import pytest

from hsens_jax.config import SweepConfig

BASE = {
    "data": {"name": "digits", "n_train": 200},
    "budget": {"steps": 5},
    "design": {"kind": "random", "n": 3},
    "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
}


def test_toml_round_trip(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("""
[data]
name = "digits"
[budget]
epochs = 2
[design]
kind = "grid"
levels = 3
[sweep]
n_seeds = 2
output = "out"
[fixed]
optimizer = "sgd"
[space.learning_rate]
type = "float"
low = 0.01
high = 1.0
log = true
""")
    c = SweepConfig.load(f)
    assert c.seeds == [0, 1] and c.fixed == {"optimizer": "sgd", "epochs": 2} and c.output == "out"
    assert len(c.make_design()["learning_rate"]) == 3


@pytest.mark.parametrize("patch,message", [
    ({"datta": {}}, r"unknown section \[datta\]"),
    ({"sweep": {"seed": [1]}}, r"unknown key\(s\) \['seed'\] in \[sweep\]"),
    ({"budget": {}}, "no training budget"),
    ({"design": {"kind": "bayes"}}, "bayes"),
    ({"model": {"kind": "rnn"}}, "rnn"),
    ({"space": {"lr": {"type": "float", "low": 1.0, "high": 0.1}}}, "lr"),
    ({"sweep": {"seeds": [], "output": "x"}}, "seeds"),
])
def test_bad_configs_name_the_culprit(patch, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig.from_dict({**BASE, **patch}, source="c.toml")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        SweepConfig.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname=")
    with pytest.raises(ValueError, match="not valid TOML"):
        SweepConfig.load(bad)


def _data_config(tmp_path, data_lines):
    f = tmp_path / "conf" / "c.toml"
    f.parent.mkdir(exist_ok=True)
    f.write_text(f"""
[data]
{data_lines}
[budget]
steps = 3
[space.learning_rate]
type = "float"
low = 0.01
high = 1.0
""")
    return f


def test_data_path_npz_relative_to_the_config_file(tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 4)), np.repeat(["no", "yes"], 20)
    (tmp_path / "conf").mkdir()
    np.savez(tmp_path / "conf" / "mine.npz", x=x, y=y)
    cfg = SweepConfig.load(_data_config(tmp_path, 'path = "mine.npz"\nval_fraction = 0.25\nseed = 3'))
    monkeypatch.chdir(tmp_path)  # the path is read relative to the configuration file, not the cwd
    d = cfg.load_data()
    assert d.name == "mine" and d.source == str(tmp_path / "conf" / "mine.npz")
    assert d.task == "classification" and d.classes.tolist() == ["no", "yes"] and (d.n_train, d.n_val) == (30, 10)
    from hsens_jax.data import Dataset

    ref = Dataset.from_arrays(x, y, val_fraction=0.25, seed=3)
    np.testing.assert_array_equal(d.x_val, ref.x_val)


def test_data_path_csv_with_target_and_task(tmp_path):
    rows = "\n".join(f"{i * 0.1},{i % 2}.0,{i % 3}" for i in range(30))
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "t.csv").write_text("a,label,b\n" + rows + "\n")
    cfg = SweepConfig.load(_data_config(
        tmp_path, 'path = "t.csv"\ntarget = "label"\ntask = "classification"\nstratify = false\nclasses = [1, 0]'))
    d = cfg.load_data()
    assert d.task == "classification" and d.classes.tolist() == [1, 0] and d.input_shape == (2,)
    bad = SweepConfig.load(_data_config(tmp_path, 'path = "t.csv"\ntarget = "label"'))
    with pytest.raises(ValueError, match=r"c.toml: \[data\]: .*t.csv: y is floating point but every value is a whole"):
        bad.load_data()
    missing = SweepConfig.load(_data_config(tmp_path, 'path = "nope.npz"'))
    with pytest.raises(FileNotFoundError, match="data file not found: .*conf/nope.npz"):
        missing.load_data()


@pytest.mark.parametrize("data, message", [
    ({"val_fraction": 0.2}, r"\[data\] needs `name` .* or `path`"),
    ({"name": "digits", "path": "d.npz"}, r"\[data\] has both `name` and `path`: give one"),
    ({"path": "d.npz", "noise": 0.1}, r"\[data\] \['noise'\] apply only with `name`, not with `path`"),
    ({"name": "digits", "target": "y"}, r"\[data\] \['target'\] apply only with `path`, not with `name`"),
    ({"path": 3}, r"\[data\] path must be a non-empty string, got 3"),
    ({"path": "d.npz", "tsk": "regression"}, r"unknown key\(s\) \['tsk'\] in \[data\]"),
])
def test_bad_data_sections(data, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig.from_dict({**BASE, "data": data}, source="c.toml")


def test_builtin_data_errors_name_the_config(tmp_path):
    cfg = SweepConfig.from_dict({**BASE, "data": {"name": "digits", "val_fraction": 2.0}}, source="c.toml")
    with pytest.raises(ValueError, match=r"c.toml: \[data\]: val_fraction must be in \[0, 1\)"):
        cfg.load_data()


def test_search_kinds_take_a_budget_of_trials_and_a_batch():
    c = SweepConfig.from_dict({**BASE, "design": {"kind": "tpe", "n": 32, "batch": 8,
                                                  "objective": "final_val_accuracy"}}, source="c.toml")
    assert c.is_search and c.design == {"kind": "tpe", "seed": 0, "n": 32, "batch": 8,
                                        "objective": "final_val_accuracy"}
    assert SweepConfig.from_dict({**BASE, "design": {"kind": "cmaes"}}).design["batch"] == 16
    assert not SweepConfig.from_dict(BASE).is_search
    with pytest.raises(ValueError, match="kind = 'tpe' is a search: run it with `hsens optimize`"):
        c.make_design()


@pytest.mark.parametrize("design,message", [
    ({"kind": "tpe", "n": 4, "batch": 8}, r"the budget n = 4 trials is smaller than one batch \(batch = 8\)"),
    ({"kind": "gp", "batch": 0}, r"\[design\] batch must be an integer >= 1"),
    ({"kind": "tpe", "direction": "up"}, r"\[design\] direction must be 'minimize' or 'maximize'"),
    ({"kind": "tpe", "levels": 3}, r"levels applies to kind = 'grid'"),
    ({"kind": "sobol", "n": 8, "batch": 4}, r"\['batch'\] apply to a search"),
    ({"kind": "tpe", "trials": 8}, r"unknown key\(s\) \['trials'\] in \[design\]"),
])
def test_bad_search_designs_name_the_culprit(design, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig.from_dict({**BASE, "design": design}, source="c.toml")
