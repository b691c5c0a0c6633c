"""Tests for hsens_jax.space: hyperparameters, conditions (equality and thresholds), validation,
activity, the configs format, decode/encode and the dict round trip.

Designs are tested in test_design.py and encodings in test_encoding.py; here only that the Space
methods delegate to them.
"""

import json

import numpy as np
import pytest

from hsens_jax.space import (
    Bool,
    Categorical,
    Float,
    Int,
    Space,
    Threshold,
    UnknownHyperparameterError,
)

from .spaces import big_space, opt_space


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Float("lr", 1.0, 1.0), "'lr'.*low=1.0 must be < high=1.0"),
        (lambda: Float("lr", 2.0, 1.0), "'lr'.*low=2.0 must be < high"),
        (lambda: Float("lr", 0.0, 1.0, log=True), "'lr'.*log=True needs positive bounds"),
        (lambda: Float("lr", -1.0, 1.0, log=True), "'lr'.*log=True needs positive bounds"),
        (lambda: Float("lr", 0.0, np.inf), "'lr'.*high=inf is not finite"),
        (lambda: Float("lr", np.nan, 1.0), "'lr'.*low=nan is not finite"),
        (lambda: Int("depth", 1.5, 4), "'depth'.*low=1.5 must be an integer"),
        (lambda: Int("depth", 1, 4.2), "'depth'.*high=4.2 must be an integer"),
        (lambda: Int("depth", 4, 4), "'depth'.*low=4 must be < high=4"),
        (lambda: Int("depth", 0, 4, log=True), "'depth'.*log=True needs positive bounds"),
        (lambda: Int("depth", 1, np.inf), "'depth'.*high=inf is not finite"),
        (lambda: Categorical("act", []), "'act'.*choices is empty"),
        (lambda: Categorical("act", ["relu", "tanh", "relu"]), "'act'.*duplicated choice 'relu'"),
        (lambda: Categorical("act", [1, 1.0]), "'act'.*duplicated choice 1.0"),
        (lambda: Categorical("act", [1.0, np.nan]), "'act'.*choice nan is not finite"),
        (lambda: Float("lr", 0.1, 1.0, condition={}), "'lr'.*condition is an empty mapping"),
        (lambda: Float("lr", 0.1, 1.0, condition={"opt": []}), "'lr'.*condition on 'opt' lists no"),
    ],
)
def test_hyperparameter_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Float("lr", "a", 1.0), "'lr'.*low must be a real number"),
        (lambda: Float("lr", 0.1, 1.0, log=1), "'lr'.*log must be a bool"),
        (lambda: Categorical("act", "relu"), "'act'.*choices must be a sequence"),
        (lambda: Categorical("act", [None]), "'act'.*choice None must be"),
        (lambda: Float("", 0.0, 1.0), "name must be a non-empty str"),
        (lambda: Bool("b", condition=["a"]), "'b'.*condition must be None or a mapping"),
        (lambda: Space({"a": Bool("a")}), "params must be a sequence"),
        (lambda: Space([Bool("a"), "b"]), "'b' is not a Float"),
    ],
)
def test_type_errors(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_bool_and_int_choices_are_distinct():
    c = Categorical("x", [1, True, "1", 0, False])
    assert c.n_values == 5
    assert c.index_of(True) == 1 and c.index_of(1) == 0 and c.index_of("1") == 2
    assert c.index_of(np.int64(0)) == 3 and c.index_of(np.bool_(False)) == 4


@pytest.mark.parametrize(
    "params, match",
    [
        ([Bool("a"), Float("a", 0, 1)], "duplicated hyperparameter name 'a'"),
        ([Float("lr", 0.1, 1, condition={"opt": "sgd"})], "'lr'.*unknown parent 'opt'"),
        (
            [Categorical("opt", ["sgd", "adam"]), Float("lr", 0.1, 1, condition={"opt": "rmsprop"})],
            "'lr'.*'rmsprop' is not among the choices \\['sgd', 'adam'\\] of parent 'opt'",
        ),
        (
            [Categorical("opt", ["sgd", "adam"]), Float("lr", 0.1, 1, condition={"opt": ["sgd", 3]})],
            "'lr'.*condition value 3 is not among the choices",
        ),
        (
            [Float("p", 0, 1), Float("lr", 0.1, 1, condition={"p": 0.5})],
            "'lr'.*condition on Float parent 'p'",
        ),
        (
            [Int("depth", 1, 4), Float("lr", 0.1, 1, condition={"depth": 5})],
            "'lr'.*condition value 5 is not an integer of parent 'depth'",
        ),
        (
            [Int("depth", 1, 4), Float("lr", 0.1, 1, condition={"depth": 2.5})],
            "'lr'.*condition value 2.5 is not an integer",
        ),
        (
            [Bool("bn"), Float("lr", 0.1, 1, condition={"bn": 1})],
            "'lr'.*condition value 1 is not among the choices \\[False, True\\] of parent 'bn'",
        ),
        (
            [Bool("a", condition={"b": True}), Bool("b", condition={"a": True})],
            "cyclic conditions a -> b -> a",
        ),
        ([Bool("a", condition={"a": True})], "'a'.*cyclic conditions a -> a"),
        (
            [
                Bool("a", condition={"c": True}),
                Bool("b", condition={"a": True}),
                Bool("c", condition={"b": False}),
            ],
            "cyclic conditions",
        ),
        ([], "params is empty"),
    ],
)
def test_space_validation(params, match):
    with pytest.raises(ValueError, match=match):
        Space(params)


def test_hyperparameter_attributes():
    f, i, c, b = Float("f", 0, 1), Int("i", -2, 5), Categorical("c", ["x", "y", "z"]), Bool("b")
    assert (f.kind, i.kind, c.kind, b.kind) == ("float", "int", "categorical", "bool")
    assert (f.n_values, i.n_values, c.n_values, b.n_values) == (None, 8, 3, 2)
    assert isinstance(f.low, float) and isinstance(i.low, int) and i.low == -2
    assert Int("i", 1.0, 3.0).high == 3 and isinstance(Int("i", 1.0, 3.0).high, int)
    assert b.choices == (False, True)
    assert Float("m", 0, 1, condition={"o": "a"}).condition == {"o": ("a",)}
    assert Float("m", 0, 1, condition={"o": ["a", "b"]}).condition == {"o": ("a", "b")}
    with pytest.raises(dataclass_frozen_error()):
        f.low = 3.0
    hash(f)  # hashable although condition is a dict
    hash(Float("m", 0, 1, condition={"o": "a"}))


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_space_mapping_interface():
    s = big_space()
    assert s.names == (
        "optimizer", "lr", "momentum", "nesterov", "depth", "width", "wd", "bn", "act"
    )
    assert len(s) == 9
    assert s["depth"] == Int("depth", 1, 4)
    assert [p.name for p in s] == list(s.names)
    assert s.index("width") == 5 and "width" in s and "nope" not in s
    with pytest.raises(KeyError, match="unknown hyperparameter 'nope'"):
        s["nope"]
    with pytest.raises(ValueError, match="unknown hyperparameter 'nope'"):
        s.index("nope")
    assert issubclass(UnknownHyperparameterError, KeyError)
    assert s.choices("optimizer") == ("sgd", "momentum", "adam")
    assert s.choices("nesterov") == (False, True)
    assert s.choices("depth") == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="'lr' is a Float"):
        s.choices("lr")


