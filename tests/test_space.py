"""Tests for hsens_jax.space: validation, configs format, designs, unit cube, encodings.

The unit-cube maps are checked against independent float64 NumPy formulas written here.
"""

import json

import numpy as np
import pytest
from scipy import stats

from hsens_jax.space import (
    Bool,
    Categorical,
    Float,
    Int,
    Space,
    UnknownHyperparameterError,
)


def opt_space():
    """optimizer in {sgd, momentum, adam}; momentum active only for 'momentum'."""
    return Space(
        [
            Categorical("optimizer", ["sgd", "momentum", "adam"]),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        ]
    )


def big_space():
    return Space(
        [
            Categorical("optimizer", ["sgd", "momentum", "adam"]),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("momentum", 0.5, 0.99, condition={"optimizer": ["momentum"]}),
            Bool("nesterov", condition={"optimizer": "momentum"}),
            Int("depth", 1, 4),
            Int("width", 8, 512, log=True),
            # grandchild + multiple parents + an Int parent
            Float("wd", 1e-6, 1e-2, log=True, condition={"nesterov": True, "depth": [3, 4]}),
            Bool("bn"),
            Categorical("act", ["relu", 1, 2.5, True]),
        ]
    )


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


@pytest.mark.parametrize(
    "d, match",
    [
        ({"a": {"type": "complex"}}, "'a'.*type 'complex' is not one of"),
        ({"a": {"low": 0, "high": 1}}, "'a'.*type None is not one of"),
        ({"a": {"type": "float", "low": 0}}, "'a'.*missing key 'high'"),
        ({"a": {"type": "float", "low": 0, "high": 1, "step": 2}}, "'a'.*unknown keys \\['step'\\]"),
        ({"a": {"type": "categorical"}}, "'a'.*missing key 'choices'"),
        ({"a": {"type": "int", "low": 0.5, "high": 3}}, "'a'.*low=0.5 must be an integer"),
    ],
)
def test_from_dict_errors(d, match):
    with pytest.raises(ValueError, match=match):
        Space.from_dict(d)


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


# ----------------------------------------------------------------------------- designs


@pytest.mark.parametrize("design", ["random", "sobol", "halton", "lhs"])
def test_sample_designs(design):
    s = big_space()
    c = s.sample(64, design, seed=3)
    assert list(c) == list(s.names)
    for name, col in c.items():
        assert col.dtype == np.float64 and col.shape == (64,), name
    s.validate(c)  # range, integrality, NaN exactly where inactive
    act = s.active(c)
    for name in s.names:
        np.testing.assert_array_equal(np.isnan(c[name]), ~act[name])
    # every choice of every categorical shows up, and the conditional columns are mixed
    assert set(c["optimizer"]) == {0.0, 1.0, 2.0}
    assert 0 < act["momentum"].sum() < 64
    again = s.sample(64, design, seed=3)
    other = s.sample(64, design, seed=4)
    for name in s.names:
        np.testing.assert_array_equal(c[name], again[name])
    assert not np.array_equal(np.nan_to_num(c["lr"]), np.nan_to_num(other["lr"]))


def test_sample_errors():
    s = opt_space()
    with pytest.raises(ValueError, match="design 'grid' is not one of"):
        s.sample(8, "grid")
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            s.sample(n)


