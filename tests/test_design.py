"""Tests for hsens_jax.design: sampled designs (random, Sobol', Halton, LHS), grids, and the
validation of design settings."""

import warnings

import numpy as np
import pytest
from scipy import stats

from hsens_jax import design, encoding
from hsens_jax.space import Bool, Categorical, Float, Int, Space

from .spaces import big_space, opt_space





@pytest.mark.parametrize("kind", ["random", "sobol", "halton", "lhs"])
def test_sample_designs(kind):
    s = big_space()
    c = design.sample(s, 64, kind, seed=3)
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
    again = design.sample(s, 64, kind, seed=3)
    other = design.sample(s, 64, kind, seed=4)
    for name in s.names:
        np.testing.assert_array_equal(c[name], again[name])
    assert not np.array_equal(np.nan_to_num(c["lr"]), np.nan_to_num(other["lr"]))


def test_sample_errors():
    s = opt_space()
    with pytest.raises(ValueError, match="kind 'grid' is not one of .*design.grid"):
        design.sample(s, 8, "grid")
    for n in (0, -1, 2.5, True, "many", None, np.float64(4.0)):
        with pytest.raises(ValueError, match=r"sample: n \(the number of configurations\) must be a positive"):
            design.sample(s, n)
    for seed in (-1, 1.5, "a", None, True):
        with pytest.raises(ValueError, match="sample: seed must be a non-negative integer"):
            design.sample(s, 4, "sobol", seed=seed)
    np.testing.assert_array_equal(design.sample(s, np.int64(3))["lr"], design.sample(s, 3)["lr"])


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
    c = design.sample(s, n, "sobol", seed=seed)
    for name, k in [("c2", 2), ("c4", 4), ("b", 2)]:
        np.testing.assert_array_equal(np.bincount(c[name].astype(int), minlength=k), n // k)
    np.testing.assert_array_equal(np.bincount((c["i8"] - 3).astype(int), minlength=8), 8)
    counts3 = np.bincount(c["c3"].astype(int), minlength=3)
    assert np.all(np.abs(counts3 - n / 3) <= 1), counts3


@pytest.mark.parametrize("n", [12, 60])
def test_lhs_balance(n):
    """LHS: one point per stratum of width 1/n, so every level with k | n appears n/k times."""
    s = Space([Categorical("c3", ["x", "y", "z"]), Categorical("c4", list("abcd")), Int("i6", 0, 5)])
    c = design.sample(s, n, "lhs", seed=7)
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
    c = design.sample(s, n, "random", seed=11)
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
    g = design.grid(s, {"lr": 3, "momentum": 4})
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
    g = design.grid(s, levels={"x": 5})
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
    g = design.grid(s, levels={"f": 5, "g": 4, "few": 5, "many": 6, "logmany": 50})
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
        design.grid(s, {"beta": 3})
    with pytest.raises(ValueError, match="levels for 'lr' must be an integer >= 2"):
        design.grid(s, {"lr": 1})
    for levels in (2.5, 1, True, "5", None):
        with pytest.raises(ValueError, match="grid: levels must be an integer >= 2 or a mapping"):
            design.grid(s, levels)
    with pytest.raises(ValueError, match="levels for 'lr' must be an integer >= 2, got 3.0"):
        design.grid(s, {"lr": 3.0})


@pytest.mark.parametrize("kind", ["sobol", "halton", "lhs"])
def test_sample_is_scipy_qmc_through_from_unit(kind):
    """The quasi-random designs are scipy.stats.qmc's scrambled points (same seed) mapped by
    from_unit: checked against the reference engine directly."""
    from scipy.stats import qmc

    s = big_space()
    klass = {"sobol": qmc.Sobol, "halton": qmc.Halton, "lhs": qmc.LatinHypercube}[kind]
    try:
        U = klass(len(s), scramble=True, rng=9).random(32)
    except TypeError:
        U = klass(len(s), scramble=True, seed=9).random(32)
    ref = encoding.from_unit(s, U)
    got = design.sample(s, 32, kind, seed=9)
    for name in s.names:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)



# ----------------------------------------------------------------------------- threshold conditions


def threshold_space():
    """x3 where x2 > 0.5 (Novello et al. 2023, section 4.3); a range on an Int parent; a grandchild
    through a threshold on the threshold-conditional x3."""
    return Space(
        [
            Float("x1", 0.0, 1.0),
            Float("x2", 0.0, 1.0),
            Float("x3", 0.0, 1.0, condition={"x2": {"gt": 0.5}}),
            Int("depth", 1, 6),
            Float("wide", 8.0, 512.0, log=True, condition={"depth": {"ge": 2, "lt": 5}}),
            Bool("flag", condition={"x3": {"le": 0.4}, "x1": (">=", 0.25)}),
            Float("deep", 0.0, 1.0, condition={"flag": True}),
        ]
    )


def reference_activity(c):
    x3 = c["x2"] > 0.5
    flag = x3 & (c["x3"] <= 0.4) & (c["x1"] >= 0.25)
    ones = np.ones(len(c["x1"]), bool)
    return {"x1": ones, "x2": ones, "x3": x3, "depth": ones,
            "wide": (c["depth"] >= 2) & (c["depth"] < 5), "flag": flag, "deep": flag & (c["flag"] == 1)}