def test_dict_round_trip_through_json():
    s = big_space()
    d = s.to_dict()
    assert d["lr"] == {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}
    assert d["momentum"]["condition"] == {"optimizer": ["momentum"]}
    assert d["act"] == {"type": "categorical", "choices": ["relu", 1, 2.5, True]}
    assert d["nesterov"] == {"type": "bool", "condition": {"optimizer": ["momentum"]}}
    s2 = Space.from_dict(json.loads(json.dumps(d)))
    assert s2 == s and s2.names == s.names
    assert s2.to_dict() == d


FLOAT_KEYS = r"allowed keys: \['condition', 'high', 'log', 'low', 'type'\]"


@pytest.mark.parametrize(
    "d, match",
    [
        ({"a": {"type": "complex"}}, "'a'.*type 'complex' is not one of"),
        ({"a": {"type": "flaot", "low": 0, "high": 1}}, "'a'.*type 'flaot' is not one of.*did you mean 'float'"),
        ({"a": {"type": ["float"]}}, r"'a'.*type \['float'\] is not one of"),
        ({"a": {"low": 0, "high": 1}}, "'a'.*missing key 'type' \\(one of \\['float', 'int', 'categorical', 'bool'\\]\\)"),
        ({"a": {"typ": "float", "low": 0, "high": 1}}, "'a'.*missing key 'type'.*unknown key 'typ' \\(did you mean 'type'\\?\\)"),
        ({"a": {"type": "float", "low": 0}}, "'a'.*missing key 'high'"),
        # a misspelt key is named, with a suggestion and the allowed keys
        (
            {"a": {"type": "float", "low": 0, "high": 1, "step": 2}},
            "'a'.*unknown key 'step' for type 'float'; " + FLOAT_KEYS,
        ),
        (
            {"lr": {"type": "float", "lwo": 1e-4, "high": 1}},
            "'lr'.*unknown key 'lwo' \\(did you mean 'low'\\?\\) for type 'float'; " + FLOAT_KEYS,
        ),
        (
            {"act": {"type": "categorical", "choice": ["relu", "tanh"]}},
            "'act'.*unknown key 'choice' \\(did you mean 'choices'\\?\\) for type 'categorical'; "
            "allowed keys: \\['choices', 'condition', 'type'\\]",
        ),
        (
            {"lr": {"type": "float", "lwo": 0, "hihg": 1, "log": False}},
            "'lr'.*unknown keys 'lwo' \\(did you mean 'low'\\?\\), 'hihg' \\(did you mean 'high'\\?\\)",
        ),
        (
            {"b": {"type": "bool", "choices": [False, True]}},
            "'b'.*unknown key 'choices' for type 'bool'; allowed keys: \\['condition', 'type'\\]",
        ),
        (
            {"m": {"type": "float", "low": 0, "high": 1, "conditon": {"o": "a"}}},
            "'m'.*unknown key 'conditon' \\(did you mean 'condition'\\?\\)",
        ),
        ({"a": {"type": "categorical"}}, "'a'.*missing key 'choices'"),
        ({"a": {"type": "int", "low": 0.5, "high": 3}}, "'a'.*low=0.5 must be an integer"),
        # malformed values: ValueError naming the hyperparameter (never a bare TypeError)
        ({"a": 3}, "'a'.*expected a table of settings.*got int 3"),
        ({"a": {"type": "float", "low": "0", "high": 1}}, "'a'.*low must be a real number, got '0'"),
        ({"a": {"type": "float", "low": 0, "high": 1, "log": "yes"}}, "'a'.*log must be a bool"),
        ({"a": {"type": "categorical", "choices": "abc"}}, "'a'.*choices must be a sequence"),
        ({"a": {"type": "categorical", "choices": [[1, 2]]}}, "'a'.*choice \\[1, 2\\] must be"),
        ({"a": {"type": "bool", "condition": "b"}}, "'a'.*condition must be None or a mapping"),
        ({"a": {"type": "int", "low": 0, "high": 10**30}}, "'a'.*high=10+ is beyond 2\\*\\*53"),
        ({"a": {"type": "float", "low": -1e308, "high": 1e308}}, "'a'.*overflows float64"),
        ({1: {"type": "bool"}}, "names must be non-empty strings, got 1"),
        ({}, "no hyperparameters"),
    ],
)
def test_from_dict_errors(d, match):
    with pytest.raises(ValueError, match=match):
        Space.from_dict(d)