def balance_space():
    return Space(
        [
            Categorical("c2", ["a", "b"]),
            Categorical("c4", ["a", "b", "c", "d"]),
            Bool("b"),
            Int("i8", 3, 10),
            Categorical("c3", ["x", "y", "z"]),
        ]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sobol_balance(seed):
    """Scrambled Sobol' with n = 2^m: each 1-D projection has one point per interval [i/n, (i+1)/n),
    so a level with k | n (k a power of two) appears exactly n/k times; for k = 3, within 1 of n/3."""
    s = balance_space()
    n = 64
    c = s.sample(n, "sobol", seed=seed)
    for name, k in [("c2", 2), ("c4", 4), ("b", 2)]:
        np.testing.assert_array_equal(np.bincount(c[name].astype(int), minlength=k), n // k)
    np.testing.assert_array_equal(np.bincount((c["i8"] - 3).astype(int), minlength=8), 8)
    counts3 = np.bincount(c["c3"].astype(int), minlength=3)
    assert np.all(np.abs(counts3 - n / 3) <= 1), counts3


@pytest.mark.parametrize("n", [12, 60])
def test_lhs_balance(n):
    """LHS: one point per stratum of width 1/n, so every level with k | n appears n/k times."""
    s = Space([Categorical("c3", ["x", "y", "z"]), Categorical("c4", list("abcd")), Int("i6", 0, 5)])
    c = s.sample(n, "lhs", seed=7)
    np.testing.assert_array_equal(np.bincount(c["c3"].astype(int), minlength=3), n // 3)
    np.testing.assert_array_equal(np.bincount(c["c4"].astype(int), minlength=4), n // 4)
    np.testing.assert_array_equal(np.bincount(c["i6"].astype(int), minlength=6), n // 6)


def test_random_design_marginals_are_calibrated():
    """Log-Float is log-uniform, log-Int has P(v) = log((v+1)/v) / log((high+1)/low), linear Int
    and categoricals are uniform (KS / chi-square against the textbook laws, fixed seed)."""
    s = Space(
        [
            Float("lr", 1e-5, 1e-1, log=True),
            Int("width", 2, 9, log=True),
            Int("depth", 1, 6),
            Categorical("c", ["a", "b", "c"]),
        ]
    )
    n = 20000
    c = s.sample(n, "random", seed=11)
    u = (np.log(c["lr"]) - np.log(1e-5)) / (np.log(1e-1) - np.log(1e-5))
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    v = np.arange(2, 10)
    p_ref = np.log((v + 1) / v) / np.log(10 / 2)
    obs = np.array([(c["width"] == x).sum() for x in v])
    assert obs.sum() == n
    assert stats.chisquare(obs, p_ref * n).pvalue > 1e-3
    obs = np.bincount(c["depth"].astype(int) - 1, minlength=6)
    assert stats.chisquare(obs).pvalue > 1e-3
    obs = np.bincount(c["c"].astype(int), minlength=3)
    assert stats.chisquare(obs).pvalue > 1e-3


def test_grid_counts_with_condition():
    s = opt_space()
    g = s.grid({"lr": 3, "momentum": 4})
    assert len(g["lr"]) == 3 + 12 + 3
    s.validate(g)
    opt = g["optimizer"]
    assert np.bincount(opt.astype(int)).tolist() == [3, 12, 3]
    np.testing.assert_array_equal(np.isnan(g["momentum"]), opt != 1)
    np.testing.assert_allclose(np.unique(g["lr"]), [1e-4, 1e-4 * 10**1.5, 1e-1], rtol=1e-12)
    np.testing.assert_allclose(np.unique(g["momentum"][opt == 1]), np.linspace(0.5, 0.99, 4))
    rows = {tuple(np.nan_to_num(g[k][i], nan=-1) for k in s.names) for i in range(18)}
    assert len(rows) == 18  # no duplicated configuration
    # every (optimizer, lr) pair and, for momentum, every (lr, momentum) pair is present
    pairs = {(g["lr"][i], g["momentum"][i]) for i in range(18) if opt[i] == 1}
    assert len(pairs) == 12


def test_grid_nested_conditions_count():
    s = Space(
        [
            Categorical("opt", ["sgd", "momentum"]),
            Bool("nesterov", condition={"opt": "momentum"}),
            Float("x", 0, 1, condition={"nesterov": True}),
            Int("depth", 1, 3),
        ]
    )
    g = s.grid(levels={"x": 5})
    # sgd: 1, momentum & !nesterov: 1, momentum & nesterov: 5 -> 7, times 3 depths
    assert len(g["opt"]) == 7 * 3
    s.validate(g)
    assert len(s.decode(g)) == len({tuple(sorted(r.items())) for r in s.decode(g)})


def test_grid_values():
    s = Space(
        [
            Float("f", -1.0, 3.0),
            Float("g", 1e-3, 1.0, log=True),
            Int("few", 2, 4),
            Int("many", 0, 100),
            Int("logmany", 1, 1000, log=True),
        ]
    )
    g = s.grid(levels={"f": 5, "g": 4, "few": 5, "many": 6, "logmany": 50})
    assert len(g["f"]) == 5 * 4 * 3 * 6 * 50
    np.testing.assert_array_equal(np.unique(g["f"]), [-1.0, 0.0, 1.0, 2.0, 3.0])
    gv = np.unique(g["g"])
    assert gv[0] == 1e-3 and gv[-1] == 1.0
    np.testing.assert_allclose(np.diff(np.log10(gv)), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(np.unique(g["few"]), [2, 3, 4])
    np.testing.assert_array_equal(np.unique(g["many"]), [0, 20, 40, 60, 80, 100])
    lm = np.unique(g["logmany"])
    assert len(lm) == 50 and lm[0] == 1 and lm[-1] == 1000
    assert np.all(lm == np.round(lm))
    # away from the merged small values, the points follow the geometric progression
    ref = np.geomspace(1, 1000, 50)
    np.testing.assert_allclose(lm[30:], np.round(ref[30:]), atol=0)
    s.validate(g)


def test_grid_errors():
    s = opt_space()
    with pytest.raises(ValueError, match="levels names unknown hyperparameter\\(s\\) \\['beta'\\]"):
        s.grid({"beta": 3})
    with pytest.raises(ValueError, match="levels for 'lr' must be an integer >= 2"):
        s.grid({"lr": 1})
    with pytest.raises(ValueError, match="levels for 'optimizer' must be an integer >= 2"):
        s.grid(2.5)


# ----------------------------------------------------------------------------- unit cube


def ref_from_unit_column(p, u):
    """Independent textbook maps, float64."""
    if isinstance(p, Float):
        if p.log:
            return 10 ** (np.log10(p.low) + u * (np.log10(p.high) - np.log10(p.low)))
        return p.low + u * (p.high - p.low)
    if isinstance(p, Int) and p.log:
        # integer v owns the u-interval [log(v/low), log((v+1)/low)) / log((high+1)/low)
        L = np.log((p.high + 1) / p.low)
        vals = np.arange(p.low, p.high + 1)
        edges = np.log(vals / p.low) / L
        return vals[np.searchsorted(edges, u, side="right") - 1].astype(float)
    k = p.n_values
    j = np.minimum((u * k).astype(int), k - 1)
    return (p.low + j).astype(float) if isinstance(p, Int) else j.astype(float)


def test_from_unit_matches_reference():
    s = Space(
        [
            Float("f", -2.0, 5.0),
            Float("lf", 1e-4, 10.0, log=True),
            Int("i", -3, 7),
            Int("li", 3, 300, log=True),
            Categorical("c", ["a", "b", "c"]),
            Bool("b"),
        ]
    )
    rng = np.random.default_rng(0)
    U = rng.random((5000, 6))
    U[:6] = np.eye(6)  # exact 0 and 1 endpoints
    U[6:12] = 1 - np.eye(6)
    c = s.from_unit(U)
    for j, p in enumerate(s):
        ref = ref_from_unit_column(p, U[:, j])
        if isinstance(p, Float):
            np.testing.assert_allclose(c[p.name], ref, rtol=1e-12, err_msg=p.name)
        else:
            np.testing.assert_array_equal(c[p.name], ref, err_msg=p.name)
    assert c["f"].min() == -2.0 and c["f"].max() == 5.0
    assert c["lf"].min() >= 1e-4 and c["lf"].max() <= 10.0
    assert c["i"].max() == 7 and c["c"].max() == 2 and c["b"].max() == 1


def test_from_unit_inactive_and_errors():
    s = opt_space()
    U = np.array([[0.1, 0.5, 0.5], [0.5, 0.5, 0.5], [0.9, 0.5, 0.5]])
    c = s.from_unit(U)
    assert np.isnan(c["momentum"][0]) and np.isnan(c["momentum"][2])
    assert c["momentum"][1] == pytest.approx(0.745)
    with pytest.raises(ValueError, match="column 1 \\('lr'\\) has 1.5 outside \\[0, 1\\]"):
        s.from_unit(np.array([[0.1, 1.5, 0.5]]))
    with pytest.raises(ValueError, match="'momentum'\\) has nan outside"):
        s.from_unit(np.array([[0.1, 0.5, np.nan]]))
    with pytest.raises(ValueError, match="U must have shape \\(n, 3\\)"):
        s.from_unit(np.zeros((4, 2)))


def test_unit_round_trips():
    s = Space(
        [
            Float("f", -2.0, 5.0),
            Float("lf", 1e-4, 10.0, log=True),
            Int("i", -3, 7),
            Int("li", 1, 1000, log=True),
            Categorical("c", ["a", "b", "c"]),
            Bool("b", condition={"c": ["a", "c"]}),
        ]
    )
    # discrete: every possible value round-trips exactly
    n = 1000
    rng = np.random.default_rng(1)
    c = {
        "f": rng.uniform(-2, 5, n),
        "lf": np.exp(rng.uniform(np.log(1e-4), np.log(10.0), n)),
        "i": np.resize(np.arange(-3, 8.0), n),
        "li": np.arange(1, 1001.0),
        "c": np.resize([0.0, 1.0, 2.0], n),
        "b": np.resize([0.0, 1.0], n),
    }
    c["b"][c["c"] == 1] = np.nan
    s.validate(c)
    U = s.to_unit(c)
    assert U.shape == (n, 6) and np.all((U[~np.isnan(U)] >= 0) & (U[~np.isnan(U)] <= 1))
    np.testing.assert_array_equal(np.isnan(U[:, 5]), c["c"] == 1)
    # bin centres
    np.testing.assert_allclose(U[:, 2], (c["i"] + 3 + 0.5) / 11)
    np.testing.assert_allclose(U[:, 4], (c["c"] + 0.5) / 3)
    li = c["li"]
    np.testing.assert_allclose(U[:, 3], np.log(np.sqrt(li * (li + 1))) / np.log(1001), rtol=1e-12)
    U_filled = np.where(np.isnan(U), 0.5, U)
    back = s.from_unit(U_filled)
    for name in ["i", "li", "c", "b"]:
        np.testing.assert_array_equal(back[name], c[name], err_msg=name)
    np.testing.assert_allclose(back["f"], c["f"], rtol=1e-12)
    np.testing.assert_allclose(back["lf"], c["lf"], rtol=1e-12)
    # and the other way: to_unit(from_unit(U)) == U for the Float columns
    U2 = rng.random((200, 6))
    np.testing.assert_allclose(s.to_unit(s.from_unit(U2))[:, :2], U2[:, :2], rtol=1e-12, atol=1e-15)


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


# ----------------------------------------------------------------------------- encodings


def test_one_hot():
    s = Space(
        [
            Categorical("opt", ["sgd", "momentum", "adam"]),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("momentum", 0.5, 1.0, condition={"opt": "momentum"}),
            Categorical("sched", ["cos", "step"], condition={"opt": ["momentum", "adam"]}),
            Bool("bn"),
            Int("depth", 2, 6),
        ]
    )
    c = s.encode(
        [
            {"opt": "sgd", "lr": 1e-4, "bn": True, "depth": 2},
            {"opt": "momentum", "lr": 1e-1, "momentum": 0.75, "sched": "step", "bn": False, "depth": 6},
            {"opt": "adam", "lr": 1e-2, "sched": "cos", "bn": True, "depth": 3},
        ]
    )
    X, names = s.one_hot(c)
    assert names == [
        "opt=sgd", "opt=momentum", "opt=adam", "lr", "momentum", "sched=cos", "sched=step", "bn",
        "depth",
    ]
    nan = np.nan
    ref = np.array(
        [
            [1, 0, 0, 0.0, nan, 0, 0, 1, 0.0],
            [0, 1, 0, 1.0, 0.5, 0, 1, 0, 1.0],
            [0, 0, 1, 2 / 3, nan, 1, 0, 1, 0.25],
        ]
    )
    assert X.dtype == np.float64 and X.shape == (3, 9)
    np.testing.assert_allclose(X, ref, rtol=1e-12, atol=1e-15)


def novello_space():
    return Space(
        [
            Float("lr", 1e-4, 1e-1, log=True),
            Categorical("c", ["a", "b", "c"]),
            Int("depth", 1, 4),
            Int("width", 1, 64, log=True),
            Bool("bn", condition={"c": "b"}),
        ]
    )


def test_normalize_novello_bins_and_determinism():
    s = novello_space()
    c = s.sample(3000, "random", seed=0)
    X = s.normalize(c, seed=1)
    assert X.shape == (3000, 5) and X.dtype == np.float64
    U = s.to_unit(c)
    np.testing.assert_array_equal(X[:, 0], U[:, 0])  # Float: min-max on the log scale
    np.testing.assert_allclose(
        X[:, 0], (np.log(c["lr"]) - np.log(1e-4)) / (np.log(1e-1) - np.log(1e-4)), rtol=1e-12
    )
    # categorical / linear int: bin [j/k, (j+1)/k]
    j = c["c"]
    assert np.all((X[:, 1] >= j / 3) & (X[:, 1] <= (j + 1) / 3))
    j = c["depth"] - 1
    assert np.all((X[:, 2] >= j / 4) & (X[:, 2] <= (j + 1) / 4))
    # log int: the log-scale bin of the value, the same bin from_unit maps back to the value
    w = c["width"]
    L = np.log(65.0)
    assert np.all((X[:, 3] >= np.log(w) / L) & (X[:, 3] <= np.log(w + 1) / L))
    # inactive stays NaN, active bool in its half
    np.testing.assert_array_equal(np.isnan(X[:, 4]), c["c"] != 1)
    act = c["c"] == 1
    assert np.all((X[act, 4] >= c["bn"][act] / 2) & (X[act, 4] <= (c["bn"][act] + 1) / 2))
    # the jittered value maps back to the original value
    back = s.from_unit(np.nan_to_num(X, nan=0.5))
    for name in ["c", "depth", "width", "bn"]:
        np.testing.assert_array_equal(back[name], c[name], err_msg=name)
    np.testing.assert_array_equal(s.normalize(c, seed=1), X)
    X2 = s.normalize(c, seed=2)
    assert not np.array_equal(X2[:, 1], X[:, 1])
    np.testing.assert_array_equal(X2[:, 0], X[:, 0])
    np.testing.assert_array_equal(s.normalize(c, method="unit"), U)
    with pytest.raises(ValueError, match="method 'zscore' is not one of"):
        s.normalize(c, method="zscore")


def test_normalize_novello_jitter_is_uniform():
    """Within its bin the jitter is U(0,1); a uniformly distributed discrete variable therefore
    becomes U(0,1) on [0, 1] (KS tests, fixed seeds)."""
    s = novello_space()
    c = s.sample(4000, "random", seed=3)
    X = s.normalize(c, seed=4)
    pos_c = X[:, 1] * 3 - c["c"]
    pos_d = X[:, 2] * 4 - (c["depth"] - 1)
    for pos in (pos_c, pos_d):
        assert stats.kstest(pos, "uniform").pvalue > 1e-3
    assert stats.kstest(X[:, 1], "uniform").pvalue > 1e-3
    assert stats.kstest(X[:, 2], "uniform").pvalue > 1e-3
    # log-int sampled log-uniformly becomes U(0,1) too
    assert stats.kstest(X[:, 3], "uniform").pvalue > 1e-3
    # the jitter is independent of the value: the within-bin position has the same law per level
    for k in range(3):
        assert stats.kstest(pos_c[c["c"] == k], "uniform").pvalue > 1e-3
    # and the KS test has power here: bin centres (method="unit") are far from uniform
    assert stats.kstest(s.normalize(c, method="unit")[:, 1], "uniform").pvalue < 1e-6


@pytest.mark.parametrize("design", ["sobol", "halton", "lhs"])
def test_sample_is_scipy_qmc_through_from_unit(design):
    """The quasi-random designs are scipy.stats.qmc's scrambled points (same seed) mapped by
    from_unit: checked against the reference engine directly."""
    from scipy.stats import qmc

    s = big_space()
    klass = {"sobol": qmc.Sobol, "halton": qmc.Halton, "lhs": qmc.LatinHypercube}[design]
    try:
        U = klass(len(s), scramble=True, rng=9).random(32)
    except TypeError:
        U = klass(len(s), scramble=True, seed=9).random(32)
    ref = s.from_unit(U)
    got = s.sample(32, design, seed=9)
    for name in s.names:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


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