@pytest.mark.parametrize("kind", ["random", "sobol", "halton", "lhs"])
def test_threshold_designs_hold_nan_exactly_where_inactive(kind):
    s = threshold_space()
    n = 256
    c = design.sample(s, n, kind, seed=5)
    s.validate(c)
    ref = reference_activity(c)
    for name in s.names:
        np.testing.assert_array_equal(~np.isnan(c[name]), ref[name], err_msg=name)
    # the unit-cube point behind each row decides: x3 is active iff its x2 coordinate > 0.5
    U = design.unit_sample(n, len(s), kind, seed=5)
    np.testing.assert_array_equal(~np.isnan(c["x3"]), U[:, 1] > 0.5)
    np.testing.assert_array_equal(c["x3"][U[:, 1] > 0.5], U[U[:, 1] > 0.5, 2])
    # every level of activity occurs, in the proportions of the design
    assert abs(ref["x3"].mean() - 0.5) < 0.1
    assert abs(ref["wide"].mean() - 0.5) < 0.1
    assert 0 < ref["deep"].sum() < ref["flag"].sum() < ref["x3"].sum()


def test_threshold_grid():
    s = Space(
        [
            Float("x2", 0.0, 1.0),
            Float("x3", 0.0, 1.0, condition={"x2": {"gt": 0.5}}),
            Int("d", 1, 4),
            Bool("b", condition={"d": {"ge": 3}, "x3": {"lt": 0.5}}),
        ]
    )
    g = design.grid(s, {"x2": 5, "x3": 3})
    # x2 in {0, .25, .5, .75, 1}: x3 varies on 2 of them (0.5 is not > 0.5); b where d >= 3 and x3 < 0.5
    x2_rows = 3 * 4 + 2 * (2 * 4 + 1 * (2 + 2 * 2))
    assert len(g["x2"]) == x2_rows
    s.validate(g)
    np.testing.assert_array_equal(~np.isnan(g["x3"]), g["x2"] > 0.5)
    np.testing.assert_array_equal(np.unique(g["x3"][g["x2"] > 0.5]), [0.0, 0.5, 1.0])
    ref_b = (g["d"] >= 3) & (g["x3"] < 0.5)
    np.testing.assert_array_equal(~np.isnan(g["b"]), ref_b)
    rows = {tuple(np.nan_to_num([g[k][i] for k in s.names], nan=-1)) for i in range(x2_rows)}
    assert len(rows) == x2_rows  # no configuration twice


# ----------------------------------------------------------------------------- design.make and settings


def test_make_builds_each_kind():
    s = opt_space()
    for kind in ("random", "sobol", "halton", "lhs"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Sobol' with n not a power of two
            got, ref = design.make(s, kind, n=12, seed=4), design.sample(s, 12, kind, seed=4)
        for name in s.names:
            np.testing.assert_array_equal(got[name], ref[name])
    for levels in (None, 3, {"lr": 4}):
        got = design.make(s, "grid", levels=levels)
        ref = design.grid(s, 5 if levels is None else levels)
        for name in s.names:
            np.testing.assert_array_equal(got[name], ref[name])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="sobol", n=3.5), r"design: n \(the number of configurations\) must be a positive integer, got 3.5 \(float\)"),
        (dict(kind="sobol", n="many"), r"design: n .*got 'many' \(str\)"),
        (dict(kind="random", n=0), r"design: n .*got 0 \(int\)"),
        (dict(kind="random", n=-3), r"design: n .*got -3 \(int\)"),
        (dict(kind="lhs", n=True), r"design: n .*got True \(bool\)"),
        (dict(kind="lhs"), "design: kind='lhs' needs n, the number of configurations"),
        (dict(kind="grid", n=64), "design: kind='grid' builds the full factorial grid from `levels`, so n=64 would be ignored"),
        (dict(kind="sobol", n=8, levels=3), "design: levels is only used by kind='grid'"),
        (dict(kind="bayes", n=8), r"design: kind 'bayes' is not one of \['random', 'sobol', 'halton', 'lhs', 'grid'\]"),
        (dict(kind="sobol", n=8, seed=-2), r"design: seed must be a non-negative integer, got -2"),
        (dict(kind="grid", seed="x"), r"design: seed must be a non-negative integer, got 'x' \(str\)"),
        (dict(kind="grid", levels=1), "grid: levels must be an integer >= 2 or a mapping"),
        (dict(kind="grid", levels={"optimizer": 3}), r"grid: levels names \['optimizer'\], but a Categorical or Bool takes all its choices"),
    ],
)
def test_make_rejects_malformed_settings(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=match):
        design.check(opt_space(), kind, **kwargs)
    with pytest.raises(ValueError, match=match):
        design.make(opt_space(), kind, **kwargs)


def test_unit_sample_settings():
    U = design.unit_sample(8, 3, "halton", seed=1)
    assert U.shape == (8, 3) and U.dtype == np.float64 and np.all((U >= 0) & (U < 1))
    np.testing.assert_array_equal(U, design.unit_sample(8, 3, "halton", seed=1))
    for d in (0, 2.0, "3"):
        with pytest.raises(ValueError, match="unit_sample: d must be a positive integer"):
            design.unit_sample(8, d)
    with pytest.raises(ValueError, match="unit_sample: kind 'grid' is not one of"):
        design.unit_sample(8, 2, "grid")