def test_misspelt_key_in_a_toml_space_table_is_named(tmp_path):
    """The user's path: a [space.NAME] table of a sweep configuration file."""
    from hsens_jax.config import SweepConfig

    f = tmp_path / "sweep.toml"
    f.write_text(
        '[data]\nname = "digits"\n[budget]\nsteps = 5\n'
        '[space.learning_rate]\ntype = "float"\nlwo = 1e-4\nhigh = 1.0\nlog = true\n'
    )
    with pytest.raises(ValueError, match="sweep.toml.*'learning_rate'.*unknown key 'lwo' "
                       "\\(did you mean 'low'\\?\\) for type 'float'; allowed keys"):
        SweepConfig.load(f)
    f.write_text(
        '[data]\nname = "digits"\n[budget]\nsteps = 5\n'
        '[space.act]\ntype = "categorical"\nchoice = ["relu", "tanh"]\n'
    )
    with pytest.raises(ValueError, match="sweep.toml.*'act'.*unknown key 'choice' "
                       "\\(did you mean 'choices'\\?\\)"):
        SweepConfig.load(f)


# ----------------------------------------------------------------------------- configs


def valid_configs():
    s = opt_space()
    c = {
        "optimizer": np.array([0.0, 1.0, 2.0]),
        "lr": np.array([1e-3, 1e-2, 1e-4]),
        "momentum": np.array([np.nan, 0.9, np.nan]),
    }
    return s, c


