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