def test_validate_accepts_valid_and_lists():
    s, c = valid_configs()
    s.validate(c)
    s.validate({k: list(v) for k, v in c.items()})


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c: c.pop("lr"), "missing column\\(s\\) \\['lr'\\]"),
        (lambda c: c.update(beta=np.zeros(3)), "unknown column\\(s\\) \\['beta'\\]"),
        (lambda c: c.update(lr=np.array([1e-3, 1e-2])), "column 'lr' has length 2, expected 3"),
        (lambda c: c.update(lr=np.ones((3, 1)) * 1e-3), "column 'lr' must have shape \\(n,\\)"),
        (lambda c: c.update(lr=np.array([1e-3, 0.5, 1e-4])), "column 'lr' has value 0.5 outside"),
        (lambda c: c.update(lr=np.array([1e-3, np.inf, 1e-4])), "column 'lr' holds non-finite"),
        (lambda c: c.update(optimizer=np.array([0.0, 1.0, 3.0])), "'optimizer' has code 3.0 outside"),
        (lambda c: c.update(optimizer=np.array([0.0, 1.0, -1.0])), "'optimizer' has code -1.0"),
        (lambda c: c.update(optimizer=np.array([0.5, 1.0, 2.0])), "'optimizer' has non-integral"),
        (lambda c: c.update(lr=np.array([np.nan, 1e-2, 1e-4])), "'lr' is NaN in row 0 where it is active"),
        (
            lambda c: c.update(momentum=np.array([0.9, 0.9, np.nan])),
            "'momentum' holds 0.9 in row 0 where it is inactive",
        ),
        (
            lambda c: c.update(momentum=np.array([np.nan, np.nan, np.nan])),
            "'momentum' is NaN in row 1 where it is active",
        ),
    ],
)
def test_validate_errors(mutate, match):
    s, c = valid_configs()
    mutate(c)
    with pytest.raises(ValueError, match=match):
        s.validate(c)


def test_validate_int_non_integral():
    s = Space([Int("depth", 1, 4)])
    with pytest.raises(ValueError, match="'depth' has non-integral integer 2.5"):
        s.validate({"depth": [1.0, 2.5]})
    with pytest.raises(ValueError, match="'depth' has value 5.0 outside \\[1, 4\\]"):
        s.validate({"depth": [5.0]})
    with pytest.raises(TypeError, match="configs must be a dict"):
        s.validate([1.0, 2.0])


def test_active_nested_and_multi_parent():
    s = big_space()
    nan = np.nan
    c = {
        "optimizer": np.array([1, 1, 1, 0, 1.0]),
        "lr": np.full(5, 1e-3),
        "momentum": np.array([0.9, 0.9, 0.9, nan, 0.9]),
        "nesterov": np.array([1, 1, 0, nan, 1.0]),
        "depth": np.array([3, 1, 4, 4, 4.0]),
        "width": np.full(5, 64.0),
        "wd": np.array([1e-4, nan, nan, nan, 1e-3]),
        "bn": np.zeros(5),
        "act": np.array([0, 1, 2, 3, 0.0]),
    }
    s.validate(c)
    act = s.active(c)
    # reference: wd active iff optimizer == momentum and nesterov and depth in {3, 4}
    ref_wd = (c["optimizer"] == 1) & (c["nesterov"] == 1) & np.isin(c["depth"], [3, 4])
    np.testing.assert_array_equal(act["wd"], ref_wd)
    np.testing.assert_array_equal(act["momentum"], c["optimizer"] == 1)
    np.testing.assert_array_equal(act["nesterov"], c["optimizer"] == 1)
    assert act["lr"].all() and act["bn"].all()
    # a parent that is inactive deactivates its child even if its (stale) value matched
    c2 = dict(c, optimizer=np.array([0, 1, 1, 0, 1.0]))
    assert not s.active(c2)["wd"][0]
    with pytest.raises(ValueError, match="'momentum' holds 0.9 in row 0 where it is inactive"):
        s.validate(c2)


# ----------------------------------------------------------------------------- decode / encode


def test_decode_encode_round_trip():
    s = big_space()
    c = s.sample(128, "sobol", seed=5)
    records = s.decode(c)
    assert len(records) == 128
    act = s.active(c)
    for i, r in enumerate(records):
        assert list(r) == [k for k in s.names if act[k][i]]  # space order, inactive omitted
        assert isinstance(r["optimizer"], str)
        assert isinstance(r["lr"], float)
        assert type(r["depth"]) is int and type(r["width"]) is int
        assert type(r["bn"]) is bool
        assert r["act"] in ("relu", 1, 2.5, True)
        if "nesterov" in r:
            assert type(r["nesterov"]) is bool
    assert {type(r["act"]) for r in records} == {str, int, float, bool}
    back = s.encode(records)
    for name in s.names:
        np.testing.assert_array_equal(back[name], c[name], err_msg=name)
    # json round trip of the records too
    back2 = s.encode(json.loads(json.dumps(records)))
    for name in s.names:
        np.testing.assert_array_equal(back2[name], c[name], err_msg=name)


def test_decode_column():
    s = opt_space()
    out = s.decode_column("optimizer", [2.0, 0.0, np.nan])
    assert out.dtype == object and out.tolist() == ["adam", "sgd", None]
    assert s.decode_column("momentum", [np.nan, 0.9]).tolist() == [None, 0.9]
    with pytest.raises(ValueError, match="'optimizer' has code 3.0 outside"):
        s.decode_column("optimizer", [3.0])
    with pytest.raises(KeyError, match="unknown hyperparameter 'x'"):
        s.decode_column("x", [0.0])


@pytest.mark.parametrize(
    "records, match",
    [
        ([{"optimizer": "momentum", "lr": 1e-3}], "record 0 lacks hyperparameter 'momentum', which is active"),
        ([{"optimizer": "sgd"}], "record 0 lacks hyperparameter 'lr'"),
        (
            [{"optimizer": "sgd", "lr": 1e-3}, {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9}],
            "record 1 gives 'momentum'=0.9 but 'momentum' is inactive",
        ),
        ([{"optimizer": "sgd", "lr": 1e-3, "beta": 1}], "record 0 has unknown hyperparameter\\(s\\) \\['beta'\\]"),
        ([{"optimizer": "rmsprop", "lr": 1e-3}], "'optimizer': 'rmsprop' is not among the choices"),
        ([{"optimizer": "sgd", "lr": 1.0}], "'lr': 1.0 is outside"),
        ([{"optimizer": "sgd", "lr": "big"}], "'lr': 'big' is not a number"),
    ],
)
def test_encode_errors(records, match):
    with pytest.raises(ValueError, match=match):
        opt_space().encode(records)


def test_encode_types():
    s = Space([Int("depth", 1, 4), Bool("bn")])
    c = s.encode([{"depth": 3, "bn": True}, {"depth": np.int64(2), "bn": np.bool_(False)},
                  {"depth": 4.0, "bn": 1}])
    np.testing.assert_array_equal(c["depth"], [3, 2, 4])
    np.testing.assert_array_equal(c["bn"], [1, 0, 1])
    with pytest.raises(ValueError, match="'depth': 2.5 is not an integer"):
        s.encode([{"depth": 2.5, "bn": True}])
    with pytest.raises(ValueError, match="'bn': 'yes' is not a bool"):
        s.encode([{"depth": 2, "bn": "yes"}])
    with pytest.raises(TypeError, match="records must be a list of dicts"):
        s.encode({"depth": 2, "bn": True})
    assert s.encode([])["depth"].shape == (0,)


# ----------------------------------------------------------------------------- interop


def test_pickle_and_pandas_interop():
    import pickle

    import pandas as pd

    s = big_space()
    s2 = pickle.loads(pickle.dumps(s))
    assert s2 == s and s2.to_dict() == s.to_dict()
    c = s.sample(16, "lhs", 1)
    df = pd.DataFrame(c)
    s.validate(df)  # a DataFrame with the configs columns is accepted as configs
    for name in s.names:
        np.testing.assert_array_equal(s.active(df)[name], s.active(c)[name])
    np.testing.assert_array_equal(s.to_unit(df), s.to_unit(c))


# ----------------------------------------------------------------------------- threshold conditions


def threshold_space():
    """Section 4.3 of Novello et al. (2023): x3 exists where x2 > 0.5; and around it a range on an
    Int parent, a threshold combined with an equality, and children of threshold-conditional
    parents (a grandchild through a threshold, and a threshold on a threshold-conditional parent)."""
    return Space(
        [
            Float("x1", 0.0, 1.0),
            Float("x2", 0.0, 1.0),
            Float("x3", 0.0, 1.0, condition={"x2": {"gt": 0.5}}),
            Categorical("opt", ["sgd", "adam"]),
            Int("depth", 1, 6),
            Float("wide", 8.0, 512.0, log=True, condition={"depth": {"ge": 2, "lt": 5}}),
            Float("beta", 0.5, 0.99, condition={"x1": (">=", 0.25), "opt": "adam"}),
            Bool("flag", condition={"x3": {"<=": 0.4}}),
            Float("deep", 0.0, 1.0, condition={"flag": True}),
        ]
    )


def threshold_reference_activity(c):
    """Activity written out by hand from the conditions of threshold_space."""
    x3 = c["x2"] > 0.5
    flag = x3 & (c["x3"] <= 0.4)  # NaN <= 0.4 is False where x3 is inactive
    return {
        "x1": np.ones(len(c["x1"]), bool), "x2": np.ones(len(c["x1"]), bool), "x3": x3,
        "opt": np.ones(len(c["x1"]), bool), "depth": np.ones(len(c["x1"]), bool),
        "wide": (c["depth"] >= 2) & (c["depth"] < 5),
        "beta": (c["x1"] >= 0.25) & (c["opt"] == 1),
        "flag": flag, "deep": flag & (c["flag"] == 1),
    }


def test_threshold_forms_are_one_condition():
    forms = [{"gt": 0.5}, {">": 0.5}, (">", 0.5), Threshold(gt=0.5), {"gt": np.float64(0.5)}]
    conds = [Float("x3", 0, 1, condition={"x2": f}).condition for f in forms]
    assert all(c == {"x2": Threshold(gt=0.5)} for c in conds)
    r = Threshold.from_mapping({"gt": 0.2, "<=": 0.8})
    assert r == Threshold(gt=0.2, le=0.8) and (r.lower, r.upper) == (0.2, 0.8)
    assert r.describe("x2") == "0.2 < x2 <= 0.8" and Threshold(ge=1).describe("d") == "d >= 1"
    assert r.to_dict() == {"gt": 0.2, "le": 0.8}
    np.testing.assert_array_equal(
        r.holds([0.1, 0.2, 0.5, 0.8, 0.9, np.nan]), [False, False, True, True, False, False]
    )
    np.testing.assert_array_equal(Threshold(ge=0.2).holds([0.2, 0.19]), [True, False])
    np.testing.assert_array_equal(Threshold(lt=0.2).holds([0.2, 0.19]), [False, True])
    # a list is always a list of values (for discrete parents), never a comparison
    assert Int("k", 0, 1, condition={"d": [2, 3]}).condition == {"d": (2, 3)}


@pytest.mark.parametrize(
    "condition, error, match",
    [
        ({"x2": {"gte": 0.5}}, ValueError, "'x3': condition on 'x2': unknown comparison 'gte' \\(did you mean 'ge'\\?\\); use gt, ge, lt, le"),
        ({"x2": {"eq": 0.5}}, ValueError, "unknown comparison 'eq' \\(for equality, list the allowed values"),
        ({"x2": {}}, ValueError, "'x3': condition on 'x2': give at least one of gt, ge, lt, le"),
        ({"x2": {"gt": 0.1, "ge": 0.2}}, ValueError, "give gt or ge, not both"),
        ({"x2": {"lt": 0.1, "<=": 0.2}}, ValueError, "give lt or le, not both"),
        ({"x2": {"gt": 0.8, "lt": 0.2}}, ValueError, "0.8 < x < 0.2 holds for no value"),
        ({"x2": {"gt": 0.5, "lt": 0.5}}, ValueError, "holds for no value"),
        ({"x2": {"gt": float("nan")}}, ValueError, "'x3': condition on 'x2': gt=nan is not finite"),
        ({"x2": {"gt": "0.5"}}, TypeError, "'x3': condition on 'x2': gt='0.5' must be a real number"),
        ({"x2": {"gt": True}}, TypeError, "gt=True must be a real number"),
    ],
)
def test_threshold_malformed(condition, error, match):
    with pytest.raises(error, match=match):
        Float("x3", 0, 1, condition=condition)


@pytest.mark.parametrize(
    "params, match",
    [
        (
            [Categorical("opt", ["sgd", "adam"]), Float("lr", 0.1, 1, condition={"opt": {"gt": 0}})],
            "'lr': condition opt > 0 compares a Categorical parent; comparisons need a Float or Int "
            "parent. For Categorical 'opt', list the allowed values instead, e.g. \\{'opt': \\['sgd'\\]\\}",
        ),
        (
            [Bool("bn"), Float("lr", 0.1, 1, condition={"bn": (">", 0.5)})],
            "'lr': condition bn > 0.5 compares a Bool parent",
        ),
        (
            [Float("x2", 0, 1), Float("x3", 0, 1, condition={"x2": {"gt": 1.5}})],
            "'x3': condition x2 > 1.5: threshold gt=1.5 is outside the bounds \\[0.0, 1.0\\] of parent 'x2'",
        ),
        (
            [Float("x2", 0, 1), Float("x3", 0, 1, condition={"x2": {"ge": -0.5, "lt": 0.5}})],
            "threshold ge=-0.5 is outside the bounds",
        ),
        (
            [Float("x2", 0, 1), Float("x3", 0, 1, condition={"x2": {"gt": 1.0}})],
            "'x3': condition x2 > 1.0 leaves no room in \\[0.0, 1.0\\].*'x3' would never be active",
        ),
        (
            [Float("x2", 0, 1), Float("x3", 0, 1, condition={"x2": {"ge": 1.0}})],
            "x2 >= 1.0 leaves no room",  # a single point: a design (almost) never draws it
        ),
        (
            [Float("x2", 0, 1), Float("x3", 0, 1, condition={"x2": {"ge": 0.5, "le": 0.5}})],
            "leaves no room",
        ),
        (
            [Int("d", 1, 4), Float("x3", 0, 1, condition={"d": {"gt": 4}})],
            "'x3': condition d > 4 leaves no room in \\[1, 4\\]",
        ),
        (
            [Int("d", 1, 4), Float("x3", 0, 1, condition={"d": {"gt": 2.2, "lt": 2.9}})],
            "leaves no room",
        ),
        (
            [Float("p", 0, 1), Float("lr", 0.1, 1, condition={"p": 0.5})],
            "'lr'.*condition on Float parent 'p' lists values; a Float parent takes a comparison, "
            "e.g. \\{'p': \\{'gt': 0.5\\}\\}",
        ),
    ],
)
def test_threshold_space_validation(params, match):
    with pytest.raises(ValueError, match=match):
        Space(params)


def test_threshold_within_bounds_is_accepted():
    """Thresholds at the bounds with room left, on Float and (non-integral) on Int parents."""
    s = Space(
        [
            Float("x", 0, 1),
            Int("d", 1, 4),
            Bool("a", condition={"x": {"gt": 0.0}}),
            Bool("b", condition={"x": {"le": 1.0}}),
            Bool("c", condition={"d": {"gt": 3.5, "le": 4}}),
            Bool("e", condition={"d": {"ge": 1.5, "lt": 2.5}}),
        ]
    )
    c = {"x": np.array([0.0, 0.5, 1.0, 1.0]), "d": np.array([1.0, 2.0, 3.0, 4.0])}
    c.update(a=np.array([np.nan, 0, 1, 1]), b=np.zeros(4), c=np.array([np.nan] * 3 + [1.0]),
             e=np.array([np.nan, 0, np.nan, np.nan]))
    s.validate(c)
    act = s.active(c)
    np.testing.assert_array_equal(act["a"], [False, True, True, True])
    np.testing.assert_array_equal(act["c"], [False, False, False, True])
    np.testing.assert_array_equal(act["e"], [False, True, False, False])


def hand_built_threshold_configs():
    nan = np.nan
    return {
        "x1": np.array([0.1, 0.25, 0.9, 0.3, 0.0, 0.7]),
        "x2": np.array([0.5, 0.51, 1.0, 0.0, 0.8, 0.6]),  # row 0: on the threshold (x2 > 0.5 fails)
        "x3": np.array([nan, 0.4, 0.9, nan, 0.1, 0.0]),
        "opt": np.array([1, 1, 1, 0, 0, 1.0]),
        "depth": np.array([1, 2, 4, 5, 6, 3.0]),
        "wide": np.array([nan, 8.0, 512.0, nan, nan, 64.0]),
        "beta": np.array([nan, 0.9, 0.5, nan, nan, 0.6]),
        "flag": np.array([nan, 1, nan, nan, 0, 1.0]),  # x3 <= 0.4: rows 1, 4, 5
        "deep": np.array([nan, 0.3, nan, nan, nan, 0.2]),
    }


def test_threshold_activity_on_hand_built_configs():
    s = threshold_space()
    c = hand_built_threshold_configs()
    s.validate(c)
    act = s.active(c)
    ref = threshold_reference_activity(c)
    for name in s.names:
        np.testing.assert_array_equal(act[name], ref[name], err_msg=name)
    np.testing.assert_array_equal(act["x3"], [False, True, True, False, True, True])
    np.testing.assert_array_equal(act["deep"], [False, True, False, False, False, True])
    # the activity follows the parents' values only
    c2 = dict(c, x2=np.array([0.2, 0.51, 1.0, 0.0, 0.8, 0.6]))
    np.testing.assert_array_equal(s.active(c2)["x3"], act["x3"])
    c3 = dict(c, x2=np.array([0.50001, 0.51, 1.0, 0.0, 0.8, 0.6]))
    assert s.active(c3)["x3"][0] and s.active(c3)["flag"][0] == (c["x3"][0] <= 0.4)


@pytest.mark.parametrize(
    "column, values, match",
    [
        ("x3", [0.3, 0.4, 0.9, np.nan, 0.1, 0.0], "'x3' holds 0.3 in row 0 where it is inactive .*active where x2 > 0.5"),
        ("x3", [np.nan, np.nan, 0.9, np.nan, 0.1, 0.0], "'x3' is NaN in row 1 where it is active"),
        ("wide", [8.0, 8.0, 512.0, np.nan, np.nan, 64.0], "'wide' holds 8.0 in row 0 .*2 <= depth < 5"),
        ("beta", [np.nan, 0.9, 0.5, 0.7, np.nan, 0.6], "'beta' holds 0.7 in row 3 .*x1 >= 0.25 and opt == 'adam'"),
        ("flag", [np.nan, 1, 0, np.nan, 0, 1.0], "'flag' holds 0.0 in row 2 .*x3 <= 0.4"),
    ],
)
def test_threshold_validate_errors(column, values, match):
    s = threshold_space()
    c = hand_built_threshold_configs()
    c[column] = np.array(values, dtype=float)
    with pytest.raises(ValueError, match=match):
        s.validate(c)


def test_threshold_dict_round_trip_json_and_toml():
    import pickle
    import tomllib

    s = threshold_space()
    d = s.to_dict()
    assert d["x3"]["condition"] == {"x2": {"gt": 0.5}}
    assert d["wide"]["condition"] == {"depth": {"ge": 2, "lt": 5}}
    assert d["beta"]["condition"] == {"x1": {"ge": 0.25}, "opt": ["adam"]}
    assert Space.from_dict(json.loads(json.dumps(d))) == s
    assert Space.from_dict(json.loads(json.dumps(d))).to_dict() == d
    toml = """
[x1]
type = "float"
low = 0.0
high = 1.0
[x2]
type = "float"
low = 0.0
high = 1.0
[x3]
type = "float"
low = 0.0
high = 1.0
condition = { x2 = { gt = 0.5 } }
[opt]
type = "categorical"
choices = ["sgd", "adam"]
[depth]
type = "int"
low = 1
high = 6
[wide]
type = "float"
low = 8.0
high = 512.0
log = true
condition = { depth = { ge = 2, lt = 5 } }
[beta]
type = "float"
low = 0.5
high = 0.99
condition = { x1 = { ">=" = 0.25 }, opt = ["adam"] }
[flag]
type = "bool"
condition = { x3 = { le = 0.4 } }
[deep]
type = "float"
low = 0.0
high = 1.0
condition = { flag = [true] }
"""
    assert Space.from_dict(tomllib.loads(toml)) == s
    assert pickle.loads(pickle.dumps(s)) == s
    bad = tomllib.loads(toml.replace("x2 = { gt = 0.5 }", "x2 = { gte = 0.5 }"))
    with pytest.raises(ValueError, match="'x3': condition on 'x2': unknown comparison 'gte'"):
        Space.from_dict(bad)
    bad = tomllib.loads(toml.replace("x2 = { gt = 0.5 }", "x2 = { gt = 2.0 }"))
    with pytest.raises(ValueError, match="'x3': condition x2 > 2.0: threshold gt=2.0 is outside"):
        Space.from_dict(bad)
    bad = tomllib.loads(toml.replace('opt = ["adam"]', "opt = { gt = 0 }"))
    with pytest.raises(ValueError, match="'beta': condition opt > 0 compares a Categorical parent"):
        Space.from_dict(bad)
    bad = tomllib.loads(toml.replace("x2 = { gt = 0.5 }", 'x2 = { gt = "half" }'))
    with pytest.raises(ValueError, match="'x3': condition on 'x2': gt='half' must be a real number"):
        Space.from_dict(bad)


def test_threshold_decode_encode():
    s = threshold_space()
    c = hand_built_threshold_configs()
    records = s.decode(c)
    assert "x3" not in records[0] and records[1]["x3"] == 0.4 and records[1]["deep"] == 0.3
    assert "flag" not in records[2] and records[4]["flag"] is False and "deep" not in records[4]
    back = s.encode(records)
    for name in s.names:
        np.testing.assert_array_equal(back[name], c[name], err_msg=name)
    rec = dict(records[0], x3=0.2)
    with pytest.raises(ValueError, match="record 0 gives 'x3'=0.2 but 'x3' is inactive \\(its condition x2 > 0.5 fails\\)"):
        s.encode([rec])
    with pytest.raises(ValueError, match="record 0 lacks hyperparameter 'x3', which is active"):
        s.encode([dict(records[0], x2=0.75)])


def test_conveniences_delegate_to_design_and_encoding():
    from hsens_jax import design, encoding

    s = threshold_space()
    c = s.sample(32, "sobol", seed=2)
    ref = design.sample(s, 32, kind="sobol", seed=2)
    g, gref = s.grid({"x1": 2, "x2": 3, "x3": 2, "depth": 2, "wide": 2, "beta": 2, "deep": 2}), \
        design.grid(s, {"x1": 2, "x2": 3, "x3": 2, "depth": 2, "wide": 2, "beta": 2, "deep": 2})
    for name in s.names:
        np.testing.assert_array_equal(c[name], ref[name])
        np.testing.assert_array_equal(g[name], gref[name])
    U = np.random.default_rng(0).random((10, len(s)))
    for name, col in s.from_unit(U).items():
        np.testing.assert_array_equal(col, encoding.from_unit(s, U)[name])
    np.testing.assert_array_equal(s.to_unit(c), encoding.to_unit(s, c))
    np.testing.assert_array_equal(s.normalize(c, seed=4), encoding.normalize(s, c, seed=4))
    np.testing.assert_array_equal(s.one_hot(c)[0], encoding.one_hot(s, c)[0])
    assert s.one_hot(c)[1] == encoding.one_hot(s, c)[1]
